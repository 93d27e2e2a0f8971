// Router: the ports::NodeDelegate of a Process's Node — it carries events
// between the local Node and the Nodes of connected peers through the
// shared-memory rings of their Connections.
//
// Outbound (any thread that calls into the Node): ForwardEvent to a remote
// node serialises the event straight into the link's outbound ring
// (Reserve -> Event::Serialize into the span -> Commit; one kEventFrameKind
// frame, frame_kinds.h). An event larger than the ring's largest frame (up to
// RouterOptions::max_message_bytes, 64 MiB by default) is serialised once
// into a buffer and written as consecutive kEventFragmentFrameKind frames
// (wire format and stream rules in fragment.h); a larger one is dropped,
// logged and counted (events_too_large): the local caller's fault, not the
// peer's. ForwardEvent never blocks on a full ring: what does not fit (the
// event, or the rest of a fragment stream) waits in the link's FIFO overflow
// queue, later events on that link queue behind it, and the io thread drains
// the queue when the consumer's space wake arrives (shm::Ring's
// AnnounceSpaceWait protocol). The queue is bounded per peer by
// RouterOptions::overflow_budget_bytes: a peer that lets it overflow is not
// draining and is dropped (budget_rejections counts it; its ports see
// peer_closed as for a death). Events to the local node are accepted at once
// on the calling thread; events to an unknown node are dropped and counted.
//
// Inbound (io thread only): for each link the io thread drains the inbound
// ring, decodes each frame and calls Node::AcceptEvent with the link's
// AUTHENTICATED peer name; fragment frames go through the link's
// FragmentAssembler, which allocates the announced total up front (bounded
// by max_message_bytes, one stream per link) and hands the whole event on
// when the last fragment arrives. Then it sleeps on the ring's data futex word
// through the Reactor, following the ring's arming protocol (load the word,
// AnnounceSleep, re-check HasData, arm with the loaded value). An ignored
// event is counted; a protocol violation, an unknown frame kind, an
// undecodable event or a corrupt ring drops the peer with the reason logged
// and counted.
//
// Peer death (io thread): the peer's pidfd polling readable (primary) or its
// socket hanging up (secondary). The Router then drains the dead peer's
// inbound ring up to its last published tail — every frame the peer
// committed is delivered, in order — removes the link, and calls
// Node::LostConnectionToNode(peer). Dropping a peer for a violation does the
// same without the drain and shuts the socket so the peer sees a hang-up.
//
// Goodbye: SendGoodbyes() writes a kGoodbyeFrameKind frame behind everything
// queued on every link and waits (with a deadline) until it is in the rings;
// events forwarded after it are dropped and counted. A receiver delivers
// every frame before the goodbye, then removes the link and calls
// LostConnectionToNode as for a death, counted in goodbyes_received instead
// of peer_deaths (a hang-up or exit seen before the goodbye frame was read
// still drains the ring first, so the goodbye is found and counted).
//
// Threads and locks: links_mu_ guards the link table; each Link's mu guards
// its overflow queue and closed flag and is taken before the ring's
// producer mutex; flush_mu_ (SendGoodbyes' wait) is never held with a
// link's mu. Each Link's fragment assembler and goodbye flag belong to the
// io thread. No Router lock is held while calling the Node or an
// observer. Observers run on whatever thread triggers them (the io thread
// for deaths and inbound events); they must not block for long.
//
// Consumer token (one per inbound ring): whoever drains a link's inbound ring
// holds its token, taken by CAS in a process-local word (kFree, kIo,
// kWaiter): the io thread while it drains, or a thread waiting in
// Pipe::Receive (TryTakeInbound -> InboundLease) that drains the ring itself
// instead of waiting for the io thread's hop. A lease-holder delivers every
// frame exactly as the io thread does (fragments, goodbye, ignored events;
// frames for any port go to the Node, whose waiters are notified); a
// violation, corrupt ring or goodbye it finds is handed to the io thread
// (queued as a reclaim task) and nothing more is drained.
//
// Waking: the producer's FUTEX_WAKE on the data word wakes every waiter
// (INT_MAX, unchanged on-ring protocol, so a peer of the same minor needs
// nothing new). The lease-holder owns the ring's consumer_sleeping flag:
// it sleeps with futex_waitv on the data word (plus its own words), so the
// producer's wake reaches it directly. The io thread keeps a futex wait
// armed on the data word all along: woken while the token is held, it does
// not touch the flag and re-arms WITHOUT announcing (chosen over cancelling
// its wait on token take, which would need a Post -- a syscall and an io
// thread wake -- on every take and every release). On release the holder,
// still holding the token, announces sleep on the io thread's behalf,
// re-checks the ring (draining what came), and only then frees the token:
// the io thread's armed wait is then woken by the next publish (or has
// already completed and takes the free token), so no wake is lost and no
// frame is stranded.
//
// Reclaim: when the io thread needs the ring (a death's drain, a drop, a
// goodbye) while a waiter holds it, it sets the link's `reclaim` flag, bumps
// the reclaim word (which the holder's futex_waitv includes) and queues the
// action; the holder releases and Posts the queued actions. No new lease is
// granted once reclaim is set. Memory ordering: the token CAS is acq_rel and
// its release store is release, so the ring's consumer half, the fragment
// assembler and the goodbye flag pass between holders with a happens-before
// edge; `reclaim` and the token use seq_cst in a Dekker pair (the io thread
// stores reclaim then CASes the token; the holder stores kFree then loads
// reclaim), so either the io thread gets the token or the holder sees the
// request and Posts the reclaim.
//
// Lifetime: the Router must outlive the Node that uses it, and the Reactor
// must be stopped and destroyed before the Router (armed futex waits point
// into the links' segments; the Reactor's callbacks hold the links alive).
#ifndef SHMPORTS_CHANNEL_ROUTER_H_
#define SHMPORTS_CHANNEL_ROUTER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "channel/connection.h"
#include "channel/fragment.h"
#include "channel/reactor.h"
#include "core/base/deadline.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace shmports::channel {

