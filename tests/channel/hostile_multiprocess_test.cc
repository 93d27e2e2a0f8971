// One Process connected to two real children (fork+exec of hostile_child):
// a well-behaved one streaming checksummed, sequence-numbered messages both
// ways, and a hostile one that drops its privileges, shakes hands honestly
// and then does its worst through the raw rings. One test per scenario;
// each ends by checking that the hostile child is gone from the parent's
// links, that the good stream stayed intact throughout (it keeps flowing
// before, during and after the attack, and both ends verify every message),
// and that the parent's node holds nothing for the dead route.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "channel/process.h"
#include "channel/socket.h"
#include "channel/spawn.h"
#include "core/base/deadline.h"
#include "shm/ring.h"
#include "tests/channel/hostile_checks.h"
#include "tests/channel/hostile_stream.h"
#include "tests/channel/process_test_util.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::channel::testing::CheckLinkIntact;
using ::shmports::channel::testing::CheckRouteOpen;
using ::shmports::channel::testing::CompareNodeShape;
using ::shmports::channel::testing::PortWaiter;
using ::shmports::channel::testing::PrivilegeProblems;
using ::shmports::channel::testing::SendBytes;
using ::shmports::channel::testing::SendText;
using ::shmports::channel::testing::StreamEndpoint;
using ::shmports::channel::testing::StreamOptions;
using ::shmports::testing::HelperPath;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;
using ::shmports::testing::WaitFor;

constexpr ports::NodeName kGoodName{0x600d, 1};
constexpr ports::NodeName kHostileName{0xbad, 1};
constexpr auto kLong = std::chrono::seconds(30);

int ExitCode(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status)
                                : 128 + WTERMSIG(wait_status);
}

