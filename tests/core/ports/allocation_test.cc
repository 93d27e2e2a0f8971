// Hot-path allocation count: after warm-up, a 64-byte SendUserMessage +
// GetMessage on a local pair makes at most one heap allocation (the event
// itself). This binary replaces the global operator new to count, and
// tracks live heap bytes so the hostile-peer tests below can show that what
// a peer makes this node hold stays bounded.
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "core/ports/message_queue.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace {
std::atomic<uint64_t> g_allocations{0};
std::atomic<int64_t> g_live_bytes{0};

void* Track(void* p) {
  if (p != nullptr) {
    g_live_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p)),
                           std::memory_order_relaxed);
  }
  return p;
}

void Untrack(void* p) {
  if (p != nullptr) {
    g_live_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)),
                           std::memory_order_relaxed);
  }
  std::free(p);
}

void* CountedAlloc(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = Track(std::malloc(size ? size : 1));
  if (!p)
    throw std::bad_alloc();
  return p;
}
void* CountedAlignedAlloc(size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  size_t a = static_cast<size_t>(align);
  void* p = Track(std::aligned_alloc(a, (size + a - 1) / a * a));
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
  return Track(std::malloc(size ? size : 1));
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return Track(std::malloc(size ? size : 1));
}
void* operator new(size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void* operator new[](size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void operator delete(void* p) noexcept {
  Untrack(p);
}
void operator delete[](void* p) noexcept {
  Untrack(p);
}
void operator delete(void* p, size_t) noexcept {
  Untrack(p);
}
void operator delete[](void* p, size_t) noexcept {
  Untrack(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  Untrack(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  Untrack(p);
}
void operator delete(void* p, size_t, std::align_val_t) noexcept {
  Untrack(p);
}
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  Untrack(p);
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

int64_t LiveBytes() {
  return g_live_bytes.load(std::memory_order_relaxed);
}

// The counter itself works (the checker sees the fault it looks for).
TEST(PortsAllocationTest, CounterSeesAnAllocation) {
  uint64_t before = Allocations();
  auto p = std::make_unique<int>(7);
  EXPECT_EQ(before + 1, Allocations());
  EXPECT_EQ(7, *p);
}

// The live-byte count sees a block come and go.
TEST(PortsAllocationTest, LiveBytesSeeABlock) {
  int64_t before = LiveBytes();
  auto block = std::make_unique<char[]>(1 << 20);
  block[0] = 1;
  EXPECT_GE(LiveBytes() - before, int64_t{1} << 20);
  block.reset();
  EXPECT_LT(LiveBytes() - before, int64_t{1} << 10);
}

// A hostile peer sends events no honest peer sends but that look early:
// ReadAcks claiming to come from ports that are not the target's previous
// peer (Mojo would keep them until the port closes). They are buffered
// until the peer's budget is spent, then each one is a violation; the
// buffered share stays within the budget (GetStats) and so does the heap,
// however many more the peer sends. Another peer's budget is untouched,
// and closing the ports frees everything.
TEST(PortsHostilePeerMemoryTest, ForgedEarlyEventsStayWithinThePeerBudget) {
  constexpr size_t kMaxEvents = 64;
  constexpr size_t kMaxBytes = 64 * 1024;
  NodeOptions options;
  options.limits.max_buffered_events_per_peer = kMaxEvents;
  options.limits.max_buffered_event_bytes_per_peer = kMaxBytes;
  CountingDelegate delegate;
  Node node(NodeName(1, 1), &delegate, options);
  const NodeName kHostile(9, 1);
  const NodeName kHonest(8, 1);
  std::vector<PortRef> ports(8);
  for (size_t i = 0; i < ports.size(); ++i) {
    ASSERT_EQ(OK, node.CreateUninitializedPort(&ports[i]));
    const NodeName& peer = i == 0 ? kHonest : kHostile;
    ASSERT_EQ(OK, node.InitializePort(ports[i], peer, PortName(100 + i, 1),
                                      peer, PortName(100 + i, 1)));
  }
  auto forged = [&](uint64_t i) {
    // A sender that is never the previous peer, numbered past anything.
    return std::make_unique<UserMessageReadAckEvent>(
        ports[1 + i % 7].name(), PortName(5000 + i, 1), 1, 1);
  };
  uint64_t sent = 0;
  for (; sent < kMaxEvents; ++sent) {
    AcceptResult r = node.AcceptEvent(kHostile, forged(sent));
    ASSERT_TRUE(r.ok()) << sent << ": " << r.ToString();
  }
  int64_t live_at_budget = LiveBytes();
  for (int i = 0; i < 10000; ++i, ++sent) {
    AcceptResult r = node.AcceptEvent(kHostile, forged(sent));
    ASSERT_TRUE(r.violation()) << sent << ": " << r.ToString();
  }
  // Nothing more is held for the rejected events (a little slack for
  // allocator noise, far below one event each).
  EXPECT_LT(LiveBytes() - live_at_budget, 1024);
  NodeStats stats = node.GetStats();
  EXPECT_EQ(kMaxEvents, stats.buffered_events);
  EXPECT_EQ(kMaxEvents, stats.buffered_events_largest_peer);
  EXPECT_LE(stats.buffered_event_bytes_largest_peer, kMaxBytes);

  // The honest peer still gets its early event buffered.
  AcceptResult honest =
      node.AcceptEvent(kHonest, std::make_unique<UserMessageReadAckEvent>(
                                    ports[0].name(), PortName(100, 1), 5, 0));
  EXPECT_TRUE(honest.ok()) << honest.ToString();

  for (const PortRef& port : ports)
    EXPECT_EQ(OK, node.ClosePort(port));
  stats = node.GetStats();
  EXPECT_EQ(0u, stats.buffered_events);
  EXPECT_EQ(0u, stats.buffered_events_largest_peer);
  EXPECT_TRUE(node.CanShutdownCleanly());
}

// The byte budget trips on its own: few but large early events.
TEST(PortsHostilePeerMemoryTest, ByteBudgetTripsBeforeTheCount) {
  NodeOptions options;
  options.limits.max_buffered_events_per_peer = 1000;
  options.limits.max_buffered_event_bytes_per_peer = 8 * 1024;
  CountingDelegate delegate;
  Node node(NodeName(1, 1), &delegate, options);
  const NodeName kHostile(9, 1);
  PortRef port;
  ASSERT_EQ(OK, node.CreateUninitializedPort(&port));
  ASSERT_EQ(OK, node.InitializePort(port, kHostile, PortName(7, 1), kHostile,
                                    PortName(7, 1)));
  std::vector<uint8_t> big(1024, 0x42);
  size_t accepted = 0;
  AcceptResult r = AcceptResult::Ok();
  for (uint64_t seq = 10; seq < 100 && !r.violation(); ++seq) {
    auto message = std::make_unique<UserMessageEvent>(0);
    message->set_port_name(port.name());
    message->set_from_port(PortName(7, 1));
    message->set_control_sequence_num(seq);
    message->set_sequence_num(seq);
    message->message().Assign(big);
    r = node.AcceptEvent(kHostile, std::move(message));
    if (r.ok())
      ++accepted;
  }
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_GE(accepted, 1u);
  EXPECT_LT(accepted, 8u);
  EXPECT_LE(node.GetStats().buffered_event_bytes_largest_peer, 8u * 1024);
  EXPECT_EQ(OK, node.ClosePort(port));
  EXPECT_EQ(0u, node.GetStats().buffered_event_bytes);
  EXPECT_TRUE(node.CanShutdownCleanly());
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

// MessageQueue on its own, its events made once and reused: after warm-up
// neither an in-order burst (the ring) nor one with swapped pairs (the heap
// and the merge back) allocates, and the storage a large burst grew is given
// back once it drains.
class MessageQueueAllocationTest : public ::testing::Test {
 protected:
  static constexpr size_t kLargeBurst = 20000;

  void SetUp() override {
    std::array<uint8_t, 64> payload;
    payload.fill(0x5A);
    for (size_t i = 0; i < kLargeBurst; ++i) {
      events_.push_back(std::make_unique<UserMessageEvent>(0));
      events_.back()->message().Assign(payload);
    }
  }

  // Offsets 0..n-1 in order, or with pairs (4, 5), (20, 21), ... swapped.
  static std::vector<uint64_t> Order(size_t n, bool swap_pairs) {
    std::vector<uint64_t> order(n);
    for (size_t i = 0; i < n; ++i)
      order[i] = i;
    for (size_t i = 4; swap_pairs && i + 1 < n; i += 16)
      std::swap(order[i], order[i + 1]);
    return order;
  }

  // Accepts events_[0..order.size()) numbered in `order`, then reads them
  // all back into events_.
  void Burst(const std::vector<uint64_t>& order) {
    uint64_t base = queue_.next_sequence_num();
    for (size_t i = 0; i < order.size(); ++i) {
      events_[i]->set_sequence_num(base + order[i]);
      bool has_next = false;
      queue_.AcceptMessage(std::move(events_[i]), &has_next);
    }
    for (size_t i = 0; i < order.size(); ++i) {
      queue_.GetNextMessage(&events_[i], nullptr);
      ASSERT_TRUE(events_[i]) << i;
      queue_.MessageProcessed();
    }
  }

  std::vector<std::unique_ptr<UserMessageEvent>> events_;
  MessageQueue queue_;
};

TEST_F(MessageQueueAllocationTest, SteadyStateAllocatesNothing) {
  const std::vector<uint64_t> one = Order(1, false);
  const std::vector<uint64_t> in_order = Order(256, false);
  const std::vector<uint64_t> swapped = Order(256, true);
  Burst(in_order);
  Burst(swapped);
  uint64_t before = Allocations();
  for (int i = 0; i < 100; ++i) {
    Burst(one);
    Burst(in_order);
    Burst(swapped);
  }
  EXPECT_EQ(0u, Allocations() - before);
}

TEST_F(MessageQueueAllocationTest, LargeBurstStorageIsGivenBack) {
  for (bool reversed_slice : {false, true}) {
    SCOPED_TRACE(reversed_slice ? "half the burst out of order"
                                : "burst in order");
    std::vector<uint64_t> order = Order(kLargeBurst, true);
    if (reversed_slice)
      std::reverse(order.begin() + 100, order.begin() + kLargeBurst / 2);
    int64_t before = LiveBytes();
    uint64_t base = queue_.next_sequence_num();
    for (size_t i = 0; i < order.size(); ++i) {
      events_[i]->set_sequence_num(base + order[i]);
      bool has_next = false;
      queue_.AcceptMessage(std::move(events_[i]), &has_next);
    }
    // The counter sees what the queue holds for the burst...
    EXPECT_GT(LiveBytes() - before, int64_t{64} * 1024);
    for (size_t i = 0; i < order.size(); ++i) {
      queue_.GetNextMessage(&events_[i], nullptr);
      ASSERT_TRUE(events_[i]) << i;
      queue_.MessageProcessed();
    }
    // ... and little of it is left (the small capacities kept for the
    // steady state).
    EXPECT_LT(LiveBytes() - before, int64_t{40} * 1024);
  }
}

}  // namespace
}  // namespace shmports::ports
