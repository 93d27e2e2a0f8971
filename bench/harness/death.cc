#include "bench/harness/death.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness/clock.h"
#include "bench/harness/launcher.h"
#include "bench/harness/stats.h"
#include "channel/process.h"
#include "channel/scoped_fd.h"
#include "channel/socket.h"
#include "core/base/log.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports::bench {
namespace {

constexpr auto kStepTimeout = std::chrono::seconds(10);

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

// A thread blocked in poll() on a pidfd, stamping when it becomes readable:
// the kernel baseline, as bare as it gets.
class PidfdStamp {
 public:
  explicit PidfdStamp(int pidfd)
      : thread_([this, pidfd] {
          struct pollfd p = {pidfd, POLLIN, 0};
          int rv;
          do {
            rv = poll(&p, 1, 10000);
          } while (rv < 0 && errno == EINTR);
          stamp_.store(rv == 1 ? MonotonicNanos() : 0,
                       std::memory_order_release);
        }) {}
  // Joins; 0 if the pidfd never became readable.
  uint64_t Take() {
    thread_.join();
    return stamp_.load(std::memory_order_acquire);
  }

 private:
  std::atomic<uint64_t> stamp_{0};
  std::thread thread_;
};

Status ReadByte(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1)
    return UnavailableError("peer not ready within 10 s");
  char c;
  if (read(fd, &c, 1) != 1)
    return PeerClosedError("peer closed its ready pipe");
  return Status::Ok();
}

struct Sample {
  uint64_t bare = 0;
  uint64_t pidfd = 0;
  uint64_t observer = 0;
  uint64_t closed = 0;
  uint64_t seen = 0;
};

Result<uint64_t> BareTrial(const DeathOptions& options) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0)
    return InternalError(StrFormat("pipe2: %s", ErrnoText(errno).c_str()));
  channel::ScopedFd read_end(pipe_fds[0]);
  channel::ScopedFd write_end(pipe_fds[1]);
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<PeerProcess> peer,
      PeerProcess::Launch("/proc/self/exe",
                          {options.exe, "death-peer", "--mode", "bare", "--fd",
                           std::to_string(write_end.get())},
                          {write_end.get()}, options.peer_cpu));
  write_end.Reset();
  SHMPORTS_RETURN_IF_ERROR(ReadByte(read_end.get()));
  channel::ScopedFd pidfd(PidfdOpen(peer->pid()));
  if (!pidfd.valid())
    return InternalError(StrFormat("pidfd_open: %s", ErrnoText(errno).c_str()));
  PidfdStamp stamp(pidfd.get());
  // Let the stamping thread reach poll() before the kill.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const uint64_t t0 = MonotonicNanos();
  kill(peer->pid(), SIGKILL);
  const uint64_t t1 = stamp.Take();
  (void)peer->Wait(Deadline::In(kStepTimeout));
  if (t1 == 0)
    return UnavailableError("bare peer's pidfd never became readable");
  return t1 - t0;
}

// Woken by every port status change; stamps the first one after `armed`.
struct ObserverState {
  void Notify(bool closed) {
    const uint64_t now = MonotonicNanos();
    uint64_t expected = 0;
    if (armed.load(std::memory_order_acquire)) {
      first_after_arm.compare_exchange_strong(expected, now);
      expected = 0;
      if (closed)
        first_closed.compare_exchange_strong(expected, now);
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      ++generation;
    }
    cv.notify_all();
  }
  std::atomic<bool> armed{false};
  std::atomic<uint64_t> first_after_arm{0};
  std::atomic<uint64_t> first_closed{0};  // First call seeing peer_closed.
  std::mutex mu;
  std::condition_variable cv;
  uint64_t generation = 0;
};

Result<Sample> ProcessTrial(const DeathOptions& options) {
  SHMPORTS_ASSIGN_OR_RETURN(std::unique_ptr<channel::Process> process,
                            channel::Process::Create());
  auto state = std::make_shared<ObserverState>();
  // The observer looks at the port itself (allowed: it runs with no
  // shmports lock held), to stamp when the io thread has closed it.
  ports::Node* node_ptr = &process->node();
  process->SetPortStatusObserver(
      [state, node_ptr](const ports::PortRef& changed) {
        ports::PortStatus status;
        bool closed = state->armed.load(std::memory_order_acquire) &&
                      node_ptr->GetStatus(changed, &status) == ports::OK &&
                      status.peer_closed;
        state->Notify(closed);
      });
  SHMPORTS_ASSIGN_OR_RETURN(channel::SocketPair pair,
                            channel::CreateCredentialedSocketPair());
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<PeerProcess> peer,
      PeerProcess::Launch("/proc/self/exe",
                          {options.exe, "death-peer", "--mode", "process",
                           "--fd", std::to_string(pair.second.get())},
                          {pair.second.get()}, options.peer_cpu));
  pair.second.Reset();
  SHMPORTS_ASSIGN_OR_RETURN(channel::ConnectedPeer connected,
                            process->Connect(std::move(pair.first)));
  ports::Node& node = process->node();
  const ports::PortRef& port = connected.bootstrap_port;
  // The peer's "ready" message: both io threads are up and serving.
  const Deadline ready_by = Deadline::In(kStepTimeout);
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      seen = state->generation;
    }
    std::unique_ptr<ports::UserMessageEvent> message;
    int rv = node.GetMessage(port, &message, nullptr);
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "waiting for the peer's ready message");
    if (message)
      break;
    if (ready_by.Expired())
      return UnavailableError("no ready message from the Process peer");
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait_for(lock, std::chrono::milliseconds(50),
                       [&] { return state->generation != seen; });
  }
  channel::ScopedFd pidfd(PidfdOpen(peer->pid()));
  if (!pidfd.valid())
    return InternalError(StrFormat("pidfd_open: %s", ErrnoText(errno).c_str()));
  PidfdStamp stamp(pidfd.get());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  state->armed.store(true, std::memory_order_release);
  const uint64_t t0 = MonotonicNanos();
  kill(peer->pid(), SIGKILL);
  // The figure: this thread, asleep on the observer as an application
  // would be, sees peer_closed.
  uint64_t t_seen = 0;
  const Deadline closed_by = Deadline::In(kStepTimeout);
  while (t_seen == 0) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      seen = state->generation;
    }
    ports::PortStatus status;
    int rv = node.GetStatus(port, &status);
    if (rv != ports::OK || status.peer_closed) {
      t_seen = MonotonicNanos();
      break;
    }
    if (closed_by.Expired())
      return UnavailableError("peer_closed not seen within 10 s of SIGKILL");
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait_for(lock, std::chrono::milliseconds(50),
                       [&] { return state->generation != seen; });
  }
  const uint64_t t_pidfd = stamp.Take();
  (void)peer->Wait(Deadline::In(kStepTimeout));
  node.ClosePort(port);
  Sample s;
  s.pidfd = t_pidfd != 0 ? t_pidfd - t0 : 0;
  const uint64_t t_obs = state->first_after_arm.load(std::memory_order_acquire);
  s.observer = t_obs != 0 ? t_obs - t0 : 0;
  const uint64_t t_closed = state->first_closed.load(std::memory_order_acquire);
  s.closed = t_closed != 0 ? t_closed - t0 : 0;
  s.seen = t_seen - t0;
  return s;
}

