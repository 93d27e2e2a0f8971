// Ring in one thread: edge states reached by poking head and tail, the
// distrust rules on both sides (one test each, plus seeded garbage), wake
// bookkeeping, and the flood checker's ability to fail.
#include "shm/ring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "shm/futex.h"
#include "shm/segment.h"
#include "tests/shm/flood_frames.h"
#include "tests/util/test_util.h"

namespace shmports::shm {
namespace {

using ::shmports::testing::FillFloodFrame;
using ::shmports::testing::FloodChecker;
using ::shmports::testing::FloodFrameSize;
using ::shmports::testing::kFloodKind;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;
using ::testing::HasSubstr;

constexpr uint64_t kCap = 4096;
constexpr uint16_t kKind = kFirstChannelKind;

// One ring in a real sealed segment, with a producer Ring (Create) and a
// consumer Ring (Attach) over the same mapping, and the control page exposed
// so tests can play the hostile peer.
class RingTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(RingOptions{.capacity = kCap}); }

  void Make(RingOptions options) {
    producer_.reset();
    consumer_.reset();
    options_ = options;
    auto segment = Segment::Create(kSegmentHeaderSize +
                                   Ring::RegionSize(options.capacity));
    ASSERT_TRUE(segment.ok()) << segment.status().ToString();
    segment_ = std::make_unique<Segment>(std::move(segment).value());
    auto region = segment_->Region(kSegmentHeaderSize,
                                   Ring::RegionSize(options.capacity));
    ASSERT_TRUE(region.ok());
    region_ = *region;
    auto producer = Ring::Create(region_, options);
    ASSERT_TRUE(producer.ok()) << producer.status().ToString();
    producer_ = std::move(producer).value();
    Reattach();
  }

  // Re-attaches the consumer (and, if `producer_too`, the producer) so they
  // start from the indices currently in the control page.
  void Reattach(bool producer_too = false) {
    if (producer_too) {
      auto producer = Ring::Attach(region_, options_);
      ASSERT_TRUE(producer.ok()) << producer.status().ToString();
      producer_ = std::move(producer).value();
    }
    auto consumer = Ring::Attach(region_, options_);
    ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
    consumer_ = std::move(consumer).value();
  }

  RingControl* control() {
    return reinterpret_cast<RingControl*>(region_.data());
  }
  uint8_t* data() { return region_.data() + kRingControlSize; }

  // Writes a frame of `length` bytes filled with `fill`.
  Status Write(uint32_t length, uint8_t fill = 0xab, uint16_t kind = kKind) {
    std::vector<uint8_t> bytes(length, fill);
    return producer_->Write(kind, bytes);
  }

  // Drains everything; returns frame lengths.
  std::vector<uint32_t> DrainLengths(Status* status = nullptr) {
    std::vector<uint32_t> lengths;
    auto n = consumer_->Drain([&](const FrameView& frame) {
      lengths.push_back(static_cast<uint32_t>(frame.payload.size()));
    });
    if (status != nullptr) {
      *status = n.ok() ? Status::Ok() : n.status();
    } else {
      EXPECT_TRUE(n.ok()) << n.status().ToString();
    }
    return lengths;
  }

  // Plays a hostile producer: writes a raw header at `pos` in the data area.
  void PokeFrame(uint64_t pos,
                 uint32_t length,
                 uint16_t kind,
                 uint16_t flags = 0) {
    FrameHeader header{length, kind, flags};
    memcpy(data() + pos, &header, sizeof(header));
  }

  // Writes until a write fails; `*last` is that failure.
  void FillUntilFull(Status* last) {
    for (int i = 0; i < 100; ++i) {
      *last = producer_->Write(kKind, std::vector<uint8_t>(1016));
      if (!last->ok())
        return;
    }
  }

  Status DrainStatus() {
    auto n = consumer_->Drain([](const FrameView&) {});
    return n.ok() ? Status::Ok() : n.status();
  }

  RingOptions options_;
  std::unique_ptr<Segment> segment_;
  std::span<uint8_t> region_;
  std::unique_ptr<Ring> producer_;
  std::unique_ptr<Ring> consumer_;
};

// ---- Creation ----

