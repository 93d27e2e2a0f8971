// Node: moving ports between nodes (proxies and their removal), merging
// routes, and losing a node. The public API and the other handlers are in
// node.cc.
#include <algorithm>
#include <utility>

#include "core/base/log.h"
#include "core/base/str_format.h"
#include "core/ports/node.h"
#include "core/ports/port_locker.h"

namespace shmports::ports {

bool CanAcceptMoreMessages(const Port* port);  // node.cc

int Node::PrepareToForwardUserMessage(const PortRef& forwarding_port_ref,
                                      Port::State expected_port_state,
                                      bool ignore_closed_peer,
                                      UserMessageEvent* message,
                                      NodeName* forward_to_node) {
  const size_t num_ports = message->num_ports();
  if (num_ports == 0) {
    // The common case: one lock, no table lookups, nothing to convert.
    SinglePortLocker locker(&forwarding_port_ref);
    Port* port = locker.port();
    if (port->state != expected_port_state)
      return ERROR_PORT_STATE_UNEXPECTED;
    if (port->peer_closed && !ignore_closed_peer) {
      return ERROR_PORT_PEER_CLOSED;
    }
    if (message->sequence_num() == 0) {
      message->set_sequence_num(port->next_sequence_num_to_send++);
    }
    message->set_port_name(port->peer_port_name);
    message->set_from_port(forwarding_port_ref.name());
    message->set_control_sequence_num(
        port->next_control_sequence_num_to_send++);
    *forward_to_node = port->peer_node_name;
    return OK;
  }
  for (size_t i = 0; i < num_ports; ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (message->ports()[i] == message->ports()[j]) {
        return ERROR_INVALID_ARGUMENT;
      }
    }
  }
  std::vector<PortRef> attached_port_refs(num_ports);
  std::vector<PendingUpdatePreviousPeer> pending_updates;
  const PortRef* inline_lock_list[8];
  std::vector<const PortRef*> heap_lock_list;
  const PortRef** ports_to_lock = inline_lock_list;
  if (num_ports + 1 > 8) {
    heap_lock_list.resize(num_ports + 1);
    ports_to_lock = heap_lock_list.data();
  }
  ports_to_lock[0] = &forwarding_port_ref;
  bool target_is_remote = false;

  for (;;) {
    NodeName target_node_name;
    {
      SinglePortLocker locker(&forwarding_port_ref);
      target_node_name = locker.port()->peer_node_name;
    }
    MutexLock ports_lock(&ports_lock_);
    for (size_t i = 0; i < num_ports; ++i) {
      auto it = ports_.find(message->ports()[i]);
      if (it == ports_.end())
        return ERROR_INVALID_ARGUMENT;
      attached_port_refs[i] = PortRef(message->ports()[i], it->second);
      ports_to_lock[i + 1] = &attached_port_refs[i];
    }
    PortLocker locker(ports_to_lock, num_ports + 1);
    Port* forwarding_port = locker.GetPort(forwarding_port_ref);

    if (forwarding_port->peer_node_name != target_node_name) {
      // The route moved while we were unlocked. Mojo restarts here so that a
      // message newly routed off-node gets its external-routing hook run;
      // payloads here are bytes already, so the new target is simply taken.
      target_node_name = forwarding_port->peer_node_name;
    }
    target_is_remote = target_node_name != name_;

    if (forwarding_port->state != expected_port_state) {
      return ERROR_PORT_STATE_UNEXPECTED;
    }
    if (forwarding_port->peer_closed && !ignore_closed_peer) {
      return ERROR_PORT_PEER_CLOSED;
    }
    // Proxies keep the number the original sender assigned.
    bool assigned_sequence_num = false;
    if (message->sequence_num() == 0) {
      message->set_sequence_num(forwarding_port->next_sequence_num_to_send++);
      assigned_sequence_num = true;
    }
    for (size_t i = 0; i < num_ports; ++i) {
      Port* attached_port = locker.GetPort(attached_port_refs[i]);
      int error = OK;
      if (attached_port->state != Port::kReceiving) {
        error = ERROR_PORT_STATE_UNEXPECTED;
      } else if (attached_port_refs[i].name() ==
                 forwarding_port->peer_port_name) {
        error = ERROR_PORT_CANNOT_SEND_PEER;
      }
      if (error != OK) {
        if (assigned_sequence_num) {
          forwarding_port->next_sequence_num_to_send--;
          message->set_sequence_num(0);
        }
        return error;
      }
    }
    if (target_is_remote) {
      // Ports move (and get new names) only when they leave the node; a
      // local transfer hands over the same Port object.
      pending_updates.resize(num_ports);
      for (size_t i = 0; i < num_ports; ++i) {
        ConvertToProxy(locker.GetPort(attached_port_refs[i]), target_node_name,
                       message->ports() + i, message->port_descriptors() + i,
                       &pending_updates[i]);
      }
    }
    message->set_port_name(forwarding_port->peer_port_name);
    message->set_from_port(forwarding_port_ref.name());
    message->set_control_sequence_num(
        forwarding_port->next_control_sequence_num_to_send++);
    *forward_to_node = target_node_name;
    break;
  }

