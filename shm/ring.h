// Ring: a single-consumer ring of variable-length frames in shared memory,
// one per direction per connection (ARCHITECTURE.md, shm/).
//
// One process creates the ring inside a sealed Segment (Ring::Create), the
// other attaches to the same bytes (Ring::Attach). Each side then uses its
// half: the producing process calls Reserve/Commit/WaitForSpace, the
// consuming process calls Drain/WaitForData. Both halves live in one class so
// that a test can run producer and consumer as two threads over one mapping.
//
// Producing (any thread of the producing process):
//
//   std::span<uint8_t> payload;
//   Status error;
//   if (ring.Reserve(n, kind, /*flags=*/0, &payload, &error)) {
//     Serialise(payload);           // Write exactly n bytes.
//     SHMPORTS_RETURN_IF_ERROR(ring.Commit());
//   } else if (error.ok()) {
//     // Full: nothing is held. WaitForSpace(n, deadline), then retry.
//   } else {
//     return error;                 // kInvalidArgument or kCorrupt.
//   }
//
// A successful Reserve holds the ring's process-local producer mutex until
// Commit or Abandon, so producer threads of one process take turns; the mutex
// never lives in shared memory, so a crash cannot wedge the peer.
// Commit(Publish::kDeferred) appends without publishing; Flush() (or the next
// Commit(kNow)) then publishes the whole batch with one release store of
// `tail`.
//
// Consuming (one thread at a time; the caller provides that exclusion, e.g.
// channel/'s consumer token):
//
//   SHMPORTS_ASSIGN_OR_RETURN(size_t n, ring.Drain(
//       [&](const FrameView& frame) { Parse(frame.payload); }));
//
// Drain copies each frame out of shared memory into a buffer private to this
// Ring before calling back, so the callback never sees bytes the peer can
// still change. `head` is published once per Drain.
//
// Distrust: every index and frame read from shared memory is checked (see
// "Checks" below). The first violation is reported as kCorrupt naming the
// rule, and is sticky: that half of the ring reports the same Status from
// then on. Nothing the peer writes makes this class crash, hang or read out of
// bounds.
//
// Waking: the consumer sleeps in WaitForData (or in an io_uring FUTEX_WAIT on
// data_futex_word()) only after announcing it in `consumer_sleeping`; the
// producer issues FUTEX_WAKE only when it sees that announcement, and claims
// the wake by swapping the flag back to 0, so one sleep costs one FUTEX_WAKE
// however many frames are published before the consumer is up again. Space
// wakes mirror this. Futexes are shared (no FUTEX_PRIVATE_FLAG), so wakes cross
// processes. Wakes use FUTEX_WAKE(INT_MAX): every waiter on the word (an
// io_uring wait and a thread in WaitForData, say) is woken.
//
// Memory ordering: see shm/ring_layout.h. In short: `tail` and `head` are
// published and read with (seq_cst, hence) release/acquire semantics; the
// index stores and the wake-flag loads, and the flag stores and the index
// re-checks, are seq_cst so that a sleeper and a waker cannot both miss each
// other; futex counters are incremented (release) before FUTEX_WAKE and
// loaded (acquire) before the sleep is announced.
//
// Checks (each a kCorrupt naming the rule):
//   consumer: tail - head (as unsigned) <= capacity and tail is 8-aligned;
//             each frame: kind != 0, kind not in 2..15, length <= max_frame,
//             the frame lies within the published bytes and does not cross
//             the end of the data area; padding (kind 1) has flags 0 and
//             exactly fills the data area to its end; producer_waiting is 0
//             or 1.
//   producer: head never moves backwards, head <= published tail,
//             tail - head <= capacity, head is 8-aligned; consumer_sleeping
//             is 0 or 1.
//
// Lifetime: a Ring does not own its memory; the Segment holding the region
// must outlive it. The guard page stays PROT_NONE for the mapping's life.
// Indices are 64-bit byte counts that never wrap in practice (centuries at
// memory bandwidth); a wrapped index reads as a broken rule.
#ifndef SHMPORTS_SHM_RING_H_
#define SHMPORTS_SHM_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/base/deadline.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"
#include "shm/ring_layout.h"