struct Child {
  SpawnedChild spawned;
  ports::PortRef boot;  // The parent's end of the bootstrap pair.
  bool reaped = false;
};

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override { seed_ = TestSeed(); }

  void TearDown() override {
    stream_.reset();
    for (Child* child : {&good_, &hostile_}) {
      if (child->spawned.pid > 0 && !child->reaped) {
        kill(child->spawned.pid, SIGKILL);
        (void)WaitForExit(child->spawned, Deadline::In(kLong));
      }
    }
    waiter_.reset();
    process_.reset();
  }

  // The parent, the good child and its stream, flowing both ways.
  void Begin(const ProcessOptions& options = {}) {
    auto process = Process::Create(options);
    ASSERT_TRUE(process.ok()) << process.status().ToString();
    process_ = std::move(*process);
    waiter_ = std::make_unique<PortWaiter>(*process_);
    ASSERT_TRUE(Launch(kGoodName, {"good", std::to_string(seed_)}, &good_));
    StreamOptions stream;
    stream.send_seed = seed_;
    stream.receive_seed = seed_ + 1;
    stream_ = std::make_unique<StreamEndpoint>(
        process_->node(), *waiter_, good_.boot, stream, /*is_child=*/false);
    stream_->Start();
    ASSERT_TRUE(StreamAdvances()) << "the good stream does not flow";
  }

  // Starts the hostile child playing `scenario`, checks that it has dropped
  // its privileges, and snapshots what it must not touch.
  void LaunchHostile(const std::string& scenario, uint64_t n = 0) {
    ASSERT_TRUE(
        Launch(kHostileName,
               {"hostile", scenario, std::to_string(seed_),
                std::to_string(kGoodName.v1), std::to_string(kGoodName.v2),
                std::to_string(good_.boot.name().v1),
                std::to_string(good_.boot.name().v2), std::to_string(n)},
               &hostile_));
    EXPECT_EQ(PrivilegeProblems(hostile_.spawned.pid), "");
    shape_before_ = process_->node().GetStats();
  }

  // The hostile child is gone from the links; everything of the good child
  // is as it was; the hostile child exited 0 (it did what it meant to).
  void ExpectHostileGoneGoodUntouched() {
    EXPECT_TRUE(WaitFor([&] { return !HasLink(kHostileName); }, kLong));
    ExpectGoodUntouched();
    EXPECT_EQ(Reap(hostile_), 0) << "the hostile child could not play";
  }

  void ExpectGoodUntouched() {
    Status route = CheckRouteOpen(process_->node(), good_.boot);
    EXPECT_TRUE(route.ok()) << route.ToString();
    Status link = CheckLinkIntact(process_->GetStats().router, kGoodName,
                                  good_.spawned.pid);
    EXPECT_TRUE(link.ok()) << link.ToString();
    Status shape = CompareNodeShape(shape_before_, process_->node().GetStats());
    EXPECT_TRUE(shape.ok()) << shape.ToString();
  }

  // Kept flowing after the attack, then ended and verified at both ends;
  // then the node holds nothing at all once both bootstrap ports close.
  void End() {
    ASSERT_TRUE(StreamAdvances()) << "the good stream stalled";
    stream_->Stop();
    std::string report;
    Status verdict = stream_->Join(&report);
    EXPECT_TRUE(verdict.ok()) << "parent's end: " << verdict.ToString();
    EXPECT_EQ(report, std::to_string(stream_->sent()) + " ok") << "child's end";
    printf("good stream: %llu messages each way verified\n",
           static_cast<unsigned long long>(stream_->received()));
    ports::Node& node = process_->node();
    if (hostile_.boot.is_valid()) {
      // The dead route's port saw its peer close; only it and the good
      // route's port remain.
      ports::PortStatus status;
      ASSERT_EQ(node.GetStatus(hostile_.boot, &status), ports::OK);
      EXPECT_TRUE(status.peer_closed);
      EXPECT_EQ(node.ClosePort(hostile_.boot), ports::OK);
      EXPECT_TRUE(WaitFor([&] { return node.GetStats().ports == 1; }))
          << "ports left: " << node.GetStats().ports;
    }
    EXPECT_EQ(node.ClosePort(good_.boot), ports::OK);
    EXPECT_EQ(Reap(good_), 0);
    EXPECT_TRUE(WaitFor([&] {
      ports::NodeStats s = node.GetStats();
      return s.ports == 0 && s.buffered_events == 0 &&
             s.buffered_event_bytes == 0 && s.queued_messages == 0;
    })) << "leaked: ports "
        << node.GetStats().ports << ", buffered events "
        << node.GetStats().buffered_events;
    EXPECT_TRUE(
        WaitFor([&] { return process_->GetStats().router.links.empty(); }));
  }

  // At least a few more messages each way than when called (needs both
  // ends reading: the sender's window advances only with the peer's acks).
  bool StreamAdvances() {
    const uint64_t step = Scaled(100, 10);
    const uint64_t sent = stream_->sent(), received = stream_->received();
    return WaitFor(
        [&] {
          return stream_->sent() >= sent + step &&
                 stream_->received() >= received + step;
        },
        kLong);
  }

  bool Launch(const ports::NodeName& name,
              const std::vector<std::string>& args,
              Child* child) {
    auto pair = CreateCredentialedSocketPair();
    EXPECT_TRUE(pair.ok()) << pair.status().ToString();
    if (!pair.ok())
      return false;
    int child_fd = pair->second.get();
    std::vector<std::string> argv = {HelperPath("hostile_child"), args[0],
                                     std::to_string(child_fd)};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    std::vector<int> keep = {child_fd};
    auto spawned = SpawnChild(argv, EnvironmentWith({}), keep);
    EXPECT_TRUE(spawned.ok()) << spawned.status().ToString();
    if (!spawned.ok())
      return false;
    child->spawned = std::move(*spawned);
    pair->second.Reset();
    auto peer = process_->Connect(std::move(pair->first),
                                  child->spawned.pidfd.get(), name);
    EXPECT_TRUE(peer.ok()) << peer.status().ToString();
    if (!peer.ok())
      return false;
    EXPECT_EQ(peer->peer_name, name);
    child->boot = peer->bootstrap_port;
    return true;
  }

  int Reap(Child& child) {
    auto status = WaitForExit(child.spawned, Deadline::In(kLong));
    EXPECT_TRUE(status.ok()) << status.status().ToString();
    child.reaped = status.ok();
    return status.ok() ? ExitCode(*status) : -1;
  }

  bool HasLink(const ports::NodeName& peer) {
    for (const LinkStats& link : process_->GetStats().router.links) {
      if (link.peer == peer)
        return true;
    }
    return false;
  }

  LinkStats HostileLink() {
    for (const LinkStats& link : process_->GetStats().router.links) {
      if (link.peer == kHostileName)
        return link;
    }
    return LinkStats();
  }

  // The one drop the Router recorded: its reason (status code name first).
  std::string DropReason() {
    RouterStats stats = process_->GetStats().router;
    EXPECT_EQ(stats.peers_dropped, 1u);
    std::string out;
    for (const auto& [reason, count] : stats.violations)
      out += reason;
    return out;
  }

  void ExpectDroppedFor(StatusCode code, const std::string& words) {
    EXPECT_TRUE(WaitFor([&] { return !HasLink(kHostileName); }, kLong));
    std::string reason = DropReason();
    EXPECT_EQ(reason.rfind(StatusCodeName(code), 0), 0u) << reason;
    EXPECT_NE(reason.find(words), std::string::npos) << reason;
  }

  uint64_t seed_ = 0;
  std::unique_ptr<Process> process_;
  std::unique_ptr<PortWaiter> waiter_;
  std::unique_ptr<StreamEndpoint> stream_;
  Child good_;
  Child hostile_;
  ports::NodeStats shape_before_;
};

