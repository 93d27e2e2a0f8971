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
// Reserved for issue 7: one fragment of an event larger than a frame.
inline constexpr uint16_t kEventFragmentFrameKind = shm::kFirstChannelKind + 1;

static_assert(kEventFrameKind == 16);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_FRAME_KINDS_H_
