// Peer identity from the kernel: who sent a message on a credentialed socket
// (socket.h), as a pid, uid, gid and a pidfd that is the peer's death signal.
//
// Nothing a peer writes into a message is trusted for identity; only what the
// kernel attaches is:
//   - SCM_CREDENTIALS names the sending process (pid in our pid namespace,
//     uid, gid). An unprivileged sender cannot forge it; root can (shmports
//     does not defend against root).
//   - IdentityMode::kScmPidfd (Linux 6.5+): SCM_PIDFD is a pidfd of the same
//     sender, taken by the kernel at send time. One message authenticates.
//   - IdentityMode::kPidfdOpen (older kernels, or forced by
//     SHMPORTS_FORCE_NO_SO_PASSPIDFD=1): the receiver opens a pidfd on the
//     credential pid, which could by then name another process (pid reuse).
//     The receiver therefore asks for a second credentialed message AFTER
//     opening the pidfd: if it comes from the same pid and the pidfd has not
//     signalled exit once it arrived, the process behind the pidfd was alive
//     holding that pid from before the request until after the reply, so it
//     is the sender.
//
// Refusals (the peer is not to be talked to):
//   kProtocolViolation  pid 0 (a pid namespace we cannot see), no credentials,
//                       no SCM_PIDFD in kScmPidfd mode (unauthenticated),
//                       a uid the policy does not allow, a confirmation from
//                       another process, a message from a process other than
//                       the one we launched;
//   kPeerClosed         the peer died before or during identification — its
//                       pidfd had already signalled. Callers treat this as a
//                       peer death, not as an error of the peer.
//
// The Connection handshake uses IdentifySender on the peer's first message and,
// in kPidfdOpen mode, ConfirmIdentity on its answer to a challenge it sends.
// AuthenticatePeer/IntroduceSelf are that exchange on its own, for callers
// without a handshake of their own (and for tests).
//
// Thread-safety: free functions; PeerIdentity is a value owned by its holder.
#ifndef SHMPORTS_CHANNEL_IDENTITY_H_
#define SHMPORTS_CHANNEL_IDENTITY_H_

#include <sys/types.h>

#include <vector>

#include "channel/scoped_fd.h"
#include "channel/socket.h"
#include "core/base/deadline.h"
#include "core/base/status.h"

namespace shmports::channel {

// Which peers are acceptable besides the kernel-attested facts.
struct IdentityPolicy {
  // Peers always may run as our own effective uid. These uids are accepted
  // too; another uid is refused (a child that dropped privileges, say).
  std::vector<uid_t> also_allowed_uids;
  bool allow_any_uid = false;
};

// An authenticated peer. Owns `pidfd`, which polls readable when the peer
// exits (the primary death signal).
struct PeerIdentity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  ScopedFd pidfd;
  IdentityMode mode = IdentityMode::kScmPidfd;
  // False only on the kPidfdOpen path between IdentifySender and a
  // successful ConfirmIdentity: the pidfd may still name another process.
  bool confirmed = false;
};

// Identifies the sender of `message` from its kernel-attached credentials
// (taking its SCM_PIDFD, if any, out of `message`). kScmPidfd: complete, and
// refused without a pidfd. kPidfdOpen: opens a pidfd on the credential pid
// and returns it unconfirmed (any SCM_PIDFD is ignored and closed).
Result<PeerIdentity> IdentifySender(ReceivedMessage& message,
                                    IdentityMode mode,
                                    const IdentityPolicy& policy);

// kPidfdOpen path, second step: `confirmation` is a credentialed message the
// peer sent in answer to a request made after IdentifySender. Sets
// `identity.confirmed`. A confirmed identity (kScmPidfd) is left as it is.
Status ConfirmIdentity(PeerIdentity& identity,
                       const ReceivedMessage& confirmation);

// The identity exchange on its own. Wire format (little-endian): 16 bytes,
// u32 magic "SPID", u32 type (hello, challenge, confirm, accepted, refused),
// u64 nonce.
//
// AuthenticatePeer is the receiving side: waits for the peer's hello; in
// kPidfdOpen mode sends a challenge and checks the confirmation; then tells
// the peer accepted or refused. `launched_pidfd`, when >= 0 (a pidfd from
// SpawnChild), is watched while waiting, so a child that dies without
// speaking is kPeerClosed at once, and the sender must be that process.
Result<PeerIdentity> AuthenticatePeer(int socket_fd,
                                      IdentityMode mode,
                                      const IdentityPolicy& policy,
                                      Deadline deadline,
                                      int launched_pidfd = -1);

// The identified side: sends hello, answers a challenge, and returns OK once
// accepted (kProtocolViolation if refused).
Status IntroduceSelf(int socket_fd, Deadline deadline);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_IDENTITY_H_
