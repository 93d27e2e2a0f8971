#include "channel/reactor.h"

#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "core/base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::testing::Scaled;
using ::shmports::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// FUTEX_WAKE as another process would issue it: shared, not private.
long SharedFutexWake(const void* word, int count) {
  return syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
}

// A shared anonymous mapping: the futex key is the same one another process
// mapping it would use.
class SharedWord {
 public:
  SharedWord() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    word_ = static_cast<std::atomic<uint32_t>*>(p);
  }
  ~SharedWord() { munmap(word_, 4096); }
  std::atomic<uint32_t>* get() { return word_; }

 private:
  std::atomic<uint32_t>* word_;
};

// A Reactor whose io thread runs for the life of the fixture.
class ReactorTest : public ::testing::Test {
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
  void TearDown() override { StopAndDestroy(); }

  void StopAndDestroy() {
    if (!reactor_)
      return;
    reactor_->Stop();
    io_thread_.join();
    reactor_.reset();
  }

  std::unique_ptr<Reactor> reactor_;
  std::thread io_thread_;
};

TEST_F(ReactorTest, FutexWakeFromAnotherThreadFiresCallback) {
  SharedWord word;
  std::atomic<int> calls{0};
  std::atomic<bool> woken{false};
  auto token = reactor_->WatchFutex(word.get(), 0, [&](Result<FutexWake> r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    woken = *r == FutexWake::kWoken;
    calls++;
  });
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  // The word never changes, so only a FUTEX_WAKE can complete the wait: wake
  // until the kernel says it reached a waiter (the wait is armed
  // asynchronously).
  std::thread waker([&] {
    ASSERT_TRUE(WaitFor([&] { return SharedFutexWake(word.get(), 1) >= 1; }));
  });
  waker.join();
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }));
  EXPECT_TRUE(woken.load());
  EXPECT_EQ(reactor_->GetStats().futex_woken, 1u);
}

TEST_F(ReactorTest, FutexWaitArmedOnChangedWordCompletesAtOnce) {
  SharedWord word;
  word.get()->store(1);
  std::atomic<int> outcome{-1};
  // The owner read 0, then a producer stored 1 before the wait was armed:
  // the wait must not sleep through that change.
  auto token = reactor_->WatchFutex(word.get(), 0, [&](Result<FutexWake> r) {
    outcome = r.ok() ? static_cast<int>(*r) : 99;
  });
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(WaitFor([&] { return outcome.load() != -1; }));
  EXPECT_EQ(outcome.load(), static_cast<int>(FutexWake::kValueDiffered));
  EXPECT_EQ(reactor_->GetStats().futex_value_differed, 1u);
}

// A producer bumps the word and wakes; the consumer callback re-reads the
// word and re-arms with the value it read, like a ring consumer. If any
// wake-up were lost between check and arm, the consumer would stop short of
// the final value and the deadline would fail the test.
TEST_F(ReactorTest, NoLostWakeUpBetweenCheckAndArm) {
  SharedWord word;
  const uint32_t kBumps = static_cast<uint32_t>(Scaled(20000, 500));
  std::atomic<uint32_t> seen{0};
  std::function<void(Result<FutexWake>)> on_wake;
  on_wake = [&](Result<FutexWake> r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    uint32_t v = word.get()->load(std::memory_order_acquire);
    seen.store(v);
    if (v < kBumps) {
      ASSERT_TRUE(reactor_->WatchFutex(word.get(), v, on_wake).ok());
    }
  };
  ASSERT_TRUE(reactor_->WatchFutex(word.get(), 0, on_wake).ok());
  std::thread producer([&] {
    for (uint32_t i = 1; i <= kBumps; ++i) {
      word.get()->store(i, std::memory_order_release);
      SharedFutexWake(word.get(), 1);
    }
  });
  producer.join();
  EXPECT_TRUE(
      WaitFor([&] { return seen.load() == kBumps; }, std::chrono::seconds(30)))
      << "consumer stopped at " << seen.load() << " of " << kBumps;
}

TEST_F(ReactorTest, EventfdReadinessFiresCallback) {
  ScopedFd efd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(efd.valid());
  std::atomic<uint32_t> revents{0};
  ASSERT_TRUE(reactor_
                  ->WatchFd(efd.get(), POLLIN,
                            [&](Result<uint32_t> r) {
                              ASSERT_TRUE(r.ok());
                              revents = *r;
                            })
                  .ok());
  uint64_t one = 1;
  ASSERT_EQ(write(efd.get(), &one, sizeof(one)), 8);
  ASSERT_TRUE(WaitFor([&] { return revents.load() != 0; }));
  EXPECT_TRUE(revents.load() & POLLIN);
}

