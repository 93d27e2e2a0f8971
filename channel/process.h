// Process: one ports Node with its Router, Reactor and io thread — the unit
// that joins other processes through shared-memory rings.
//
// An ordinary object: several may live in one OS process (each with its own
// node, io_uring and io thread), which is how the in-process tests and the
// ThreadSanitizer build exercise channel/. The public user API (Pipe,
// Invitation) is built on top of it later; for now it exposes the Node.
//
// Two roles:
//   - inviter: Process::Create() picks a random node name; Connect() runs
//     the handshake on a socket (one end of a CreateCredentialedSocketPair
//     whose other end the peer holds) and assigns the peer its node name;
//   - invitee: Process::AcceptConnection() runs the handshake first and
//     creates the Process with the name the inviter assigned.
// Either way the caller gets the peer's node name and a bootstrap port: a
// receiving port on this node whose peer is the other side's bootstrap port
// (the first port pair spanning the two processes).
//
// The blocking handshake runs on the CALLER's thread, never on the io
// thread; the established connection is then handed to the io thread.
// A peer that dies during the handshake makes Connect/AcceptConnection
// return kPeerClosed and counts as a death in GetStats().
//
// Threads: every method may be called from any thread except the io thread
// (Connect/AcceptConnection block). Observers run on the io thread (or on a
// thread that calls into the Node) with no shmports lock held.
//
// Lifetime: the destructor stops and joins the io thread, then destroys the
// node, the reactor (cancelling every armed wait) and the connections (their
// sockets close, which the peers see as a hang-up). Ports still open on the
// node are logged by the Node.
#ifndef SHMPORTS_CHANNEL_PROCESS_H_
#define SHMPORTS_CHANNEL_PROCESS_H_

#include <memory>
#include <thread>
#include <unordered_map>

#include "channel/connection.h"
#include "channel/reactor.h"
#include "channel/router.h"
#include "channel/scoped_fd.h"
#include "core/base/deadline.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"
#include "core/ports/node.h"
#include "core/ports/port_ref.h"

namespace shmports::channel {

struct ProcessOptions {
  ConnectionOptions connection;
  RouterOptions router;  // Largest message, per-peer overflow budget.
  ports::NodeOptions node;
  ReactorOptions reactor;
};

struct ProcessStats {
  ports::NodeName name;
  RouterStats router;  // Per connection, deaths, violations by reason.
  ports::NodeStats node;
  ReactorStats reactor;
};

// What a successful handshake yields.
struct ConnectedPeer {
  ports::NodeName peer_name;
  ports::PortRef bootstrap_port;  // Receiving; its peer is the other side's.
};

class Process {
 public:
  // An inviter with a random node name, its io thread running.
  static Result<std::unique_ptr<Process>> Create(
      const ProcessOptions& options = {});

  struct Accepted {
    std::unique_ptr<Process> process;
    ConnectedPeer peer;
  };
  // The invitee side: handshake on `socket`, then a Process named as the
  // inviter assigned, connected to it.
  static Result<Accepted> AcceptConnection(ScopedFd socket,
                                           const ProcessOptions& options = {});

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Inviter side of a handshake on `socket`. The peer is assigned
  // `peer_name` (a random one if invalid). `launched_pidfd` (>= 0): the
  // SpawnChild pidfd of the child at the other end (the caller keeps it).
  Result<ConnectedPeer> Connect(ScopedFd socket,
                                int launched_pidfd = -1,
                                ports::NodeName peer_name = {});

  ports::Node& node() { return *node_; }
  const ports::NodeName& name() const { return node_->name(); }

  // See Router. Replaces the previous observer.
  void SetPortStatusObserver(Router::PortStatusObserver observer);
  void SetPeerLostObserver(Router::PeerLostObserver observer);

  ProcessStats GetStats();

  // Closes every link on purpose: writes a goodbye behind everything queued
  // for each peer and waits until it is in the ring (or `deadline` passes:
  // kUnavailable naming the peers still behind). Each peer delivers what
  // came before the goodbye, then sees the link closed (peer_closed on the
  // routes through us) without counting a death. Events forwarded afterwards
  // are dropped and counted; the Process stays usable only for reading and
  // destruction. Close the ports first so their closure events travel
  // ahead of the goodbye. Not on the io thread (kFailedPrecondition).
  Status Shutdown(Deadline deadline = Deadline::In(std::chrono::seconds(1)));

  // Runs `task` on the io thread, after what is already queued there. The
  // task must not block: while it runs the io thread serves nothing else.
  // Any thread.
  void Post(Reactor::Task task);
  // True on this Process's io thread (where observers run).
  bool IsIoThread() const;

  // As Post, but the task may block: how tests hold back a receiver
  // deterministically.
  void PostToIoThreadForTesting(Reactor::Task task);

  // Consumer token: the Router, for Pipe::Receive's
  // Router::TryTakeInbound. Lives as long as this Process.
  Router& router() { return *router_; }

  // Credit (pipe quotas): the receive caps `peer` announced in its
  // handshake with this Process, recorded when the connection was made and
  // kept after it is gone (node names are never reused). False when `peer`
  // never connected to this Process. Any thread.
  bool GetPeerReceiveCaps(const ports::NodeName& peer, ReceiveCaps* caps) const;
  // The lowest of this Process's own caps and every peer's, per field: what
  // a pipe whose other end is travelling (its destination not yet known)
  // must stay within. Any thread.
  ReceiveCaps GetLowestReceiveCaps() const;

 private:
  explicit Process(const ProcessOptions& options);
  Status Start();
  Result<ConnectedPeer> FinishConnection(std::unique_ptr<Connection> c,
                                         const ports::PortRef& bootstrap);

  const ProcessOptions options_;
  // Destroyed in reverse: node, then reactor, then router (see above).
  std::unique_ptr<Router> router_;
  std::unique_ptr<Reactor> reactor_;
  std::unique_ptr<ports::Node> node_;
  std::thread io_thread_;

  // Credit: see GetPeerReceiveCaps.
  mutable Mutex peer_caps_mu_;
  std::unordered_map<ports::NodeName, ReceiveCaps, ports::NameHash> peer_caps_
      GUARDED_BY(peer_caps_mu_);
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_PROCESS_H_
