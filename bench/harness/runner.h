// The harness core: plans the trials, runs them interleaved and repeated,
// launches and supervises each peer, and judges what the peer verified.
//
// One repetition runs every planned trial once, in catalog order (reversed
// on odd repetitions, so slow drift of the machine hits subjects and
// baselines alike); each subject thus sits next to its baselines in time,
// and a ratio is always taken between two trials of the same repetition.
// Every peer trial is a fresh peer process.
#ifndef SHMPORTS_BENCH_HARNESS_RUNNER_H_
#define SHMPORTS_BENCH_HARNESS_RUNNER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness/catalog.h"
#include "bench/harness/launcher.h"
#include "bench/harness/stats.h"
#include "bench/harness/subject.h"
#include "core/base/deadline.h"
#include "core/base/mutex.h"
#include "core/base/status.h"

namespace shmports::bench {

struct RunConfig {
  std::string exe;  // This binary's path: the peer's argv[0].
  PinPlan pin;
  uint64_t duration_ns = 0;      // Per trial.
  uint64_t max_messages = 0;     // Per trial.
  uint64_t warmup_messages = 0;  // Round trips not sampled.
  int repetitions = 3;
  uint64_t seed = 1;
  bool progress = true;  // One line per trial on stderr.
  // The watchdog's limit per trial (0: ten times the duration plus 30 s).
  uint64_t trial_timeout_ns = 0;
  // The machine, for the report: a shared machine makes noisy figures.
  int cpus_online = 0;
  std::string kernel;
  double load_before = -1;  // 1-minute load average at start.
  double load_after = -1;   // And at the end (set before reporting).
  // Fault injection (hidden --inject): "corrupt", "drop" or "stall".
  std::string inject;
  // Pipe subjects: TrialParams::pipe_window_bytes (--pipe-window).
  uint64_t pipe_window_bytes = 0;
};

struct TrialSpec {
  const Subject* subject;
  Pattern pattern;
  size_t size;
};

struct TrialResult {
  std::string subject;
  bool baseline = false;
  Pattern pattern = Pattern::kRoundTrip;
  size_t size = 0;           // As asked for.
  size_t payload_bytes = 0;  // As carried (the cache line carries 56).
  int repetition = 0;
  Status status;  // Not OK: the figures below mean nothing.
  int parent_cpu = -1;
  int peer_cpu = -1;
  LatencySummary latency;   // Round trip, each trip timed.
  uint64_t messages = 0;    // One way (round trip: trips made).
  uint64_t elapsed_ns = 0;  // One way.
  double msgs_per_s = 0;
  double gb_per_s = 0;
  uint64_t verified = 0;  // Messages the receiving side verified.
  Counters counters;      // The subject's own, parent side.
};

// The trials of one repetition: for each figure, every subject that
// supports it and passes `only` (empty: all), in catalog order.
std::vector<TrialSpec> PlanTrials(const std::vector<Figure>& figures,
                                  const std::vector<std::string>& only);

// Kills a stuck trial. A subject's Receive may block for ever if its peer
// dies (an eventfd or a message_queue never says so, a spinning consumer
// never stops), so while a trial runs this thread watches the clock and the
// peer: past the deadline, or a peer gone for more than five seconds while
// the parent still waits, it reports the trial, kills the peer, removes the
// /dev/shm names and exits the harness with status 3.
class Watchdog {
 public:
  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Called by the thread that runs trials.
  void Arm(pid_t peer, Deadline deadline, std::string what);
  void Disarm();

 private:
  void Loop();

  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool armed_ GUARDED_BY(mu_) = false;
  pid_t peer_ GUARDED_BY(mu_) = 0;
  Deadline deadline_ GUARDED_BY(mu_) = Deadline::Infinite();
  uint64_t peer_gone_since_ns_ GUARDED_BY(mu_) = 0;
  std::string what_ GUARDED_BY(mu_);
  std::thread thread_;
};

// Runs `plan` config.repetitions times, interleaved as described above.
std::vector<TrialResult> RunTrials(const RunConfig& config,
                                   const std::vector<TrialSpec>& plan,
                                   Watchdog* watchdog);

// The peer role (hidden `peer` subcommand): what the parent passed.
struct PeerArgs {
  std::string subject;
  Pattern pattern = Pattern::kRoundTrip;
  size_t size = 0;
  uint64_t seed = 0;
  int control_fd = -1;
  // A peer its subject started (Handoff::launch): the control page by path,
  // the CPU to pin itself to (-1: none) and the harness to die with.
  std::string control_path;
  int cpu = -1;
  pid_t parent_pid = 0;
  std::vector<int> fds;
  std::vector<std::string> values;
  bool stall = false;
};

// Serves one trial as the peer; the process exit status.
int RunPeerRole(const PeerArgs& args);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_RUNNER_H_
