#include "channel/connection.h"

#include <sys/socket.h>

#include <utility>

#include "channel/spawn.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"

namespace shmports::channel {
namespace {

IdentityMode ModeOf(const ConnectionOptions& options) {
  return options.identity_mode_set ? options.identity_mode
                                   : DetectIdentityMode();
}

// One handshake message from the authenticated peer: the kernel's
// credentials on THIS message must name the process identified at the start.
Result<ReceivedMessage> ReceiveFromPeer(int socket_fd,
                                        const PeerIdentity& peer,
                                        size_t max_fds,
                                        Deadline deadline) {
  ReceiveLimits limits;
  limits.max_bytes = kMaxHandshakeMessage;
  limits.max_fds = max_fds;
  SHMPORTS_ASSIGN_OR_RETURN(ReceivedMessage message,
                            ReceiveMessage(socket_fd, limits, deadline));
  if (!message.has_credentials) {
    return ProtocolViolationError(
        "handshake message arrived without kernel credentials (SO_PASSCRED "
        "not set on the socket pair?)");
  }
  if (message.credentials.pid != peer.pid ||
      message.credentials.uid != peer.uid) {
    return ProtocolViolationError(StrFormat(
        "handshake message from pid %d uid %u, but the authenticated peer is "
        "pid %d uid %u",
        message.credentials.pid, message.credentials.uid, peer.pid, peer.uid));
  }
  // A peer that exits right after sending (a refusal, say) still said it:
  // the message is handled; its death is the Router's business.
  return message;
}

// Tells the peer why we give up (best effort: it may be gone), unless the
// failure is its death.
Status Refuse(int socket_fd, Status status, uint16_t major) {
  if (status.code() != StatusCode::kPeerClosed) {
    std::vector<uint8_t> bytes =
        EncodeRefuse(status.ToString(), major, kProtocolMinor);
    (void)SendMessage(socket_fd, bytes, {},
                      Deadline::In(std::chrono::milliseconds(100)));
  }
  return status;
}

Result<HandshakeMessage> DecodeExpecting(const ReceivedMessage& message,
                                         HandshakeType expected,
                                         uint16_t our_major) {
  SHMPORTS_ASSIGN_OR_RETURN(HandshakeMessage decoded,
                            DecodeHandshakeMessage(message.bytes, our_major));
  if (decoded.type == HandshakeType::kRefuse) {
    return FailedPreconditionError("peer refused the connection: " +
                                   decoded.reason);
  }
  if (decoded.type != expected) {
    return ProtocolViolationError(StrFormat(
        "handshake: expected %s, peer sent %s", HandshakeTypeName(expected),
        HandshakeTypeName(decoded.type)));
  }
  return decoded;
}

}  // namespace

Connection::~Connection() {
  // Rings first: they point into the segments.
  in_ring_.reset();
  out_ring_.reset();
}

shm::RingControl* Connection::outbound_control() const {
  return reinterpret_cast<shm::RingControl*>(out_segment_->base() +
                                             shm::kSegmentHeaderSize);
}

const shm::RingControl* Connection::inbound_control() const {
  return reinterpret_cast<const shm::RingControl*>(in_segment_->base() +
                                                   shm::kSegmentHeaderSize);
}

void Connection::ShutdownSocket() {
  if (socket_.valid())
    ::shutdown(socket_.get(), SHUT_RDWR);
}

Status Connection::CreateOutboundRing(const shm::RingOptions& options) {
  SHMPORTS_RETURN_IF_ERROR(shm::Ring::CheckCapacity(options.capacity));
  SHMPORTS_ASSIGN_OR_RETURN(
      shm::Segment segment,
      shm::Segment::Create(RingSegmentSize(options.capacity), "shmports-ring"));
  out_segment_ = std::make_unique<shm::Segment>(std::move(segment));
  SHMPORTS_ASSIGN_OR_RETURN(
      std::span<uint8_t> region,
      out_segment_->Region(shm::kSegmentHeaderSize,
                           shm::Ring::RegionSize(options.capacity)));
  SHMPORTS_ASSIGN_OR_RETURN(out_ring_, shm::Ring::Create(region, options));
  return Status::Ok();
}

Status Connection::MapInboundRing(ScopedFd fd, const HandshakeHello& hello) {
  // The size is computed from the announced capacity, never taken from the
  // peer: Map refuses a segment of any other size or without all seals.
  auto segment =
      shm::Segment::Map(fd.Release(), RingSegmentSize(hello.ring_capacity));
  if (!segment.ok())
    return std::move(segment).TakeStatus().WithContext("map peer's segment");
  in_segment_ = std::make_unique<shm::Segment>(std::move(*segment));
  SHMPORTS_ASSIGN_OR_RETURN(
      std::span<uint8_t> region,
      in_segment_->Region(shm::kSegmentHeaderSize,
                          shm::Ring::RegionSize(hello.ring_capacity)));
  shm::RingOptions options;
  options.capacity = hello.ring_capacity;
  options.max_frame = hello.max_frame;
  auto ring = shm::Ring::Attach(region, options);
  if (!ring.ok())
    return std::move(ring).TakeStatus().WithContext("attach peer's ring");
  in_ring_ = std::move(*ring);
  return Status::Ok();
}

Result<std::unique_ptr<Connection>> Connection::Invite(
    ScopedFd socket,
    const ports::NodeName& local_name,
    const ports::NodeName& assigned_peer_name,
    const ports::PortName& local_bootstrap_port,
    const ConnectionOptions& options,
    int launched_pidfd) {
  const std::string context =
      "connect to node " + assigned_peer_name.ToString();
  const Deadline deadline = Deadline::In(options.handshake_timeout);
  const uint16_t major = options.testing_major;
  std::unique_ptr<Connection> c(new Connection());
  c->socket_ = std::move(socket);
  c->local_name_ = local_name;
  c->peer_name_ = assigned_peer_name;
  c->local_bootstrap_ = local_bootstrap_port;
  const int fd = c->socket_.get();

  auto step = [&]() -> Status {
    SHMPORTS_ASSIGN_OR_RETURN(
        c->peer_, AuthenticatePeer(fd, ModeOf(options), options.identity_policy,
                                   deadline, launched_pidfd));
    SHMPORTS_RETURN_IF_ERROR(IntroduceSelf(fd, deadline));
    Status s = c->CreateOutboundRing(options.outbound_ring);
    if (!s.ok())
      return Refuse(fd, std::move(s).WithContext("create outbound ring"),
                    major);
    HandshakeHello invite;
    invite.type = HandshakeType::kInvite;
    invite.major = major;
    invite.sender_name = local_name;
    invite.receiver_name = assigned_peer_name;
    invite.bootstrap_port = local_bootstrap_port;
    invite.ring_capacity = c->out_ring_->capacity();
    invite.max_frame = c->out_ring_->max_frame();
    invite.caps = options.receive_caps;
    const int seg_fd = c->out_segment_->fd();
    SHMPORTS_RETURN_IF_ERROR(SendMessage(
        fd, EncodeHello(invite), std::span<const int>(&seg_fd, 1), deadline));
    auto received = ReceiveFromPeer(fd, c->peer_, 1, deadline);
    if (!received.ok())
      return Refuse(fd, std::move(received).TakeStatus(), major);
    auto accept = DecodeExpecting(*received, HandshakeType::kAccept, major);
    if (!accept.ok()) {
      if (accept.status().code() == StatusCode::kFailedPrecondition &&
          accept.status().message().starts_with("peer refused"))
        return std::move(accept).TakeStatus();
      return Refuse(fd, std::move(accept).TakeStatus(), major);
    }
    const HandshakeHello& hello = accept->hello;
    if (hello.sender_name != assigned_peer_name) {
      return Refuse(fd,
                    ProtocolViolationError(StrFormat(
                        "invitee claims node name %s, but was assigned %s",
                        hello.sender_name.ToString().c_str(),
                        assigned_peer_name.ToString().c_str())),
                    major);
    }
    if (hello.receiver_name != local_name) {
      return Refuse(fd,
                    ProtocolViolationError(StrFormat(
                        "invitee answers node %s, but this node is %s",
                        hello.receiver_name.ToString().c_str(),
                        local_name.ToString().c_str())),
                    major);
    }
    s = CheckAnnouncedRing(hello, options.limits);
    if (s.ok() && received->fds.size() != 1) {
      s = ProtocolViolationError(StrFormat(
          "accept carried %zu descriptors, expected its ring's segment",
          received->fds.size()));
    }
    if (s.ok())
      s = c->MapInboundRing(std::move(received->fds[0]), hello);
    if (!s.ok())
      return Refuse(fd, std::move(s), major);
    c->peer_bootstrap_ = hello.bootstrap_port;
    c->peer_caps_ = hello.caps;
    c->minor_ = NegotiateMinor(kProtocolMinor, hello.minor);
    return SendMessage(fd, EncodeReady(major, kProtocolMinor), {}, deadline);
  };
  Status status = step();
  if (!status.ok())
    return std::move(status).WithContext(context);
  return c;
}

Result<std::unique_ptr<Connection>> Connection::Accept(
    ScopedFd socket,
    const NameAssignedFn& on_name_assigned,
    const ConnectionOptions& options) {
  const Deadline deadline = Deadline::In(options.handshake_timeout);
  const uint16_t major = options.testing_major;
  std::unique_ptr<Connection> c(new Connection());
  c->socket_ = std::move(socket);
  const int fd = c->socket_.get();

  auto step = [&]() -> Status {
    SHMPORTS_RETURN_IF_ERROR(IntroduceSelf(fd, deadline));
    SHMPORTS_ASSIGN_OR_RETURN(
        c->peer_, AuthenticatePeer(fd, ModeOf(options), options.identity_policy,
                                   deadline));
    auto received = ReceiveFromPeer(fd, c->peer_, 1, deadline);
    if (!received.ok())
      return Refuse(fd, std::move(received).TakeStatus(), major);
    auto invite = DecodeExpecting(*received, HandshakeType::kInvite, major);
    if (!invite.ok()) {
      if (invite.status().code() == StatusCode::kFailedPrecondition &&
          invite.status().message().starts_with("peer refused"))
        return std::move(invite).TakeStatus();
      return Refuse(fd, std::move(invite).TakeStatus(), major);
    }
    const HandshakeHello& hello = invite->hello;
    Status s = CheckAnnouncedRing(hello, options.limits);
    if (s.ok() && received->fds.size() != 1) {
      s = ProtocolViolationError(StrFormat(
          "invite carried %zu descriptors, expected its ring's segment",
          received->fds.size()));
    }
    if (s.ok() && hello.sender_name == hello.receiver_name) {
      s = ProtocolViolationError(
          "inviter assigned this side its own node name " +
          hello.sender_name.ToString());
    }
    if (s.ok())
      s = c->MapInboundRing(std::move(received->fds[0]), hello);
    if (s.ok())
      s = c->CreateOutboundRing(options.outbound_ring);
    if (!s.ok())
      return Refuse(fd, std::move(s), major);
    c->peer_name_ = hello.sender_name;
    c->local_name_ = hello.receiver_name;
    c->peer_bootstrap_ = hello.bootstrap_port;
    c->peer_caps_ = hello.caps;
    c->minor_ = NegotiateMinor(kProtocolMinor, hello.minor);
    auto port = on_name_assigned(c->local_name_);
    if (!port.ok())
      return Refuse(fd, std::move(port).TakeStatus(), major);
    c->local_bootstrap_ = *port;

    HandshakeHello accept;
    accept.type = HandshakeType::kAccept;
    accept.major = major;
    accept.sender_name = options.testing_claimed_name.is_valid()
                             ? options.testing_claimed_name
                             : c->local_name_;
    accept.receiver_name = c->peer_name_;
    accept.bootstrap_port = c->local_bootstrap_;
    accept.ring_capacity = c->out_ring_->capacity();
    accept.max_frame = c->out_ring_->max_frame();
    accept.caps = options.receive_caps;
    const int seg_fd = c->out_segment_->fd();
    SHMPORTS_RETURN_IF_ERROR(SendMessage(
        fd, EncodeHello(accept), std::span<const int>(&seg_fd, 1), deadline));
    auto ready_msg = ReceiveFromPeer(fd, c->peer_, 0, deadline);
    if (!ready_msg.ok())
      return std::move(ready_msg).TakeStatus();
    auto ready = DecodeExpecting(*ready_msg, HandshakeType::kReady, major);
    if (!ready.ok())
      return std::move(ready).TakeStatus();
    return Status::Ok();
  };
  Status status = step();
  if (!status.ok())
    return std::move(status).WithContext("accept connection");
  return c;
}

}  // namespace shmports::channel
