// Ring across two (or more) threads over one mapping: the tests a
// ThreadSanitizer build runs. Floods check order and every byte.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "shm/futex.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "tests/shm/flood_frames.h"
#include "tests/util/test_util.h"

namespace shmports::shm {
namespace {

using ::shmports::testing::ConsumeFlood;
using ::shmports::testing::FillFloodFrame;
using ::shmports::testing::FloodChecker;
using ::shmports::testing::FloodFrameSize;
using ::shmports::testing::FloodOptions;
using ::shmports::testing::kFloodKind;
using ::shmports::testing::ProduceFlood;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

// A ring with separate producer and consumer Ring objects over one sealed
// segment (two mappings, as between processes).
struct RingPair {
  explicit RingPair(uint64_t capacity) {
    RingOptions options{.capacity = capacity};
    auto c = Segment::Create(kSegmentHeaderSize + Ring::RegionSize(capacity));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    creator = std::make_unique<Segment>(std::move(c).value());
    auto p = Segment::Map(dup(creator->fd()), creator->size());
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    peer = std::make_unique<Segment>(std::move(p).value());
    producer =
        std::move(Ring::Create(*creator->Region(kSegmentHeaderSize,
                                                Ring::RegionSize(capacity)),
                               options))
            .value();
    consumer = std::move(Ring::Attach(*peer->Region(kSegmentHeaderSize,
                                                    Ring::RegionSize(capacity)),
                                      options))
                   .value();
  }
  std::unique_ptr<Segment> creator;
  std::unique_ptr<Segment> peer;
  std::unique_ptr<Ring> producer;
  std::unique_ptr<Ring> consumer;
};

void RunFlood(RingPair& pair, const FloodOptions& options) {
  Status produced;
  std::thread producer(
      [&] { produced = ProduceFlood(*pair.producer, options); });
  Status consumed = ConsumeFlood(*pair.consumer, options);
  producer.join();
  EXPECT_TRUE(produced.ok()) << produced.ToString();
  EXPECT_TRUE(consumed.ok()) << consumed.ToString();
  EXPECT_EQ(pair.producer->stats().frames_committed, options.frames);
  EXPECT_EQ(pair.consumer->stats().frames_drained, options.frames);
}

TEST(RingThreadsTest, FloodOfRandomSizesArrivesInOrderAndIntact) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RingPair pair(kDefaultRingCapacity);
  FloodOptions options;
  options.seed = seed;
  options.frames = Scaled(10'000'000, 20'000);
  options.max_size = 4096;
  RunFlood(pair, options);
  RingStats p = pair.producer->stats();
  RingStats c = pair.consumer->stats();
  std::printf(
      "publishes %llu, wakes issued %llu avoided %llu, consumer sleeps %llu, "
      "drains %llu, producer full %llu sleeps %llu\n",
      static_cast<unsigned long long>(p.publishes),
      static_cast<unsigned long long>(p.data_wakes_issued),
      static_cast<unsigned long long>(p.data_wakes_avoided),
      static_cast<unsigned long long>(c.consumer_sleeps),
      static_cast<unsigned long long>(c.drains),
      static_cast<unsigned long long>(p.full),
      static_cast<unsigned long long>(p.producer_sleeps));
  // Most publishes find the consumer awake (wakes avoided), and a drain
  // covers many frames.
  EXPECT_GT(p.data_wakes_avoided, 0u);
  EXPECT_LE(c.drains, c.frames_drained);
}

TEST(RingThreadsTest, BusyPollFloodInASmallRing) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RingPair pair(kMinRingCapacity * 4);
  FloodOptions options;
  options.seed = seed;
  options.frames = Scaled(500'000, 10'000);
  options.max_size = 4096;
  options.busy_poll = true;
  RunFlood(pair, options);
  EXPECT_GT(pair.producer->stats().full, 0u);
}

TEST(RingThreadsTest, SleepingConsumerIsWokenByABurstyProducer) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RingPair pair(kDefaultRingCapacity);
  FloodOptions options;
  options.seed = seed;
  options.frames = Scaled(20'000, 2'000);
  options.max_size = 512;
  options.burst = 16;
  options.pause_us = 300;
  options.wait_ms = 10000;
  RunFlood(pair, options);
  EXPECT_GT(pair.consumer->stats().consumer_sleeps, 0u);
  EXPECT_GT(pair.producer->stats().data_wakes_issued, 0u);
}

TEST(RingThreadsTest, BlockedProducerIsWokenWhenSpaceIsFreed) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RingPair pair(kMinRingCapacity);
  FloodOptions options;
  options.seed = seed;
  options.frames = Scaled(50'000, 5'000);
  options.max_size = 1024;
  options.wait_ms = 10000;
  Status produced;
  std::thread producer(
      [&] { produced = ProduceFlood(*pair.producer, options); });
  // A slow consumer: drain a few frames at a time with pauses, so the
  // producer keeps finding the ring full and sleeping.
  FloodChecker checker(seed, options.max_size);
  Status consumed;
  while (checker.next() < options.frames && consumed.ok()) {
    auto n = pair.consumer->Drain(
        [&](const FrameView& f) { checker.Check(f.kind, f.payload); }, 3);
    if (!n.ok()) {
      consumed = n.status();
    } else if (*n == 0) {
      consumed =
          pair.consumer->WaitForData(Deadline::In(std::chrono::seconds(10)));
    } else if (checker.next() % 64 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ASSERT_TRUE(checker.ok()) << checker.error();
  }
  producer.join();
  EXPECT_TRUE(produced.ok()) << produced.ToString();
  EXPECT_TRUE(consumed.ok()) << consumed.ToString();
  EXPECT_GT(pair.producer->stats().producer_sleeps, 0u);
  EXPECT_GT(pair.consumer->stats().space_wakes_issued, 0u);
}