  for (const auto& update : pending_updates)
    SendUpdatePreviousPeer(update);
  if (target_is_remote) {
    // A local peer of a port that just left must learn its peer is remote.
    for (size_t i = 0; i < num_ports; ++i) {
      const PortDescriptor& descriptor = message->port_descriptors()[i];
      if (descriptor.peer_node_name != name_)
        continue;
      PortRef local_peer;
      if (GetPort(descriptor.peer_port_name, &local_peer) == OK) {
        delegate_->PortStatusChanged(local_peer);
      }
    }
  }
  return OK;
}

void Node::ConvertToProxy(Port* port,
                          const NodeName& to_node_name,
                          PortName* port_name,
                          PortDescriptor* port_descriptor,
                          PendingUpdatePreviousPeer* pending_update) {
  PortName local_port_name = *port_name;
  PortName new_port_name = GenerateRandomPortName();

  // The old peer hears, as the last event of our stream to it, that from now
  // on the port's new incarnation sends to it.
  pending_update->receiver = port->peer_node_name;
  pending_update->port = port->peer_port_name;
  pending_update->from_port = local_port_name;
  pending_update->sequence_num = port->next_control_sequence_num_to_send++;
  pending_update->new_prev_node = to_node_name;
  pending_update->new_prev_port = new_port_name;

  // Buffer until the new port exists (PortAccepted).
  port->state = Port::kBuffering;
  port->EndStreamIfPeerLost();
  if (port->peer_closed)
    port->remove_proxy_on_last_message = true;

  *port_name = new_port_name;
  port_descriptor->peer_node_name = port->peer_node_name;
  port_descriptor->peer_port_name = port->peer_port_name;
  port_descriptor->referring_node_name = name_;
  port_descriptor->referring_port_name = local_port_name;
  port_descriptor->next_sequence_num_to_send = port->next_sequence_num_to_send;
  port_descriptor->next_sequence_num_to_receive =
      port->message_queue.next_sequence_num();
  port_descriptor->last_sequence_num_to_receive =
      port->last_sequence_num_to_receive;
  port_descriptor->peer_closed = port->peer_closed;

  UpdatePortPeerAddress(local_port_name, port, to_node_name, new_port_name);
}

int Node::BeginProxying(const PortRef& port_ref) {
  std::vector<std::pair<NodeName, ScopedEvent>> control_message_queue;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kBuffering)
      return ERROR_PORT_STATE_UNEXPECTED;
    port->state = Port::kProxying;
    std::swap(port->control_message_queue, control_message_queue);
  }
  for (auto& [node, event] : control_message_queue) {
    delegate_->ForwardEvent(node, std::move(event));
  }
  int rv = ForwardUserMessagesFromProxy(port_ref);
  if (rv != OK)
    return rv;
  MaybeForwardAckRequest(port_ref);

  bool try_remove_proxy_immediately;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    // The peer's node may have been lost meanwhile (zombie): nothing to do.
    if (port->state != Port::kProxying)
      return OK;
    try_remove_proxy_immediately = port->remove_proxy_on_last_message;
  }
  if (try_remove_proxy_immediately) {
    TryRemoveProxy(port_ref);
  } else {
    InitiateProxyRemoval(port_ref);
  }
  return OK;
}

