// Node: public API, AcceptEvent and the event handlers. Proxying, merging and
// peer loss live in node_proxy.cc.
#include "core/ports/node.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "core/base/log.h"
#include "core/base/str_format.h"
#include "core/ports/port_locker.h"

namespace shmports::ports {

namespace {

constexpr AcceptResult kUnknownPort = AcceptResult::Ignored("unknown port");

bool IsSequencedEvent(const Event& event) {
  switch (event.type()) {
    case EventType::kPortAccepted:
    case EventType::kMergePort:
      return false;
    case EventType::kObserveProxy:
      // The broadcast form has no route to be sequenced on.
      return event.port_name().is_valid();
    default:
      return true;
  }
}

// Readdresses `event` to the route's next hop from `port` (whose lock the
// caller holds) with the next control number. A buffering port keeps it
// for BeginProxying (null is returned); otherwise it comes back, to be sent
// to port->peer_node_name once the lock is released.
ScopedEvent PassAlongRoute(const PortName& port_name,
                           Port* port,
                           ScopedEvent event) {
  event->set_port_name(port->peer_port_name);
  event->set_from_port(port_name);
  event->set_control_sequence_num(port->next_control_sequence_num_to_send++);
  if (port->state == Port::kBuffering) {
    port->control_message_queue.emplace_back(port->peer_node_name,
                                             std::move(event));
    return nullptr;
  }
  return event;
}

// Null when one more user message of `bytes` payload bytes from another node
// may join the receiving port's queue; otherwise the violation, with the
// figures in a thread-local buffer (see AcceptResult::reason).
const char* CheckQueueCap(const Port* port,
                          size_t bytes,
                          const NodeLimits& limits) {
  size_t count = port->message_queue.queued_message_count() + 1;
  size_t total = port->message_queue.queued_num_bytes() + bytes;
  bool too_many = limits.max_queued_messages_per_port != 0 &&
                  count > limits.max_queued_messages_per_port;
  // One message is always allowed: a sender with nothing unacknowledged may
  // send one of any size.
  bool too_large = limits.max_queued_bytes_per_port != 0 && count > 1 &&
                   total > limits.max_queued_bytes_per_port;
  if (!too_many && !too_large)
    return nullptr;
  thread_local char reason[192];
  if (too_many) {
    snprintf(reason, sizeof(reason),
             "user message past max_queued_messages_per_port (%zu queued, "
             "cap %zu)",
             count, limits.max_queued_messages_per_port);
  } else {
    snprintf(reason, sizeof(reason),
             "user message past max_queued_bytes_per_port (%zu bytes in %zu "
             "queued messages, cap %zu)",
             total, count, limits.max_queued_bytes_per_port);
  }
  return reason;
}

}  // namespace

// Null when `seq` may enter the port's queue; otherwise why not. Below the
// next number to read would wedge the queue forever; far beyond what has
// arrived would let a peer park unbounded out-of-order messages.
const char* CheckUserSequenceNum(const Port* port,
                                 uint64_t seq,
                                 uint64_t window) {
  uint64_t next = port->message_queue.next_sequence_num();
  if (seq < next)
    return "user message sequence number already consumed";
  uint64_t limit = next - 1 + port->message_queue.queued_message_count();
  limit = limit + window < limit ? UINT64_MAX : limit + window;
  if (seq > limit)
    return "user message sequence number beyond the window";
  return nullptr;
}

// Shared with node_proxy.cc.
bool CanAcceptMoreMessages(const Port* port) {
  uint64_t next_sequence_num = port->message_queue.next_sequence_num();
  if (port->state == Port::kClosed)
    return false;
  if (port->peer_closed || port->remove_proxy_on_last_message) {
    if (port->peer_lost_unexpectedly) {
      return port->message_queue.HasNextMessage();
    }
    // At or past the end: past it only on a route that was cut, where the
    // end was fixed before messages still in flight arrived (they are not
    // taken), or after a lie about the end — either way nothing more comes.
    if (next_sequence_num - 1 >= port->last_sequence_num_to_receive) {
      return false;
    }
  }
  return true;
}

Node::Node(const NodeName& name, NodeDelegate* delegate, NodeOptions options)
    : name_(name),
      delegate_(delegate),
      options_(options),
      buffer_budget_(options.limits.max_buffered_events_per_peer,
                     options.limits.max_buffered_event_bytes_per_peer) {}

Node::~Node() {
  MutexLock lock(&ports_lock_);
  if (!ports_.empty()) {
    SHMPORTS_LOG(kWarning, "node %s destroyed with %zu live ports",
                 name_.ToString().c_str(), ports_.size());
  }
}

bool Node::CanShutdownCleanly(ShutdownPolicy policy) {
  MutexLock lock(&ports_lock_);
  if (policy == ShutdownPolicy::DONT_ALLOW_LOCAL_PORTS)
    return ports_.empty();
  for (auto& [name, port] : ports_) {
    PortRef ref(name, port);
    SinglePortLocker locker(&ref);
    Port* p = locker.port();
    if (p->peer_node_name != name_ && p->state != Port::kReceiving) {
      return false;
    }
  }
  return true;
}

int Node::GetPort(const PortName& port_name, PortRef* port_ref) {
  MutexLock lock(&ports_lock_);
  auto it = ports_.find(port_name);
  if (it == ports_.end())
    return ERROR_PORT_UNKNOWN;
  *port_ref = PortRef(port_name, it->second);
  return OK;
}

int Node::CreateUninitializedPort(PortRef* port_ref) {
  PortName port_name = GenerateRandomPortName();
  auto port = std::make_shared<Port>(kInitialSequenceNum, kInitialSequenceNum);
  int rv = AddPortWithName(port_name, port);
  if (rv != OK)
    return rv;
  *port_ref = PortRef(port_name, std::move(port));
  return OK;
}

int Node::InitializePort(const PortRef& port_ref,
                         const NodeName& peer_node_name,
                         const PortName& peer_port_name,
                         const NodeName& prev_node_name,
                         const PortName& prev_port_name) {
  if (!port_ref.is_valid() || !peer_node_name.is_valid() ||
      !peer_port_name.is_valid()) {
    return ERROR_INVALID_ARGUMENT;
  }
  {
    MutexLock ports_lock(&ports_lock_);
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kUninitialized) {
      return ERROR_PORT_STATE_UNEXPECTED;
    }
    port->state = Port::kReceiving;
    UpdatePortPeerAddress(port_ref.name(), port, peer_node_name,
                          peer_port_name);
    port->prev_node_name = prev_node_name;
    port->prev_port_name = prev_port_name;
  }
  delegate_->PortStatusChanged(port_ref);
  return OK;
}

