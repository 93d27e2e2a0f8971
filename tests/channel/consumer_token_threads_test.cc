// The consumer token (issue 8): a thread waiting in Pipe::Receive drains the
// inbound ring itself. Two Processes in this OS process, no fork (the TSan
// build runs this file: name *_threads).
//
// Determinism: the tests that must see the waiter drain hold the receiving
// Process's io thread in a blocking task (PostToIoThreadForTesting), so the
// only consumer that can deliver the message is the waiting thread; the
// stress test asserts only what must hold whatever the interleaving (every
// message, in order; nothing left in a ring once the waiter leaves).
#include <gtest/gtest.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "channel/api/internal.h"
#include "channel/api/testing.h"
#include "channel/process.h"
#include "tests/util/test_util.h"

namespace shmports {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ConnectedProcesses;

constexpr auto kWait = seconds(30);

ConnectedProcesses Connect() {
  auto connected = testing::ConnectProcessesForTesting();
  EXPECT_TRUE(connected.ok()) << connected.status().ToString();
  return std::move(*connected);
}

channel::Process& ChannelProcessOf(const Pipe& pipe) {
  return *api_internal::PipeState::StateOf(pipe)->core->process;
}

// Frames drained by waiting threads and by the io thread, over all links.
struct Drained {
  uint64_t by_waiters = 0;
  uint64_t by_io = 0;
};

Drained DrainedOf(const Pipe& pipe) {
  Drained d;
  for (const auto& link : ChannelProcessOf(pipe).GetStats().router.links) {
    d.by_waiters += link.frames_drained_by_waiters;
    d.by_io += link.frames_drained_by_io;
  }
  return d;
}

// Holds a Process's io thread in a task until Release (or destruction).
class IoThreadHold {
 public:
  explicit IoThreadHold(channel::Process& process) {
    std::promise<void> started;
    std::future<void> started_future = started.get_future();
    std::shared_future<void> release = release_.get_future().share();
    process.PostToIoThreadForTesting([&started, release] {
      started.set_value();
      release.wait();
    });
    started_future.wait();
  }
  ~IoThreadHold() { Release(); }
  void Release() {
    if (!released_) {
      released_ = true;
      release_.set_value();
    }
  }

 private:
  std::promise<void> release_;
  bool released_ = false;
};

std::string Text(const Result<PipeMessage>& m) {
  return m.ok() ? std::string(m->text()) : "error: " + m.status().ToString();
}

class ConsumerTokenModes : public ::testing::TestWithParam<WaitMode> {};

// With the receiver's io thread held, only the waiting thread can drain the
// ring: the message arriving at all shows the waiter drained it.
TEST_P(ConsumerTokenModes, WaiterDrainsItsOwnMessages) {
  ConnectedProcesses c = Connect();
  // One round first, so the bootstrap exchange is settled.
  ASSERT_TRUE(c.a_end.Send("warm-up").ok());
  ASSERT_EQ(Text(c.b_end.Receive(kWait)), "warm-up");
  const Drained before = DrainedOf(c.b_end);
  {
    IoThreadHold hold(ChannelProcessOf(c.b_end));
    const int n = static_cast<int>(testing::Scaled(20, 3));
    std::thread sender([&] {
      for (int i = 0; i < n; ++i)
        ASSERT_TRUE(c.a_end.Send(std::to_string(i)).ok());
    });
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(Text(c.b_end.Receive(kWait, GetParam())), std::to_string(i));
    sender.join();
  }
  const Drained after = DrainedOf(c.b_end);
  EXPECT_GE(after.by_waiters - before.by_waiters, 1u);
}

// Past the ring's largest frame a message travels as fragments: the waiter
// reassembles it as the io thread would (the sender's overflow queue moves
// on as the waiter frees space).
TEST_P(ConsumerTokenModes, WaiterReassemblesFragments) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.Send("warm-up").ok());
  ASSERT_EQ(Text(c.b_end.Receive(kWait)), "warm-up");
  std::vector<uint8_t> large(600 * 1024);
  for (size_t i = 0; i < large.size(); ++i)
    large[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  IoThreadHold hold(ChannelProcessOf(c.b_end));
  ASSERT_TRUE(c.a_end.Send(large).ok());
  ASSERT_TRUE(c.a_end.Send("after").ok());
  auto m = c.b_end.Receive(kWait, GetParam());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->bytes == large) << m->bytes.size() << " bytes";
  EXPECT_EQ(Text(c.b_end.Receive(kWait, GetParam())), "after");
}

