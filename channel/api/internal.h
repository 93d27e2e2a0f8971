// Shared state behind the public Process and Pipe (include/shmports/).
//
// ProcessCore owns the channel::Process and outlives it: pipes keep the core
// (not the channel::Process) alive, so a Pipe used after its Process is gone
// finds `alive` false and answers kFailedPrecondition.
//
// Use guard: every call into the node runs inside a CoreUse, which counts
// itself in `in_flight` and then checks `alive` and the fork generation.
// ~Process stores alive = false and then waits for in_flight to reach 0
// before tearing the node down.
// Memory ordering: both sides use seq_cst (a store then a load of the other
// variable on each side — Dekker's pattern, which acquire/release does not
// order): either the user's increment is seen by the destroyer's load (which
// then waits), or the destroyer's store is seen by the user's load (which
// backs off).
//
// PipeState is one open end. The node finds it from a PortStatusChanged
// through the port's user data (a weak reference, so ports never keep pipe
// states alive). Readable callbacks run only on the io thread, one at a
// time; `in_callback` lets a Close from another thread wait for a call under
// way, so the callback never runs after Close returns there.
#ifndef SHMPORTS_CHANNEL_API_INTERNAL_H_
#define SHMPORTS_CHANNEL_API_INTERNAL_H_

#include <shmports/pipe.h>
#include <shmports/process.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>

#include "channel/process.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"
#include "core/ports/port.h"
#include "core/ports/port_ref.h"

namespace shmports::api_internal {

// Bumped in every child created by fork() (pthread_atfork).
uint64_t ForkGeneration();

struct PipeState;

struct ProcessCore {
  // Takes a started channel::Process: installs the observer and learns the
  // io thread's id.
  static Result<std::shared_ptr<ProcessCore>> Wrap(
      std::unique_ptr<channel::Process> process);

  bool IsIoThread() const { return std::this_thread::get_id() == io_thread_id; }
  // Runs `task` on the io thread (dropped once the io thread has stopped).
  void PostToIoThread(std::function<void()> task);

  // Waits out calls in flight, closes every registered pipe, flushes the
  // rings and says goodbye (channel::Process::Shutdown, 1 s deadline), then
  // destroys the channel::Process. Not on the io thread.
  void Shutdown();

  void Register(PipeState* state, std::weak_ptr<PipeState> weak);
  void Unregister(PipeState* state);

  // A new Pipe around a receiving port of this node.
  Pipe WrapPort(const std::shared_ptr<ProcessCore>& self,
                const ports::PortRef& port);

  void OnPortStatusChanged(const ports::PortRef& port);

  std::unique_ptr<channel::Process> process;
  std::thread::id io_thread_id;
  uint64_t fork_generation = 0;
  std::atomic<bool> alive{true};
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> send_rejections{0};

  // Credit: tests only (channel/api/testing.h) — Send ignores the
  // receive caps peers announced, so a test can play a sender that does.
  std::atomic<bool> ignore_peer_caps_for_testing{false};

  Mutex pipes_mu;
  std::unordered_map<PipeState*, std::weak_ptr<PipeState>> pipes
      GUARDED_BY(pipes_mu);
};

// See the use guard above. ok() false: the Process is gone or this is a
// forked child; status() says which.
class CoreUse {
 public:
  explicit CoreUse(ProcessCore* core);
  ~CoreUse();
  CoreUse(const CoreUse&) = delete;
  CoreUse& operator=(const CoreUse&) = delete;

  bool ok() const { return ok_; }
  Status status() const;

 private:
  ProcessCore* core_;
  bool ok_ = false;
  bool forked_ = false;
};

// Credit: the sizes of a pipe's unacknowledged messages, oldest
// first, run-length encoded — a stream of equal sizes costs one entry, so a
// long exchange far below the quota (nothing acknowledged) stays small.
// Not thread-safe (PipeState::mu).
class SizeRuns {
 public:
  size_t count() const { return count_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return count_ == 0; }
  void PushBack(size_t size);
  // Drops the oldest `n` (all if fewer).
  void PopFront(size_t n);
  // Drops the `n` smallest (all if fewer).
  void PopSmallest(size_t n);
  // Drops the newest entry of `size`; false if there is none.
  bool EraseLast(size_t size);
  void Clear();

 private:
  struct Run {
    size_t size;
    size_t count;
  };
  std::deque<Run> runs_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

struct PipeState : std::enable_shared_from_this<PipeState> {
  PipeState(std::shared_ptr<ProcessCore> c, ports::PortRef p)
      : core(std::move(c)), port(std::move(p)) {}

