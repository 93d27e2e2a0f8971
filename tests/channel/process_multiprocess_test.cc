// Process against a real child process (fork+exec of process_test_child via
// SpawnChild): messages and ports across the boundary, a child SIGKILLed
// while streaming (against ground truth in a shared side page), deaths
// during the handshake, and the identity and version refusals.
#include "channel/process.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "channel/socket.h"
#include "channel/spawn.h"
#include "core/base/deadline.h"
#include "tests/channel/process_test_util.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::channel::testing::kMaxFramePayload;
using ::shmports::channel::testing::PortWaiter;
using ::shmports::channel::testing::ReadMessage;
using ::shmports::channel::testing::ReadPattern;
using ::shmports::channel::testing::SendPattern;
using ::shmports::channel::testing::SendText;
using ::shmports::channel::testing::TextOf;
using ::shmports::testing::HelperPath;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;
using ::shmports::testing::WaitFor;

// Entries in /dev/shm, minus those of the benchmark harness, which other
// runs on this machine create and remove while we look.
std::set<std::string> DevShmEntries() {
  std::set<std::string> names;
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name.rfind("shmports_bench_", 0) != 0)
        names.insert(name);
    }
    closedir(dir);
  }
  return names;
}

int ExitCode(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status)
                                : 128 + WTERMSIG(wait_status);
}

struct Child {
  SpawnedChild spawned;
  Result<ConnectedPeer> peer = UnavailableError("not connected");
};

// Both identity paths: SCM_PIDFD and the forced pre-6.5 pidfd_open one.
class ProcessMultiprocessTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam())
      setenv(kForceNoSoPassPidfdEnv, "1", 1);
    else
      unsetenv(kForceNoSoPassPidfdEnv);
    shm_before_ = DevShmEntries();
    auto process = Process::Create();
    ASSERT_TRUE(process.ok()) << process.status().ToString();
    process_ = std::move(*process);
    waiter_ = std::make_unique<PortWaiter>(*process_);
  }
  void TearDown() override {
    waiter_.reset();
    process_.reset();
    EXPECT_EQ(DevShmEntries(), shm_before_) << "something left in /dev/shm";
    unsetenv(kForceNoSoPassPidfdEnv);
  }

  // Launches the child with `args` after "<mode> <sock>", keeping `extra_fds`
  // open in it, and runs the inviter's handshake.
  Child Launch(const std::string& mode,
               const std::vector<std::string>& args = {},
               std::vector<int> extra_fds = {}) {
    Child child;
    auto pair = CreateCredentialedSocketPair();
    EXPECT_TRUE(pair.ok()) << pair.status().ToString();
    if (!pair.ok())
      return child;
    int child_fd = pair->second.get();
    std::vector<std::string> argv = {HelperPath("process_test_child"), mode,
                                     std::to_string(child_fd)};
    argv.insert(argv.end(), args.begin(), args.end());
    extra_fds.push_back(child_fd);
    std::vector<std::string> env;
    if (GetParam())
      env.push_back(std::string(kForceNoSoPassPidfdEnv) + "=1");
    auto spawned = SpawnChild(argv, EnvironmentWith(env), extra_fds);
    EXPECT_TRUE(spawned.ok()) << spawned.status().ToString();
    if (!spawned.ok())
      return child;
    child.spawned = std::move(*spawned);
    pair->second.Reset();
    child.peer =
        process_->Connect(std::move(pair->first), child.spawned.pidfd.get());
    return child;
  }

  int Reap(const Child& child) {
    auto status =
        WaitForExit(child.spawned, Deadline::In(std::chrono::seconds(30)));
    EXPECT_TRUE(status.ok()) << status.status().ToString();
    return status.ok() ? ExitCode(*status) : -1;
  }

  std::string ReadText(const ports::PortRef& port) {
    auto message = ReadMessage(process_->node(), *waiter_, port);
    return message.ok() ? TextOf(**message)
                        : "<" + message.status().ToString() + ">";
  }

  std::set<std::string> shm_before_;
  std::unique_ptr<Process> process_;
  std::unique_ptr<PortWaiter> waiter_;
};