// ---- Its outbound ring: the parent drops it with kCorrupt. ----

TEST_F(HostileTest, GarbageInItsRingDropsItWithCorrupt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("garbage");
  ExpectDroppedFor(StatusCode::kCorrupt, "inbound ring");
  ExpectHostileGoneGoodUntouched();
  End();
}

TEST_F(HostileTest, TailMovedBackwardsDropsItWithCorrupt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("tail-backwards");
  ExpectDroppedFor(StatusCode::kCorrupt, "inbound ring");
  ExpectHostileGoneGoodUntouched();
  End();
}

TEST_F(HostileTest, FrameLengthPastTheEndDropsItWithCorrupt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("length-past-end");
  ExpectDroppedFor(StatusCode::kCorrupt, "inbound ring");
  ExpectHostileGoneGoodUntouched();
  End();
}

// The ring the parent produces into: the child consumes honestly (one
// message at a time, so the parent sees `head` move with the traffic), then
// moves `head` back to 0. The parent notices at its next head refresh.
TEST_F(HostileTest, HeadMovedBackwardsDropsItWithCorrupt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  const size_t size = 64 << 10;
  // Twice the ring: the parent has refreshed `head` at least once.
  const uint64_t honest = 2 * shm::kDefaultRingCapacity / size;
  LaunchHostile("head-backwards", honest);
  ports::Node& node = process_->node();
  std::vector<uint8_t> payload(size, 0x42);
  for (uint64_t i = 0; i < honest; ++i) {
    ASSERT_EQ(SendBytes(node, hostile_.boot, payload), ports::OK);
    if (i + 1 == honest)
      break;  // After the last one `head` goes back instead.
    ASSERT_TRUE(
        WaitFor([&] { return HostileLink().outbound_fill == 0; }, kLong))
        << "message " << i << " not consumed";
  }
  // `head` went back to 0 behind a tail past the capacity (the fill is
  // clamped to it).
  ASSERT_TRUE(WaitFor(
      [&] {
        LinkStats link = HostileLink();
        return link.outbound_fill == link.outbound_capacity;
      },
      kLong));
  for (int i = 0; i < 64 && HasLink(kHostileName); ++i)
    (void)SendBytes(node, hostile_.boot, payload);
  ExpectDroppedFor(StatusCode::kCorrupt, "outbound ring");
  ExpectHostileGoneGoodUntouched();
  End();
}

