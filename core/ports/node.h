// Node: the ports protocol state machine of one node (one process, or one
// simulated node in tests).
//
// A Node owns a table of ports and implements Mojo's `ports::Node`: creating
// and closing ports, sending and reading user messages, carrying ports inside
// messages (the sending port becomes a proxy until the route bypasses it),
// merging routes, read acknowledgements and peer loss. It knows nothing of
// processes or transports: it hands outgoing events to its NodeDelegate and
// is fed incoming ones through AcceptEvent.
//
// Threads: every method is thread-safe and may be called from any thread,
// including from inside delegate callbacks.
//
// Lock order (never broken):
//   1. ports_lock_ (the node-wide lock for the port table and peer map) may
//      be held while taking port locks; it is NEVER taken while any port
//      lock is held.
//   2. Port locks are taken only through one PortLocker/SinglePortLocker at
//      a time per thread; a PortLocker takes several in port-name order.
//   3. No lock is held while calling the delegate or destroying user
//      messages: code decides under its locks, collects the events and
//      notifications, releases, then acts.
// Ordering of sequenced events on a port comes from the per-hop control
// sequence numbers (AcceptEvent), not from holding a lock across a handler.
//
// Errors: methods return ErrorCode values (error.h). Anything a caller or a
// peer can cause yields an error code or an AcceptResult — never a crash,
// an assert or a hang. An invalid PortRef gives ERROR_INVALID_ARGUMENT.
#ifndef SHMPORTS_CORE_PORTS_NODE_H_
#define SHMPORTS_CORE_PORTS_NODE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/base/mutex.h"
#include "core/base/thread_annotations.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/message_queue.h"
#include "core/ports/name.h"
#include "core/ports/node_delegate.h"
#include "core/ports/port.h"
#include "core/ports/port_ref.h"

namespace shmports::ports {

// What a peer node can make this node hold. Past a limit the event is a
// protocol violation (AcceptResult::kViolation) and changes nothing.
struct NodeLimits {
  // Ports attached to one user message from another node.
  size_t max_attached_ports_per_message = 64;
  // Early (out-of-order) sequenced events one peer node may have buffered
  // on one port (each sender has its own share, so a forger filling a port
  // cannot get an honest sender's next early event blamed).
  //
  // An honest sender produces early events too: a port's control sequence
  // number is taken under its lock and the event forwarded after, so a
  // control event from one thread (a read-ack request sent by the io thread
  // when an acknowledgement arrives) can reach the link after user messages
  // a sending thread numbered later; if that thread is preempted in between,
  // every message sent meanwhile arrives early. The sender's credit bounds
  // them (max_queued_messages_per_port / max_queued_bytes_per_port below),
  // so these limits sit above the credit caps; raise them with the caps.
  size_t max_buffered_events_per_port = (size_t{1} << 16) + 4096;
  // Early events one peer node may have buffered here across all ports, by
  // count and by serialised bytes. Forged events (a sender that is not the
  // port's previous peer, e.g. a ReadAck naming a stranger) are buffered
  // like early ones, so this is what bounds them.
  size_t max_buffered_events_per_peer = size_t{1} << 17;
  size_t max_buffered_event_bytes_per_peer = size_t{80} << 20;
  // Ports a peer has sent us inside messages nobody has read yet.
  size_t max_unread_ports_per_peer = 4096;
  // User sequence numbers accepted beyond the next one to read.
  uint64_t sequence_window = uint64_t{1} << 20;
  // The per-pipe receive cap this node announces in the handshake
  // (channel/handshake.h ReceiveCaps), enforced on user messages from
  // another node entering a receiving port's queue (in-order and
  // out-of-order messages; bytes are payload bytes, as in
  // PortStatus::queued_num_bytes). 0 = unlimited. Without them a peer could
  // fill our memory through one port. The pipe credit of Pipe::Send keeps an
  // honest sender under them: it never has more than the cap
  // unacknowledged, and acknowledged means read, so the receiver's queue
  // never exceeds the cap. One message is always allowed however large (with
  // nothing unacknowledged the sender may always send one), so the byte cap
  // applies only while more than one message is queued.
  size_t max_queued_messages_per_port = size_t{1} << 16;
  size_t max_queued_bytes_per_port = size_t{64} << 20;
};

struct NodeOptions {
  NodeLimits limits;
};

// GetStatus (§2.2).
struct PortStatus {
  bool has_messages = false;
  bool receiving_messages = false;
  bool peer_closed = false;
  bool peer_remote = false;
  // The node of the port's current peer (the sender needs it to know whose
  // announced receive cap applies).
  NodeName peer_node_name;
  // The peer port (on peer_node_name): when it is on this node, a sender
  // can see whether the other end is still here or on its way elsewhere.
  PortName peer_port_name;
  size_t queued_message_count = 0;
  size_t queued_num_bytes = 0;
  size_t unacknowledged_message_count = 0;
};

// GetStats: a snapshot of the whole table.
struct NodeStats {
  size_t ports = 0;
  size_t uninitialized = 0;
  size_t receiving = 0;
  size_t buffering = 0;
  size_t proxying = 0;
  size_t zombies = 0;  // kClosed ports awaiting ObserveClosure/ProxyAck.
  size_t proxies = 0;  // buffering + proxying.
  size_t queued_messages = 0;
  size_t queued_message_bytes = 0;
  // Early sequenced events and control events held while buffering.
  size_t buffered_events = 0;
  size_t buffered_event_bytes = 0;
  // The largest share of early events one peer node holds here (bounded by
  // NodeLimits' per-peer budget).
  size_t buffered_events_largest_peer = 0;
  size_t buffered_event_bytes_largest_peer = 0;
};

class Node {
 public:
  enum class ShutdownPolicy {
    DONT_ALLOW_LOCAL_PORTS,
    ALLOW_LOCAL_PORTS,
  };