namespace shmports::shm {

inline constexpr uint64_t kDefaultRingCapacity = uint64_t{1} << 20;  // 1 MiB
inline constexpr uint64_t kMinRingCapacity = kRingPageSize;
inline constexpr uint64_t kMaxRingCapacity = uint64_t{1} << 30;

struct RingOptions {
  // Data area bytes: a power of two in [kMinRingCapacity, kMaxRingCapacity].
  uint64_t capacity = kDefaultRingCapacity;
  // Largest frame payload; 0 means capacity / 4 (also the upper limit).
  uint32_t max_frame = 0;
};

// One frame as handed to a Drain callback. `payload` points into the Ring's
// private copy buffer and is valid only during the callback.
struct FrameView {
  uint16_t kind;
  uint16_t flags;
  std::span<const uint8_t> payload;
};

// Counters of this process's half (process-local, relaxed; any thread may
// read them).
struct RingStats {
  uint64_t frames_committed = 0;
  uint64_t publishes = 0;           // Release stores of `tail`.
  uint64_t full = 0;                // Reserve calls that found no space.
  uint64_t data_wakes_issued = 0;   // FUTEX_WAKE calls on data_futex.
  uint64_t data_wakes_avoided = 0;  // Publishes with no sleeper announced.
  uint64_t frames_drained = 0;
  uint64_t drains = 0;               // Drains that published `head`.
  uint64_t space_wakes_issued = 0;   // FUTEX_WAKE calls on space_futex.
  uint64_t space_wakes_avoided = 0;  // Head publishes with no waiter.
  uint64_t consumer_sleeps = 0;      // FUTEX_WAIT calls in WaitForData.
  uint64_t producer_sleeps = 0;      // FUTEX_WAIT calls in WaitForSpace.
};

class Ring {
 public:
  enum class Publish { kNow, kDeferred };

  // OK if `capacity` is a valid ring capacity; otherwise kInvalidArgument
  // naming the rule and the nearest valid size.
  static Status CheckCapacity(uint64_t capacity);

  // Bytes of the region one ring of `capacity` occupies: control page, data
  // area and guard page. A multiple of the page size.
  static constexpr size_t RegionSize(uint64_t capacity) {
    return kRingControlSize + static_cast<size_t>(capacity) + kRingPageSize;
  }

  // Lays out a new ring in `region` (page-aligned, exactly
  // RegionSize(options.capacity) bytes, zero or garbage) and protects its
  // guard page. Call before the segment is shared with the peer.
  static Result<std::unique_ptr<Ring>> Create(std::span<uint8_t> region,
                                              const RingOptions& options);

  // Attaches to a ring the peer created in `region`. The layout's magic,
  // version, capacity and max_frame must equal what `options` expects (the
  // values agreed in the handshake); else kCorrupt naming the field. Protects
  // this mapping's guard page.
  static Result<std::unique_ptr<Ring>> Attach(std::span<uint8_t> region,
                                              const RingOptions& options);

  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  uint64_t capacity() const { return capacity_; }
  uint32_t max_frame() const { return max_frame_; }

  // ---- Producer half. Any thread of the producing process. ----

  // Reserves room for a frame of `length` payload bytes. Returns true with
  // the producer mutex held and `*payload` set to exactly `length` writable
  // bytes in the ring; the caller fills them, then calls Commit or Abandon.
  // Returns false with the mutex not held when the ring is full (`*error`
  // OK) or on error (`*error` set): kInvalidArgument if `length` exceeds
  // max_frame() or `kind` is 0..15; kCorrupt if the consumer broke a rule.
  // Never blocks except on the producer mutex.
  bool Reserve(uint32_t length,
               uint16_t kind,
               uint16_t flags,
               std::span<uint8_t>* payload,
               Status* error) TRY_ACQUIRE(true, producer_mu_);

  // Ends the reservation: writes the frame header and appends the frame.
  // With kNow (default) publishes `tail` (covering every frame appended so
  // far) and wakes the consumer if it announced sleep. Releases the mutex.
  // A non-OK Status is kCorrupt (the consumer's wake flag broke a rule); the
  // frame was still appended.
  Status Commit(Publish publish = Publish::kNow) RELEASE(producer_mu_);

  // Drops the reservation; the frame is not appended. Releases the mutex.
  void Abandon() RELEASE(producer_mu_);

