#include "channel/identity.h"

#include <errno.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "channel/spawn.h"
#include "core/base/linux_compat.h"
#include "core/base/random.h"
#include "core/base/str_format.h"

namespace shmports::channel {
namespace {

constexpr uint32_t kIdentityMagic = 0x44495053;  // "SPID" little-endian.
constexpr size_t kIdentityMessageBytes = 16;

enum class IdentityMessageType : uint32_t {
  kHello = 1,
  kChallenge = 2,
  kConfirm = 3,
  kAccepted = 4,
  kRefused = 5,
};

struct IdentityMessage {
  IdentityMessageType type;
  uint64_t nonce;
};

void PutLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

Status SendIdentityMessage(int fd,
                           IdentityMessageType type,
                           uint64_t nonce,
                           Deadline deadline) {
  uint8_t buf[kIdentityMessageBytes];
  PutLe(buf, kIdentityMagic, 4);
  PutLe(buf + 4, static_cast<uint32_t>(type), 4);
  PutLe(buf + 8, nonce, 8);
  return SendMessage(fd, buf, {}, deadline);
}

Result<IdentityMessage> ParseIdentityMessage(const ReceivedMessage& m) {
  if (m.bytes.size() != kIdentityMessageBytes ||
      GetLe(m.bytes.data(), 4) != kIdentityMagic) {
    return ProtocolViolationError(
        StrFormat("not an identity message (%zu bytes: %s)", m.bytes.size(),
                  HexDump(m.bytes, 16).c_str()));
  }
  uint32_t type = static_cast<uint32_t>(GetLe(m.bytes.data() + 4, 4));
  if (type < 1 || type > 5) {
    return ProtocolViolationError(
        StrFormat("unknown identity message type %u", type));
  }
  return IdentityMessage{static_cast<IdentityMessageType>(type),
                         GetLe(m.bytes.data() + 8, 8)};
}

Result<IdentityMessage> ExpectIdentityMessage(const ReceivedMessage& m,
                                              IdentityMessageType want) {
  SHMPORTS_ASSIGN_OR_RETURN(IdentityMessage msg, ParseIdentityMessage(m));
  if (msg.type != want) {
    return ProtocolViolationError(StrFormat(
        "identity message type %u, expected %u",
        static_cast<unsigned>(msg.type), static_cast<unsigned>(want)));
  }
  return msg;
}

// Receives the next message, or kPeerClosed as soon as `launched_pidfd`
// (when >= 0) signals exit while nothing is waiting on the socket.
Result<ReceivedMessage> ReceiveOrDeath(int socket_fd,
                                       int launched_pidfd,
                                       Deadline deadline) {
  ReceiveLimits limits;
  limits.max_bytes = kIdentityMessageBytes;
  if (launched_pidfd < 0)
    return ReceiveMessage(socket_fd, limits, deadline);
  for (;;) {
    struct pollfd p[2] = {{socket_fd, POLLIN, 0}, {launched_pidfd, POLLIN, 0}};
    int timeout_ms = -1;
    if (!deadline.is_infinite()) {
      timeout_ms = static_cast<int>(std::min<int64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(
              deadline.Remaining())
                  .count() +
              1,
          1000000));
    }
    int n = poll(p, 2, timeout_ms);
    if (n < 0 && errno != EINTR) {
      return InternalError(StrFormat("poll: %s", ErrnoText(errno).c_str()));
    }
    // A message that is already there is read first: IdentifySender then
    // sees the dead pidfd and reports the death itself.
    if (n > 0 && p[0].revents != 0)
      return ReceiveMessage(socket_fd, limits, Deadline::Now());
    if (n > 0 && p[1].revents != 0) {
      return PeerClosedError(
          StrFormat("launched child exited before identifying itself (pidfd %d "
                    "signalled)",
                    launched_pidfd));
    }
    if (deadline.Expired())
      return UnavailableError("no identity message before the deadline");
  }
}

Status CheckUid(uid_t uid, const IdentityPolicy& policy) {
  uid_t self = geteuid();
  if (uid == self || policy.allow_any_uid)
    return Status::Ok();
  for (uid_t allowed : policy.also_allowed_uids) {
    if (uid == allowed)
      return Status::Ok();
  }
  return ProtocolViolationError(
      StrFormat("peer runs as uid %u, we run as uid %u: refused (allow it with "
                "IdentityPolicy::also_allowed_uids)",
                static_cast<unsigned>(uid), static_cast<unsigned>(self)));
}

Status CheckAlive(const PeerIdentity& id) {
  SHMPORTS_ASSIGN_OR_RETURN(bool exited, PidfdHasExited(id.pidfd.get()));
  if (exited) {
    return PeerClosedError(
        StrFormat("peer pid %d exited during identification (pidfd signalled)",
                  static_cast<int>(id.pid)));
  }
  return Status::Ok();
}

}  // namespace