  // `delegate` is not owned and must outlive the node.
  Node(const NodeName& name,
       NodeDelegate* delegate,
       NodeOptions options = NodeOptions());
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Logs a warning if ports remain.
  ~Node();

  const NodeName& name() const { return name_; }

  // DONT_ALLOW_LOCAL_PORTS: no port at all. ALLOW_LOCAL_PORTS: no port whose
  // peer is on another node unless it is receiving (no remote proxies or
  // zombies).
  bool CanShutdownCleanly(
      ShutdownPolicy policy = ShutdownPolicy::DONT_ALLOW_LOCAL_PORTS);

  // OK or ERROR_PORT_UNKNOWN.
  int GetPort(const PortName& port_name, PortRef* port_ref);

  // A new port in kUninitialized with a fresh random name.
  int CreateUninitializedPort(PortRef* port_ref);

  // kUninitialized → kReceiving with the given peer and previous peer. For a
  // pair spanning nodes each side names the other as both.
  int InitializePort(const PortRef& port_ref,
                     const NodeName& peer_node_name,
                     const PortName& peer_port_name,
                     const NodeName& prev_node_name,
                     const PortName& prev_port_name);

  // Two connected receiving ports on this node.
  int CreatePortPair(PortRef* port0_ref, PortRef* port1_ref);

  // Opaque data on a port; any state but kClosed.
  int SetUserData(const PortRef& port_ref, std::shared_ptr<UserData> data);
  int GetUserData(const PortRef& port_ref, std::shared_ptr<UserData>* data);

  // Closes a kUninitialized or kReceiving port; ERROR_PORT_STATE_UNEXPECTED
  // otherwise (including a second close). The peer learns through
  // ObserveClosure; ports in unread messages are closed too.
  int ClosePort(const PortRef& port_ref);

  // kReceiving ports only.
  int GetStatus(const PortRef& port_ref, PortStatus* port_status);

  // Takes the next in-order message (if `filter`, null for any, accepts
  // it). OK with a null *message when there is none; ERROR_PORT_PEER_CLOSED
  // once the peer closed and everything it sent has been read.
  int GetMessage(const PortRef& port_ref,
                 std::unique_ptr<UserMessageEvent>* message,
                 MessageFilter* filter);

  // Sends `message` from the receiving port. message->ports() name local
  // receiving ports to transfer (not the sender, not its peer, no
  // duplicates). On error every attached port except the sender is closed.
  int SendUserMessage(const PortRef& port_ref,
                      std::unique_ptr<UserMessageEvent> message);

