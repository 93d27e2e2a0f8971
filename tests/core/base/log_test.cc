#include "core/base/log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shmports {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](LogSeverity, std::string_view line) {
      lines_.emplace_back(line);
    });
  }
  void TearDown() override { SetLogSink(nullptr); }
  std::vector<std::string> lines_;
};

TEST_F(LogTest, LineNamesSeverityFileAndMessage) {
  SHMPORTS_LOG(kWarning, "peer %s dropped: %d", "3F2A", 7);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find("W"), std::string::npos);
  EXPECT_NE(lines_[0].find("log_test.cc"), std::string::npos);
  EXPECT_NE(lines_[0].find("peer 3F2A dropped: 7"), std::string::npos);
}

TEST_F(LogTest, RepeatedConditionIsLoggedOnceThenCounted) {
  for (int i = 0; i < 250; ++i) {
    SHMPORTS_LOG_REPEATED("log-test-ring-full", kInfo, "ring full");
  }
  EXPECT_EQ(RepeatedLogCount("log-test-ring-full"), 250u);
  // First occurrence, then the counts 10 and 100.
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[0].find("seen"), std::string::npos);
  EXPECT_NE(lines_[1].find("seen 10 times"), std::string::npos);
  EXPECT_NE(lines_[2].find("seen 100 times"), std::string::npos);
}

TEST_F(LogTest, DistinctKeysAreCountedApart) {
  SHMPORTS_LOG_REPEATED("log-test-a", kInfo, "a");
  SHMPORTS_LOG_REPEATED("log-test-b", kInfo, "b");
  SHMPORTS_LOG_REPEATED("log-test-a", kInfo, "a");
  EXPECT_EQ(RepeatedLogCount("log-test-a"), 2u);
  EXPECT_EQ(RepeatedLogCount("log-test-b"), 1u);
  EXPECT_EQ(RepeatedLogCount("log-test-never"), 0u);
  EXPECT_EQ(lines_.size(), 2u);
}

}  // namespace
}  // namespace shmports