int Node::CreatePortPair(PortRef* port0_ref, PortRef* port1_ref) {
  int rv = CreateUninitializedPort(port0_ref);
  if (rv != OK)
    return rv;
  rv = CreateUninitializedPort(port1_ref);
  if (rv != OK)
    return rv;
  rv = InitializePort(*port0_ref, name_, port1_ref->name(), name_,
                      port1_ref->name());
  if (rv != OK)
    return rv;
  return InitializePort(*port1_ref, name_, port0_ref->name(), name_,
                        port0_ref->name());
}

int Node::SetUserData(const PortRef& port_ref, std::shared_ptr<UserData> data) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  SinglePortLocker locker(&port_ref);
  if (locker.port()->state == Port::kClosed) {
    return ERROR_PORT_STATE_UNEXPECTED;
  }
  locker.port()->user_data = std::move(data);
  return OK;
}

int Node::GetUserData(const PortRef& port_ref,
                      std::shared_ptr<UserData>* data) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  SinglePortLocker locker(&port_ref);
  if (locker.port()->state == Port::kClosed) {
    return ERROR_PORT_STATE_UNEXPECTED;
  }
  *data = locker.port()->user_data;
  return OK;
}

int Node::ClosePort(const PortRef& port_ref) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  std::vector<std::unique_ptr<UserMessageEvent>> undelivered_messages;
  std::vector<Port::PendingMessage> pending_messages;
  NodeName peer_node_name;
  PortName peer_port_name;
  uint64_t last_sequence_num = 0;
  uint64_t sequence_num = 0;
  bool was_initialized = false;
  NodeName prev_node_name;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    switch (port->state) {
      case Port::kUninitialized:
        port->state = Port::kClosed;
        break;
      case Port::kReceiving:
        was_initialized = true;
        port->state = Port::kClosed;
        if (port->peer_lost_unexpectedly)
          prev_node_name = port->prev_node_name;
        // The peer may consume everything we sent before it sees closure.
        last_sequence_num = port->next_sequence_num_to_send - 1;
        peer_node_name = port->peer_node_name;
        peer_port_name = port->peer_port_name;
        sequence_num = port->next_control_sequence_num_to_send++;
        // Unread messages may carry ports that would otherwise leak.
        port->message_queue.TakeAllMessages(&undelivered_messages);
        port->TakePendingMessages(&pending_messages);
        break;
      default:
        return ERROR_PORT_STATE_UNEXPECTED;
    }
  }
  ErasePort(port_ref.name());
  if (was_initialized) {
    delegate_->ForwardEvent(
        peer_node_name,
        std::make_unique<ObserveClosureEvent>(peer_port_name, port_ref.name(),
                                              sequence_num, last_sequence_num));
    if (prev_node_name.is_valid())
      AnnounceClosedPortToPrevious(port_ref.name(), prev_node_name);
    ClosePortsInMessages(undelivered_messages);
    ClosePendingMessagePorts(pending_messages);
  }
  return OK;
}

int Node::GetStatus(const PortRef& port_ref, PortStatus* port_status) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  SinglePortLocker locker(&port_ref);
  Port* port = locker.port();
  if (port->state != Port::kReceiving)
    return ERROR_PORT_STATE_UNEXPECTED;
  port_status->has_messages = port->message_queue.HasNextMessage();
  port_status->receiving_messages = CanAcceptMoreMessages(port);
  port_status->peer_closed = port->peer_closed;
  port_status->peer_remote = port->peer_node_name != name_;
  port_status->peer_node_name = port->peer_node_name;
  port_status->peer_port_name = port->peer_port_name;
  port_status->queued_message_count =
      port->message_queue.queued_message_count();
  port_status->queued_num_bytes = port->message_queue.queued_num_bytes();
  port_status->unacknowledged_message_count =
      port->next_sequence_num_to_send - port->last_sequence_num_acknowledged -
      1;
  return OK;
}

int Node::GetMessage(const PortRef& port_ref,
                     std::unique_ptr<UserMessageEvent>* message,
                     MessageFilter* filter) {
  message->reset();
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  NodeName peer_node_name;
  ScopedEvent ack_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kReceiving)
      return ERROR_PORT_STATE_UNEXPECTED;
    // Everything the peer sent is read before closure is reported.
    if (!CanAcceptMoreMessages(port))
      return ERROR_PORT_PEER_CLOSED;
    port->message_queue.GetNextMessage(message, filter);
    if (*message) {
      if ((*message)->sequence_num() == port->sequence_num_to_acknowledge) {
        peer_node_name = port->peer_node_name;
        ack_event = std::make_unique<UserMessageReadAckEvent>(
            port->peer_port_name, port_ref.name(),
            port->next_control_sequence_num_to_send++,
            port->sequence_num_to_acknowledge);
      }
      port->message_queue.MessageProcessed();
    }
  }
  if (ack_event)
    delegate_->ForwardEvent(peer_node_name, std::move(ack_event));
  if (*message) {
    // Ports carried by the message may announce their own messages now that
    // the embedder can see them.
    NodeName inline_released[4];
    std::vector<NodeName> released;
    size_t num_released = 0;
    for (size_t i = 0; i < (*message)->num_ports(); ++i) {
      PortRef new_port_ref;
      if (GetPort((*message)->ports()[i], &new_port_ref) != OK)
        continue;
      SinglePortLocker locker(&new_port_ref);
      Port* port = locker.port();
      port->message_queue.set_signalable(true);
      if (port->adopted_unread_from.is_valid()) {
        if (num_released < 4) {
          inline_released[num_released] = port->adopted_unread_from;
        } else {
          released.push_back(port->adopted_unread_from);
        }
        ++num_released;
        port->adopted_unread_from = kInvalidNodeName;
      }
    }
    if (num_released != 0) {
      // The ports are seen: they no longer count against their sender.
      MutexLock lock(&ports_lock_);
      for (size_t i = 0; i < num_released && i < 4; ++i) {
        ReleaseUnreadPort(inline_released[i]);
      }
      for (const NodeName& peer : released)
        ReleaseUnreadPort(peer);
    }
    // The embedder may send this event again from another port.
    (*message)->set_sequence_num(0);
  }
  return OK;
}

