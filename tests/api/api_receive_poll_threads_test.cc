// Pipe::Receive's waiting loop between two Processes in this OS process (no
// fork, so the TSan build runs it): an empty poll allocates nothing (this
// binary replaces the global operator new and counts the allocations of
// the calling thread only), and large messages — fragmented, their payload
// block handed from the reassembly to the PipeMessage — arrive intact in
// every wait mode.
#include <gtest/gtest.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "channel/api/testing.h"
#include "tests/api/api_test_util.h"
#include "tests/util/test_util.h"

namespace {
thread_local uint64_t t_allocations = 0;

void* CountedAlloc(size_t size) {
  ++t_allocations;
  void* p = std::malloc(size ? size : 1);
  if (!p)
    throw std::bad_alloc();
  return p;
}
void* CountedAlignedAlloc(size_t size, std::align_val_t align) {
  ++t_allocations;
  const size_t a = static_cast<size_t>(align);
  void* p = std::aligned_alloc(a, (size + a - 1) / a * a);
  if (!p)
    throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t size) {
  return CountedAlloc(size);
}
void* operator new[](size_t size) {
  return CountedAlloc(size);
}
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  ++t_allocations;
  return std::malloc(size ? size : 1);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  ++t_allocations;
  return std::malloc(size ? size : 1);
}
void* operator new(size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void* operator new[](size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace shmports {
namespace {

using testing::ConnectedProcesses;
using testing::ConnectProcessesForTesting;
using testing::Payload;

constexpr auto kWait = std::chrono::seconds(30);

ConnectedProcesses Connect() {
  auto connected = ConnectProcessesForTesting();
  EXPECT_TRUE(connected.ok()) << connected.status().ToString();
  return std::move(*connected);
}

TEST(ApiReceivePoll, EmptyPollsAllocateNothing) {
  ConnectedProcesses c = Connect();
  for (WaitMode mode : {WaitMode::kBusyPoll, WaitMode::kDefault}) {
    SCOPED_TRACE(static_cast<int>(mode));
    // Warm-up: whatever a first call sets up once.
    EXPECT_EQ(
        c.b_end.Receive(std::chrono::milliseconds(1), mode).status().code(),
        StatusCode::kUnavailable);
    const uint64_t before = t_allocations;
    // Thousands of empty polls (kBusyPoll for all 20 ms; kDefault for its
    // spin budget); the answer's Status is the only allocation expected.
    auto m = c.b_end.Receive(std::chrono::milliseconds(20), mode);
    const uint64_t made = t_allocations - before;
    EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
    EXPECT_LE(made, 4u) << "allocations while polling an empty pipe";
  }
  // The pipe still works after all that polling.
  ASSERT_TRUE(c.a_end.Send("after").ok());
  auto m = c.b_end.Receive(kWait, WaitMode::kBusyPoll);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->text(), "after");
}

TEST(ApiReceivePoll, ZeroTimeoutPollsOnceInEveryMode) {
  ConnectedProcesses c = Connect();
  for (WaitMode mode :
       {WaitMode::kDefault, WaitMode::kBusyPoll, WaitMode::kBlocking}) {
    SCOPED_TRACE(static_cast<int>(mode));
    auto m = c.b_end.Receive(std::chrono::nanoseconds(0), mode);
    EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
    // A queued message is found by that one poll, deadline or not.
    ASSERT_TRUE(c.b_end.Send("x").ok());
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          auto s = c.a_end.GetStatus();
          return s.ok() && s->queued_messages == 1;
        },
        kWait));
    m = c.a_end.Receive(std::chrono::nanoseconds(0), mode);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->text(), "x");
  }
}

TEST(ApiReceivePoll, LargeMessagesIntactInEveryWaitMode) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  // Past the ring's largest frame (256 KiB) messages travel as fragments.
  const std::vector<size_t> sizes = {129, 300000, (size_t{1} << 20) + 3};
  uint64_t index = 0;
  for (WaitMode mode :
       {WaitMode::kDefault, WaitMode::kBusyPoll, WaitMode::kBlocking}) {
    SCOPED_TRACE(static_cast<int>(mode));
    for (size_t size : sizes) {
      ASSERT_TRUE(c.a_end.Send(Payload(seed, index, size)).ok());
      auto m = c.b_end.Receive(kWait, mode);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_EQ(m->bytes, Payload(seed, index, size)) << size;
      ++index;
    }
  }
}

}  // namespace
}  // namespace shmports
