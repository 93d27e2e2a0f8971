#include "channel/socket.h"

#include <dirent.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "channel/spawn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmports::channel {
namespace {

using ::testing::HasSubstr;

int CountOpenFds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.')
      ++n;
  }
  closedir(dir);
  return n - 1;  // The directory's own descriptor.
}

std::vector<ScopedFd> MakeEventfds(int n) {
  std::vector<ScopedFd> fds;
  for (int i = 0; i < n; ++i)
    fds.emplace_back(eventfd(0, EFD_CLOEXEC));
  return fds;
}

std::vector<int> Raw(const std::vector<ScopedFd>& fds) {
  std::vector<int> raw;
  for (const ScopedFd& fd : fds)
    raw.push_back(fd.get());
  return raw;
}

const std::vector<uint8_t> kPayload = {1, 2, 3, 4, 5};

class SocketTest : public ::testing::TestWithParam<IdentityMode> {
 protected:
  void SetUp() override {
    if (GetParam() == IdentityMode::kScmPidfd &&
        DetectIdentityMode() != IdentityMode::kScmPidfd) {
      GTEST_SKIP() << "SO_PASSPIDFD unsupported (Linux < 6.5) or forced off";
    }
    auto pair = CreateCredentialedSocketPair(GetParam());
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    pair_ = std::move(pair).value();
  }
  SocketPair pair_;
};

TEST_P(SocketTest, BothEndsReceiveTheSendersCredentials) {
  for (int dir = 0; dir < 2; ++dir) {
    int from = dir == 0 ? pair_.first.get() : pair_.second.get();
    int to = dir == 0 ? pair_.second.get() : pair_.first.get();
    ASSERT_TRUE(SendMessage(from, kPayload).ok());
    auto m = ReceiveMessage(to, {}, Deadline::In(std::chrono::seconds(5)));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->bytes, kPayload);
    ASSERT_TRUE(m->has_credentials);
    EXPECT_EQ(m->credentials.pid, getpid());
    EXPECT_EQ(m->credentials.uid, geteuid());
    EXPECT_EQ(m->credentials.gid, getegid());
    if (GetParam() == IdentityMode::kScmPidfd) {
      ASSERT_TRUE(m->pidfd.valid());
      auto pid = PidOfPidfd(m->pidfd.get());
      ASSERT_TRUE(pid.ok());
      EXPECT_EQ(*pid, getpid());
    } else {
      EXPECT_FALSE(m->pidfd.valid());
    }
  }
}

TEST_P(SocketTest, ScmRightsDescriptorsArriveAndWork) {
  auto originals = MakeEventfds(3);
  ASSERT_TRUE(SendMessage(pair_.first.get(), kPayload, Raw(originals)).ok());
  ReceiveLimits limits;
  limits.max_fds = 3;
  auto m = ReceiveMessage(pair_.second.get(), limits,
                          Deadline::In(std::chrono::seconds(5)));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->fds.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    uint64_t v = i + 1;
    ASSERT_EQ(write(m->fds[i].get(), &v, sizeof(v)), 8);
    uint64_t got = 0;
    ASSERT_EQ(read(originals[i].get(), &got, sizeof(got)), 8);
    EXPECT_EQ(got, i + 1) << "received fd " << i << " is not the one sent";
  }
}

// The kernel truncates the control data (MSG_CTRUNC) when more descriptors
// arrive than the receiver made room for; those that were installed must be
// closed, and the message refused.
TEST_P(SocketTest, TooManyDescriptorsAreRefusedWithoutLeaks) {
  struct Case {
    int sent;
    size_t allowed;
  };
  // 2 with 1 allowed fits the control buffer's alignment padding (no
  // MSG_CTRUNC): the explicit count check must catch it.
  for (Case c : {Case{1, 0}, Case{8, 2}, Case{2, 1}, Case{40, 3}}) {
    SCOPED_TRACE(testing::Message()
                 << c.sent << " sent, " << c.allowed << " allowed");
    int before = CountOpenFds();
    {
      auto originals = MakeEventfds(c.sent);
      ASSERT_TRUE(
          SendMessage(pair_.first.get(), kPayload, Raw(originals)).ok());
    }
    ReceiveLimits limits;
    limits.max_fds = c.allowed;
    auto m = ReceiveMessage(pair_.second.get(), limits,
                            Deadline::In(std::chrono::seconds(5)));
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), StatusCode::kProtocolViolation)
        << m.status().ToString();
    EXPECT_THAT(m.status().ToString(), HasSubstr("allowed"));
    EXPECT_EQ(CountOpenFds(), before);
  }
}

TEST_P(SocketTest, OversizedPayloadIsRefused) {
  std::vector<uint8_t> big(100, 7);
  ASSERT_TRUE(SendMessage(pair_.first.get(), big).ok());
  ReceiveLimits limits;
  limits.max_bytes = 64;
  auto m = ReceiveMessage(pair_.second.get(), limits,
                          Deadline::In(std::chrono::seconds(5)));
  EXPECT_EQ(m.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(m.status().ToString(), HasSubstr("MSG_TRUNC"));
}

TEST_P(SocketTest, HangUpIsPeerClosed) {
  pair_.first.Reset();
  auto m = ReceiveMessage(pair_.second.get(), {},
                          Deadline::In(std::chrono::seconds(5)));
  EXPECT_EQ(m.status().code(), StatusCode::kPeerClosed)
      << m.status().ToString();
  EXPECT_EQ(SendMessage(pair_.second.get(), kPayload).code(),
            StatusCode::kPeerClosed);
}

TEST_P(SocketTest, NothingBeforeTheDeadlineIsUnavailable) {
  auto m = ReceiveMessage(pair_.second.get(), {},
                          Deadline::In(std::chrono::milliseconds(10)));
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  m = ReceiveMessage(pair_.second.get(), {}, Deadline::Now());
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
}

TEST_P(SocketTest, EmptyAndOversizedSendsAreRefused) {
  EXPECT_EQ(SendMessage(pair_.first.get(), {}).code(),
            StatusCode::kInvalidArgument);
  std::vector<uint8_t> huge(kMaxSocketMessageBytes + 1);
  EXPECT_EQ(SendMessage(pair_.first.get(), huge).code(),
            StatusCode::kInvalidArgument);
}

std::string ModeName(const ::testing::TestParamInfo<IdentityMode>& p) {
  return p.param == IdentityMode::kScmPidfd ? "ScmPidfd" : "PidfdOpen";
}

INSTANTIATE_TEST_SUITE_P(Modes,
                         SocketTest,
                         ::testing::Values(IdentityMode::kScmPidfd,
                                           IdentityMode::kPidfdOpen),
                         ModeName);

TEST(IdentityModeTest, EnvironmentSwitchForcesThePre65Path) {
  ASSERT_EQ(setenv(kForceNoSoPassPidfdEnv, "1", 1), 0);
  EXPECT_EQ(DetectIdentityMode(), IdentityMode::kPidfdOpen);
  ASSERT_EQ(unsetenv(kForceNoSoPassPidfdEnv), 0);
}

}  // namespace
}  // namespace shmports::channel
