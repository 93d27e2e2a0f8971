// Invitations and the fork rule against real children (fork+exec of
// api_test_child; fork() alone for the fork rule). Suite multiprocess.
#include <gtest/gtest.h>
#include <shmports/invitation.h>
#include <shmports/pipe.h>
#include <shmports/process.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/api/api_test_util.h"
#include "tests/util/test_util.h"

namespace shmports {
namespace {

using std::chrono::seconds;

constexpr auto kWait = seconds(30);

std::string Child() {
  return testing::HelperPath("api_test_child");
}

std::unique_ptr<Process> NewProcess() {
  auto p = Process::Create();
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(*p);
}

std::string ReceiveText(Pipe& pipe) {
  auto m = pipe.Receive(kWait);
  if (!m.ok())
    return "error: " + m.status().ToString();
  return std::string(m->text());
}

TEST(ApiInvitation, ChildEchoesMessagesOfAllSizes) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({Child(), "echo"});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  for (size_t size : {size_t{0}, size_t{1}, size_t{64}, size_t{4096},
                      size_t{65536}, (size_t{2} << 20) + 1}) {
    auto bytes = testing::Payload(seed, size, size);
    ASSERT_TRUE(pipe->Send(bytes).ok());
    auto m = pipe->Receive(kWait);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->bytes, bytes) << size;
  }
  pipe->Close();
  auto status = child->Wait(kWait);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST(ApiInvitation, PipeSentToTheChildWorks) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({Child(), "echo"});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  auto pair = process->CreatePipe();
  ASSERT_TRUE(pair.ok());
  std::vector<Pipe> attach;
  attach.push_back(std::move(pair->second));
  ASSERT_TRUE(pipe->Send("take this", std::move(attach)).ok());
  EXPECT_EQ(ReceiveText(pair->first), "hello from the child");
  EXPECT_EQ(pair->first.Receive(kWait).status().code(),
            StatusCode::kPeerClosed);
  EXPECT_EQ(ReceiveText(*pipe), "take this");
}

TEST(ApiInvitation, KilledChildIsSeenAsPeerClosed) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({Child(), "echo"});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  ASSERT_TRUE(pipe->Send("ping").ok());
  EXPECT_EQ(ReceiveText(*pipe), "ping");
  ASSERT_TRUE(child->Kill(SIGKILL).ok());
  EXPECT_EQ(pipe->Receive(kWait).status().code(), StatusCode::kPeerClosed);
  auto status = pipe->GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->peer_closed);
  auto stats = process->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peer_deaths, 1u);
}

TEST(ApiInvitation, ChildThatExitsEarlyIsReportedWithItsStatus) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  ASSERT_TRUE(invitation.AttachPipe("pipe").ok());
  auto child = invitation.Launch({Child(), "exit", "3"});
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), StatusCode::kPeerClosed);
  EXPECT_NE(child.status().ToString().find("exited early with status 3"),
            std::string::npos)
      << child.status().ToString();
}

TEST(ApiInvitation, MissingProgramIsNotFound) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  auto child = invitation.Launch({Child() + "-does-not-exist"});
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), StatusCode::kNotFound)
      << child.status().ToString();
}

TEST(ApiInvitation, NameNotAttachedIsNamedInTheError) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({Child(), "extract", "nope"});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  std::string outcome = ReceiveText(*pipe);
  EXPECT_NE(outcome.find("not found"), std::string::npos) << outcome;
  EXPECT_NE(outcome.find("'nope' is not attached"), std::string::npos)
      << outcome;
}

TEST(ApiInvitation, AttachPipeRefusesBadNames) {
  auto process = NewProcess();
  OutgoingInvitation invitation(*process);
  EXPECT_EQ(invitation.AttachPipe("").status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(invitation.AttachPipe("a").ok());
  EXPECT_EQ(invitation.AttachPipe("a").status().code(),
            StatusCode::kAlreadyExists);
}

TEST(ApiInvitation, NoInvitationInThisProcess) {
  ::unsetenv(kInvitationFdEnv);
  auto none = AcceptInvitation();
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().ToString().find("no invitation in this process"),
            std::string::npos)
      << none.status().ToString();
  ::setenv(kInvitationFdEnv, "12x", 1);
  EXPECT_EQ(AcceptInvitation().status().code(), StatusCode::kInvalidArgument);
  ::setenv(kInvitationFdEnv, "999999", 1);
  EXPECT_EQ(AcceptInvitation().status().code(), StatusCode::kInvalidArgument);
  ::unsetenv(kInvitationFdEnv);
}