  // Ask the peer to acknowledge reads every `interval` messages (0 = never).
  int SetAcknowledgeRequestInterval(const PortRef& port_ref,
                                    uint64_t sequence_num_acknowledge_interval);

  // Entry point for every event from the delegate (from another node or
  // self-forwarded). `from_node` is the authenticated sender.
  //
  // Sequenced events that are early, or from a sender that is not (yet) the
  // port's previous peer, are buffered (kOk) until their turn; they are
  // handled later, and their own outcomes are logged, not returned.
  //
  // Ignored (a normal race, not the sender's fault; nothing changes):
  //  - the target port is unknown or already erased (closed, removed proxy)
  //    for any event type; a user message's ports are adopted and closed so
  //    their routes learn of it;
  //  - a user message to a port that has already received its last message;
  //  - PortAccepted for a proxy turned zombie by a lost node;
  //  - a late or duplicate ReadAck, or a ReadAck reaching a proxy;
  //  - a MergePort whose target is gone or no longer receiving (the new
  //    port is closed, which closes the other route).
  // Violations (no honest peer sends these; nothing else changes):
  //  - a user message that would take a peer past max_unread_ports_per_peer;
  //  - a user message with more than max_attached_ports_per_message ports,
  //    a duplicate or invalid attached port name, or an attached name that
  //    already exists here;
  //  - a MergePort to a port not pending a merge, or from a node other than
  //    the one allowed (the new port is closed, the target stays as it was);
  //  - an UpdatePreviousPeer naming an invalid node or port;
  //  - a ReadAck for a number the receiving port never sent;
  //  - PortAccepted / ObserveProxyAck to a port in the wrong state;
  //  - more than max_buffered_events_per_port early events from one peer on
  //    one port, or
  //    a peer past max_buffered_events_per_peer /
  //    max_buffered_event_bytes_per_peer early events across all ports;
  //  - a user message numbered below the next one to read (it would wedge
  //    the queue) or beyond (highest received + queued + sequence_window);
  //  - a user message from another node that would take a receiving port's
  //    queue past max_queued_messages_per_port, or past
  //    max_queued_bytes_per_port while more than one message is queued
  //    (nothing is queued; its attached ports are adopted and closed, so no
  //    route is orphaned; the reason names the cap and the figures);
  //  - a broadcast ObserveProxy whose proxy node is not the sender.
  AcceptResult AcceptEvent(const NodeName& from_node, ScopedEvent event);

  // Merges the route of `port_ref` (a receiving port that never sent) with
  // the route of dest_node:dest_port, which must have been marked with
  // AllowPortMerge on its node. Call on one side only.
  int MergePorts(const PortRef& port_ref,
                 const NodeName& destination_node,
                 const PortName& destination_port);

  // Merges two local receiving ports' routes; on failure both are closed.
  int MergeLocalPorts(const PortRef& port0_ref, const PortRef& port1_ref);

  // Lets one incoming MergePort target `port_ref`, only from
  // `allowed_node` unless that is kInvalidNodeName (any node).
  int AllowPortMerge(const PortRef& port_ref, const NodeName& allowed_node);

  // Routes through `node` are broken: ports whose peer is there see
  // peer_closed; proxies pointing there become zombies and their death is
  // broadcast. Early events `node` left buffered on any port (forged onto
  // other routes, or waiting for a gap only it could fill) are dropped and
  // their per-peer budget released, after the routes through it took what
  // they could still deliver.
  int LostConnectionToNode(const NodeName& node);

  NodeStats GetStats();

  // One line per port that is not receiving (proxies, zombies, uninitialized
  // ports): name, state, peer, previous peer and the sequence numbers that
  // decide when it goes. For tests and logs that must say what was left.
  std::string DescribeNonReceivingPorts();

 private:
  struct PendingUpdatePreviousPeer {
    NodeName receiver;
    PortName port;
    PortName from_port;
    uint64_t sequence_num = 0;
    NodeName new_prev_node;
    PortName new_prev_port;
  };

