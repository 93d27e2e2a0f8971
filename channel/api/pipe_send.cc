// Pipe's sending side (include/shmports/pipe.h): Send, credit (SetQuota)
// and the status that reports it. The receiving side is in pipe.cc.
//
// Credit. A sending end may leave at most its effective quota unread at the
// other end: the user's quota (SetQuota) and, when the other end is on
// another node, the receive caps that node announced in its handshake
// (channel::Process::GetPeerReceiveCaps), whichever is lower per field. That
// node enforces its caps (a sender past them is dropped as violating), so the
// cap is on by default for every pipe between processes. The cap is looked
// up by the port's current peer node (PortStatus::peer_node_name: the other
// end may travel) and cached in the PipeState until that node changes.
//
// Counting: the node counts unacknowledged messages (sent, not yet read and
// acknowledged); the PipeState keeps their sizes, oldest first, as the
// serialised size the receiving queue counts (GetSizeIfSerialized), and
// drops as many as are known acknowledged (Settle). An entry is reserved
// before the node assigns the message its sequence number; concurrent
// senders may reserve out of sequence order, and then acknowledged entries
// go smallest first (the byte count can only overstate).
//
// Acknowledgements are requested only when they matter: a round trip that
// never comes near the quota sends no extra event. Once a send takes the
// unacknowledged messages or bytes past half the effective quota, the port's
// acknowledge-request interval is set to half the unacknowledged messages (a
// request for a message already sent; the node renews it on each
// acknowledgement); below a quarter it is cleared again (no event). A
// refused send makes sure a request is pending for a message already sent
// (interval = the unacknowledged count), so credit always comes back once
// the reader has read everything.
//
// A port that arrived inside a message (ProcessCore::WrapPort) inherits the
// route's sequence numbers but not its acknowledged position (the port
// descriptor does not carry it), so messages its previous holder left unread
// at the other end are unknown here, by count and by size. Until a message
// sent from here is acknowledged (which acknowledges everything before it),
// the peer's caps count at half: the previous holder's unread messages and
// ours stay within the caps as long as it left at most half of them unread.
// This is the conservative bound this layer can give; an exact one needs the
// acknowledged position in the port descriptor. The same holds when a quota
// applies again after sends that had none (nothing was recorded for them).
//
// The other end in transit: when a pipe of this Process is sent inside a
// message while its other end stays, that end's peer is still the proxy left
// on this node (PortStatus names this node) until the route's new end is
// known. What it sends meanwhile ends up in the destination's queue, so it
// keeps to the lowest caps of this Process and its peers (peer_in_transit),
// tracked like any other, until its peer node changes. Remaining gap: a
// destination that connects only later, with lower caps than all of these.
#include <shmports/pipe.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

#include "channel/api/internal.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports {
namespace api_internal {

void SizeRuns::PushBack(size_t size) {
  if (!runs_.empty() && runs_.back().size == size)
    ++runs_.back().count;
  else
    runs_.push_back({size, 1});
  ++count_;
  bytes_ += size;
}

void SizeRuns::PopFront(size_t n) {
  while (n > 0 && !runs_.empty()) {
    Run& run = runs_.front();
    const size_t take = std::min(n, run.count);
    run.count -= take;
    count_ -= take;
    bytes_ -= take * run.size;
    n -= take;
    if (run.count == 0)
      runs_.pop_front();
  }
}

void SizeRuns::PopSmallest(size_t n) {
  // Order no longer matters once entries are taken smallest first.
  std::sort(runs_.begin(), runs_.end(),
            [](const Run& a, const Run& b) { return a.size < b.size; });
  PopFront(n);
}

bool SizeRuns::EraseLast(size_t size) {
  for (auto it = runs_.rbegin(); it != runs_.rend(); ++it) {
    if (it->size != size)
      continue;
    --it->count;
    --count_;
    bytes_ -= size;
    if (it->count == 0)
      runs_.erase(std::next(it).base());
    return true;
  }
  return false;
}

void SizeRuns::Clear() {
  runs_.clear();
  count_ = 0;
  bytes_ = 0;
}

}  // namespace api_internal