TEST_P(ProcessMultiprocessTest, ExchangeMessagesBothWaysWithChild) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Child child = Launch("serve");
  ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
  ports::Node& node = process_->node();
  const ports::PortRef boot = child.peer->bootstrap_port;
  const uint64_t n = Scaled(10000, 200);
  ASSERT_EQ(
      SendText(node, boot,
               "stream " + std::to_string(n) + " " + std::to_string(seed + 1)),
      ports::OK);
  ASSERT_EQ(
      SendText(node, boot,
               "expect " + std::to_string(n) + " " + std::to_string(seed)),
      ports::OK);
  std::atomic<int> sent{-1};
  std::thread sender([&] {
    sent = SendPattern(node, *waiter_, boot, seed, n, kMaxFramePayload);
  });
  auto read = ReadPattern(node, *waiter_, boot, seed + 1, n, kMaxFramePayload);
  sender.join();
  EXPECT_EQ(sent, ports::OK);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, n);
  EXPECT_EQ(ReadText(boot), "verified " + std::to_string(n));

  ProcessStats stats = process_->GetStats();
  ASSERT_EQ(stats.router.links.size(), 1u);
  EXPECT_EQ(stats.router.links[0].peer_pid, child.spawned.pid);
  EXPECT_GE(stats.router.links[0].messages_received, n);
  printf(
      "link: sent %llu frames / %llu bytes, received %llu / %llu, "
      "wakes issued %llu avoided %llu, overflow high water %llu\n",
      (unsigned long long)stats.router.links[0].messages_sent,
      (unsigned long long)stats.router.links[0].bytes_sent,
      (unsigned long long)stats.router.links[0].messages_received,
      (unsigned long long)stats.router.links[0].bytes_received,
      (unsigned long long)stats.router.links[0].data_wakes_issued,
      (unsigned long long)stats.router.links[0].data_wakes_avoided,
      (unsigned long long)stats.router.links[0].overflow_high_water);
  ASSERT_EQ(SendText(node, boot, "exit"), ports::OK);
  EXPECT_EQ(Reap(child), 0);
  EXPECT_TRUE(
      WaitFor([&] { return process_->GetStats().router.links.empty(); }));
  EXPECT_EQ(node.ClosePort(boot), ports::OK);
}

// Log-uniform sizes 1 B .. 2 MiB against 1 MiB rings, both ways at once:
// every message above 256 KiB (the largest frame) is a fragment stream.
TEST_P(ProcessMultiprocessTest, LargeMessagesBothWaysWithChild) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Child child = Launch("serve");
  ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
  ports::Node& node = process_->node();
  const ports::PortRef boot = child.peer->bootstrap_port;
  constexpr size_t kMax = size_t{2} << 20;
  // 10k x scale in all, split over the two identity modes.
  const uint64_t n = Scaled(5000, 100);
  const std::string args = std::to_string(n) + " ";
  ASSERT_EQ(SendText(node, boot,
                     "stream " + args + std::to_string(seed + 1) + " " +
                         std::to_string(kMax)),
            ports::OK);
  ASSERT_EQ(SendText(node, boot,
                     "expect " + args + std::to_string(seed) + " " +
                         std::to_string(kMax)),
            ports::OK);
  std::atomic<int> sent{-1};
  std::thread sender(
      [&] { sent = SendPattern(node, *waiter_, boot, seed, n, kMax, 16); });
  auto read = ReadPattern(node, *waiter_, boot, seed + 1, n, kMax);
  sender.join();
  EXPECT_EQ(sent, ports::OK);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, n);
  EXPECT_EQ(ReadText(boot), "verified " + std::to_string(n));
  ProcessStats stats = process_->GetStats();
  ASSERT_EQ(stats.router.links.size(), 1u);
  const LinkStats& link = stats.router.links[0];
  EXPECT_GT(link.fragments_sent, 0u);
  EXPECT_GT(link.fragments_received, 0u);
  EXPECT_EQ(stats.router.peers_dropped, 0u);
  printf(
      "large: %llu messages each way, %llu/%llu fragments sent/received, "
      "%llu MiB sent, overflow high water %llu events / %llu KiB\n",
      (unsigned long long)n, (unsigned long long)link.fragments_sent,
      (unsigned long long)link.fragments_received,
      (unsigned long long)(link.bytes_sent >> 20),
      (unsigned long long)link.overflow_high_water,
      (unsigned long long)(link.overflow_bytes_high_water >> 10));
  ASSERT_EQ(SendText(node, boot, "exit"), ports::OK);
  EXPECT_EQ(Reap(child), 0);
  EXPECT_TRUE(
      WaitFor([&] { return process_->GetStats().router.links.empty(); }));
  EXPECT_EQ(node.ClosePort(boot), ports::OK);
}