int Node::SendUserMessage(const PortRef& port_ref,
                          std::unique_ptr<UserMessageEvent> message) {
  if (!message)
    return ERROR_INVALID_ARGUMENT;
  int rv = SendUserMessageInternal(port_ref, &message);
  MaybeFlushLostRoutes();
  if (rv != OK && message) {
    // The message is not going anywhere: its ports would leak. Never close
    // the sending port itself, even if it was (wrongly) attached.
    for (size_t i = 0; i < message->num_ports(); ++i) {
      if (message->ports()[i] == port_ref.name())
        continue;
      PortRef attached;
      if (GetPort(message->ports()[i], &attached) == OK)
        ClosePort(attached);
    }
  }
  return rv;
}

int Node::SendUserMessageInternal(const PortRef& port_ref,
                                  std::unique_ptr<UserMessageEvent>* message) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  UserMessageEvent* m = message->get();
  for (size_t i = 0; i < m->num_ports(); ++i) {
    if (m->ports()[i] == port_ref.name())
      return ERROR_PORT_CANNOT_SEND_SELF;
  }
  NodeName target_node;
  int rv = PrepareToForwardUserMessage(port_ref, Port::kReceiving,
                                       /*ignore_closed_peer=*/false, m,
                                       &target_node);
  if (rv != OK)
    return rv;
  // Routing is decided: whatever happens to the message from here on is a
  // transport matter the caller cannot fix, so the send succeeded.
  if (target_node != name_) {
    delegate_->ForwardEvent(target_node, std::move(*message));
    return OK;
  }
  AcceptResult result = AcceptEvent(name_, std::move(*message));
  if (result.violation()) {
    SHMPORTS_LOG_REPEATED("ports.local_accept", kWarning,
                          "local delivery on node %s: %s",
                          name_.ToString().c_str(), result.ToString().c_str());
  }
  return OK;
}

int Node::SetAcknowledgeRequestInterval(
    const PortRef& port_ref,
    uint64_t sequence_num_acknowledge_interval) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  NodeName peer_node_name;
  ScopedEvent ack_request_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kReceiving)
      return ERROR_PORT_STATE_UNEXPECTED;
    port->sequence_num_acknowledge_interval = sequence_num_acknowledge_interval;
    if (sequence_num_acknowledge_interval == 0)
      return OK;
    peer_node_name = port->peer_node_name;
    ack_request_event = std::make_unique<UserMessageReadAckRequestEvent>(
        port->peer_port_name, port_ref.name(),
        port->next_control_sequence_num_to_send++,
        port->last_sequence_num_acknowledged +
            sequence_num_acknowledge_interval);
  }
  delegate_->ForwardEvent(peer_node_name, std::move(ack_request_event));
  return OK;
}

AcceptResult Node::AcceptEvent(const NodeName& from_node, ScopedEvent event) {
  AcceptResult result = AcceptEventInternal(from_node, std::move(event));
  MaybeFlushLostRoutes();
  return result;
}

AcceptResult Node::AcceptEventInternal(const NodeName& from_node,
                                       ScopedEvent event) {
  if (!event)
    return AcceptResult::Violation("null event");
  PortRef port_ref;
  GetPort(event->port_name(), &port_ref);

  if (!IsSequencedEvent(*event) || !port_ref.is_valid()) {
    return HandleEvent(from_node, port_ref, std::move(event));
  }
  AcceptResult fast_result;
  if (MaybeAcceptPlainMessage(from_node, port_ref, &event, &fast_result)) {
    return fast_result;
  }
  {
    NodeName prev_node;
    {
      SinglePortLocker locker(&port_ref);
      Port* port = locker.port();
      if (!port->IsNextEvent(from_node, *event)) {
        // Early, or from a sender that is not (yet) our previous peer: keep
        // it until its turn.
        bool starts_stream =
            event->control_sequence_num() == kInitialSequenceNum &&
            (from_node != port->prev_node_name ||
             event->from_port() != port->prev_port_name);
        if (!port->BufferEvent(from_node, std::move(event),
                               options_.limits.max_buffered_events_per_port)) {
          return AcceptResult::Violation(
              "too many early events buffered (per port or per peer)");
        }
        if (!starts_stream)
          return AcceptResult::Ok();
        prev_node = port->prev_node_name;
      }
    }
    if (prev_node.is_valid()) {
      // A new sender's stream starts while the previous peer's node is
      // already lost: the UpdatePreviousPeer naming it died there, and the
      // loss handling (which adopts such a stream) has run. Let it adopt
      // this one too (OnPreviousPeerLost, at the end of this call).
      MutexLock lock(&ports_lock_);
      if (lost_nodes_.count(prev_node) != 0) {
        lost_prevs_to_flush_.emplace_back(port_ref, prev_node);
        lost_flush_pending_.store(true, std::memory_order_release);
      }
      return AcceptResult::Ok();
    }
  }
  AcceptResult result = HandleEvent(from_node, port_ref, std::move(event));
  FinishEventAndDrain(port_ref, /*increment_first=*/true);
  return result;
}

// The receive counter moves only after the handler ran: a concurrent delivery
// of the next event sees "not next", buffers it, and this loop picks it up —
// so sequenced events on one port never run concurrently.
void Node::FinishEventAndDrain(const PortRef& port_ref, bool increment_first) {
  for (;;) {
    ScopedEvent next_event;
    NodeName next_from_node;
    {
      SinglePortLocker locker(&port_ref);
      Port* port = locker.port();
      if (increment_first)
        port->next_control_sequence_num_to_receive++;
      port->NextEvent(&next_from_node, &next_event);
    }
    if (!next_event)
      return;
    increment_first = true;
    // Results of events drained from the buffer are not the caller's: the
    // sender of the current event did nothing wrong.
    AcceptResult drained =
        HandleEvent(next_from_node, port_ref, std::move(next_event));
    if (drained.violation()) {
      SHMPORTS_LOG_REPEATED("ports.buffered_violation", kWarning,
                            "buffered event from node %s: %s",
                            next_from_node.ToString().c_str(),
                            drained.ToString().c_str());
    }
  }
}

