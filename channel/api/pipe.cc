// The public Pipe (include/shmports/pipe.h) on a ports::Node port.
//
// Receiving: the io thread drains the rings and feeds the Node; a
// PortStatusChanged bumps the pipe's `signals` and `wake_word` and wakes its
// waiters (and posts the readable callback).
//
// Consumer token (ARCHITECTURE.md; mechanism and memory ordering in
// channel/router.h): a waiting Receive whose port's peer lives in another
// node (PortStatus::peer_node_name) takes the consumer token of that node's
// inbound ring (Router::TryTakeInbound) and drains the ring itself, so the
// message does not hop through the io thread:
//   - kBusyPoll, and kDefault's spin phase: poll the ring (Drain) and the
//     port; no syscall, and the producer, seeing no sleeper announced, makes
//     none either;
//   - kBlocking, and kDefault after its spin: sleep in futex_waitv on the
//     ring's data word, this pipe's wake word and the link's reclaim word.
//     The producer's FUTEX_WAKE (INT_MAX, unchanged on-ring protocol) on the
//     data word reaches this thread directly; chosen over cancelling the io
//     thread's armed wait, which would cost a Post on every take.
// Frames for other ports are handed to the Node as usual (their waiters are
// notified). Without the token (a local peer, the io thread or another
// waiter holds it, no futex_waitv) the waiter sleeps on the wake word alone
// and the io thread (or the other holder) delivers. The lease is released
// before Receive returns (draining what arrived meanwhile, announcing sleep
// for the io thread), when the io thread reclaims the ring (a death, a
// drop), and before Close returns (Close waits for it: the Router must
// outlive every lease, and ProcessCore::Shutdown closes every pipe before
// destroying the channel::Process). Nothing of this changes the public API.
#include <shmports/pipe.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <optional>
#include <utility>

#include "channel/api/internal.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"
#include "shm/futex.h"

namespace shmports {
namespace api_internal {

void PipeState::Notify() {
  std::shared_ptr<std::function<void()>> cb;
  {
    MutexLock lock(&mu);
    ++signals;
    if (waiters > 0)
      cv.SignalAll();
    if (!closed)
      cb = callback;
  }
  // Outside `mu`: no lock across the FUTEX_WAKE on the hot path.
  WakeSleepers();
  if (!cb)
    return;
  if (core->IsIoThread()) {
    InvokeCallback();
    return;
  }
  // A status change caused by another thread (a local pair): the callback
  // still runs on the io thread.
  std::weak_ptr<PipeState> weak = weak_from_this();
  core->PostToIoThread([weak] {
    if (auto state = weak.lock())
      state->InvokeCallback();
  });
}

void PipeState::InvokeCallback() {
  std::shared_ptr<std::function<void()>> cb;
  {
    MutexLock lock(&mu);
    if (closed || !callback || in_callback)
      return;
    cb = callback;
    in_callback = true;
  }
  // Holding `cb` keeps the function alive if the callback closes its pipe
  // or replaces itself.
  (*cb)();
  MutexLock lock(&mu);
  in_callback = false;
  cv.SignalAll();
}

void PipeState::Close(bool close_port) {
  std::shared_ptr<std::function<void()>> old_callback;
  {
    MutexLock lock(&mu);
    if (closed)
      return;
    closed = true;
    old_callback = std::move(callback);
    cv.SignalAll();
    WakeSleepers();
    if (!core->IsIoThread()) {
      while (in_callback)
        cv.Wait(&mu);
    }
    // A waiter holding a ring's token lets go promptly once woken (it never
    // waits for the io thread meanwhile, so this may run there too).
    while (lease_holders > 0)
      cv.Wait(&mu);
  }
  core->Unregister(this);
  if (close_port) {
    CoreUse use(core.get());
    if (use.ok())
      (void)core->process->node().ClosePort(port);
  }
}

void PipeState::WakeSleepers() {
  std::atomic_ref<uint32_t>(wake_word).fetch_add(1);  // seq_cst: see .h
  if (sleepers.load() > 0)
    shm::FutexWake(&wake_word, INT_MAX);
}

Status ClosedPipeError(std::string_view what) {
  return FailedPreconditionError(StrFormat(
      "%.*s: the pipe is closed", static_cast<int>(what.size()), what.data()));
}

}  // namespace api_internal

namespace {

using api_internal::ClosedPipeError;
using api_internal::CoreUse;
using api_internal::PipeState;

}  // namespace

Pipe::Pipe() = default;
Pipe::Pipe(std::shared_ptr<api_internal::PipeState> state)
    : state_(std::move(state)) {}
Pipe::Pipe(Pipe&& other) noexcept = default;
Pipe& Pipe::operator=(Pipe&& other) noexcept {
  if (this != &other) {
    Close();
    state_ = std::move(other.state_);
  }
  return *this;
}
Pipe::~Pipe() {
  Close();
}

void Pipe::Close() {
  if (!state_)
    return;
  // In a forked child the parent's node is not ours to touch: just drop.
  if (state_->core->fork_generation == api_internal::ForkGeneration())
    state_->Close(/*close_port=*/true);
  state_.reset();
}

namespace {

// One look at the port, for Receive() and the waiting loop: the message or
// an error, or nullopt when nothing is queued — no Status is built then, so
// a spinning waiter's empty poll allocates nothing.
std::optional<Result<PipeMessage>> PollPort(PipeState& state) {
  const std::shared_ptr<api_internal::ProcessCore>& core = state.core;
  CoreUse use(core.get());
  if (!use.ok())
    return use.status().WithContext("receive");
  std::unique_ptr<ports::UserMessageEvent> event;
  int rv = core->process->node().GetMessage(state.port, &event, nullptr);
  if (rv == ports::ERROR_PORT_PEER_CLOSED)
    return PeerClosedError("receive: the other end of the pipe is closed");
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "receive");
  if (!event)
    return std::nullopt;
  PipeMessage out;
  // The event is ours: a large payload's block (for a fragmented message,
  // the one the fragments were reassembled in) becomes the user's bytes.
  out.bytes = event->message().TakeBytes();
  out.pipes.reserve(event->num_ports());
  for (size_t i = 0; i < event->num_ports(); ++i) {
    ports::PortRef ref;
    if (core->process->node().GetPort(event->ports()[i], &ref) == ports::OK)
      out.pipes.push_back(core->WrapPort(core, ref));
  }
  return Result<PipeMessage>(std::move(out));
}

}  // namespace

