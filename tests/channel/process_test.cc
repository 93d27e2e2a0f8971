// Two Process objects in one OS process, joined over a credentialed socket
// pair: the whole channel/ stack (handshake, Router, rings, io threads)
// without fork, so ThreadSanitizer sees all of it (test name ends in
// _threads). A fake peer built from a bare Connection injects the faults the
// Router's checkers look for.
#include "channel/process.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "channel/connection.h"
#include "channel/fragment.h"
#include "channel/frame_kinds.h"
#include "channel/socket.h"
#include "shm/futex.h"
#include "tests/channel/process_test_util.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::channel::testing::CheckPayload;
using ::shmports::channel::testing::kMaxFramePayload;
using ::shmports::channel::testing::PortWaiter;
using ::shmports::channel::testing::ReadMessage;
using ::shmports::channel::testing::ReadPattern;
using ::shmports::channel::testing::SendPattern;
using ::shmports::channel::testing::SendText;
using ::shmports::channel::testing::TextOf;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;
using ::shmports::testing::WaitFor;

// Both identity paths: SCM_PIDFD (Linux 6.5+) and the forced pre-6.5 one.
class ProcessThreadsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam())
      setenv(kForceNoSoPassPidfdEnv, "1", 1);
    else
      unsetenv(kForceNoSoPassPidfdEnv);
  }
  void TearDown() override { unsetenv(kForceNoSoPassPidfdEnv); }

  // Joins a new inviter and invitee; the handshake runs on two threads.
  void Join(const ProcessOptions& inviter_options = {},
            const ProcessOptions& invitee_options = {}) {
    auto pair = CreateCredentialedSocketPair();
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    auto a = Process::Create(inviter_options);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    a_ = std::move(*a);
    Result<Process::Accepted> accepted = UnavailableError("not run");
    std::thread invitee([&] {
      accepted =
          Process::AcceptConnection(std::move(pair->second), invitee_options);
    });
    auto connected = a_->Connect(std::move(pair->first));
    invitee.join();
    ASSERT_TRUE(connected.ok()) << connected.status().ToString();
    ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
    b_ = std::move(accepted->process);
    a_port_ = connected->bootstrap_port;
    b_port_ = accepted->peer.bootstrap_port;
    EXPECT_EQ(connected->peer_name, b_->name());
    EXPECT_EQ(accepted->peer.peer_name, a_->name());
    a_waiter_ = std::make_unique<PortWaiter>(*a_);
    b_waiter_ = std::make_unique<PortWaiter>(*b_);
  }

  std::unique_ptr<Process> a_;
  std::unique_ptr<Process> b_;
  ports::PortRef a_port_;
  ports::PortRef b_port_;
  std::unique_ptr<PortWaiter> a_waiter_;
  std::unique_ptr<PortWaiter> b_waiter_;
};

TEST_P(ProcessThreadsTest, ExchangeMessagesBothWays) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  ASSERT_NO_FATAL_FAILURE(Join());
  const uint64_t n = Scaled(10000, 200);
  std::atomic<int> a_send{-1}, b_send{-1};
  std::thread a_sender([&] {
    a_send =
        SendPattern(a_->node(), *a_waiter_, a_port_, seed, n, kMaxFramePayload);
  });
  std::thread b_sender([&] {
    b_send = SendPattern(b_->node(), *b_waiter_, b_port_, seed + 1, n,
                         kMaxFramePayload);
  });
  Result<uint64_t> b_read = UnavailableError("not run");
  std::thread b_reader([&] {
    b_read =
        ReadPattern(b_->node(), *b_waiter_, b_port_, seed, n, kMaxFramePayload);
  });
  auto a_read = ReadPattern(a_->node(), *a_waiter_, a_port_, seed + 1, n,
                            kMaxFramePayload);
  b_reader.join();
  a_sender.join();
  b_sender.join();
  EXPECT_EQ(a_send, ports::OK);
  EXPECT_EQ(b_send, ports::OK);
  ASSERT_TRUE(a_read.ok()) << a_read.status().ToString();
  ASSERT_TRUE(b_read.ok()) << b_read.status().ToString();
  EXPECT_EQ(*a_read, n);
  EXPECT_EQ(*b_read, n);

  ProcessStats stats = a_->GetStats();
  ASSERT_EQ(stats.router.links.size(), 1u);
  EXPECT_GE(stats.router.links[0].messages_sent, n);
  EXPECT_GE(stats.router.links[0].messages_received, n);
  EXPECT_EQ(stats.router.peers_dropped, 0u);
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
  EXPECT_TRUE(WaitFor([&] {
    return a_->node().GetStats().ports == 0 && b_->node().GetStats().ports == 0;
  }));
}

