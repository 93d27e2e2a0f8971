#include "bench/harness/runner.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <utility>

#include "bench/harness/cleanup.h"
#include "bench/harness/control_block.h"
#include "bench/harness/shared_page.h"
#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

constexpr auto kPeerStartTimeout = std::chrono::seconds(10);
constexpr auto kPeerExitTimeout = std::chrono::seconds(10);
// How long the watchdog lets the parent notice that its peer exited.
constexpr uint64_t kPeerGoneGraceNs = 5000000000ull;

// Waits until the peer publishes `want` (or kFailed, or dies). Spins first
// when `spin` (the parent has nothing else to do and the time counts),
// then sleeps on the shared futex in short slices so a dead peer is seen.
Status WaitPeerState(ControlBlock* control,
                     PeerProcess* peer,
                     PeerState want,
                     Deadline deadline,
                     bool spin) {
  const uint64_t spin_until = MonotonicNanos() + (spin ? 2000000 : 0);
  for (;;) {
    const PeerState state = LoadPeerState(control);
    if (state == want)
      return Status::Ok();
    if (state == PeerState::kFailed) {
      return UnavailableError("peer failed: " + PeerErrorText(control));
    }
    if (MonotonicNanos() < spin_until) {
      CpuRelax();
      continue;
    }
    if (peer->Exited()) {
      // It may have published just before exiting.
      if (LoadPeerState(control) == want)
        return Status::Ok();
      Status exit = peer->Wait(Deadline::In(kPeerExitTimeout));
      return UnavailableError(
          StrFormat("peer exited before reaching state %u: %s",
                    static_cast<unsigned>(want),
                    exit.ok() ? "exit status 0" : exit.ToString().c_str()));
    }
    if (deadline.Expired()) {
      return UnavailableError(StrFormat("peer did not reach state %u in time",
                                        static_cast<unsigned>(want)));
    }
    FutexWaitShared(&control->state, static_cast<uint32_t>(state),
                    10 * 1000 * 1000);
  }
}

std::vector<std::string> PeerArgv(const RunConfig& config,
                                  const TrialSpec& spec,
                                  const TrialParams& params,
                                  int control_fd,
                                  const Handoff& handoff) {
  std::vector<std::string> argv = {
      config.exe,  "peer",
      "--subject", spec.subject->info().name,
      "--pattern", PatternName(params.pattern),
      "--size",    std::to_string(params.size),
      "--seed",    std::to_string(params.seed),
  };
  if (handoff.launch) {
    // Started by the subject with no descriptor of ours: the peer reopens
    // the control page through procfs, pins itself and watches for our
    // death on its own.
    const pid_t self = getpid();
    argv.insert(
        argv.end(),
        {"--control-path",
         StrFormat("/proc/%d/fd/%d", static_cast<int>(self), control_fd),
         "--parent-pid", std::to_string(self), "--cpu",
         std::to_string(config.pin.pinned ? config.pin.peer_cpu : -1)});
  } else {
    argv.insert(argv.end(), {"--control-fd", std::to_string(control_fd)});
  }
  for (int fd : handoff.fds) {
    argv.push_back("--fd");
    argv.push_back(std::to_string(fd));
  }
  for (const std::string& v : handoff.values) {
    argv.push_back("--value");
    argv.push_back(v);
  }
  if (params.peer_stalls)
    argv.push_back("--stall");
  return argv;
}

void CloseAll(const std::vector<int>& fds) {
  std::vector<int> sorted = fds;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (int fd : sorted)
    close(fd);
}

// Arms the watchdog for one scope.
class ScopedArm {
 public:
  ScopedArm(Watchdog* watchdog, pid_t peer, Deadline deadline, std::string what)
      : watchdog_(watchdog) {
    watchdog_->Arm(peer, deadline, std::move(what));
  }
  ~ScopedArm() { watchdog_->Disarm(); }
  ScopedArm(const ScopedArm&) = delete;
  ScopedArm& operator=(const ScopedArm&) = delete;

 private:
  Watchdog* watchdog_;
};