// ---- Events no honest peer sends: violation, dropped. ----

TEST_F(HostileTest, MalformedEventDropsIt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("malformed-event");
  ExpectDroppedFor(StatusCode::kCorrupt, "decode event");
  ExpectHostileGoneGoodUntouched();
  End();
}

// Believed, a broadcast ObserveProxy naming the good child's node (with no
// port: "every port there") would close every route to it.
TEST_F(HostileTest, ForgedBroadcastObserveProxyDropsItAndSparesTheGoodChild) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("forged-observe-proxy");
  ExpectDroppedFor(StatusCode::kProtocolViolation,
                   "broadcast ObserveProxy names a proxy on another node");
  ExpectHostileGoneGoodUntouched();
  End();
}

// A fragment stream that lies (channel/fragment.h lists the rules), one
// lie per run.
struct FragmentLie {
  const char* name;
  StatusCode code;
  const char* words;
};

class HostileFragmentTest : public HostileTest,
                            public ::testing::WithParamInterface<FragmentLie> {
};

TEST_P(HostileFragmentTest, LyingFragmentStreamDropsIt) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile(std::string("fragments-") + GetParam().name);
  ExpectDroppedFor(GetParam().code, GetParam().words);
  ExpectHostileGoneGoodUntouched();
  End();
}

INSTANTIATE_TEST_SUITE_P(
    Lies,
    HostileFragmentTest,
    ::testing::Values(
        FragmentLie{"beyond-limit", StatusCode::kProtocolViolation,
                    "beyond the largest message"},
        FragmentLie{"first-not-at-zero", StatusCode::kProtocolViolation,
                    "starts at offset 100"},
        FragmentLie{"overlap", StatusCode::kProtocolViolation, "(overlap)"},
        FragmentLie{"gap", StatusCode::kProtocolViolation, "(gap)"},
        FragmentLie{"total-changes", StatusCode::kProtocolViolation,
                    "announces a total of 6000 bytes"},
        FragmentLie{"past-end", StatusCode::kProtocolViolation,
                    "runs past the stream's end"},
        FragmentLie{"restart", StatusCode::kProtocolViolation,
                    "a new fragment stream before the old one finished"},
        FragmentLie{"event-in-the-middle", StatusCode::kProtocolViolation,
                    "an event frame in the middle of a fragment stream"},
        FragmentLie{"undecodable-content", StatusCode::kCorrupt,
                    "decode event"}),
    [](const ::testing::TestParamInfo<FragmentLie>& lie) {
      std::string name;
      for (const char* c = lie.param.name; *c != '\0'; ++c)
        name += *c == '-' ? '_' : *c;
      return name;
    });

// ---- Stale or unknown targets: ignored and counted, not dropped. ----

// Every event type that can name a port (MergePort aside: its new port is
// adopted and closed by design), to random names. "No state change" is the
// node's shape (CompareNodeShape): its message and buffered counts are left
// out because the good stream moves them all along.
TEST_F(HostileTest, EventsToPortsNeverGivenAreIgnoredAndCounted) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  const uint64_t n = Scaled(700, 70);
  LaunchHostile("unknown-ports", n);
  EXPECT_TRUE(WaitFor([&] { return HostileLink().events_ignored >= n; }, kLong))
      << "ignored: " << HostileLink().events_ignored;
  EXPECT_EQ(HostileLink().events_ignored, n);
  EXPECT_TRUE(HasLink(kHostileName)) << "dropped: " << DropReason();
  EXPECT_EQ(process_->GetStats().router.peers_dropped, 0u);
  ExpectGoodUntouched();
  Status route = CheckRouteOpen(process_->node(), hostile_.boot);
  EXPECT_TRUE(route.ok()) << "its own route: " << route.ToString();
  // Now it leaves of its own accord: a death, not a drop.
  ASSERT_EQ(SendText(process_->node(), hostile_.boot, "exit"), ports::OK);
  ExpectHostileGoneGoodUntouched();
  EXPECT_EQ(process_->GetStats().router.peers_dropped, 0u);
  EXPECT_EQ(process_->GetStats().router.peer_deaths, 1u);
  End();
}