TEST_F(RingTest, BadCapacitiesNameTheRuleAndTheNearestValidSize) {
  struct Case {
    uint64_t capacity;
    uint64_t nearest;
  };
  for (Case c : {Case{0, 4096}, Case{1000, 4096}, Case{5000, 4096},
                 Case{6200, 8192}, Case{(1u << 20) + 1, 1u << 20},
                 Case{uint64_t{1} << 31, uint64_t{1} << 30}}) {
    Status s = Ring::CheckCapacity(c.capacity);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.capacity;
    EXPECT_THAT(s.ToString(), HasSubstr("power of two"));
    EXPECT_THAT(s.ToString(),
                HasSubstr("nearest valid size is " + std::to_string(c.nearest)))
        << s.ToString();
  }
  EXPECT_TRUE(Ring::CheckCapacity(4096).ok());
  EXPECT_TRUE(Ring::CheckCapacity(kDefaultRingCapacity).ok());
  auto ring = Ring::Create(region_, RingOptions{.capacity = 3000});
  EXPECT_EQ(ring.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RingTest, MaxFrameAboveQuarterCapacityIsRefused) {
  auto ring =
      Ring::Create(region_, RingOptions{.capacity = kCap, .max_frame = 1025});
  EXPECT_EQ(ring.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(producer_->max_frame(), kCap / 4);
}

TEST_F(RingTest, AttachRefusesAMismatchedLayout) {
  auto other =
      Ring::Attach(region_, RingOptions{.capacity = kCap, .max_frame = 512});
  EXPECT_EQ(other.status().code(), StatusCode::kCorrupt);
  EXPECT_THAT(other.status().ToString(), HasSubstr("handshake agreed"));
  control()->magic ^= 1;
  auto bad = Ring::Attach(region_, options_);
  EXPECT_EQ(bad.status().code(), StatusCode::kCorrupt);
  EXPECT_THAT(bad.status().ToString(), HasSubstr("magic"));
}

TEST_F(RingTest, GuardPageFollowsTheDataArea) {
  // Death test: touching the guard page faults.
  EXPECT_DEATH({ *static_cast<volatile uint8_t*>(data() + kCap) = 1; }, "");
}

// ---- Edge states ----

TEST_F(RingTest, EmptyRingHasNothingToDrain) {
  auto has = consumer_->HasData();
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
  EXPECT_TRUE(DrainLengths().empty());
  EXPECT_EQ(
      consumer_->WaitForData(Deadline::In(std::chrono::milliseconds(5))).code(),
      StatusCode::kUnavailable);
}

TEST_F(RingTest, ExactlyFullRingRefusesEvenAnEmptyFrame) {
  // Four frames of 8 + 1016 bytes fill 4096 exactly.
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  EXPECT_EQ(control()->tail, kCap);
  std::span<uint8_t> payload;
  Status error;
  EXPECT_FALSE(producer_->Reserve(0, kKind, 0, &payload, &error));
  EXPECT_TRUE(error.ok());
  EXPECT_EQ(producer_->stats().full, 1u);
  EXPECT_EQ(Write(0).code(), StatusCode::kUnavailable);
  EXPECT_EQ(DrainLengths(), (std::vector<uint32_t>{1016, 1016, 1016, 1016}));
  EXPECT_TRUE(Write(1016).ok());
}

TEST_F(RingTest, FrameThatJustFitsBeforeTheEndNeedsNoPadding) {
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(Write(1016).ok());
  DrainLengths();
  ASSERT_TRUE(Write(1016).ok());  // Ends exactly at the end of the data area.
  EXPECT_EQ(control()->tail, kCap);
  ASSERT_TRUE(Write(10).ok());  // Starts at offset 0 of the next lap.
  EXPECT_EQ(control()->tail, kCap + 24);
  EXPECT_EQ(DrainLengths(), (std::vector<uint32_t>{1016, 10}));
}

TEST_F(RingTest, WrapFillsTheEndWithPadding) {
  // Leave 16 bytes before the end, then write a frame that needs 112.
  ASSERT_TRUE(Write(1016).ok());
  ASSERT_TRUE(Write(1016).ok());
  ASSERT_TRUE(Write(1016).ok());
  ASSERT_TRUE(Write(1000).ok());  // 1008 bytes: tail at 4080.
  EXPECT_EQ(control()->tail, kCap - 16);
  DrainLengths();
  ASSERT_TRUE(Write(100).ok());
  FrameHeader padding;
  memcpy(&padding, data() + kCap - 16, sizeof(padding));
  EXPECT_EQ(padding.kind, kPaddingKind);
  EXPECT_EQ(padding.length, 8u);
  EXPECT_EQ(control()->tail, kCap + 112);
  EXPECT_EQ(DrainLengths(), (std::vector<uint32_t>{100}));
  EXPECT_EQ(control()->head, kCap + 112);
}

TEST_F(RingTest, WrapAtLargeIndicesPokedIntoHeadAndTail) {
  // Indices are 64-bit and never wrap in practice; far from zero they
  // behave the same.
  uint64_t base = (uint64_t{1} << 62) + 7 * kCap - 16;
  control()->head = base;
  control()->tail = base;
  Reattach(/*producer_too=*/true);
  ASSERT_TRUE(Write(100).ok());
  ASSERT_TRUE(Write(0).ok());
  EXPECT_EQ(control()->tail, base + 16 + 112 + 8);
  EXPECT_EQ(DrainLengths(), (std::vector<uint32_t>{100, 0}));
}

TEST_F(RingTest, ZeroLengthFramesCarryKindAndFlags) {
  std::span<uint8_t> payload;
  Status error;
  for (uint16_t i = 0; i < 600; ++i) {  // 600 * 8 bytes: wraps once.
    uint16_t kind = static_cast<uint16_t>(kKind + (i % 3));
    if (!producer_->Reserve(0, kind, i, &payload, &error)) {
      ASSERT_TRUE(error.ok()) << error.ToString();
      DrainLengths();
      if (!producer_->Reserve(0, kind, i, &payload, &error)) {
        FAIL() << "still full after a drain: " << error.ToString();
      }
    }
    EXPECT_TRUE(payload.empty());
    Status committed = producer_->Commit();
    ASSERT_TRUE(committed.ok()) << committed.ToString();
  }
  uint16_t seen = 0;
  auto n = consumer_->Drain([&](const FrameView& f) {
    EXPECT_TRUE(f.payload.empty());
    EXPECT_EQ(f.kind, kKind + (f.flags % 3));
    ++seen;
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, seen);
  EXPECT_GT(seen, 0);
}

TEST_F(RingTest, LargestFrameFitsAndOneMoreByteIsInvalid) {
  std::vector<uint8_t> big(kCap / 4, 0x5a);
  ASSERT_TRUE(producer_->Write(kKind, big).ok());
  std::vector<uint8_t> too_big(kCap / 4 + 1);
  Status s = producer_->Write(kKind, too_big);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  std::span<uint8_t> payload;
  Status error;
  EXPECT_FALSE(producer_->Reserve(kCap / 4 + 1, kKind, 0, &payload, &error));
  EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(error.ToString(), HasSubstr("largest frame"));
  std::vector<uint8_t> got;
  ASSERT_TRUE(consumer_
                  ->Drain([&](const FrameView& f) {
                    got.assign(f.payload.begin(), f.payload.end());
                  })
                  .ok());
  EXPECT_EQ(got, big);
}

TEST_F(RingTest, ReservedKindsAreRefusedByTheProducer) {
  for (uint16_t kind : {uint16_t{0}, kPaddingKind, uint16_t{15}}) {
    EXPECT_EQ(producer_->Write(kind, {}).code(), StatusCode::kInvalidArgument);
  }
}

TEST_F(RingTest, AbandonedReservationAppendsNothing) {
  std::span<uint8_t> payload;
  Status error;
  if (!producer_->Reserve(64, kKind, 0, &payload, &error)) {
    FAIL() << error.ToString();
  }
  producer_->Abandon();
  ASSERT_TRUE(Write(8).ok());
  EXPECT_EQ(DrainLengths(), (std::vector<uint32_t>{8}));
}

TEST_F(RingTest, DeferredCommitsArePublishedTogether) {
  std::span<uint8_t> payload;
  Status error;
  for (int i = 0; i < 5; ++i) {
    if (!producer_->Reserve(16, kKind, 0, &payload, &error)) {
      FAIL() << error.ToString();
    }
    Status committed = producer_->Commit(Ring::Publish::kDeferred);
    ASSERT_TRUE(committed.ok());
  }
  EXPECT_EQ(control()->tail, 0u);
  EXPECT_TRUE(DrainLengths().empty());
  ASSERT_TRUE(producer_->Flush().ok());
  EXPECT_EQ(producer_->stats().publishes, 1u);
  EXPECT_EQ(DrainLengths().size(), 5u);
}

TEST_F(RingTest, DrainRespectsMaxFramesAndPublishesHeadOnce) {
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(Write(8).ok());
  auto n = consumer_->Drain([](const FrameView&) {}, 4);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(control()->head, 4u * 16);
  EXPECT_EQ(consumer_->stats().drains, 1u);
  EXPECT_EQ(DrainLengths().size(), 6u);
}

TEST_F(RingTest, CallbackGetsAPrivateCopy) {
  ASSERT_TRUE(Write(32, 0x11).ok());
  ASSERT_TRUE(consumer_
                  ->Drain([&](const FrameView& f) {
                    // A producer scribbling over the ring now must not change
                    // what the callback reads.
                    memset(data(), 0xee, 64);
                    for (uint8_t b : f.payload)
                      EXPECT_EQ(b, 0x11);
                    EXPECT_FALSE(f.payload.data() >= data() &&
                                 f.payload.data() < data() + kCap);
                  })
                  .ok());
}

// ---- Wake bookkeeping ----

TEST_F(RingTest, ProducerWakesOnlyAnAnnouncedSleeper) {
  ASSERT_TRUE(Write(8).ok());
  EXPECT_EQ(producer_->stats().data_wakes_avoided, 1u);
  EXPECT_EQ(producer_->stats().data_wakes_issued, 0u);
  uint32_t before = *consumer_->data_futex_word();
  consumer_->AnnounceSleep();
  ASSERT_TRUE(Write(8).ok());
  consumer_->CancelSleep();
  EXPECT_EQ(producer_->stats().data_wakes_issued, 1u);
  EXPECT_NE(*consumer_->data_futex_word(), before);
}

TEST_F(RingTest, OneWakePerAnnouncedSleep) {
  consumer_->AnnounceSleep();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(Write(8).ok());
  // The first publish claimed the wake (swapped the flag out); the others
  // did not repeat the syscall.
  EXPECT_EQ(producer_->stats().data_wakes_issued, 1u);
  EXPECT_EQ(producer_->stats().data_wakes_avoided, 4u);
  EXPECT_EQ(control()->consumer_sleeping, 0u);
  control()->producer_waiting = 1;
  DrainLengths();
  ASSERT_TRUE(Write(8).ok());
  DrainLengths();
  EXPECT_EQ(consumer_->stats().space_wakes_issued, 1u);
  EXPECT_EQ(control()->producer_waiting, 0u);
}

TEST_F(RingTest, ConsumerWakesOnlyAWaitingProducer) {
  ASSERT_TRUE(Write(8).ok());
  DrainLengths();
  EXPECT_EQ(consumer_->stats().space_wakes_avoided, 1u);
  ASSERT_TRUE(Write(8).ok());
  control()->producer_waiting = 1;
  uint32_t before = *producer_->space_futex_word();
  DrainLengths();
  EXPECT_EQ(consumer_->stats().space_wakes_issued, 1u);
  EXPECT_NE(*producer_->space_futex_word(), before);
}

TEST_F(RingTest, WaitForSpaceTimesOutOnAFullRing) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  Status s =
      producer_->WaitForSpace(8, Deadline::In(std::chrono::milliseconds(5)));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(control()->producer_waiting, 0u);
  DrainLengths();
  EXPECT_TRUE(producer_->WaitForSpace(8, Deadline::Now()).ok());
}

TEST_F(RingTest, AnnouncedSpaceWaitIsWokenByTheNextDrain) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  uint32_t expected = producer_->AnnounceSpaceWait();
  EXPECT_EQ(control()->producer_waiting, 1u);
  auto fits = producer_->HasSpace(8);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_FALSE(*fits);
  DrainLengths();
  // The drain claimed the wake and changed the word, so a FUTEX_WAIT armed
  // with `expected` now returns at once.
  EXPECT_EQ(consumer_->stats().space_wakes_issued, 1u);
  EXPECT_EQ(control()->producer_waiting, 0u);
  EXPECT_NE(*producer_->space_futex_word(), expected);
  EXPECT_EQ(FutexWait(producer_->space_futex_word(), expected,
                      Deadline::In(std::chrono::seconds(10))),
            EAGAIN);
  producer_->CancelSpaceWait();
  EXPECT_EQ(control()->producer_waiting, 0u);
  fits = producer_->HasSpace(8);
  ASSERT_TRUE(fits.ok());
  EXPECT_TRUE(*fits);
}

TEST_F(RingTest, CancelledSpaceWaitCostsTheConsumerNoWake) {
  ASSERT_TRUE(Write(8).ok());
  producer_->AnnounceSpaceWait();
  producer_->CancelSpaceWait();
  EXPECT_EQ(control()->producer_waiting, 0u);
  DrainLengths();
  EXPECT_EQ(consumer_->stats().space_wakes_issued, 0u);
  EXPECT_EQ(consumer_->stats().space_wakes_avoided, 1u);
  // An unmatched cancel is harmless.
  producer_->CancelSpaceWait();
  EXPECT_EQ(control()->producer_waiting, 0u);
}

TEST_F(RingTest, SpaceWaitAnnouncementsNest) {
  producer_->AnnounceSpaceWait();
  producer_->AnnounceSpaceWait();
  producer_->CancelSpaceWait();
  // One waiter is still announced: the flag stays up.
  EXPECT_EQ(control()->producer_waiting, 1u);
  producer_->CancelSpaceWait();
  EXPECT_EQ(control()->producer_waiting, 0u);
}

TEST_F(RingTest, HasSpaceChecksTheLengthAndTheConsumer) {
  EXPECT_EQ(producer_->HasSpace(kCap).status().code(),
            StatusCode::kInvalidArgument);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  // A head ahead of the published tail: the consumer broke a rule.
  control()->head = 2 * kCap;
  EXPECT_EQ(producer_->HasSpace(8).status().code(), StatusCode::kCorrupt);
}

// ---- Hostile producer: the consumer's checks ----

TEST_F(RingTest, TailBehindHeadIsCorrupt) {
  ASSERT_TRUE(Write(8).ok());
  DrainLengths();
  control()->tail = 8;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("behind head"));
}