Result<PeerIdentity> IdentifySender(ReceivedMessage& message,
                                    IdentityMode mode,
                                    const IdentityPolicy& policy) {
  ScopedFd pidfd = std::move(message.pidfd);
  if (!message.has_credentials) {
    return ProtocolViolationError(
        "unauthenticated peer: message without SCM_CREDENTIALS (socket made "
        "without SO_PASSCRED? use CreateCredentialedSocketPair)");
  }
  const struct ucred& cred = message.credentials;
  if (cred.pid <= 0) {
    return ProtocolViolationError(StrFormat(
        "unauthenticated peer: credential pid %d (the sender lives in a pid "
        "namespace we cannot see)",
        static_cast<int>(cred.pid)));
  }
  SHMPORTS_RETURN_IF_ERROR(CheckUid(cred.uid, policy));
  PeerIdentity id;
  id.pid = cred.pid;
  id.uid = cred.uid;
  id.gid = cred.gid;
  id.mode = mode;
  if (mode == IdentityMode::kScmPidfd) {
    if (!pidfd.valid()) {
      return ProtocolViolationError(StrFormat(
          "unauthenticated peer: pid %d sent no SCM_PIDFD although the socket "
          "has SO_PASSPIDFD",
          static_cast<int>(cred.pid)));
    }
    id.pidfd = std::move(pidfd);
    SHMPORTS_RETURN_IF_ERROR(CheckAlive(id));
    // Both come from the kernel for the same message; a mismatch would mean
    // a kernel we do not understand, so refuse rather than guess.
    SHMPORTS_ASSIGN_OR_RETURN(pid_t pidfd_pid, PidOfPidfd(id.pidfd.get()));
    if (pidfd_pid == -1) {
      return PeerClosedError(
          StrFormat("peer pid %d already reaped", static_cast<int>(id.pid)));
    }
    if (pidfd_pid != id.pid) {
      return ProtocolViolationError(StrFormat(
          "SCM_PIDFD names pid %d but SCM_CREDENTIALS pid %d: refused",
          static_cast<int>(pidfd_pid), static_cast<int>(id.pid)));
    }
    id.confirmed = true;
    return id;
  }
  // kPidfdOpen: as on a kernel without SCM_PIDFD, whatever `pidfd` held is
  // closed on return.
  int fd = static_cast<int>(syscall(linux_compat::kSysPidfdOpen, cred.pid, 0));
  if (fd < 0) {
    int err = errno;
    if (err == ESRCH) {
      return PeerClosedError(StrFormat("peer pid %d exited before pidfd_open",
                                       static_cast<int>(cred.pid)));
    }
    return UnavailableError(StrFormat("pidfd_open(%d): %s (needs Linux 5.3)",
                                      static_cast<int>(cred.pid),
                                      ErrnoText(err).c_str()));
  }
  id.pidfd.Reset(fd);
  SHMPORTS_RETURN_IF_ERROR(CheckAlive(id));
  id.confirmed = false;
  return id;
}

Status ConfirmIdentity(PeerIdentity& identity,
                       const ReceivedMessage& confirmation) {
  if (identity.confirmed)
    return Status::Ok();
  if (!identity.pidfd.valid())
    return InvalidArgumentError("identity without a pidfd");
  if (!confirmation.has_credentials) {
    return ProtocolViolationError(
        "unauthenticated peer: confirmation without SCM_CREDENTIALS");
  }
  const struct ucred& cred = confirmation.credentials;
  if (cred.pid != identity.pid || cred.uid != identity.uid ||
      cred.gid != identity.gid) {
    return ProtocolViolationError(StrFormat(
        "identity confirmation from pid %d uid %u gid %u, expected pid %d uid "
        "%u "
        "gid %u: refused",
        static_cast<int>(cred.pid), static_cast<unsigned>(cred.uid),
        static_cast<unsigned>(cred.gid), static_cast<int>(identity.pid),
        static_cast<unsigned>(identity.uid),
        static_cast<unsigned>(identity.gid)));
  }
  // Checked after the confirmation arrived: alive now means the pidfd's
  // process held this pid from before our challenge until now, so it sent it.
  SHMPORTS_RETURN_IF_ERROR(CheckAlive(identity));
  identity.confirmed = true;
  return Status::Ok();
}