// ---- Buffered events: bounded per peer. ----

// User messages to its own route's port that claim another port of its node
// as their previous peer: never next, so buffered — up to the limit, and
// the one past it is a violation.
TEST_F(HostileTest, ForgedPreviousPeerIsBufferedThenAViolation) {
  SCOPED_TRACE(SeedTrace(seed_));
  ProcessOptions options;
  // Far above what the good stream's own early events reach (a handful,
  // when its threads' sends cross), which count against the same limit.
  const uint64_t limit = 512;
  options.node.limits.max_buffered_events_per_port = limit;
  ASSERT_NO_FATAL_FAILURE(Begin(options));
  LaunchHostile("forged-previous-peer", limit);
  EXPECT_TRUE(WaitFor(
      [&] { return process_->node().GetStats().buffered_events >= limit; },
      kLong));
  EXPECT_TRUE(HasLink(kHostileName));
  EXPECT_EQ(process_->GetStats().router.peers_dropped, 0u);
  ASSERT_EQ(SendText(process_->node(), hostile_.boot, "go"), ports::OK);
  ExpectDroppedFor(StatusCode::kProtocolViolation, "too many early events");
  ExpectHostileGoneGoodUntouched();
  End();
}

// A flood of early events from its true port (numbered far ahead of the
// next one due): the parent's memory for them, as Node::GetStats reports the
// largest share any one peer holds, never exceeds the per-peer budget at
// any sample, and the event past the budget drops the peer. The budget
// applies to every peer alike, so the good child's own early events (when
// its threads' sends cross) never make the largest share exceed it either.
struct FloodCase {
  const char* scenario;
  uint64_t events;  // NodeLimits::max_buffered_events_per_peer
  uint64_t bytes;   // NodeLimits::max_buffered_event_bytes_per_peer
};

void ExpectFloodWithinBudget(Process& process,
                             const FloodCase& flood,
                             const std::function<bool()>& dropped) {
  uint64_t max_events = 0, max_bytes = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        ports::NodeStats s = process.node().GetStats();
        max_events =
            std::max<uint64_t>(max_events, s.buffered_events_largest_peer);
        max_bytes =
            std::max<uint64_t>(max_bytes, s.buffered_event_bytes_largest_peer);
        return dropped();
      },
      kLong));
  printf(
      "%s: one peer held at most %llu events, %llu bytes (budget %llu, "
      "%llu)\n",
      flood.scenario, static_cast<unsigned long long>(max_events),
      static_cast<unsigned long long>(max_bytes),
      static_cast<unsigned long long>(flood.events),
      static_cast<unsigned long long>(flood.bytes));
  EXPECT_LE(max_events, flood.events);
  EXPECT_LE(max_bytes, flood.bytes);
}

TEST_F(HostileTest, EarlyControlFloodStaysWithinThePerPeerBudget) {
  SCOPED_TRACE(SeedTrace(seed_));
  const FloodCase flood = {"early-control-flood", 512, size_t{16} << 20};
  ProcessOptions options;
  options.node.limits.max_buffered_events_per_peer = flood.events;
  options.node.limits.max_buffered_event_bytes_per_peer = flood.bytes;
  ASSERT_NO_FATAL_FAILURE(Begin(options));
  LaunchHostile(flood.scenario, 4 * flood.events);
  ExpectFloodWithinBudget(*process_, flood,
                          [&] { return !HasLink(kHostileName); });
  ExpectDroppedFor(StatusCode::kProtocolViolation, "too many early events");
  ExpectHostileGoneGoodUntouched();
  End();
}

