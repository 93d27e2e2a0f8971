// Ring between two processes: the peer is shm_ring_peer, fork+exec'd, given
// a real sealed memfd over a Unix socket (SCM_RIGHTS). Floods (busy-poll and
// sleeping), space wake-ups, a producer SIGKILLed at random moments checked
// against a ground-truth count, and a peer attacking the segment.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "shm/ring.h"
#include "shm/segment.h"
#include "tests/multiprocess/ring_peer.h"
#include "tests/shm/flood_frames.h"
#include "tests/util/test_util.h"

namespace shmports::shm {
namespace {

using ::shmports::testing::ConsumeFlood;
using ::shmports::testing::FloodChecker;
using ::shmports::testing::FloodOptions;
using ::shmports::testing::LaunchPeer;
using ::shmports::testing::Peer;
using ::shmports::testing::PeerConfig;
using ::shmports::testing::PeerMode;
using ::shmports::testing::PeerReport;
using ::shmports::testing::ProduceFlood;
using ::shmports::testing::ReapPeer;
using ::shmports::testing::ReceiveReport;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

constexpr auto kReportTimeout = std::chrono::seconds(120);

// A segment holding one ring (created here) and a ground-truth page after
// it, plus the PeerConfig that describes it.
struct Shared {
  explicit Shared(uint64_t capacity, uint64_t seed) {
    size_t ring_size = Ring::RegionSize(capacity);
    auto s = Segment::Create(kSegmentHeaderSize + ring_size + 4096);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    segment = std::make_unique<Segment>(std::move(s).value());
    auto r = Ring::Create(*segment->Region(kSegmentHeaderSize, ring_size),
                          RingOptions{.capacity = capacity});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ring = std::move(r).value();
    config = {};
    config.seed = seed;
    config.segment_size = segment->size();
    config.ring_offset = kSegmentHeaderSize;
    config.capacity = capacity;
    config.truth_offset = kSegmentHeaderSize + ring_size;
    config.max_size = 4096;
    config.wait_ms = 10000;
  }

  uint64_t* truth() {
    return reinterpret_cast<uint64_t*>(segment->base() + config.truth_offset);
  }

  FloodOptions Flood() const {
    FloodOptions options;
    options.seed = config.seed;
    options.frames = config.frames;
    options.max_size = config.max_size;
    options.busy_poll = config.busy_poll != 0;
    options.wait_ms = config.wait_ms;
    return options;
  }

  std::unique_ptr<Segment> segment;
  std::unique_ptr<Ring> ring;
  PeerConfig config;
};

// Launches the peer, runs `local` here, then collects the peer's report.
PeerReport RunWithPeer(Shared& shared, const std::function<Status()>& local) {
  auto peer = LaunchPeer(shared.config, shared.segment->fd());
  EXPECT_TRUE(peer.ok()) << peer.status().ToString();
  if (!peer.ok())
    return {};
  Status here = local();
  EXPECT_TRUE(here.ok()) << here.ToString();
  auto report = ReceiveReport(*peer, kReportTimeout);
  EXPECT_TRUE(report.ok()) << report.status().ToString();
  int wstatus = ReapPeer(&*peer, std::chrono::seconds(10));
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
      << "peer wait status " << wstatus;
  if (!report.ok())
    return {};
  EXPECT_EQ(report->code, static_cast<uint32_t>(StatusCode::kOk))
      << report->message;
  return *report;
}

TEST(RingMultiprocessTest, BusyPollFloodFromAnotherProcess) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Shared shared(kDefaultRingCapacity, seed);
  shared.config.mode = PeerMode::kProduce;
  shared.config.busy_poll = 1;
  shared.config.frames = Scaled(1'000'000, 20'000);
  PeerReport report = RunWithPeer(
      shared, [&] { return ConsumeFlood(*shared.ring, shared.Flood()); });
  EXPECT_EQ(report.stats.frames_committed, shared.config.frames);
  EXPECT_EQ(shared.ring->stats().frames_drained, shared.config.frames);
}

TEST(RingMultiprocessTest, SleepingConsumerWithABurstyProducerLosesNoWakeUp) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Shared shared(kDefaultRingCapacity, seed);
  shared.config.mode = PeerMode::kProduce;
  shared.config.frames = Scaled(100'000, 5'000);
  shared.config.max_size = 1024;
  shared.config.burst = 32;
  shared.config.pause_us = 400;
  // A lost wake-up fails here, by this deadline, instead of hanging.
  shared.config.wait_ms = 5000;
  PeerReport report = RunWithPeer(
      shared, [&] { return ConsumeFlood(*shared.ring, shared.Flood()); });
  EXPECT_GT(shared.ring->stats().consumer_sleeps, 0u);
  EXPECT_GT(report.stats.data_wakes_issued, 0u);
}

TEST(RingMultiprocessTest, BlockedProducerIsWokenByTheOtherProcess) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Shared shared(kMinRingCapacity, seed);
  shared.config.mode = PeerMode::kConsume;
  shared.config.frames = Scaled(100'000, 5'000);
  shared.config.max_size = 1024;
  shared.config.drain_max = 3;
  shared.config.pause_us = 300;
  shared.config.wait_ms = 5000;
  PeerReport report = RunWithPeer(
      shared, [&] { return ProduceFlood(*shared.ring, shared.Flood()); });
  EXPECT_GT(shared.ring->stats().producer_sleeps, 0u);
  EXPECT_GT(report.stats.space_wakes_issued, 0u);
}