// The child floods (most of it queued behind a full ring), says goodbye and
// exits: everything it sent arrives, in order, then peer_closed, counted
// as a goodbye and not as a death.
TEST_P(ProcessMultiprocessTest, ChildGoodbyeDeliversEverythingThenClosed) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  Child child = Launch("serve");
  ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
  ports::Node& node = process_->node();
  const ports::PortRef boot = child.peer->bootstrap_port;
  constexpr size_t kMax = 64 * 1024;
  const uint64_t n = Scaled(2000, 200);
  ASSERT_EQ(SendText(node, boot,
                     "flood-goodbye " + std::to_string(n) + " " +
                         std::to_string(seed) + " " + std::to_string(kMax)),
            ports::OK);
  auto read = ReadPattern(node, *waiter_, boot, seed, n, kMax);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, n);
  auto closed = ReadMessage(node, *waiter_, boot);
  EXPECT_EQ(closed.status().code(), StatusCode::kPeerClosed)
      << closed.status().ToString();
  EXPECT_EQ(Reap(child), 0);
  EXPECT_TRUE(
      WaitFor([&] { return process_->GetStats().router.links.empty(); }));
  ProcessStats stats = process_->GetStats();
  EXPECT_EQ(stats.router.goodbyes_received, 1u);
  EXPECT_EQ(stats.router.peer_deaths, 0u);
  EXPECT_EQ(stats.router.peers_dropped, 0u);
  EXPECT_EQ(node.ClosePort(boot), ports::OK);
}

TEST_P(ProcessMultiprocessTest, PortsCrossToChildAndBackWithoutProxies) {
  Child child = Launch("serve");
  ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
  ports::Node& node = process_->node();
  const ports::PortRef boot = child.peer->bootstrap_port;
  ports::PortRef x, y;
  ASSERT_EQ(node.CreatePortPair(&x, &y), ports::OK);
  ASSERT_EQ(SendText(node, boot, "port", {y.name()}), ports::OK);
  for (int i = 0; i < 50; ++i) {
    std::string text = "echo " + std::to_string(i);
    ASSERT_EQ(SendText(node, x, text), ports::OK);
    ASSERT_EQ(ReadText(x), text);
  }
  ASSERT_EQ(SendText(node, x, "return"), ports::OK);
  auto back = ReadMessage(node, *waiter_, boot);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(TextOf(**back), "back");
  ASSERT_EQ((*back)->num_ports(), 1u);
  ports::PortRef y_again;
  ASSERT_EQ(node.GetPort((*back)->ports()[0], &y_again), ports::OK);
  ASSERT_EQ(SendText(node, x, "home"), ports::OK);
  EXPECT_EQ(ReadText(y_again), "home");
  EXPECT_TRUE(WaitFor([&] { return node.GetStats().proxies == 0; }))
      << node.GetStats().proxies << " proxies left here";
  ASSERT_EQ(SendText(node, boot, "stats"), ports::OK);
  EXPECT_EQ(ReadText(boot), "proxies=0");
  ASSERT_EQ(SendText(node, boot, "exit"), ports::OK);
  EXPECT_EQ(Reap(child), 0);
  for (const ports::PortRef& p : {x, y_again, boot})
    EXPECT_EQ(node.ClosePort(p), ports::OK);
  EXPECT_TRUE(WaitFor([&] { return node.GetStats().ports == 0; }));
}