namespace {

using api_internal::ClosedPipeError;
using api_internal::CoreUse;
using api_internal::PipeState;

bool HasQuota(const PipeQuota& q) {
  return q.max_unacknowledged_messages != 0 || q.max_unacknowledged_bytes != 0;
}

size_t MinLimit(size_t a, size_t b) {
  if (a == 0)
    return b;
  if (b == 0)
    return a;
  return std::min(a, b);
}

size_t ToSize(uint64_t v) {
  return v > std::numeric_limits<size_t>::max()
             ? std::numeric_limits<size_t>::max()
             : static_cast<size_t>(v);
}

// Drops acknowledged entries. `completed` is completed_sends read before
// the node reported `unacked`: every send counted there had its sequence
// number by then, so at least completed - unacked of our messages were
// acknowledged (sends still in the node may be in `unacked` but not in
// `completed`: that only lowers the figure). Acknowledgements never go
// back, so dropping up to that many entries never drops an unacknowledged
// one — with one sender it is exact.
void Settle(PipeState& s, uint64_t completed, size_t unacked) REQUIRES(s.mu) {
  if (completed <= unacked)
    return;
  const uint64_t acked = completed - unacked;
  if (acked <= s.settled_sends)
    return;
  const size_t n = static_cast<size_t>(acked - s.settled_sends);
  s.settled_sends = acked;
  if (s.sizes_unordered)
    s.unacked.PopSmallest(n);
  else
    s.unacked.PopFront(n);
  if (s.unacked.empty())
    s.sizes_unordered = false;
  // A message sent from here was read, so was everything before it: an
  // arrived port's unknown backlog is gone.
  s.backlog_unknown = false;
}

// Refreshes the cached cap when the peer node changed.
void RefreshCap(PipeState& s, const ports::PortStatus& ps) REQUIRES(s.mu) {
  if ((!ps.peer_remote && !s.peer_in_transit) ||
      s.core->ignore_peer_caps_for_testing.load(std::memory_order_relaxed)) {
    s.cap = PipeQuota{};
    s.cap_node = ports::NodeName();
    return;
  }
  if (s.cap_node == ps.peer_node_name)
    return;
  channel::ReceiveCaps caps;
  s.cap = PipeQuota{};
  if (!ps.peer_remote) {
    // The other end is on its way to a node not known here yet (or to a
    // port of this node, where the lowest caps are merely conservative).
    caps = s.core->process->GetLowestReceiveCaps();
    s.cap.max_unacknowledged_messages =
        ToSize(caps.max_queued_messages_per_pipe);
    s.cap.max_unacknowledged_bytes = ToSize(caps.max_queued_bytes_per_pipe);
  } else if (s.core->process->GetPeerReceiveCaps(ps.peer_node_name, &caps)) {
    s.cap.max_unacknowledged_messages =
        ToSize(caps.max_queued_messages_per_pipe);
    s.cap.max_unacknowledged_bytes = ToSize(caps.max_queued_bytes_per_pipe);
  }
  s.cap_node = ps.peer_node_name;
}

PipeQuota Effective(const PipeState& s) REQUIRES(s.mu) {
  PipeQuota cap = s.cap;
  if (s.backlog_unknown) {
    if (cap.max_unacknowledged_messages != 0) {
      cap.max_unacknowledged_messages =
          std::max<size_t>(1, cap.max_unacknowledged_messages / 2);
    }
    if (cap.max_unacknowledged_bytes != 0) {
      cap.max_unacknowledged_bytes =
          std::max<size_t>(1, cap.max_unacknowledged_bytes / 2);
    }
  }
  PipeQuota q;
  q.max_unacknowledged_messages = MinLimit(s.quota.max_unacknowledged_messages,
                                           cap.max_unacknowledged_messages);
  q.max_unacknowledged_bytes =
      MinLimit(s.quota.max_unacknowledged_bytes, cap.max_unacknowledged_bytes);
  return q;
}

bool AboveHalf(const PipeQuota& q, size_t count, size_t bytes) {
  return (q.max_unacknowledged_messages != 0 &&
          count > q.max_unacknowledged_messages / 2) ||
         (q.max_unacknowledged_bytes != 0 &&
          bytes > q.max_unacknowledged_bytes / 2);
}

bool BelowQuarter(const PipeQuota& q, size_t count, size_t bytes) {
  return (q.max_unacknowledged_messages == 0 ||
          count < q.max_unacknowledged_messages / 4) &&
         (q.max_unacknowledged_bytes == 0 ||
          bytes < q.max_unacknowledged_bytes / 4);
}

// What one credit check decided.
struct CreditDecision {
  bool refused = false;
  bool reserved = false;
  // Set the port's acknowledge-request interval to `interval`.
  bool set_interval = false;
  uint64_t interval = 0;
  PipeQuota quota;
  size_t count = 0;
  size_t held = 0;
};

// Under s.mu: settles, checks the effective quota for a message of `size`
// and reserves it, or refuses.
CreditDecision CheckCredit(PipeState& s,
                           uint64_t completed,
                           const ports::PortStatus& ps,
                           size_t size) REQUIRES(s.mu) {
  CreditDecision d;
  RefreshCap(s, ps);
  const size_t node_unacked = ps.unacknowledged_message_count;
  Settle(s, completed, node_unacked);
  if (s.untracked_sends && HasQuota(Effective(s))) {
    s.untracked_sends = false;
    if (node_unacked > 0)
      s.backlog_unknown = true;
  }
  d.quota = Effective(s);
  if (!HasQuota(d.quota)) {
    if (s.ack_interval != 0) {
      d.set_interval = true;
      d.interval = 0;
      s.ack_interval = 0;
    }
    // Their acknowledgements must not settle entries recorded later.
    s.settled_sends += s.unacked.count();
    s.unacked.Clear();
    s.sizes_unordered = false;
    s.untracked_sends = true;
    return d;
  }
  const PipeQuota& q = d.quota;
  d.count = s.unacked.count();
  d.held = s.unacked.bytes();
  if (d.count > 0 && ((q.max_unacknowledged_messages != 0 &&
                       d.count >= q.max_unacknowledged_messages) ||
                      (q.max_unacknowledged_bytes != 0 &&
                       d.held + size > q.max_unacknowledged_bytes))) {
    d.refused = true;
    // Credit returns only through an acknowledgement: make sure one is
    // requested for a message already sent.
    if (node_unacked > 0 &&
        (s.ack_interval == 0 || s.ack_interval > node_unacked)) {
      d.set_interval = true;
      d.interval = node_unacked;
      s.ack_interval = node_unacked;
    }
    return d;
  }
  if (s.pending_sends.load(std::memory_order_relaxed) > 0)
    s.sizes_unordered = true;
  s.unacked.PushBack(size);
  s.pending_sends.fetch_add(1, std::memory_order_acq_rel);
  d.reserved = true;
  const size_t after_count = node_unacked + 1;
  if (AboveHalf(q, s.unacked.count(), s.unacked.bytes())) {
    // A request for a message sent by the time it leaves (this one at the
    // latest).
    const uint64_t want = std::max<uint64_t>(1, after_count / 2);
    if (s.ack_interval == 0 || s.ack_interval > after_count) {
      d.set_interval = true;
      d.interval = want;
      s.ack_interval = want;
    }
  } else if (s.ack_interval != 0 &&
             BelowQuarter(q, s.unacked.count(), s.unacked.bytes())) {
    d.set_interval = true;
    d.interval = 0;
    s.ack_interval = 0;
  }
  return d;
}

// `attached` is about to leave inside a message. If its other end is a
// pipe of this Process, that end's route now leads wherever this message
// goes: until its peer node changes, it keeps to the lowest caps
// (RefreshCap), so what it sends in the meantime cannot overrun the
// destination.
void MarkPeerInTransit(api_internal::ProcessCore& core,
                       const PipeState& attached) {
  ports::Node& node = core.process->node();
  ports::PortStatus ps;
  if (node.GetStatus(attached.port, &ps) != ports::OK || ps.peer_remote)
    return;
  ports::PortRef peer;
  std::shared_ptr<ports::UserData> data;
  if (node.GetPort(ps.peer_port_name, &peer) != ports::OK ||
      node.GetUserData(peer, &data) != ports::OK || !data) {
    return;
  }
  auto* link = static_cast<api_internal::PortLink*>(data.get());
  std::shared_ptr<PipeState> state = link->state.lock();
  if (!state)
    return;
  MutexLock lock(&state->mu);
  state->peer_in_transit = true;
  state->cap_node = ports::NodeName();  // Looked up again on its next send.
}

// Gives back a reservation of `size` whose send failed.
void Unreserve(PipeState& s, size_t size) REQUIRES(s.mu) {
  (void)s.unacked.EraseLast(size);
}

}  // namespace