TEST_F(RingTest, TailMoreThanCapacityAheadIsCorrupt) {
  control()->tail = kCap + 8;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("more than the capacity"));
}

TEST_F(RingTest, MisalignedTailIsCorrupt) {
  control()->tail = 12;
  auto has = consumer_->HasData();
  EXPECT_EQ(has.status().code(), StatusCode::kCorrupt);
  EXPECT_THAT(has.status().ToString(), HasSubstr("aligned"));
}

TEST_F(RingTest, KindZeroIsCorrupt) {
  control()->tail = 16;  // Over a zeroed page, as after a punched hole.
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("kind 0"));
}

TEST_F(RingTest, KindReservedToShmIsCorrupt) {
  PokeFrame(0, 0, 7);
  control()->tail = 8;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("reserved to shm/"));
}

TEST_F(RingTest, LengthAboveLargestFrameIsCorrupt) {
  PokeFrame(0, kCap / 4 + 8, kKind);
  control()->tail = kCap;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("above the largest frame"));
}

TEST_F(RingTest, FrameCrossingTheEndWithoutPaddingIsCorrupt) {
  control()->head = control()->tail = kCap - 16;
  Reattach();
  PokeFrame(kCap - 16, 64, kKind);
  control()->tail = kCap - 16 + 72;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("crosses the end"));
}

