// Pipe's sending side (include/shmports/pipe.h): Send, credit (SetQuota)
// and the status that reports it. The receiving side is in pipe.cc.
#include <shmports/pipe.h>

#include <algorithm>
#include <utility>

#include "channel/api/internal.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports {
namespace {

using api_internal::ClosedPipeError;
using api_internal::CoreUse;
using api_internal::PipeState;

}  // namespace

Status Pipe::Send(std::string_view text, std::vector<Pipe>&& pipes) {
  return Send(std::span<const uint8_t>(
                  reinterpret_cast<const uint8_t*>(text.data()), text.size()),
              std::move(pipes));
}

Status Pipe::Send(std::span<const uint8_t> bytes, std::vector<Pipe>&& pipes) {
  if (!state_)
    return ClosedPipeError("send");
  api_internal::ProcessCore* core = state_->core.get();
  CoreUse use(core);
  if (!use.ok())
    return use.status().WithContext("send");
  auto reject = [core](Status s) {
    core->send_rejections.fetch_add(1, std::memory_order_relaxed);
    return s;
  };
  if (bytes.size() > kMaxMessageBytes) {
    return reject(InvalidArgumentError(StrFormat(
        "send: message of %zu bytes exceeds Pipe::kMaxMessageBytes (%zu)",
        bytes.size(), kMaxMessageBytes)));
  }
  if (pipes.size() > kMaxAttachedPipes) {
    return reject(InvalidArgumentError(
        StrFormat("send: %zu pipes attached; at most %zu per message",
                  pipes.size(), kMaxAttachedPipes)));
  }
  auto message = std::make_unique<ports::UserMessageEvent>(pipes.size());
  message->message().Assign(bytes);
  for (size_t i = 0; i < pipes.size(); ++i) {
    const std::shared_ptr<PipeState>& attached = PipeState::StateOf(pipes[i]);
    if (!attached || attached->core.get() != core) {
      return reject(InvalidArgumentError(StrFormat(
          "send: attached pipe %zu is %s", i,
          attached ? "from another Process" : "invalid (closed or moved)")));
    }
    message->ports()[i] = attached->port.name();
  }
  bool quota_set = false;
  {
    MutexLock lock(&state_->mu);
    quota_set = state_->quota.max_unacknowledged_messages != 0 ||
                state_->quota.max_unacknowledged_bytes != 0;
  }
  if (quota_set) {
    ports::PortStatus ps;
    int rv = core->process->node().GetStatus(state_->port, &ps);
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "send");
    if (ps.peer_closed)
      return PeerClosedError("send: the other end of the pipe is closed");
    MutexLock lock(&state_->mu);
    state_->SettleCredit(ps.unacknowledged_message_count);
    const PipeQuota q = state_->quota;
    const size_t count = state_->unacked_sizes.size();
    const size_t held = state_->unacked_bytes;
    if (count > 0 && ((q.max_unacknowledged_messages != 0 &&
                       count >= q.max_unacknowledged_messages) ||
                      (q.max_unacknowledged_bytes != 0 &&
                       held + bytes.size() > q.max_unacknowledged_bytes))) {
      return reject(ResourceExhaustedError(StrFormat(
          "send: quota spent (%zu messages, %zu bytes unacknowledged; quota "
          "%zu messages, %zu bytes): the reader has not caught up",
          count, held, q.max_unacknowledged_messages,
          q.max_unacknowledged_bytes)));
    }
    // Reserved now; returned below if the send fails.
    state_->unacked_sizes.push_back(bytes.size());
    state_->unacked_bytes += bytes.size();
  }
  // The attached ends stop being ours whatever happens next: the node turns
  // them into proxies, or closes them on error.
  for (Pipe& p : pipes) {
    PipeState::StateOf(p)->Close(/*close_port=*/false);
  }
  int rv =
      core->process->node().SendUserMessage(state_->port, std::move(message));
  for (Pipe& p : pipes)
    PipeState::Forget(p);  // Detached above: their ports are not ours.
  pipes.clear();
  if (rv != ports::OK && quota_set) {
    MutexLock lock(&state_->mu);
    if (!state_->unacked_sizes.empty()) {
      state_->unacked_bytes -= state_->unacked_sizes.back();
      state_->unacked_sizes.pop_back();
    }
  }
  if (rv != ports::OK) {
    Status s = ports::ErrorToStatus(rv, "send");
    if (rv != ports::ERROR_PORT_PEER_CLOSED)
      return reject(std::move(s));
    return s;
  }
  return Status::Ok();
}

Status Pipe::SetQuota(const PipeQuota& quota) {
  if (!state_)
    return ClosedPipeError("set quota");
  CoreUse use(state_->core.get());
  if (!use.ok())
    return use.status().WithContext("set quota");
  uint64_t interval = 0;
  if (quota.max_unacknowledged_bytes != 0)
    interval = 1;
  else if (quota.max_unacknowledged_messages != 0)
    interval = std::max<uint64_t>(1, quota.max_unacknowledged_messages / 2);
  int rv = state_->core->process->node().SetAcknowledgeRequestInterval(
      state_->port, interval);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "set quota");
  MutexLock lock(&state_->mu);
  state_->quota = quota;
  if (interval == 0) {
    state_->unacked_sizes.clear();
    state_->unacked_bytes = 0;
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
  int rv = state_->core->process->node().GetStatus(state_->port, &s);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "status");
  PipeStatus out;
  out.peer_closed = s.peer_closed;
  out.queued_messages = s.queued_message_count;
  out.queued_bytes = s.queued_num_bytes;
  out.unacknowledged_messages = s.unacknowledged_message_count;
  MutexLock lock(&state_->mu);
  if (state_->quota.max_unacknowledged_messages == 0 &&
      state_->quota.max_unacknowledged_bytes == 0) {
    out.unacknowledged_messages = 0;  // Not tracked without a quota.
  } else {
    state_->SettleCredit(s.unacknowledged_message_count);
    out.unacknowledged_bytes = state_->unacked_bytes;
  }
  return out;
}

}  // namespace shmports
