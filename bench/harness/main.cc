// shmports_bench: the cross-process benchmark harness. Every cross-process
// figure of the project comes from here: subjects (the raw shm::Ring, later
// the whole stack) next to same-run baselines, interleaved and repeated,
// with ratios against the ARCHITECTURE.md targets. Run with --help.
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench/harness/catalog.h"
#include "bench/harness/cleanup.h"
#include "bench/harness/clock.h"
#include "bench/harness/death.h"
#include "bench/harness/launcher.h"
#include "bench/harness/report.h"
#include "bench/harness/runner.h"
#include "bench/harness/subject.h"

namespace shmports::bench {
namespace {

struct Options {
  bool json = false;
  std::string json_file;
  bool quick = false;
  bool list = false;
  bool quiet = false;
  bool no_pin = false;
  std::vector<int> cpus;
  std::vector<std::string> subjects;
  std::vector<size_t> sizes;
  std::vector<std::string> patterns;
  double duration_s = 0.4;
  uint64_t iterations = 5000000;
  int repetitions = 5;
  uint64_t seed = 0x5eed;
  double trial_timeout_s = 0;
  std::string inject;
  uint64_t pipe_window_bytes = 0;
  // The pipe-targets command: the user API's figures and only its targets.
  bool pipe_targets = false;
};

// What pipe-targets measures unless -s / --sizes say otherwise.
const std::vector<std::string> kPipeTargetSubjects = {
    "api-busy",    "api-default", "api-blocking", "ring-busy",
    "unix-stream", "eventfd",     "memcpy"};
const std::vector<size_t> kPipeTargetSizes = {64, 65536, 1 << 20};

std::string SelfPath() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return "";
  buf[n] = '\0';
  return buf;
}

double LoadAverage() {
  double load[1];
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

void PrintList() {
  std::printf("subjects (baselines marked *, opt-in (-s) marked +):\n");
  for (const auto& s : AllSubjects()) {
    const SubjectInfo& i = s->info();
    std::string patterns = std::string(i.round_trip ? "round-trip " : "") +
                           (i.one_way ? "one-way" : "");
    std::printf("  %c %-12s %-20s %s\n",
                i.baseline ? '*' : (i.opt_in ? '+' : ' '), i.name.c_str(),
                patterns.c_str(), i.description.c_str());
  }
  std::printf("ratios:\n");
  for (const RatioSpec& r : AllRatios()) {
    std::printf("    %-50s %s / %s\n", r.figure.c_str(), r.subject.c_str(),
                r.baseline.c_str());
  }
}

int RunMain(const Options& options, const CLI::App& app) {
  (void)app;
  if (options.list) {
    PrintList();
    return 0;
  }
  InstallExitHandlers();
  const int stale = RemoveStaleShmNames();
  if (stale > 0) {
    std::fprintf(stderr, "removed %d /dev/shm name(s) left by a dead run\n",
                 stale);
  }

  for (const std::string& name : options.subjects) {
    if (FindSubject(name) == nullptr) {
      std::fprintf(stderr, "unknown subject '%s' (see --list)\n", name.c_str());
      return 2;
    }
  }
  std::vector<Pattern> patterns;
  for (const std::string& p : options.patterns) {
    auto parsed = ParsePattern(p);
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
      return 2;
    }
    patterns.push_back(*parsed);
  }
  if (patterns.empty())
    patterns = {Pattern::kRoundTrip, Pattern::kOneWay};
  std::vector<Figure> figures;
  const std::vector<size_t>& sizes =
      options.sizes.empty() && options.pipe_targets ? kPipeTargetSizes
                                                    : options.sizes;
  if (sizes.empty()) {
    for (const Figure& f : DefaultFigures()) {
      for (Pattern p : patterns) {
        if (f.pattern == p)
          figures.push_back(f);
      }
    }
  } else {
    for (Pattern p : patterns) {
      for (size_t size : sizes)
        figures.push_back({p, size});
    }
  }

  RunConfig config;
  config.exe = SelfPath();
  if (config.exe.empty()) {
    std::fprintf(stderr, "cannot read /proc/self/exe to launch the peer\n");
    return 2;
  }
  config.duration_ns = static_cast<uint64_t>(options.duration_s * 1e9);
  config.max_messages = options.iterations;
  config.repetitions = options.repetitions;
  config.seed = options.seed;
  config.cpus_online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  struct utsname uts;
  if (uname(&uts) == 0)
    config.kernel = uts.release;
  config.load_before = LoadAverage();
  config.progress = !options.quiet;
  config.warmup_messages = options.quick ? 100 : 1000;
  config.trial_timeout_ns =
      static_cast<uint64_t>(options.trial_timeout_s * 1e9);
  config.inject = options.inject;
  config.pipe_window_bytes = options.pipe_window_bytes;
  if (options.quick) {
    config.duration_ns = 20 * 1000 * 1000;
    config.max_messages = std::min<uint64_t>(options.iterations, 20000);
    config.repetitions = 3;
  }

  std::vector<std::string> subjects = options.subjects;
  if (subjects.empty() && options.pipe_targets)
    subjects = kPipeTargetSubjects;
  if (subjects.empty()) {
    for (const auto& s : AllSubjects()) {
      if (!s->info().opt_in)
        subjects.push_back(s->info().name);
    }
  }
  const std::vector<TrialSpec> plan = PlanTrials(figures, subjects);
  if (plan.empty()) {
    std::fprintf(stderr,
                 "nothing to run: no selected subject supports the selected "
                 "patterns and sizes (see --list)\n");
    return 2;
  }

  // Before pinning: the watchdog thread keeps the process's full CPU set.
  Watchdog watchdog;
  config.pin = PinParent(!options.no_pin, options.cpus);
  TripClock::Calibrate();
  if (!options.quiet) {
    std::fprintf(stderr, "pinning: %s; %zu trials x %d repetitions\n",
                 config.pin.note.c_str(), plan.size(), config.repetitions);
  }

  const std::vector<TrialResult> results = RunTrials(config, plan, &watchdog);
  config.load_after = LoadAverage();
  std::vector<RatioResult> ratios = ComputeRatios(results, config.repetitions);
  if (options.pipe_targets) {
    // Exactly the table: the user API's targets.
    std::erase_if(ratios,
                  [](const RatioResult& r) { return r.spec->owner != "API"; });
  }
  const nlohmann::json json = ReportJson(config, results, ratios);
  if (!options.json_file.empty()) {
    std::ofstream out(options.json_file);
    out << json.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", options.json_file.c_str());
      return 2;
    }
  }
  if (options.json) {
    std::printf("%s\n", json.dump(2).c_str());
  } else {
    std::printf("%s", ReportTable(config, results, ratios).c_str());
  }
  return json["ok"].get<bool>() ? 0 : 1;
}

}  // namespace
}  // namespace shmports::bench

