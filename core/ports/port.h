// Port: one endpoint of a route, with all of Mojo's per-port state.
//
// A Port is owned by shared_ptr: the node's port table holds one reference
// and every PortRef another, so a PortRef keeps the object alive after the
// port has been erased (operations then see kClosed or the state it had).
//
// States (§3.2 of the protocol notes):
//   kUninitialized → kReceiving   InitializePort
//   kReceiving → kBuffering       sent to another node / MergePorts
//   kBuffering → kProxying        PortAccepted arrived
//   kReceiving → kProxying        merged (MergePortsInternal)
//   kReceiving → kClosed          ClosePort (then erased)
//   kBuffering/kProxying → kClosed  its peer's node was lost: a zombie kept in
//                                 the table until ObserveClosure or
//                                 ObserveProxyAck reaches it
//   kProxying → (erased)          TryRemoveProxy after the last message
//
// Locking: every field is guarded by `lock_`, which is taken only through
// PortLocker / SinglePortLocker (several ports at once in name order). The
// fields are not GUARDED_BY-annotated because the static analysis cannot
// follow a lock chosen at run time; Node's functions that touch them take a
// `Port*` obtained from a locker, which is the proof of locking.
#ifndef SHMPORTS_CORE_PORTS_PORT_H_
#define SHMPORTS_CORE_PORTS_PORT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"
#include "core/ports/event.h"
#include "core/ports/message_queue.h"
#include "core/ports/name.h"

namespace shmports::ports {

// Opaque embedder data attached to a port (Node::SetUserData).
class UserData {
 public:
  virtual ~UserData() = default;
};

// What early (buffered) events each sending node holds on this node, across
// all ports, against NodeLimits' per-peer budget. One per Node; every Port
// of the node points at it. Its lock is a leaf: taken inside port locks,
// never while taking another lock.
class PeerEventBudget {
 public:
  PeerEventBudget(size_t max_events, size_t max_bytes)
      : max_events_(max_events), max_bytes_(max_bytes) {}
  PeerEventBudget(const PeerEventBudget&) = delete;
  PeerEventBudget& operator=(const PeerEventBudget&) = delete;

  // Charges one event of `bytes` to `peer`; false (nothing charged) when
  // that would take the peer past either limit.
  bool TryCharge(const NodeName& peer, size_t bytes);
  void Release(const NodeName& peer, size_t bytes);
  // The most events / bytes any one peer holds now.
  void Largest(size_t* events, size_t* bytes);

 private:
  struct Use {
    size_t events = 0;
    size_t bytes = 0;
  };
  const size_t max_events_;
  const size_t max_bytes_;
  Mutex mutex_;
  std::unordered_map<NodeName, Use> use_ GUARDED_BY(mutex_);
};

class Port {
 public:
  enum State {
    kUninitialized,
    kReceiving,
    kBuffering,
    kProxying,
    kClosed,
  };

  Port(uint64_t next_sequence_num_to_send,
       uint64_t next_sequence_num_to_receive);
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;
  ~Port();

  // Sequenced-event bookkeeping (§4.5). All require the port lock.
  //
  // True when `event` from `from_node` is the next one expected from the
  // current previous peer.
  bool IsNextEvent(const NodeName& from_node, const Event& event) const;

  // Whether losing `lost_node` cuts what reaches this port (`self` is its
  // node): the previous peer lived there, or that node announced a
  // previous peer on a third node from which nothing has come yet.
  bool PrevLostWith(const NodeName& lost_node, const NodeName& self) const;