// Messages for another port, drained by a waiter of this one, reach theirs.
TEST_P(ConsumerTokenModes, OtherPortsMessagesDrainedByWaiterArrive) {
  ConnectedProcesses c = Connect();
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  auto& [x, y] = *pair;
  std::vector<Pipe> attached;
  attached.push_back(std::move(y));
  ASSERT_TRUE(c.a_end.Send("carrier", std::move(attached)).ok());
  auto carrier = c.b_end.Receive(kWait);
  ASSERT_TRUE(carrier.ok()) << carrier.status().ToString();
  ASSERT_EQ(carrier->pipes.size(), 1u);
  Pipe y_in_b = std::move(carrier->pipes[0]);
  // Until the proxy left in `a` is gone, x's messages may wait there for
  // b's io thread; once it is, they go straight into the ring.
  ASSERT_TRUE(x.Send("settle").ok());
  ASSERT_EQ(Text(y_in_b.Receive(kWait)), "settle");
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return ChannelProcessOf(c.a_end).GetStats().node.proxies == 0 &&
               ChannelProcessOf(c.b_end).GetStats().node.proxies == 0;
      },
      kWait));
  {
    IoThreadHold hold(ChannelProcessOf(c.b_end));
    ASSERT_TRUE(x.Send("for-y").ok());
    ASSERT_TRUE(c.a_end.Send("for-b").ok());
    // The ring holds for-y before for-b: the waiter of b_end drained both.
    EXPECT_EQ(Text(c.b_end.Receive(kWait, GetParam())), "for-b");
    EXPECT_EQ(Text(y_in_b.Receive()), "for-y");
  }
}

// After a waiter leaves (timed out) the io thread drains again: no message
// is stranded in the ring and no wake-up is lost.
TEST_P(ConsumerTokenModes, IoThreadResumesAfterWaiterTimesOut) {
  ConnectedProcesses c = Connect();
  for (int round = 0; round < 5; ++round) {
    auto none = c.b_end.Receive(milliseconds(2), GetParam());
    ASSERT_EQ(none.status().code(), StatusCode::kUnavailable);
    ASSERT_TRUE(c.a_end.Send("late " + std::to_string(round)).ok());
    // No waiter now: only the io thread can deliver it.
    std::string got;
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          auto m = c.b_end.Receive();
          if (m.ok())
            got = std::string(m->text());
          return m.ok();
        },
        kWait));
    EXPECT_EQ(got, "late " + std::to_string(round));
  }
}

// A violation found by the waiter is handed to the io thread, which drops
// the peer exactly as if it had found it: the waiter delivers nothing past
// it, and the drop happens only once the io thread runs.
TEST_P(ConsumerTokenModes, ViolationFoundByWaiterDropsPeerOnIoThread) {
  ProcessOptions b_options;
  b_options.max_queued_messages_per_pipe = 4;
  auto connected = testing::ConnectProcessesForTesting({}, b_options);
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  ConnectedProcesses c = std::move(*connected);
  testing::IgnorePeerReceiveCapsForTesting(*c.a, true);
  {
    IoThreadHold hold(ChannelProcessOf(c.b_end));
    // The fifth is past b's cap: a protocol violation.
    for (int i = 0; i < 8; ++i)
      ASSERT_TRUE(c.a_end.Send(std::to_string(i)).ok());
    EXPECT_EQ(Text(c.b_end.Receive(kWait, GetParam())), "0");
    // Found, not yet acted on: the io thread is held.
    auto status = c.b_end.GetStatus();
    ASSERT_TRUE(status.ok());
    EXPECT_FALSE(status->peer_closed);
    EXPECT_EQ(c.b->GetStats()->peers_dropped, 0u);
  }
  ASSERT_TRUE(testing::WaitFor([&] {
    auto s = c.b_end.GetStatus();
    return s.ok() && s->peer_closed;
  }));
  int received = 1;
  for (;;) {
    auto m = c.b_end.Receive(kWait, GetParam());
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), StatusCode::kPeerClosed)
          << m.status().ToString();
      break;
    }
    EXPECT_EQ(Text(m), std::to_string(received));
    ++received;
  }
  EXPECT_LE(received, 4);
  EXPECT_EQ(c.b->GetStats()->peers_dropped, 1u);
}

INSTANTIATE_TEST_SUITE_P(AllModes,
                         ConsumerTokenModes,
                         ::testing::Values(WaitMode::kBlocking,
                                           WaitMode::kDefault,
                                           WaitMode::kBusyPoll));