TEST_P(ProcessMultiprocessTest, KilledChildDeliversCommittedPrefixThenClosed) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  ports::Node& node = process_->node();
  // A route that never touches any child: it must keep working throughout.
  ports::PortRef l1, l2;
  ASSERT_EQ(node.CreatePortPair(&l1, &l2), ports::OK);
  std::atomic<int64_t> lost_at{0};
  process_->SetPeerLostObserver([&](const ports::NodeName&, const Status&) {
    lost_at.store(MonotonicNanos());
  });
  std::vector<double> latencies_us;
  const int trials = static_cast<int>(Scaled(50, 5));
  for (int trial = 0; trial < trials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    int side_fd = memfd_create("side", MFD_CLOEXEC);
    ASSERT_GE(side_fd, 0);
    ScopedFd side_owner(side_fd);
    ASSERT_EQ(ftruncate(side_fd, 4096), 0);
    void* side =
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, side_fd, 0);
    ASSERT_NE(side, MAP_FAILED);
    auto* committed = static_cast<uint64_t*>(side);
    const uint64_t stream_seed = rng();
    Child child = Launch("kill-stream",
                         {std::to_string(side_fd), std::to_string(stream_seed)},
                         {side_fd});
    ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
    const ports::PortRef boot = child.peer->bootstrap_port;
    ports::PortRef x, y;
    ASSERT_EQ(node.CreatePortPair(&x, &y), ports::OK);
    ASSERT_EQ(SendText(node, boot, "hold", {y.name()}), ports::OK);

    // Read in the background while the child streams; kill it at a random
    // point of its stream.
    testing::CommittedPrefixChecker checker(stream_seed, 4096);
    Status end_status;
    std::thread reader([&] {
      for (uint64_t i = 0;; ++i) {
        auto m = ReadMessage(node, *waiter_, boot);
        if (!m.ok()) {
          end_status = m.status();
          return;
        }
        checker.Observe((*m)->message().bytes());
        if ((i + 1) % 16 == 0)
          (void)SendText(node, boot, "ack " + std::to_string(i + 1));
      }
    });
    const uint64_t kill_after = rng() % 3000;
    ASSERT_TRUE(WaitFor([&] {
      return __atomic_load_n(committed, __ATOMIC_ACQUIRE) >= kill_after;
    }));
    lost_at = 0;
    int64_t killed_at = MonotonicNanos();
    ASSERT_EQ(kill(child.spawned.pid, SIGKILL), 0);
    reader.join();
    EXPECT_EQ(end_status.code(), StatusCode::kPeerClosed)
        << end_status.ToString();
    uint64_t truth = __atomic_load_n(committed, __ATOMIC_ACQUIRE);
    EXPECT_EQ(checker.Verify(truth), "")
        << "queued here: " << node.GetStats().queued_messages
        << ", buffered events: " << node.GetStats().buffered_events;
    ASSERT_TRUE(WaitFor([&] { return lost_at.load() != 0; }));
    latencies_us.push_back((lost_at.load() - killed_at) / 1000.0);

    // Exactly the affected ports see peer_closed; the local route works.
    ports::PortStatus status;
    ASSERT_EQ(node.GetStatus(x, &status), ports::OK);
    EXPECT_TRUE(status.peer_closed);
    ASSERT_EQ(SendText(node, l1, "alive"), ports::OK);
    EXPECT_EQ(ReadText(l2), "alive");
    ASSERT_EQ(node.GetStatus(l2, &status), ports::OK);
    EXPECT_FALSE(status.peer_closed);
    EXPECT_EQ(Reap(child), 128 + SIGKILL);
    EXPECT_EQ(node.ClosePort(x), ports::OK);
    EXPECT_EQ(node.ClosePort(boot), ports::OK);
    munmap(side, 4096);
  }
  EXPECT_EQ(process_->GetStats().router.peer_deaths,
            static_cast<uint64_t>(trials));
  std::sort(latencies_us.begin(), latencies_us.end());
  printf(
      "kill -> LostConnectionToNode over %zu trials: p50 %.1f us, p99 "
      "%.1f us, max %.1f us\n",
      latencies_us.size(), latencies_us[latencies_us.size() / 2],
      latencies_us[latencies_us.size() * 99 / 100], latencies_us.back());
  EXPECT_EQ(node.ClosePort(l1), ports::OK);
  EXPECT_EQ(node.ClosePort(l2), ports::OK);
  EXPECT_TRUE(WaitFor([&] { return node.GetStats().ports == 0; }));
}

