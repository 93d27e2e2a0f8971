// Hot-path allocation count: after warm-up, a 64-byte SendUserMessage +
// GetMessage on a local pair makes at most one heap allocation (the event
// itself). This binary replaces the global operator new to count.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>

#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace {
std::atomic<uint64_t> g_allocations{0};

void* CountedAlloc(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(size ? size : 1);
  if (!p)
    throw std::bad_alloc();
  return p;
}
void* CountedAlignedAlloc(size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  size_t a = static_cast<size_t>(align);
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
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size ? size : 1);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
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

namespace shmports::ports {
namespace {

class CountingDelegate : public NodeDelegate {
 public:
  void ForwardEvent(const NodeName&, ScopedEvent) override { ++forwarded; }
  void BroadcastEvent(ScopedEvent) override {}
  void PortStatusChanged(const PortRef&) override { ++status_changes; }
  int forwarded = 0;
  int status_changes = 0;
};

uint64_t Allocations() {
  return g_allocations.load(std::memory_order_relaxed);
}

// The counter itself works (the checker sees the fault it looks for).
TEST(PortsAllocationTest, CounterSeesAnAllocation) {
  uint64_t before = Allocations();
  auto p = std::make_unique<int>(7);
  EXPECT_EQ(before + 1, Allocations());
  EXPECT_EQ(7, *p);
}

class LocalPairAllocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(OK, node_.CreatePortPair(&a_, &b_));
    payload_.fill(0x5A);
  }
  void TearDown() override {
    EXPECT_EQ(OK, node_.ClosePort(a_));
    EXPECT_EQ(OK, node_.ClosePort(b_));
    EXPECT_TRUE(node_.CanShutdownCleanly());
  }

  void RoundTrip() {
    auto message = std::make_unique<UserMessageEvent>(0);
    message->message().Assign(payload_);
    ASSERT_EQ(OK, node_.SendUserMessage(a_, std::move(message)));
    std::unique_ptr<UserMessageEvent> received;
    ASSERT_EQ(OK, node_.GetMessage(b_, &received, nullptr));
    ASSERT_TRUE(received);
    ASSERT_EQ(64u, received->message().size());
  }

  CountingDelegate delegate_;
  Node node_{NodeName(1, 1), &delegate_};
  PortRef a_, b_;
  std::array<uint8_t, 64> payload_;
};

TEST_F(LocalPairAllocationTest, SendAndReadMakesAtMostOneAllocation) {
  for (int i = 0; i < 100; ++i)
    RoundTrip();
  constexpr uint64_t kRounds = 1000;
  uint64_t before = Allocations();
  for (uint64_t i = 0; i < kRounds; ++i)
    RoundTrip();
  uint64_t made = Allocations() - before;
  EXPECT_LE(made, kRounds) << made / double(kRounds) << " per round trip";
  EXPECT_EQ(0, delegate_.forwarded);
}

TEST_F(LocalPairAllocationTest, ResentEventMakesNoAllocation) {
  auto message = std::make_unique<UserMessageEvent>(0);
  message->message().Assign(payload_);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(OK, node_.SendUserMessage(a_, std::move(message)));
    ASSERT_EQ(OK, node_.GetMessage(b_, &message, nullptr));
  }
  uint64_t before = Allocations();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(OK, node_.SendUserMessage(a_, std::move(message)));
    ASSERT_EQ(OK, node_.GetMessage(b_, &message, nullptr));
    ASSERT_TRUE(message);
  }
  EXPECT_EQ(0u, Allocations() - before);
}

TEST_F(LocalPairAllocationTest, QueuedBurstAllocatesOnlyTheEvents) {
  constexpr int kBurst = 32;
  auto burst = [&] {
    for (int i = 0; i < kBurst; ++i) {
      auto message = std::make_unique<UserMessageEvent>(0);
      message->message().Assign(payload_);
      ASSERT_EQ(OK, node_.SendUserMessage(a_, std::move(message)));
    }
    for (int i = 0; i < kBurst; ++i) {
      std::unique_ptr<UserMessageEvent> received;
      ASSERT_EQ(OK, node_.GetMessage(b_, &received, nullptr));
      ASSERT_TRUE(received);
    }
  };
  for (int i = 0; i < 10; ++i)
    burst();
  uint64_t before = Allocations();
  for (int i = 0; i < 100; ++i)
    burst();
  EXPECT_LE(Allocations() - before, uint64_t{100} * kBurst);
}

}  // namespace
}  // namespace shmports::ports