Status Pipe::Send(std::string_view text, std::vector<Pipe>&& pipes) {
  return Send(std::span<const uint8_t>(
                  reinterpret_cast<const uint8_t*>(text.data()), text.size()),
              std::move(pipes));
}

Status Pipe::Send(std::span<const uint8_t> bytes, std::vector<Pipe>&& pipes) {
  return SendImpl(bytes, pipes, /*wait=*/false, {});
}

Status Pipe::Send(std::string_view text,
                  std::vector<Pipe>&& pipes,
                  std::chrono::steady_clock::time_point deadline) {
  return Send(std::span<const uint8_t>(
                  reinterpret_cast<const uint8_t*>(text.data()), text.size()),
              std::move(pipes), deadline);
}

Status Pipe::Send(std::span<const uint8_t> bytes,
                  std::vector<Pipe>&& pipes,
                  std::chrono::steady_clock::time_point deadline) {
  return SendImpl(bytes, pipes, /*wait=*/true, deadline);
}

Status Pipe::Send(std::span<const uint8_t> bytes,
                  std::vector<Pipe>&& pipes,
                  std::chrono::nanoseconds timeout) {
  return Send(bytes, std::move(pipes), Deadline::In(timeout).when());
}

Status Pipe::Send(std::string_view text,
                  std::vector<Pipe>&& pipes,
                  std::chrono::nanoseconds timeout) {
  return Send(text, std::move(pipes), Deadline::In(timeout).when());
}

