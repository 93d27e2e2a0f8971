// The public API (Process, Pipe) between two Processes in this OS process:
// no fork, so the TSan build runs it (name *_threads).
#include <gtest/gtest.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <atomic>
#include <chrono>
#include <future>
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
using testing::IgnorePeerReceiveCapsForTesting;
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

// Credit by default: the receive caps the other process announced.

ProcessOptions SmallCaps(uint64_t messages, uint64_t bytes = 0) {
  ProcessOptions o;
  o.max_queued_messages_per_pipe = messages;
  o.max_queued_bytes_per_pipe = bytes;
  return o;
}

ConnectedProcesses ConnectWithCaps(const ProcessOptions& a,
                                   const ProcessOptions& b) {
  auto connected = ConnectProcessesForTesting(a, b);
  EXPECT_TRUE(connected.ok()) << connected.status().ToString();
  return std::move(*connected);
}

// Sends until credit is refused; returns how many went.
size_t SendUntilRefused(Pipe& pipe, uint64_t seed, size_t size, size_t limit) {
  for (size_t i = 0; i < limit; ++i) {
    Status s = pipe.Send(Payload(seed, i, size));
    if (s.code() == StatusCode::kResourceExhausted)
      return i;
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok())
      return i;
  }
  return limit;
}

TEST(ApiCredit, PeerMessageCapStopsSendWithoutQuota) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  // b announces 8 messages per pipe; a sets no quota.
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(8));
  EXPECT_EQ(SendUntilRefused(c.a_end, seed, 10, 100), 8u);
  EXPECT_GE(c.a->GetStats()->send_rejections, 1u);
  auto status = c.a_end.GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->unacknowledged_messages, 8u);
  // The other direction has a's default caps: far from reached.
  EXPECT_EQ(SendUntilRefused(c.b_end, seed, 10, 100), 100u);
  // Reading restores credit (in steps; at the latest once everything sent
  // was read); nothing was lost and b never dropped a.
  for (uint64_t i = 0; i < 8; ++i) {
    auto r = c.b_end.Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->bytes, Payload(seed, i, 10)) << i;
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] { return c.a_end.Send(Payload(seed, 8, 10)).ok(); }));
  auto last = c.b_end.Receive(kWait);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->bytes, Payload(seed, 8, 10));
  auto stats = c.b->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peers_dropped, 0u);
  EXPECT_EQ(stats->peers_dropped_for_caps, 0u);
}

TEST(ApiCredit, PeerByteCapStopsSendWithoutQuota) {
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(0, 1000));
  // One message is always allowed, however large.
  ASSERT_TRUE(c.a_end.Send(std::string(5000, 'x')).ok());
  EXPECT_EQ(c.a_end.Send("y").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ReceiveText(c.b_end), std::string(5000, 'x'));
  ASSERT_TRUE(testing::WaitFor([&] { return c.a_end.Send("y").ok(); }));
  EXPECT_EQ(ReceiveText(c.b_end), "y");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return c.a_end.Send(std::string(600, 'a')).ok(); }));
  EXPECT_EQ(c.a_end.Send(std::string(600, 'b')).code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(c.b->GetStats()->peers_dropped, 0u);
}

TEST(ApiCredit, UserQuotaAppliesAsTheLowerOfQuotaAndCap) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(8));
  ASSERT_TRUE(c.a_end.SetQuota({.max_unacknowledged_messages = 100}).ok());
  EXPECT_EQ(SendUntilRefused(c.a_end, seed, 10, 100), 8u);
  ConnectedProcesses d = ConnectWithCaps({}, SmallCaps(8));
  ASSERT_TRUE(d.a_end.SetQuota({.max_unacknowledged_messages = 3}).ok());
  EXPECT_EQ(SendUntilRefused(d.a_end, seed, 10, 100), 3u);
  // Removing the quota leaves the cap.
  ASSERT_TRUE(d.a_end.SetQuota({}).ok());
  EXPECT_EQ(SendUntilRefused(d.a_end, seed, 10, 100), 5u);
}

TEST(ApiCredit, RoundTripsFarBelowTheCapCarryNoExtraEvents) {
  ConnectedProcesses c = Connect();
  auto before = c.a->GetStats();
  ASSERT_TRUE(before.ok());
  const uint64_t n = testing::Scaled(200, 20);
  std::thread echo([&] {
    for (uint64_t i = 0; i < n; ++i) {
      auto m = c.b_end.Receive(kWait);
      if (!m.ok() || !c.b_end.Send(m->bytes).ok()) {
        ADD_FAILURE() << "echo " << i;
        return;
      }
    }
  });
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(c.a_end.Send("ping").ok());
    ASSERT_EQ(ReceiveText(c.a_end), "ping");
  }
  echo.join();
  auto after = c.a->GetStats();
  ASSERT_TRUE(after.ok());
  // One event each way per round trip: no acknowledgement requested.
  EXPECT_EQ(after->messages_sent - before->messages_sent, n);
  EXPECT_EQ(after->messages_received - before->messages_received, n);
}

