// The public API (Process, Pipe) between two Processes in this OS process:
// no fork, so the TSan build runs it (name *_threads).
#include <gtest/gtest.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "channel/api/testing.h"
#include "tests/api/api_test_util.h"
#include "tests/util/test_util.h"

namespace shmports {
namespace {

using std::chrono::seconds;
using testing::ConnectedProcesses;
using testing::ConnectProcessesForTesting;
using testing::Payload;

constexpr auto kWait = seconds(30);

ConnectedProcesses Connect() {
  auto connected = ConnectProcessesForTesting();
  EXPECT_TRUE(connected.ok()) << connected.status().ToString();
  return std::move(*connected);
}

std::string ReceiveText(Pipe& pipe) {
  auto m = pipe.Receive(kWait);
  if (!m.ok())
    return "error: " + m.status().ToString();
  return std::string(m->text());
}

TEST(ApiPipe, LocalPairCarriesMessagesInOrder) {
  auto process = Process::Create();
  ASSERT_TRUE(process.ok()) << process.status().ToString();
  auto pipe = (*process)->CreatePipe();
  ASSERT_TRUE(pipe.ok());
  auto& [a, b] = *pipe;
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(a.Send(std::to_string(i)).ok());
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(ReceiveText(b), std::to_string(i));
  EXPECT_EQ(b.Receive().status().code(), StatusCode::kUnavailable);
}

TEST(ApiPipe, AllSizesAcrossProcesses) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  // Past the ring's largest frame (256 KiB) messages travel as fragments.
  std::vector<size_t> sizes = {
      0, 1, 7, 8, 63, 64, 65, 4095, 4096, 65536, 100000, (size_t{1} << 20) + 3};
  if (testing::TestScale() >= 1)
    sizes.push_back(Pipe::kMaxMessageBytes);
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(c.a_end.Send(Payload(seed, i, sizes[i])).ok()) << sizes[i];
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto m = c.b_end.Receive(kWait);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->bytes, Payload(seed, i, sizes[i])) << "size " << sizes[i];
  }
  // And back, with random sizes.
  std::mt19937_64 rng(seed);
  const uint64_t n = testing::Scaled(200, 20);
  for (uint64_t i = 0; i < n; ++i) {
    size_t size = rng() % 5000;
    ASSERT_TRUE(c.b_end.Send(Payload(seed, 1000 + i, size)).ok());
    auto m = c.a_end.Receive(kWait);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_EQ(m->bytes, Payload(seed, 1000 + i, size)) << i;
  }
  auto stats = c.a->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->connected_peers, 1u);
  EXPECT_GE(stats->messages_received, n);
}

TEST(ApiPipe, TooLargeMessageIsRefusedNotLost) {
  ConnectedProcesses c = Connect();
  std::vector<uint8_t> big(Pipe::kMaxMessageBytes + 1);
  Status s = c.a_end.Send(big);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(c.a->GetStats()->send_rejections, 1u);
  ASSERT_TRUE(c.a_end.Send("after").ok());
  EXPECT_EQ(ReceiveText(c.b_end), "after");
}

TEST(ApiPipe, PipeInsideMessageWorksBothWays) {
  ConnectedProcesses c = Connect();
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  auto& [mine, theirs] = *pair;
  std::vector<Pipe> attach;
  attach.push_back(std::move(theirs));
  ASSERT_TRUE(c.a_end.Send("a pipe for you", std::move(attach)).ok());
  EXPECT_FALSE(theirs.is_valid());

  auto m = c.b_end.Receive(kWait);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->text(), "a pipe for you");
  ASSERT_EQ(m->pipes.size(), 1u);
  Pipe& received = m->pipes[0];
  ASSERT_TRUE(mine.Send("through it").ok());
  EXPECT_EQ(ReceiveText(received), "through it");
  ASSERT_TRUE(received.Send("and back").ok());
  EXPECT_EQ(ReceiveText(mine), "and back");

  // A pipe travels back inside a message on the moved pipe.
  auto nested = c.b->CreatePipe();
  ASSERT_TRUE(nested.ok());
  std::vector<Pipe> back;
  back.push_back(std::move(nested->second));
  ASSERT_TRUE(received.Send("nested", std::move(back)).ok());
  auto n = mine.Receive(kWait);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(n->pipes.size(), 1u);
  ASSERT_TRUE(nested->first.Send("deep").ok());
  EXPECT_EQ(ReceiveText(n->pipes[0]), "deep");

  received.Close();
  auto closed = mine.Receive(kWait);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed);
}

