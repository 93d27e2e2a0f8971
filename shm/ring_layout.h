// The shared-memory layout of one Ring: a control page, the data area, and a
// PROT_NONE guard page. Both processes map the same bytes; neither trusts
// what the other wrote (see shm/ring.h for the checks).
//
//   offset 0                 RingControl (one 4 KiB page)
//   offset kRingControlSize  data area: `capacity` bytes of frames
//   after the data area      one guard page, mprotect(PROT_NONE) by each side
//
// A frame in the data area is an 8-byte FrameHeader followed by `length`
// payload bytes, padded to a multiple of 8. Frames never wrap: when the next
// frame does not fit before the end of the data area, the producer fills the
// rest with one kPaddingKind frame and starts the frame at offset 0.
//
// Memory ordering:
//   - `tail` is the publish word. The producer writes frame bytes with plain
//     stores, then stores `tail` with release semantics (one store may cover
//     a batch of frames). The consumer loads `tail` with acquire semantics;
//     every frame byte below it is then visible. A frame is never read above
//     the loaded `tail`.
//   - `head` is the consumer's release, published once per drain after the
//     frames below it were copied out. The producer loads it (acquire)
//     before overwriting that space, so the consumer's copies happen-before
//     the producer's new writes.
//   - The wake flags form a Dekker pair with the indices: the producer
//     stores `tail`, then loads `consumer_sleeping`; the consumer stores
//     `consumer_sleeping = 1`, then loads `tail`. All four are seq_cst (so
//     the release/acquire above are in fact seq_cst operations; on x86-64 the
//     store is one xchg, what a release store plus a fence would cost), and
//     at least one side sees the other's store: either the consumer sees
//     the data or the producer sees the sleeper and wakes it. The space side
//     mirrors this with `head` and `producer_waiting`. Operations rather than
//     fences: ThreadSanitizer models the former, not the latter.
//   - The futex words are counters: the waker increments (release) before
//     FUTEX_WAKE; the waiter loads the counter (acquire) before announcing,
//     so a wake that races with the announcement changes the value and
//     FUTEX_WAIT returns at once instead of sleeping through it.
#ifndef SHMPORTS_SHM_RING_LAYOUT_H_
#define SHMPORTS_SHM_RING_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmports::shm {

inline constexpr uint64_t kRingMagic = 0x31474e4952504d53ull;  // "SMPRING1"
inline constexpr uint32_t kRingLayoutVersion = 1;

// Cache-line pair size: keeps the producer's and the consumer's words out of
// each other's adjacent-line prefetch.
inline constexpr size_t kRingLineSize = 128;
inline constexpr size_t kRingPageSize = 4096;
inline constexpr size_t kRingControlSize = kRingPageSize;
inline constexpr size_t kFrameAlignment = 8;

// Frame kinds. 0 is never valid (it is what a zeroed page reads as); 1..15
// belong to shm/; kinds >= kFirstChannelKind belong to channel/ (and to
// tests and benchmarks), which validates them.
inline constexpr uint16_t kInvalidKind = 0;
inline constexpr uint16_t kPaddingKind = 1;
inline constexpr uint16_t kFirstChannelKind = 16;

// Frame header, written by the producer right before the payload.
struct FrameHeader {
  uint32_t length;  // Payload bytes, excluding this header and the padding.
  uint16_t kind;    // Never kInvalidKind; kPaddingKind fills to the end.
  uint16_t flags;   // Free for the kind's owner; 0 for padding.
};
static_assert(std::is_standard_layout_v<FrameHeader>);
static_assert(sizeof(FrameHeader) == 8);
static_assert(offsetof(FrameHeader, length) == 0);
static_assert(offsetof(FrameHeader, kind) == 4);
static_assert(offsetof(FrameHeader, flags) == 6);

// The control page. Plain integers, accessed only through std::atomic_ref so
// that a zeroed (hole-punched) page is just a page of zeros. Initialised in
// place by the creating process (Ring::Create), never by a constructor.
struct RingControl {
  // Line 0: identity, written once by the creator before the segment is
  // shared; read (copied out and checked) by the attaching side.
  uint64_t magic;           // kRingMagic.
  uint32_t layout_version;  // kRingLayoutVersion.
  uint32_t max_frame;       // Largest payload a frame may carry.
  uint64_t capacity;        // Data area bytes; a power of two.
  uint64_t reserved0[13];

  // Line 1: written by the producer only.
  uint64_t tail;  // Bytes ever published; monotonically increasing.
  uint64_t reserved1[15];

  // Line 2: written by the consumer only.
  uint64_t head;  // Bytes ever consumed; monotonically increasing.
  uint64_t reserved2[15];

  // Line 3: the wake flags, each 0 or 1. Rarely written, read on every
  // commit and every drain. Each is set by the side that sleeps and cleared
  // by it or by the waker, which swaps the 1 out to claim the wake (one
  // FUTEX_WAKE per sleep).
  uint32_t consumer_sleeping;  // Set by the consumer; cleared by either.
  uint32_t producer_waiting;   // Set by the producer; cleared by either.
  uint64_t reserved3[15];

  // Line 4: the futex words (counters), written only on the wake path.
  uint32_t data_futex;   // Incremented by the producer to wake the consumer.
  uint32_t space_futex;  // Incremented by the consumer to wake the producer.
  uint64_t reserved4[15];
};
static_assert(std::is_standard_layout_v<RingControl>);
static_assert(std::is_trivially_copyable_v<RingControl>);
static_assert(sizeof(RingControl) == 5 * kRingLineSize);
static_assert(sizeof(RingControl) <= kRingControlSize);
static_assert(offsetof(RingControl, magic) == 0);
static_assert(offsetof(RingControl, layout_version) == 8);
static_assert(offsetof(RingControl, max_frame) == 12);
static_assert(offsetof(RingControl, capacity) == 16);
static_assert(offsetof(RingControl, tail) == 1 * kRingLineSize);
static_assert(offsetof(RingControl, head) == 2 * kRingLineSize);
static_assert(offsetof(RingControl, consumer_sleeping) == 3 * kRingLineSize);
static_assert(offsetof(RingControl, producer_waiting) == 3 * kRingLineSize + 4);
static_assert(offsetof(RingControl, data_futex) == 4 * kRingLineSize);
static_assert(offsetof(RingControl, space_futex) == 4 * kRingLineSize + 4);
static_assert(alignof(RingControl) == 8);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

}  // namespace shmports::shm

#endif  // SHMPORTS_SHM_RING_LAYOUT_H_
