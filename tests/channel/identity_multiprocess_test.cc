// Identity of real children started with SpawnChild (clone3 + exec of
// channel_test_helper): credentials that match, a child that drops to
// another uid, descriptors and truncation across processes, and a child that
// dies before it speaks. Each runs in both identity modes; the pre-6.5 mode
// is also forced in the child's environment by its switch.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "channel/identity.h"
#include "channel/socket.h"
#include "channel/spawn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::testing::HelperPath;
using ::shmports::testing::WaitFor;
using ::testing::HasSubstr;

constexpr uid_t kNobody = 65534;

int CountOpenFds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.')
      ++n;
  }
  closedir(dir);
  return n - 1;
}

Deadline Soon() {
  return Deadline::In(std::chrono::seconds(20));
}

int ExitCode(const SpawnedChild& child) {
  auto status = WaitForExit(child, Soon());
  if (!status.ok() || !WIFEXITED(*status))
    return -1;
  return WEXITSTATUS(*status);
}

class IdentityMultiprocessTest : public ::testing::TestWithParam<IdentityMode> {
 protected:
  void SetUp() override {
    if (mode() == IdentityMode::kScmPidfd &&
        DetectIdentityMode() != IdentityMode::kScmPidfd) {
      GTEST_SKIP() << "SO_PASSPIDFD unsupported (Linux < 6.5) or forced off";
    }
    auto pair = CreateCredentialedSocketPair(mode());
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    ours_ = std::move(pair->first);
    theirs_ = std::move(pair->second);
  }

  IdentityMode mode() const { return GetParam(); }

  // Starts the helper with the child's socket end inherited; `{sock}` in
  // args is replaced by its number. Our copy of that end stays open unless
  // the test closes it.
  SpawnedChild Spawn(std::vector<std::string> args,
                     std::vector<int> also_keep = {}) {
    for (std::string& a : args) {
      if (a == "{sock}")
        a = std::to_string(theirs_.get());
    }
    args.insert(args.begin(), HelperPath("channel_test_helper"));
    std::vector<std::string> env;
    if (mode() == IdentityMode::kPidfdOpen)
      env.push_back(std::string(kForceNoSoPassPidfdEnv) + "=1");
    also_keep.push_back(theirs_.get());
    auto child = SpawnChild(args, EnvironmentWith(env), also_keep);
    EXPECT_TRUE(child.ok()) << child.status().ToString();
    return child.ok() ? std::move(child).value() : SpawnedChild();
  }

  ScopedFd ours_;
  ScopedFd theirs_;
};

TEST_P(IdentityMultiprocessTest, ChildCredentialsMatchItsPidAndUid) {
  SpawnedChild child = Spawn({"hello", "{sock}"});
  ASSERT_GT(child.pid, 0);
  theirs_.Reset();
  auto id =
      AuthenticatePeer(ours_.get(), mode(), {}, Soon(), child.pidfd.get());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->pid, child.pid);
  EXPECT_EQ(id->uid, geteuid());
  EXPECT_TRUE(id->confirmed);
  auto pidfd_pid = PidOfPidfd(id->pidfd.get());
  ASSERT_TRUE(pidfd_pid.ok());
  EXPECT_EQ(*pidfd_pid, child.pid);
  EXPECT_EQ(ExitCode(child), 0);
  // The identity's pidfd is the death signal: readable now the child is gone.
  auto exited = PidfdHasExited(id->pidfd.get());
  ASSERT_TRUE(exited.ok());
  EXPECT_TRUE(*exited);
}

TEST_P(IdentityMultiprocessTest, ChildThatSwitchesToAnotherUidIsRefused) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root to start a child that drops to uid 65534";
  SpawnedChild child =
      Spawn({"setuid-hello", "{sock}", std::to_string(kNobody)});
  ASSERT_GT(child.pid, 0);
  theirs_.Reset();
  auto id =
      AuthenticatePeer(ours_.get(), mode(), {}, Soon(), child.pidfd.get());
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation)
      << id.status().ToString();
  EXPECT_THAT(id.status().ToString(), HasSubstr("uid 65534"));
  EXPECT_EQ(ExitCode(child), 3)
      << "the child should have been told it was refused";
}

