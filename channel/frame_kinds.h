// Frame kinds channel/ writes into shm::Ring frames.
//
// shm/ reserves kinds 0..15 (0 invalid, 1 padding); every kind from
// shm::kFirstChannelKind on belongs to channel/ and is listed here, so the
// producer (Router::ForwardEvent) and the consumer (the Router's drain) agree
// on one table. A consumer refuses any kind it does not know as a bad frame:
// the peer is dropped.
#ifndef SHMPORTS_CHANNEL_FRAME_KINDS_H_
#define SHMPORTS_CHANNEL_FRAME_KINDS_H_

#include <cstdint>

#include "shm/ring_layout.h"

namespace shmports::channel {

// One whole serialised ports::Event (Event::Serialize) in the payload;
// flags 0.
inline constexpr uint16_t kEventFrameKind = shm::kFirstChannelKind;
// One fragment of an event larger than the ring's largest frame; payload
// layout and stream rules in channel/fragment.h. Flags 0.
inline constexpr uint16_t kEventFragmentFrameKind = shm::kFirstChannelKind + 1;
// The last frame a peer writes before it closes the link on purpose
// (Process::Shutdown): empty payload, flags 0. The receiver delivers every
// frame before it, then treats the link as closed (not as a death). Any frame
// after it, a payload or flags, or a goodbye inside a fragment stream is a
// protocol violation.
inline constexpr uint16_t kGoodbyeFrameKind = shm::kFirstChannelKind + 2;

static_assert(kEventFrameKind == 16);
static_assert(kEventFragmentFrameKind == 17);
static_assert(kGoodbyeFrameKind == 18);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_FRAME_KINDS_H_
