#include "shm/ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>

#include "core/base/str_format.h"
#include "shm/futex.h"

namespace shmports::shm {
namespace {

template <typename T>
std::atomic_ref<T> Shared(T& word) {
  return std::atomic_ref<T>(word);
}

constexpr uint64_t FrameBytes(uint32_t length) {
  return sizeof(FrameHeader) +
         ((uint64_t{length} + kFrameAlignment - 1) & ~(kFrameAlignment - 1));
}

// Counters with one writer at a time (the producer mutex's holder, or the
// one consumer thread): a relaxed load and store, not a locked RMW, on the
// hot path. Readers on other threads see a recent value.
void Bump(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n,
                std::memory_order_relaxed);
}

// Prefetch granularity (a cache line) and how far the consumer asks ahead.
constexpr uint64_t kPrefetchStride = 64;
constexpr uint64_t kPrefetchBytes = 256;

unsigned long long U(uint64_t v) {
  return static_cast<unsigned long long>(v);
}

uint64_t NearestValidCapacity(uint64_t capacity) {
  if (capacity <= kMinRingCapacity)
    return kMinRingCapacity;
  if (capacity >= kMaxRingCapacity)
    return kMaxRingCapacity;
  uint64_t above = std::bit_ceil(capacity);
  uint64_t below = above / 2;
  return capacity - below < above - capacity ? below : above;
}

}  // namespace

Status Ring::CheckCapacity(uint64_t capacity) {
  if (capacity >= kMinRingCapacity && capacity <= kMaxRingCapacity &&
      std::has_single_bit(capacity)) {
    return Status::Ok();
  }
  return InvalidArgumentError(StrFormat(
      "ring capacity %llu is invalid: it must be a power of two between %llu "
      "and %llu bytes; the nearest valid size is %llu",
      U(capacity), U(kMinRingCapacity), U(kMaxRingCapacity),
      U(NearestValidCapacity(capacity))));
}

Status Ring::CheckArguments(std::span<uint8_t> region,
                            const RingOptions& options,
                            uint32_t* max_frame) {
  SHMPORTS_RETURN_IF_ERROR(CheckCapacity(options.capacity));
  uint64_t largest = options.capacity / 4;
  if (options.max_frame > largest) {
    return InvalidArgumentError(
        StrFormat("largest frame %u exceeds capacity/4 = %llu",
                  options.max_frame, U(largest)));
  }
  *max_frame = options.max_frame != 0 ? options.max_frame
                                      : static_cast<uint32_t>(largest);
  if (region.size() != RegionSize(options.capacity)) {
    return InvalidArgumentError(StrFormat(
        "ring region is %zu bytes; a ring of capacity %llu needs exactly %zu "
        "(control page + data + guard page)",
        region.size(), U(options.capacity), RegionSize(options.capacity)));
  }
  if (reinterpret_cast<uintptr_t>(region.data()) % kRingPageSize != 0) {
    return InvalidArgumentError("ring region is not page-aligned");
  }
  return Status::Ok();
}

Ring::Ring(std::span<uint8_t> region, uint64_t capacity, uint32_t max_frame)
    : control_(reinterpret_cast<RingControl*>(region.data())),
      data_(region.data() + kRingControlSize),
      capacity_(capacity),
      mask_(capacity - 1),
      max_frame_(max_frame),
      copy_storage_(max_frame + 2 * kRingPageSize) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(copy_storage_.data());
  copy_page_ = copy_storage_.data() +
               ((kRingPageSize - addr % kRingPageSize) % kRingPageSize);
}

Ring::~Ring() = default;