int Node::ForwardUserMessagesFromProxy(const PortRef& port_ref) {
  for (;;) {
    std::unique_ptr<UserMessageEvent> message;
    {
      SinglePortLocker locker(&port_ref);
      locker.port()->message_queue.GetNextMessage(&message, nullptr);
      if (!message)
        break;
    }
    NodeName target_node;
    int rv = PrepareToForwardUserMessage(port_ref, Port::kProxying,
                                         /*ignore_closed_peer=*/true,
                                         message.get(), &target_node);
    {
      // Only now may another thread conclude the proxy has forwarded its
      // last message and erase it: the message has its routing.
      SinglePortLocker locker(&port_ref);
      locker.port()->message_queue.MessageProcessed();
    }
    if (rv != OK) {
      // The message cannot be forwarded; do not let its ports leak.
      for (size_t i = 0; i < message->num_ports(); ++i) {
        PortRef attached;
        if (GetPort(message->ports()[i], &attached) == OK)
          ClosePort(attached);
      }
      return rv;
    }
    delegate_->ForwardEvent(target_node, std::move(message));
  }
  return OK;
}

void Node::InitiateProxyRemoval(const PortRef& port_ref) {
  NodeName peer_node_name;
  PortName peer_port_name;
  uint64_t sequence_num;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kProxying)
      return;
    peer_node_name = port->peer_node_name;
    peer_port_name = port->peer_port_name;
    sequence_num = port->next_control_sequence_num_to_send++;
  }
  // Announce ourselves along the route; whoever refers to us will bypass us
  // and answer with ObserveProxyAck.
  delegate_->ForwardEvent(
      peer_node_name, std::make_unique<ObserveProxyEvent>(
                          peer_port_name, port_ref.name(), sequence_num, name_,
                          port_ref.name(), peer_node_name, peer_port_name));
}

void Node::TryRemoveProxy(const PortRef& port_ref) {
  NodeName removal_target_node;
  ScopedEvent removal_event;
  PendingUpdatePreviousPeer update;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kProxying)
      return;
    // Wait for ObserveProxyAck (or closure), then for the last message.
    if (!port->remove_proxy_on_last_message)
      return;
    if (CanAcceptMoreMessages(port))
      return;
    if (port->send_on_proxy_removal) {
      removal_target_node = port->send_on_proxy_removal->first;
      removal_event = std::move(port->send_on_proxy_removal->second);
      port->send_on_proxy_removal.reset();
      if (removal_event) {
        removal_event->set_control_sequence_num(
            port->next_control_sequence_num_to_send++);
      }
    }
    // The peer accepts events from our predecessor from now on. It carries
    // a higher number than the removal event sent after it; the peer buffers
    // it until the removal event has arrived.
    update.receiver = port->peer_node_name;
    update.port = port->peer_port_name;
    update.from_port = port_ref.name();
    update.sequence_num = port->next_control_sequence_num_to_send++;
    update.new_prev_node = port->prev_node_name;
    update.new_prev_port = port->prev_port_name;
    // Nothing else may act on this proxy now; a second caller returns above.
    port->state = Port::kClosed;
  }
  SendUpdatePreviousPeer(update);
  ErasePort(port_ref.name());
  if (removal_event) {
    delegate_->ForwardEvent(removal_target_node, std::move(removal_event));
  }
}

void Node::MaybeResendAckRequest(const PortRef& port_ref) {
  NodeName peer_node_name;
  ScopedEvent ack_request_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kReceiving)
      return;
    if (port->sequence_num_acknowledge_interval == 0)
      return;
    peer_node_name = port->peer_node_name;
    ack_request_event = std::make_unique<UserMessageReadAckRequestEvent>(
        port->peer_port_name, port_ref.name(),
        port->next_control_sequence_num_to_send++,
        port->last_sequence_num_acknowledged +
            port->sequence_num_acknowledge_interval);
  }
  delegate_->ForwardEvent(peer_node_name, std::move(ack_request_event));
}

void Node::MaybeForwardAckRequest(const PortRef& port_ref) {
  NodeName peer_node_name;
  ScopedEvent ack_request_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kProxying)
      return;
    if (port->sequence_num_to_acknowledge == 0)
      return;
    peer_node_name = port->peer_node_name;
    ack_request_event = std::make_unique<UserMessageReadAckRequestEvent>(
        port->peer_port_name, port_ref.name(),
        port->next_control_sequence_num_to_send++,
        port->sequence_num_to_acknowledge);
    port->sequence_num_to_acknowledge = 0;
  }
  delegate_->ForwardEvent(peer_node_name, std::move(ack_request_event));
}