  // Publishes frames committed with kDeferred, and wakes as Commit does.
  Status Flush() EXCLUDES(producer_mu_);

  // Reserve + copy + Commit. kUnavailable if the ring is full.
  Status Write(uint16_t kind, std::span<const uint8_t> payload)
      EXCLUDES(producer_mu_);

  // Blocks until a frame of `length` payload bytes would fit, or `deadline`
  // passes (kUnavailable), or the consumer broke a rule (kCorrupt). Spurious
  // success is possible when several producer threads race for the space:
  // Reserve may still find the ring full.
  Status WaitForSpace(uint32_t length, Deadline deadline)
      EXCLUDES(producer_mu_, wait_mu_);

  // ---- Consumer half. One thread at a time. ----

  // Copies out and hands to `callback` up to `max_frames` frames (padding is
  // skipped and not counted), then publishes `head` once and wakes a waiting
  // producer. Returns the number of frames delivered, or kCorrupt (frames
  // before the bad one were delivered and consumed). `callback` must not call
  // Drain or WaitForData on this ring. Callable as
  // void(const FrameView&).
  template <typename Callback>
  Result<size_t> Drain(Callback&& callback,
                       size_t max_frames = std::numeric_limits<size_t>::max()) {
    using Fn = std::remove_reference_t<Callback>;
    return DrainImpl(
        [](void* ctx, const FrameView& frame) {
          (*static_cast<Fn*>(ctx))(frame);
        },
        const_cast<void*>(static_cast<const void*>(&callback)), max_frames);
  }

  // Whether published frames are waiting (padding counts), or kCorrupt.
  Result<bool> HasData();

  // Blocks until HasData(), or `deadline` passes (kUnavailable), or kCorrupt.
  // Announces sleep, re-checks `tail`, then FUTEX_WAITs on data_futex_word().
  Status WaitForData(Deadline deadline);

  // ---- For io_uring waits (channel/). ----
  // A consumer arming an io_uring FUTEX_WAIT must follow WaitForData's
  // protocol: load *data_futex_word() (acquire), call AnnounceSleep(), check
  // HasData(), and only then arm the wait with the loaded value; call
  // CancelSleep() when woken.
  uint32_t* data_futex_word() { return &control_->data_futex; }
  uint32_t* space_futex_word() { return &control_->space_futex; }
  void AnnounceSleep();
  void CancelSleep();

  // The producer's mirror of the above, for a producer that waits for space
  // in an io_uring FUTEX_WAIT on space_futex_word() instead of blocking in
  // WaitForSpace (channel/'s overflow queue). Any producer thread. Protocol:
  //
  //   uint32_t expected = ring.AnnounceSpaceWait();
  //   if (<retry: Reserve succeeds, or HasSpace(n) is true, or an error>) {
  //     ring.CancelSpaceWait();            // Not waiting after all.
  //   } else {
  //     // Arm FUTEX_WAIT(space_futex_word(), expected). When it completes
  //     // (woken, or the word had already changed), or is cancelled:
  //     ring.CancelSpaceWait();            // Then retry.
  //   }
  //
  // AnnounceSpaceWait loads the space futex counter (acquire) before it sets
  // the shared `producer_waiting` flag (seq_cst), so a consumer that frees
  // space after the announcement either is seen by the retry (its seq_cst
  // `head` store precedes our seq_cst `head` load) or sees the flag and
  // increments the counter, and a FUTEX_WAIT armed with `expected` returns at
  // once. Announcements nest with WaitForSpace's: the shared flag is cleared
  // only when the last waiter of this process cancels. Every
  // AnnounceSpaceWait must be matched by exactly one CancelSpaceWait.
  uint32_t AnnounceSpaceWait() EXCLUDES(wait_mu_);
  void CancelSpaceWait() EXCLUDES(wait_mu_);

  // Whether a frame of `length` payload bytes fits now (re-reading `head` if
  // the cached value says no), or kCorrupt / kInvalidArgument. The re-check
  // of the protocol above. Any producer thread; takes the producer mutex.
  Result<bool> HasSpace(uint32_t length) EXCLUDES(producer_mu_);

  RingStats stats() const;

 private:
  using FrameFn = void (*)(void* ctx, const FrameView& frame);