TEST(ApiPipe, InvalidAttachmentsAreRefused) {
  ConnectedProcesses c = Connect();
  std::vector<Pipe> invalid(1);
  EXPECT_EQ(c.a_end.Send("x", std::move(invalid)).code(),
            StatusCode::kInvalidArgument);
  auto foreign = c.b->CreatePipe();
  ASSERT_TRUE(foreign.ok());
  std::vector<Pipe> other;
  other.push_back(std::move(foreign->first));
  EXPECT_EQ(c.a_end.Send("x", std::move(other)).code(),
            StatusCode::kInvalidArgument);
  Pipe empty;
  EXPECT_EQ(empty.Send("x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(empty.Receive().status().code(), StatusCode::kFailedPrecondition);
}

TEST(ApiPipe, PeerClosedAfterEverythingSent) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.Send("one").ok());
  ASSERT_TRUE(c.a_end.Send("two").ok());
  c.a_end.Close();
  EXPECT_EQ(ReceiveText(c.b_end), "one");
  EXPECT_EQ(ReceiveText(c.b_end), "two");
  auto end = c.b_end.Receive(kWait);
  EXPECT_EQ(end.status().code(), StatusCode::kPeerClosed);
  auto status = c.b_end.GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->peer_closed);
  EXPECT_EQ(c.b_end.Send("nobody").code(), StatusCode::kPeerClosed);
}

TEST(ApiPipe, DestroyedProcessClosesItsPipes) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.Send("last words").ok());
  auto local = c.a->CreatePipe();
  ASSERT_TRUE(local.ok());
  c.a.reset();
  EXPECT_EQ(ReceiveText(c.b_end), "last words");
  EXPECT_EQ(c.b_end.Receive(kWait).status().code(), StatusCode::kPeerClosed);
  EXPECT_EQ(c.a_end.Send("x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(local->first.Receive().status().code(),
            StatusCode::kFailedPrecondition);
}

TEST(ApiPipe, ShutdownWithMessagesInFlightDeliversThemAll) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  // More than the ring holds, so some wait in the overflow queue when the
  // Process goes: the goodbye flush must still carry them.
  const uint64_t n = testing::Scaled(3000, 300);
  for (uint64_t i = 0; i < n; ++i)
    ASSERT_TRUE(c.a_end.Send(Payload(seed, i, 1000)).ok());
  c.a.reset();
  for (uint64_t i = 0; i < n; ++i) {
    auto m = c.b_end.Receive(kWait);
    ASSERT_TRUE(m.ok()) << i << ": " << m.status().ToString();
    ASSERT_EQ(m->bytes, Payload(seed, i, 1000)) << i;
  }
  EXPECT_EQ(c.b_end.Receive(kWait).status().code(), StatusCode::kPeerClosed);
  EXPECT_EQ(c.b->GetStats()->peer_deaths, 0u);
}

TEST(ApiPipe, StatusCountsQueuedMessages) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.Send("12345").ok());
  ASSERT_TRUE(c.a_end.Send("678").ok());
  ASSERT_TRUE(testing::WaitFor([&] {
    auto s = c.b_end.GetStatus();
    return s.ok() && s->queued_messages == 2;
  }));
  auto s = c.b_end.GetStatus();
  EXPECT_EQ(s->queued_bytes, 8u);
  EXPECT_FALSE(s->peer_closed);
}