TEST_P(ProcessMultiprocessTest, ChildDyingInHandshakeIsADeath) {
  Child child = Launch("die-in-handshake");
  ASSERT_FALSE(child.peer.ok());
  EXPECT_EQ(child.peer.status().code(), StatusCode::kPeerClosed)
      << child.peer.status().ToString();
  EXPECT_EQ(Reap(child), 128 + SIGKILL);
  EXPECT_EQ(process_->GetStats().router.peer_deaths, 1u);
  EXPECT_EQ(process_->node().GetStats().ports, 0u);
}

TEST_P(ProcessMultiprocessTest, ChildExitingBeforeHelloIsADeath) {
  // A mode the child does not know: it exits at once without a word.
  Child child = Launch("no-such-mode");
  ASSERT_FALSE(child.peer.ok());
  EXPECT_EQ(child.peer.status().code(), StatusCode::kPeerClosed)
      << child.peer.status().ToString();
  EXPECT_EQ(Reap(child), 64);
  EXPECT_EQ(process_->GetStats().router.peer_deaths, 1u);
}

TEST_P(ProcessMultiprocessTest, ChildSwitchingUidIsRefused) {
  if (geteuid() != 0)
    GTEST_SKIP() << "switching uid needs root";
  Child child =
      Launch("accept", {"65534", "-", std::to_string(kProtocolMajor)});
  ASSERT_FALSE(child.peer.ok());
  EXPECT_EQ(child.peer.status().code(), StatusCode::kProtocolViolation)
      << child.peer.status().ToString();
  EXPECT_NE(child.peer.status().ToString().find("uid"), std::string::npos)
      << child.peer.status().ToString();
  EXPECT_EQ(Reap(child), 3);
}

TEST_P(ProcessMultiprocessTest, SameUidChildIsAcceptedByTheSameCheck) {
  // The uid checker's control: the same child without the switch passes.
  Child child = Launch("accept", {"-", "-", std::to_string(kProtocolMajor)});
  ASSERT_TRUE(child.peer.ok()) << child.peer.status().ToString();
  ASSERT_EQ(SendText(process_->node(), child.peer->bootstrap_port, "bye"),
            ports::OK);
  EXPECT_EQ(Reap(child), 0);
  EXPECT_EQ(process_->node().ClosePort(child.peer->bootstrap_port), ports::OK);
}

TEST_P(ProcessMultiprocessTest, ChildClaimingAnotherNameIsRefused) {
  Child child =
      Launch("accept", {"-", "claim", std::to_string(kProtocolMajor)});
  ASSERT_FALSE(child.peer.ok());
  EXPECT_EQ(child.peer.status().code(), StatusCode::kProtocolViolation);
  EXPECT_NE(child.peer.status().ToString().find("claims node name"),
            std::string::npos)
      << child.peer.status().ToString();
  EXPECT_EQ(Reap(child), 3);
}

TEST_P(ProcessMultiprocessTest, ChildOfAnotherMajorVersionIsRefused) {
  Child child =
      Launch("accept", {"-", "-", std::to_string(kProtocolMajor + 1)});
  ASSERT_FALSE(child.peer.ok());
  std::string text = child.peer.status().ToString();
  EXPECT_EQ(child.peer.status().code(), StatusCode::kFailedPrecondition)
      << text;
  EXPECT_NE(text.find(std::to_string(kProtocolMajor + 1) + ".0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("speaks " + std::to_string(kProtocolMajor) + ".0"),
            std::string::npos)
      << text;
  EXPECT_EQ(Reap(child), 3);
}

INSTANTIATE_TEST_SUITE_P(IdentityModes,
                         ProcessMultiprocessTest,
                         ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? "ForcedPidfdOpen"
                                                   : "Default";
                         });

}  // namespace
}  // namespace shmports::channel
