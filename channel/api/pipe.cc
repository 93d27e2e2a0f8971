// The public Pipe (include/shmports/pipe.h) on a ports::Node port.
//
// Receiving: the io thread drains the rings and feeds the Node; a
// PortStatusChanged bumps the pipe's `signals` and wakes its waiters (and
// posts the readable callback). A waiting Receive polls the port, then spins
// (kDefault: up to kSpinBudget; kBusyPoll: until the deadline) or sleeps on
// the pipe's condition variable until `signals` moves.
//
// Next step (ARCHITECTURE.md, "consumer token"): in kDefault and kBlocking
// the waiting thread should drain the ring itself instead of waiting for the
// io thread's hop. Plan: the waiter takes the link's consumer token (an
// atomic owner word per inbound ring); the io thread, on its next wake,
// sees the token taken and does not drain. The producer's wake must then
// reach the waiting thread: the waiter sleeps with futex_waitv on both the
// ring's data word and the pipe's wake word, so the producer's FUTEX_WAKE on
// the data word (unchanged protocol) wakes it directly, and the io thread's
// armed io_uring futex wait on the same word is woken too but finds the
// token taken and re-arms. Messages for other ports drained by the waiter
// are handed to the Node as usual (their waiters are notified). Nothing of
// this changes the public API.
#include <shmports/pipe.h>

#include <algorithm>
#include <utility>

#include "channel/api/internal.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports {
namespace api_internal {

void PipeState::Notify() {
  std::shared_ptr<std::function<void()>> cb;
  {
    MutexLock lock(&mu);
    ++signals;
    if (waiters > 0)
      cv.SignalAll();
    if (closed)
      return;
    cb = callback;
  }
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
    if (!core->IsIoThread()) {
      while (in_callback)
        cv.Wait(&mu);
    }
  }
  core->Unregister(this);
  if (close_port) {
    CoreUse use(core.get());
    if (use.ok())
      (void)core->process->node().ClosePort(port);
  }
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

Result<PipeMessage> Pipe::Receive() {
  if (!state_)
    return ClosedPipeError("receive");
  const std::shared_ptr<api_internal::ProcessCore>& core = state_->core;
  CoreUse use(core.get());
  if (!use.ok())
    return use.status().WithContext("receive");
  std::unique_ptr<ports::UserMessageEvent> event;
  int rv = core->process->node().GetMessage(state_->port, &event, nullptr);
  if (rv == ports::ERROR_PORT_PEER_CLOSED)
    return PeerClosedError("receive: the other end of the pipe is closed");
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "receive");
  if (!event)
    return UnavailableError("receive: no message queued");
  PipeMessage out;
  std::span<const uint8_t> bytes = event->message().bytes();
  out.bytes.assign(bytes.begin(), bytes.end());
  out.pipes.reserve(event->num_ports());
  for (size_t i = 0; i < event->num_ports(); ++i) {
    ports::PortRef ref;
    if (core->process->node().GetPort(event->ports()[i], &ref) == ports::OK)
      out.pipes.push_back(core->WrapPort(core, ref));
  }
  return out;
}

Result<PipeMessage> Pipe::Receive(std::chrono::nanoseconds timeout,
                                  WaitMode mode) {
  return Receive(Deadline::In(timeout).when(), mode);
}

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
  const Deadline deadline = Deadline::At(when);
  const Deadline spin_until =
      mode == WaitMode::kDefault ? Deadline::In(kSpinBudget) : Deadline::Now();
  for (;;) {
    uint64_t seen;
    {
      MutexLock lock(&state->mu);
      if (state->closed)
        return ClosedPipeError("receive");
      seen = state->signals;
    }
    Result<PipeMessage> r = Receive();
    if (r.ok() || r.status().code() != StatusCode::kUnavailable)
      return r;
    if (deadline.Expired())
      return UnavailableError("receive: no message before the deadline");
    if (mode == WaitMode::kBusyPoll || !spin_until.Expired())
      continue;
    MutexLock lock(&state->mu);
    ++state->waiters;
    while (state->signals == seen && !state->closed) {
      if (!state->cv.WaitUntil(&state->mu, deadline.when()))
        break;
    }
    --state->waiters;
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