bool Node::MaybeAcceptPlainMessage(const NodeName& from_node,
                                   const PortRef& port_ref,
                                   ScopedEvent* event,
                                   AcceptResult* result) {
  if ((*event)->type() != EventType::kUserMessage)
    return false;
  auto* message = static_cast<UserMessageEvent*>(event->get());
  if (message->num_ports() != 0)
    return false;
  bool has_next_message = false;
  bool accepted = false;
  bool drain = false;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    // A refused message goes the general way, which adopts nothing here but
    // keeps the control stream's step in one place.
    if (port->state != Port::kReceiving || port->peer_lost_unexpectedly ||
        !port->IsNextEvent(from_node, *message) ||
        CheckUserSequenceNum(port, message->sequence_num(),
                             options_.limits.sequence_window) != nullptr ||
        (from_node != name_ &&
         CheckQueueCap(port, message->GetSizeIfSerialized(), options_.limits) !=
             nullptr)) {
      return false;
    }
    // What OnUserMessage and the counter step of AcceptEvent do, under one
    // lock: a receiving port and no ports to adopt leave nothing to do
    // outside it.
    if (CanAcceptMoreMessages(port)) {
      accepted = true;
      port->message_queue.AcceptMessage(EventCast<UserMessageEvent>(event),
                                        &has_next_message);
    }
    port->next_control_sequence_num_to_receive++;
    drain = port->buffered_event_count() != 0;
  }
  if (has_next_message)
    delegate_->PortStatusChanged(port_ref);
  if (drain)
    FinishEventAndDrain(port_ref, /*increment_first=*/false);
  *result = accepted ? AcceptResult::Ok()
                     : AcceptResult::Ignored("port no longer takes messages");
  return true;
}

AcceptResult Node::HandleEvent(const NodeName& from_node,
                               const PortRef& port_ref,
                               ScopedEvent event) {
  switch (event->type()) {
    case EventType::kUserMessage:
      return OnUserMessage(port_ref, from_node,
                           EventCast<UserMessageEvent>(&event));
    case EventType::kPortAccepted:
      return OnPortAccepted(port_ref, from_node);
    case EventType::kObserveProxy:
      return OnObserveProxy(port_ref, from_node,
                            EventCast<ObserveProxyEvent>(&event));
    case EventType::kObserveProxyAck: {
      auto ack = EventCast<ObserveProxyAckEvent>(&event);
      return OnObserveProxyAck(port_ref, ack->last_sequence_num());
    }
    case EventType::kObserveClosure:
      return OnObserveClosure(port_ref, EventCast<ObserveClosureEvent>(&event));
    case EventType::kMergePort:
      return OnMergePort(port_ref, from_node,
                         EventCast<MergePortEvent>(&event));
    case EventType::kUserMessageReadAckRequest:
      return OnUserMessageReadAckRequest(
          port_ref, EventCast<UserMessageReadAckRequestEvent>(&event));
    case EventType::kUserMessageReadAck:
      return OnUserMessageReadAck(port_ref,
                                  EventCast<UserMessageReadAckEvent>(&event));
    case EventType::kUpdatePreviousPeer:
      return OnUpdatePreviousPeer(port_ref, from_node,
                                  EventCast<UpdatePreviousPeerEvent>(&event));
  }
  return AcceptResult::Violation("unknown event type");
}

AcceptResult Node::OnUserMessage(const PortRef& port_ref,
                                 const NodeName& from_node,
                                 std::unique_ptr<UserMessageEvent> message) {
  if (from_node != name_) {
    // Check the whole port list before creating any port, so a bad message
    // leaves nothing behind.
    if (const char* bad = CheckAttachedPorts(from_node, *message)) {
      return AcceptResult::Violation(bad);
    }
    if (message->num_ports() != 0) {
      MutexLock lock(&ports_lock_);
      auto it = unread_ports_by_peer_.find(from_node);
      size_t unread = it == unread_ports_by_peer_.end() ? 0 : it->second;
      if (unread + message->num_ports() >
          options_.limits.max_unread_ports_per_peer) {
        return AcceptResult::Violation(
            "peer has too many ports waiting to be read here");
      }
    }
    // Even if the target cannot take the message, the ports must exist here
    // so that their routes can be closed properly.
    for (size_t i = 0; i < message->num_ports(); ++i) {
      if (AcceptPort(message->ports()[i], message->port_descriptors()[i],
                     from_node) != OK) {
        for (size_t j = 0; j < i; ++j) {
          PortRef accepted;
          if (GetPort(message->ports()[j], &accepted) == OK) {
            ClosePort(accepted);
          }
        }
        return AcceptResult::Violation(
            "attached port name already exists on this node");
      }
    }
  }

  bool has_next_message = false;
  bool message_accepted = false;
  bool should_forward_messages = false;
  const char* violation = nullptr;
  if (port_ref.is_valid()) {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    // After the last expected message nothing more is taken.
    if (CanAcceptMoreMessages(port)) {
      violation = CheckUserSequenceNum(port, message->sequence_num(),
                                       options_.limits.sequence_window);
      // The receive cap announced for the pipe (local sends are the
      // embedder's own business).
      if (!violation && from_node != name_ && port->state == Port::kReceiving) {
        violation = CheckQueueCap(port, message->GetSizeIfSerialized(),
                                  options_.limits);
      }
    }
    // A broken pipe reads what is in order, then peer_closed: a message
    // beyond a gap that can no longer be filled would never be read, and
    // would hold the ports it carries until this port closes.
    bool beyond_gap = port->peer_lost_unexpectedly &&
                      message->sequence_num() !=
                          port->message_queue.LastContiguousSequenceNum() + 1;
    if (CanAcceptMoreMessages(port) && !violation && !beyond_gap) {
      message_accepted = true;
      port->message_queue.AcceptMessage(std::move(message), &has_next_message);
      if (port->state == Port::kBuffering) {
        has_next_message = false;
      } else if (port->state == Port::kProxying) {
        has_next_message = false;
        should_forward_messages = true;
      }
    }
  }
  if (should_forward_messages) {
    ForwardUserMessagesFromProxy(port_ref);
    TryRemoveProxy(port_ref);
  }
  if (!message_accepted) {
    // The ports carried by a message nobody will read are orphans.
    for (size_t i = 0; i < message->num_ports(); ++i) {
      PortRef attached;
      if (GetPort(message->ports()[i], &attached) == OK)
        ClosePort(attached);
    }
    if (violation)
      return AcceptResult::Violation(violation);
    return port_ref.is_valid()
               ? AcceptResult::Ignored("port no longer takes messages")
               : kUnknownPort;
  }
  if (has_next_message)
    delegate_->PortStatusChanged(port_ref);
  return AcceptResult::Ok();
}

