// The seeded simulation of core/ports (tests/chaos/ports_simulation.h): many
// seeds of random operations on 2–6 nodes, checked by the route oracle, and
// one test per fault the oracle exists to catch.
//
// Seeds 1..Scaled(2000, 200) run split into shards (SHMPORTS_SIM_SHARD=i/n,
// set by meson); a few fresh random seeds run too. A failing seed prints its
// replay command:
//   SHMPORTS_TEST_SEED=<seed> chaos_ports_simulation_test
//       --gtest_filter=PortsSimulationTest.ReplaySeed
#include "tests/chaos/ports_simulation.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/log.h"
#include "core/base/random.h"
#include "core/base/str_format.h"
#include "tests/util/test_util.h"

namespace shmports::ports::sim {
namespace {

std::string SelfPath() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  return n > 0 ? std::string(self, static_cast<size_t>(n))
               : std::string("chaos_ports_simulation_test");
}

std::string ReplayCommand(uint64_t seed) {
  return StrFormat(
      "replay: SHMPORTS_TEST_SEED=%llu %s "
      "--gtest_filter=PortsSimulationTest.ReplaySeed",
      static_cast<unsigned long long>(seed), SelfPath().c_str());
}

std::string Report(uint64_t seed, const SimulationResult& result) {
  std::string text = StrFormat(
      "seed %llu: %zu failure(s) after %llu ops (%llu sent, %llu read, %llu "
      "ports moved, %llu merges, %llu removals, %llu events)\n",
      static_cast<unsigned long long>(seed), result.failures.size(),
      static_cast<unsigned long long>(result.ops),
      static_cast<unsigned long long>(result.messages_sent),
      static_cast<unsigned long long>(result.messages_read),
      static_cast<unsigned long long>(result.ports_transferred),
      static_cast<unsigned long long>(result.merges),
      static_cast<unsigned long long>(result.removals),
      static_cast<unsigned long long>(result.events_delivered));
  for (const std::string& f : result.failures)
    text += "  " + f + "\n";
  return text + "  " + ReplayCommand(seed);
}

// Nodes log a warning when a removed node is destroyed with ports, which
// is expected here; keep the test output to the failures.
class QuietLogs {
 public:
  QuietLogs() {
    SetLogSink([](LogSeverity, std::string_view) {});
  }
  ~QuietLogs() { SetLogSink(nullptr); }
};

// Shard i of n from SHMPORTS_SIM_SHARD ("i/n"); the whole range otherwise.
void ShardRange(uint64_t count, uint64_t* first, uint64_t* end) {
  *first = 1;
  *end = count + 1;
  const char* env = getenv("SHMPORTS_SIM_SHARD");
  unsigned i = 0, n = 0;
  if (env == nullptr || sscanf(env, "%u/%u", &i, &n) != 2 || n == 0 || i >= n) {
    return;
  }
  *first = 1 + count * i / n;
  *end = 1 + count * (i + 1) / n;
}

TEST(PortsSimulationTest, SeedRange) {
  QuietLogs quiet;
  uint64_t first, end;
  ShardRange(::shmports::testing::Scaled(2000, 200), &first, &end);
  SimulationOptions options;
  uint64_t failed = 0;
  SimulationResult total;
  for (uint64_t seed = first; seed < end; ++seed) {
    SimulationResult result = RunSimulation(seed, options);
    total.messages_sent += result.messages_sent;
    total.ports_transferred += result.ports_transferred;
    total.merges += result.merges;
    total.removals += result.removals;
    total.events_delivered += result.events_delivered;
    if (!result.failures.empty()) {
      ADD_FAILURE() << Report(seed, result);
      if (++failed >= 5)
        break;
    }
  }
  printf(
      "seeds %llu..%llu: %llu messages, %llu ports moved, %llu merges, %llu "
      "removals, %llu events\n",
      static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(end - 1),
      static_cast<unsigned long long>(total.messages_sent),
      static_cast<unsigned long long>(total.ports_transferred),
      static_cast<unsigned long long>(total.merges),
      static_cast<unsigned long long>(total.removals),
      static_cast<unsigned long long>(total.events_delivered));
}

// Fresh seeds each run widen the search over time; a failure names its seed.
TEST(PortsSimulationTest, FreshSeeds) {
  QuietLogs quiet;
  SimulationOptions options;
  for (int i = 0; i < 10; ++i) {
    uint64_t seed = RandomU64();
    SimulationResult result = RunSimulation(seed, options);
    ASSERT_TRUE(result.failures.empty()) << Report(seed, result);
  }
}

// SHMPORTS_TEST_SEED=<seed> replays exactly one seed with the options of
// SeedRange and FreshSeeds (a random seed when unset).
TEST(PortsSimulationTest, ReplaySeed) {
  uint64_t seed = ::shmports::testing::TestSeed();
  SCOPED_TRACE(::shmports::testing::SeedTrace(seed));
  SimulationOptions options;
  const char* trace = getenv("SHMPORTS_SIM_TRACE");
  options.trace = trace != nullptr && *trace == '1';
  SimulationResult result = RunSimulation(seed, options);
  EXPECT_TRUE(result.failures.empty()) << Report(seed, result);
}

// Every seed also works with more nodes removed and longer runs.
TEST(PortsSimulationTest, LongRunsWithRemovals) {
  QuietLogs quiet;
  SimulationOptions options;
  options.num_ops = 5000;
  options.max_removals = 3;
  options.num_nodes = 6;
  uint64_t count = ::shmports::testing::Scaled(20, 4);
  for (uint64_t seed = 1; seed <= count; ++seed) {
    SimulationResult result = RunSimulation(seed * 7919, options);
    EXPECT_TRUE(result.failures.empty()) << Report(seed * 7919, result);
  }
}

// Each fault runs on seeds whose honest run passes; where the fault hit a
// message, the oracle (or AcceptEvent's checks) must report it.
void ExpectFaultCaught(FaultKind fault) {
  QuietLogs quiet;
  SimulationOptions options;
  // Without closes and removals every message must arrive, so a lost,
  // doubled or reordered one is always visible.
  options.allow_close = false;
  options.max_removals = 0;
  options.num_ops = 600;
  int applied = 0;
  for (uint64_t seed = 1; seed <= 40 && applied < 5; ++seed) {
    SimulationResult honest = RunSimulation(seed, options);
    ASSERT_TRUE(honest.failures.empty()) << Report(seed, honest);
    options.fault = fault;
    SimulationResult faulty = RunSimulation(seed, options);
    options.fault = FaultKind::kNone;
    if (!faulty.fault_applied)
      continue;
    ++applied;
    EXPECT_FALSE(faulty.failures.empty())
        << FaultKindName(fault) << " fault not caught; seed " << seed;
    if (!faulty.failures.empty()) {
      printf("%s fault, seed %llu, caught: %s\n", FaultKindName(fault),
             static_cast<unsigned long long>(seed), faulty.failures[0].c_str());
    }
  }
  EXPECT_GE(applied, 5) << "the fault found too few messages to hit";
}

TEST(PortsSimulationTest, OracleCatchesDroppedMessage) {
  ExpectFaultCaught(FaultKind::kDropUserMessage);
}

TEST(PortsSimulationTest, OracleCatchesDuplicatedMessage) {
  ExpectFaultCaught(FaultKind::kDuplicateUserMessage);
}

TEST(PortsSimulationTest, OracleCatchesReorderedMessages) {
  ExpectFaultCaught(FaultKind::kSwapUserMessagePayloads);
}

}  // namespace
}  // namespace shmports::ports::sim