  // Event handlers (node.cc). `port_ref` may be invalid (unknown target).
  AcceptResult HandleEvent(const NodeName& from_node,
                           const PortRef& port_ref,
                           ScopedEvent event);
  AcceptResult OnUserMessage(const PortRef& port_ref,
                             const NodeName& from_node,
                             std::unique_ptr<UserMessageEvent> message);
  AcceptResult OnPortAccepted(const PortRef& port_ref,
                              const NodeName& from_node);
  AcceptResult OnObserveProxy(const PortRef& port_ref,
                              const NodeName& from_node,
                              std::unique_ptr<ObserveProxyEvent> event);
  AcceptResult OnObserveProxyAck(const PortRef& port_ref,
                                 uint64_t last_sequence_num);
  AcceptResult OnObserveClosure(const PortRef& port_ref,
                                std::unique_ptr<ObserveClosureEvent> event);
  AcceptResult OnMergePort(const PortRef& port_ref,
                           const NodeName& from_node,
                           std::unique_ptr<MergePortEvent> event);
  AcceptResult OnUserMessageReadAckRequest(
      const PortRef& port_ref,
      std::unique_ptr<UserMessageReadAckRequestEvent> event);
  AcceptResult OnUserMessageReadAck(
      const PortRef& port_ref,
      std::unique_ptr<UserMessageReadAckEvent> event);
  AcceptResult OnUpdatePreviousPeer(
      const PortRef& port_ref,
      const NodeName& from_node,
      std::unique_ptr<UpdatePreviousPeerEvent> event);

  // Steps the port's receive counter (unless already done) and handles the
  // buffered events that are now next.
  void FinishEventAndDrain(const PortRef& port_ref, bool increment_first);
  // The hot path of AcceptEvent: an in-order user message without ports for
  // a receiving port, handled under one port lock. Returns false (event
  // untouched) when the general path must run.
  bool MaybeAcceptPlainMessage(const NodeName& from_node,
                               const PortRef& port_ref,
                               ScopedEvent* event,
                               AcceptResult* result);

  int AddPortWithName(const PortName& port_name, std::shared_ptr<Port> port);
  void ErasePort(const PortName& port_name);

  int SendUserMessageInternal(const PortRef& port_ref,
                              std::unique_ptr<UserMessageEvent>* message);
  int MergePortsInternal(const PortRef& port0_ref,
                         const PortRef& port1_ref,
                         bool allow_close_on_bad_state);
  void ConvertToProxy(Port* port,
                      const NodeName& to_node_name,
                      PortName* port_name,
                      PortDescriptor* port_descriptor,
                      PendingUpdatePreviousPeer* pending_update)
      REQUIRES(ports_lock_);
  // Adopts a port sent to this node. With a valid `unread_from`, the port
  // counts against that peer's max_unread_ports_per_peer until the message
  // carrying it is read or the port goes away.
  int AcceptPort(const PortName& port_name,
                 const PortDescriptor& port_descriptor,
                 const NodeName& unread_from = kInvalidNodeName);
  void ReleaseUnreadPort(const NodeName& peer) REQUIRES(ports_lock_);

  int PrepareToForwardUserMessage(const PortRef& forwarding_port_ref,
                                  Port::State expected_port_state,
                                  bool ignore_closed_peer,
                                  UserMessageEvent* message,
                                  NodeName* forward_to_node);
  int BeginProxying(const PortRef& port_ref);
  int ForwardUserMessagesFromProxy(const PortRef& port_ref);
  void InitiateProxyRemoval(const PortRef& port_ref);
  void TryRemoveProxy(const PortRef& port_ref);
  void DestroyAllPortsWithPeer(const NodeName& node_name,
                               const PortName& port_name);
  void DestroyAllPortsWithPrev(const NodeName& node_name);
  // A closed port whose peer was lost: its closure cannot travel the route
  // around to the ports that send to it, so its previous peer's node is
  // told directly, in the dead-proxy notice's form.
  void AnnounceClosedPortToPrevious(const PortName& port_name,
                                    const NodeName& prev_node_name);
  // Drops, on every port, the early events the lost `node` left buffered.
  void DiscardEventsFromLostNode(const NodeName& node);
  // One port whose previous peer is on the lost `node_name`.
  void OnPreviousPeerLost(const PortRef& port_ref, const NodeName& node_name);
  // Routes that reached a lost node after LostConnectionToNode ran (a port
  // arriving or re-pointed at a port there) are noted under ports_lock_ and
  // handled here, once no lock is held, at the end of the public call.
  void NoteLostPeer(const NodeName& node) REQUIRES(ports_lock_);
  void FlushLostRoutes();
  void MaybeFlushLostRoutes() {
    if (lost_flush_pending_.load(std::memory_order_acquire))
      FlushLostRoutes();
  }
  AcceptResult AcceptEventInternal(const NodeName& from_node,
                                   ScopedEvent event);
  void ClosePortsInMessages(
      const std::vector<std::unique_ptr<UserMessageEvent>>& messages);
  void ClosePendingMessagePorts(
      const std::vector<Port::PendingMessage>& messages);
  // Null when the ports attached to a message from `from_node` may be
  // adopted; otherwise the violation.
  const char* CheckAttachedPorts(const NodeName& from_node,
                                 const UserMessageEvent& message) const;