Status Pipe::SendImpl(std::span<const uint8_t> bytes,
                      std::vector<Pipe>& pipes,
                      bool wait,
                      std::chrono::steady_clock::time_point when) {
  if (!state_)
    return ClosedPipeError("send");
  PipeState* state = state_.get();
  api_internal::ProcessCore* core = state->core.get();
  auto reject = [core](Status s) {
    core->send_rejections.fetch_add(1, std::memory_order_relaxed);
    return s;
  };
  if (wait && core->IsIoThread()) {
    return reject(FailedPreconditionError(
        "send with a deadline may wait for credit, and may not run on the io "
        "thread (inside a readable callback); use Send() there"));
  }
  const Deadline deadline = Deadline::At(when);
  std::unique_ptr<ports::UserMessageEvent> message;
  size_t size = 0;
  for (;;) {
    uint64_t seen = 0;
    {
      CoreUse use(core);
      if (!use.ok())
        return use.status().WithContext("send");
      if (!message) {
        if (bytes.size() > kMaxMessageBytes) {
          return reject(InvalidArgumentError(StrFormat(
              "send: message of %zu bytes exceeds Pipe::kMaxMessageBytes "
              "(%zu)",
              bytes.size(), kMaxMessageBytes)));
        }
        if (pipes.size() > kMaxAttachedPipes) {
          return reject(InvalidArgumentError(
              StrFormat("send: %zu pipes attached; at most %zu per message",
                        pipes.size(), kMaxAttachedPipes)));
        }
        message = std::make_unique<ports::UserMessageEvent>(pipes.size());
        message->message().Assign(bytes);
        for (size_t i = 0; i < pipes.size(); ++i) {
          const std::shared_ptr<PipeState>& attached =
              PipeState::StateOf(pipes[i]);
          if (!attached || attached->core.get() != core) {
            return reject(InvalidArgumentError(
                StrFormat("send: attached pipe %zu is %s", i,
                          attached ? "from another Process"
                                   : "invalid (closed or moved)")));
          }
          message->ports()[i] = attached->port.name();
        }
        // What the receiving queue counts for this message.
        size = message->GetSizeIfSerialized();
      }
      ports::PortStatus ps;
      if (wait) {
        MutexLock lock(&state->mu);
        if (state->closed)
          return ClosedPipeError("send");
        seen = state->signals;
      }
      const uint64_t completed =
          state->completed_sends.load(std::memory_order_acquire);
      int rv = core->process->node().GetStatus(state->port, &ps);
      if (rv != ports::OK)
        return ports::ErrorToStatus(rv, "send");
      if (ps.peer_closed)
        return PeerClosedError("send: the other end of the pipe is closed");
      CreditDecision d;
      {
        MutexLock lock(&state->mu);
        d = CheckCredit(*state, completed, ps, size);
      }
      if (d.set_interval) {
        // Refused or not, the request goes out now: a refused sender's
        // credit depends on it.
        (void)core->process->node().SetAcknowledgeRequestInterval(state->port,
                                                                  d.interval);
      }
      if (!d.refused) {
        // The attached ends stop being ours whatever happens next: the node
        // turns them into proxies, or closes them on error.
        for (Pipe& p : pipes) {
          MarkPeerInTransit(*core, *PipeState::StateOf(p));
          PipeState::StateOf(p)->Close(/*close_port=*/false);
        }
        rv = core->process->node().SendUserMessage(state->port,
                                                   std::move(message));
        if (d.reserved) {
          if (rv != ports::OK) {
            MutexLock lock(&state->mu);
            Unreserve(*state, size);
          }
          if (rv == ports::OK)
            state->completed_sends.fetch_add(1, std::memory_order_acq_rel);
          state->pending_sends.fetch_sub(1, std::memory_order_acq_rel);
        }
        for (Pipe& p : pipes)
          PipeState::Forget(p);  // Detached above: their ports are not ours.
        pipes.clear();
        if (rv != ports::OK) {
          Status s = ports::ErrorToStatus(rv, "send");
          if (rv != ports::ERROR_PORT_PEER_CLOSED)
            return reject(std::move(s));
          return s;
        }
        return Status::Ok();
      }
      if (!wait || deadline.Expired()) {
        return reject(ResourceExhaustedError(StrFormat(
            "send: quota spent (%zu messages, %zu bytes unacknowledged; "
            "quota %zu messages, %zu bytes): the reader has not caught up%s",
            d.count, d.held, d.quota.max_unacknowledged_messages,
            d.quota.max_unacknowledged_bytes, wait ? " by the deadline" : "")));
      }
    }
    // Out of the use guard: a Process being destroyed closes this pipe,
    // which wakes us (signals or closed).
    MutexLock lock(&state->mu);
    ++state->waiters;
    while (state->signals == seen && !state->closed) {
      if (!state->cv.WaitUntil(&state->mu, deadline.when()))
        break;
    }
    --state->waiters;
  }
}