Result<PeerIdentity> AuthenticatePeer(int socket_fd,
                                      IdentityMode mode,
                                      const IdentityPolicy& policy,
                                      Deadline deadline,
                                      int launched_pidfd) {
  auto refuse = [&](Status s) {
    if (s.code() != StatusCode::kPeerClosed) {
      // Best effort: the peer may learn why it hears nothing more.
      (void)SendIdentityMessage(socket_fd, IdentityMessageType::kRefused, 0,
                                Deadline::Now());
    }
    return std::move(s).WithContext("authenticate peer");
  };
  auto hello = ReceiveOrDeath(socket_fd, launched_pidfd, deadline);
  if (!hello.ok())
    return refuse(std::move(hello).TakeStatus());
  auto parsed = ExpectIdentityMessage(*hello, IdentityMessageType::kHello);
  if (!parsed.ok())
    return refuse(std::move(parsed).TakeStatus());
  auto id = IdentifySender(*hello, mode, policy);
  if (!id.ok())
    return refuse(std::move(id).TakeStatus());
  if (launched_pidfd >= 0) {
    auto launched_pid = PidOfPidfd(launched_pidfd);
    if (!launched_pid.ok())
      return refuse(std::move(launched_pid).TakeStatus());
    if (*launched_pid != id->pid) {
      return refuse(ProtocolViolationError(StrFormat(
          "hello sent by pid %d, not by the launched child pid %d",
          static_cast<int>(id->pid), static_cast<int>(*launched_pid))));
    }
  }
  if (!id->confirmed) {
    uint64_t nonce = RandomU64();
    Status s = SendIdentityMessage(socket_fd, IdentityMessageType::kChallenge,
                                   nonce, deadline);
    if (!s.ok())
      return refuse(std::move(s));
    auto confirm = ReceiveOrDeath(socket_fd, launched_pidfd, deadline);
    if (!confirm.ok())
      return refuse(std::move(confirm).TakeStatus());
    auto c = ExpectIdentityMessage(*confirm, IdentityMessageType::kConfirm);
    if (!c.ok())
      return refuse(std::move(c).TakeStatus());
    if (c->nonce != nonce) {
      return refuse(
          ProtocolViolationError("identity confirmation with the wrong nonce"));
    }
    s = ConfirmIdentity(*id, *confirm);
    if (!s.ok())
      return refuse(std::move(s));
  }
  Status s = SendIdentityMessage(socket_fd, IdentityMessageType::kAccepted, 0,
                                 deadline);
  if (!s.ok())
    return std::move(s).WithContext("authenticate peer");
  return id;
}

Status IntroduceSelf(int socket_fd, Deadline deadline) {
  SHMPORTS_RETURN_IF_ERROR(
      SendIdentityMessage(socket_fd, IdentityMessageType::kHello, 0, deadline));
  ReceiveLimits limits;
  limits.max_bytes = kIdentityMessageBytes;
  for (;;) {
    SHMPORTS_ASSIGN_OR_RETURN(ReceivedMessage reply,
                              ReceiveMessage(socket_fd, limits, deadline));
    SHMPORTS_ASSIGN_OR_RETURN(IdentityMessage msg, ParseIdentityMessage(reply));
    switch (msg.type) {
      case IdentityMessageType::kAccepted:
        return Status::Ok();
      case IdentityMessageType::kRefused:
        return ProtocolViolationError("the peer refused our identity");
      case IdentityMessageType::kChallenge:
        SHMPORTS_RETURN_IF_ERROR(SendIdentityMessage(
            socket_fd, IdentityMessageType::kConfirm, msg.nonce, deadline));
        break;
      default:
        return ProtocolViolationError(
            StrFormat("unexpected identity message type %u",
                      static_cast<unsigned>(msg.type)));
    }
  }
}

}  // namespace shmports::channel
