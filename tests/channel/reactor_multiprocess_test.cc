// Reactor waits completed by other processes: a FUTEX_WAKE on a word in a
// memfd both map, and a pidfd of a child that exits.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "channel/reactor.h"
#include "channel/spawn.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::testing::HelperPath;
using ::shmports::testing::WaitFor;

class ReactorMultiprocessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create();
    if (!r.ok() && r.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << r.status().ToString();
    }
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    reactor_ = std::move(r).value();
    io_thread_ = std::thread([this] { reactor_->Run(); });
  }
  void TearDown() override {
    if (!reactor_)
      return;
    reactor_->Stop();
    io_thread_.join();
  }

  Result<SpawnedChild> Spawn(std::vector<std::string> args,
                             std::vector<int> keep = {}) {
    args.insert(args.begin(), HelperPath("channel_test_helper"));
    return SpawnChild(args, EnvironmentWith({}), keep);
  }

  std::unique_ptr<Reactor> reactor_;
  std::thread io_thread_;
};

TEST_F(ReactorMultiprocessTest, FutexWakeFromAnotherProcessFiresCallback) {
  ScopedFd memfd(memfd_create("reactor-test-word", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(ftruncate(memfd.get(), 4096), 0);
  void* p =
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* word = static_cast<std::atomic<uint32_t>*>(p);
  std::atomic<int> outcome{-1};
  ASSERT_TRUE(reactor_
                  ->WatchFutex(word, 0,
                               [&](Result<FutexWake> r) {
                                 outcome = r.ok() ? static_cast<int>(*r) : 99;
                               })
                  .ok());
  // The child wakes without changing the word, so only a shared FUTEX_WAKE
  // from its process can complete our wait.
  auto child =
      Spawn({"futex-wake", std::to_string(memfd.get())}, {memfd.get()});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  auto status = WaitForExit(*child, Deadline::In(std::chrono::seconds(20)));
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status;
  ASSERT_TRUE(WaitFor([&] { return outcome.load() != -1; }));
  EXPECT_EQ(outcome.load(), static_cast<int>(FutexWake::kWoken));
  munmap(p, 4096);
}

TEST_F(ReactorMultiprocessTest, PidfdOfExitingChildPollsReadable) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  ScopedFd read_end(pipe_fds[0]);
  ScopedFd write_end(pipe_fds[1]);
  auto child =
      Spawn({"wait-eof", std::to_string(read_end.get())}, {read_end.get()});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  read_end.Reset();
  std::atomic<uint32_t> revents{0};
  ASSERT_TRUE(reactor_
                  ->WatchFd(child->pidfd.get(), POLLIN,
                            [&](Result<uint32_t> r) {
                              ASSERT_TRUE(r.ok());
                              revents = *r;
                            })
                  .ok());
  // Alive: a round trip through the io thread shows the watch has not fired.
  std::atomic<bool> flushed{false};
  reactor_->Post([&] { flushed = true; });
  ASSERT_TRUE(WaitFor([&] { return flushed.load(); }));
  EXPECT_EQ(revents.load(), 0u);
  write_end.Reset();  // EOF: the child exits.
  ASSERT_TRUE(WaitFor([&] { return revents.load() != 0; }));
  EXPECT_TRUE(revents.load() & POLLIN);
  auto status = WaitForExit(*child, Deadline::In(std::chrono::seconds(10)));
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

// SIGKILL of a child to the pidfd callback on the io thread: the primary
// peer-death signal. Printed (p50/p99), not asserted.
TEST_F(ReactorMultiprocessTest, PidfdDeathDetectionLatencyIsReported) {
  const int kTrials = static_cast<int>(::shmports::testing::Scaled(20, 5));
  std::vector<uint64_t> latencies;
  for (int i = 0; i < kTrials; ++i) {
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
    ScopedFd read_end(pipe_fds[0]);
    ScopedFd write_end(pipe_fds[1]);
    auto child =
        Spawn({"wait-eof", std::to_string(read_end.get())}, {read_end.get()});
    ASSERT_TRUE(child.ok()) << child.status().ToString();
    std::atomic<uint64_t> seen_at{0};
    ASSERT_TRUE(
        reactor_
            ->WatchFd(child->pidfd.get(), POLLIN,
                      [&](Result<uint32_t>) { seen_at = MonotonicNanos(); })
            .ok());
    std::atomic<bool> armed{false};
    reactor_->Post([&] { armed = true; });
    ASSERT_TRUE(WaitFor([&] { return armed.load(); }));
    uint64_t killed_at = MonotonicNanos();
    ASSERT_EQ(kill(child->pid, SIGKILL), 0);
    ASSERT_TRUE(WaitFor([&] { return seen_at.load() != 0; }));
    latencies.push_back(seen_at.load() - killed_at);
    auto status = WaitForExit(*child, Deadline::In(std::chrono::seconds(10)));
    ASSERT_TRUE(status.ok());
    EXPECT_TRUE(WIFSIGNALED(*status));
  }
  std::sort(latencies.begin(), latencies.end());
  printf(
      "pidfd death (SIGKILL -> reactor callback), %d trials: p50 %.1f us, p99 "
      "%.1f us\n",
      kTrials, latencies[latencies.size() / 2] / 1e3,
      latencies[latencies.size() * 99 / 100] / 1e3);
}

}  // namespace
}  // namespace shmports::channel
