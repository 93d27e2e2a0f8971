#include "core/base/mutex.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/base/deadline.h"

namespace shmports {
namespace {

class Counter {
 public:
  void Add() {
    MutexLock lock(&mu_);
    ++value_;
    cv_.SignalAll();
  }
  bool WaitFor(int target, Deadline deadline) {
    MutexLock lock(&mu_);
    while (value_ < target) {
      if (!cv_.WaitUntil(&mu_, deadline.when()) && value_ < target) {
        return false;
      }
    }
    return true;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  int value_ GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, ThreadsAddUnderTheLock) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 10000; ++i)
        c.Add();
    });
  }
  EXPECT_TRUE(c.WaitFor(40000, Deadline::In(std::chrono::seconds(30))));
  for (auto& t : threads)
    t.join();
}

TEST(MutexTest, WaitUntilTimesOut) {
  Counter c;
  EXPECT_FALSE(c.WaitFor(1, Deadline::In(std::chrono::milliseconds(5))));
}

TEST(MutexTest, TryLockFailsWhileHeld) {
  Mutex mu;
  MutexLock lock(&mu);
  std::thread t([&mu] {
    bool got = mu.TryLock();
    if (got)
      mu.Unlock();
    EXPECT_FALSE(got);
  });
  t.join();
}

}  // namespace
}  // namespace shmports