// The measured part of a peer trial, with the peer running and ready.
Status Measure(const RunConfig& config,
               const TrialParams& params,
               ParentEndpoint* endpoint,
               ControlBlock* control,
               PeerProcess* peer,
               TrialResult* result) {
  const PayloadPattern payload(params.seed, params.size);
  const Deadline deadline =
      Deadline::In(std::chrono::nanoseconds(10 * config.duration_ns) +
                   std::chrono::seconds(20));
  if (params.pattern == Pattern::kRoundTrip) {
    SHMPORTS_ASSIGN_OR_RETURN(RoundTripOutcome out,
                              endpoint->RunRoundTrips(payload, params));
    SHMPORTS_RETURN_IF_ERROR(
        WaitPeerState(control, peer, PeerState::kDone, deadline, false));
    result->messages = out.messages;
    result->latency = Summarize(&out.samples_ns);
    if (out.reply_errors != 0) {
      return CorruptError(StrFormat("%" PRIu64 " replies failed verification",
                                    out.reply_errors));
    }
  } else {
    const uint64_t t0 = MonotonicNanos();
    SHMPORTS_ASSIGN_OR_RETURN(OneWayOutcome out,
                              endpoint->SendOneWay(payload, params));
    SHMPORTS_RETURN_IF_ERROR(
        WaitPeerState(control, peer, PeerState::kDone, deadline, true));
    result->elapsed_ns = MonotonicNanos() - t0;
    result->messages = out.messages;
  }
  result->verified = control->messages_received;
  if (control->messages_received != result->messages ||
      control->checksum_errors != 0 || control->order_errors != 0) {
    return CorruptError(StrFormat(
        "payload verification failed: sent %" PRIu64 ", peer verified %" PRIu64
        ", %" PRIu64 " bad bodies, %" PRIu64 " out of order",
        result->messages, control->messages_received, control->checksum_errors,
        control->order_errors));
  }
  return Status::Ok();
}

Status RunPeerTrial(const RunConfig& config,
                    const TrialSpec& spec,
                    const TrialParams& params,
                    Watchdog* watchdog,
                    TrialResult* result) {
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<SharedPage> page,
      SharedPage::Create("shmports-bench-control", sizeof(ControlBlock)));
  auto* control = static_cast<ControlBlock*>(page->data());
  control->magic = kControlMagic;

  Handoff handoff;
  auto endpoint_or = spec.subject->CreateParent(params, &handoff);
  if (!endpoint_or.ok()) {
    CloseAll(handoff.fds);
    return std::move(endpoint_or).TakeStatus().WithContext("set up");
  }
  std::unique_ptr<ParentEndpoint> endpoint = std::move(endpoint_or).value();

  std::vector<int> inherit = handoff.fds;
  inherit.push_back(page->fd());
  const std::vector<std::string> argv =
      PeerArgv(config, spec, params, page->fd(), handoff);
  auto peer_or = handoff.launch
                     ? handoff.launch(argv)
                     : PeerProcess::Launch("/proc/self/exe", argv, inherit,
                                           config.pin.peer_cpu);
  CloseAll(handoff.fds);
  if (!peer_or.ok())
    return std::move(peer_or).TakeStatus();
  std::unique_ptr<PeerProcess> peer = std::move(peer_or).value();

  // Armed from launch to the end of the measurement, on every path.
  const uint64_t timeout_ns = config.trial_timeout_ns != 0
                                  ? config.trial_timeout_ns
                                  : 10 * config.duration_ns + 30000000000ull;
  ScopedArm armed(watchdog, peer->pid(),
                  Deadline::In(std::chrono::nanoseconds(timeout_ns)),
                  StrFormat("%s %s %zu B", spec.subject->info().name.c_str(),
                            PatternName(spec.pattern), spec.size));
  Status measured = WaitPeerState(control, peer.get(), PeerState::kReady,
                                  Deadline::In(kPeerStartTimeout), false)
                        .WithContext("start peer");
  if (measured.ok()) {
    result->peer_cpu = control->peer_cpu;
    measured = endpoint->AfterPeerReady();
  }
  if (measured.ok()) {
    measured =
        Measure(config, params, endpoint.get(), control, peer.get(), result);
    result->counters = endpoint->GetCounters();
  }
  if (!measured.ok()) {
    if (LoadPeerState(control) == PeerState::kFailed) {
      measured.AddContext("peer: " + PeerErrorText(control));
    }
    peer->Kill();
    return measured;
  }
  return peer->Wait(Deadline::In(kPeerExitTimeout)).WithContext("peer exit");
}