TEST_F(ReactorTest, MultiShotPollReportsUntilCancelledFromItsCallback) {
  ScopedFd efd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::atomic<int> calls{0};
  Reactor::Token token = Reactor::kInvalidToken;
  std::atomic<bool> armed{false};
  auto r = reactor_->WatchFd(
      efd.get(), POLLIN,
      [&](Result<uint32_t> res) {
        ASSERT_TRUE(res.ok());
        uint64_t v;
        ASSERT_EQ(read(efd.get(), &v, sizeof(v)), 8);
        if (++calls == 3) {
          while (!armed.load()) {
          }
          reactor_->Cancel(token);
        }
      },
      PollMode::kMultiShot);
  ASSERT_TRUE(r.ok());
  token = *r;
  armed = true;
  for (int i = 0; i < 5; ++i) {
    int before = calls.load();
    uint64_t one = 1;
    ASSERT_EQ(write(efd.get(), &one, sizeof(one)), 8);
    if (i < 3) {
      ASSERT_TRUE(WaitFor([&] { return calls.load() > before; }));
    }
  }
  // Cancelled on the io thread from its own callback: no further calls,
  // although the eventfd stays readable.
  std::atomic<bool> flushed{false};
  reactor_->Post([&] { flushed = true; });
  ASSERT_TRUE(WaitFor([&] { return flushed.load(); }));
  EXPECT_EQ(calls.load(), 3);
}

TEST_F(ReactorTest, TimersFireInDeadlineOrder) {
  Mutex mu;
  std::vector<int> order;
  auto now = Deadline::Clock::now();
  const int kOffsetsMs[] = {40, 10, 30, 20, 50};
  for (int ms : kOffsetsMs) {
    ASSERT_TRUE(
        reactor_
            ->AddTimer(Deadline::At(now + std::chrono::milliseconds(ms)),
                       [&, ms] {
                         MutexLock lock(&mu);
                         order.push_back(ms);
                       })
            .ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    MutexLock lock(&mu);
    return order.size() == 5;
  }));
  MutexLock lock(&mu);
  EXPECT_THAT(order, ElementsAre(10, 20, 30, 40, 50));
  EXPECT_GE(Deadline::Clock::now() - now, std::chrono::milliseconds(50));
}

TEST_F(ReactorTest, CancelledOperationsNeverCallBack) {
  SharedWord word;
  ScopedFd efd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::atomic<int> calls{0};
  auto timer = reactor_->AddTimer(Deadline::In(std::chrono::milliseconds(20)),
                                  [&] { calls++; });
  auto futex =
      reactor_->WatchFutex(word.get(), 0, [&](Result<FutexWake>) { calls++; });
  auto poll =
      reactor_->WatchFd(efd.get(), POLLIN, [&](Result<uint32_t>) { calls++; });
  ASSERT_TRUE(timer.ok() && futex.ok() && poll.ok());
  // Cancelled on the io thread, so nothing can run after this task.
  std::atomic<bool> cancelled{false};
  reactor_->Post([&] {
    reactor_->Cancel(*timer);
    reactor_->Cancel(*futex);
    reactor_->Cancel(*poll);
    cancelled = true;
  });
  ASSERT_TRUE(WaitFor([&] { return cancelled.load(); }));
  word.get()->store(1);
  SharedFutexWake(word.get(), 10);
  uint64_t one = 1;
  ASSERT_EQ(write(efd.get(), &one, sizeof(one)), 8);
  // A later timer proves the loop ran past the cancelled deadline.
  std::atomic<bool> later{false};
  ASSERT_TRUE(reactor_
                  ->AddTimer(Deadline::In(std::chrono::milliseconds(60)),
                             [&] { later = true; })
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return later.load(); }));
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(reactor_->GetStats().cancels, 3u);
  // The cancelled operations' completions were all reaped: only the wake
  // read (and nothing else) is still in flight.
  EXPECT_TRUE(
      WaitFor([&] { return reactor_->GetStats().operations_in_flight == 1; }));
}