TEST(ApiCredit, WaitingSendWaitsForCreditAndLosesNothing) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(4, 4096));
  const uint64_t n = testing::Scaled(2000, 100);
  std::mt19937_64 rng(seed);
  std::vector<size_t> sizes(n);
  for (auto& size : sizes)
    size = rng() % 3000;
  std::thread reader([&] {
    for (uint64_t i = 0; i < n; ++i) {
      auto m = c.b_end.Receive(kWait);
      if (!m.ok() || m->bytes != Payload(seed, i, sizes[i])) {
        ADD_FAILURE() << "message " << i << ": " << m.status().ToString();
        return;
      }
    }
  });
  for (uint64_t i = 0; i < n; ++i) {
    Status s = c.a_end.Send(Payload(seed, i, sizes[i]), {}, kWait);
    ASSERT_TRUE(s.ok()) << i << ": " << s.ToString();
  }
  reader.join();
  EXPECT_EQ(c.b_end.Receive().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(c.b->GetStats()->peers_dropped, 0u);
}

TEST(ApiCredit, WaitingSendersOnManyThreadsLoseNothing) {
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(6, 2000));
  constexpr int kThreads = 3;
  const uint64_t per_thread = testing::Scaled(400, 40);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (uint64_t i = 0; i < per_thread; ++i) {
        // Sizes differ per thread, so out-of-order reservations matter.
        std::string text = std::to_string(t) + ":" + std::to_string(i) + ":" +
                           std::string((t * 300 + i) % 900, 'p');
        Status s = c.a_end.Send(text, {}, kWait);
        if (!s.ok()) {
          ADD_FAILURE() << text.substr(0, 12) << ": " << s.ToString();
          return;
        }
      }
    });
  }
  std::vector<uint64_t> next(kThreads, 0);
  for (uint64_t k = 0; k < kThreads * per_thread; ++k) {
    auto m = c.b_end.Receive(kWait);
    ASSERT_TRUE(m.ok()) << k << ": " << m.status().ToString();
    std::string text(m->text());
    int t = std::stoi(text.substr(0, text.find(':')));
    uint64_t i = std::stoull(text.substr(text.find(':') + 1));
    ASSERT_TRUE(t >= 0 && t < kThreads) << text;
    EXPECT_EQ(i, next[t]) << "thread " << t;
    next[t] = i + 1;
  }
  for (auto& s : senders)
    s.join();
  EXPECT_EQ(c.b->GetStats()->peers_dropped, 0u);
}

TEST(ApiCredit, WaitingSendTimesOutWithCreditSpent) {
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(1));
  ASSERT_TRUE(c.a_end.Send("one").ok());
  auto spare = c.a->CreatePipe();
  ASSERT_TRUE(spare.ok());
  std::vector<Pipe> attach;
  attach.push_back(std::move(spare->second));
  Status s =
      c.a_end.Send("two", std::move(attach), std::chrono::milliseconds(20));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  ASSERT_EQ(attach.size(), 1u);
  EXPECT_TRUE(attach[0].is_valid());
  EXPECT_EQ(ReceiveText(c.b_end), "one");
  EXPECT_TRUE(c.a_end.Send("two", std::move(attach), kWait).ok());
  EXPECT_EQ(ReceiveText(c.b_end), "two");
}

TEST(ApiCredit, WaitingSendWakesWhenThePeerCloses) {
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(1));
  ASSERT_TRUE(c.a_end.Send("one").ok());
  std::atomic<int> code{-1};
  std::thread sender(
      [&] { code = static_cast<int>(c.a_end.Send("two", {}, kWait).code()); });
  c.b_end.Close();
  sender.join();
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kPeerClosed));
}

TEST(ApiCredit, WaitingSendWakesWhenThePipeIsClosed) {
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(1));
  ASSERT_TRUE(c.a_end.Send("one").ok());
  std::atomic<int> code{-1};
  std::thread sender(
      [&] { code = static_cast<int>(c.a_end.Send("two", {}, kWait).code()); });
  // The Process goes away under the waiting sender.
  c.a.reset();
  sender.join();
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kFailedPrecondition));
}

TEST(ApiCredit, WaitingSendFromCallbackIsRefused) {
  ConnectedProcesses c = Connect();
  std::atomic<int> code{-1};
  ASSERT_TRUE(c.b_end
                  .SetReadableCallback([&] {
                    if (code.load() == -1 && c.b_end.Receive().ok()) {
                      code = static_cast<int>(
                          c.b_end.Send("reply", {}, kWait).code());
                    }
                  })
                  .ok());
  ASSERT_TRUE(c.a_end.Send("ping").ok());
  ASSERT_TRUE(testing::WaitFor([&] { return code.load() != -1; }));
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kFailedPrecondition));
  ASSERT_TRUE(c.b_end.SetReadableCallback(nullptr).ok());
}