TEST(ApiPipe, ReceiveTimesOutWhenEmpty) {
  ConnectedProcesses c = Connect();
  for (WaitMode mode :
       {WaitMode::kDefault, WaitMode::kBusyPoll, WaitMode::kBlocking}) {
    auto m = c.b_end.Receive(std::chrono::milliseconds(5), mode);
    EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  }
}

TEST(ApiPipe, EveryWaitModeReceivesFromAnotherThread) {
  ConnectedProcesses c = Connect();
  const uint64_t n = testing::Scaled(300, 30);
  for (WaitMode mode :
       {WaitMode::kDefault, WaitMode::kBusyPoll, WaitMode::kBlocking}) {
    SCOPED_TRACE(static_cast<int>(mode));
    std::thread echo([&] {
      for (uint64_t i = 0; i < n; ++i) {
        auto m = c.b_end.Receive(kWait, mode);
        if (!m.ok() || !c.b_end.Send(m->bytes).ok())
          return;
      }
    });
    for (uint64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(c.a_end.Send(std::to_string(i)).ok());
      auto m = c.a_end.Receive(kWait, mode);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_EQ(m->text(), std::to_string(i));
    }
    echo.join();
  }
}

TEST(ApiCallback, CallbackReceivesAndRepliesOnTheIoThread) {
  ConnectedProcesses c = Connect();
  std::atomic<int> echoed{0};
  Pipe& b = c.b_end;
  ASSERT_TRUE(b.SetReadableCallback([&b, &echoed] {
                 for (;;) {
                   auto m = b.Receive();
                   if (!m.ok())
                     return;
                   std::string reply = "echo " + std::string(m->text());
                   if (b.Send(reply).ok())
                     ++echoed;
                 }
               }).ok());
  const uint64_t n = testing::Scaled(100, 10);
  for (uint64_t i = 0; i < n; ++i)
    ASSERT_TRUE(c.a_end.Send(std::to_string(i)).ok());
  for (uint64_t i = 0; i < n; ++i)
    ASSERT_EQ(ReceiveText(c.a_end), "echo " + std::to_string(i));
  // The last reply can arrive before the callback counted it.
  ASSERT_TRUE(b.SetReadableCallback(nullptr).ok());
  EXPECT_EQ(echoed.load(), static_cast<int>(n));
}

TEST(ApiCallback, CallbackOnLocalPairRunsOnIoThread) {
  auto process = Process::Create();
  ASSERT_TRUE(process.ok());
  auto pair = (*process)->CreatePipe();
  ASSERT_TRUE(pair.ok());
  Pipe& a = pair->first;
  Pipe& b = pair->second;
  std::mutex mu;
  std::vector<std::string> got;
  std::atomic<bool> waiting_refused{false};
  ASSERT_TRUE(b.SetReadableCallback([&] {
                 if (b.Receive(std::chrono::milliseconds(1)).status().code() ==
                     StatusCode::kFailedPrecondition)
                   waiting_refused = true;
                 for (auto m = b.Receive(); m.ok(); m = b.Receive()) {
                   std::lock_guard<std::mutex> lock(mu);
                   got.emplace_back(m->text());
                 }
               }).ok());
  ASSERT_TRUE(a.Send("x").ok());
  ASSERT_TRUE(a.Send("y").ok());
  ASSERT_TRUE(testing::WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return got.size() == 2;
  }));
  EXPECT_TRUE(waiting_refused.load());
  ASSERT_TRUE(b.SetReadableCallback(nullptr).ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(got, (std::vector<std::string>{"x", "y"}));
}