TEST_F(RingTest, FramePastThePublishedTailIsCorrupt) {
  PokeFrame(0, 100, kKind);
  control()->tail = 16;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("past the published tail"));
}

TEST_F(RingTest, PaddingThatDoesNotFillToTheEndIsCorrupt) {
  PokeFrame(0, 64, kPaddingKind);
  control()->tail = 72;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("padding"));
}

TEST_F(RingTest, PaddingWithFlagsIsCorrupt) {
  control()->head = control()->tail = kCap - 16;
  Reattach();
  PokeFrame(kCap - 16, 8, kPaddingKind, /*flags=*/1);
  control()->tail = kCap;
  EXPECT_EQ(DrainStatus().code(), StatusCode::kCorrupt);
}

TEST_F(RingTest, PaddingPastThePublishedTailIsCorrupt) {
  control()->head = control()->tail = kCap - 32;
  Reattach();
  PokeFrame(kCap - 32, 24, kPaddingKind);
  control()->tail = kCap - 16;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("past the published tail"));
}

TEST_F(RingTest, ProducerWaitingFlagOtherThanZeroOrOneIsCorrupt) {
  ASSERT_TRUE(Write(8).ok());
  control()->producer_waiting = 2;
  Status s = DrainStatus();
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("producer_waiting"));
}