int Node::AcceptPort(const PortName& port_name,
                     const PortDescriptor& port_descriptor,
                     const NodeName& unread_from) {
  auto port =
      std::make_shared<Port>(port_descriptor.next_sequence_num_to_send,
                             port_descriptor.next_sequence_num_to_receive);
  port->state = Port::kReceiving;
  port->peer_node_name = port_descriptor.peer_node_name;
  port->peer_port_name = port_descriptor.peer_port_name;
  port->prev_node_name = port_descriptor.referring_node_name;
  port->prev_port_name = port_descriptor.referring_port_name;
  port->last_sequence_num_to_receive =
      port_descriptor.last_sequence_num_to_receive;
  port->peer_closed = port_descriptor.peer_closed;
  // Silent until the message that carries it is read (see GetMessage).
  port->message_queue.set_signalable(false);
  port->adopted_unread_from = unread_from;
  int rv = AddPortWithName(port_name, std::move(port));
  if (rv != OK)
    return rv;
  // The referring port may now forward to us.
  delegate_->ForwardEvent(port_descriptor.referring_node_name,
                          std::make_unique<PortAcceptedEvent>(
                              port_descriptor.referring_port_name,
                              kInvalidPortName, kInvalidSequenceNum));
  return OK;
}

AcceptResult Node::OnPortAccepted(const PortRef& port_ref,
                                  const NodeName& from_node) {
  if (!port_ref.is_valid())
    return kUnknownPort;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    // Only the node we sent the port to can accept it.
    if (port->state == Port::kBuffering && port->peer_node_name != from_node) {
      return AcceptResult::Violation("PortAccepted not from the port's peer");
    }
    if (port->state == Port::kClosed) {
      return AcceptResult::Ignored("PortAccepted for a dead proxy");
    }
  }
  if (BeginProxying(port_ref) != OK) {
    return AcceptResult::Violation("PortAccepted for a port not buffering");
  }
  return AcceptResult::Ok();
}

AcceptResult Node::OnObserveProxy(const PortRef& port_ref,
                                  const NodeName& from_node,
                                  std::unique_ptr<ObserveProxyEvent> event) {
  if (!event->port_name().is_valid()) {
    // Broadcast: a proxy died with its node's link; ports pointing at it
    // treat that as peer closure. Only the proxy's own node may say so —
    // believing any sender would let one node cut every route to another.
    if (event->proxy_node_name() != from_node) {
      return AcceptResult::Violation(
          "broadcast ObserveProxy names a proxy on another node");
    }
    DestroyAllPortsWithPeer(event->proxy_node_name(), event->proxy_port_name());
    return AcceptResult::Ok();
  }
  // The port may have closed already; its ObserveClosure will tell the rest.
  if (!port_ref.is_valid())
    return kUnknownPort;

  bool peer_changed = false;
  ScopedEvent event_to_forward;
  NodeName event_target_node;
  {
    MutexLock ports_lock(&ports_lock_);
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->peer_node_name == event->proxy_node_name() &&
        port->peer_port_name == event->proxy_port_name()) {
      if (port->state == Port::kReceiving) {
        // Ack on the old stream, then skip the proxy.
        uint64_t seq = port->next_control_sequence_num_to_send++;
        UpdatePortPeerAddress(port_ref.name(), port,
                              event->proxy_target_node_name(),
                              event->proxy_target_port_name());
        event_target_node = event->proxy_node_name();
        event_to_forward = std::make_unique<ObserveProxyAckEvent>(
            event->proxy_port_name(), port_ref.name(), seq,
            port->next_sequence_num_to_send - 1);
        peer_changed = true;
      } else {
        // A proxy cannot name its last sequence number; ask the proxy to
        // retry once we are gone (avoids a busy retry loop).
        port->send_on_proxy_removal.emplace(
            event->proxy_node_name(),
            std::make_unique<ObserveProxyAckEvent>(
                event->proxy_port_name(), port_ref.name(), kInvalidSequenceNum,
                kInvalidSequenceNum));
      }
    } else {
      // Pass it along the route until it reaches the port referring to the
      // proxy.
      event_target_node = port->peer_node_name;
      event_to_forward =
          PassAlongRoute(port_ref.name(), port, std::move(event));
    }
  }
  if (event_to_forward) {
    delegate_->ForwardEvent(event_target_node, std::move(event_to_forward));
  }
  if (peer_changed) {
    // The bypassed proxy may have eaten an ack or a request.
    MaybeResendAck(port_ref);
    MaybeResendAckRequest(port_ref);
    delegate_->PortStatusChanged(port_ref);
  }
  return AcceptResult::Ok();
}