TEST_P(ProcessThreadsTest, PortsCrossAndComeBackWithoutProxies) {
  ASSERT_NO_FATAL_FAILURE(Join());
  ports::Node& an = a_->node();
  ports::Node& bn = b_->node();
  ports::PortRef x, y;
  ASSERT_EQ(an.CreatePortPair(&x, &y), ports::OK);
  ASSERT_EQ(SendText(an, a_port_, "take", {y.name()}), ports::OK);

  auto carried = ReadMessage(bn, *b_waiter_, b_port_);
  ASSERT_TRUE(carried.ok()) << carried.status().ToString();
  ASSERT_EQ((*carried)->num_ports(), 1u);
  ports::PortRef y_at_b;
  ASSERT_EQ(bn.GetPort((*carried)->ports()[0], &y_at_b), ports::OK);

  // The carried port works across the boundary, both ways.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(SendText(an, x, "ping " + std::to_string(i)), ports::OK);
    auto ping = ReadMessage(bn, *b_waiter_, y_at_b);
    ASSERT_TRUE(ping.ok()) << ping.status().ToString();
    EXPECT_EQ(TextOf(**ping), "ping " + std::to_string(i));
    ASSERT_EQ(SendText(bn, y_at_b, "pong " + std::to_string(i)), ports::OK);
    auto pong = ReadMessage(an, *a_waiter_, x);
    ASSERT_TRUE(pong.ok()) << pong.status().ToString();
    EXPECT_EQ(TextOf(**pong), "pong " + std::to_string(i));
  }

  // There and back: y returns to A; the route collapses to a local pair.
  ASSERT_EQ(SendText(bn, b_port_, "back", {y_at_b.name()}), ports::OK);
  auto returned = ReadMessage(an, *a_waiter_, a_port_);
  ASSERT_TRUE(returned.ok()) << returned.status().ToString();
  ASSERT_EQ((*returned)->num_ports(), 1u);
  ports::PortRef y_again;
  ASSERT_EQ(an.GetPort((*returned)->ports()[0], &y_again), ports::OK);
  ASSERT_EQ(SendText(an, x, "home"), ports::OK);
  auto home = ReadMessage(an, *a_waiter_, y_again);
  ASSERT_TRUE(home.ok()) << home.status().ToString();
  EXPECT_EQ(TextOf(**home), "home");
  EXPECT_TRUE(WaitFor([&] {
    return an.GetStats().proxies == 0 && bn.GetStats().proxies == 0;
  })) << "proxies left: A "
      << an.GetStats().proxies << ", B " << bn.GetStats().proxies;
  ports::PortStatus status;
  ASSERT_EQ(an.GetStatus(x, &status), ports::OK);
  EXPECT_FALSE(status.peer_remote);

  EXPECT_EQ(an.ClosePort(x), ports::OK);
  EXPECT_EQ(an.ClosePort(y_again), ports::OK);
  EXPECT_EQ(an.ClosePort(a_port_), ports::OK);
  EXPECT_TRUE(WaitFor(
      [&] { return an.GetStats().ports == 0 && bn.GetStats().ports == 1; }));
  EXPECT_EQ(bn.ClosePort(b_port_), ports::OK);
}

TEST_P(ProcessThreadsTest, DestroyedPeerClosesExactlyItsRoutes) {
  ASSERT_NO_FATAL_FAILURE(Join());
  ports::Node& an = a_->node();
  // A route through B, and a local route that never touches it.
  ports::PortRef x, y, l1, l2;
  ASSERT_EQ(an.CreatePortPair(&x, &y), ports::OK);
  ASSERT_EQ(an.CreatePortPair(&l1, &l2), ports::OK);
  ASSERT_EQ(SendText(an, a_port_, "take", {y.name()}), ports::OK);
  ASSERT_TRUE(WaitFor([&] { return b_->node().GetStats().ports == 2; }));
  ASSERT_EQ(SendText(b_->node(), b_port_, "last words"), ports::OK);

  std::atomic<int> lost{0};
  a_->SetPeerLostObserver([&](const ports::NodeName&, const Status& reason) {
    EXPECT_EQ(reason.code(), StatusCode::kPeerClosed) << reason.ToString();
    lost.fetch_add(1);
  });
  b_waiter_.reset();
  b_.reset();  // Its socket closes: A sees the hang-up.

  auto last = ReadMessage(an, *a_waiter_, a_port_);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(TextOf(**last), "last words");
  auto closed = ReadMessage(an, *a_waiter_, a_port_);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed);
  EXPECT_TRUE(WaitFor([&] {
    ports::PortStatus s;
    return an.GetStatus(x, &s) == ports::OK && s.peer_closed;
  }));
  ASSERT_EQ(SendText(an, l1, "still here"), ports::OK);
  auto local = ReadMessage(an, *a_waiter_, l2);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(TextOf(**local), "still here");
  // The observer runs after LostConnectionToNode, on the io thread.
  EXPECT_TRUE(WaitFor([&] { return lost.load() == 1; }));
  ProcessStats stats = a_->GetStats();
  EXPECT_EQ(stats.router.peer_deaths, 1u);
  EXPECT_TRUE(stats.router.links.empty());
  for (auto* p : {&x, &l1, &l2, &a_port_})
    EXPECT_EQ(an.ClosePort(*p), ports::OK);
  EXPECT_TRUE(WaitFor([&] { return an.GetStats().ports == 0; }));
}