TEST(ApiCredit, ArrivedPipeCountsTheCapAtHalfUntilAcknowledged) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  // a announces 8 messages; the pipe end that travels to b sends back to a.
  ConnectedProcesses c = ConnectWithCaps(SmallCaps(8), {});
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  std::vector<Pipe> attach;
  attach.push_back(std::move(pair->second));
  ASSERT_TRUE(c.a_end.Send("take", std::move(attach)).ok());
  auto carried = c.b_end.Receive(kWait);
  ASSERT_TRUE(carried.ok());
  ASSERT_EQ(carried->pipes.size(), 1u);
  Pipe& arrived = carried->pipes[0];
  // What its previous holder left unread is unknown: half the cap.
  EXPECT_EQ(SendUntilRefused(arrived, seed, 10, 100), 4u);
  auto m = pair->first.Receive(kWait);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->bytes, Payload(seed, 0, 10));
  // One of ours was read, so everything before it was: the whole cap.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return arrived.Send(Payload(seed, 4, 10)).ok(); }));
  EXPECT_EQ(SendUntilRefused(arrived, seed, 10, 100), 4u);
  EXPECT_EQ(c.a->GetStats()->peers_dropped, 0u);
}

// Holds a Process's io thread until destroyed (or Release()).
class IoThreadHold {
 public:
  explicit IoThreadHold(Process& process) {
    std::shared_future<void> released = release_.get_future().share();
    testing::PostToIoThreadForTesting(process, [this, released] {
      held_.store(true);
      released.wait();
    });
  }
  ~IoThreadHold() { Release(); }
  bool WaitHeld() {
    return testing::WaitFor([this] { return held_.load(); });
  }
  void Release() {
    if (!released_) {
      released_ = true;
      release_.set_value();
    }
  }

 private:
  std::promise<void> release_;
  std::atomic<bool> held_{false};
  bool released_ = false;
};

TEST(ApiCredit, PipeWhoseOtherEndIsTravellingKeepsTheLowestCaps) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  // b announces 8 messages per pipe. One end of a new pipe of a's travels to
  // b while b's io thread is held, so it is still on its way when a sends on
  // the other end: a's own node is all the sender can see as the peer.
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(8));
  auto pair = c.a->CreatePipe();
  ASSERT_TRUE(pair.ok());
  Pipe stays = std::move(pair->first);
  size_t sent = 0;
  {
    IoThreadHold hold(*c.b);
    ASSERT_TRUE(hold.WaitHeld());
    std::vector<Pipe> attach;
    attach.push_back(std::move(pair->second));
    ASSERT_TRUE(c.a_end.Send("take", std::move(attach)).ok());
    sent = SendUntilRefused(stays, seed, 10, 100);
  }
  // The lowest caps of a and its peers: b's 8, which b would enforce.
  EXPECT_EQ(sent, 8u);
  auto carried = c.b_end.Receive(kWait);
  ASSERT_TRUE(carried.ok()) << carried.status().ToString();
  ASSERT_EQ(carried->pipes.size(), 1u);
  Pipe& arrived = carried->pipes[0];
  for (uint64_t i = 0; i < sent; ++i) {
    auto r = arrived.Receive(kWait);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->bytes, Payload(seed, i, 10)) << i;
  }
  // Credit comes back, and the route now leads to b: b's cap.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return stays.Send(Payload(seed, sent, 10)).ok(); }));
  auto last = arrived.Receive(kWait);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->bytes, Payload(seed, sent, 10));
  auto stats = c.b->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peers_dropped, 0u);
}

TEST(ApiCredit, SenderIgnoringCreditIsCutOff) {
  const uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  ConnectedProcesses c = ConnectWithCaps({}, SmallCaps(4));
  auto unaffected = c.b->CreatePipe();
  ASSERT_TRUE(unaffected.ok());
  testing::IgnorePeerReceiveCapsForTesting(*c.a, true);
  size_t sent = 0;
  for (uint64_t i = 0; i < 10; ++i) {
    Status s = c.a_end.Send(Payload(seed, i, 10));
    if (s.ok())
      ++sent;
    else
      EXPECT_EQ(s.code(), StatusCode::kPeerClosed) << s.ToString();
  }
  EXPECT_GE(sent, 5u);  // The fifth is past b's cap.
  // b drops a: its end sees peer_closed after the messages within the cap.
  ASSERT_TRUE(testing::WaitFor([&] {
    auto s = c.b_end.GetStatus();
    return s.ok() && s->peer_closed;
  }));
  uint64_t received = 0;
  for (;;) {
    auto m = c.b_end.Receive(kWait);
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), StatusCode::kPeerClosed);
      break;
    }
    EXPECT_EQ(m->bytes, Payload(seed, received, 10)) << received;
    ++received;
  }
  EXPECT_LE(received, 4u);
  auto stats = c.b->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->peers_dropped, 1u);
  EXPECT_EQ(stats->peers_dropped_for_caps, 1u);
  // b keeps working for what did not go through a.
  ASSERT_TRUE(unaffected->first.Send("still here").ok());
  EXPECT_EQ(ReceiveText(unaffected->second), "still here");
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
