#include "core/base/deadline.h"

#include <gtest/gtest.h>

#include <chrono>

namespace shmports {
namespace {

using std::chrono::nanoseconds;

TEST(DeadlineTest, ForeverAsADurationIsInfinite) {
  Deadline forever = Deadline::In(nanoseconds::max());
  EXPECT_TRUE(forever.is_infinite());
  EXPECT_FALSE(forever.Expired());
  EXPECT_EQ(forever.Remaining(), nanoseconds::max());
}

TEST(DeadlineTest, DurationJustPastTheClocksRangeIsInfinite) {
  auto left = Deadline::Clock::time_point::max() - Deadline::Clock::now();
  EXPECT_TRUE(Deadline::In(left).is_infinite());
}

TEST(DeadlineTest, OrdinaryDurationsAreFiniteAndInTheFuture) {
  Deadline in_an_hour = Deadline::In(std::chrono::hours(1));
  EXPECT_FALSE(in_an_hour.is_infinite());
  EXPECT_FALSE(in_an_hour.Expired());
  EXPECT_GT(in_an_hour.Remaining(), std::chrono::minutes(59));
}

TEST(DeadlineTest, ZeroAndNegativeDurationsHaveExpired) {
  EXPECT_TRUE(Deadline::In(nanoseconds(0)).Expired());
  EXPECT_TRUE(Deadline::In(nanoseconds(-5)).Expired());
  EXPECT_EQ(Deadline::In(nanoseconds(-5)).Remaining(), nanoseconds(0));
}

}  // namespace
}  // namespace shmports