TEST_F(ReactorTest, CancelFromAnotherThreadStopsATimer) {
  std::atomic<int> calls{0};
  auto timer = reactor_->AddTimer(Deadline::In(std::chrono::milliseconds(200)),
                                  [&] { calls++; });
  ASSERT_TRUE(timer.ok());
  reactor_->Cancel(*timer);
  std::atomic<bool> later{false};
  ASSERT_TRUE(reactor_
                  ->AddTimer(Deadline::In(std::chrono::milliseconds(300)),
                             [&] { later = true; })
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return later.load(); }));
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(ReactorTest, PostedTasksRunOnTheIoThreadInOrder) {
  const int kTasks = static_cast<int>(Scaled(10000, 100));
  std::atomic<int> next{0};
  std::atomic<int> out_of_order{0};
  std::atomic<int> off_thread{0};
  for (int i = 0; i < kTasks; ++i) {
    reactor_->Post([&, i] {
      if (next.load() != i)
        out_of_order++;
      if (!reactor_->IsIoThread())
        off_thread++;
      next = i + 1;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return next.load() == kTasks; }));
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_EQ(off_thread.load(), 0);
  EXPECT_FALSE(reactor_->IsIoThread());
  // A burst of posts costs far fewer eventfd writes than tasks.
  EXPECT_LT(reactor_->GetStats().cross_thread_wakes,
            static_cast<uint64_t>(kTasks));
}

// Callbacks run with no Reactor lock held: each one here calls back into the
// Reactor (post, arm, cancel, stats), which would deadlock otherwise.
TEST_F(ReactorTest, CallbacksMayCallBackIntoTheReactor) {
  std::atomic<int> step{0};
  ASSERT_TRUE(
      reactor_
          ->AddTimer(Deadline::Now(),
                     [&] {
                       EXPECT_TRUE(reactor_->IsIoThread());
                       (void)reactor_->GetStats();
                       reactor_->Post([&] {
                         step = 1;
                         auto doomed = reactor_->AddTimer(
                             Deadline::In(std::chrono::milliseconds(1)),
                             [&] { step = 100; });
                         ASSERT_TRUE(doomed.ok());
                         reactor_->Cancel(*doomed);
                         ASSERT_TRUE(
                             reactor_
                                 ->AddTimer(
                                     Deadline::In(std::chrono::milliseconds(5)),
                                     [&] { step = 2; })
                                 .ok());
                       });
                     })
          .ok());
  ASSERT_TRUE(WaitFor([&] { return step.load() == 2; }));
  std::atomic<bool> flushed{false};
  ASSERT_TRUE(reactor_
                  ->AddTimer(Deadline::In(std::chrono::milliseconds(10)),
                             [&] { flushed = true; })
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return flushed.load(); }));
  EXPECT_EQ(step.load(), 2) << "a timer cancelled on the io thread fired";
}

TEST_F(ReactorTest, InvalidArgumentsAreRefused) {
  uint32_t words[2] = {0, 0};
  auto misaligned = reinterpret_cast<const uint32_t*>(
      reinterpret_cast<const char*>(words) + 1);
  auto r = reactor_->WatchFutex(misaligned, 0, [](Result<FutexWake>) {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reactor_
                ->WatchFutex(static_cast<const uint32_t*>(nullptr), 0,
                             [](Result<FutexWake>) {})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      reactor_->WatchFd(-1, POLLIN, [](Result<uint32_t>) {}).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(reactor_->AddTimer(Deadline::Now(), nullptr).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ReactorTest, PollOnAClosedDescriptorReportsAnError) {
  // A descriptor number that is not open: the kernel's EBADF reaches the
  // callback as a Status instead of being swallowed.
  int fd = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  close(fd);
  std::atomic<int> code{-1};
  ASSERT_TRUE(reactor_
                  ->WatchFd(fd, POLLIN,
                            [&](Result<uint32_t> r) {
                              code = static_cast<int>(r.status().code());
                            })
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return code.load() != -1; }));
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kInternal));
}