// Counters of one link (a snapshot).
struct LinkStats {
  ports::NodeName peer;
  pid_t peer_pid = 0;
  uint64_t messages_sent = 0;  // Event frames committed to the ring.
  uint64_t bytes_sent = 0;
  uint64_t messages_received = 0;  // Event frames drained and decoded.
  uint64_t bytes_received = 0;
  uint64_t events_ignored = 0;        // AcceptEvent said "ignored".
  uint64_t events_too_large = 0;      // Beyond max_message_bytes, not sent.
  uint64_t events_after_goodbye = 0;  // Forwarded after SendGoodbyes; dropped.
  uint64_t overflow_depth = 0;        // Events waiting for ring space now.
  uint64_t overflow_high_water = 0;
  uint64_t overflow_bytes = 0;  // Their bytes not yet in the ring.
  uint64_t overflow_bytes_high_water = 0;
  uint64_t fragments_sent = 0;      // Fragment frames committed.
  uint64_t fragments_received = 0;  // Fragment frames accepted.
  uint64_t reassembly_bytes = 0;    // Charged by an open inbound stream.
  uint64_t outbound_capacity = 0;
  uint64_t outbound_fill = 0;  // Published, not yet consumed bytes.
  uint64_t inbound_fill = 0;
  uint64_t data_wakes_issued = 0;  // To the peer, on our outbound ring.
  uint64_t data_wakes_avoided = 0;
  uint64_t space_wakes_issued = 0;  // To the peer, on our inbound ring.
  uint64_t space_wakes_avoided = 0;
  // Consumer token: frames drained by the io thread and by waiting
  // Pipe::Receive threads holding the token.
  uint64_t frames_drained_by_io = 0;
  uint64_t frames_drained_by_waiters = 0;
};

