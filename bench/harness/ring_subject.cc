#include "bench/harness/ring_subject.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>

#include "bench/harness/shared_page.h"
#include "bench/harness/transport_subject.h"
#include "core/base/str_format.h"
#include "shm/ring.h"
#include "shm/ring_layout.h"
#include "shm/segment.h"

namespace shmports::bench {
namespace {

constexpr uint16_t kBenchKind = shm::kFirstChannelKind;

// A bounded wait so a lost wake-up shows as a slow trial (and a stuck one
// reaches the watchdog) instead of a silent hang inside the ring.
constexpr auto kWaitSlice = std::chrono::milliseconds(100);

uint64_t CapacityFor(size_t size) {
  uint64_t capacity = shm::kDefaultRingCapacity;
  while (capacity / 4 < size && capacity < shm::kMaxRingCapacity)
    capacity *= 2;
  return capacity;
}

size_t SegmentSizeFor(uint64_t capacity) {
  return shm::kSegmentHeaderSize + 2 * shm::Ring::RegionSize(capacity);
}

class RingTransport {
 public:
  struct Options {
    bool busy_poll = true;
    // Publish `tail` once per this many messages (Commit(kDeferred) in
    // between); 1 publishes every message. A full ring, and the end of a
    // one-way stream, publish what is pending.
    uint32_t publish_every = 1;
  };

  static Result<std::unique_ptr<RingTransport>> CreateParent(
      const Options& options,
      const TrialParams& params,
      Handoff* handoff) {
    const uint64_t capacity = CapacityFor(params.size);
    SHMPORTS_ASSIGN_OR_RETURN(
        shm::Segment segment,
        shm::Segment::Create(SegmentSizeFor(capacity), "shmports-bench-ring"));
    int fd = fcntl(segment.fd(), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
      return ResourceExhaustedError(
          StrFormat("dup segment fd: %s", ErrnoText(errno).c_str()));
    }
    handoff->fds.push_back(fd);
    auto t = std::unique_ptr<RingTransport>(
        new RingTransport(options, std::move(segment)));
    SHMPORTS_RETURN_IF_ERROR(t->MakeRings(capacity, /*create=*/true));
    return t;
  }

  static Result<std::unique_ptr<RingTransport>> CreatePeer(
      const Options& options,
      const TrialParams& params,
      const Handoff& handoff) {
    if (handoff.fds.size() != 1) {
      return InvalidArgumentError("ring peer needs the segment fd");
    }
    const uint64_t capacity = CapacityFor(params.size);
    SHMPORTS_ASSIGN_OR_RETURN(
        shm::Segment segment,
        shm::Segment::Map(handoff.fds[0], SegmentSizeFor(capacity)));
    auto t = std::unique_ptr<RingTransport>(
        new RingTransport(options, std::move(segment)));
    SHMPORTS_RETURN_IF_ERROR(t->MakeRings(capacity, /*create=*/false));
    return t;
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    const auto length = static_cast<uint32_t>(size);
    for (;;) {
      std::span<uint8_t> payload;
      Status error;
      if (out_->Reserve(length, kBenchKind, 0, &payload, &error)) {
        fill(payload);
        if (++unpublished_ < options_.publish_every)
          return out_->Commit(shm::Ring::Publish::kDeferred);
        unpublished_ = 0;
        return out_->Commit();
      }
      if (!error.ok())
        return error;
      // Full: the consumer must see what we deferred before it can free
      // anything.
      SHMPORTS_RETURN_IF_ERROR(Flush());
      if (options_.busy_poll) {
        CpuRelax();
      } else {
        Status waited = out_->WaitForSpace(length, Deadline::In(kWaitSlice));
        if (!waited.ok() && waited.code() != StatusCode::kUnavailable) {
          return waited;
        }
      }
    }
  }

  // Publishes deferred frames (the harness calls it after the last send).
  Status Flush() {
    if (unpublished_ == 0)
      return Status::Ok();
    unpublished_ = 0;
    return out_->Flush();
  }