TEST_P(IdentityMultiprocessTest, ChildWithAnAllowedOtherUidIsAccepted) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root to start a child that drops to uid 65534";
  SpawnedChild child =
      Spawn({"setuid-hello", "{sock}", std::to_string(kNobody)});
  ASSERT_GT(child.pid, 0);
  theirs_.Reset();
  IdentityPolicy policy;
  policy.also_allowed_uids = {kNobody};
  auto id =
      AuthenticatePeer(ours_.get(), mode(), policy, Soon(), child.pidfd.get());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->uid, kNobody);
  EXPECT_EQ(id->pid, child.pid);
  EXPECT_EQ(ExitCode(child), 0);
}

TEST_P(IdentityMultiprocessTest, ScmRightsFromChildArriveWithItsCredentials) {
  SpawnedChild child = Spawn({"send-fds", "{sock}", "3"});
  ASSERT_GT(child.pid, 0);
  theirs_.Reset();
  ReceiveLimits limits;
  limits.max_fds = 3;
  auto m = ReceiveMessage(ours_.get(), limits, Soon());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->fds.size(), 3u);
  for (const ScopedFd& fd : m->fds) {
    EXPECT_GE(fcntl(fd.get(), F_GETFD), 0);
    EXPECT_TRUE(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC)
        << "received fds must be close-on-exec";
  }
  ASSERT_TRUE(m->has_credentials);
  EXPECT_EQ(m->credentials.pid, child.pid);
  ours_.Reset();  // EOF lets the child finish.
  EXPECT_EQ(ExitCode(child), 0);
}

TEST_P(IdentityMultiprocessTest,
       TruncatedControlDataFromChildIsRefusedWithoutLeaks) {
  int before = CountOpenFds();
  SpawnedChild child = Spawn({"send-fds", "{sock}", "16"});
  ASSERT_GT(child.pid, 0);
  theirs_.Reset();
  ReceiveLimits limits;
  limits.max_fds = 2;
  auto m = ReceiveMessage(ours_.get(), limits, Soon());
  EXPECT_EQ(m.status().code(), StatusCode::kProtocolViolation)
      << m.status().ToString();
  EXPECT_THAT(m.status().ToString(), HasSubstr("MSG_CTRUNC"));
  ours_.Reset();
  EXPECT_EQ(ExitCode(child), 0);
  child.pidfd.Reset();
  // Our socket end, the child's end and the pidfd are closed again: the
  // count is back where it started, so nothing that arrived leaked.
  EXPECT_EQ(CountOpenFds(), before - 2);
}

TEST_P(IdentityMultiprocessTest,
       ChildThatDiesBeforeSendingIsDetectedThroughItsPidfd) {
  SpawnedChild child = Spawn({"exit", "0"});
  ASSERT_GT(child.pid, 0);
  // Our copy of the child's socket end stays open, so the socket never hangs
  // up: only the pidfd can tell that the child is gone.
  auto start = Deadline::Clock::now();
  auto id =
      AuthenticatePeer(ours_.get(), mode(), {}, Soon(), child.pidfd.get());
  EXPECT_EQ(id.status().code(), StatusCode::kPeerClosed)
      << id.status().ToString();
  EXPECT_THAT(id.status().ToString(), HasSubstr("exited before identifying"));
  EXPECT_LT(Deadline::Clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(ExitCode(child), 0);
}

TEST_P(IdentityMultiprocessTest,
       HelloFromAnotherProcessThanTheLaunchedChildIsRefused) {
  // The child waits on a pipe, not on the socket: a reader there could take
  // the answer meant for the impostor.
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  ScopedFd read_end(pipe_fds[0]);
  ScopedFd write_end(pipe_fds[1]);
  SpawnedChild child =
      Spawn({"wait-eof", std::to_string(read_end.get())}, {read_end.get()});
  ASSERT_GT(child.pid, 0);
  read_end.Reset();
  // We speak on the child's socket ourselves: the credentials name us, not
  // the child we launched.
  Status introduced;
  std::thread impostor(
      [&] { introduced = IntroduceSelf(theirs_.get(), Soon()); });
  auto id =
      AuthenticatePeer(ours_.get(), mode(), {}, Soon(), child.pidfd.get());
  impostor.join();
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation)
      << id.status().ToString();
  EXPECT_THAT(id.status().ToString(), HasSubstr("not by the launched child"));
  EXPECT_EQ(introduced.code(), StatusCode::kProtocolViolation);
  write_end.Reset();
  EXPECT_EQ(ExitCode(child), 0);
}

