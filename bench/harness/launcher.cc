#include "bench/harness/launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/harness/cleanup.h"
#include "core/base/str_format.h"

namespace shmports::bench {

PinPlan PinParent(bool enabled, const std::vector<int>& requested) {
  PinPlan plan;
  if (!enabled) {
    plan.note = "off (--no-pin)";
    return plan;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    plan.note = "off (sched_getaffinity: " + ErrnoText(errno) + ")";
    return plan;
  }
  std::vector<int> cpus;
  if (!requested.empty()) {
    for (int cpu : requested) {
      if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
        plan.note = StrFormat("off (CPU %d is not in this process's set)", cpu);
        return plan;
      }
      cpus.push_back(cpu);
    }
  } else {
    for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
      if (CPU_ISSET(cpu, &allowed))
        cpus.push_back(cpu);
    }
  }
  if (cpus.size() == 2 && cpus[0] == cpus[1]) {
    plan.note = StrFormat("off (--cpus names CPU %d twice)", cpus[0]);
    return plan;
  }
  if (cpus.size() < 2) {
    plan.note = StrFormat("off (only %d CPU allowed; both processes share it)",
                          CPU_COUNT(&allowed));
    return plan;
  }
  cpu_set_t mine;
  CPU_ZERO(&mine);
  CPU_SET(cpus[0], &mine);
  if (sched_setaffinity(0, sizeof(mine), &mine) != 0) {
    plan.note = "off (sched_setaffinity: " + ErrnoText(errno) + ")";
    return plan;
  }
  plan.pinned = true;
  plan.parent_cpu = cpus[0];
  plan.peer_cpu = cpus[1];
  plan.note = StrFormat("parent on CPU %d, peer on CPU %d", cpus[0], cpus[1]);
  return plan;
}

Result<std::unique_ptr<PeerProcess>> PeerProcess::Launch(
    const char* path,
    const std::vector<std::string>& argv,
    const std::vector<int>& inherit,
    int cpu) {
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0)
    CPU_SET(cpu, &set);
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    return ResourceExhaustedError(
        StrFormat("fork peer: %s", ErrnoText(errno).c_str()));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(111);  // The parent died before prctl.
    if (cpu >= 0 && sched_setaffinity(0, sizeof(set), &set) != 0)
      _exit(112);
    for (int fd : inherit) {
      if (fcntl(fd, F_SETFD, 0) != 0)
        _exit(113);
    }
    execv(path, args.data());
    _exit(127);
  }
  SetActivePeer(pid);
  return std::unique_ptr<PeerProcess>(new PeerProcess(pid));
}

std::unique_ptr<PeerProcess> PeerProcess::Adopt(pid_t pid) {
  SetActivePeer(pid);
  return std::unique_ptr<PeerProcess>(new PeerProcess(pid));
}

PeerProcess::~PeerProcess() {
  if (!reaped_) {
    Kill();
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    SetActivePeer(0);
  }
}

bool PeerProcess::Exited() const {
  if (reaped_)
    return true;
  siginfo_t info;
  info.si_pid = 0;
  if (waitid(P_PID, static_cast<id_t>(pid_), &info,
             WEXITED | WNOHANG | WNOWAIT) != 0) {
    return true;
  }
  return info.si_pid == pid_;
}

void PeerProcess::Kill() {
  if (!reaped_)
    kill(pid_, SIGKILL);
}

Status PeerProcess::Wait(Deadline deadline) {
  if (reaped_)
    return Status::Ok();
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_)
      break;
    if (r < 0 && errno != EINTR) {
      return InternalError(StrFormat("waitpid peer %d: %s",
                                     static_cast<int>(pid_),
                                     ErrnoText(errno).c_str()));
    }
    if (deadline.Expired()) {
      Kill();
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      SetActivePeer(0);
      return UnavailableError(StrFormat("peer %d did not exit in time; killed",
                                        static_cast<int>(pid_)));
    }
    // Not a synchronisation sleep: the peer has nothing left to tell us,
    // we only wait for the kernel to report its exit.
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, nullptr);
  }
  reaped_ = true;
  SetActivePeer(0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return Status::Ok();
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    const char* why = code == 111   ? " (parent gone before start)"
                      : code == 112 ? " (could not pin to its CPU)"
                      : code == 113 ? " (could not inherit its fds)"
                      : code == 127 ? " (exec failed)"
                                    : "";
    return InternalError(StrFormat("peer %d exited with status %d%s",
                                   static_cast<int>(pid_), code, why));
  }
  return InternalError(StrFormat("peer %d killed by signal %d (%s)",
                                 static_cast<int>(pid_), WTERMSIG(status),
                                 strsignal(WTERMSIG(status))));
}

}  // namespace shmports::bench