  Ring(std::span<uint8_t> region, uint64_t capacity, uint32_t max_frame);

  static Status CheckArguments(std::span<uint8_t> region,
                               const RingOptions& options,
                               uint32_t* max_frame);
  Status ProtectGuardPage();

  // Producer internals.
  uint64_t BytesNeeded(uint64_t tail, uint32_t length) const;
  Status CheckHead(uint64_t head,
                   uint64_t published_tail,
                   uint64_t cached_head) const;
  Status RefreshHeadLocked() REQUIRES(producer_mu_);
  bool FitsLocked(uint32_t length) const REQUIRES(producer_mu_);
  // Publishes tail_; returns whether the consumer must be woken.
  bool PublishLocked(Status* error) REQUIRES(producer_mu_);
  void WakeConsumer();
  void PrefetchNextFrame() REQUIRES(producer_mu_);
  Result<bool> SpaceAvailable(uint32_t length) EXCLUDES(producer_mu_);
  void SetProducerWaiting(bool waiting) EXCLUDES(wait_mu_);

  // Consumer internals.
  Result<size_t> DrainImpl(FrameFn fn, void* ctx, size_t max_frames);
  Result<uint64_t> LoadTail();
  Status CheckFrame(const FrameHeader& header,
                    uint64_t pos,
                    uint64_t available) const;
  Status PublishHead(uint64_t head);
  Status ConsumerCorrupt(Status status);

  RingControl* const control_;
  uint8_t* const data_;
  const uint64_t capacity_;
  const uint64_t mask_;
  const uint32_t max_frame_;

  // Producer half. `producer_mu_` is held from Reserve to Commit/Abandon.
  // Lock order: wait_mu_ is never held while taking producer_mu_.
  Mutex producer_mu_;
  uint64_t tail_ GUARDED_BY(producer_mu_) = 0;  // Appended, maybe unpublished.
  uint64_t published_tail_ GUARDED_BY(producer_mu_) = 0;
  uint64_t cached_head_ GUARDED_BY(producer_mu_) = 0;
  uint64_t reserved_pos_ GUARDED_BY(producer_mu_) = 0;
  uint32_t reserved_length_ GUARDED_BY(producer_mu_) = 0;
  uint16_t reserved_kind_ GUARDED_BY(producer_mu_) = 0;
  uint16_t reserved_flags_ GUARDED_BY(producer_mu_) = 0;
  Status producer_error_ GUARDED_BY(producer_mu_);

  // Several producer threads may wait for space at once; the shared
  // `producer_waiting` flag is cleared only when the last one leaves.
  Mutex wait_mu_;
  int space_waiters_ GUARDED_BY(wait_mu_) = 0;

  // Consumer half (single thread at a time, by contract).
  uint64_t head_ = 0;
  Status consumer_error_;
  // The private copy of a frame. A frame is copied to the same offset within
  // a page as it has in the ring: glibc 2.36's memcpy (rep movsb) runs ~20x
  // slower on AMD hosts when (dst - src) mod 4096 is 1..63 (4K aliasing), and
  // a zero distance is the fast case.
  std::vector<uint8_t> copy_storage_;
  uint8_t* copy_page_ = nullptr;  // Page-aligned, inside copy_storage_.

  // Producer counters and consumer counters on separate cache lines: in a
  // one-process test the two halves run on different threads. Most have one
  // writer at a time (see Bump in ring.cc); data_wakes_issued and
  // producer_sleeps are bumped outside the producer mutex with an RMW.
  struct Counters {
    alignas(64) std::atomic<uint64_t> frames_committed{0};
    std::atomic<uint64_t> publishes{0};
    std::atomic<uint64_t> full{0};
    std::atomic<uint64_t> data_wakes_issued{0};
    std::atomic<uint64_t> data_wakes_avoided{0};
    std::atomic<uint64_t> producer_sleeps{0};
    alignas(64) std::atomic<uint64_t> frames_drained{0};
    std::atomic<uint64_t> drains{0};
    std::atomic<uint64_t> space_wakes_issued{0};
    std::atomic<uint64_t> space_wakes_avoided{0};
    std::atomic<uint64_t> consumer_sleeps{0};
  };
  Counters counters_;
};

}  // namespace shmports::shm

#endif  // SHMPORTS_SHM_RING_H_
