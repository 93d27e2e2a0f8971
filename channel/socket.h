// Credentialed Unix SOCK_SEQPACKET sockets: the kernel-attested channel that
// carries a connection's handshake and its file descriptors.
//
// Every message on such a socket arrives with the sender's credentials
// (SCM_CREDENTIALS, because the receiving end has SO_PASSCRED) and, on Linux
// 6.5+, a pidfd of the sender (SCM_PIDFD, because it has SO_PASSPIDFD). The
// creator of a pair sets both options on BOTH ends before handing either out:
// a process that inherits one end, or gets it from a broker, then learns who
// really sends each message — SO_PEERCRED would only name the pair's creator.
//
// Received descriptors are never leaked: each one is owned by a ScopedFd the
// moment the message is parsed, so a refused message closes all of them.
//
// Thread-safety: free functions on descriptors the caller owns; concurrent
// calls on one socket are the caller's business (SEQPACKET keeps each
// message whole, so concurrent senders do not interleave bytes).
#ifndef SHMPORTS_CHANNEL_SOCKET_H_
#define SHMPORTS_CHANNEL_SOCKET_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "channel/scoped_fd.h"
#include "core/base/deadline.h"
#include "core/base/status.h"

namespace shmports::channel {

// How a receiver obtains a pidfd of the sender of a message.
enum class IdentityMode {
  // Linux 6.5+: SO_PASSPIDFD on the socket; the kernel attaches SCM_PIDFD to
  // every message. A message without one is unauthenticated.
  kScmPidfd,
  // Older kernels: pidfd_open() on the credential pid, confirmed by a second
  // credentialed message sent after the pidfd was opened (see identity.h).
  kPidfdOpen,
};

const char* IdentityModeName(IdentityMode mode);

// Environment switch that forces kPidfdOpen even where SO_PASSPIDFD works,
// so tests run the pre-6.5 path on any kernel. Set to "1" to force.
inline constexpr char kForceNoSoPassPidfdEnv[] =
    "SHMPORTS_FORCE_NO_SO_PASSPIDFD";

// kScmPidfd when the kernel accepts SO_PASSPIDFD (probed once per process)
// and the environment switch is not set; else kPidfdOpen. The switch is read
// on every call.
IdentityMode DetectIdentityMode();

struct SocketPair {
  ScopedFd first;
  ScopedFd second;
};

// A SOCK_SEQPACKET | SOCK_CLOEXEC pair with SO_PASSCRED and (kScmPidfd)
// SO_PASSPIDFD on both ends. Hand one end to the peer (SpawnChild's
// fds_to_keep, or SCM_RIGHTS).
Result<SocketPair> CreateCredentialedSocketPair(
    IdentityMode mode = DetectIdentityMode());

// Sets the same options on one socket (an accepted connection, say).
Status EnableCredentialPassing(int socket_fd, IdentityMode mode);

// Largest payload and descriptor count SendMessage accepts.
inline constexpr size_t kMaxSocketMessageBytes = 64 * 1024;
inline constexpr size_t kMaxSocketMessageFds = 64;

// Sends one message of 1..kMaxSocketMessageBytes bytes (an empty message
// would read as a hang-up) with `fds` attached by SCM_RIGHTS (the caller
// keeps its copies). Blocks while the socket buffer is full, up to
// `deadline` (then kUnavailable). kPeerClosed if the peer is gone.
Status SendMessage(int socket_fd,
                   std::span<const uint8_t> bytes,
                   std::span<const int> fds = {},
                   Deadline deadline = Deadline::Infinite());

struct ReceiveLimits {
  size_t max_bytes = 4096;  // Larger messages are refused.
  size_t max_fds = 0;       // More SCM_RIGHTS descriptors are refused.
};

// One received message and everything the kernel attached to it.
struct ReceivedMessage {
  std::vector<uint8_t> bytes;
  std::vector<ScopedFd> fds;  // SCM_RIGHTS, in the order sent.
  bool has_credentials = false;
  struct ucred credentials = {};  // SCM_CREDENTIALS, if has_credentials.
  ScopedFd pidfd;                 // SCM_PIDFD, if the kernel attached one.
};

// Receives one message, waiting up to `deadline` (Deadline::Now() polls).
// Errors:
//   kUnavailable       nothing arrived before the deadline;
//   kPeerClosed        the peer hung up;
//   kProtocolViolation the payload exceeded limits.max_bytes (MSG_TRUNC),
//                      the control data was truncated (MSG_CTRUNC: more fds
//                      than the receiver allows), or more than
//                      limits.max_fds descriptors arrived.
// On every error each descriptor that did arrive has been closed.
Result<ReceivedMessage> ReceiveMessage(int socket_fd,
                                       const ReceiveLimits& limits,
                                       Deadline deadline);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_SOCKET_H_