AcceptResult Node::OnObserveProxyAck(const PortRef& port_ref,
                                     uint64_t last_sequence_num) {
  if (!port_ref.is_valid())
    return kUnknownPort;
  bool try_remove_proxy_immediately = false;
  bool erase_port = false;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state == Port::kProxying) {
      // An invalid number asks us to announce ourselves again later.
      try_remove_proxy_immediately = last_sequence_num != kInvalidSequenceNum;
      if (try_remove_proxy_immediately) {
        port->remove_proxy_on_last_message = true;
        port->last_sequence_num_to_receive = last_sequence_num;
      }
    } else if (port->state == Port::kClosed) {
      erase_port = true;
    } else {
      return AcceptResult::Violation("ObserveProxyAck to a port not proxying");
    }
  }
  if (erase_port) {
    ErasePort(port_ref.name());
    return AcceptResult::Ok();
  }
  if (try_remove_proxy_immediately) {
    TryRemoveProxy(port_ref);
  } else {
    InitiateProxyRemoval(port_ref);
  }
  return AcceptResult::Ok();
}

AcceptResult Node::OnObserveClosure(
    const PortRef& port_ref,
    std::unique_ptr<ObserveClosureEvent> event) {
  // Normal once the closure has travelled past the closed end.
  if (!port_ref.is_valid())
    return kUnknownPort;
  bool notify_delegate = false;
  bool try_remove_proxy = false;
  bool erase_port = false;
  NodeName peer_node_name;
  ScopedEvent to_send;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    // A second closure comes only after a route was cut: a proxy whose
    // previous peer was lost named where its stream ends, and the closed
    // end, which cannot know that, names messages that died with the lost
    // node. They never come: keep the lower end, or the port would wait
    // for them and never report its peer closed.
    const bool was_peer_closed = port->peer_closed;
    bool pass_along = true;
    if (was_peer_closed && !port->peer_lost_unexpectedly &&
        port->last_sequence_num_to_receive < event->last_sequence_num()) {
      event->set_last_sequence_num(port->last_sequence_num_to_receive);
    }
    port->peer_closed = true;
    port->last_sequence_num_to_receive = event->last_sequence_num();
    if (port->state == Port::kReceiving) {
      notify_delegate = true;
      // Beyond the receiving port the event only reaches dead-end proxies of
      // the other half of the cycle; tell them our last message.
      event->set_last_sequence_num(port->next_sequence_num_to_send - 1);
      // Closure acknowledges everything we sent.
      port->last_sequence_num_acknowledged =
          port->next_sequence_num_to_send - 1;
      // A port already peer-closed has told its route its last message
      // (passing the first closure on, or as the end whose previous peer
      // was lost), or its peer is gone. On a cut route its peer can be a
      // live port that passes this back: two ports would bounce it forever.
      pass_along = !was_peer_closed;
    } else if (port->state == Port::kClosed) {
      // The answer a zombie was waiting for.
      erase_port = true;
    } else {
      port->remove_proxy_on_last_message = true;
      if (port->state == Port::kProxying)
        try_remove_proxy = true;
    }
    peer_node_name = port->peer_node_name;
    if (pass_along)
      to_send = PassAlongRoute(port_ref.name(), port, std::move(event));
  }
  if (try_remove_proxy)
    TryRemoveProxy(port_ref);
  if (erase_port)
    ErasePort(port_ref.name());
  if (to_send)
    delegate_->ForwardEvent(peer_node_name, std::move(to_send));
  if (notify_delegate)
    delegate_->PortStatusChanged(port_ref);
  return AcceptResult::Ok();
}

AcceptResult Node::OnUserMessageReadAckRequest(
    const PortRef& port_ref,
    std::unique_ptr<UserMessageReadAckRequestEvent> event) {
  if (!port_ref.is_valid())
    return kUnknownPort;
  NodeName peer_node_name;
  ScopedEvent event_to_send;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    peer_node_name = port->peer_node_name;
    if (port->state == Port::kProxying || port->state == Port::kBuffering) {
      // A buffering port has already pointed its peer at its own new
      // incarnation, so it cannot answer for the route: like a proxy it
      // passes the request on, and the new port (which carries the read
      // position) answers it once the port is accepted.
      event_to_send = PassAlongRoute(port_ref.name(), port, std::move(event));
    } else if (port->state != Port::kClosed) {
      uint64_t requested = event->sequence_num_to_acknowledge();
      uint64_t current = port->message_queue.next_sequence_num() - 1;
      if (current >= requested) {
        event_to_send = std::make_unique<UserMessageReadAckEvent>(
            port->peer_port_name, port_ref.name(),
            port->next_control_sequence_num_to_send++, current);
        // A late request must not lower a pending future one.
        if (current > port->sequence_num_to_acknowledge) {
          port->sequence_num_to_acknowledge = current;
        }
      } else if (port->sequence_num_to_acknowledge <= current ||
                 port->sequence_num_to_acknowledge > requested) {
        // Requests may arrive out of order; the earliest future one wins.
        port->sequence_num_to_acknowledge = requested;
      }
    }
  }
  if (event_to_send) {
    delegate_->ForwardEvent(peer_node_name, std::move(event_to_send));
  }
  return AcceptResult::Ok();
}

AcceptResult Node::OnUserMessageReadAck(
    const PortRef& port_ref,
    std::unique_ptr<UserMessageReadAckEvent> event) {
  if (!port_ref.is_valid())
    return kUnknownPort;
  NodeName peer_node_name;
  ScopedEvent ack_request_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    uint64_t acked = event->sequence_num_acknowledged();
    if (acked >= port->next_sequence_num_to_send) {
      // A receiving port knows every number it sent. A proxy does not (the
      // moved port kept numbering), so there it is just stale.
      if (port->state == Port::kReceiving) {
        return AcceptResult::Violation("read ack for a message never sent");
      }
      return AcceptResult::Ignored("read ack at a proxy");
    }
    if (acked <= port->last_sequence_num_acknowledged) {
      return AcceptResult::Ignored("late or duplicate read ack");
    }
    port->last_sequence_num_acknowledged = acked;
    if (port->sequence_num_acknowledge_interval != 0 && !port->peer_closed &&
        port->state == Port::kReceiving) {
      peer_node_name = port->peer_node_name;
      ack_request_event = std::make_unique<UserMessageReadAckRequestEvent>(
          port->peer_port_name, port_ref.name(),
          port->next_control_sequence_num_to_send++,
          port->last_sequence_num_acknowledged +
              port->sequence_num_acknowledge_interval);
    }
  }
  if (ack_request_event) {
    delegate_->ForwardEvent(peer_node_name, std::move(ack_request_event));
  }
  delegate_->PortStatusChanged(port_ref);
  return AcceptResult::Ok();
}