  template <typename Consume>
  Result<size_t> Receive(size_t max, Consume&& consume) {
    // A reply can only come to what the peer saw.
    SHMPORTS_RETURN_IF_ERROR(Flush());
    for (;;) {
      SHMPORTS_ASSIGN_OR_RETURN(size_t n, in_->Drain(
                                              [&](const shm::FrameView& frame) {
                                                consume(frame.payload);
                                              },
                                              max));
      if (n > 0)
        return n;
      if (options_.busy_poll) {
        CpuRelax();
      } else {
        Status waited = in_->WaitForData(Deadline::In(kWaitSlice));
        if (!waited.ok() && waited.code() != StatusCode::kUnavailable) {
          return waited;
        }
      }
    }
  }

  // This process's halves: producer of out_, consumer of in_.
  Counters GetCounters() const {
    const shm::RingStats out = out_->stats();
    const shm::RingStats in = in_->stats();
    return {
        {"frames_committed", out.frames_committed},
        {"publishes", out.publishes},
        {"full", out.full},
        {"data_wakes_issued", out.data_wakes_issued},
        {"data_wakes_avoided", out.data_wakes_avoided},
        {"producer_sleeps", out.producer_sleeps},
        {"frames_drained", in.frames_drained},
        {"drains", in.drains},
        {"space_wakes_issued", in.space_wakes_issued},
        {"consumer_sleeps", in.consumer_sleeps},
    };
  }

 private:
  RingTransport(const Options& options, shm::Segment segment)
      : options_(options), segment_(std::move(segment)) {}

  // Region 0 carries parent -> peer, region 1 peer -> parent.
  Status MakeRings(uint64_t capacity, bool create) {
    const size_t region = shm::Ring::RegionSize(capacity);
    shm::RingOptions ring_options;
    ring_options.capacity = capacity;
    std::unique_ptr<shm::Ring> rings[2];
    for (int i = 0; i < 2; ++i) {
      SHMPORTS_ASSIGN_OR_RETURN(
          std::span<uint8_t> bytes,
          segment_.Region(shm::kSegmentHeaderSize + i * region, region));
      auto ring = create ? shm::Ring::Create(bytes, ring_options)
                         : shm::Ring::Attach(bytes, ring_options);
      if (!ring.ok()) {
        return std::move(ring).TakeStatus().WithContext(
            StrFormat("ring %d of %llu bytes", i,
                      static_cast<unsigned long long>(capacity)));
      }
      rings[i] = std::move(ring).value();
    }
    out_ = std::move(rings[create ? 0 : 1]);
    in_ = std::move(rings[create ? 1 : 0]);
    return Status::Ok();
  }

  Options options_;
  shm::Segment segment_;  // Outlives the rings (declared first).
  std::unique_ptr<shm::Ring> out_;
  std::unique_ptr<shm::Ring> in_;
  uint32_t unpublished_ = 0;  // Committed with kDeferred, not yet published.
};

constexpr size_t kRingMaxMessage = shm::kMaxRingCapacity / 4;

}  // namespace

std::unique_ptr<Subject> MakeRingBusySubject() {
  return MakeTransportSubject<RingTransport>(
      {.name = "ring-busy",
       .description = "raw shm::Ring, busy-polling consumer and producer",
       .round_trip = true,
       .one_way = true,
       .max_size = kRingMaxMessage},
      {.busy_poll = true});
}

std::unique_ptr<Subject> MakeRingBatchSubject() {
  return MakeTransportSubject<RingTransport>(
      {.name = "ring-batch",
       .description = "raw shm::Ring, busy-polling, tail published once per "
                      "16 messages (Commit kDeferred + Flush)",
       .one_way = true,
       .max_size = kRingMaxMessage},
      {.busy_poll = true, .publish_every = 16});
}

std::unique_ptr<Subject> MakeRingSleepSubject() {
  return MakeTransportSubject<RingTransport>(
      {.name = "ring-sleep",
       .description = "raw shm::Ring, consumer sleeps in WaitForData, "
                      "producer in WaitForSpace",
       .round_trip = true,
       .one_way = true,
       .max_size = kRingMaxMessage},
      {.busy_poll = false});
}

}  // namespace shmports::bench