// Consumes from `ring` until `until`, checking every frame.
Status ConsumeUntil(Ring& ring, FloodChecker& checker, Deadline until) {
  while (!until.Expired()) {
    auto n = ring.Drain(
        [&](const FrameView& f) { checker.Check(f.kind, f.payload); });
    if (!n.ok())
      return n.status();
    if (!checker.ok())
      return InternalError(checker.error());
    if (*n == 0) {
      Status s = ring.WaitForData(until);
      if (!s.ok() && s.code() != StatusCode::kUnavailable)
        return s;
    }
  }
  return Status::Ok();
}

TEST(RingMultiprocessTest, KilledProducerLeavesExactlyWhatItCommitted) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  int rounds = static_cast<int>(Scaled(20, 4));
  uint64_t total_committed = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(round);
    Shared shared(kMinRingCapacity * 16, seed + round);
    shared.config.mode = PeerMode::kCrashProduce;
    shared.config.max_size = 2048;
    auto peer = LaunchPeer(shared.config, shared.segment->fd());
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    FloodChecker checker(shared.config.seed, shared.config.max_size);
    auto alive_for = std::chrono::microseconds(1000 + rng() % 30000);
    Status consumed =
        ConsumeUntil(*shared.ring, checker, Deadline::In(alive_for));
    kill(peer->pid, SIGKILL);
    int wstatus = ReapPeer(&*peer, std::chrono::seconds(10));
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    ASSERT_TRUE(consumed.ok()) << consumed.ToString();
    // Pairs with the release store after each Commit in the peer.
    uint64_t committed = std::atomic_ref<uint64_t>(*shared.truth())
                             .load(std::memory_order_acquire);
    // Drain what the dead producer published.
    for (;;) {
      auto n = shared.ring->Drain(
          [&](const FrameView& f) { checker.Check(f.kind, f.payload); });
      ASSERT_TRUE(n.ok()) << n.status().ToString();
      ASSERT_TRUE(checker.ok()) << checker.error();
      if (*n == 0)
        break;
    }
    total_committed += committed;
    EXPECT_TRUE(checker.next() == committed || checker.next() == committed + 1)
        << "received " << checker.next() << ", ground truth " << committed;
    auto has = shared.ring->HasData();
    ASSERT_TRUE(has.ok()) << has.status().ToString();
    EXPECT_FALSE(*has);
  }
  // The producer did run: the rounds are not all kills before the first frame.
  EXPECT_GT(total_committed, 0u);
}

TEST(RingMultiprocessTest, AttackingPeerCannotTruncateAndHolesNeverCrash) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Shared shared(kMinRingCapacity * 4, seed);
  // Some traffic is in flight when the holes appear.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        shared.ring->Write(testing::kFloodKind, std::vector<uint8_t>(700, 1))
            .ok());
  }
  shared.config.mode = PeerMode::kAttack;
  shared.config.frames = 16;  // Holes to punch.
  shared.config.pause_us = 500;
  Status last;
  PeerReport report = RunWithPeer(shared, [&] {
    // Keep using both halves while the peer punches holes.
    Deadline until = Deadline::In(std::chrono::milliseconds(30));
    while (!until.Expired()) {
      auto n = shared.ring->Drain([](const FrameView&) {});
      if (!n.ok()) {
        last = n.status();
        break;
      }
      Status w =
          shared.ring->Write(testing::kFloodKind, std::vector<uint8_t>(100));
      if (!w.ok() && w.code() != StatusCode::kUnavailable) {
        last = w;
        break;
      }
    }
    return Status::Ok();
  });
  EXPECT_EQ(report.ftruncate_errno, EPERM);
  EXPECT_TRUE(last.ok() || last.code() == StatusCode::kCorrupt)
      << last.ToString();
  // The segment kept its size: every page is still mapped and readable.
  volatile uint8_t sum = 0;
  for (size_t off = 0; off < shared.segment->size(); off += 4096) {
    if (off >= kSegmentHeaderSize + kRingControlSize + shared.config.capacity &&
        off < kSegmentHeaderSize + Ring::RegionSize(shared.config.capacity)) {
      continue;  // The guard page.
    }
    sum = static_cast<uint8_t>(sum + shared.segment->base()[off]);
  }
}

TEST(RingMultiprocessTest, PeerRefusesAnUnsealedMemfd) {
  int fd = memfd_create("shmports-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4 * 4096), 0);
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL), 0);
  PeerConfig config = {};
  config.mode = PeerMode::kMapOnly;
  config.segment_size = 4 * 4096;
  auto peer = LaunchPeer(config, fd);
  close(fd);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto report = ReceiveReport(*peer, kReportTimeout);
  ReapPeer(&*peer, std::chrono::seconds(10));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->code,
            static_cast<uint32_t>(StatusCode::kProtocolViolation));
  EXPECT_THAT(report->message, ::testing::HasSubstr("F_SEAL_SHRINK"));
}

}  // namespace
}  // namespace shmports::shm