TEST(ApiCallback, WaitingCallFromCallbackIsRefused) {
  ConnectedProcesses c = Connect();
  std::atomic<int> code{-1};
  Pipe& b = c.b_end;
  ASSERT_TRUE(b.SetReadableCallback([&] {
                 auto m = b.Receive(std::chrono::seconds(1));
                 if (code.load() == -1)
                   code = static_cast<int>(m.status().code());
               }).ok());
  ASSERT_TRUE(c.a_end.Send("wake").ok());
  ASSERT_TRUE(testing::WaitFor([&] { return code.load() != -1; }));
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kFailedPrecondition));
  ASSERT_TRUE(b.SetReadableCallback(nullptr).ok());
  EXPECT_EQ(ReceiveText(b), "wake");
}

TEST(ApiCallback, CallbackMayDestroyItsOwnPipe) {
  ConnectedProcesses c = Connect();
  auto holder = std::make_shared<Pipe>(std::move(c.b_end));
  std::atomic<bool> destroyed{false};
  std::shared_ptr<Pipe>* slot = &holder;
  std::mutex mu;
  ASSERT_TRUE(holder
                  ->SetReadableCallback([&] {
                    std::lock_guard<std::mutex> lock(mu);
                    if (!*slot)
                      return;
                    auto m = (*slot)->Receive();
                    if (m.ok() && m->text() == "close yourself") {
                      slot->reset();  // Destroys the Pipe, and this callback's
                                      // function object later.
                      destroyed = true;
                    }
                  })
                  .ok());
  ASSERT_TRUE(c.a_end.Send("close yourself").ok());
  ASSERT_TRUE(testing::WaitFor([&] { return destroyed.load(); }));
  EXPECT_EQ(c.a_end.Receive(kWait).status().code(), StatusCode::kPeerClosed);
}

TEST(ApiCallback, CallbackSeesPeerClosed) {
  ConnectedProcesses c = Connect();
  std::atomic<bool> peer_closed{false};
  Pipe& b = c.b_end;
  ASSERT_TRUE(b.SetReadableCallback([&] {
                 auto s = b.GetStatus();
                 if (s.ok() && s->peer_closed)
                   peer_closed = true;
               }).ok());
  c.a_end.Close();
  ASSERT_TRUE(testing::WaitFor([&] { return peer_closed.load(); }));
  ASSERT_TRUE(b.SetReadableCallback(nullptr).ok());
}

TEST(ApiCallback, ManySendersOneCallbackNothingLost) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  const uint64_t per_thread = testing::Scaled(500, 50);
  constexpr int kThreads = 3;
  std::vector<Pipe> senders;
  std::vector<Pipe> receivers;
  for (int t = 0; t < kThreads; ++t) {
    auto pair = c.a->CreatePipe();
    ASSERT_TRUE(pair.ok());
    std::vector<Pipe> attach;
    attach.push_back(std::move(pair->second));
    ASSERT_TRUE(c.a_end.Send("route", std::move(attach)).ok());
    auto m = c.b_end.Receive(kWait);
    ASSERT_TRUE(m.ok() && m->pipes.size() == 1);
    senders.push_back(std::move(pair->first));
    receivers.push_back(std::move(m->pipes[0]));
  }
  std::mutex mu;
  std::vector<uint64_t> next(kThreads, 0);
  std::atomic<bool> mismatch{false};
  for (int t = 0; t < kThreads; ++t) {
    Pipe* r = &receivers[t];
    ASSERT_TRUE(r->SetReadableCallback([&, r, t] {
                   for (auto m = r->Receive(); m.ok(); m = r->Receive()) {
                     std::lock_guard<std::mutex> lock(mu);
                     if (m->bytes !=
                         Payload(seed, t * 1000000 + next[t], next[t] % 300))
                       mismatch = true;
                     ++next[t];
                   }
                 }).ok());
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < per_thread; ++i) {
        if (!senders[t].Send(Payload(seed, t * 1000000 + i, i % 300)).ok())
          mismatch = true;
      }
    });
  }
  for (auto& th : threads)
    th.join();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        for (uint64_t n : next) {
          if (n != per_thread)
            return false;
        }
        return true;
      },
      std::chrono::seconds(60)));
  EXPECT_FALSE(mismatch.load());
  for (Pipe& r : receivers)
    ASSERT_TRUE(r.SetReadableCallback(nullptr).ok());
}

}  // namespace
}  // namespace shmports