// Credit across processes: the parent announces small receive caps.
std::unique_ptr<Process> NewProcessWithCap(uint64_t messages) {
  ProcessOptions options;
  options.max_queued_messages_per_pipe = messages;
  auto p = Process::Create(options);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(*p);
}

TEST(ApiCredit, ChildStopsAtTheParentsCapThenWaitsAndLosesNothing) {
  auto process = NewProcessWithCap(8);
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  auto report = invitation.AttachPipe("report");
  ASSERT_TRUE(pipe.ok() && report.ok());
  const int n = static_cast<int>(testing::Scaled(500, 50));
  auto child = invitation.Launch({Child(), "flood", std::to_string(n)});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  // Nothing is read from "pipe" before the report: the child's Send (no
  // quota set) stops at our cap — at half of it, as the child's end arrived
  // inside the invitation and cannot know what was left unread before
  // (pipe.h, PipeQuota), until one of its messages is acknowledged.
  EXPECT_EQ(ReceiveText(*report), "refused at 4");
  auto status = pipe->GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->queued_messages, 4u);
  // Reading lets the waiting Send go on; nothing is lost.
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(ReceiveText(*pipe), std::to_string(i));
  pipe->Close();
  auto exit_status = child->Wait(kWait);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << *exit_status;
  auto stats = process->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peers_dropped, 0u);
}

TEST(ApiCredit, ChildIgnoringCreditIsCutOff) {
  auto process = NewProcessWithCap(4);
  OutgoingInvitation invitation(*process);
  auto pipe = invitation.AttachPipe("pipe");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({Child(), "ignore-credit", "20"});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto s = pipe->GetStatus();
        return s.ok() && s->peer_closed;
      },
      kWait));
  // What arrived within the cap is delivered in order, then peer_closed.
  int received = 0;
  for (;;) {
    auto m = pipe->Receive(kWait);
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), StatusCode::kPeerClosed)
          << m.status().ToString();
      break;
    }
    EXPECT_EQ(m->text(), std::to_string(received));
    ++received;
  }
  EXPECT_LE(received, 4);
  auto stats = process->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peers_dropped, 1u);
  EXPECT_EQ(stats->peers_dropped_for_caps, 1u);
  auto exit_status = child->Wait(kWait);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << *exit_status;
}

// The fork rule: the parent's Process and pipes answer kFailedPrecondition
// in a forked child; a new Process there works. The child reports by exit
// code (it runs only the checks, then _exit).
TEST(ApiFork, ParentsProcessIsRefusedInForkedChildNewOneWorks) {
  auto process = NewProcess();
  auto pair = process->CreatePipe();
  ASSERT_TRUE(pair.ok());
  ASSERT_TRUE(pair->first.Send("before fork").ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    if (pair->first.Send("x").code() != StatusCode::kFailedPrecondition)
      code |= 1;
    if (pair->second.Receive().status().code() !=
        StatusCode::kFailedPrecondition)
      code |= 2;
    if (process->CreatePipe().status().code() !=
        StatusCode::kFailedPrecondition)
      code |= 4;
    auto fresh = Process::Create();
    if (!fresh.ok()) {
      code |= 8;
    } else {
      auto p = (*fresh)->CreatePipe();
      if (!p.ok() || !p->first.Send("in child").ok())
        code |= 16;
      else if (!p->second.Receive(seconds(10)).ok())
        code |= 32;
    }
    // Destroying the parent's copies must neither hang nor crash.
    pair->first.Close();
    process.reset();
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent is unaffected.
  EXPECT_EQ(ReceiveText(pair->second), "before fork");
}

}  // namespace
}  // namespace shmports