// The producer waits for space the way channel/'s io thread does: announce,
// re-check, then a FUTEX_WAIT on the space word with the announced value (an
// io_uring FUTEX_WAIT in channel/), never WaitForSpace. A lost wake-up fails
// by the wait's deadline.
TEST(RingThreadsTest, AnnouncedSpaceWaitIsNeverLost) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RingPair pair(kMinRingCapacity);
  const uint64_t frames = Scaled(50'000, 5'000);
  constexpr uint32_t kMaxSize = 1024;
  Status produced;
  uint64_t sleeps = 0;
  std::thread producer([&] {
    std::vector<uint8_t> frame;
    for (uint64_t i = 0; i < frames && produced.ok();) {
      uint32_t length = FloodFrameSize(seed, i, kMaxSize);
      frame.resize(length);
      FillFloodFrame(seed, i, frame);
      produced = pair.producer->Write(kFloodKind, frame);
      if (produced.ok()) {
        ++i;
        continue;
      }
      if (produced.code() != StatusCode::kUnavailable)
        break;
      produced = Status::Ok();
      uint32_t expected = pair.producer->AnnounceSpaceWait();
      auto fits = pair.producer->HasSpace(length);
      if (!fits.ok() || *fits) {
        pair.producer->CancelSpaceWait();
        if (!fits.ok())
          produced = fits.status();
        continue;
      }
      ++sleeps;
      Deadline deadline = Deadline::In(std::chrono::seconds(10));
      int err =
          FutexWait(pair.producer->space_futex_word(), expected, deadline);
      pair.producer->CancelSpaceWait();
      if (err == ETIMEDOUT)
        produced = UnavailableError("space wake-up lost");
    }
  });
  FloodChecker checker(seed, kMaxSize);
  Status consumed;
  while (checker.next() < frames && consumed.ok() && checker.ok()) {
    auto n = pair.consumer->Drain(
        [&](const FrameView& f) { checker.Check(f.kind, f.payload); }, 3);
    if (!n.ok()) {
      consumed = n.status();
    } else if (*n == 0) {
      consumed =
          pair.consumer->WaitForData(Deadline::In(std::chrono::seconds(10)));
    }
  }
  producer.join();
  EXPECT_TRUE(checker.ok()) << checker.error();
  EXPECT_TRUE(produced.ok()) << produced.ToString();
  EXPECT_TRUE(consumed.ok()) << consumed.ToString();
  EXPECT_EQ(checker.next(), frames);
  std::printf("producer sleeps %llu, space wakes issued %llu\n",
              static_cast<unsigned long long>(sleeps),
              static_cast<unsigned long long>(
                  pair.consumer->stats().space_wakes_issued));
}

TEST(RingThreadsTest, SeveralProducerThreadsKeepTheirOwnOrder) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  constexpr int kProducers = 3;
  RingPair pair(kMinRingCapacity * 16);
  uint64_t per_producer = Scaled(200'000, 5'000);
  std::vector<std::thread> threads;
  std::vector<Status> results(kProducers);
  for (int i = 0; i < kProducers; ++i) {
    threads.emplace_back([&, i] {
      FloodOptions options;
      options.seed = seed + i;
      options.frames = per_producer;
      options.max_size = 2048;
      options.flags = static_cast<uint16_t>(i);
      results[i] = ProduceFlood(*pair.producer, options);
    });
  }
  std::vector<FloodChecker> checkers;
  for (int i = 0; i < kProducers; ++i)
    checkers.emplace_back(seed + i, 2048);
  uint64_t total = 0;
  Status consumed;
  bool bad_flags = false;
  while (total < per_producer * kProducers && consumed.ok()) {
    auto n = pair.consumer->Drain([&](const FrameView& f) {
      if (f.flags >= kProducers) {
        bad_flags = true;
        return;
      }
      checkers[f.flags].Check(f.kind, f.payload);
    });
    if (!n.ok()) {
      consumed = n.status();
    } else if (*n == 0) {
      consumed =
          pair.consumer->WaitForData(Deadline::In(std::chrono::seconds(30)));
    }
    total += n.ok() ? *n : 0;
  }
  for (auto& t : threads)
    t.join();
  EXPECT_TRUE(consumed.ok()) << consumed.ToString();
  EXPECT_FALSE(bad_flags);
  for (int i = 0; i < kProducers; ++i) {
    EXPECT_TRUE(results[i].ok()) << results[i].ToString();
    EXPECT_TRUE(checkers[i].ok()) << checkers[i].error();
    EXPECT_EQ(checkers[i].next(), per_producer);
  }
}

}  // namespace
}  // namespace shmports::shm