TEST_F(RingTest, FramesBeforeTheBadOneAreDeliveredAndCorruptionIsSticky) {
  ASSERT_TRUE(Write(8).ok());
  ASSERT_TRUE(Write(8).ok());
  PokeFrame(32, 0, 0);
  control()->tail = 40;
  Status status;
  EXPECT_EQ(DrainLengths(&status), (std::vector<uint32_t>{8, 8}));
  EXPECT_EQ(status.code(), StatusCode::kCorrupt);
  EXPECT_EQ(control()->head, 32u);
  // Repairing the memory does not un-poison the consumer: it dropped the peer.
  control()->tail = 32;
  EXPECT_EQ(DrainStatus(), status);
  EXPECT_EQ(consumer_->HasData().status(), status);
  EXPECT_EQ(consumer_->WaitForData(Deadline::Infinite()), status);
}

TEST_F(RingTest, SeededGarbageNeverCrashesTheConsumer) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  int iterations = static_cast<int>(::shmports::testing::Scaled(2000, 100));
  int corrupt = 0;
  for (int i = 0; i < iterations; ++i) {
    // Random bytes over the data area, then random tail values near head.
    Reattach();
    for (uint64_t off = 0; off < kCap; off += 8) {
      uint64_t w = rng();
      switch (rng() % 4) {
        case 0:  // Plausible header: small length, user or padding kind.
          w = (w & 0x3ff) |
              (uint64_t{(rng() % 3 == 0) ? kPaddingKind : kKind} << 32);
          break;
        case 1:
          w = 0;
          break;
        default:
          break;
      }
      memcpy(data() + off, &w, 8);
    }
    uint64_t head = control()->head;
    uint64_t tail = rng() % 4 == 0 ? rng() : head + (rng() % (kCap + 64));
    control()->tail = tail;
    control()->producer_waiting = static_cast<uint32_t>(rng() % 3);
    size_t bytes = 0;
    auto n = consumer_->Drain(
        [&](const FrameView& f) { bytes += f.payload.size(); });
    if (!n.ok()) {
      ASSERT_EQ(n.status().code(), StatusCode::kCorrupt)
          << n.status().ToString();
      ++corrupt;
    }
    EXPECT_LE(bytes, kCap);
    // Put the indices back into a consistent state for the next round.
    control()->head = control()->tail = (head + kCap) & ~uint64_t{7};
    control()->producer_waiting = 0;
  }
  EXPECT_GT(corrupt, 0);
}