Status Pipe::SetQuota(const PipeQuota& quota) {
  if (!state_)
    return ClosedPipeError("set quota");
  CoreUse use(state_->core.get());
  if (!use.ok())
    return use.status().WithContext("set quota");
  ports::PortStatus ps;
  const uint64_t completed =
      state_->completed_sends.load(std::memory_order_acquire);
  int rv = state_->core->process->node().GetStatus(state_->port, &ps);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "set quota");
  // Sends decide about acknowledgements; only a quota already spent needs a
  // request now (the next send is refused and must see credit return).
  bool set_interval = false;
  uint64_t interval = 0;
  {
    PipeState& s = *state_;
    MutexLock lock(&s.mu);
    s.quota = quota;
    RefreshCap(s, ps);
    Settle(s, completed, ps.unacknowledged_message_count);
    const PipeQuota q = Effective(s);
    const size_t unacked = ps.unacknowledged_message_count;
    if (!HasQuota(q)) {
      set_interval = s.ack_interval != 0;
      s.ack_interval = 0;
    } else if (unacked > 0 &&
               !BelowQuarter(q, s.unacked.count(), s.unacked.bytes())) {
      if (s.ack_interval == 0 || s.ack_interval > unacked) {
        set_interval = true;
        interval = unacked;
        s.ack_interval = unacked;
      }
    }
  }
  if (set_interval) {
    rv = state_->core->process->node().SetAcknowledgeRequestInterval(
        state_->port, interval);
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "set quota");
  }
  return Status::Ok();
}

Result<PipeStatus> Pipe::GetStatus() const {
  if (!state_)
    return ClosedPipeError("status");
  CoreUse use(state_->core.get());
  if (!use.ok())
    return use.status().WithContext("status");
  ports::PortStatus s;
  const uint64_t completed =
      state_->completed_sends.load(std::memory_order_acquire);
  int rv = state_->core->process->node().GetStatus(state_->port, &s);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "status");
  PipeStatus out;
  out.peer_closed = s.peer_closed;
  out.queued_messages = s.queued_message_count;
  out.queued_bytes = s.queued_num_bytes;
  out.unacknowledged_messages = s.unacknowledged_message_count;
  MutexLock lock(&state_->mu);
  Settle(*state_, completed, s.unacknowledged_message_count);
  out.unacknowledged_bytes = state_->unacked.bytes();
  return out;
}

}  // namespace shmports
