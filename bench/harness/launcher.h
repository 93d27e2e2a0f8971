// Launching the peer process and pinning both processes to CPUs.
//
// The peer is this same binary re-executed (fork + execv of /proc/self/exe)
// in the hidden `peer` role, so it runs exactly the code the parent runs.
// Between fork and exec the child only makes async-signal-safe calls: it
// asks to be killed when the parent dies (PR_SET_PDEATHSIG), pins itself,
// and clears close-on-exec on the fds meant for it — so no other fd of the
// parent (another trial's, or the parent's own ends) leaks into it.
#ifndef SHMPORTS_BENCH_HARNESS_LAUNCHER_H_
#define SHMPORTS_BENCH_HARNESS_LAUNCHER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "core/base/deadline.h"
#include "core/base/status.h"

namespace shmports::bench {

// Where the two processes run. The harness pins the parent's main thread
// to `parent_cpu` and each peer to `peer_cpu` when the process may use at
// least two CPUs (or the two asked for); else nothing is pinned and `note`
// says why.
struct PinPlan {
  bool pinned = false;
  int parent_cpu = -1;
  int peer_cpu = -1;
  std::string note;  // "parent on CPU 0, peer on CPU 1" or why not.
};

// Decides the plan and pins the calling thread. `requested` is empty (pick
// the first two allowed CPUs) or two CPU numbers.
PinPlan PinParent(bool enabled, const std::vector<int>& requested);

// The running peer. Owns the child: destroying a PeerProcess that has not
// been waited for kills (SIGKILL) and reaps it. One thread uses it.
class PeerProcess {
 public:
  // Forks and executes `path` with `argv`. `inherit` are the fds the peer
  // gets (same numbers); `cpu` < 0 leaves it unpinned. The harness passes
  // "/proc/self/exe" so the peer is this very binary even if a rebuild has
  // replaced the file since the run started.
  static Result<std::unique_ptr<PeerProcess>> Launch(
      const char* path,
      const std::vector<std::string>& argv,
      const std::vector<int>& inherit,
      int cpu);

  // Takes over a child this process started some other way (a subject's
  // own launcher): the same kill, wait and reap as a launched one.
  static std::unique_ptr<PeerProcess> Adopt(pid_t pid);

  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  ~PeerProcess();

  pid_t pid() const { return pid_; }

  // Whether the peer has exited (does not reap it).
  bool Exited() const;

  // Reaps the peer, waiting until `deadline`; OK if it exited with status
  // 0, else an error naming the exit status or signal. On timeout the peer
  // is killed.
  Status Wait(Deadline deadline);

  void Kill();

 private:
  explicit PeerProcess(pid_t pid) : pid_(pid) {}

  pid_t pid_;
  bool reaped_ = false;
};

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_LAUNCHER_H_
