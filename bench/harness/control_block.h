// ControlBlock: the bookkeeping page a trial's two processes share, apart
// from whatever the subject under test uses. The peer says when it is ready,
// reports what it received and verified, and leaves an error message if it
// fails, so the parent can judge a trial without trusting the subject.
#ifndef SHMPORTS_BENCH_HARNESS_CONTROL_BLOCK_H_
#define SHMPORTS_BENCH_HARNESS_CONTROL_BLOCK_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/base/status.h"

namespace shmports::bench {

inline constexpr uint64_t kControlMagic = 0x6c7274632d73706dULL;  // "mps-ctrl"

enum class PeerState : uint32_t {
  kStarting = 0,  // Launched, not yet connected to the subject.
  kReady = 1,     // Connected; the parent may start the clock.
  kDone = 2,      // Finished; the result fields are final.
  kFailed = 3,    // Gave up; `error` says why.
};

// Memory ordering: the parent writes `magic` before it launches the peer
// (the fork orders it). After that the peer is the only writer: it fills the
// result fields with plain stores, then stores `state` with release; the
// parent reads `state` with acquire (pairs with that release store) before
// it reads any result field. `state` is also a shared futex word, woken by
// the peer after each store. Both processes are the harness itself, but the
// parent still bounds `error` when it reads it.
struct ControlBlock {
  uint64_t magic;              // Parent, before launch.
  uint32_t state;              // Peer; PeerState, through atomic_ref.
  int32_t peer_cpu;            // Peer: sched_getcpu() when it got ready.
  uint64_t messages_received;  // Peer: messages verified, not counting stop.
  uint64_t bytes_received;     // Peer: payload bytes of those messages.
  uint64_t checksum_errors;    // Peer: payloads whose bytes were wrong.
  uint64_t order_errors;       // Peer: sequence numbers out of order.
  uint64_t reserved[10];
  char error[896];  // Peer: NUL-terminated reason for kFailed.
};
static_assert(sizeof(ControlBlock) == 1024);
static_assert(offsetof(ControlBlock, state) == 8);
static_assert(offsetof(ControlBlock, messages_received) == 16);
static_assert(offsetof(ControlBlock, order_errors) == 40);
static_assert(offsetof(ControlBlock, error) == 128);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

inline PeerState LoadPeerState(ControlBlock* block) {
  return static_cast<PeerState>(
      std::atomic_ref<uint32_t>(block->state).load(std::memory_order_acquire));
}

// Peer side: publishes `state` (release) and wakes a parent waiting on it.
void PublishPeerState(ControlBlock* block, PeerState state);

// Peer side: records `status` as the reason and publishes kFailed.
void PublishPeerFailure(ControlBlock* block, const Status& status);

// Parent side: the error text the peer left (bounded copy).
std::string PeerErrorText(const ControlBlock* block);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_CONTROL_BLOCK_H_