AcceptResult Node::OnUpdatePreviousPeer(
    const PortRef& port_ref,
    const NodeName& from_node,
    std::unique_ptr<UpdatePreviousPeerEvent> event) {
  if (!port_ref.is_valid())
    return kUnknownPort;
  if (!event->new_node_name().is_valid() ||
      !event->new_port_name().is_valid()) {
    return AcceptResult::Violation("UpdatePreviousPeer to an invalid name");
  }
  MutexLock ports_lock(&ports_lock_);
  SinglePortLocker locker(&port_ref);
  Port* port = locker.port();
  port->prev_node_name = event->new_node_name();
  port->prev_port_name = event->new_port_name();
  port->prev_announced_by = from_node;
  // AcceptEvent increments after the handler: the new sender starts at 1.
  port->next_control_sequence_num_to_receive = kInitialSequenceNum - 1;
  if (lost_nodes_.count(port->prev_node_name) != 0) {
    // Handed over to a port whose node is already lost: nothing will come.
    lost_prevs_to_flush_.emplace_back(port_ref, port->prev_node_name);
    lost_flush_pending_.store(true, std::memory_order_release);
  } else if (port->prev_node_name == name_ && from_node != name_ &&
             ports_.count(port->prev_port_name) == 0) {
    awaited_prevs_[port->prev_port_name] = AwaitedPrev{port_ref, from_node};
  }
  return AcceptResult::Ok();
}

int Node::AllowPortMerge(const PortRef& port_ref,
                         const NodeName& allowed_node) {
  if (!port_ref.is_valid())
    return ERROR_INVALID_ARGUMENT;
  SinglePortLocker locker(&port_ref);
  Port* port = locker.port();
  if (port->state != Port::kReceiving)
    return ERROR_PORT_STATE_UNEXPECTED;
  port->pending_merge_peer = true;
  port->pending_merge_peer_node = allowed_node;
  return OK;
}

NodeStats Node::GetStats() {
  NodeStats stats;
  MutexLock lock(&ports_lock_);
  for (auto& [name, port] : ports_) {
    PortRef ref(name, port);
    SinglePortLocker locker(&ref);
    Port* p = locker.port();
    ++stats.ports;
    switch (p->state) {
      case Port::kUninitialized:
        ++stats.uninitialized;
        break;
      case Port::kReceiving:
        ++stats.receiving;
        break;
      case Port::kBuffering:
        ++stats.buffering;
        break;
      case Port::kProxying:
        ++stats.proxying;
        break;
      case Port::kClosed:
        ++stats.zombies;
        break;
    }
    stats.queued_messages += p->message_queue.queued_message_count();
    stats.queued_message_bytes += p->message_queue.queued_num_bytes();
    stats.buffered_events +=
        p->buffered_event_count() + p->control_message_queue.size();
    stats.buffered_event_bytes += p->buffered_event_bytes();
    for (const auto& entry : p->control_message_queue) {
      stats.buffered_event_bytes += entry.second->GetSerializedSize();
    }
  }
  stats.proxies = stats.buffering + stats.proxying;
  buffer_budget_.Largest(&stats.buffered_events_largest_peer,
                         &stats.buffered_event_bytes_largest_peer);
  return stats;
}

std::string Node::DescribeNonReceivingPorts() {
  static constexpr const char* kStateNames[] = {
      "uninitialized", "receiving", "buffering", "proxying", "closed"};
  std::string text;
  MutexLock lock(&ports_lock_);
  for (auto& [name, port] : ports_) {
    PortRef ref(name, port);
    SinglePortLocker locker(&ref);
    Port* p = locker.port();
    if (p->state == Port::kReceiving)
      continue;
    text += StrFormat(
        "%s %s peer %s:%s prev %s:%s next_read %llu last_to_receive %llu "
        "queued %zu buffered %zu%s%s%s\n",
        name.ToString().c_str(), kStateNames[p->state],
        p->peer_node_name.ToString().c_str(),
        p->peer_port_name.ToString().c_str(),
        p->prev_node_name.ToString().c_str(),
        p->prev_port_name.ToString().c_str(),
        static_cast<unsigned long long>(p->message_queue.next_sequence_num()),
        static_cast<unsigned long long>(p->last_sequence_num_to_receive),
        p->message_queue.queued_message_count(), p->buffered_event_count(),
        p->remove_proxy_on_last_message ? " remove_on_last" : "",
        p->peer_closed ? " peer_closed" : "",
        p->peer_lost_unexpectedly ? " peer_lost" : "");
  }
  return text;
}

int Node::AddPortWithName(const PortName& port_name,
                          std::shared_ptr<Port> port) {
  MutexLock lock(&ports_lock_);
  if (ports_.count(port_name) != 0)
    return ERROR_PORT_EXISTS;
  port->budget = &buffer_budget_;
  awaited_prevs_.erase(port_name);
  if (port->peer_port_name.is_valid()) {
    peer_port_maps_[port->peer_node_name][port->peer_port_name].insert(
        port_name);
    NoteLostPeer(port->peer_node_name);
  }
  if (port->adopted_unread_from.is_valid()) {
    ++unread_ports_by_peer_[port->adopted_unread_from];
  }
  ports_.emplace(port_name, std::move(port));
  return OK;
}

void Node::ReleaseUnreadPort(const NodeName& peer) {
  auto it = unread_ports_by_peer_.find(peer);
  if (it == unread_ports_by_peer_.end())
    return;
  if (--it->second == 0)
    unread_ports_by_peer_.erase(it);
}