// ---- Hostile consumer: the producer's checks ----

TEST_F(RingTest, HeadAheadOfTailIsCorrupt) {
  ASSERT_TRUE(Write(8).ok());
  control()->head = 1 << 20;  // Published tail stays below 4 KiB.
  Status s;
  FillUntilFull(&s);
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("ahead of the published tail"));
  // Sticky, and the producer keeps answering.
  EXPECT_EQ(Write(8).code(), StatusCode::kCorrupt);
  EXPECT_EQ(producer_->WaitForSpace(8, Deadline::Infinite()).code(),
            StatusCode::kCorrupt);
}

TEST_F(RingTest, HeadMovingBackwardsIsCorrupt) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  DrainLengths();
  ASSERT_TRUE(Write(1016).ok());  // Producer refreshes head to 4096.
  control()->head = 1024;
  Status s;
  FillUntilFull(&s);
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("backwards"));
}

TEST_F(RingTest, HeadTooFarBehindTailIsCorrupt) {
  // At attach time: head more than a capacity behind tail.
  control()->tail = 3 * kCap;
  control()->head = kCap - 8;
  auto ring = Ring::Attach(region_, options_);
  EXPECT_EQ(ring.status().code(), StatusCode::kCorrupt);
  // In flight: a head that falls behind what the producer already saw.
  control()->tail = control()->head = 0;
  Reattach(/*producer_too=*/true);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(Write(1016).ok());
    DrainLengths();
  }
  control()->head = 0;
  Status s;
  FillUntilFull(&s);
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
}

TEST_F(RingTest, MisalignedHeadIsCorrupt) {
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(Write(1016).ok());
  control()->head = 4;
  Status s;
  FillUntilFull(&s);
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("aligned"));
}

