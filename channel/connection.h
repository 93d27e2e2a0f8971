// Connection: one established link between this process's Node and a peer
// Node in another process (or another Process object in this one), as the
// handshake over a credentialed SOCK_SEQPACKET socket leaves it.
//
// The handshake (wire format in handshake.h) runs on the CALLER's thread and
// blocks up to a deadline:
//   1. Mutual kernel identity (identity.h): the inviter authenticates the
//      invitee (with the pidfd from SpawnChild when it launched the child, so
//      a child that dies before speaking is a death at once), then the
//      invitee authenticates the inviter. Another uid is refused unless the
//      policy allows it.
//   2. kInvite: the inviter's name, the name it ASSIGNS to the invitee, its
//      bootstrap port, the ring it produces into (capacity, max frame, the
//      sealed segment by SCM_RIGHTS), wake method, receive caps.
//   3. kAccept: the invitee echoes its assigned name (a different one is
//      refused: names are the inviter's to give), its bootstrap port, ring.
//   4. kReady from the inviter.
// Every later handshake message must come from the authenticated pid and uid
// (the kernel's credentials on each message, not just the first).
//
// Errors carry the context "connect to node <name>" / "accept connection":
//   kPeerClosed          the peer died or hung up during the handshake (a
//                        death, not a fault of the peer);
//   kFailedPrecondition  another major protocol version (both named), or the
//                        peer refused us (its reason included);
//   kProtocolViolation   a refused identity, a bad message, a wrong name, a
//                        ring outside the limits;
//   kCorrupt             the peer's segment failed the seal/size/layout check;
//   kUnavailable         the deadline passed.
// On any refusal this side tells the peer why (kRefuse) before returning.
//
// Ownership: a Connection owns its socket, the peer's pidfd, both segments
// (the one it created for its outbound ring, the one it mapped for its
// inbound ring) and both Ring objects. Not thread-safe by itself: the Router
// that takes it decides who touches which half (rings: see shm/ring.h).
#ifndef SHMPORTS_CHANNEL_CONNECTION_H_
#define SHMPORTS_CHANNEL_CONNECTION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "channel/handshake.h"
#include "channel/identity.h"
#include "channel/scoped_fd.h"
#include "channel/socket.h"
#include "core/base/status.h"
#include "core/ports/name.h"
#include "shm/ring.h"
#include "shm/ring_layout.h"
#include "shm/segment.h"

namespace shmports::channel {

struct ConnectionOptions {
  IdentityPolicy identity_policy;
  // How this side identifies the peer's messages; DetectIdentityMode() when
  // unset (the environment switch forces the pre-6.5 path).
  bool identity_mode_set = false;
  IdentityMode identity_mode = IdentityMode::kScmPidfd;
  // The ring this side produces into (max_frame 0: capacity / 4).
  shm::RingOptions outbound_ring;
  ReceiveCaps receive_caps;
  HandshakeLimits limits;
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);

  // For tests only: announce this major version, and (invitee) claim this
  // node name instead of the assigned one.
  uint16_t testing_major = kProtocolMajor;
  ports::NodeName testing_claimed_name;
};

class Connection {
 public:
  // Inviter side. `launched_pidfd` (>= 0) is the pidfd SpawnChild returned
  // for the child at the other end; the caller keeps it. The peer's node
  // name is `assigned_peer_name`.
  static Result<std::unique_ptr<Connection>> Invite(
      ScopedFd socket,
      const ports::NodeName& local_name,
      const ports::NodeName& assigned_peer_name,
      const ports::PortName& local_bootstrap_port,
      const ConnectionOptions& options,
      int launched_pidfd = -1);

  // Invitee side. `on_name_assigned` runs once the inviter's kInvite has been
  // checked, with the name assigned to this side; it creates this side's Node
  // and returns the name of a new bootstrap port on it (or an error, which
  // refuses the connection).
  using NameAssignedFn =
      std::function<Result<ports::PortName>(const ports::NodeName&)>;
  static Result<std::unique_ptr<Connection>> Accept(
      ScopedFd socket,
      const NameAssignedFn& on_name_assigned,
      const ConnectionOptions& options);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  const ports::NodeName& local_name() const { return local_name_; }
  const ports::NodeName& peer_name() const { return peer_name_; }
  const ports::PortName& local_bootstrap_port() const {
    return local_bootstrap_;
  }
  const ports::PortName& peer_bootstrap_port() const { return peer_bootstrap_; }
  uint16_t negotiated_minor() const { return minor_; }
  const ReceiveCaps& peer_receive_caps() const { return peer_caps_; }
  const PeerIdentity& peer_identity() const { return peer_; }
  int socket_fd() const { return socket_.get(); }
  int pidfd() const { return peer_.pidfd.get(); }

  shm::Ring& outbound_ring() { return *out_ring_; }
  shm::Ring& inbound_ring() { return *in_ring_; }
  // The control page of the outbound ring, for fill statistics (and for
  // tests that play a misbehaving producer). Space waits go through
  // shm::Ring::AnnounceSpaceWait, not through this page.
  shm::RingControl* outbound_control() const;
  // The control page of the inbound ring, for fill statistics only (the
  // peer writes it; never trusted).
  const shm::RingControl* inbound_control() const;

  // Shuts the socket down both ways so the peer sees a hang-up now.
  void ShutdownSocket();

 private:
  Connection() = default;

  Status CreateOutboundRing(const shm::RingOptions& options);
  Status MapInboundRing(ScopedFd fd, const HandshakeHello& hello);

  ScopedFd socket_;
  PeerIdentity peer_;
  ports::NodeName local_name_;
  ports::NodeName peer_name_;
  ports::PortName local_bootstrap_;
  ports::PortName peer_bootstrap_;
  uint16_t minor_ = kProtocolMinor;
  ReceiveCaps peer_caps_;
  // Declared before the rings: the rings live inside them.
  std::unique_ptr<shm::Segment> out_segment_;
  std::unique_ptr<shm::Segment> in_segment_;
  std::unique_ptr<shm::Ring> out_ring_;
  std::unique_ptr<shm::Ring> in_ring_;
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_CONNECTION_H_
