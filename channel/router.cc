#include "channel/router.h"

#include <poll.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include "channel/frame_kinds.h"
#include "channel/handshake.h"
#include "core/base/log.h"
#include "core/base/str_format.h"
#include "shm/futex.h"

namespace shmports::channel {

// The handshake's minor covers the event types: a link that negotiated minor
// m decodes the types introduced up to m.
static_assert(kProtocolMinor == ports::kEventProtocolMinor);

namespace {

// Frames one inbound pass delivers before yielding to other links and tasks.
constexpr size_t kMaxFramesPerRound = 1024;
// Consumer token states (Link::consumer).
constexpr uint32_t kConsumerFree = 0;
constexpr uint32_t kConsumerIo = 1;
constexpr uint32_t kConsumerWaiter = 2;
// Drains a releasing lease-holder does when frames keep coming before it
// hands the rest to the io thread.
constexpr int kMaxReleasePasses = 4;

// Passes of the final drain after a death (the dead peer adds nothing, so
// more than one pass only happens for a peer that hung up but still lives).
constexpr int kMaxDeathDrainPasses = 64;

uint64_t Relaxed(const std::atomic<uint64_t>& counter) {
  return counter.load(std::memory_order_relaxed);
}

void Bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
  counter.fetch_add(by, std::memory_order_relaxed);
}

// Fill of a ring from its control page. Statistics only: relaxed loads of
// words the peer may scribble on; the result is clamped, never trusted.
uint64_t RingFill(const shm::RingControl* control, uint64_t capacity) {
  uint64_t tail =
      std::atomic_ref<uint64_t>(const_cast<uint64_t&>(control->tail))
          .load(std::memory_order_relaxed);
  uint64_t head =
      std::atomic_ref<uint64_t>(const_cast<uint64_t&>(control->head))
          .load(std::memory_order_relaxed);
  uint64_t fill = tail - head;
  return fill > capacity ? capacity : fill;
}

}  // namespace

// One entry of a link's overflow queue: a serialised event not yet (wholly)
// in the ring, or a goodbye.
struct Router::Pending {
  uint16_t kind = kEventFrameKind;  // Or kEventFragmentFrameKind, kGoodbye.
  std::vector<uint8_t> bytes;
  size_t offset = 0;  // Fragment streams: bytes already in the ring.

  uint64_t remaining() const { return bytes.size() - offset; }
};

struct Router::Link {
  Link(std::unique_ptr<Connection> c, uint64_t max_message_bytes)
      : conn(std::move(c)),
        peer(conn->peer_name()),
        assembler(max_message_bytes) {}

  const std::unique_ptr<Connection> conn;
  const ports::NodeName peer;

  // Taken before the outbound ring's producer mutex.
  Mutex mu;
  std::deque<Pending> overflow GUARDED_BY(mu);
  uint64_t overflow_bytes GUARDED_BY(mu) = 0;
  bool closed GUARDED_BY(mu) = false;
  // SendGoodbyes queued our goodbye: nothing may follow it.
  bool goodbye_sent GUARDED_BY(mu) = false;
  // A ServiceOverflow is posted or a space wait armed.
  bool space_service_pending GUARDED_BY(mu) = false;

  // io thread only.
  bool dead = false;
  bool goodbye_received = false;
  bool space_wait_announced = false;
  FragmentAssembler assembler;