  // For a port turning into a proxy (sent away or merged). When its peer
  // was lost, nothing knows where its stream ends, so it ends with what is
  // here in order (a gap can never be filled now). Without a fixed end the
  // proxy would pass on a stale last number — one that a closure named for
  // messages which died with the lost node — and it, and the ports after
  // it, would wait for good.
  void EndStreamIfPeerLost();
  // Keeps an early event until its turn. Returns false (event dropped) when
  // the port already holds `max_buffered` events from `from_node` or the
  // sending node's budget (if the port has one) is spent. The limit is per
  // sending node so that only the node that exceeds its own share is blamed:
  // a forger filling the port cannot make an honest sender's next early
  // event the one that trips it.
  bool BufferEvent(const NodeName& from_node,
                   ScopedEvent event,
                   size_t max_buffered);
  // Pops the buffered event that is next from the current previous peer, if
  // any.
  void NextEvent(NodeName* from_node, ScopedEvent* event);
  // The previous peer's node is lost, so the events it still owed (an
  // UpdatePreviousPeer whose number was taken but which was never
  // published) will never come. If a buffered stream from another sender
  // starts at kInitialSequenceNum — the successor the lost hop would have
  // named — makes it the previous peer and returns true; the caller then
  // drains it. Streams from nodes other than `lost_node` are preferred.
  bool AdoptBufferedSenderAfterLoss(const NodeName& lost_node);
  // A buffered user message that was never handled, with its sender.
  using PendingMessage = std::pair<NodeName, std::unique_ptr<UserMessageEvent>>;
  // Takes out every buffered user message (the ports they carry must still
  // be adopted and closed, see Node::ClosePendingMessagePorts) and drops the
  // other buffered events.
  void TakePendingMessages(std::vector<PendingMessage>* messages);
  // The events buffered from `node` (the lost node: it can no longer send
  // what they wait for, so none of them will ever be next; see
  // Node::LostConnectionToNode). Its user messages go to `messages` (their
  // ports must still be adopted and closed), the rest are dropped; their
  // budget charge is released.
  void DiscardEventsFrom(const NodeName& node,
                         std::vector<PendingMessage>* messages);
  // Early events buffered from `node` on this port.
  size_t buffered_event_count_from(const NodeName& node) const;
  // Buffered early events and their serialised size, for Node::GetStats.
  size_t buffered_event_count() const { return buffered_event_count_; }
  size_t buffered_event_bytes() const { return buffered_event_bytes_; }

  // The node's per-peer budget for buffered events (null in tests that
  // build ports alone). Set before the port is shared; owned by the Node.
  PeerEventBudget* budget = nullptr;

  State state = kUninitialized;
  NodeName peer_node_name;
  PortName peer_port_name;
  NodeName prev_node_name;
  PortName prev_port_name;
  // The node whose UpdatePreviousPeer named the current previous peer
  // (invalid when none did). Until that peer's first event arrives, the
  // announcer's proxy is still on the route (its removal needs that event),
  // so the announcer's loss breaks the route as the previous peer's would
  // (Node::OnPreviousPeerLost).
  NodeName prev_announced_by;
  bool pending_merge_peer = false;
  NodeName pending_merge_peer_node;
  uint64_t next_control_sequence_num_to_send = kInitialSequenceNum;
  uint64_t next_control_sequence_num_to_receive = kInitialSequenceNum;
  uint64_t next_sequence_num_to_send;
  uint64_t last_sequence_num_acknowledged;
  uint64_t sequence_num_acknowledge_interval = 0;
  uint64_t last_sequence_num_to_receive = 0;
  uint64_t sequence_num_to_acknowledge = 0;
  MessageQueue message_queue;
  // Control events produced while kBuffering, sent in order by BeginProxying.
  std::vector<std::pair<NodeName, ScopedEvent>> control_message_queue;
  // At most one event to send when this proxy is removed.
  std::optional<std::pair<NodeName, ScopedEvent>> send_on_proxy_removal;
  std::shared_ptr<UserData> user_data;
  // The peer node this port counts against until the message carrying it
  // is read (NodeLimits::max_unread_ports_per_peer); invalid otherwise.
  NodeName adopted_unread_from;
  bool remove_proxy_on_last_message = false;
  bool peer_closed = false;
  bool peer_lost_unexpectedly = false;

  Mutex lock_;

 private:
  using SenderKey = std::pair<NodeName, PortName>;
  // Per sender, events ordered by control sequence number.
  std::map<SenderKey, std::map<uint64_t, std::pair<NodeName, ScopedEvent>>>
      control_event_queues_;
  // Drops one event of `bytes` from `node` from the counts and the budget.
  void Unbuffer(const NodeName& node, size_t bytes);

  // Buffered events per sending node (max_buffered_events_per_port applies
  // to each).
  std::unordered_map<NodeName, size_t> buffered_per_sender_;
  size_t buffered_event_count_ = 0;
  size_t buffered_event_bytes_ = 0;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_PORT_H_