  // Requires ports_lock_ and the port's lock.
  void UpdatePortPeerAddress(const PortName& local_port_name,
                             Port* local_port,
                             const NodeName& new_peer_node,
                             const PortName& new_peer_port)
      REQUIRES(ports_lock_);
  void RemoveFromPeerPortMap(const PortName& local_port_name, Port* local_port)
      REQUIRES(ports_lock_);
  void SwapPortPeers(const PortName& port0_name,
                     Port* port0,
                     const PortName& port1_name,
                     Port* port1) REQUIRES(ports_lock_);

  void MaybeResendAckRequest(const PortRef& port_ref);
  void MaybeForwardAckRequest(const PortRef& port_ref);
  void MaybeResendAck(const PortRef& port_ref);
  void SendUpdatePreviousPeer(const PendingUpdatePreviousPeer& update);

  const NodeName name_;
  NodeDelegate* const delegate_;
  const NodeOptions options_;

  // Early events buffered per sending node (a leaf lock inside Port).
  PeerEventBudget buffer_budget_;

  Mutex ports_lock_;
  std::unordered_map<PortName, std::shared_ptr<Port>> ports_
      GUARDED_BY(ports_lock_);
  // peer node → peer port → local ports whose peer it is. Lets
  // DestroyAllPortsWithPeer find ports without a scan.
  std::unordered_map<NodeName,
                     std::unordered_map<PortName, std::unordered_set<PortName>>>
      peer_port_maps_ GUARDED_BY(ports_lock_);
  // peer node → ports it sent us that are not read yet.
  std::unordered_map<NodeName, size_t> unread_ports_by_peer_
      GUARDED_BY(ports_lock_);
  // Nodes LostConnectionToNode was called for. Kept for the node's life:
  // a port may name a lost node at any later time (carried unread in a
  // message, or in an UpdatePreviousPeer), and forgetting the loss would
  // leave that route waiting forever. It only grows through the embedder's
  // own calls — one per link that died, never from a name a peer sent — so
  // a node that loses N peers in its life holds N entries (about 50 bytes
  // each: a broker that outlives a million children keeps ~50 MB, which is
  // the price of never hanging a route; names are never reused).
  std::unordered_set<NodeName> lost_nodes_ GUARDED_BY(ports_lock_);
  std::vector<NodeName> lost_peers_to_flush_ GUARDED_BY(ports_lock_);
  std::vector<std::pair<PortRef, NodeName>> lost_prevs_to_flush_
      GUARDED_BY(ports_lock_);
  // A port told (by UpdatePreviousPeer from node `from`) that its new
  // previous peer is a port of this node that has not arrived yet: the
  // message carrying it travels from `from` on the same link. Keyed by the
  // awaited port's name; dropped when it arrives. If `from` is lost first,
  // the port never comes.
  struct AwaitedPrev {
    PortRef waiting;
    NodeName from;
  };
  std::unordered_map<PortName, AwaitedPrev> awaited_prevs_
      GUARDED_BY(ports_lock_);
  // Set with the lists above; read without the lock on every public call.
  std::atomic<bool> lost_flush_pending_{false};
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_NODE_H_