struct RouterStats {
  std::vector<LinkStats> links;
  uint64_t peer_deaths = 0;        // Including deaths during a handshake.
  uint64_t peers_dropped = 0;      // For a violation, a corrupt ring, a budget.
  uint64_t budget_rejections = 0;  // Peers dropped for the overflow budget.
  uint64_t goodbyes_received = 0;  // Links the peer closed on purpose.
  std::map<std::string, uint64_t> violations;  // Reason -> count.
  uint64_t local_events = 0;
  uint64_t events_to_unknown_nodes = 0;
};

struct RouterOptions {
  // Largest serialised event carried in either direction (fragmented when it
  // exceeds the ring's largest frame); an inbound fragment stream announcing
  // more is a violation.
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;
  // Per peer: bytes of serialised events that may wait in the overflow
  // queue for ring space. Exceeding it drops the peer as not draining. At
  // least max_message_bytes is sensible (one whole largest message).
  uint64_t overflow_budget_bytes = 2 * kDefaultMaxMessageBytes;
};

class Router : public ports::NodeDelegate {
 public:
  using PortStatusObserver = std::function<void(const ports::PortRef&)>;
  // `reason`: kPeerClosed for a death, else why the peer was dropped.
  using PeerLostObserver =
      std::function<void(const ports::NodeName&, const Status& reason)>;

  // `reactor` is not owned; see the lifetime note above.
  explicit Router(Reactor* reactor, const RouterOptions& options = {});
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  ~Router() override;

  // Sets the node events are delivered to. Once, before the first link.
  void SetNode(ports::Node* node);

  // Takes an established connection: ForwardEvent to its peer works as soon
  // as this returns; the io thread arms the inbound and death watches (a
  // Post). kAlreadyExists if a link to that node exists. Any thread.
  Status AddConnection(std::unique_ptr<Connection> connection);

  // Counts a peer that died during its handshake.
  void RecordHandshakeDeath();

  void SetPortStatusObserver(PortStatusObserver observer);
  void SetPeerLostObserver(PeerLostObserver observer);

  RouterStats GetStats() const;

  // Writes a goodbye behind everything queued on every link and waits until
  // each is in its ring (or the link is gone). Events forwarded afterwards
  // are dropped and counted. kUnavailable naming the peers still behind at
  // the deadline. Not on the io thread (it drains the queues).
  Status SendGoodbyes(Deadline deadline);

  // ports::NodeDelegate. Any thread.
  void ForwardEvent(const ports::NodeName& node,
                    ports::ScopedEvent event) override;
  void BroadcastEvent(ports::ScopedEvent event) override;
  void PortStatusChanged(const ports::PortRef& port) override;

  // ---- Consumer token (see above). ----
  class InboundLease;
  // The consumer token of the inbound ring from `peer` (invalid: the only
  // link, if there is exactly one), or false (no such
  // link, the token is held, or the io thread reclaims the link). Not on the
  // io thread. The lease must be released (destroyed) before the Router
  // (the user API's Close waits for its waiters' leases, and ~Process
  // closes every pipe first).
  // Constructs the lease in `*lease` (no allocation on the hot path).
  bool TryTakeInbound(const ports::NodeName& peer,
                      std::optional<InboundLease>* lease);

 private:
  struct Link;
  using LinkPtr = std::shared_ptr<Link>;

  LinkPtr FindLink(const ports::NodeName& node) const;
  void SendOnLink(const LinkPtr& link, const ports::Event& event);
  struct Pending;
  void NotifyFlushed();