int main(int argc, char** argv) {
  using shmports::bench::Options;
  CLI::App app{
      "shmports_bench: cross-process figures. Subjects and same-run baselines "
      "(cache-line ping-pong, Unix stream socket, pipe, eventfd, Boost "
      "message_queue, memcpy) run interleaved and repeated; ratios are "
      "reported as min/median/max against the ARCHITECTURE.md targets."};
  Options options;
  app.add_flag("--json", options.json,
               "Print the results as JSON (nlohmann) instead of the table");
  app.add_option("--json-file", options.json_file,
                 "Also write the JSON to this file");
  app.add_flag("--quick", options.quick,
               "Few iterations (3 repetitions, 20 ms or 20000 messages per "
               "trial): a smoke run, not figures");
  app.add_flag("--list", options.list, "List subjects and ratios, run nothing");
  app.add_flag("-q,--quiet", options.quiet, "No progress lines on stderr");
  app.add_option("-s,--subjects", options.subjects,
                 "Only these subjects (comma-separated; default: all but "
                 "the opt-in ones, marked + in --list)")
      ->delimiter(',');
  app.add_option("--sizes", options.sizes,
                 "Message sizes in bytes, for every pattern (default: round "
                 "trip 64; one way 64 and 65536)")
      ->delimiter(',')
      ->check(CLI::Range(size_t{8}, size_t{64} << 20));
  app.add_option("--patterns", options.patterns,
                 "round-trip, one-way or both (default)")
      ->delimiter(',');
  app.add_option("-d,--duration", options.duration_s,
                 "Seconds per trial (a trial also stops at --iterations)")
      ->check(CLI::Range(0.001, 60.0))
      ->capture_default_str();
  app.add_option("-n,--iterations", options.iterations,
                 "Most messages per trial")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("-r,--repetitions", options.repetitions,
                 "Repetitions of the whole interleaved set (at least 3)")
      ->check(CLI::Range(3, 1000))
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Payload seed")->capture_default_str();
  app.add_flag("--no-pin", options.no_pin, "Do not pin the processes to CPUs");
  app.add_option("--cpus", options.cpus,
                 "Two CPUs: parent's and peer's (default: the first two "
                 "allowed)")
      ->delimiter(',')
      ->expected(2);

  app.add_option("--pipe-window", options.pipe_window_bytes,
                 "Pipe subjects, one way: the sender's quota in bytes of "
                 "unread messages (Pipe::SetQuota); 0: the library's default "
                 "credit")
      ->capture_default_str();
  app.add_option("--trial-timeout", options.trial_timeout_s,
                 "Watchdog limit per trial in seconds (default: ten times "
                 "the duration plus 30 s); a stuck trial ends the run with "
                 "status 3");
  // Fault injection for the harness's own tests. Hidden.
  app.add_option("--inject", options.inject,
                 "corrupt: flip a payload byte; drop: skip a sequence "
                 "number (one way); stall: the peer stops answering")
      ->check(CLI::IsMember({"corrupt", "drop", "stall"}))
      ->group("");

  // The peer role: this binary re-executed by the harness. Hidden.
  shmports::bench::PeerArgs peer;
  std::string peer_pattern;
  CLI::App* peer_cmd = app.add_subcommand("peer", "");
  peer_cmd->group("");
  peer_cmd->add_option("--subject", peer.subject)->required();
  peer_cmd->add_option("--pattern", peer_pattern)->required();
  peer_cmd->add_option("--size", peer.size)->required();
  peer_cmd->add_option("--seed", peer.seed)->required();
  peer_cmd->add_option("--control-fd", peer.control_fd);
  peer_cmd->add_option("--control-path", peer.control_path);
  peer_cmd->add_option("--cpu", peer.cpu);
  peer_cmd->add_option("--parent-pid", peer.parent_pid);
  peer_cmd->add_option("--fd", peer.fds);
  peer_cmd->add_option("--value", peer.values);
  peer_cmd->add_flag("--stall", peer.stall);

  // The user API's targets (issue 8): the Pipe subjects at 64 B, 64 KiB and
  // 1 MiB next to their baselines; the table's ratios are the targets only.
  // Every option of a normal run applies (given before or after the name).
  CLI::App* targets_cmd = app.add_subcommand(
      "pipe-targets",
      "Whole-stack Pipe figures (api-busy, api-default, api-blocking) next "
      "to ring-busy, unix-stream, eventfd and memcpy at 64 B, 64 KiB and "
      "1 MiB; prints the ARCHITECTURE.md user-API targets");
  targets_cmd->fallthrough();

  // Peer-death detection latency (issue 6), a measurement of its own.
  int death_trials = 50;
  CLI::App* death_cmd = app.add_subcommand(
      "death",
      "Peer death -> peer_closed latency through channel::Process, next to "
      "kernel baselines (SIGKILL -> pidfd readable); see death.h");
  death_cmd->add_option("--trials", death_trials, "Kills of each kind")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  // Its peer role. Hidden.
  std::string death_mode;
  int death_fd = -1;
  CLI::App* death_peer_cmd = app.add_subcommand("death-peer", "");
  death_peer_cmd->group("");
  death_peer_cmd->add_option("--mode", death_mode)->required();
  death_peer_cmd->add_option("--fd", death_fd)->required();

  CLI11_PARSE(app, argc, argv);

  if (death_peer_cmd->parsed())
    return shmports::bench::RunDeathPeer(death_mode, death_fd);
  if (death_cmd->parsed()) {
    shmports::bench::DeathOptions death;
    death.exe = shmports::bench::SelfPath();
    death.trials = death_trials;
    death.json = options.json;
    death.quiet = options.quiet;
    shmports::bench::PinPlan pin =
        shmports::bench::PinParent(!options.no_pin, options.cpus);
    death.peer_cpu = pin.pinned ? pin.peer_cpu : -1;
    if (!options.json)
      std::printf("pinning: %s\n", pin.note.c_str());
    return shmports::bench::RunDeath(death);
  }

  if (peer_cmd->parsed()) {
    auto pattern = shmports::bench::ParsePattern(peer_pattern);
    if (!pattern.ok()) {
      std::fprintf(stderr, "%s\n", pattern.status().ToString().c_str());
      return 2;
    }
    peer.pattern = *pattern;
    if (peer.control_fd < 0 && peer.control_path.empty()) {
      std::fprintf(stderr, "peer: --control-fd or --control-path needed\n");
      return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    return shmports::bench::RunPeerRole(peer);
  }
  options.pipe_targets = targets_cmd->parsed();
  return shmports::bench::RunMain(options, app);
}