TEST_P(ProcessThreadsTest, FullRingOverflowsAndDrainsInOrder) {
  ProcessOptions small;
  small.connection.outbound_ring.capacity = shm::kMinRingCapacity;
  ASSERT_NO_FATAL_FAILURE(Join(small, small));
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  const size_t max_payload = shm::kMinRingCapacity / 4 - 64;
  const uint64_t n = Scaled(3000, 300);
  // The receiver's io thread is held until the sender has queued events
  // beyond the ring; then the space wake drains the overflow queue.
  std::mutex hold_mutex;
  std::condition_variable hold_cv;
  bool held = false;
  bool release = false;
  b_->PostToIoThreadForTesting([&] {
    std::unique_lock<std::mutex> lock(hold_mutex);
    held = true;
    hold_cv.notify_all();
    hold_cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> lock(hold_mutex);
    ASSERT_TRUE(
        hold_cv.wait_for(lock, std::chrono::seconds(20), [&] { return held; }));
  }
  auto release_receiver = [&] {
    std::lock_guard<std::mutex> lock(hold_mutex);
    release = true;
    hold_cv.notify_all();
  };
  for (uint64_t i = 0; i < n; ++i) {
    auto payload = testing::MakePayload(seed, i, max_payload);
    const int rv = testing::SendBytes(a_->node(), a_port_, payload);
    if (rv != ports::OK)
      release_receiver();
    ASSERT_EQ(rv, ports::OK);
  }
  const bool overflowed = WaitFor([&] {
    ProcessStats s = a_->GetStats();
    return s.router.links.size() == 1 && s.router.links[0].overflow_depth > 0;
  });
  release_receiver();
  EXPECT_TRUE(overflowed);
  auto read =
      ReadPattern(b_->node(), *b_waiter_, b_port_, seed, n, max_payload);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, n);
  ProcessStats stats = a_->GetStats();
  ASSERT_EQ(stats.router.links.size(), 1u);
  EXPECT_GT(stats.router.links[0].overflow_high_water, 0u);
  EXPECT_EQ(stats.router.links[0].overflow_depth, 0u);
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
}

TEST_P(ProcessThreadsTest, PeerGoneWithOverflowPendingIsCleanedUp) {
  ProcessOptions small;
  small.connection.outbound_ring.capacity = shm::kMinRingCapacity;
  ASSERT_NO_FATAL_FAILURE(Join(small, small));
  std::vector<uint8_t> payload(shm::kMinRingCapacity / 4 - 64, 0x5A);
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(testing::SendBytes(a_->node(), a_port_, payload), ports::OK);
  b_waiter_.reset();
  b_.reset();
  EXPECT_TRUE(WaitFor([&] {
    ports::PortStatus s;
    return a_->node().GetStatus(a_port_, &s) == ports::OK && s.peer_closed;
  }));
  EXPECT_TRUE(WaitFor([&] { return a_->GetStats().router.links.empty(); }));
  // Sends after the loss go nowhere and change nothing.
  EXPECT_EQ(testing::SendBytes(a_->node(), a_port_, payload),
            ports::ERROR_PORT_PEER_CLOSED);
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_TRUE(WaitFor([&] { return a_->node().GetStats().ports == 0; }));
}

TEST_P(ProcessThreadsTest, InviteeClaimingAnotherNameIsRefused) {
  auto pair = CreateCredentialedSocketPair();
  ASSERT_TRUE(pair.ok());
  auto a = Process::Create();
  ASSERT_TRUE(a.ok());
  ProcessOptions liar;
  liar.connection.testing_claimed_name = (*a)->name();
  Result<Process::Accepted> accepted = UnavailableError("not run");
  std::thread invitee([&] {
    accepted = Process::AcceptConnection(std::move(pair->second), liar);
  });
  auto connected = (*a)->Connect(std::move(pair->first));
  invitee.join();
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.status().code(), StatusCode::kProtocolViolation);
  EXPECT_NE(connected.status().ToString().find("claims node name"),
            std::string::npos)
      << connected.status().ToString();
  EXPECT_FALSE(accepted.ok());
  EXPECT_EQ((*a)->node().GetStats().ports, 0u);
}