TrialResult RunTrial(const RunConfig& config,
                     const TrialSpec& spec,
                     int repetition,
                     uint64_t seed,
                     Watchdog* watchdog) {
  const SubjectInfo& info = spec.subject->info();
  TrialResult result;
  result.subject = info.name;
  result.baseline = info.baseline;
  result.pattern = spec.pattern;
  result.size = spec.size;
  result.payload_bytes = spec.subject->PayloadBytes(spec.size);
  result.repetition = repetition;
  result.parent_cpu = sched_getcpu();

  TrialParams params;
  params.pattern = spec.pattern;
  params.size = result.payload_bytes;
  params.seed = seed;
  params.duration_ns = config.duration_ns;
  params.max_messages = config.max_messages;
  params.warmup_messages = config.warmup_messages;
  params.pipe_window_bytes = config.pipe_window_bytes;
  if (config.inject == "corrupt") {
    params.corrupt_at = params.warmup_messages + 10;
  } else if (config.inject == "drop") {
    params.skip_at = 10;
  } else if (config.inject == "stall") {
    params.peer_stalls = true;
  }

  if (info.local) {
    const PayloadPattern payload(seed, params.size);
    auto out = spec.subject->RunLocal(payload, params);
    if (!out.ok()) {
      result.status = std::move(out).TakeStatus();
    } else {
      result.messages = result.verified = out->messages;
      result.elapsed_ns = out->elapsed_ns;
    }
  } else {
    result.status = RunPeerTrial(config, spec, params, watchdog, &result);
  }
  if (!result.status.ok()) {
    result.status.AddContext(
        StrFormat("%s %s %zu B (repetition %d)", info.name.c_str(),
                  PatternName(spec.pattern), spec.size, repetition + 1));
  }
  if (result.elapsed_ns > 0) {
    const double seconds = static_cast<double>(result.elapsed_ns) / 1e9;
    result.msgs_per_s = static_cast<double>(result.messages) / seconds;
    result.gb_per_s =
        result.msgs_per_s * static_cast<double>(result.payload_bytes) / 1e9;
  }
  return result;
}

void PrintProgress(const TrialResult& r, int repetitions) {
  if (!r.status.ok()) {
    std::fprintf(stderr, "  [%d/%d] FAILED %s\n", r.repetition + 1, repetitions,
                 r.status.ToString().c_str());
  } else if (r.pattern == Pattern::kRoundTrip) {
    std::fprintf(stderr,
                 "  [%d/%d] %-12s round-trip %7zu B  p50 %8" PRIu64
                 " ns  p99 %8" PRIu64 " ns  (%" PRIu64 " samples)\n",
                 r.repetition + 1, repetitions, r.subject.c_str(), r.size,
                 r.latency.p50_ns, r.latency.p99_ns, r.latency.count);
  } else {
    std::fprintf(stderr,
                 "  [%d/%d] %-12s one-way    %7zu B  %12.0f msgs/s  %7.2f "
                 "GB/s\n",
                 r.repetition + 1, repetitions, r.subject.c_str(), r.size,
                 r.msgs_per_s, r.gb_per_s);
  }
}

}  // namespace

std::vector<TrialSpec> PlanTrials(const std::vector<Figure>& figures,
                                  const std::vector<std::string>& only) {
  std::vector<TrialSpec> plan;
  for (const Figure& figure : figures) {
    for (const auto& subject : AllSubjects()) {
      if (!only.empty() && std::find(only.begin(), only.end(),
                                     subject->info().name) == only.end()) {
        continue;
      }
      if (subject->Supports(figure.pattern, figure.size)) {
        plan.push_back({subject.get(), figure.pattern, figure.size});
      }
    }
  }
  return plan;
}

std::vector<TrialResult> RunTrials(const RunConfig& config,
                                   const std::vector<TrialSpec>& plan,
                                   Watchdog* watchdog) {
  std::vector<TrialResult> results;
  for (int rep = 0; rep < config.repetitions; ++rep) {
    if (config.progress) {
      std::fprintf(stderr, "repetition %d of %d\n", rep + 1,
                   config.repetitions);
    }
    for (size_t i = 0; i < plan.size(); ++i) {
      const size_t index = rep % 2 == 0 ? i : plan.size() - 1 - i;
      const uint64_t seed =
          config.seed + static_cast<uint64_t>(rep) * 1000003 + index;
      results.push_back(RunTrial(config, plan[index], rep, seed, watchdog));
      if (config.progress)
        PrintProgress(results.back(), config.repetitions);
    }
  }
  return results;
}