void Node::MaybeResendAck(const PortRef& port_ref) {
  NodeName peer_node_name;
  ScopedEvent ack_event;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (port->state != Port::kReceiving)
      return;
    uint64_t last_sequence_num_read =
        port->message_queue.next_sequence_num() - 1;
    if (port->sequence_num_to_acknowledge == 0 || last_sequence_num_read == 0) {
      return;
    }
    peer_node_name = port->peer_node_name;
    ack_event = std::make_unique<UserMessageReadAckEvent>(
        port->peer_port_name, port_ref.name(),
        port->next_control_sequence_num_to_send++, last_sequence_num_read);
  }
  delegate_->ForwardEvent(peer_node_name, std::move(ack_event));
}

int Node::MergePorts(const PortRef& port_ref,
                     const NodeName& destination_node_name,
                     const PortName& destination_port_name) {
  if (!port_ref.is_valid() || !destination_node_name.is_valid() ||
      !destination_port_name.is_valid()) {
    return ERROR_INVALID_ARGUMENT;
  }
  PortName new_port_name;
  PortDescriptor new_port_descriptor;
  PendingUpdatePreviousPeer update;
  {
    MutexLock ports_lock(&ports_lock_);
    SinglePortLocker locker(&port_ref);
    if (locker.port()->state != Port::kReceiving) {
      return ERROR_PORT_STATE_UNEXPECTED;
    }
    // The port travels to the destination node, which splices it into its
    // route atomically there.
    new_port_name = port_ref.name();
    ConvertToProxy(locker.port(), destination_node_name, &new_port_name,
                   &new_port_descriptor, &update);
  }
  SendUpdatePreviousPeer(update);
  if (new_port_descriptor.peer_node_name == name_ &&
      destination_node_name != name_) {
    PortRef local_peer;
    if (GetPort(new_port_descriptor.peer_port_name, &local_peer) == OK) {
      delegate_->PortStatusChanged(local_peer);
    }
  }
  delegate_->ForwardEvent(
      destination_node_name,
      std::make_unique<MergePortEvent>(destination_port_name, kInvalidPortName,
                                       kInvalidSequenceNum, new_port_name,
                                       new_port_descriptor));
  MaybeFlushLostRoutes();
  return OK;
}

AcceptResult Node::OnMergePort(const PortRef& port_ref,
                               const NodeName& from_node,
                               std::unique_ptr<MergePortEvent> event) {
  const PortDescriptor& descriptor = event->new_port_descriptor();
  if (!event->new_port_name().is_valid() ||
      !descriptor.peer_node_name.is_valid() ||
      !descriptor.peer_port_name.is_valid() ||
      descriptor.referring_node_name != from_node ||
      !descriptor.referring_port_name.is_valid()) {
    return AcceptResult::Violation("MergePort with a malformed descriptor");
  }
  // Accept the new port first, whatever happens next: otherwise the far
  // receiving port of its route could be stranded.
  if (AcceptPort(event->new_port_name(), descriptor) != OK) {
    return AcceptResult::Violation("MergePort new port name already exists");
  }
  PortRef new_port_ref;
  if (GetPort(event->new_port_name(), &new_port_ref) != OK) {
    return AcceptResult::Ignored("merged port vanished");
  }
  if (!port_ref.is_valid()) {
    ClosePort(new_port_ref);
    return AcceptResult::Ignored("MergePort to an unknown port");
  }
  const char* violation = nullptr;
  {
    SinglePortLocker locker(&port_ref);
    Port* port = locker.port();
    if (!port->pending_merge_peer) {
      violation = "MergePort to a port not pending a merge";
    } else if (port->pending_merge_peer_node.is_valid() &&
               port->pending_merge_peer_node != from_node) {
      violation = "MergePort sender is not the node allowed to merge";
    } else {
      port->pending_merge_peer = false;
      port->pending_merge_peer_node = kInvalidNodeName;
    }
  }
  if (violation) {
    SHMPORTS_LOG(kError, "%s: port %s, sender node %s", violation,
                 event->port_name().ToString().c_str(),
                 from_node.ToString().c_str());
    // The intruder's own route is closed; the target stays pending so the
    // legitimate merge can still happen.
    ClosePort(new_port_ref);
    return AcceptResult::Violation(violation);
  }
  if (MergePortsInternal(port_ref, new_port_ref,
                         /*allow_close_on_bad_state=*/false) != OK) {
    return AcceptResult::Ignored("merge target no longer receiving");
  }
  return AcceptResult::Ok();
}