TEST_P(ProcessThreadsTest, OtherMajorVersionIsRefusedNamingBoth) {
  auto pair = CreateCredentialedSocketPair();
  ASSERT_TRUE(pair.ok());
  auto a = Process::Create();
  ASSERT_TRUE(a.ok());
  ProcessOptions future;
  future.connection.testing_major = kProtocolMajor + 1;
  Result<Process::Accepted> accepted = UnavailableError("not run");
  std::thread invitee([&] {
    accepted = Process::AcceptConnection(std::move(pair->second), future);
  });
  auto connected = (*a)->Connect(std::move(pair->first));
  invitee.join();
  ASSERT_FALSE(connected.ok());
  std::string text = connected.status().ToString();
  EXPECT_EQ(connected.status().code(), StatusCode::kFailedPrecondition) << text;
  EXPECT_NE(text.find(std::to_string(kProtocolMajor + 1) + "."),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("speaks " + std::to_string(kProtocolMajor) + "."),
            std::string::npos)
      << text;
  ASSERT_FALSE(accepted.ok());
  EXPECT_EQ(accepted.status().code(), StatusCode::kFailedPrecondition);
}

// Holds a Process's io thread until released: nothing on it is served
// meanwhile (rings fill, overflow queues grow) — a deterministic receiver
// that does not drain.
class IoThreadHold {
 public:
  explicit IoThreadHold(Process& process) : state_(std::make_shared<State>()) {
    process.PostToIoThreadForTesting([state = state_] {
      std::unique_lock<std::mutex> lock(state->mu);
      state->held = true;
      state->cv.notify_all();
      state->cv.wait(lock, [&] { return state->release; });
    });
  }
  ~IoThreadHold() { Release(); }
  bool WaitHeld() {
    std::unique_lock<std::mutex> lock(state_->mu);
    return state_->cv.wait_for(lock, std::chrono::seconds(20),
                               [&] { return state_->held; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->release = true;
    state_->cv.notify_all();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool held = false;
    bool release = false;
  };
  std::shared_ptr<State> state_;
};

bool LinkStat(Process& process,
              const std::function<bool(const LinkStats&)>& pred) {
  ProcessStats s = process.GetStats();
  return s.router.links.size() == 1 && pred(s.router.links[0]);
}

TEST_P(ProcessThreadsTest, OverflowBeyondBudgetDropsThePeer) {
  ProcessOptions small;
  small.connection.outbound_ring.capacity = shm::kMinRingCapacity;
  small.router.overflow_budget_bytes = 64 * 1024;
  ASSERT_NO_FATAL_FAILURE(Join(small, small));
  IoThreadHold hold(*b_);
  ASSERT_TRUE(hold.WaitHeld());
  // The receiver serves nothing: the ring fills, the queue grows past the
  // budget, and the sender drops the peer as not draining.
  std::vector<uint8_t> payload(shm::kMinRingCapacity / 4 - 64, 0x5A);
  const int kMaxSends = 10 * 64 * 1024 / static_cast<int>(payload.size());
  int sent = 0;
  while (sent < kMaxSends &&
         testing::SendBytes(a_->node(), a_port_, payload) == ports::OK) {
    ++sent;
  }
  EXPECT_TRUE(WaitFor([&] {
    ProcessStats s = a_->GetStats();
    return s.router.budget_rejections == 1 && s.router.links.empty();
  }));
  ProcessStats stats = a_->GetStats();
  EXPECT_EQ(stats.router.peers_dropped, 1u);
  EXPECT_EQ(stats.router.peer_deaths, 0u);
  std::string reasons;
  for (const auto& [reason, count] : stats.router.violations)
    reasons += reason + "; ";
  EXPECT_NE(reasons.find("not draining"), std::string::npos) << reasons;
  EXPECT_TRUE(WaitFor([&] {
    ports::PortStatus s;
    return a_->node().GetStatus(a_port_, &s) == ports::OK && s.peer_closed;
  }));
  // The held peer, once released, sees the hang-up: its port closes too.
  hold.Release();
  EXPECT_TRUE(WaitFor([&] {
    ports::PortStatus s;
    return b_->node().GetStatus(b_port_, &s) == ports::OK && s.peer_closed;
  }));
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
}

// Log-uniform sizes 1 B .. 2 MiB against 1 MiB rings (256 KiB frames): the
// large ones travel as fragment streams. Both ways at once.
TEST_P(ProcessThreadsTest, LargeMessagesBothWays) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  ASSERT_NO_FATAL_FAILURE(Join());
  constexpr size_t kMax = size_t{2} << 20;
  const uint64_t n = Scaled(600, 40);
  std::atomic<int> a_send{-1}, b_send{-1};
  std::thread a_sender([&] {
    a_send = SendPattern(a_->node(), *a_waiter_, a_port_, seed, n, kMax, 16);
  });
  std::thread b_sender([&] {
    b_send =
        SendPattern(b_->node(), *b_waiter_, b_port_, seed + 1, n, kMax, 16);
  });
  Result<uint64_t> b_read = UnavailableError("not run");
  std::thread b_reader([&] {
    b_read = ReadPattern(b_->node(), *b_waiter_, b_port_, seed, n, kMax);
  });
  auto a_read = ReadPattern(a_->node(), *a_waiter_, a_port_, seed + 1, n, kMax);
  b_reader.join();
  a_sender.join();
  b_sender.join();
  EXPECT_EQ(a_send, ports::OK);
  EXPECT_EQ(b_send, ports::OK);
  ASSERT_TRUE(a_read.ok()) << a_read.status().ToString();
  ASSERT_TRUE(b_read.ok()) << b_read.status().ToString();
  EXPECT_EQ(*a_read, n);
  EXPECT_EQ(*b_read, n);
  for (Process* p : {a_.get(), b_.get()}) {
    ProcessStats stats = p->GetStats();
    ASSERT_EQ(stats.router.links.size(), 1u);
    // Index 0 is always the 2 MiB message: fragments went both ways.
    EXPECT_GT(stats.router.links[0].fragments_sent, 0u);
    EXPECT_GT(stats.router.links[0].fragments_received, 0u);
    EXPECT_EQ(stats.router.links[0].reassembly_bytes, 0u);
    EXPECT_EQ(stats.router.peers_dropped, 0u);
  }
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
}

// Both rings full at once (both io threads held while both sides flood),
// with the receiving ports of both routes bouncing between the processes
// meanwhile, so proxies in both forward queued traffic. Everything arrives,
// in order; the queues drain; the proxies go away. Fails by deadlines.
TEST_P(ProcessThreadsTest, FullRingsBothWaysWithProxiesInBoth) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  ProcessOptions small;
  small.connection.outbound_ring.capacity = shm::kMinRingCapacity;
  ASSERT_NO_FATAL_FAILURE(Join(small, small));
  constexpr size_t kMax = 6 * 1024;  // Up to 7 fragments of a 1 KiB frame.
  constexpr int kHops = 5;           // Odd: each port ends on the far side.
  const uint64_t n = Scaled(2000, 200);