// A waiter holding the token while its Process is destroyed (which closes
// the pipe under it) returns at once, not at its deadline.
TEST(ConsumerToken, ProcessDestroyedUnderWaiter) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.Send("warm-up").ok());
  ASSERT_EQ(Text(c.b_end.Receive(kWait)), "warm-up");
  std::atomic<bool> waiting{false};
  Result<PipeMessage> result = InternalError("not run");
  std::thread waiter([&] {
    waiting = true;
    result = c.b_end.Receive(seconds(600), WaitMode::kBlocking);
  });
  ASSERT_TRUE(testing::WaitFor([&] { return waiting.load(); }, kWait));
  // Give the waiter a chance to be asleep with the token (not required:
  // either way it must return).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return api_internal::PipeState::StateOf(c.b_end)->sleepers.load() > 0;
      },
      kWait));
  c.b.reset();
  waiter.join();
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.status().code(), StatusCode::kUnavailable)
      << result.status().ToString();
}

// The peer closing its end under a waiter: kPeerClosed, and the other
// pipes of the link still get their messages from the io thread.
TEST(ConsumerToken, PeerClosesUnderWaiter) {
  ConnectedProcesses c = Connect();
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  auto& [x, y] = *pair;
  std::vector<Pipe> attached;
  attached.push_back(std::move(y));
  ASSERT_TRUE(c.a_end.Send("carrier", std::move(attached)).ok());
  auto carrier = c.b_end.Receive(kWait);
  ASSERT_TRUE(carrier.ok());
  ASSERT_EQ(carrier->pipes.size(), 1u);
  Pipe y_in_b = std::move(carrier->pipes[0]);
  Result<PipeMessage> result = InternalError("not run");
  std::thread waiter(
      [&] { result = y_in_b.Receive(seconds(600), WaitMode::kBlocking); });
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return api_internal::PipeState::StateOf(y_in_b)->sleepers.load() > 0;
      },
      kWait));
  x.Close();
  waiter.join();
  EXPECT_EQ(result.status().code(), StatusCode::kPeerClosed)
      << result.status().ToString();
  ASSERT_TRUE(c.a_end.Send("after").ok());
  std::string got;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto m = c.b_end.Receive();
        if (m.ok())
          got = std::string(m->text());
        return m.ok();
      },
      kWait));
  EXPECT_EQ(got, "after");
}

// Arrivals, timeouts and mode changes at random on two pipes of one link,
// each with its own receiving thread (so the token changes hands between
// waiters and the io thread): every message arrives, in order, and once the
// senders stop nothing is left behind.
TEST(ConsumerToken, NoLostWakeUnderStress) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  auto& [x, y] = *pair;
  std::vector<Pipe> attached;
  attached.push_back(std::move(y));
  ASSERT_TRUE(c.a_end.Send("carrier", std::move(attached)).ok());
  auto carrier = c.b_end.Receive(kWait);
  ASSERT_TRUE(carrier.ok());
  ASSERT_EQ(carrier->pipes.size(), 1u);
  Pipe y_in_b = std::move(carrier->pipes[0]);

  const int n = static_cast<int>(testing::Scaled(2000, 100));
  struct Lane {
    Pipe* send;
    Pipe* receive;
  };
  Lane lanes[2] = {{&c.a_end, &c.b_end}, {&x, &y_in_b}};
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int lane = 0; lane < 2; ++lane) {
    threads.emplace_back([&, lane] {
      std::mt19937_64 rng(seed * 2 + lane);
      for (int i = 0; i < n; ++i) {
        if (rng() % 8 == 0) {
          for (int spin = static_cast<int>(rng() % 2000); spin > 0; --spin)
            std::this_thread::yield();
        }
        if (!lanes[lane].send->Send(std::to_string(i)).ok())
          failures++;
      }
    });
    threads.emplace_back([&, lane] {
      std::mt19937_64 rng(seed * 2 + lane + 100);
      const WaitMode modes[] = {WaitMode::kBlocking, WaitMode::kDefault,
                                WaitMode::kBusyPoll};
      int next = 0;
      while (next < n) {
        const WaitMode mode = modes[rng() % 3];
        // Short deadlines make waiters leave often (with the token).
        const auto timeout =
            std::chrono::microseconds(rng() % 4 == 0 ? 30 : 2000);
        auto m = lanes[lane].receive->Receive(timeout, mode);
        if (!m.ok()) {
          if (m.status().code() != StatusCode::kUnavailable) {
            ADD_FAILURE() << "lane " << lane << ": " << m.status().ToString();
            failures++;
            return;
          }
          continue;
        }
        if (m->text() != std::to_string(next)) {
          ADD_FAILURE() << "lane " << lane << " expected " << next << " got "
                        << m->text();
          failures++;
          return;
        }
        ++next;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(c.b_end.Receive().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(y_in_b.Receive().status().code(), StatusCode::kUnavailable);
  // Both paths were exercised over the run (or at least one was; which
  // depends on scheduling, so only the total is checked).
  const Drained d = DrainedOf(c.b_end);
  EXPECT_GE(d.by_waiters + d.by_io, static_cast<uint64_t>(2 * n));
}

}  // namespace
}  // namespace shmports