int Node::MergeLocalPorts(const PortRef& port0_ref, const PortRef& port1_ref) {
  if (!port0_ref.is_valid() || !port1_ref.is_valid() ||
      port0_ref.name() == port1_ref.name()) {
    return ERROR_INVALID_ARGUMENT;
  }
  int rv = MergePortsInternal(port0_ref, port1_ref,
                              /*allow_close_on_bad_state=*/true);
  MaybeFlushLostRoutes();
  return rv;
}

int Node::MergePortsInternal(const PortRef& port0_ref,
                             const PortRef& port1_ref,
                             bool allow_close_on_bad_state) {
  const PortRef* port_refs[2] = {&port0_ref, &port1_ref};
  PendingUpdatePreviousPeer update0;
  PendingUpdatePreviousPeer update1;
  uint64_t original_sequence_number0 = 0;
  uint64_t original_sequence_number1 = 0;
  bool close_port0 = false;
  bool close_port1 = false;
  bool ok = true;
  {
    MutexLock ports_lock(&ports_lock_);
    PortLocker locker(port_refs, 2);
    Port* port0 = locker.GetPort(port0_ref);
    Port* port1 = locker.GetPort(port1_ref);
    // Both receiving, not each other's peer, and neither has sent a user
    // message (their sequence numbering would clash).
    if (port0->state != Port::kReceiving || port1->state != Port::kReceiving ||
        (port0->peer_node_name == name_ &&
         port0->peer_port_name == port1_ref.name()) ||
        (port1->peer_node_name == name_ &&
         port1->peer_port_name == port0_ref.name()) ||
        port0->next_sequence_num_to_send != kInitialSequenceNum ||
        port1->next_sequence_num_to_send != kInitialSequenceNum) {
      // Closing a proxy abruptly would break its route: only receiving
      // ports are closed unless the caller asked otherwise.
      close_port0 =
          port0->state == Port::kReceiving || allow_close_on_bad_state;
      close_port1 =
          port1->state == Port::kReceiving || allow_close_on_bad_state;
      ok = false;
    } else {
      update0 = {port0->peer_node_name,
                 port0->peer_port_name,
                 port0_ref.name(),
                 port0->next_control_sequence_num_to_send++,
                 name_,
                 port1_ref.name()};
      update1 = {port1->peer_node_name,
                 port1->peer_port_name,
                 port1_ref.name(),
                 port1->next_control_sequence_num_to_send++,
                 name_,
                 port0_ref.name()};
      SwapPortPeers(port0_ref.name(), port0, port1_ref.name(), port1);
      port0->state = Port::kProxying;
      port1->state = Port::kProxying;
      port0->EndStreamIfPeerLost();
      port1->EndStreamIfPeerLost();
      original_sequence_number0 = port0->next_control_sequence_num_to_send;
      original_sequence_number1 = port1->next_control_sequence_num_to_send;
      port0->next_control_sequence_num_to_send = kInitialSequenceNum;
      port1->next_control_sequence_num_to_send = kInitialSequenceNum;
      if (port0->peer_closed)
        port0->remove_proxy_on_last_message = true;
      if (port1->peer_closed)
        port1->remove_proxy_on_last_message = true;
    }
  }
  if (!ok) {
    if (close_port0)
      ClosePort(port0_ref);
    if (close_port1)
      ClosePort(port1_ref);
    return ERROR_PORT_STATE_UNEXPECTED;
  }

  if (ForwardUserMessagesFromProxy(port0_ref) == OK &&
      ForwardUserMessagesFromProxy(port1_ref) == OK) {
    SendUpdatePreviousPeer(update0);
    SendUpdatePreviousPeer(update1);
    for (const PortRef* port_ref : port_refs) {
      bool try_remove_proxy_immediately = false;
      ScopedEvent closure_event;
      NodeName closure_event_target_node;
      {
        SinglePortLocker locker(port_ref);
        Port* port = locker.port();
        if (port->state != Port::kProxying)
          continue;
        try_remove_proxy_immediately = port->remove_proxy_on_last_message;
        if (try_remove_proxy_immediately || port->peer_closed) {
          // One side of the cycle is closed: tell the other route.
          closure_event_target_node = port->peer_node_name;
          closure_event = std::make_unique<ObserveClosureEvent>(
              port->peer_port_name, port_ref->name(),
              port->next_control_sequence_num_to_send++,
              port->last_sequence_num_to_receive);
        }
      }
      if (try_remove_proxy_immediately) {
        TryRemoveProxy(*port_ref);
      } else {
        InitiateProxyRemoval(*port_ref);
      }
      if (closure_event) {
        delegate_->ForwardEvent(closure_event_target_node,
                                std::move(closure_event));
      }
    }
    return OK;
  }

  // Forwarding failed: undo the swap so both ports are consistent, then close
  // them.
  {
    MutexLock ports_lock(&ports_lock_);
    PortLocker locker(port_refs, 2);
    Port* port0 = locker.GetPort(port0_ref);
    Port* port1 = locker.GetPort(port1_ref);
    SwapPortPeers(port0_ref.name(), port0, port1_ref.name(), port1);
    port0->remove_proxy_on_last_message = false;
    port1->remove_proxy_on_last_message = false;
    port0->state = Port::kReceiving;
    port1->state = Port::kReceiving;
    port0->next_control_sequence_num_to_send = original_sequence_number0;
    port1->next_control_sequence_num_to_send = original_sequence_number1;
  }
  ClosePort(port0_ref);
  ClosePort(port1_ref);
  return ERROR_PORT_STATE_UNEXPECTED;
}