  struct Side {
    Process* process;
    PortWaiter* waiter;
    ports::PortRef bootstrap;
    ports::PortRef sender;  // Writes to the route whose receiver bounces.
    ports::PortRef receiver;
    uint64_t seed;
  };
  Side a{a_.get(), a_waiter_.get(), a_port_, {}, {}, seed};
  Side b{b_.get(), b_waiter_.get(), b_port_, {}, {}, seed + 1};
  for (Side* s : {&a, &b}) {
    ASSERT_EQ(s->process->node().CreatePortPair(&s->sender, &s->receiver),
              ports::OK);
    ASSERT_EQ(
        SendText(s->process->node(), s->bootstrap, "1", {s->receiver.name()}),
        ports::OK);
  }
  auto flood = [](Side& s, uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; ++i) {
      auto payload = testing::MakePayload(s.seed, i, kMax);
      int rv = testing::SendBytes(s.process->node(), s.sender, payload);
      if (rv != ports::OK)
        return rv;
    }
    return static_cast<int>(ports::OK);
  };
  // The first hop must be accepted before the io threads stop, or the
  // floods would wait in buffering proxies instead of filling the rings.
  ASSERT_TRUE(WaitFor([&] {
    return a_->node().GetStats().buffering == 0 &&
           b_->node().GetStats().buffering == 0;
  }));
  {
    IoThreadHold hold_a(*a_);
    IoThreadHold hold_b(*b_);
    ASSERT_TRUE(hold_a.WaitHeld());
    ASSERT_TRUE(hold_b.WaitHeld());
    EXPECT_EQ(flood(a, 0, n / 2), ports::OK);
    EXPECT_EQ(flood(b, 0, n / 2), ports::OK);
    auto queued = [](const LinkStats& l) { return l.overflow_depth > 0; };
    EXPECT_TRUE(LinkStat(*a_, queued));
    EXPECT_TRUE(LinkStat(*b_, queued));
  }
  // Each side: forward every bounced port onwards until its last hop, keep
  // the one that arrives for the last time, and read its route.
  auto serve = [&](Side& s, Result<uint64_t>* read) {
    ports::PortRef kept;
    for (int i = 0; i < kHops; ++i) {
      auto message = ReadMessage(s.process->node(), *s.waiter, s.bootstrap);
      if (!message.ok()) {
        *read = std::move(message).TakeStatus().WithContext("bounce");
        return;
      }
      int hop = std::stoi(TextOf(**message));
      ports::PortRef port;
      if ((*message)->num_ports() != 1 ||
          s.process->node().GetPort((*message)->ports()[0], &port) !=
              ports::OK) {
        *read = InternalError("bounce message without its port");
        return;
      }
      if (hop == kHops) {
        kept = port;
        continue;
      }
      int rv = SendText(s.process->node(), s.bootstrap, std::to_string(hop + 1),
                        {port.name()});
      if (rv != ports::OK) {
        *read = InternalError("forward bounce: " + std::to_string(rv));
        return;
      }
    }
    if (!kept.is_valid()) {
      *read = InternalError("no port stayed here");
      return;
    }
    Side& other = (&s == &a) ? b : a;
    *read =
        ReadPattern(s.process->node(), *s.waiter, kept, other.seed, n, kMax);
    (void)s.process->node().ClosePort(kept);
  };
  std::atomic<int> a_flood{-1}, b_flood{-1};
  std::thread a_flooder([&] { a_flood = flood(a, n / 2, n); });
  std::thread b_flooder([&] { b_flood = flood(b, n / 2, n); });
  Result<uint64_t> a_read = UnavailableError("not run");
  Result<uint64_t> b_read = UnavailableError("not run");
  std::thread b_server([&] { serve(b, &b_read); });
  serve(a, &a_read);
  b_server.join();
  a_flooder.join();
  b_flooder.join();
  EXPECT_EQ(a_flood, ports::OK);
  EXPECT_EQ(b_flood, ports::OK);
  ASSERT_TRUE(a_read.ok()) << a_read.status().ToString();
  ASSERT_TRUE(b_read.ok()) << b_read.status().ToString();
  EXPECT_EQ(*a_read, n);
  EXPECT_EQ(*b_read, n);
  for (Process* p : {a_.get(), b_.get()}) {
    ProcessStats stats = p->GetStats();
    ASSERT_EQ(stats.router.links.size(), 1u);
    EXPECT_GT(stats.router.links[0].overflow_high_water, 0u);
    EXPECT_GT(stats.router.links[0].fragments_sent, 0u);
    EXPECT_EQ(stats.router.peers_dropped, 0u);
  }
  EXPECT_TRUE(WaitFor([&] {
    return LinkStat(*a_,
                    [](const LinkStats& l) { return l.overflow_depth == 0; }) &&
           LinkStat(*b_,
                    [](const LinkStats& l) { return l.overflow_depth == 0; });
  }));
  for (Side* s : {&a, &b})
    EXPECT_EQ(s->process->node().ClosePort(s->sender), ports::OK);
  EXPECT_TRUE(WaitFor([&] {
    return a_->node().GetStats().proxies == 0 &&
           b_->node().GetStats().proxies == 0;
  }));
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
}

