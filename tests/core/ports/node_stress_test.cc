// Threaded stress on one node pair: several threads send, read, transfer and
// close at once (part of the TSan build). Per-sender order on a shared route
// is checked; every node ends clean with no violation.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/ports/ports_test_harness.h"
#include "tests/util/test_util.h"

namespace shmports::ports::test {
namespace {

TEST_F(PortsTest, ThreadedSendReadTransferClose) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  // One route shared by every sender thread; one reader drains it.
  PortRef shared0, shared1;
  CreatePortPair(&node0, &shared0, &node1, &shared1);

  const uint64_t seed = shmports::testing::TestSeed();
  SCOPED_TRACE(shmports::testing::SeedTrace(seed));
  const int kThreads = 4;
  const int kIterations = static_cast<int>(shmports::testing::Scaled(300, 30));
  std::atomic<int> senders_done{0};
  std::map<int, int> last_seen;  // Reader thread only.
  bool order_ok = true;

  std::thread reader([&] {
    for (;;) {
      bool done = senders_done.load() == kThreads;
      ScopedMessage message;
      if (node1.ReadMessage(shared1, &message)) {
        int thread = 0, seq = 0;
        std::string text(message->message().AsStringView());
        if (std::sscanf(text.c_str(), "%d:%d", &thread, &seq) != 2) {
          order_ok = false;
          continue;
        }
        auto it = last_seen.find(thread);
        if (it != last_seen.end() && seq != it->second + 1)
          order_ok = false;
        last_seen[thread] = seq;
        continue;
      }
      if (done)
        break;
      std::this_thread::yield();
    }
  });

  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (int i = 0; i < kIterations; ++i) {
        char text[32];
        std::snprintf(text, sizeof(text), "%d:%d", t, i);
        EXPECT_EQ(OK, node0.SendStringMessage(shared0, text));

        // A fresh spanning route; a local port travels over it while its
        // peer keeps sending into it.
        PortRef a, b, c, d;
        CreatePortPair(&node0, &a, &node1, &b);
        EXPECT_EQ(OK, node0.node().CreatePortPair(&c, &d));
        EXPECT_EQ(OK, node0.SendStringMessageWithPort(a, "carry", c));
        for (int k = 0; k < 3; ++k) {
          EXPECT_EQ(OK, node0.SendStringMessage(d, "into c"));
        }
        // Read what has arrived (maybe nothing yet), then close everything,
        // sometimes before the transfer has finished.
        ScopedMessage message;
        if (rng() % 2 && node1.ReadMessage(b, &message)) {
          node1.ClosePortsInEvent(message.get());
        }
        EXPECT_EQ(OK, node0.node().ClosePort(d));
        EXPECT_EQ(OK, node0.node().ClosePort(a));
        EXPECT_EQ(OK, node1.node().ClosePort(b));
      }
      senders_done.fetch_add(1);
    });
  }
  for (auto& w : workers)
    w.join();
  reader.join();
  WaitForIdle();

  // Whatever the reader missed at the end is still in order.
  ScopedMessage message;
  while (node1.ReadMessage(shared1, &message)) {
    int thread = 0, seq = 0;
    std::string text(message->message().AsStringView());
    ASSERT_EQ(2, std::sscanf(text.c_str(), "%d:%d", &thread, &seq));
    auto it = last_seen.find(thread);
    if (it != last_seen.end() && seq != it->second + 1)
      order_ok = false;
    last_seen[thread] = seq;
  }
  EXPECT_TRUE(order_ok);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(kIterations - 1, last_seen[t]);

  EXPECT_EQ(OK, node0.node().ClosePort(shared0));
  EXPECT_EQ(OK, node1.node().ClosePort(shared1));
  WaitForIdle();
  EXPECT_EQ(0, node0.violations());
  EXPECT_EQ(0, node1.violations());
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

}  // namespace
}  // namespace shmports::ports::test