  // Queues `pending` behind the overflow; false if that broke `budget` (the
  // link is then closed: the caller drops the peer).
  bool EnqueueLocked(Pending pending, uint64_t budget) REQUIRES(mu);
  // Writes as much of `pending` as fits; true when all of it is in the ring.
  bool WriteLocked(Pending& pending, Status* error) REQUIRES(mu);
  Reactor::Token data_token = Reactor::kInvalidToken;
  Reactor::Token space_token = Reactor::kInvalidToken;
  Reactor::Token pidfd_token = Reactor::kInvalidToken;
  Reactor::Token socket_token = Reactor::kInvalidToken;

  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> messages_received{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> events_ignored{0};
  std::atomic<uint64_t> events_too_large{0};
  std::atomic<uint64_t> events_after_goodbye{0};
  std::atomic<uint64_t> overflow_depth{0};
  std::atomic<uint64_t> overflow_high_water{0};
  std::atomic<uint64_t> overflow_bytes_now{0};
  std::atomic<uint64_t> overflow_bytes_high_water{0};
  std::atomic<uint64_t> fragments_sent{0};
  std::atomic<uint64_t> fragments_received{0};
  std::atomic<uint64_t> reassembly_bytes{0};

  // Consumer token (router.h). `consumer`: kConsumerFree/Io/Waiter. The
  // ring's consumer half, `assembler` and `goodbye_received` belong to the
  // token holder.
  std::atomic<uint32_t> consumer{kConsumerFree};
  std::atomic<bool> reclaim{false};
  uint32_t reclaim_word = 0;  // A futex word: atomic_ref only.
  Mutex reclaim_mu;
  std::vector<std::function<void()>> reclaim_tasks GUARDED_BY(reclaim_mu);
  std::atomic<uint64_t> frames_by_io{0};
  std::atomic<uint64_t> frames_by_waiters{0};
};

Router::Router(Reactor* reactor, const RouterOptions& options)
    : reactor_(reactor), options_(options) {}

Router::~Router() = default;

void Router::SetNode(ports::Node* node) {
  node_.store(node, std::memory_order_release);
}

Status Router::AddConnection(std::unique_ptr<Connection> connection) {
  auto link =
      std::make_shared<Link>(std::move(connection), options_.max_message_bytes);
  {
    MutexLock lock(&links_mu_);
    if (links_.count(link->peer) != 0) {
      return AlreadyExistsError("already connected to node " +
                                link->peer.ToString());
    }
    links_[link->peer] = link;
  }
  reactor_->Post([this, link] { StartLink(link); });
  return Status::Ok();
}

void Router::RecordHandshakeDeath() {
  Bump(peer_deaths_);
}

void Router::SetPortStatusObserver(PortStatusObserver observer) {
  auto shared = std::make_shared<const PortStatusObserver>(std::move(observer));
  MutexLock lock(&observers_mu_);
  port_status_observer_ = std::move(shared);
}

void Router::SetPeerLostObserver(PeerLostObserver observer) {
  auto shared = std::make_shared<const PeerLostObserver>(std::move(observer));
  MutexLock lock(&observers_mu_);
  peer_lost_observer_ = std::move(shared);
}

Router::LinkPtr Router::FindLink(const ports::NodeName& node) const {
  MutexLock lock(&links_mu_);
  auto it = links_.find(node);
  return it == links_.end() ? nullptr : it->second;
}

void Router::ForwardEvent(const ports::NodeName& node,
                          ports::ScopedEvent event) {
  ports::Node* local = node_.load(std::memory_order_acquire);
  if (local != nullptr && node == local->name()) {
    Bump(local_events_);
    ports::AcceptResult result = local->AcceptEvent(node, std::move(event));
    if (result.violation()) {
      SHMPORTS_LOG(kError, "local event refused by our own node: %s",
                   result.ToString().c_str());
    }
    return;
  }
  LinkPtr link = FindLink(node);
  if (!link) {
    Bump(events_to_unknown_nodes_);
    return;
  }
  SendOnLink(link, *event);
}

void Router::BroadcastEvent(ports::ScopedEvent event) {
  std::vector<LinkPtr> links;
  {
    MutexLock lock(&links_mu_);
    for (const auto& [name, link] : links_)
      links.push_back(link);
  }
  for (const LinkPtr& link : links)
    SendOnLink(link, *event);
}

void Router::PortStatusChanged(const ports::PortRef& port) {
  std::shared_ptr<const PortStatusObserver> observer;
  {
    MutexLock lock(&observers_mu_);
    observer = port_status_observer_;
  }
  if (observer && *observer)
    (*observer)(port);
}

void Router::SendOnLink(const LinkPtr& link, const ports::Event& event) {
  const size_t size = event.GetSerializedSize();
  shm::Ring& ring = link->conn->outbound_ring();
  if (size > options_.max_message_bytes) {
    Bump(link->events_too_large);
    SHMPORTS_LOG_REPEATED(
        "router-event-too-large", kError,
        "event of %zu bytes to node %s exceeds the largest message (%llu "
        "bytes); dropped",
        size, link->peer.ToString().c_str(),
        static_cast<unsigned long long>(options_.max_message_bytes));
    return;
  }
  Status error;
  bool schedule_overflow = false;
  bool over_budget = false;
  {
    MutexLock lock(&link->mu);
    if (link->closed)
      return;
    if (link->goodbye_sent) {
      Bump(link->events_after_goodbye);
      return;
    }
    Pending pending;
    bool written = false;
    if (size <= ring.max_frame()) {
      if (link->overflow.empty()) {
        std::span<uint8_t> out;
        if (ring.Reserve(static_cast<uint32_t>(size), kEventFrameKind, 0, &out,
                         &error)) {
          Status serialized = event.Serialize(out);
          if (!serialized.ok()) {
            ring.Abandon();
            SHMPORTS_LOG(kError, "serialise event to node %s: %s",
                         link->peer.ToString().c_str(),
                         serialized.ToString().c_str());
            return;
          }
          error = ring.Commit();
          Bump(link->messages_sent);
          Bump(link->bytes_sent, size);
          written = true;
        }
      }
      if (!written && error.ok())
        pending.bytes = event.SerializeToVector();
    } else {
      // Too big for one frame: serialise once, then copy fragment by
      // fragment into the ring (Event::Serialize writes one span at once).
      pending.kind = kEventFragmentFrameKind;
      pending.bytes = event.SerializeToVector();
      if (link->overflow.empty())
        written = link->WriteLocked(pending, &error);
    }
    if (!written && error.ok()) {
      // Full, or earlier events wait: keep the link's FIFO order.
      if (!link->EnqueueLocked(std::move(pending),
                               options_.overflow_budget_bytes)) {
        over_budget = true;
      } else if (!link->space_service_pending) {
        link->space_service_pending = true;
        schedule_overflow = true;
      }
    }
  }
  if (over_budget) {
    Bump(budget_rejections_);
    reactor_->Post([this, link] {
      DropPeer(link,
               ResourceExhaustedError(StrFormat(
                   "peer is not draining: its overflow queue would exceed "
                   "the budget of %llu bytes",
                   static_cast<unsigned long long>(
                       options_.overflow_budget_bytes))));
    });
  } else if (!error.ok()) {
    reactor_->Post([this, link, error] {
      Status reason = error;
      DropPeer(link, std::move(reason).WithContext("outbound ring"));
    });
  } else if (schedule_overflow) {
    reactor_->Post([this, link] { ServiceOverflow(link); });
  }
}

bool Router::Link::EnqueueLocked(Pending pending, uint64_t budget) {
  const uint64_t remaining = pending.remaining();
  if (overflow_bytes + remaining > budget) {
    // Nothing more goes to this peer: it is dropped on the io thread.
    closed = true;
    overflow.clear();
    overflow_bytes = 0;
    overflow_depth.store(0, std::memory_order_relaxed);
    overflow_bytes_now.store(0, std::memory_order_relaxed);
    return false;
  }
  overflow.push_back(std::move(pending));
  overflow_bytes += remaining;
  uint64_t depth = overflow.size();
  overflow_depth.store(depth, std::memory_order_relaxed);
  if (depth > Relaxed(overflow_high_water))
    overflow_high_water.store(depth, std::memory_order_relaxed);
  overflow_bytes_now.store(overflow_bytes, std::memory_order_relaxed);
  if (overflow_bytes > Relaxed(overflow_bytes_high_water)) {
    overflow_bytes_high_water.store(overflow_bytes, std::memory_order_relaxed);
  }
  return true;
}

bool Router::Link::WriteLocked(Pending& pending, Status* error) {
  shm::Ring& ring = conn->outbound_ring();
  std::span<uint8_t> out;
  if (pending.kind != kEventFragmentFrameKind) {
    const uint32_t length = static_cast<uint32_t>(pending.bytes.size());
    if (!ring.Reserve(length, pending.kind, 0, &out, error))
      return false;
    if (length != 0)
      std::memcpy(out.data(), pending.bytes.data(), length);
    *error = ring.Commit();
    if (pending.kind == kEventFrameKind) {
      Bump(messages_sent);
      Bump(bytes_sent, length);
    }
    pending.offset = pending.bytes.size();
    return true;
  }
  const size_t chunk = FragmentDataCapacity(ring.max_frame());
  const uint64_t total = pending.bytes.size();
  while (pending.offset < total) {
    const size_t n = std::min<uint64_t>(chunk, total - pending.offset);
    if (!ring.Reserve(static_cast<uint32_t>(kFragmentHeaderSize + n),
                      kEventFragmentFrameKind, 0, &out, error)) {
      return false;
    }
    WriteFragmentHeader(out, FragmentHeader{total, pending.offset});
    std::memcpy(out.data() + kFragmentHeaderSize,
                pending.bytes.data() + pending.offset, n);
    *error = ring.Commit();
    pending.offset += n;
    Bump(fragments_sent);
    if (!error->ok())
      return false;
  }
  Bump(messages_sent);
  Bump(bytes_sent, total);
  return true;
}

void Router::NotifyFlushed() {
  MutexLock lock(&flush_mu_);
  ++flush_generation_;
  flush_cv_.SignalAll();
}

Status Router::SendGoodbyes(Deadline deadline) {
  if (reactor_->IsIoThread()) {
    return FailedPreconditionError(
        "Router::SendGoodbyes waits for the io thread; not on the io thread");
  }
  std::vector<LinkPtr> links;
  {
    MutexLock lock(&links_mu_);
    for (const auto& [name, link] : links_)
      links.push_back(link);
  }
  for (const LinkPtr& link : links) {
    bool schedule_overflow = false;
    {
      MutexLock lock(&link->mu);
      if (link->closed || link->goodbye_sent)
        continue;
      link->goodbye_sent = true;
      Pending goodbye;
      goodbye.kind = kGoodbyeFrameKind;
      Status error;
      if (link->overflow.empty() && link->WriteLocked(goodbye, &error))
        continue;
      // A goodbye is 0 bytes: it never breaks the budget.
      (void)link->EnqueueLocked(std::move(goodbye),
                                options_.overflow_budget_bytes);
      if (!link->space_service_pending) {
        link->space_service_pending = true;
        schedule_overflow = true;
      }
    }
    if (schedule_overflow)
      reactor_->Post([this, link] { ServiceOverflow(link); });
  }
  for (;;) {
    uint64_t seen;
    {
      MutexLock lock(&flush_mu_);
      seen = flush_generation_;
    }
    std::string behind;
    for (const LinkPtr& link : links) {
      MutexLock lock(&link->mu);
      if (!link->closed && !link->overflow.empty()) {
        behind +=
            StrFormat("%s%s (%llu bytes queued)", behind.empty() ? "" : ", ",
                      link->peer.ToString().c_str(),
                      static_cast<unsigned long long>(link->overflow_bytes));
      }
    }
    if (behind.empty())
      return Status::Ok();
    MutexLock lock(&flush_mu_);
    while (flush_generation_ == seen) {
      if (deadline.is_infinite()) {
        flush_cv_.Wait(&flush_mu_);
      } else if (!flush_cv_.WaitUntil(&flush_mu_, deadline.when()) &&
                 flush_generation_ == seen) {
        return UnavailableError("goodbye not yet in the ring for node(s) " +
                                behind);
      }
    }
  }
}

void Router::StartLink(const LinkPtr& link) {
  if (link->dead)
    return;
  auto pidfd = reactor_->WatchFd(
      link->conn->pidfd(), POLLIN, [this, link](Result<uint32_t>) {
        link->pidfd_token = Reactor::kInvalidToken;
        HandleDeath(link, "pidfd signalled: the peer process exited");
      });
  auto socket = reactor_->WatchFd(link->conn->socket_fd(), POLLIN | POLLRDHUP,
                                  [this, link](Result<uint32_t> revents) {
                                    link->socket_token = Reactor::kInvalidToken;
                                    OnSocketEvent(link, std::move(revents));
                                  });
  if (!pidfd.ok() || !socket.ok()) {
    Status reason = !pidfd.ok() ? pidfd.status() : socket.status();
    DropPeer(link, std::move(reason).WithContext("watch peer for death"));
    return;
  }
  link->pidfd_token = *pidfd;
  link->socket_token = *socket;
  ServiceInbound(link);
}

Result<size_t> Router::DrainInbound(const LinkPtr& link, size_t max_frames) {
  ports::Node* node = node_.load(std::memory_order_acquire);
  Status bad;
  auto deliver = [&](std::span<const uint8_t> bytes) {
    auto event =
        ports::Event::Deserialize(bytes, link->conn->negotiated_minor());
    if (!event.ok() && ports::IsEventFromNewerMinor(event.status())) {
      // The peer speaks a type of a minor we did not agree on: harmless.
      Bump(link->events_ignored);
      return;
    }
    if (!event.ok()) {
      bad = std::move(event).TakeStatus().WithContext("decode event");
      return;
    }
    Bump(link->messages_received);
    Bump(link->bytes_received, bytes.size());
    ports::AcceptResult result =
        node->AcceptEvent(link->peer, std::move(*event));
    if (result.ignored()) {
      Bump(link->events_ignored);
    } else if (result.violation()) {
      bad = ProtocolViolationError(
          StrFormat("event violates the ports protocol: %s",
                    result.reason ? result.reason : "?"));
    }
  };
  auto drained = link->conn->inbound_ring().Drain(
      [&](const shm::FrameView& frame) {
        if (!bad.ok())
          return;
        if (link->goodbye_received) {
          bad = ProtocolViolationError(
              StrFormat("frame of kind %u after the goodbye", frame.kind));
          return;
        }
        switch (frame.kind) {
          case kEventFrameKind:
            bad = link->assembler.CheckNoStreamOpen("an event frame");
            if (bad.ok())
              deliver(frame.payload);
            return;
          case kEventFragmentFrameKind: {
            auto done = link->assembler.Accept(frame.payload, frame.flags);
            link->reassembly_bytes.store(link->assembler.charged_bytes(),
                                         std::memory_order_relaxed);
            if (!done.ok()) {
              bad = std::move(done).TakeStatus();
              return;
            }
            Bump(link->fragments_received);
            if (*done) {
              std::vector<uint8_t> message = link->assembler.TakeMessage();
              link->reassembly_bytes.store(0, std::memory_order_relaxed);
              deliver(message);
            }
            return;
          }
          case kGoodbyeFrameKind:
            bad = link->assembler.CheckNoStreamOpen("a goodbye");
            if (bad.ok() && (!frame.payload.empty() || frame.flags != 0)) {
              bad = ProtocolViolationError(
                  StrFormat("goodbye with %zu payload bytes, flags %u",
                            frame.payload.size(), frame.flags));
            }
            if (bad.ok())
              link->goodbye_received = true;
            return;
          default:
            bad = ProtocolViolationError(
                StrFormat("frame of unknown kind %u", frame.kind));
            return;
        }
      },
      max_frames);
  if (!drained.ok())
    return std::move(drained).TakeStatus().WithContext("inbound ring");
  if (!bad.ok())
    return bad;
  return *drained;
}

void Router::ServiceInbound(const LinkPtr& link) {
  if (link->data_token != Reactor::kInvalidToken) {
    // Posted while a wait was armed: one wait per link at a time.
    reactor_->Cancel(link->data_token);
    link->data_token = Reactor::kInvalidToken;
  }
  if (link->dead)
    return;
  shm::Ring& ring = link->conn->inbound_ring();
  if (!TakeForIo(link)) {
    // A waiting thread drains this ring. When it leaves it announces sleep
    // for us, so keep a wait armed (without touching its announcement); if
    // the io thread wants the ring back, the holder Posts the reclaim.
    if (!link->reclaim.load()) {
      ArmInbound(link, std::atomic_ref<uint32_t>(*ring.data_futex_word())
                           .load(std::memory_order_acquire));
    }
    return;
  }
  // A holder handed us a violation or a goodbye: act on it before draining
  // past it.
  if (RunQueuedReclaims(link))
    return;
  // The token is ours, and with it the sleep announcement.
  ring.CancelSleep();
  uint32_t seq;
  for (;;) {
    auto drained = DrainInbound(link, kMaxFramesPerRound);
    if (!drained.ok()) {
      DropPeer(link, std::move(drained).TakeStatus());
      return;
    }
    Bump(link->frames_by_io, *drained);
    if (link->goodbye_received) {
      HandleGoodbye(link);
      return;
    }
    if (*drained >= kMaxFramesPerRound) {
      // Let other links and tasks run; come back at once.
      ReleaseFromIo(link);
      reactor_->Post([this, link] { ServiceInbound(link); });
      return;
    }
    // The arming protocol of shm::Ring: acquire-load the word (pairs with
    // the producer's release increment before FUTEX_WAKE), announce, then
    // re-check, then wait for a change of the loaded value.
    seq = std::atomic_ref<uint32_t>(*ring.data_futex_word())
              .load(std::memory_order_acquire);
    ring.AnnounceSleep();
    auto has_data = ring.HasData();
    if (!has_data.ok() || *has_data) {
      ring.CancelSleep();
      if (!has_data.ok()) {
        DropPeer(link, std::move(has_data).TakeStatus());
        return;
      }
      continue;
    }
    break;
  }
  ArmInbound(link, seq);
  if (!link->dead)
    ReleaseFromIo(link);
}

bool Router::RunQueuedReclaims(const LinkPtr& link) {
  std::vector<std::function<void()>> tasks;
  {
    MutexLock lock(&link->reclaim_mu);
    tasks.swap(link->reclaim_tasks);
  }
  for (auto& task : tasks)
    task();
  return !tasks.empty();
}

void Router::ArmInbound(const LinkPtr& link, uint32_t seq) {
  // `seq` was loaded before the announcement and re-check (io thread's own
  // arming), or after a failed token CAS (the holder announces for us when
  // it leaves, and re-checks after that): a publish after the load changes
  // the word, and the wait then completes at once.
  shm::Ring& ring = link->conn->inbound_ring();
  auto token = reactor_->WatchFutex(ring.data_futex_word(), seq,
                                    [this, link](Result<FutexWake>) {
                                      link->data_token = Reactor::kInvalidToken;
                                      ServiceInbound(link);
                                    });
  if (!token.ok()) {
    DropPeer(link, std::move(token).TakeStatus());
    return;
  }
  link->data_token = *token;
}

bool Router::TakeForIo(const LinkPtr& link) {
  uint32_t expected = kConsumerFree;
  if (link->consumer.compare_exchange_strong(expected, kConsumerIo))
    return true;
  return expected == kConsumerIo;  // Only the io thread stores kConsumerIo.
}

void Router::ReleaseFromIo(const LinkPtr& link) {
  link->consumer.store(kConsumerFree);
}

bool Router::ReclaimForIo(const LinkPtr& link, std::function<void()> retry) {
  // Dekker pair with InboundLease::Release (router.h): store, then CAS.
  link->reclaim.store(true);
  if (TakeForIo(link))
    return true;
  {
    MutexLock lock(&link->reclaim_mu);
    link->reclaim_tasks.push_back(std::move(retry));
  }
  std::atomic_ref<uint32_t>(link->reclaim_word).fetch_add(1);
  shm::FutexWake(&link->reclaim_word, INT_MAX);
  return false;
}

void Router::RunReclaimTasks(const LinkPtr& link) {
  if (!TakeForIo(link))
    return;  // Another holder: it Posts again when it releases.
  if (!RunQueuedReclaims(link) && !link->dead) {
    // Nothing left to run (a duplicate Post): serve the ring again.
    ReleaseFromIo(link);
    ServiceInbound(link);
  }
}

bool Router::TryTakeInbound(const ports::NodeName& peer,
                            std::optional<InboundLease>* lease) {
  LinkPtr link;
  if (peer.is_valid()) {
    link = FindLink(peer);
  } else {
    MutexLock lock(&links_mu_);
    if (links_.size() == 1)
      link = links_.begin()->second;
  }
  if (!link || link->reclaim.load())
    return false;
  uint32_t expected = kConsumerFree;
  if (!link->consumer.compare_exchange_strong(expected, kConsumerWaiter))
    return false;
  lease->emplace(this, std::move(link));
  if ((*lease)->reclaim_requested()) {
    // Asked for meanwhile: give it straight back.
    (*lease)->ReleaseWithoutDrain();
    lease->reset();
    return false;
  }
  return true;
}

Router::InboundLease::InboundLease(Router* router, LinkPtr link)
    : router_(router), link_(std::move(link)) {}

Router::InboundLease::~InboundLease() {
  Release(/*may_drain=*/true);
}

void Router::InboundLease::ReleaseWithoutDrain() {
  Release(/*may_drain=*/false);
}

bool Router::InboundLease::reclaim_requested() const {
  return link_->reclaim.load();
}

uint32_t* Router::InboundLease::data_word() {
  return link_->conn->inbound_ring().data_futex_word();
}

uint32_t* Router::InboundLease::reclaim_word() {
  return &link_->reclaim_word;
}

void Router::InboundLease::HandToIo(std::function<void()> task) {
  {
    MutexLock lock(&link_->reclaim_mu);
    link_->reclaim_tasks.push_back(std::move(task));
  }
  link_->reclaim.store(true);
}

size_t Router::InboundLease::Drain() {
  if (released_ || link_->reclaim.load())
    return 0;
  Router* router = router_;
  LinkPtr link = link_;
  auto drained = router_->DrainInbound(link_, kMaxFramesPerRound);
  if (!drained.ok()) {
    Status reason = std::move(drained).TakeStatus();
    HandToIo([router, link, reason] { router->DropPeer(link, reason); });
    return 0;
  }
  Bump(link_->frames_by_waiters, *drained);
  if (link_->goodbye_received)
    HandToIo([router, link] { router->HandleGoodbye(link); });
  return *drained;
}

bool Router::InboundLease::PrepareSleep(uint32_t* expected) {
  if (released_ || link_->reclaim.load())
    return false;
  shm::Ring& ring = link_->conn->inbound_ring();
  *expected = std::atomic_ref<uint32_t>(*ring.data_futex_word())
                  .load(std::memory_order_acquire);
  ring.AnnounceSleep();
  auto has_data = ring.HasData();
  if (!has_data.ok()) {
    Status reason = std::move(has_data).TakeStatus();
    Router* router = router_;
    LinkPtr link = link_;
    HandToIo([router, link, reason] { router->DropPeer(link, reason); });
    return false;
  }
  return !*has_data;
}

void Router::InboundLease::Release(bool may_drain) {
  if (released_)
    return;
  released_ = true;
  shm::Ring& ring = link_->conn->inbound_ring();
  bool hand_rest_to_io = !may_drain;
  if (!link_->reclaim.load()) {
    // Announce for the io thread's armed wait (router.h), then re-check
    // while still holding the token; drain what came meanwhile.
    for (int pass = 0;; ++pass) {
      ring.AnnounceSleep();
      auto has_data = ring.HasData();
      if (!has_data.ok()) {
        Status reason = std::move(has_data).TakeStatus();
        Router* router = router_;
        LinkPtr link = link_;
        HandToIo([router, link, reason] { router->DropPeer(link, reason); });
        break;
      }
      if (!*has_data)
        break;
      if (!may_drain || pass == kMaxReleasePasses) {
        hand_rest_to_io = true;
        break;
      }
      released_ = false;
      Drain();
      released_ = true;
      if (link_->reclaim.load())
        break;
    }
  }
  // Dekker pair with ReclaimForIo: store kFree, then load reclaim.
  link_->consumer.store(kConsumerFree);
  if (link_->reclaim.load()) {
    Router* router = router_;
    LinkPtr link = link_;
    router_->reactor_->Post([router, link] { router->RunReclaimTasks(link); });
  } else if (hand_rest_to_io) {
    Router* router = router_;
    LinkPtr link = link_;
    router_->reactor_->Post([router, link] { router->ServiceInbound(link); });
  }
}

bool Router::DrainOverflow(const LinkPtr& link) {
  Status error;
  bool empty = false;
  {
    MutexLock lock(&link->mu);
    while (!link->closed && !link->overflow.empty()) {
      Pending& front = link->overflow.front();
      const uint64_t before = front.remaining();
      bool done = link->WriteLocked(front, &error);
      link->overflow_bytes -= before - front.remaining();
      if (!done)
        break;
      link->overflow.pop_front();
      if (!error.ok())
        break;
    }
    link->overflow_depth.store(link->overflow.size(),
                               std::memory_order_relaxed);
    link->overflow_bytes_now.store(link->overflow_bytes,
                                   std::memory_order_relaxed);
    empty = link->closed || link->overflow.empty();
    if (empty || !error.ok())
      link->space_service_pending = false;
  }
  if (empty)
    NotifyFlushed();
  if (!error.ok()) {
    DropPeer(link, std::move(error).WithContext("outbound ring"));
    return true;
  }
  return empty;
}

void Router::ServiceOverflow(const LinkPtr& link) {
  link->space_token = Reactor::kInvalidToken;
  if (link->dead || DrainOverflow(link))
    return;
  // Still full: shm::Ring's space-wait protocol. Announce (loads the space
  // counter, then sets the shared flag), retry, and only then arm the
  // io_uring wait with the loaded value; cancel once woken or not needed.
  shm::Ring& ring = link->conn->outbound_ring();
  uint32_t expected = ring.AnnounceSpaceWait();
  if (DrainOverflow(link) || link->dead) {
    ring.CancelSpaceWait();
    return;
  }
  auto token = reactor_->WatchFutex(
      ring.space_futex_word(), expected, [this, link](Result<FutexWake>) {
        link->space_wait_announced = false;
        link->conn->outbound_ring().CancelSpaceWait();
        ServiceOverflow(link);
      });
  if (!token.ok()) {
    ring.CancelSpaceWait();
    DropPeer(link, std::move(token).TakeStatus().WithContext("space wait"));
    return;
  }
  link->space_wait_announced = true;
  link->space_token = *token;
}

void Router::OnSocketEvent(const LinkPtr& link, Result<uint32_t> revents) {
  if (link->dead)
    return;
  if (!revents.ok() || (*revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) {
    HandleDeath(link, "socket hang-up");
    return;
  }
  // Nothing is defined on the socket after the handshake yet (the goodbye
  // comes with the user API): read what arrived and ignore it.
  ReceiveLimits limits;
  limits.max_bytes = kMaxSocketMessageBytes;
  auto message =
      ReceiveMessage(link->conn->socket_fd(), limits, Deadline::Now());
  if (!message.ok()) {
    if (message.status().code() == StatusCode::kPeerClosed) {
      HandleDeath(link, "socket hang-up");
      return;
    }
    if (message.status().code() != StatusCode::kUnavailable) {
      DropPeer(link, std::move(message).TakeStatus().WithContext("socket"));
      return;
    }
  }
  auto token = reactor_->WatchFd(link->conn->socket_fd(), POLLIN | POLLRDHUP,
                                 [this, link](Result<uint32_t> r) {
                                   link->socket_token = Reactor::kInvalidToken;
                                   OnSocketEvent(link, std::move(r));
                                 });
  if (!token.ok()) {
    DropPeer(link, std::move(token).TakeStatus().WithContext("watch socket"));
    return;
  }
  link->socket_token = *token;
}

void Router::HandleDeath(const LinkPtr& link, const std::string& signal) {
  if (link->dead)
    return;
  // A waiter draining the ring hands it back first (and Posts this again).
  if (!ReclaimForIo(link, [this, link, signal] { HandleDeath(link, signal); }))
    return;
  // Every frame the peer published before it died is delivered, in order,
  // before its routes are declared broken.
  for (int pass = 0; pass < kMaxDeathDrainPasses; ++pass) {
    auto drained = DrainInbound(link, std::numeric_limits<size_t>::max());
    if (!drained.ok()) {
      SHMPORTS_LOG(kWarning, "draining dead peer %s: %s",
                   link->peer.ToString().c_str(),
                   drained.status().ToString().c_str());
      break;
    }
    Bump(link->frames_by_io, *drained);
    if (link->goodbye_received) {
      // It said goodbye before it went: a close, not a death.
      HandleGoodbye(link);
      return;
    }
    if (*drained == 0)
      break;
  }
  bool we_said_goodbye;
  {
    MutexLock lock(&link->mu);
    we_said_goodbye = link->goodbye_sent;
  }
  if (we_said_goodbye) {
    // Our goodbye made the peer hang up: the end we asked for.
    RemoveLink(link,
               PeerClosedError("link to node " + link->peer.ToString() +
                               " closed after our goodbye (" + signal + ")"));
    return;
  }
  Bump(peer_deaths_);
  RemoveLink(link, PeerClosedError("peer node " + link->peer.ToString() +
                                   " is gone (" + signal + ")"));
}

void Router::HandleGoodbye(const LinkPtr& link) {
  if (link->dead)
    return;
  if (!ReclaimForIo(link, [this, link] { HandleGoodbye(link); }))
    return;
  Bump(goodbyes_received_);
  RemoveLink(link, PeerClosedError("peer node " + link->peer.ToString() +
                                   " said goodbye"));
}

void Router::DropPeer(const LinkPtr& link, Status reason) {
  if (link->dead)
    return;
  // No holder drains past the reason: take the ring back first.
  if (!ReclaimForIo(link, [this, link, reason] { DropPeer(link, reason); }))
    return;
  Bump(peers_dropped_);
  {
    std::string key = reason.text().substr(0, 160);
    MutexLock lock(&stats_mu_);
    ++violations_[std::string(StatusCodeName(reason.code())) + ": " + key];
  }
  SHMPORTS_LOG(kWarning, "dropping peer node %s (pid %d): %s",
               link->peer.ToString().c_str(), link->conn->peer_identity().pid,
               reason.ToString().c_str());
  RemoveLink(link, reason);
}

void Router::RemoveLink(const LinkPtr& link, const Status& reason) {
  link->dead = true;
  // On the io thread a Cancel takes effect at once: no callback of these
  // tokens runs later, and no armed wait points into the segments.
  reactor_->Cancel(link->data_token);
  reactor_->Cancel(link->space_token);
  reactor_->Cancel(link->pidfd_token);
  reactor_->Cancel(link->socket_token);
  if (link->space_wait_announced) {
    link->space_wait_announced = false;
    link->conn->outbound_ring().CancelSpaceWait();
  }
  {
    MutexLock lock(&link->mu);
    link->closed = true;
    link->overflow.clear();
    link->overflow_bytes = 0;
    link->overflow_depth.store(0, std::memory_order_relaxed);
    link->overflow_bytes_now.store(0, std::memory_order_relaxed);
  }
  NotifyFlushed();
  {
    MutexLock lock(&links_mu_);
    auto it = links_.find(link->peer);
    if (it != links_.end() && it->second == link)
      links_.erase(it);
  }
  link->conn->ShutdownSocket();
  if (ports::Node* node = node_.load(std::memory_order_acquire))
    node->LostConnectionToNode(link->peer);
  std::shared_ptr<const PeerLostObserver> observer;
  {
    MutexLock lock(&observers_mu_);
    observer = peer_lost_observer_;
  }
  if (observer && *observer)
    (*observer)(link->peer, reason);
}

RouterStats Router::GetStats() const {
  RouterStats stats;
  std::vector<LinkPtr> links;
  {
    MutexLock lock(&links_mu_);
    for (const auto& [name, link] : links_)
      links.push_back(link);
  }
  for (const LinkPtr& link : links) {
    LinkStats s;
    s.peer = link->peer;
    s.peer_pid = link->conn->peer_identity().pid;
    s.messages_sent = Relaxed(link->messages_sent);
    s.bytes_sent = Relaxed(link->bytes_sent);
    s.messages_received = Relaxed(link->messages_received);
    s.bytes_received = Relaxed(link->bytes_received);
    s.events_ignored = Relaxed(link->events_ignored);
    s.events_too_large = Relaxed(link->events_too_large);
    s.overflow_depth = Relaxed(link->overflow_depth);
    s.overflow_high_water = Relaxed(link->overflow_high_water);
    s.events_after_goodbye = Relaxed(link->events_after_goodbye);
    s.overflow_bytes = Relaxed(link->overflow_bytes_now);
    s.overflow_bytes_high_water = Relaxed(link->overflow_bytes_high_water);
    s.fragments_sent = Relaxed(link->fragments_sent);
    s.fragments_received = Relaxed(link->fragments_received);
    s.reassembly_bytes = Relaxed(link->reassembly_bytes);
    shm::Ring& out = link->conn->outbound_ring();
    shm::Ring& in = link->conn->inbound_ring();
    s.outbound_capacity = out.capacity();
    s.outbound_fill = RingFill(link->conn->outbound_control(), out.capacity());
    s.inbound_fill = RingFill(link->conn->inbound_control(), in.capacity());
    shm::RingStats out_stats = out.stats();
    shm::RingStats in_stats = in.stats();
    s.data_wakes_issued = out_stats.data_wakes_issued;
    s.data_wakes_avoided = out_stats.data_wakes_avoided;
    s.space_wakes_issued = in_stats.space_wakes_issued;
    s.space_wakes_avoided = in_stats.space_wakes_avoided;
    s.frames_drained_by_io = Relaxed(link->frames_by_io);
    s.frames_drained_by_waiters = Relaxed(link->frames_by_waiters);
    stats.links.push_back(s);
  }
  stats.peer_deaths = Relaxed(peer_deaths_);
  stats.peers_dropped = Relaxed(peers_dropped_);
  stats.local_events = Relaxed(local_events_);
  stats.events_to_unknown_nodes = Relaxed(events_to_unknown_nodes_);
  stats.budget_rejections = Relaxed(budget_rejections_);
  stats.goodbyes_received = Relaxed(goodbyes_received_);
  MutexLock lock(&stats_mu_);
  stats.violations = violations_;
  return stats;
}

}  // namespace shmports::channel