// Shutdown with events still queued behind a full ring: the goodbye waits
// behind them, the peer delivers all of them, then sees peer_closed — a
// goodbye, not a death, on either side.
TEST_P(ProcessThreadsTest, ShutdownDeliversEverythingInFlightThenClosed) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  ProcessOptions small;
  small.connection.outbound_ring.capacity = shm::kMinRingCapacity;
  ASSERT_NO_FATAL_FAILURE(Join(small, small));
  constexpr size_t kMax = 3000;
  const uint64_t n = Scaled(500, 50);
  IoThreadHold hold(*b_);
  ASSERT_TRUE(hold.WaitHeld());
  for (uint64_t i = 0; i < n; ++i) {
    auto payload = testing::MakePayload(seed, i, kMax);
    ASSERT_EQ(testing::SendBytes(a_->node(), a_port_, payload), ports::OK);
  }
  ASSERT_TRUE(
      LinkStat(*a_, [](const LinkStats& l) { return l.overflow_depth > 0; }));
  // The receiver is held: the goodbye cannot be in the ring by then.
  Status early = a_->Shutdown(Deadline::In(std::chrono::milliseconds(20)));
  EXPECT_EQ(early.code(), StatusCode::kUnavailable) << early.ToString();
  // Events forwarded after the goodbye are dropped and counted.
  EXPECT_EQ(testing::SendText(a_->node(), a_port_, "late"), ports::OK);
  EXPECT_TRUE(LinkStat(
      *a_, [](const LinkStats& l) { return l.events_after_goodbye == 1; }));
  Status done = UnavailableError("not run");
  std::thread closer(
      [&] { done = a_->Shutdown(Deadline::In(std::chrono::seconds(60))); });
  hold.Release();
  auto read = ReadPattern(b_->node(), *b_waiter_, b_port_, seed, n, kMax);
  closer.join();
  EXPECT_TRUE(done.ok()) << done.ToString();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, n);
  auto closed = ReadMessage(b_->node(), *b_waiter_, b_port_);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed)
      << closed.status().ToString();
  EXPECT_TRUE(WaitFor([&] {
    return b_->GetStats().router.links.empty() &&
           a_->GetStats().router.links.empty();
  }));
  ProcessStats b_stats = b_->GetStats();
  EXPECT_EQ(b_stats.router.goodbyes_received, 1u);
  EXPECT_EQ(b_stats.router.peer_deaths, 0u);
  EXPECT_EQ(b_stats.router.peers_dropped, 0u);
  ProcessStats a_stats = a_->GetStats();
  EXPECT_EQ(a_stats.router.peer_deaths, 0u);
  EXPECT_EQ(a_stats.router.peers_dropped, 0u);
  EXPECT_EQ(a_->node().ClosePort(a_port_), ports::OK);
  EXPECT_EQ(b_->node().ClosePort(b_port_), ports::OK);
}

INSTANTIATE_TEST_SUITE_P(IdentityModes,
                         ProcessThreadsTest,
                         ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? "ForcedPidfdOpen"
                                                   : "Default";
                         });

