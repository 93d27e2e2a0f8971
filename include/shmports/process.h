// Process: this program's membership in a shmports system — one node with
// its io thread. Pipes are created on it, and children are launched from it
// (invitation.h).
//
// An ordinary object: several may live in one OS process (each with its own
// node and io thread); each Pipe belongs to the Process that made or
// received it.
//
// Threads: every method may be called from any thread. Readable callbacks of
// its pipes run on its io thread.
//
// Lifetime and fork: destroying the Process closes its pipes (their peers
// see peer_closed) and stops the io thread; the pipes then answer
// kFailedPrecondition. Destroying it from one of its own callbacks is
// deferred to another thread. In a child created by fork() the parent's
// Process answers kFailedPrecondition everywhere and its destructor only
// releases memory (the io thread does not exist there); create a new Process
// in the child.
#ifndef SHMPORTS_PROCESS_H_
#define SHMPORTS_PROCESS_H_

#include <shmports/pipe.h>
#include <shmports/status.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace shmports {

namespace api_internal {
struct ProcessCore;
}  // namespace api_internal

// How a Process is made.
struct ProcessOptions {
  // Receive caps: what one pipe's sender in another process may leave
  // unread here (received, not yet read), per pipe. Announced to each peer
  // when it connects; the peer's Pipe::Send stays within them by default
  // (PipeQuota), and a peer that exceeds them is cut off as violating
  // (ProcessStats::peers_dropped_for_caps). 0 = unlimited. One message is
  // always accepted however large; the byte cap applies while more than one
  // message is queued.
  uint64_t max_queued_messages_per_pipe = uint64_t{1} << 16;
  uint64_t max_queued_bytes_per_pipe = uint64_t{64} << 20;
};

// Counters of one Process (a snapshot).
struct ProcessStats {
  std::string node_name;
  size_t connected_peers = 0;
  size_t open_ports = 0;       // Including ports inside unread messages.
  uint64_t messages_sent = 0;  // Through rings, all peers.
  uint64_t bytes_sent = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
  uint64_t peer_deaths = 0;
  uint64_t peers_dropped = 0;    // For a protocol violation.
  uint64_t send_rejections = 0;  // Send refused: too large, credit, etc.
  // Of peers_dropped: for sending past our receive caps (ProcessOptions).
  uint64_t peers_dropped_for_caps = 0;
};

class Process {
 public:
  static Result<std::unique_ptr<Process>> Create(
      const ProcessOptions& options = {});

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Two connected ends, both on this Process.
  Result<std::pair<Pipe, Pipe>> CreatePipe();

  Result<ProcessStats> GetStats();

  // For the implementation (channel/api/).
  const std::shared_ptr<api_internal::ProcessCore>& core() const {
    return core_;
  }
  explicit Process(std::shared_ptr<api_internal::ProcessCore> core);

 private:
  std::shared_ptr<api_internal::ProcessCore> core_;
};

}  // namespace shmports

#endif  // SHMPORTS_PROCESS_H_