Result<PipeMessage> Pipe::Receive() {
  if (!state_)
    return ClosedPipeError("receive");
  std::optional<Result<PipeMessage>> r = PollPort(*state_);
  if (!r)
    return UnavailableError("receive: no message queued");
  return std::move(*r);
}

Result<PipeMessage> Pipe::Receive(std::chrono::nanoseconds timeout,
                                  WaitMode mode) {
  return Receive(Deadline::In(timeout).when(), mode);
}

namespace {

// SHMPORTS_CONSUMER_TOKEN=0 in the environment turns the token off (waiters
// then always wait for the io thread): for measuring it against the io
// thread's hop in one build, and for ruling it out when chasing a bug.
bool TokenEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("SHMPORTS_CONSUMER_TOKEN");
    return (env == nullptr || std::string_view(env) != "0") &&
           shm::FutexWaitvSupported();
  }();
  return enabled;
}

// A waiting Receive's hold on the consumer token of the ring its messages
// arrive on (see the top of this file). One thread.
class TokenWait {
 public:
  explicit TokenWait(PipeState* state) : state_(state) {}
  ~TokenWait() { Release(); }
  TokenWait(const TokenWait&) = delete;
  TokenWait& operator=(const TokenWait&) = delete;

  // Takes the token if it may (inside a CoreUse). Once per call to Receive
  // and before each sleep; not again after the io thread reclaimed it.
  void MaybeTake() {
    if (lease_ || gave_up_ || !TokenEnabled())
      return;
    channel::Process& process = *state_->core->process;
    ports::PortStatus status;
    if (process.node().GetStatus(state_->port, &status) != ports::OK ||
        !status.peer_remote) {
      return;
    }
    {
      MutexLock lock(&state_->mu);
      if (state_->closed)
        return;
      ++state_->lease_holders;
    }
    // The ring this port's messages arrive on: its peer's node's.
    if (!process.router().TryTakeInbound(status.peer_node_name, &lease_)) {
      // Held by the io thread or another waiter: they deliver.
      gave_up_ = true;
      Unregister();
    }
  }

  // Inside a CoreUse: drains what the ring holds, to the Node.
  void Drain() {
    if (!lease_)
      return;
    if (lease_->reclaim_requested()) {
      Release();
      return;
    }
    lease_->Drain();
  }