// A fake peer: a bare inviter-side Connection whose outbound ring the test
// writes by hand, against a real Process.
class FakePeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pair = CreateCredentialedSocketPair();
    ASSERT_TRUE(pair.ok());
    Result<Process::Accepted> accepted = UnavailableError("not run");
    std::thread invitee(
        [&] { accepted = Process::AcceptConnection(std::move(pair->second)); });
    auto fake =
        Connection::Invite(std::move(pair->first), kFakeName, kAssignedName,
                           ports::PortName(9, 9), ConnectionOptions());
    invitee.join();
    ASSERT_TRUE(fake.ok()) << fake.status().ToString();
    ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
    fake_ = std::move(*fake);
    process_ = std::move(accepted->process);
    port_ = accepted->peer.bootstrap_port;
    waiter_ = std::make_unique<PortWaiter>(*process_);
    EXPECT_EQ(process_->name(), kAssignedName);
  }

  void WriteEvent(const ports::Event& event) {
    ASSERT_TRUE(fake_->outbound_ring()
                    .Write(kEventFrameKind, event.SerializeToVector())
                    .ok());
  }

  void WriteFrame(uint16_t kind, const std::vector<uint8_t>& payload) {
    ASSERT_TRUE(fake_->outbound_ring().Write(kind, payload).ok());
  }

  bool PeerDropped() {
    ProcessStats stats = process_->GetStats();
    return stats.router.links.empty() && stats.router.peers_dropped == 1;
  }

  std::string Violations() {
    std::string out;
    for (const auto& [reason, count] : process_->GetStats().router.violations)
      out += reason + "; ";
    return out;
  }

  static constexpr ports::NodeName kFakeName{7, 7};
  static constexpr ports::NodeName kAssignedName{8, 8};
  std::unique_ptr<Connection> fake_;
  std::unique_ptr<Process> process_;
  ports::PortRef port_;
  std::unique_ptr<PortWaiter> waiter_;
};

ports::ScopedEvent UserMessageTo(const ports::PortName& port, uint64_t seq) {
  auto event = std::make_unique<ports::UserMessageEvent>(0);
  event->set_port_name(port);
  event->set_sequence_num(seq);
  // The first event on this hop (control sequence numbers start at 1).
  event->set_control_sequence_num(1);
  event->set_from_port(ports::PortName(9, 9));  // The fake's bootstrap port.
  event->message().Assign(std::string_view("hi"));
  return event;
}