  // io thread.
  void StartLink(const LinkPtr& link);
  void ServiceInbound(const LinkPtr& link);
  // Drains up to `max_frames`; Ok(frames) or the reason to drop the peer.
  Result<size_t> DrainInbound(const LinkPtr& link, size_t max_frames);
  void ServiceOverflow(const LinkPtr& link);
  // Moves queued events into the ring; true once the queue is empty.
  bool DrainOverflow(const LinkPtr& link);
  void OnSocketEvent(const LinkPtr& link, Result<uint32_t> revents);
  void HandleDeath(const LinkPtr& link, const std::string& signal);
  // After a drain found the peer's goodbye.
  void HandleGoodbye(const LinkPtr& link);
  void DropPeer(const LinkPtr& link, Status reason);
  void RemoveLink(const LinkPtr& link, const Status& reason);

  // Consumer token (io thread). TakeForIo: CAS kFree -> kIo. ReclaimForIo:
  // true when the io thread holds the token (now or already); else `retry`
  // is queued for the holder to Post on release.
  bool TakeForIo(const LinkPtr& link);
  void ReleaseFromIo(const LinkPtr& link);
  bool ReclaimForIo(const LinkPtr& link, std::function<void()> retry);
  void RunReclaimTasks(const LinkPtr& link);
  // Runs what lease-holders queued; true if there was anything.
  bool RunQueuedReclaims(const LinkPtr& link);
  // Arms the io thread's data wait with the loaded word value `seq`.
  void ArmInbound(const LinkPtr& link, uint32_t seq);

  Reactor* const reactor_;
  const RouterOptions options_;
  std::atomic<ports::Node*> node_{nullptr};

  mutable Mutex links_mu_;
  std::unordered_map<ports::NodeName, LinkPtr, ports::NameHash> links_
      GUARDED_BY(links_mu_);

  mutable Mutex observers_mu_;
  std::shared_ptr<const PortStatusObserver> port_status_observer_
      GUARDED_BY(observers_mu_);
  std::shared_ptr<const PeerLostObserver> peer_lost_observer_
      GUARDED_BY(observers_mu_);

  mutable Mutex stats_mu_;
  std::map<std::string, uint64_t> violations_ GUARDED_BY(stats_mu_);
  std::atomic<uint64_t> peer_deaths_{0};
  std::atomic<uint64_t> peers_dropped_{0};
  std::atomic<uint64_t> local_events_{0};
  std::atomic<uint64_t> events_to_unknown_nodes_{0};
  std::atomic<uint64_t> budget_rejections_{0};
  std::atomic<uint64_t> goodbyes_received_{0};

  // SendGoodbyes waits here for overflow queues to empty.
  Mutex flush_mu_;
  CondVar flush_cv_;
  uint64_t flush_generation_ GUARDED_BY(flush_mu_) = 0;
};

// A held consumer token of one inbound ring (Router::TryTakeInbound). One
// thread at a time; destroying it releases the token (see "Consumer token"
// above). Drain and the release run Node calls on the holder's thread, so
// the holder must keep the Node alive meanwhile (the API's CoreUse).
class Router::InboundLease {
 public:
  InboundLease(Router* router, LinkPtr link);
  ~InboundLease();
  InboundLease(const InboundLease&) = delete;
  InboundLease& operator=(const InboundLease&) = delete;

  // Delivers what is published to the Node on this thread. Returns the
  // frames drained; 0 once the io thread reclaims the ring or after a
  // violation (handed to the io thread).
  size_t Drain();
  // The arming protocol of shm::Ring for a futex_waitv: loads the data word
  // into `*expected`, announces sleep and re-checks; false when frames are
  // waiting (drain instead of sleeping) or the io thread reclaims the ring.
  bool PrepareSleep(uint32_t* expected);
  uint32_t* data_word();
  // Bumped and woken when the io thread wants the ring back.
  uint32_t* reclaim_word();
  bool reclaim_requested() const;
  // Release without draining (the Node may be going away): any frames left
  // are handed to the io thread.
  void ReleaseWithoutDrain();

 private:
  void Release(bool may_drain);
  void HandToIo(std::function<void()> task);

  Router* router_;
  LinkPtr link_;
  bool released_ = false;
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_ROUTER_H_