int Node::LostConnectionToNode(const NodeName& node) {
  if (!node.is_valid())
    return ERROR_INVALID_ARGUMENT;
  {
    MutexLock lock(&ports_lock_);
    lost_nodes_.insert(node);
    // Ports the lost node was sending here and that have not arrived never
    // will: whoever was told to expect events from them has lost its
    // previous peer.
    for (auto it = awaited_prevs_.begin(); it != awaited_prevs_.end();) {
      if (it->second.from == node) {
        lost_prevs_to_flush_.emplace_back(it->second.waiting, name_);
        lost_flush_pending_.store(true, std::memory_order_release);
        it = awaited_prevs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  DestroyAllPortsWithPeer(node, kInvalidPortName);
  DestroyAllPortsWithPrev(node);
  MaybeFlushLostRoutes();
  DiscardEventsFromLostNode(node);
  return OK;
}

// Runs after the routes through the lost node were handled, so that a
// stream of its that those could still use (OnPreviousPeerLost adopts one
// that starts at the first number) was drained first. What is left from it
// waits for a number only it could send, or for an UpdatePreviousPeer
// naming one of its ports — and such a port is treated as lost on arrival
// (OnUpdatePreviousPeer). Either way it is never next; without this, events
// forged onto other routes by a dropped peer stayed, with their budget
// charge, until those ports closed.
void Node::DiscardEventsFromLostNode(const NodeName& node) {
  std::vector<PortRef> ports;
  {
    MutexLock ports_lock(&ports_lock_);
    for (auto& [name, port] : ports_)
      ports.emplace_back(name, port);
  }
  std::vector<Port::PendingMessage> pending_messages;
  for (const PortRef& port_ref : ports) {
    SinglePortLocker locker(&port_ref);
    locker.port()->DiscardEventsFrom(node, &pending_messages);
  }
  ClosePendingMessagePorts(pending_messages);
  MaybeFlushLostRoutes();
}

// Mojo looks only at peers. A port whose previous peer (the port that sends
// to it) lived on the lost node will never receive another event from that
// route either: without this, a receiving port whose peer's proxy died there
// waits forever (its peer's direct events stay buffered behind the missing
// UpdatePreviousPeer), and a proxy waits forever for its ObserveProxyAck.
void Node::DestroyAllPortsWithPrev(const NodeName& node_name) {
  std::vector<PortRef> matching;
  {
    MutexLock ports_lock(&ports_lock_);
    for (auto& [name, port] : ports_)
      matching.emplace_back(name, port);
  }
  for (const PortRef& port_ref : matching)
    OnPreviousPeerLost(port_ref, node_name);
}

void Node::OnPreviousPeerLost(const PortRef& port_ref,
                              const NodeName& node_name) {
  {
    // Events a surviving successor already sent us wait in the early-event
    // buffer for the lost hop's UpdatePreviousPeer, which may have had its
    // number but never left that node. Nothing else can fill that gap: let
    // the successor's stream in now, in its order, so every message it
    // committed is delivered. A gap in the user sequence (messages the lost
    // hop never forwarded) then ends the readable prefix, and the port
    // reports peer_closed below.
    bool prev_lost = false;
    for (;;) {
      bool adopted = false;
      {
        SinglePortLocker locker(&port_ref);
        Port* port = locker.port();
        if (!port->PrevLostWith(node_name, name_) ||
            port->state == Port::kClosed ||
            port->state == Port::kUninitialized) {
          break;
        }
        prev_lost = true;
        adopted = port->AdoptBufferedSenderAfterLoss(node_name);
      }
      if (!adopted)
        break;
      FinishEventAndDrain(port_ref, /*increment_first=*/false);
    }
    if (!prev_lost)
      return;
    ScopedEvent closure_event;
    NodeName closure_target;
    bool notify = false;
    bool try_remove_proxy = false;
    std::vector<std::unique_ptr<UserMessageEvent>> unreadable;
    {
      SinglePortLocker locker(&port_ref);
      Port* port = locker.port();
      // A live peer on the lost node was DestroyAllPortsWithPeer's business
      // (it ran first, and a proxy it found is gone). A peer that had closed
      // normally is not: its ObserveClosure named a last message that may
      // still have been on its way through the lost hop — which is where
      // everything for this port comes from — so that never comes either.
      if (port->peer_lost_unexpectedly || port->state == Port::kClosed ||
          port->state == Port::kUninitialized) {
        return;
      }
      uint64_t last = port->message_queue.LastContiguousSequenceNum();
      bool already_closed = port->peer_closed;
      port->peer_closed = true;
      if (port->state == Port::kReceiving) {
        // Like a broken pipe: read what is in order, then peer closed.
        // Messages beyond the gap can never be read: their ports are closed
        // now rather than when this port closes, so their routes hear of it.
        port->peer_lost_unexpectedly = true;
        port->message_queue.TakeMessagesAfter(last, &unreadable);
        notify = true;
        // Peer-closed refuses sends, so this end's sending half is over
        // too: say so to its peer, as closing would. Without it a proxy
        // between this end and a live peer waits for an ObserveProxyAck
        // that went toward the lost node, and the peer's own end keeps
        // sending into a port that will never read again. A later close
        // sends a second closure naming the same last message; the route
        // ignores it.
        if (!already_closed) {
          closure_target = port->peer_node_name;
          closure_event = std::make_unique<ObserveClosureEvent>(
              port->peer_port_name, port_ref.name(),
              port->next_control_sequence_num_to_send++,
              port->next_sequence_num_to_send - 1);
        }
      } else if (already_closed && port->last_sequence_num_to_receive <= last) {
        // Everything the closed peer sent is here: the usual removal.
        try_remove_proxy = port->state == Port::kProxying;
      } else {
        // A proxy: nothing more will reach it. Tell the route ahead where
        // its stream ends, then go (a second closure lowers the end a first
        // one named). Messages it holds but has not forwarded yet (a port
        // sent away unread, still buffering) are part of the stream.
        port->remove_proxy_on_last_message = true;
        port->last_sequence_num_to_receive = last;
        closure_target = port->peer_node_name;
        closure_event = std::make_unique<ObserveClosureEvent>(
            port->peer_port_name, port_ref.name(),
            port->next_control_sequence_num_to_send++, last);
        if (port->state == Port::kBuffering) {
          port->control_message_queue.emplace_back(closure_target,
                                                   std::move(closure_event));
        } else {
          try_remove_proxy = true;
        }
      }
    }
    if (closure_event) {
      delegate_->ForwardEvent(closure_target, std::move(closure_event));
    }
    if (try_remove_proxy)
      TryRemoveProxy(port_ref);
    ClosePortsInMessages(unreadable);
    if (notify)
      delegate_->PortStatusChanged(port_ref);
  }
}

// The ObserveClosure of a port whose peer was lost goes toward the lost part
// of the route, so it never comes round to the port that sends to this one:
// that port (or a proxy of it, still waiting for an ObserveProxyAck that went
// the same way) would wait for good. The dead-proxy notice, sent to the
// previous peer's node alone, says what is true: nothing reads at this name
// any more. Only this node may say so of its own port (OnObserveProxy checks
// the sender), so a peer cannot use it to cut others' routes.
void Node::AnnounceClosedPortToPrevious(const PortName& port_name,
                                        const NodeName& prev_node_name) {
  {
    MutexLock ports_lock(&ports_lock_);
    if (lost_nodes_.count(prev_node_name) != 0)
      return;
  }
  if (prev_node_name == name_) {
    DestroyAllPortsWithPeer(name_, port_name);
    return;
  }
  delegate_->ForwardEvent(
      prev_node_name,
      std::make_unique<ObserveProxyEvent>(kInvalidPortName, kInvalidPortName,
                                          kInvalidSequenceNum, name_, port_name,
                                          kInvalidNodeName, kInvalidPortName));
}

void Node::DestroyAllPortsWithPeer(const NodeName& node_name,
                                   const PortName& port_name) {
  std::vector<PortRef> ports_to_notify;
  std::vector<PortName> dead_proxies_to_broadcast;
  std::vector<PortName> zombies_to_erase;
  std::vector<std::unique_ptr<UserMessageEvent>> undelivered_messages;
  std::vector<Port::PendingMessage> pending_messages;
  std::vector<std::pair<NodeName, ScopedEvent>> closure_events;
  {
    MutexLock ports_lock(&ports_lock_);
    auto node_it = peer_port_maps_.find(node_name);
    if (node_it == peer_port_maps_.end())
      return;
    std::vector<PortRef> matching;
    for (auto& [peer_port, local_ports] : node_it->second) {
      if (port_name.is_valid() && peer_port != port_name)
        continue;
      for (const PortName& local : local_ports) {
        auto it = ports_.find(local);
        if (it != ports_.end())
          matching.emplace_back(local, it->second);
      }
    }
    for (const PortRef& local_port_ref : matching) {
      SinglePortLocker locker(&local_port_ref);
      Port* port = locker.port();
      if (port_name.is_valid()) {
        // A dead proxy was our peer: answer its broadcast with a closure
        // (its node has erased it already; this only tells an older peer
        // that still keeps zombies to let go).
        closure_events.emplace_back(
            port->peer_node_name,
            std::make_unique<ObserveClosureEvent>(
                port->peer_port_name, local_port_ref.name(),
                port->next_control_sequence_num_to_send++,
                port->last_sequence_num_to_receive));
      }
      if (!port->peer_closed) {
        // Like a broken pipe: whatever was in flight is lost.
        port->peer_closed = true;
        port->peer_lost_unexpectedly = true;
        if (port->state == Port::kReceiving) {
          ports_to_notify.push_back(local_port_ref);
        }
      }
      // A proxy with no live peer cannot be removed the normal way. As in
      // Mojo it is erased at once and announces its death so its
      // predecessor closes. Keeping it as a zombie until the predecessor
      // answered leaked it whenever no answer could come (the predecessor
      // already gone, or handed over to a port on a lost node); anything
      // that still arrives for it is an event for an unknown port, which is
      // ignored (the ports a message carries are adopted and closed).
      if (port->state == Port::kBuffering || port->state == Port::kProxying) {
        port->state = Port::kClosed;
        dead_proxies_to_broadcast.push_back(local_port_ref.name());
        port->message_queue.TakeAllMessages(&undelivered_messages);
        port->TakePendingMessages(&pending_messages);
        port->control_message_queue.clear();
        port->send_on_proxy_removal.reset();
        zombies_to_erase.push_back(local_port_ref.name());
      }
    }
  }
  for (const PortName& zombie : zombies_to_erase)
    ErasePort(zombie);
  for (auto& [node, event] : closure_events) {
    delegate_->ForwardEvent(node, std::move(event));
  }
  for (const PortRef& port : ports_to_notify) {
    delegate_->PortStatusChanged(port);
  }
  for (const PortName& proxy_name : dead_proxies_to_broadcast) {
    delegate_->BroadcastEvent(std::make_unique<ObserveProxyEvent>(
        kInvalidPortName, kInvalidPortName, kInvalidSequenceNum, name_,
        proxy_name, kInvalidNodeName, kInvalidPortName));
    // The dead proxy's predecessor may be on this node.
    DestroyAllPortsWithPeer(name_, proxy_name);
  }
  ClosePortsInMessages(undelivered_messages);
  ClosePendingMessagePorts(pending_messages);
}

}  // namespace shmports::ports
