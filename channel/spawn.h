// Launching child processes with a pidfd, and reading a pidfd's state.
//
// SpawnChild uses clone3(CLONE_PIDFD): the pidfd comes from the same system
// call that creates the child, so it names that child with no window for pid
// reuse (pidfd_open on a pid learned later could name a stranger). A pidfd
// polls readable once its process has exited; channel/ treats that as the
// peer's death, including during a handshake.
//
// Thread-safety: all functions may be called from any thread. SpawnChild is
// safe in a threaded program: between clone3 and execve the child performs
// only async-signal-safe system calls (no allocation, no locks).
#ifndef SHMPORTS_CHANNEL_SPAWN_H_
#define SHMPORTS_CHANNEL_SPAWN_H_

#include <sys/types.h>

#include <span>
#include <string>
#include <vector>

#include "channel/scoped_fd.h"
#include "core/base/deadline.h"
#include "core/base/status.h"

namespace shmports::channel {

// A launched child: its pid and a pidfd owned by the caller. The caller
// reaps it (WaitForExit); dropping this object closes the pidfd but leaves
// the child running (and, once it exits, a zombie until someone waits).
struct SpawnedChild {
  pid_t pid = -1;
  ScopedFd pidfd;
};

// Starts `argv[0]` (an absolute or relative path; no PATH search, which is
// not async-signal-safe) with arguments `argv` and environment `envp`.
// Descriptors listed in `fds_to_keep` are inherited under the same numbers;
// every other descriptor is closed on exec (close_range CLOEXEC in the child).
// Fails with the exec error when the program cannot be started (e.g.
// kNotFound for ENOENT), with kInvalidArgument for an empty argv or a
// descriptor to keep that is not open, and with kUnavailable where clone3 or
// CLONE_PIDFD is missing (Linux < 5.3).
Result<SpawnedChild> SpawnChild(const std::vector<std::string>& argv,
                                const std::vector<std::string>& envp,
                                std::span<const int> fds_to_keep = {});

// The current environment with `overrides` ("NAME=value") replacing or
// adding entries, for SpawnChild's envp.
std::vector<std::string> EnvironmentWith(
    const std::vector<std::string>& overrides);

// Whether the process behind `pidfd` has exited (the pidfd polls readable).
// Does not block.
Result<bool> PidfdHasExited(int pidfd);

// The pid a pidfd refers to, from /proc/self/fdinfo: -1 once the process has
// been reaped (Linux 6.9+ reports that), 0 if it lives in a pid namespace we
// cannot see.
Result<pid_t> PidOfPidfd(int pidfd);

// Waits until `child` exits, up to `deadline`, and reaps it. Returns the raw
// wait status (WIFEXITED/WEXITSTATUS apply), or kUnavailable at the deadline
// (the child keeps running and can be waited for again).
Result<int> WaitForExit(const SpawnedChild& child, Deadline deadline);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_SPAWN_H_