Status Ring::ProtectGuardPage() {
  if (mprotect(data_ + capacity_, kRingPageSize, PROT_NONE) != 0) {
    int err = errno;
    return ResourceExhaustedError(StrFormat(
        "mprotect(PROT_NONE) of the ring's guard page failed: %s (likely "
        "cause: vm.max_map_count reached)",
        ErrnoText(err).c_str()));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Ring>> Ring::Create(std::span<uint8_t> region,
                                           const RingOptions& options) {
  uint32_t max_frame = 0;
  SHMPORTS_RETURN_IF_ERROR(CheckArguments(region, options, &max_frame));
  memset(region.data(), 0, kRingControlSize);
  auto* control = reinterpret_cast<RingControl*>(region.data());
  control->magic = kRingMagic;
  control->layout_version = kRingLayoutVersion;
  control->max_frame = max_frame;
  control->capacity = options.capacity;
  std::unique_ptr<Ring> ring(new Ring(region, options.capacity, max_frame));
  SHMPORTS_RETURN_IF_ERROR(ring->ProtectGuardPage());
  return ring;
}

Result<std::unique_ptr<Ring>> Ring::Attach(std::span<uint8_t> region,
                                           const RingOptions& options) {
  uint32_t max_frame = 0;
  SHMPORTS_RETURN_IF_ERROR(CheckArguments(region, options, &max_frame));
  // Copied out once: the peer may change the page while we look at it.
  RingControl seen;
  memcpy(&seen, region.data(), sizeof(seen));
  if (seen.magic != kRingMagic) {
    return CorruptError(
        StrFormat("attach ring: bad magic 0x%016llx", U(seen.magic)));
  }
  if (seen.layout_version != kRingLayoutVersion) {
    return CorruptError(
        StrFormat("attach ring: layout version %u, this build reads %u",
                  seen.layout_version, kRingLayoutVersion));
  }
  if (seen.capacity != options.capacity || seen.max_frame != max_frame) {
    return CorruptError(StrFormat(
        "attach ring: layout says capacity %llu, largest frame %u; the "
        "handshake agreed %llu and %u",
        U(seen.capacity), seen.max_frame, U(options.capacity), max_frame));
  }
  std::unique_ptr<Ring> ring(new Ring(region, options.capacity, max_frame));
  SHMPORTS_RETURN_IF_ERROR(ring->ProtectGuardPage());
  // A ring is attached before traffic starts; start from the indices the
  // creator left, checked like any other. Acquire: pairs with the stores in
  // PublishLocked / PublishHead, should the creator's side already have run
  // (the segment handoff over the socket orders Create's plain stores).
  uint64_t tail = Shared(ring->control_->tail).load(std::memory_order_acquire);
  uint64_t head = Shared(ring->control_->head).load(std::memory_order_acquire);
  if (head > tail || tail - head > options.capacity ||
      head % kFrameAlignment != 0 || tail % kFrameAlignment != 0) {
    return CorruptError(
        StrFormat("attach ring: head %llu and tail %llu are not a valid pair",
                  U(head), U(tail)));
  }
  ring->head_ = head;
  MutexLock lock(&ring->producer_mu_);
  ring->tail_ = tail;
  ring->published_tail_ = tail;
  ring->cached_head_ = head;
  return ring;
}

// ---- Producer half ----

uint64_t Ring::BytesNeeded(uint64_t tail, uint32_t length) const {
  uint64_t pos = tail & mask_;
  uint64_t frame = FrameBytes(length);
  uint64_t padding = pos + frame > capacity_ ? capacity_ - pos : 0;
  return padding + frame;
}

Status Ring::CheckHead(uint64_t head,
                       uint64_t published_tail,
                       uint64_t cached_head) const {
  if (head % kFrameAlignment != 0) {
    return CorruptError(StrFormat(
        "consumer broke a rule: head %llu is not 8-byte aligned", U(head)));
  }
  if (head < cached_head) {
    return CorruptError(StrFormat(
        "consumer broke a rule: head moved backwards from %llu to %llu",
        U(cached_head), U(head)));
  }
  if (head > published_tail) {
    return CorruptError(StrFormat(
        "consumer broke a rule: head %llu is ahead of the published tail %llu",
        U(head), U(published_tail)));
  }
  if (published_tail - head > capacity_) {
    return CorruptError(StrFormat(
        "consumer broke a rule: head %llu is more than the capacity %llu "
        "behind tail %llu",
        U(head), U(capacity_), U(published_tail)));
  }
  return Status::Ok();
}

Status Ring::RefreshHeadLocked() {
  // Acquire: pairs with the store in PublishHead, so the consumer's copies of
  // the frames below `head` happen-before we overwrite them. seq_cst: the
  // re-check in WaitForSpace is one side of the Dekker pair on
  // head/producer_waiting (the other is PublishHead).
  uint64_t head = Shared(control_->head).load(std::memory_order_seq_cst);
  Status status = CheckHead(head, published_tail_, cached_head_);
  if (!status.ok()) {
    producer_error_ = status;
    return status;
  }
  cached_head_ = head;
  return Status::Ok();
}

bool Ring::FitsLocked(uint32_t length) const {
  return tail_ + BytesNeeded(tail_, length) - cached_head_ <= capacity_;
}

bool Ring::Reserve(uint32_t length,
                   uint16_t kind,
                   uint16_t flags,
                   std::span<uint8_t>* payload,
                   Status* error) {
  if (length > max_frame_ || kind < kFirstChannelKind) {
    *error = InvalidArgumentError(
        length > max_frame_
            ? StrFormat("frame of %u bytes exceeds the largest frame %u of "
                        "this ring",
                        length, max_frame_)
            : StrFormat("frame kind %u is reserved (kinds below %u belong "
                        "to shm/)",
                        kind, kFirstChannelKind));
    return false;
  }
  producer_mu_.Lock();
  if (!producer_error_.ok()) {
    *error = producer_error_;
    producer_mu_.Unlock();
    return false;
  }
  if (!FitsLocked(length)) {
    *error = RefreshHeadLocked();
    if (!error->ok() || !FitsLocked(length)) {
      if (error->ok())
        Bump(counters_.full, 1);
      producer_mu_.Unlock();
      return false;
    }
  }
  uint64_t pos = tail_ & mask_;
  if (pos + FrameBytes(length) > capacity_) {
    // Frames never wrap: pad to the end. Published with the frame after it.
    FrameHeader padding = {};
    padding.length = static_cast<uint32_t>(capacity_ - pos - sizeof(padding));
    padding.kind = kPaddingKind;
    memcpy(data_ + pos, &padding, sizeof(padding));
    tail_ += capacity_ - pos;
    pos = 0;
  }
  reserved_pos_ = pos;
  reserved_length_ = length;
  reserved_kind_ = kind;
  reserved_flags_ = flags;
  *payload = std::span<uint8_t>(data_ + pos + sizeof(FrameHeader), length);
  *error = Status::Ok();
  return true;
}

Status Ring::Commit(Publish publish) {
  FrameHeader header = {};
  header.length = reserved_length_;
  header.kind = reserved_kind_;
  header.flags = reserved_flags_;
  memcpy(data_ + reserved_pos_, &header, sizeof(header));
  tail_ += FrameBytes(reserved_length_);
  Bump(counters_.frames_committed, 1);
  PrefetchNextFrame();
  Status status;
  bool wake = publish == Publish::kNow && PublishLocked(&status);
  producer_mu_.Unlock();
  // Decided under the lock, woken after it: the syscall does not hold up
  // other producer threads.
  if (wake)
    WakeConsumer();
  return status;
}

void Ring::PrefetchNextFrame() {
  // Takes the lines the next small frame will be written to into this
  // core's cache for writing while the producer is otherwise idle: without
  // it the next Commit's seq_cst `tail` store waits for the frame's
  // read-for-ownership misses (the lines were last touched a lap ago, often
  // by the other core), and the consumer sees the frame that much later.
  // A hint only: no fault is possible (the data area is followed by the
  // guard page, and prefetches never fault).
  uint64_t pos = tail_ & mask_;
  __builtin_prefetch(data_ + pos, 1);
  __builtin_prefetch(data_ + ((pos + kPrefetchStride) & mask_), 1);
}

void Ring::Abandon() {
  producer_mu_.Unlock();
}

bool Ring::PublishLocked(Status* error) {
  if (tail_ == published_tail_)
    return false;
  // Release: pairs with the load in LoadTail, so every frame byte below tail_
  // is visible to the consumer that reads this value. seq_cst, with the load
  // of consumer_sleeping below: the Dekker pair with AnnounceSleep and the
  // re-check in WaitForData. Either the consumer's re-check sees this tail,
  // or we see its sleeping flag.
  Shared(control_->tail).store(tail_, std::memory_order_seq_cst);
  published_tail_ = tail_;
  Bump(counters_.publishes, 1);
  uint32_t sleeping =
      Shared(control_->consumer_sleeping).load(std::memory_order_seq_cst);
  if (sleeping == 0) {
    Bump(counters_.data_wakes_avoided, 1);
    return false;
  }
  if (sleeping != 1) {
    producer_error_ = CorruptError(StrFormat(
        "consumer broke a rule: consumer_sleeping holds %u (must be 0 or 1)",
        sleeping));
    *error = producer_error_;
    return false;
  }
  // Claim the wake: one FUTEX_WAKE per announced sleep, not one per publish
  // while the woken consumer is still getting up to clear its flag. Whoever
  // swaps the 1 out wakes; another producer thread that lost the race sees
  // 0 and need not.
  if (Shared(control_->consumer_sleeping)
          .exchange(0, std::memory_order_seq_cst) != 1) {
    Bump(counters_.data_wakes_avoided, 1);
    return false;
  }
  return true;
}

void Ring::WakeConsumer() {
  // Pairs with the acquire load of the counter in WaitForData: a waiter that
  // loaded the old value sees a changed word and FUTEX_WAIT returns at once.
  Shared(control_->data_futex).fetch_add(1, std::memory_order_release);
  FutexWake(&control_->data_futex, INT_MAX);
  counters_.data_wakes_issued.fetch_add(1, std::memory_order_relaxed);
}

Status Ring::Flush() {
  Status status;
  bool wake;
  {
    MutexLock lock(&producer_mu_);
    if (!producer_error_.ok())
      return producer_error_;
    wake = PublishLocked(&status);
  }
  if (wake)
    WakeConsumer();
  return status;
}

Status Ring::Write(uint16_t kind, std::span<const uint8_t> payload) {
  if (payload.size() > max_frame_) {
    return InvalidArgumentError(StrFormat(
        "frame of %zu bytes exceeds the largest frame %u of this ring",
        payload.size(), max_frame_));
  }
  std::span<uint8_t> out;
  Status error;
  if (!Reserve(static_cast<uint32_t>(payload.size()), kind, 0, &out, &error)) {
    if (!error.ok())
      return error;
    return UnavailableError("ring full");
  }
  if (!payload.empty())
    memcpy(out.data(), payload.data(), payload.size());
  return Commit();
}

Result<bool> Ring::SpaceAvailable(uint32_t length) {
  MutexLock lock(&producer_mu_);
  if (!producer_error_.ok())
    return producer_error_;
  if (FitsLocked(length))
    return true;
  SHMPORTS_RETURN_IF_ERROR(RefreshHeadLocked());
  return FitsLocked(length);
}

void Ring::SetProducerWaiting(bool waiting) {
  MutexLock lock(&wait_mu_);
  if (waiting) {
    ++space_waiters_;
    // Stored on every announcement, not only by the first waiter: the
    // consumer clears the flag when it claims a wake, and a waiter that
    // announces after that must set it again. seq_cst: the Dekker pair with
    // PublishHead (see WaitForSpace).
    Shared(control_->producer_waiting).store(1, std::memory_order_seq_cst);
  } else if (space_waiters_ > 0 && --space_waiters_ == 0) {
    // (An unmatched CancelSpaceWait is ignored rather than wrapping the
    // count below zero.)
    Shared(control_->producer_waiting).store(0, std::memory_order_relaxed);
  }
}

uint32_t Ring::AnnounceSpaceWait() {
  // Pairs with the release increment in PublishHead. Loaded before the
  // announcement, so a wake racing with it changes the word.
  uint32_t seq = Shared(control_->space_futex).load(std::memory_order_acquire);
  SetProducerWaiting(true);
  return seq;
}

void Ring::CancelSpaceWait() {
  SetProducerWaiting(false);
}

Result<bool> Ring::HasSpace(uint32_t length) {
  if (length > max_frame_) {
    return InvalidArgumentError(
        StrFormat("frame of %u bytes exceeds the largest frame %u of this ring",
                  length, max_frame_));
  }
  return SpaceAvailable(length);
}

Status Ring::WaitForSpace(uint32_t length, Deadline deadline) {
  if (length > max_frame_) {
    return InvalidArgumentError(
        StrFormat("frame of %u bytes exceeds the largest frame %u of this ring",
                  length, max_frame_));
  }
  for (;;) {
    SHMPORTS_ASSIGN_OR_RETURN(bool fits, SpaceAvailable(length));
    if (fits)
      return Status::Ok();
    if (deadline.Expired()) {
      return UnavailableError(StrFormat(
          "no space for a %u-byte frame before the deadline", length));
    }
    uint32_t seq = AnnounceSpaceWait();
    // The flag store (seq_cst) precedes the seq_cst head load in the
    // re-check; PublishHead stores head then loads the flag, both seq_cst.
    // Either it sees us waiting, or we see its new head.
    auto again = SpaceAvailable(length);
    if (!again.ok() || *again) {
      CancelSpaceWait();
      if (!again.ok())
        return std::move(again).TakeStatus();
      return Status::Ok();
    }
    counters_.producer_sleeps.fetch_add(1, std::memory_order_relaxed);
    FutexWait(&control_->space_futex, seq, deadline);
    CancelSpaceWait();
  }
}

// ---- Consumer half ----

Status Ring::ConsumerCorrupt(Status status) {
  consumer_error_ = std::move(status);
  return consumer_error_;
}

Result<uint64_t> Ring::LoadTail() {
  // Acquire: pairs with the store in PublishLocked. seq_cst: the re-check in
  // WaitForData is one side of the Dekker pair on tail/consumer_sleeping.
  uint64_t tail = Shared(control_->tail).load(std::memory_order_seq_cst);
  if (tail < head_) {
    return ConsumerCorrupt(CorruptError(
        StrFormat("producer broke a rule: tail %llu is behind head %llu",
                  U(tail), U(head_))));
  }
  if (tail - head_ > capacity_) {
    return ConsumerCorrupt(CorruptError(StrFormat(
        "producer broke a rule: tail %llu is more than the capacity %llu "
        "ahead of head %llu",
        U(tail), U(capacity_), U(head_))));
  }
  if (tail % kFrameAlignment != 0) {
    return ConsumerCorrupt(CorruptError(StrFormat(
        "producer broke a rule: tail %llu is not 8-byte aligned", U(tail))));
  }
  return tail;
}

Status Ring::CheckFrame(const FrameHeader& header,
                        uint64_t pos,
                        uint64_t available) const {
  if (header.kind == kPaddingKind) {
    uint64_t rest = capacity_ - pos;
    if (header.length != rest - sizeof(FrameHeader) || header.flags != 0) {
      return CorruptError(StrFormat(
          "producer broke a rule: padding at offset %llu has length %u and "
          "flags %u; padding has flags 0 and fills the %llu bytes to the end",
          U(pos), header.length, header.flags, U(rest)));
    }
    if (rest > available) {
      return CorruptError(StrFormat(
          "producer broke a rule: padding at offset %llu extends past the "
          "published tail",
          U(pos)));
    }
    return Status::Ok();
  }
  if (header.kind == kInvalidKind) {
    return CorruptError(StrFormat(
        "producer broke a rule: frame at offset %llu has kind 0 (reserved; "
        "a zeroed page reads so)",
        U(pos)));
  }
  if (header.kind < kFirstChannelKind) {
    return CorruptError(StrFormat(
        "producer broke a rule: frame at offset %llu has kind %u, reserved "
        "to shm/",
        U(pos), header.kind));
  }
  if (header.length > max_frame_) {
    return CorruptError(StrFormat(
        "producer broke a rule: frame at offset %llu has length %u, above "
        "the largest frame %u",
        U(pos), header.length, max_frame_));
  }
  uint64_t bytes = FrameBytes(header.length);
  if (pos + bytes > capacity_) {
    return CorruptError(StrFormat(
        "producer broke a rule: frame at offset %llu of %llu bytes crosses "
        "the end of the ring without padding",
        U(pos), U(bytes)));
  }
  if (bytes > available) {
    return CorruptError(StrFormat(
        "producer broke a rule: frame at offset %llu of %llu bytes extends "
        "past the published tail (%llu bytes published)",
        U(pos), U(bytes), U(available)));
  }
  return Status::Ok();
}

Result<size_t> Ring::DrainImpl(FrameFn fn, void* ctx, size_t max_frames) {
  if (!consumer_error_.ok())
    return consumer_error_;
  SHMPORTS_ASSIGN_OR_RETURN(uint64_t tail, LoadTail());
  uint64_t head = head_;
  // Asks for the first published lines at once, so the header's miss and
  // the payload's misses overlap instead of following one another (the
  // payload copy starts only after the header was checked).
  const uint64_t ahead = std::min<uint64_t>(tail - head, kPrefetchBytes);
  for (uint64_t off = 0; off < ahead; off += kPrefetchStride)
    __builtin_prefetch(data_ + ((head + off) & mask_), 0);
  size_t delivered = 0;
  Status bad;
  while (head != tail && delivered < max_frames) {
    uint64_t pos = head & mask_;
    FrameHeader header;
    memcpy(&header, data_ + pos, sizeof(header));
    bad = CheckFrame(header, pos, tail - head);
    if (!bad.ok())
      break;
    if (header.kind == kPaddingKind) {
      head += capacity_ - pos;
      continue;
    }
    // Copy out before anyone parses: the producer can still write here.
    uint64_t offset = pos + sizeof(FrameHeader);
    uint8_t* copy = copy_page_ + offset % kRingPageSize;
    memcpy(copy, data_ + offset, header.length);
    fn(ctx, FrameView{header.kind, header.flags,
                      std::span<const uint8_t>(copy, header.length)});
    head += FrameBytes(header.length);
    ++delivered;
  }
  Bump(counters_.frames_drained, delivered);
  Status published = head != head_ ? PublishHead(head) : Status::Ok();
  if (!bad.ok())
    return ConsumerCorrupt(std::move(bad));
  if (!published.ok())
    return published;
  return delivered;
}

Status Ring::PublishHead(uint64_t head) {
  head_ = head;
  // Release: pairs with the load in RefreshHeadLocked. seq_cst, with the
  // load of producer_waiting below: the Dekker pair with WaitForSpace.
  Shared(control_->head).store(head, std::memory_order_seq_cst);
  Bump(counters_.drains, 1);
  uint32_t waiting =
      Shared(control_->producer_waiting).load(std::memory_order_seq_cst);
  if (waiting == 0) {
    Bump(counters_.space_wakes_avoided, 1);
    return Status::Ok();
  }
  if (waiting != 1) {
    return ConsumerCorrupt(CorruptError(StrFormat(
        "producer broke a rule: producer_waiting holds %u (must be 0 or 1)",
        waiting)));
  }
  // Claim the wake, as PublishLocked does for the data side.
  if (Shared(control_->producer_waiting)
          .exchange(0, std::memory_order_seq_cst) != 1) {
    Bump(counters_.space_wakes_avoided, 1);
    return Status::Ok();
  }
  // Pairs with the acquire load of the counter in WaitForSpace.
  Shared(control_->space_futex).fetch_add(1, std::memory_order_release);
  FutexWake(&control_->space_futex, INT_MAX);
  Bump(counters_.space_wakes_issued, 1);
  return Status::Ok();
}

Result<bool> Ring::HasData() {
  if (!consumer_error_.ok())
    return consumer_error_;
  SHMPORTS_ASSIGN_OR_RETURN(uint64_t tail, LoadTail());
  return tail != head_;
}

void Ring::AnnounceSleep() {
  // seq_cst, then the seq_cst tail load of the caller's re-check: the Dekker
  // pair with PublishLocked (store tail, load consumer_sleeping).
  Shared(control_->consumer_sleeping).store(1, std::memory_order_seq_cst);
}

void Ring::CancelSleep() {
  Shared(control_->consumer_sleeping).store(0, std::memory_order_relaxed);
}

Status Ring::WaitForData(Deadline deadline) {
  for (;;) {
    SHMPORTS_ASSIGN_OR_RETURN(bool has_data, HasData());
    if (has_data)
      return Status::Ok();
    if (deadline.Expired()) {
      return UnavailableError("no frame arrived before the deadline");
    }
    // Pairs with the release increment in WakeConsumer; loaded before the
    // announcement so that a racing wake changes the word.
    uint32_t seq = Shared(control_->data_futex).load(std::memory_order_acquire);
    AnnounceSleep();
    auto again = HasData();
    if (!again.ok() || *again) {
      CancelSleep();
      if (!again.ok())
        return std::move(again).TakeStatus();
      return Status::Ok();
    }
    Bump(counters_.consumer_sleeps, 1);
    FutexWait(&control_->data_futex, seq, deadline);
    CancelSleep();
  }
}

RingStats Ring::stats() const {
  auto get = [](const std::atomic<uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  RingStats s;
  s.frames_committed = get(counters_.frames_committed);
  s.publishes = get(counters_.publishes);
  s.full = get(counters_.full);
  s.data_wakes_issued = get(counters_.data_wakes_issued);
  s.data_wakes_avoided = get(counters_.data_wakes_avoided);
  s.frames_drained = get(counters_.frames_drained);
  s.drains = get(counters_.drains);
  s.space_wakes_issued = get(counters_.space_wakes_issued);
  s.space_wakes_avoided = get(counters_.space_wakes_avoided);
  s.consumer_sleeps = get(counters_.consumer_sleeps);
  s.producer_sleeps = get(counters_.producer_sleeps);
  return s;
}

}  // namespace shmports::shm