// Few events but large ones: the byte budget is what trips.
TEST_F(HostileTest, EarlyMessageFloodStaysWithinThePerPeerByteBudget) {
  SCOPED_TRACE(SeedTrace(seed_));
  const FloodCase flood = {"early-message-flood", 4096, size_t{1} << 20};
  ProcessOptions options;
  options.node.limits.max_buffered_events_per_peer = flood.events;
  options.node.limits.max_buffered_event_bytes_per_peer = flood.bytes;
  ASSERT_NO_FATAL_FAILURE(Begin(options));
  LaunchHostile(flood.scenario, 64);  // 64 x 64 KiB: 4x the budget.
  ExpectFloodWithinBudget(*process_, flood,
                          [&] { return !HasLink(kHostileName); });
  ExpectDroppedFor(StatusCode::kProtocolViolation, "too many early events");
  ExpectHostileGoneGoodUntouched();
  End();
}

// Forged events a peer leaves buffered on ANOTHER peer's route (it learnt
// the parent's port name there) go when the forger is dropped: no honest
// sender will ever make them next (Node::LostConnectionToNode discards what
// a lost node left buffered on every port).
TEST_F(HostileTest, ForgedEventsOnTheGoodRouteGoWithTheForger) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  const uint64_t n = 100;
  LaunchHostile("forge-on-good-route", n);
  ExpectDroppedFor(StatusCode::kCorrupt, "decode event");
  // The good stream may hold a few early events of its own at any moment.
  EXPECT_TRUE(WaitFor(
      [&] { return process_->node().GetStats().buffered_events < n / 2; },
      std::chrono::seconds(5)))
      << "still buffered: " << process_->node().GetStats().buffered_events;
  ExpectHostileGoneGoodUntouched();
  End();
}

// The per-peer budget: forged events spread over two routes (its own and
// the good one), each well below the per-port limit, together beyond what
// one peer may make the parent buffer.
TEST_F(HostileTest, ForgedEventsOverTwoRoutesTripThePerPeerBudget) {
  SCOPED_TRACE(SeedTrace(seed_));
  ProcessOptions options;
  const uint64_t budget = 256;
  options.node.limits.max_buffered_events_per_port = 4 * budget;
  options.node.limits.max_buffered_events_per_peer = budget;
  ASSERT_NO_FATAL_FAILURE(Begin(options));
  LaunchHostile("forge-on-two-routes", budget * 3 / 4);
  ExpectDroppedFor(StatusCode::kProtocolViolation, "too many early events");
  ExpectHostileGoneGoodUntouched();
  End();
}

// ---- Its segments. ----

// ftruncate fails in the child on both sealed segments (its exit status
// says so); holes punched through the ring the parent reads turn every word
// to 0: the parent reads an empty ring or reports kCorrupt (here its head
// is past the zeroed tail), and never crashes.
TEST_F(HostileTest, TruncateFailsAndAPunchedRingNeverCrashesTheParent) {
  SCOPED_TRACE(SeedTrace(seed_));
  ASSERT_NO_FATAL_FAILURE(Begin());
  LaunchHostile("truncate-and-punch");
  bool dropped =
      WaitFor([&] { return !HasLink(kHostileName); }, std::chrono::seconds(5));
  if (dropped) {
    std::string reason = DropReason();
    EXPECT_EQ(reason.rfind(StatusCodeName(StatusCode::kCorrupt), 0), 0u)
        << reason;
    printf("punched ring: dropped (%s)\n", reason.c_str());
  } else {
    printf("punched ring: read as empty\n");
    ASSERT_EQ(SendText(process_->node(), hostile_.boot, "exit"), ports::OK);
  }
  ExpectHostileGoneGoodUntouched();
  End();
}

}  // namespace
}  // namespace shmports::channel