void Node::ErasePort(const PortName& port_name) {
  std::shared_ptr<Port> port;
  {
    MutexLock lock(&ports_lock_);
    auto it = ports_.find(port_name);
    if (it == ports_.end())
      return;
    port = std::move(it->second);
    ports_.erase(it);
    RemoveFromPeerPortMap(port_name, port.get());
    PortRef ref(port_name, port);
    SinglePortLocker locker(&ref);
    if (locker.port()->adopted_unread_from.is_valid()) {
      ReleaseUnreadPort(locker.port()->adopted_unread_from);
      locker.port()->adopted_unread_from = kInvalidNodeName;
    }
  }
  // Messages are destroyed outside every lock; ports carried by messages
  // that were never handled still need closing.
  std::vector<std::unique_ptr<UserMessageEvent>> messages;
  std::vector<Port::PendingMessage> pending_messages;
  {
    PortRef ref(port_name, std::move(port));
    SinglePortLocker locker(&ref);
    locker.port()->message_queue.TakeAllMessages(&messages);
    locker.port()->TakePendingMessages(&pending_messages);
  }
  // Messages left beyond a gap no one will fill carry ports that would leak.
  ClosePortsInMessages(messages);
  ClosePendingMessagePorts(pending_messages);
}

void Node::UpdatePortPeerAddress(const PortName& local_port_name,
                                 Port* local_port,
                                 const NodeName& new_peer_node,
                                 const PortName& new_peer_port) {
  RemoveFromPeerPortMap(local_port_name, local_port);
  local_port->peer_node_name = new_peer_node;
  local_port->peer_port_name = new_peer_port;
  local_port->next_control_sequence_num_to_send = kInitialSequenceNum;
  if (new_peer_port.is_valid()) {
    peer_port_maps_[new_peer_node][new_peer_port].insert(local_port_name);
    NoteLostPeer(new_peer_node);
  }
}

void Node::NoteLostPeer(const NodeName& node) {
  if (lost_nodes_.count(node) == 0)
    return;
  lost_peers_to_flush_.push_back(node);
  lost_flush_pending_.store(true, std::memory_order_release);
}

void Node::FlushLostRoutes() {
  for (;;) {
    std::vector<NodeName> peers;
    std::vector<std::pair<PortRef, NodeName>> prevs;
    {
      MutexLock lock(&ports_lock_);
      if (lost_peers_to_flush_.empty() && lost_prevs_to_flush_.empty()) {
        lost_flush_pending_.store(false, std::memory_order_release);
        return;
      }
      peers.swap(lost_peers_to_flush_);
      prevs.swap(lost_prevs_to_flush_);
    }
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    for (const NodeName& node : peers)
      DestroyAllPortsWithPeer(node, kInvalidPortName);
    for (const auto& [port_ref, node] : prevs)
      OnPreviousPeerLost(port_ref, node);
  }
}

void Node::RemoveFromPeerPortMap(const PortName& local_port_name,
                                 Port* local_port) {
  if (!local_port->peer_port_name.is_valid())
    return;
  auto node_it = peer_port_maps_.find(local_port->peer_node_name);
  if (node_it == peer_port_maps_.end())
    return;
  auto& node_map = node_it->second;
  auto port_it = node_map.find(local_port->peer_port_name);
  if (port_it == node_map.end())
    return;
  port_it->second.erase(local_port_name);
  if (port_it->second.empty())
    node_map.erase(port_it);
  if (node_map.empty())
    peer_port_maps_.erase(node_it);
}

void Node::SwapPortPeers(const PortName& port0_name,
                         Port* port0,
                         const PortName& port1_name,
                         Port* port1) {
  RemoveFromPeerPortMap(port0_name, port0);
  RemoveFromPeerPortMap(port1_name, port1);
  std::swap(port0->peer_node_name, port1->peer_node_name);
  std::swap(port0->peer_port_name, port1->peer_port_name);
  if (port0->peer_port_name.is_valid()) {
    peer_port_maps_[port0->peer_node_name][port0->peer_port_name].insert(
        port0_name);
  }
  if (port1->peer_port_name.is_valid()) {
    peer_port_maps_[port1->peer_node_name][port1->peer_port_name].insert(
        port1_name);
  }
}

const char* Node::CheckAttachedPorts(const NodeName& from_node,
                                     const UserMessageEvent& message) const {
  size_t n = message.num_ports();
  if (n > options_.limits.max_attached_ports_per_message) {
    return "too many ports attached to a message";
  }
  for (size_t i = 0; i < n; ++i) {
    const PortName& name = message.ports()[i];
    const PortDescriptor& d = message.port_descriptors()[i];
    if (!name.is_valid() || !d.peer_node_name.is_valid() ||
        !d.peer_port_name.is_valid() || !d.referring_port_name.is_valid()) {
      return "attached port with an invalid name";
    }
    if (d.referring_node_name != from_node) {
      return "attached port refers to a node other than the sender";
    }
    for (size_t j = 0; j < i; ++j) {
      if (message.ports()[j] == name)
        return "duplicate attached port name";
    }
  }
  return nullptr;
}

void Node::ClosePendingMessagePorts(
    const std::vector<Port::PendingMessage>& messages) {
  for (const auto& [from_node, message] : messages) {
    // A message from another node was never handled, so its ports were
    // never adopted: adopt them now (which lets their referring proxies
    // proceed) and close them, as OnUserMessage does for a message nobody
    // takes. Ports of a local message are ordinary local ports.
    bool remote = from_node != name_;
    if (remote && CheckAttachedPorts(from_node, *message) != nullptr)
      continue;
    for (size_t i = 0; i < message->num_ports(); ++i) {
      if (remote && AcceptPort(message->ports()[i],
                               message->port_descriptors()[i]) != OK) {
        continue;
      }
      PortRef ref;
      if (GetPort(message->ports()[i], &ref) == OK)
        ClosePort(ref);
    }
  }
}

void Node::ClosePortsInMessages(
    const std::vector<std::unique_ptr<UserMessageEvent>>& messages) {
  for (const auto& message : messages) {
    for (size_t i = 0; i < message->num_ports(); ++i) {
      PortRef ref;
      if (GetPort(message->ports()[i], &ref) == OK)
        ClosePort(ref);
    }
  }
}

void Node::SendUpdatePreviousPeer(const PendingUpdatePreviousPeer& update) {
  delegate_->ForwardEvent(
      update.receiver, std::make_unique<UpdatePreviousPeerEvent>(
                           update.port, update.from_port, update.sequence_num,
                           update.new_prev_node, update.new_prev_port));
}

}  // namespace shmports::ports