// The hello is there, but by the time we read it the sender has exited: a
// pidfd already signalled during identification is a death, not an error.
TEST_P(IdentityMultiprocessTest, SenderDeadBeforeItsHelloIsReadCountsAsDeath) {
  for (bool reaped : {false, true}) {
    SCOPED_TRACE(reaped ? "reaped" : "zombie");
    if (reaped)
      SetUp();
    SpawnedChild child = Spawn({"hello-and-exit", "{sock}"});
    ASSERT_GT(child.pid, 0);
    ASSERT_TRUE(WaitFor([&] {
      auto exited = PidfdHasExited(child.pidfd.get());
      return exited.ok() && *exited;
    }));
    if (reaped) {
      EXPECT_EQ(ExitCode(child), 0);
    }
    auto id = AuthenticatePeer(ours_.get(), mode(), {}, Soon(),
                               reaped ? -1 : child.pidfd.get());
    EXPECT_EQ(id.status().code(), StatusCode::kPeerClosed)
        << id.status().ToString();
    if (!reaped) {
      EXPECT_EQ(ExitCode(child), 0);
    }
  }
}

std::string ModeName(const ::testing::TestParamInfo<IdentityMode>& p) {
  return p.param == IdentityMode::kScmPidfd ? "ScmPidfd" : "PidfdOpen";
}

INSTANTIATE_TEST_SUITE_P(Modes,
                         IdentityMultiprocessTest,
                         ::testing::Values(IdentityMode::kScmPidfd,
                                           IdentityMode::kPidfdOpen),
                         ModeName);

TEST(SpawnChildTest, OnlyListedDescriptorsAreInherited) {
  // Not close-on-exec: without SpawnChild's close_range it would leak.
  int stray = dup(STDERR_FILENO);
  ASSERT_GE(stray, 0);
  ScopedFd stray_owner(stray);
  ScopedFd kept(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int keep[] = {kept.get()};
  auto child = SpawnChild({HelperPath("channel_test_helper"), "check-fds",
                           std::to_string(kept.get())},
                          EnvironmentWith({}), keep);
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  EXPECT_EQ(ExitCode(*child), 0)
      << "the child saw descriptors besides 0-2 and the kept one";
}

TEST(SpawnChildTest, ChecksThatItsCheckerFails) {
  // The fd checker itself must notice an unexpected descriptor.
  ScopedFd kept(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int keep[] = {kept.get()};
  auto child = SpawnChild({HelperPath("channel_test_helper"), "check-fds"},
                          EnvironmentWith({}), keep);
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  EXPECT_EQ(ExitCode(*child), 5);
}

TEST(SpawnChildTest, MissingProgramIsNotFound) {
  auto child =
      SpawnChild({"/nonexistent/shmports-helper"}, EnvironmentWith({}));
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(child.status().ToString(), HasSubstr("exec failed"));
}

TEST(SpawnChildTest, BadArgumentsAreRefused) {
  EXPECT_EQ(SpawnChild({}, {}).status().code(), StatusCode::kInvalidArgument);
  int keep[] = {987654};
  EXPECT_EQ(
      SpawnChild({HelperPath("channel_test_helper"), "exit", "0"}, {}, keep)
          .status()
          .code(),
      StatusCode::kInvalidArgument);
}

TEST(SpawnChildTest, ExitStatusAndPidfdReportTheChildsEnd) {
  auto child = SpawnChild({HelperPath("channel_test_helper"), "exit", "7"},
                          EnvironmentWith({}));
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  ASSERT_TRUE(WaitFor([&] {
    auto exited = PidfdHasExited(child->pidfd.get());
    return exited.ok() && *exited;
  }));
  EXPECT_EQ(ExitCode(*child), 7);
}

}  // namespace
}  // namespace shmports::channel