namespace shmports {
namespace {

TEST(ApiQuota, MessageQuotaRefusesThenRecoversWithNothingLost) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.SetQuota({.max_unacknowledged_messages = 4}).ok());
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(c.a_end.Send(Payload(seed, i, 100)).ok()) << i;
  // Nothing was read, so no credit came back: the fifth is refused, and a
  // refused send leaves its attached pipes with the caller.
  auto spare = c.a->CreatePipe();
  ASSERT_TRUE(spare.ok());
  std::vector<Pipe> attach;
  attach.push_back(std::move(spare->second));
  Status refused = c.a_end.Send(Payload(seed, 4, 100), std::move(attach));
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted)
      << refused.ToString();
  ASSERT_EQ(attach.size(), 1u);
  EXPECT_TRUE(attach[0].is_valid());
  auto status = c.a_end.GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->unacknowledged_messages, 4u);
  EXPECT_EQ(status->unacknowledged_bytes, 400u);
  EXPECT_GE(c.a->GetStats()->send_rejections, 1u);

  // A reader drains; the sender retries on refusal until everything went.
  const uint64_t n = testing::Scaled(400, 40);
  std::thread reader([&] {
    for (uint64_t i = 0; i < n; ++i) {
      auto m = c.b_end.Receive(kWait);
      if (!m.ok() || m->bytes != Payload(seed, i, 100)) {
        ADD_FAILURE() << "message " << i << ": " << m.status().ToString();
        return;
      }
    }
  });
  for (uint64_t i = 4; i < n; ++i) {
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          Status s = c.a_end.Send(Payload(seed, i, 100));
          EXPECT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted)
              << s.ToString();
          return s.ok();
        },
        std::chrono::seconds(30)))
        << i;
  }
  reader.join();
  EXPECT_EQ(c.b_end.Receive().status().code(), StatusCode::kUnavailable);
}

TEST(ApiQuota, ByteQuotaAllowsOneLargeMessageThenWaitsForCredit) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.SetQuota({.max_unacknowledged_bytes = 1000}).ok());
  // Larger than the quota, but nothing is unacknowledged: allowed.
  ASSERT_TRUE(c.a_end.Send(std::string(5000, 'x')).ok());
  EXPECT_EQ(c.a_end.Send("y").code(), StatusCode::kResourceExhausted);
  auto m = c.b_end.Receive(kWait);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->bytes.size(), 5000u);
  // The read is acknowledged: credit comes back.
  ASSERT_TRUE(testing::WaitFor([&] { return c.a_end.Send("y").ok(); }));
  EXPECT_EQ(ReceiveText(c.b_end), "y");
  ASSERT_TRUE(c.a_end.Send(std::string(600, 'a')).ok());
  EXPECT_EQ(c.a_end.Send(std::string(600, 'b')).code(),
            StatusCode::kResourceExhausted);
}

TEST(ApiQuota, ClosedPeerIsReportedBeforeQuota) {
  ConnectedProcesses c = Connect();
  ASSERT_TRUE(c.a_end.SetQuota({.max_unacknowledged_messages = 1}).ok());
  ASSERT_TRUE(c.a_end.Send("one").ok());
  c.b_end.Close();
  ASSERT_TRUE(testing::WaitFor([&] {
    auto s = c.a_end.GetStatus();
    return s.ok() && s->peer_closed;
  }));
  EXPECT_EQ(c.a_end.Send("two").code(), StatusCode::kPeerClosed);
}

}  // namespace
}  // namespace shmports