nlohmann::json SummaryJson(const LatencySummary& s) {
  return {{"count", s.count},   {"p50_ns", s.p50_ns}, {"p99_ns", s.p99_ns},
          {"max_ns", s.max_ns}, {"min_ns", s.min_ns}, {"mean_ns", s.mean_ns}};
}

}  // namespace

int RunDeath(const DeathOptions& options) {
  if (options.quiet) {
    SetLogSink([](LogSeverity severity, std::string_view line) {
      if (severity == LogSeverity::kError)
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()),
                     line.data());
    });
  }
  std::vector<uint64_t> bare, pidfd, observer, closed, seen;
  std::vector<std::string> failures;
  for (int i = 0; i < options.trials; ++i) {
    auto b = BareTrial(options);
    if (b.ok()) {
      bare.push_back(*b);
    } else {
      failures.push_back("bare: " + b.status().ToString());
    }
    auto p = ProcessTrial(options);
    if (p.ok()) {
      pidfd.push_back(p->pidfd);
      observer.push_back(p->observer);
      closed.push_back(p->closed);
      seen.push_back(p->seen);
    } else {
      failures.push_back("process: " + p.status().ToString());
    }
    if (!options.quiet && (i + 1) % 10 == 0)
      std::fprintf(stderr, "death: %d/%d trials\n", i + 1, options.trials);
  }
  struct Row {
    const char* name;
    const char* what;
    std::vector<uint64_t>* samples;
  };
  Row rows[] = {
      {"bare", "plain peer: SIGKILL -> pidfd readable (bare poll)", &bare},
      {"pidfd", "Process peer: SIGKILL -> pidfd readable (bare poll)", &pidfd},
      {"observer", "Process peer: SIGKILL -> first PortStatusChanged",
       &observer},
      {"closed",
       "Process peer: SIGKILL -> observer sees peer_closed (io thread)",
       &closed},
      {"seen", "Process peer: SIGKILL -> peer_closed seen by a waiting thread",
       &seen},
  };
  nlohmann::json json;
  json["trials"] = options.trials;
  json["failures"] = failures;
  if (!options.json) {
    std::printf(
        "peer death -> detection (us; %d trials each, bare and Process "
        "trials alternating; target: seen p99 <= 1000 us)\n",
        options.trials);
    std::printf("  %-9s %9s %9s %9s %9s  %s\n", "figure", "p50", "p99", "max",
                "samples", "what");
  }
  for (Row& row : rows) {
    LatencySummary s = Summarize(row.samples);
    json["figures"][row.name] = SummaryJson(s);
    json["figures"][row.name]["what"] = row.what;
    if (!options.json) {
      std::printf("  %-9s %9.1f %9.1f %9.1f %9llu  %s\n", row.name,
                  s.p50_ns / 1e3, s.p99_ns / 1e3, s.max_ns / 1e3,
                  static_cast<unsigned long long>(s.count), row.what);
    }
  }
  if (options.json) {
    std::printf("%s\n", json.dump(2).c_str());
  } else {
    for (const std::string& f : failures)
      std::printf("FAILED: %s\n", f.c_str());
  }
  return failures.empty() ? 0 : 1;
}

int RunDeathPeer(const std::string& mode, int fd) {
  if (mode == "bare") {
    char c = 'r';
    if (write(fd, &c, 1) != 1)
      return 1;
    for (;;)
      pause();
  }
  if (mode != "process")
    return 2;
  auto accepted = channel::Process::AcceptConnection(channel::ScopedFd(fd));
  if (!accepted.ok()) {
    std::fprintf(stderr, "death peer: %s\n",
                 accepted.status().ToString().c_str());
    return 1;
  }
  auto event = std::make_unique<ports::UserMessageEvent>();
  event->message().Assign(std::string_view("ready"));
  int rv = accepted->process->node().SendUserMessage(
      accepted->peer.bootstrap_port, std::move(event));
  if (rv != ports::OK)
    return 1;
  for (;;)
    pause();
}

}  // namespace shmports::bench