TEST_F(ReactorTest, ShutdownWithArmedOperationsIsClean) {
  SharedWord word;
  ScopedFd efd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::atomic<int> calls{0};
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(
        reactor_->WatchFutex(word.get(), 0, [&](Result<FutexWake>) { calls++; })
            .ok());
    ASSERT_TRUE(
        reactor_->WatchFd(efd.get(), POLLIN, [&](Result<uint32_t>) { calls++; })
            .ok());
    ASSERT_TRUE(
        reactor_
            ->AddTimer(Deadline::In(std::chrono::hours(1)), [&] { calls++; })
            .ok());
  }
  ASSERT_TRUE(
      WaitFor([&] { return reactor_->GetStats().futex_waits_armed == 50; }));
  // Queued but never armed, and posted but never run: destroyed, not called.
  reactor_->Stop();
  io_thread_.join();
  ASSERT_TRUE(
      reactor_->WatchFutex(word.get(), 0, [&](Result<FutexWake>) { calls++; })
          .ok());
  reactor_->Post([&] { calls++; });
  auto start = Deadline::Clock::now();
  reactor_.reset();
  EXPECT_LT(Deadline::Clock::now() - start, std::chrono::milliseconds(900));
  EXPECT_EQ(calls.load(), 0);
  // The futex waits are gone from the kernel: nobody is left to wake.
  EXPECT_EQ(SharedFutexWake(word.get(), 100), 0);
}

// Wake-up latency from a FUTEX_WAKE on another thread to the callback on the
// io thread: printed (p50/p99), not asserted.
TEST_F(ReactorTest, FutexWakeToCallbackLatencyIsReported) {
  SharedWord word;
  const int kRounds = static_cast<int>(Scaled(2000, 50));
  std::atomic<uint64_t> sent_at{0};
  std::atomic<uint32_t> seen{0};
  std::vector<uint64_t> latencies;
  latencies.reserve(kRounds);
  std::function<void(Result<FutexWake>)> on_wake;
  on_wake = [&](Result<FutexWake> r) {
    ASSERT_TRUE(r.ok());
    uint32_t v = word.get()->load(std::memory_order_acquire);
    if (v != seen.load()) {
      latencies.push_back(MonotonicNanos() - sent_at.load());
      seen.store(v, std::memory_order_release);
    }
    ASSERT_TRUE(reactor_->WatchFutex(word.get(), v, on_wake).ok());
  };
  ASSERT_TRUE(reactor_->WatchFutex(word.get(), 0, on_wake).ok());
  // Let the first wait reach the kernel so round 1 measures a sleeping wait.
  ASSERT_TRUE(WaitFor([&] { return SharedFutexWake(word.get(), 0) == 0; }));
  for (int i = 1; i <= kRounds; ++i) {
    sent_at.store(MonotonicNanos());
    word.get()->store(static_cast<uint32_t>(i), std::memory_order_release);
    SharedFutexWake(word.get(), 1);
    ASSERT_TRUE(WaitFor([&] {
      return seen.load(std::memory_order_acquire) == static_cast<uint32_t>(i);
    }));
  }
  reactor_->Stop();
  io_thread_.join();
  reactor_.reset();
  ASSERT_EQ(latencies.size(), static_cast<size_t>(kRounds));
  std::sort(latencies.begin(), latencies.end());
  printf(
      "reactor futex wake -> callback, %d rounds: p50 %.1f us, p99 %.1f us\n",
      kRounds, latencies[latencies.size() / 2] / 1e3,
      latencies[latencies.size() * 99 / 100] / 1e3);
}

TEST(ReactorCreateTest, ForcedMissingFutexWaitNamesTheKernelRequirement) {
  ReactorOptions options;
  options.pretend_futex_wait_unsupported = true;
  auto r = Reactor::Create(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.status().ToString(), HasSubstr("IORING_OP_FUTEX_WAIT"));
  EXPECT_THAT(r.status().ToString(), HasSubstr("Linux 6.7"));
  EXPECT_THAT(r.status().ToString(),
              HasSubstr("pretend_futex_wait_unsupported"));
}

TEST(ReactorCreateTest, ZeroQueueDepthIsRefused) {
  ReactorOptions options;
  options.queue_depth = 0;
  EXPECT_EQ(Reactor::Create(options).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ReactorCreateTest, RunOnceReturnsAtItsDeadline) {
  auto r = Reactor::Create();
  if (!r.ok())
    GTEST_SKIP() << r.status().ToString();
  auto start = Deadline::Clock::now();
  Status s = (*r)->RunOnce(Deadline::In(std::chrono::milliseconds(20)));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_GE(Deadline::Clock::now() - start, std::chrono::milliseconds(19));
}

}  // namespace
}  // namespace shmports::channel
