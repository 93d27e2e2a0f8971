// Process-wide cleanup for the harness: POSIX shared-memory names it created
// (the Boost.Interprocess message_queue baseline lives in /dev/shm under a
// name) and the peer process of the running trial. Names are removed when
// their owner is destroyed, and also on SIGINT/SIGTERM/SIGHUP, when the
// watchdog gives up on a trial, and at start for names left by a harness
// that died (their pid no longer runs) — so no run leaves anything in
// /dev/shm, even on error.
//
// Thread-safe; the exit paths are async-signal-safe.
#ifndef SHMPORTS_BENCH_HARNESS_CLEANUP_H_
#define SHMPORTS_BENCH_HARNESS_CLEANUP_H_

#include <sys/types.h>

#include <string>

namespace shmports::bench {

// The prefix of every /dev/shm name the harness creates; the pid of the
// creating process follows it: "shmports_bench_<pid>_...".
inline constexpr char kShmNamePrefix[] = "shmports_bench_";

// Records `name` (as given to Boost, without the leading '/') for removal
// at abnormal exit. Returns false if the table is full (the caller still
// removes it on the normal path).
bool RegisterShmName(const std::string& name);
void UnregisterShmName(const std::string& name);

// shm_unlink of every registered name. Async-signal-safe.
void RemoveRegisteredShmNames();

// The peer of the running trial (0: none), killed on abnormal exit.
void SetActivePeer(pid_t pid);
// SIGKILL to the active peer, if any. Async-signal-safe.
void KillActivePeer();

// Installs handlers for SIGINT, SIGTERM and SIGHUP that kill the active
// peer, remove the registered names and then die of the same signal; and
// ignores SIGPIPE (a closed socket or pipe is reported by write()).
void InstallExitHandlers();

// Removes /dev/shm/shmports_bench_<pid>_* names whose pid is not running.
// Returns how many were removed.
int RemoveStaleShmNames();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_CLEANUP_H_