Watchdog::Watchdog() : thread_([this] { Loop(); }) {}

Watchdog::~Watchdog() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

void Watchdog::Arm(pid_t peer, Deadline deadline, std::string what) {
  MutexLock lock(&mu_);
  armed_ = true;
  peer_ = peer;
  deadline_ = deadline;
  peer_gone_since_ns_ = 0;
  what_ = std::move(what);
}

void Watchdog::Disarm() {
  MutexLock lock(&mu_);
  armed_ = false;
}

void Watchdog::Loop() {
  MutexLock lock(&mu_);
  while (!stop_) {
    cv_.WaitUntil(
        &mu_, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    if (!armed_)
      continue;
    const char* why = nullptr;
    if (deadline_.Expired())
      why = "trial deadline passed";
    siginfo_t info;
    info.si_pid = 0;
    if (why == nullptr &&
        waitid(P_PID, static_cast<id_t>(peer_), &info,
               WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == peer_) {
      const uint64_t now = MonotonicNanos();
      if (peer_gone_since_ns_ == 0)
        peer_gone_since_ns_ = now;
      if (now - peer_gone_since_ns_ > kPeerGoneGraceNs) {
        why = "peer exited while the parent still waits on it";
      }
    }
    if (why == nullptr)
      continue;
    std::fprintf(stderr,
                 "shmports_bench: trial %s: %s; killing peer %d, removing "
                 "/dev/shm names, exiting\n",
                 what_.c_str(), why, static_cast<int>(peer_));
    std::fflush(stderr);
    kill(peer_, SIGKILL);
    RemoveRegisteredShmNames();
    _exit(3);
  }
}

namespace {

// A peer its subject started (PeerArgs::control_path set) does for itself
// what the harness's launcher does between fork and exec.
Status PreparePeerStartedBySubject(const PeerArgs& args, int* control_fd) {
  if (args.parent_pid > 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != args.parent_pid)
      return UnavailableError("the harness died before the peer started");
  }
  if (args.cpu >= 0) {
    // Before the subject starts threads (a Process's io thread), which
    // inherit it.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(args.cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
      return InternalError(StrFormat("pin peer to CPU %d: %s", args.cpu,
                                     ErrnoText(errno).c_str()));
    }
  }
  *control_fd = open(args.control_path.c_str(), O_RDWR | O_CLOEXEC);
  if (*control_fd < 0) {
    return NotFoundError(StrFormat("open control page %s: %s",
                                   args.control_path.c_str(),
                                   ErrnoText(errno).c_str()));
  }
  return Status::Ok();
}

}  // namespace

int RunPeerRole(const PeerArgs& args) {
  int control_fd = args.control_fd;
  if (!args.control_path.empty()) {
    Status prepared = PreparePeerStartedBySubject(args, &control_fd);
    if (!prepared.ok()) {
      std::fprintf(stderr, "shmports_bench peer: %s\n",
                   prepared.ToString().c_str());
      return 1;
    }
  }
  auto page_or = SharedPage::Adopt(control_fd, sizeof(ControlBlock));
  if (!page_or.ok()) {
    std::fprintf(stderr, "shmports_bench peer: control page: %s\n",
                 page_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<SharedPage> page = std::move(page_or).value();
  auto* control = static_cast<ControlBlock*>(page->data());
  if (control->magic != kControlMagic) {
    std::fprintf(stderr, "shmports_bench peer: fd %d is not a control page\n",
                 control_fd);
    return 1;
  }
  const Subject* subject = FindSubject(args.subject);
  Status status;
  if (subject == nullptr) {
    status = NotFoundError("no subject named " + args.subject);
  } else {
    TrialParams params;
    params.pattern = args.pattern;
    params.size = args.size;
    params.seed = args.seed;
    params.peer_stalls = args.stall;
    Handoff handoff{args.fds, args.values};
    status = subject->RunPeer(params, handoff, control);
  }
  if (!status.ok()) {
    PublishPeerFailure(control,
                       std::move(status).WithContext("peer " + args.subject));
    return 1;
  }
  return 0;
}

}  // namespace shmports::bench