TEST_F(RingTest, ConsumerSleepingFlagOtherThanZeroOrOneIsCorrupt) {
  control()->consumer_sleeping = 0xdeadbeef;
  Status s = Write(8);
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_THAT(s.ToString(), HasSubstr("consumer_sleeping"));
  // The frame was still appended; later calls report the same error.
  EXPECT_EQ(control()->tail, 16u);
  EXPECT_EQ(Write(8), s);
}

TEST_F(RingTest, SeededGarbageNeverCrashesTheProducer) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  int iterations = static_cast<int>(::shmports::testing::Scaled(2000, 100));
  int corrupt = 0;
  for (int i = 0; i < iterations; ++i) {
    control()->head = control()->tail = 0;
    control()->consumer_sleeping = 0;
    Reattach(/*producer_too=*/true);
    for (int j = 0; j < 8; ++j) {
      switch (rng() % 4) {
        case 0:
          control()->head = rng();
          break;
        case 1:
          control()->head = control()->tail - (rng() % (2 * kCap));
          break;
        case 2:
          control()->consumer_sleeping = static_cast<uint32_t>(rng() % 3);
          break;
        default:
          break;
      }
      uint32_t length = static_cast<uint32_t>(rng() % (kCap / 4 + 1));
      Status s = producer_->Write(kKind, std::vector<uint8_t>(length, 7));
      if (s.ok() || s.code() == StatusCode::kUnavailable) {
        s = producer_->WaitForSpace(length, Deadline::Now());
      }
      ASSERT_TRUE(s.ok() || s.code() == StatusCode::kUnavailable ||
                  s.code() == StatusCode::kCorrupt)
          << s.ToString();
      if (s.code() == StatusCode::kCorrupt) {
        ++corrupt;
        break;
      }
    }
  }
  EXPECT_GT(corrupt, 0);
}

// ---- The checker can fail ----

TEST(FloodCheckerTest, AcceptsTheFloodInOrder) {
  FloodChecker checker(42, 4096);
  std::vector<uint8_t> frame;
  for (uint64_t seq = 0; seq < 1000; ++seq) {
    frame.resize(FloodFrameSize(42, seq, 4096));
    FillFloodFrame(42, seq, frame);
    ASSERT_TRUE(checker.Check(kFloodKind, frame)) << checker.error();
  }
}

TEST(FloodCheckerTest, ReportsAFlippedByte) {
  for (size_t where : {0u, 9u, 13u, 200u}) {
    FloodChecker checker(7, 4096);
    std::vector<uint8_t> frame;
    uint64_t seq = 0;
    while (FloodFrameSize(7, seq, 4096) <= 200) {
      frame.resize(FloodFrameSize(7, seq, 4096));
      FillFloodFrame(7, seq, frame);
      ASSERT_TRUE(checker.Check(kFloodKind, frame));
      ++seq;
    }
    frame.resize(FloodFrameSize(7, seq, 4096));
    FillFloodFrame(7, seq, frame);
    frame[where] ^= 0x04;
    EXPECT_FALSE(checker.Check(kFloodKind, frame)) << where;
    EXPECT_FALSE(checker.ok());
  }
}

TEST(FloodCheckerTest, ReportsADroppedFrame) {
  FloodChecker checker(9, 4096);
  std::vector<uint8_t> frame;
  for (uint64_t seq : {0, 1, 3}) {
    frame.resize(FloodFrameSize(9, seq, 4096));
    FillFloodFrame(9, seq, frame);
    checker.Check(kFloodKind, frame);
  }
  EXPECT_FALSE(checker.ok());
  EXPECT_THAT(checker.error(), HasSubstr("frame 2"));
}

TEST(FloodCheckerTest, ReportsAFlippedByteInATinyFrame) {
  // Frames below 12 bytes have no checksum: the pattern still catches it.
  uint64_t seq = 0;
  while (FloodFrameSize(5, seq, 10) < 3)
    ++seq;
  FloodChecker checker(5, 10);
  std::vector<uint8_t> frame;
  for (uint64_t s = 0; s < seq; ++s) {
    frame.resize(FloodFrameSize(5, s, 10));
    FillFloodFrame(5, s, frame);
    ASSERT_TRUE(checker.Check(kFloodKind, frame));
  }
  frame.resize(FloodFrameSize(5, seq, 10));
  FillFloodFrame(5, seq, frame);
  frame[frame.size() - 1] ^= 1;
  EXPECT_FALSE(checker.Check(kFloodKind, frame));
}

}  // namespace
}  // namespace shmports::shm
