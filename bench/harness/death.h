// Peer-death detection latency (issue 6's figure: SIGKILL of a peer to
// `peer_closed` seen on a port, target p99 <= 1 ms), next to same-run kernel
// baselines. `shmports_bench death` runs it; the peers are this binary
// re-executed in the hidden `death-peer` role.
//
// Each trial kills one freshly launched peer with SIGKILL at t0 and stamps:
//   bare      a plain sleeping peer (no io_uring, no shared memory): its
//             pidfd readable in a bare poll() on a dedicated thread — what
//             the kernel alone costs for a trivial process;
//   pidfd     a Process peer (handshake done, io thread in io_uring, rings
//             mapped), the same bare poll() on its pidfd in the same trial:
//             the kernel's exit teardown of such a process;
//   observer  the first PortStatusChanged on the parent's Process after t0
//             (on its io thread): our detection path (io_uring completion,
//             ring drain, LostConnectionToNode, port closure);
//   seen      the waiting user thread sees peer_closed on its port
//             (GetStatus, woken by the observer): the figure.
// Bare trials and Process trials alternate. Latencies are reported as
// p50/p99/max over the trials; nothing is asserted.
#ifndef SHMPORTS_BENCH_HARNESS_DEATH_H_
#define SHMPORTS_BENCH_HARNESS_DEATH_H_

#include <string>

namespace shmports::bench {

struct DeathOptions {
  std::string exe;  // This binary (/proc/self/exe resolved).
  int trials = 50;
  int peer_cpu = -1;  // Pin the peers here (< 0: not pinned).
  bool json = false;
  bool quiet = false;
};

// Runs the measurement and prints the table (or JSON). Returns the exit
// status: 0, or 1 if a trial failed (printed).
int RunDeath(const DeathOptions& options);

// The hidden peer role. `mode` "bare": write one byte to `fd` (a pipe),
// then sleep until killed. "process": accept the Process handshake on `fd`
// (a credentialed socket), send one message on the bootstrap port, then
// sleep until killed.
int RunDeathPeer(const std::string& mode, int fd);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_DEATH_H_
