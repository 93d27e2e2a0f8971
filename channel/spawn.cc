#include "channel/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/base/linux_compat.h"
#include "core/base/str_format.h"

extern char** environ;

namespace shmports::channel {
namespace {

// struct clone_args, version 0 (64 bytes, Linux 5.3). Spelled out here:
// <linux/sched.h> would redefine the CLONE_* macros of <sched.h>.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
};
static_assert(sizeof(CloneArgs) == 64, "CLONE_ARGS_SIZE_VER0");

StatusCode CodeForExecErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return StatusCode::kNotFound;
    case EACCES:
    case ENOEXEC:
    case EINVAL:
    case ELOOP:
    case ENAMETOOLONG:
      return StatusCode::kInvalidArgument;
    case E2BIG:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return StatusCode::kResourceExhausted;
    default:
      return StatusCode::kInternal;
  }
}

// Runs in the child between clone3 and execve: async-signal-safe calls only
// (the parent may have had other threads holding malloc or stdio locks).
[[noreturn]] void ExecChild(const char* path,
                            char* const* argv,
                            char* const* envp,
                            std::span<const int> fds_to_keep,
                            int error_fd) {
  // Handlers installed by the parent must not run in this half-made child;
  // execve would reset them anyway. Ignored signals stay ignored, as exec
  // keeps them.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP)
      continue;
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) != 0)
      continue;
    if (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN)
      continue;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  int err = 0;
  if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0)
    err = errno;
  for (int fd : fds_to_keep) {
    if (err == 0 && fcntl(fd, F_SETFD, 0) != 0)
      err = errno;
  }
  if (err == 0) {
    execve(path, argv, envp);
    err = errno;
  }
  ssize_t n;
  do {
    n = write(error_fd, &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<SpawnedChild> SpawnChild(const std::vector<std::string>& argv,
                                const std::vector<std::string>& envp,
                                std::span<const int> fds_to_keep) {
  if (argv.empty() || argv[0].empty()) {
    return InvalidArgumentError("spawn: empty argv (argv[0] is the program)");
  }
  for (int fd : fds_to_keep) {
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
      return InvalidArgumentError(StrFormat(
          "spawn %s: descriptor %d to keep is not open", argv[0].c_str(), fd));
    }
  }
  // Everything the child touches is built here, before clone3.
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_envp = CStrings(envp);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return InternalError(StrFormat("spawn %s: pipe2: %s", argv[0].c_str(),
                                   ErrnoText(errno).c_str()));
  }
  ScopedFd error_read(pipe_fds[0]);
  ScopedFd error_write(pipe_fds[1]);

  // Block signals across clone3 so no parent handler runs in the child
  // before ExecChild has reset the handlers.
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);

  int pidfd = -1;
  CloneArgs args;
  memset(&args, 0, sizeof(args));
  args.flags = linux_compat::kClonePidfd;
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = syscall(linux_compat::kSysClone3, &args, sizeof(args));
  if (pid == 0) {
    ExecChild(c_argv[0], c_argv.data(), c_envp.data(), fds_to_keep,
              error_write.get());
  }
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) {
    if (clone_errno == ENOSYS || clone_errno == EINVAL) {
      return UnavailableError(StrFormat(
          "spawn %s: clone3 with CLONE_PIDFD failed: %s (needs Linux 5.3)",
          argv[0].c_str(), ErrnoText(clone_errno).c_str()));
    }
    return ResourceExhaustedError(StrFormat("spawn %s: clone3: %s",
                                            argv[0].c_str(),
                                            ErrnoText(clone_errno).c_str()));
  }
  SpawnedChild child;
  child.pid = static_cast<pid_t>(pid);
  child.pidfd.Reset(pidfd);
  error_write.Reset();

  // EOF: execve succeeded (the pipe closed on exec). Otherwise the child
  // sends errno and exits 127.
  int exec_errno = 0;
  ssize_t n;
  do {
    n = read(error_read.get(), &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  if (n == 0)
    return child;
  if (n != static_cast<ssize_t>(sizeof(exec_errno)))
    exec_errno = EIO;
  int wstatus;
  while (waitpid(child.pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  return Status(CodeForExecErrno(exec_errno),
                StrFormat("spawn %s: exec failed: %s", argv[0].c_str(),
                          ErrnoText(exec_errno).c_str()));
}

std::vector<std::string> EnvironmentWith(
    const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& o : overrides) {
      if (o.substr(0, o.find('=')) == name)
        replaced = true;
    }
    if (!replaced)
      env.push_back(std::move(entry));
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

Result<bool> PidfdHasExited(int pidfd) {
  struct pollfd p = {pidfd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return InternalError(
        StrFormat("poll pidfd %d: %s", pidfd, ErrnoText(errno).c_str()));
  }
  if (p.revents & POLLNVAL) {
    return InvalidArgumentError(StrFormat("pidfd %d is not open", pidfd));
  }
  return n > 0;
}

Result<pid_t> PidOfPidfd(int pidfd) {
  std::string path = StrFormat("/proc/self/fdinfo/%d", pidfd);
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return InvalidArgumentError(
        StrFormat("read %s: %s", path.c_str(), ErrnoText(errno).c_str()));
  }
  char buf[1024];
  ssize_t n = read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0)
    return InternalError(StrFormat("read %s: empty", path.c_str()));
  buf[n] = '\0';
  const char* line = strstr(buf, "\nPid:");
  if (line == nullptr) {
    return InvalidArgumentError(
        StrFormat("fd %d is not a pidfd (no Pid: in %s)", pidfd, path.c_str()));
  }
  return static_cast<pid_t>(strtol(line + 5, nullptr, 10));
}

Result<int> WaitForExit(const SpawnedChild& child, Deadline deadline) {
  for (;;) {
    int wstatus = 0;
    pid_t r = waitpid(child.pid, &wstatus, WNOHANG);
    if (r == child.pid)
      return wstatus;
    if (r < 0 && errno != EINTR) {
      return InternalError(
          StrFormat("waitpid %d: %s", child.pid, ErrnoText(errno).c_str()));
    }
    if (r < 0)
      continue;
    if (deadline.Expired()) {
      return UnavailableError(
          StrFormat("child %d still running at the deadline", child.pid));
    }
    // The pidfd turns readable at exit: sleep on it, not on a timer.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline.Remaining());
    int timeout_ms = deadline.is_infinite() ? -1
                     : left.count() > 1000  ? 1000
                                           : static_cast<int>(left.count()) + 1;
    struct pollfd p = {child.pidfd.get(), POLLIN, 0};
    poll(&p, 1, timeout_ms);
  }
}

}  // namespace shmports::channel