  // From OnPortStatusChanged, any thread.
  void Notify();
  // io thread.
  void InvokeCallback();
  // Marks the end closed; with `close_port` also closes the port.
  void Close(bool close_port);

  static Pipe MakePipe(std::shared_ptr<PipeState> state) {
    return Pipe(std::move(state));
  }
  static const std::shared_ptr<PipeState>& StateOf(const Pipe& pipe) {
    return pipe.state_;
  }
  // Drops the pipe's reference without closing its port.
  static void Forget(Pipe& pipe) { pipe.state_.reset(); }

  const std::shared_ptr<ProcessCore> core;
  const ports::PortRef port;

  Mutex mu;
  CondVar cv;
  uint64_t signals GUARDED_BY(mu) = 0;
  int waiters GUARDED_BY(mu) = 0;
  bool closed GUARDED_BY(mu) = false;
  bool in_callback GUARDED_BY(mu) = false;
  std::shared_ptr<std::function<void()>> callback GUARDED_BY(mu);

  // Credit from the peer's announced receive caps (pipe_send.cc
  // says how these are used). `quota` is the user's (SetQuota).
  PipeQuota quota GUARDED_BY(mu);
  SizeRuns unacked GUARDED_BY(mu);
  // Sends that reserved an entry in `unacked` and have not yet returned
  // from the node (raised under `mu`, lowered without it).
  std::atomic<size_t> pending_sends{0};
  // Sends the node took (bumped after SendUserMessage returned OK), and how
  // many of them have been settled as acknowledged (see Settle).
  std::atomic<uint64_t> completed_sends{0};
  uint64_t settled_sends GUARDED_BY(mu) = 0;
  // Two sends reserved concurrently: `unacked` may not be in sequence
  // order, so acknowledged entries are taken smallest first (the count can
  // then only overstate). Cleared when nothing is unacknowledged.
  bool sizes_unordered GUARDED_BY(mu) = false;
  // The node the cached cap is for (invalid: none looked up yet), and that
  // node's caps as a quota (zeros: no cap).
  ports::NodeName cap_node GUARDED_BY(mu);
  PipeQuota cap GUARDED_BY(mu);
  // The acknowledge-request interval last set on the port (0: none).
  uint64_t ack_interval GUARDED_BY(mu) = 0;
  // The port arrived inside a message: messages its previous holder left
  // unread are not known here, until a message sent from here is
  // acknowledged (which acknowledges everything before it).
  bool backlog_unknown GUARDED_BY(mu) = false;
  // A send went out with no quota at all (nothing recorded): once one
  // applies again, what those left unread is unknown as for an arrival.
  bool untracked_sends GUARDED_BY(mu) = false;
  // The other end was sent inside a message while this end stayed: until
  // the route's new end is known (the peer node changes), the lowest caps
  // of this Process and its peers apply, although the peer looks local.
  bool peer_in_transit GUARDED_BY(mu) = false;

  // Consumer token (pipe.cc says how these are used). A waiting
  // Receive sleeps on `wake_word` (a shared-form futex word, atomic_ref
  // only), with its link's ring data word when it holds that ring's token.
  // WakeSleepers bumps it and issues FUTEX_WAKE only when `sleepers` > 0
  // (seq_cst on both sides: the bump-then-load of the waker and the
  // increment-then-sleep of the waiter cannot both miss each other).
  // `lease_holders`: waiters of this pipe holding a ring's token; Close
  // waits for them to let go (the Router must outlive every lease).
  uint32_t wake_word = 0;
  std::atomic<int> sleepers{0};
  int lease_holders GUARDED_BY(mu) = 0;
  void WakeSleepers();
};

// Credit: a Pipe around a port that never left this node (a new
// pair, a bootstrap port), so nothing unknown is unacknowledged on it
// (WrapPort assumes a port that arrived inside a message).
Pipe WrapNewPort(const std::shared_ptr<ProcessCore>& core,
                 const ports::PortRef& port);
// The channel options for a public Process: the receive caps it announces
// (and its node enforces).
channel::ProcessOptions ChannelOptions(const ProcessOptions& options);

// What a call on a closed (or moved-from) Pipe answers.
Status ClosedPipeError(std::string_view what);

// The port's user data: how PortStatusChanged finds the pipe.
struct PortLink : ports::UserData {
  explicit PortLink(std::weak_ptr<PipeState> s) : state(std::move(s)) {}
  std::weak_ptr<PipeState> state;
};

}  // namespace shmports::api_internal

#endif  // SHMPORTS_CHANNEL_API_INTERNAL_H_