TEST_F(FakePeerTest, ValidEventIsDeliveredFromTheAuthenticatedName) {
  WriteEvent(*UserMessageTo(port_.name(), 1));
  auto message = ReadMessage(process_->node(), *waiter_, port_);
  ASSERT_TRUE(message.ok()) << message.status().ToString();
  EXPECT_EQ(TextOf(**message), "hi");
  EXPECT_FALSE(PeerDropped());
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, EventToUnknownPortIsIgnoredAndCounted) {
  WriteEvent(*UserMessageTo(ports::PortName(123, 456), 1));
  EXPECT_TRUE(WaitFor([&] {
    auto stats = process_->GetStats();
    return stats.router.links.size() == 1 &&
           stats.router.links[0].events_ignored == 1;
  }));
  EXPECT_FALSE(PeerDropped());
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, ProtocolViolationDropsPeer) {
  WriteEvent(*UserMessageTo(port_.name(), uint64_t{1} << 40));
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("protocol"), std::string::npos) << Violations();
  auto closed = ReadMessage(process_->node(), *waiter_, port_);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed);
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, UndecodableEventDropsPeer) {
  std::vector<uint8_t> garbage(100, 0xAB);
  ASSERT_TRUE(fake_->outbound_ring().Write(kEventFrameKind, garbage).ok());
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("decode event"), std::string::npos)
      << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, UnknownFrameKindDropsPeer) {
  std::vector<uint8_t> bytes(8, 0);
  ASSERT_TRUE(fake_->outbound_ring().Write(kEventFrameKind + 5, bytes).ok());
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("unknown kind 21"), std::string::npos)
      << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, CorruptRingDropsPeer) {
  // The producer's tail jumps past anything the capacity allows.
  // Wait until the io thread sleeps on the data word, then move the tail
  // past anything the capacity allows and wake it by hand.
  auto* control = fake_->outbound_control();
  ASSERT_TRUE(WaitFor([&] {
    return std::atomic_ref<uint32_t>(control->consumer_sleeping).load() == 1;
  }));
  std::atomic_ref<uint64_t>(control->tail)
      .store(uint64_t{1} << 40, std::memory_order_release);
  std::atomic_ref<uint32_t>(control->data_futex).fetch_add(1);
  shm::FutexWake(&control->data_futex, 1);
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("corrupt"), std::string::npos) << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, FragmentedEventIsReassembledAndDelivered) {
  auto event = UserMessageTo(port_.name(), 1);
  std::vector<uint8_t> big(100 * 1024, 0x33);
  static_cast<ports::UserMessageEvent*>(event.get())->message().Assign(big);
  std::vector<uint8_t> bytes = event->SerializeToVector();
  for (const auto& fragment : SplitIntoFragments(bytes, 4096))
    WriteFrame(kEventFragmentFrameKind, fragment);
  auto message = ReadMessage(process_->node(), *waiter_, port_);
  ASSERT_TRUE(message.ok()) << message.status().ToString();
  EXPECT_EQ((*message)->message().bytes().size(), big.size());
  EXPECT_FALSE(PeerDropped());
  auto stats = process_->GetStats();
  ASSERT_EQ(stats.router.links.size(), 1u);
  EXPECT_EQ(stats.router.links[0].fragments_received,
            (bytes.size() + 4095 - kFragmentHeaderSize) /
                (4096 - kFragmentHeaderSize));
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, LyingFragmentStreamDropsPeer) {
  std::vector<uint8_t> data(100, 1);
  WriteFrame(kEventFragmentFrameKind, EncodeFragment(1000, 0, data));
  WriteFrame(kEventFragmentFrameKind, EncodeFragment(1000, 150, data));
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("gap"), std::string::npos) << Violations();
  auto closed = ReadMessage(process_->node(), *waiter_, port_);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed);
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, FragmentTotalBeyondTheLimitDropsPeer) {
  std::vector<uint8_t> data(100, 1);
  WriteFrame(kEventFragmentFrameKind,
             EncodeFragment(kDefaultMaxMessageBytes + 1, 0, data));
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("beyond the largest message"), std::string::npos)
      << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, EventInsideAFragmentStreamDropsPeer) {
  WriteFrame(kEventFragmentFrameKind,
             EncodeFragment(1000, 0, std::vector<uint8_t>(100, 1)));
  WriteEvent(*UserMessageTo(port_.name(), 1));
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("in the middle of a fragment stream"),
            std::string::npos)
      << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, GoodbyeDeliversWhatCameBeforeThenCloses) {
  WriteEvent(*UserMessageTo(port_.name(), 1));
  WriteFrame(kGoodbyeFrameKind, {});
  auto message = ReadMessage(process_->node(), *waiter_, port_);
  ASSERT_TRUE(message.ok()) << message.status().ToString();
  EXPECT_EQ(TextOf(**message), "hi");
  auto closed = ReadMessage(process_->node(), *waiter_, port_);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed);
  ProcessStats stats = process_->GetStats();
  EXPECT_EQ(stats.router.goodbyes_received, 1u);
  EXPECT_EQ(stats.router.peer_deaths, 0u);
  EXPECT_EQ(stats.router.peers_dropped, 0u);
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

TEST_F(FakePeerTest, FrameAfterGoodbyeDropsPeer) {
  {
    // Both frames are in the ring before the io thread looks.
    IoThreadHold hold(*process_);
    ASSERT_TRUE(hold.WaitHeld());
    WriteFrame(kGoodbyeFrameKind, {});
    WriteEvent(*UserMessageTo(port_.name(), 1));
  }
  EXPECT_TRUE(WaitFor([&] { return PeerDropped(); }));
  EXPECT_NE(Violations().find("after the goodbye"), std::string::npos)
      << Violations();
  EXPECT_EQ(process_->node().ClosePort(port_), ports::OK);
}

// The peer-death checker, fed each fault it looks for.
TEST(CommittedPrefixCheckerTest, ReportsEachFault) {
  constexpr uint64_t kSeed = 99;
  constexpr size_t kMax = 4096;
  auto feed = [&](std::vector<uint64_t> order, uint64_t committed,
                  int flip_in = -1) {
    testing::CommittedPrefixChecker checker(kSeed, kMax);
    for (uint64_t index : order) {
      std::vector<uint8_t> payload = testing::MakePayload(kSeed, index, kMax);
      if (static_cast<int64_t>(index) == flip_in && !payload.empty())
        payload[payload.size() / 2] ^= 0x10;
      checker.Observe(payload);
    }
    return checker.Verify(committed);
  };
  EXPECT_EQ(feed({0, 1, 2, 3, 4, 5}, 6), "");
  EXPECT_EQ(feed({0, 1, 2, 3, 4, 5}, 4), "") << "more than committed is fine";
  EXPECT_NE(feed({0, 1, 2, 4, 5}, 5), "") << "drop";
  EXPECT_NE(feed({0, 1, 2, 2, 3, 4}, 5), "") << "duplicate";
  EXPECT_NE(feed({0, 1, 3, 2, 4, 5}, 6), "") << "reorder";
  EXPECT_NE(feed({0, 1, 2, 3, 4, 5}, 6, 3), "") << "flipped byte";
  EXPECT_NE(feed({0, 1, 2, 3}, 6), "") << "committed tail lost";
  EXPECT_NE(feed({0, 1, 2, 3}, 6).find("6 committed, 4 arrived"),
            std::string::npos);
}

}  // namespace
}  // namespace shmports::channel