  // Sleeps until something may have changed for this pipe: its wake word
  // moved from `seen`, or (holding the token) the ring's producer woke us or
  // the io thread wants the ring back, or `deadline`. No CoreUse held.
  void Sleep(uint32_t seen, const Deadline& deadline) {
    state_->sleepers.fetch_add(1);  // seq_cst: see internal.h.
    if (lease_) {
      uint32_t* reclaim = lease_->reclaim_word();
      const uint32_t reclaim_seen =
          std::atomic_ref<uint32_t>(*reclaim).load(std::memory_order_acquire);
      uint32_t data_seen;
      if (lease_->PrepareSleep(&data_seen)) {
        const shm::FutexWaitvEntry entries[3] = {
            {lease_->data_word(), data_seen},
            {&state_->wake_word, seen},
            {reclaim, reclaim_seen},
        };
        (void)shm::FutexWaitv(entries, 3, deadline);
      }
    } else {
      (void)shm::FutexWait(&state_->wake_word, seen, deadline);
    }
    state_->sleepers.fetch_sub(1);
  }

  // Releases the token (draining what came meanwhile, when the Node may be
  // used). Safe to call twice.
  void Release() {
    if (!lease_)
      return;
    {
      CoreUse use(state_->core.get());
      if (use.ok())
        lease_.reset();
      else
        lease_->ReleaseWithoutDrain();
    }
    lease_.reset();
    gave_up_ = true;
    Unregister();
  }

 private:
  void Unregister() {
    MutexLock lock(&state_->mu);
    if (--state_->lease_holders == 0)
      state_->cv.SignalAll();
  }

  PipeState* const state_;
  std::optional<channel::Router::InboundLease> lease_;
  bool gave_up_ = false;
};

}  // namespace

Result<PipeMessage> Pipe::Receive(std::chrono::steady_clock::time_point when,
                                  WaitMode mode) {
  if (!state_)
    return ClosedPipeError("receive");
  PipeState* state = state_.get();
  if (state->core->IsIoThread()) {
    return FailedPreconditionError(
        "receive with a deadline waits, and may not run on the io thread "
        "(inside a readable callback); use Receive() there");
  }
  using Clock = std::chrono::steady_clock;
  const Deadline deadline = Deadline::At(when);
  // While spinning the clock is read on the first empty poll and then every
  // kPollsPerClockRead-th (a poll is well under 0.5 µs, so a deadline or the
  // spin budget is overrun by a few µs at most); before every sleep it is
  // read as before.
  constexpr uint32_t kPollsPerClockRead = 8;
  bool spinning = mode != WaitMode::kBlocking;
  const Clock::time_point spin_until = mode == WaitMode::kDefault
                                           ? Clock::now() + kSpinBudget
                                           : Clock::time_point::max();
  uint32_t empty_polls = 0;
  TokenWait token(state);
  bool try_take = true;
  for (;;) {
    // Loaded before the port is polled: a message queued after the poll
    // moves the word, and the sleep below returns at once.
    const uint32_t seen = std::atomic_ref<uint32_t>(state->wake_word)
                              .load(std::memory_order_acquire);
    {
      MutexLock lock(&state->mu);
      if (state->closed)
        return ClosedPipeError("receive");
    }
    {
      CoreUse use(state->core.get());
      if (!use.ok()) {
        token.Release();
        return use.status().WithContext("receive");
      }
      if (try_take) {
        token.MaybeTake();
        try_take = false;
      }
      token.Drain();
    }
    std::optional<Result<PipeMessage>> r = PollPort(*state);
    if (r)
      return std::move(*r);
    if (spinning && empty_polls++ % kPollsPerClockRead != 0)
      continue;
    if (!deadline.is_infinite() || (spinning && mode == WaitMode::kDefault)) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline.when())
        return UnavailableError("receive: no message before the deadline");
      if (now >= spin_until)
        spinning = false;
    }
    if (spinning)
      continue;
    token.Sleep(seen, deadline);
  }
}

Status Pipe::SetReadableCallback(std::function<void()> callback) {
  if (!state_)
    return ClosedPipeError("set readable callback");
  CoreUse use(state_->core.get());
  if (!use.ok())
    return use.status().WithContext("set readable callback");
  std::shared_ptr<std::function<void()>> old;
  {
    MutexLock lock(&state_->mu);
    old = std::move(state_->callback);
    if (callback)
      state_->callback =
          std::make_shared<std::function<void()>>(std::move(callback));
    if (!state_->core->IsIoThread()) {
      while (state_->in_callback)
        state_->cv.Wait(&state_->mu);
    }
  }
  // Once soon, so a message that arrived before the callback was set is not
  // missed.
  std::weak_ptr<PipeState> weak = state_;
  state_->core->PostToIoThread([weak] {
    if (auto state = weak.lock())
      state->InvokeCallback();
  });
  return Status::Ok();
}

}  // namespace shmports
