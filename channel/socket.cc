#include "channel/socket.h"

#include <errno.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/base/linux_compat.h"
#include "core/base/str_format.h"

namespace shmports::channel {
namespace {

// Milliseconds for poll(): -1 for an infinite deadline, rounded up so a
// deadline a few microseconds away does not spin at 0.
int PollTimeoutMs(Deadline deadline) {
  if (deadline.is_infinite())
    return -1;
  auto left = deadline.Remaining();
  if (left.count() == 0)
    return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count();
  return ms >= 1000000 ? 1000000 : static_cast<int>(ms) + 1;
}

// Waits for `events` on `fd` until `deadline`. kUnavailable at the deadline.
Status WaitFd(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    struct pollfd p = {fd, events, 0};
    int n = poll(&p, 1, PollTimeoutMs(deadline));
    if (n > 0) {
      if (p.revents & POLLNVAL) {
        return InvalidArgumentError(
            StrFormat("%s: fd %d is not open", what, fd));
      }
      return Status::Ok();
    }
    if (n < 0 && errno != EINTR) {
      return InternalError(
          StrFormat("%s: poll: %s", what, ErrnoText(errno).c_str()));
    }
    if (n == 0 && deadline.Expired()) {
      return UnavailableError(StrFormat("%s: deadline passed", what));
    }
  }
}

bool ProbeSoPassPidfd() {
  // 0 = not probed, 1 = supported, 2 = not supported. Racing probes agree.
  static std::atomic<int> cached{0};
  int v = cached.load(std::memory_order_relaxed);
  if (v != 0)
    return v == 1;
  ScopedFd s(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  int one = 1;
  bool ok =
      s.valid() && setsockopt(s.get(), SOL_SOCKET, linux_compat::kSoPassPidfd,
                              &one, sizeof(one)) == 0;
  cached.store(ok ? 1 : 2, std::memory_order_relaxed);
  return ok;
}

}  // namespace

const char* IdentityModeName(IdentityMode mode) {
  switch (mode) {
    case IdentityMode::kScmPidfd:
      return "SCM_PIDFD";
    case IdentityMode::kPidfdOpen:
      return "pidfd_open + confirmation";
  }
  return "?";
}

IdentityMode DetectIdentityMode() {
  const char* force = getenv(kForceNoSoPassPidfdEnv);
  if (force != nullptr && strcmp(force, "1") == 0)
    return IdentityMode::kPidfdOpen;
  return ProbeSoPassPidfd() ? IdentityMode::kScmPidfd
                            : IdentityMode::kPidfdOpen;
}

Status EnableCredentialPassing(int socket_fd, IdentityMode mode) {
  int one = 1;
  if (setsockopt(socket_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
    return InternalError(StrFormat("setsockopt(fd %d, SO_PASSCRED): %s",
                                   socket_fd, ErrnoText(errno).c_str()));
  }
  if (mode == IdentityMode::kScmPidfd &&
      setsockopt(socket_fd, SOL_SOCKET, linux_compat::kSoPassPidfd, &one,
                 sizeof(one)) != 0) {
    return UnavailableError(
        StrFormat("setsockopt(fd %d, SO_PASSPIDFD): %s (needs Linux 6.5; use "
                  "IdentityMode::kPidfdOpen on older kernels)",
                  socket_fd, ErrnoText(errno).c_str()));
  }
  return Status::Ok();
}

Result<SocketPair> CreateCredentialedSocketPair(IdentityMode mode) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ResourceExhaustedError(StrFormat(
        "socketpair(AF_UNIX, SOCK_SEQPACKET): %s", ErrnoText(errno).c_str()));
  }
  SocketPair pair{ScopedFd(sv[0]), ScopedFd(sv[1])};
  // Both ends before either is handed out: a message sent before the
  // receiving end had the options would arrive without credentials.
  SHMPORTS_RETURN_IF_ERROR(EnableCredentialPassing(pair.first.get(), mode));
  SHMPORTS_RETURN_IF_ERROR(EnableCredentialPassing(pair.second.get(), mode));
  return pair;
}

Status SendMessage(int socket_fd,
                   std::span<const uint8_t> bytes,
                   std::span<const int> fds,
                   Deadline deadline) {
  if (bytes.empty() || bytes.size() > kMaxSocketMessageBytes) {
    return InvalidArgumentError(
        StrFormat("socket message of %zu bytes (1..%zu)", bytes.size(),
                  kMaxSocketMessageBytes));
  }
  if (fds.size() > kMaxSocketMessageFds) {
    return InvalidArgumentError(
        StrFormat("%zu descriptors in one message (max %zu)", fds.size(),
                  kMaxSocketMessageFds));
  }
  struct iovec iov = {const_cast<uint8_t*>(bytes.data()), bytes.size()};
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // uint64_t storage keeps the cmsghdr aligned.
  uint64_t control[CMSG_SPACE(sizeof(int) * kMaxSocketMessageFds) / 8 + 1];
  if (!fds.empty()) {
    size_t len = sizeof(int) * fds.size();
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(len);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(cmsg), fds.data(), len);
  }
  for (;;) {
    ssize_t n = sendmsg(socket_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
      return Status::Ok();
    int err = errno;
    if (err == EINTR)
      continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      SHMPORTS_RETURN_IF_ERROR(WaitFd(socket_fd, POLLOUT, deadline, "send"));
      continue;
    }
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
      return PeerClosedError(
          StrFormat("send on fd %d: %s", socket_fd, ErrnoText(err).c_str()));
    }
    if (err == EBADF || err == ENOTSOCK || err == EINVAL) {
      return InvalidArgumentError(
          StrFormat("send on fd %d: %s", socket_fd, ErrnoText(err).c_str()));
    }
    return InternalError(
        StrFormat("send on fd %d: %s", socket_fd, ErrnoText(err).c_str()));
  }
}

Result<ReceivedMessage> ReceiveMessage(int socket_fd,
                                       const ReceiveLimits& limits,
                                       Deadline deadline) {
  if (limits.max_fds > kMaxSocketMessageFds) {
    return InvalidArgumentError(
        StrFormat("receive limit of %zu descriptors (max %zu)", limits.max_fds,
                  kMaxSocketMessageFds));
  }
  ReceivedMessage out;
  // One byte more than allowed would not tell us more: MSG_TRUNC does.
  out.bytes.resize(limits.max_bytes > 0 ? limits.max_bytes : 1);
  // Room for exactly what we accept: credentials, one pidfd, max_fds
  // descriptors. More descriptors make the kernel truncate (MSG_CTRUNC) and
  // drop the ones that do not fit instead of installing them.
  size_t control_len =
      CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int));
  if (limits.max_fds > 0)
    control_len += CMSG_SPACE(sizeof(int) * limits.max_fds);
  std::vector<uint64_t> control(control_len / 8 + 1);

  struct iovec iov = {out.bytes.data(), out.bytes.size()};
  struct msghdr msg;
  ssize_t n;
  for (;;) {
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control_len;
    n = recvmsg(socket_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0)
      break;
    int err = errno;
    if (err == EINTR)
      continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      SHMPORTS_RETURN_IF_ERROR(WaitFd(socket_fd, POLLIN, deadline, "receive"));
      continue;
    }
    if (err == ECONNRESET) {
      return PeerClosedError(
          StrFormat("receive on fd %d: %s", socket_fd, ErrnoText(err).c_str()));
    }
    return InternalError(
        StrFormat("receive on fd %d: %s", socket_fd, ErrnoText(err).c_str()));
  }

  // Take ownership of every descriptor first, so each refusal below closes
  // them all.
  size_t rights = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET)
      continue;
    size_t data_len = c->cmsg_len - CMSG_LEN(0);
    if (c->cmsg_type == SCM_RIGHTS) {
      for (size_t i = 0; i < data_len / sizeof(int); ++i) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
        ++rights;
      }
    } else if (c->cmsg_type == linux_compat::kScmPidfd &&
               data_len >= sizeof(int)) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof(int));
      out.pidfd.Reset(fd);
    } else if (c->cmsg_type == SCM_CREDENTIALS &&
               data_len >= sizeof(struct ucred)) {
      memcpy(&out.credentials, CMSG_DATA(c), sizeof(struct ucred));
      out.has_credentials = true;
    }
  }
  if (n == 0) {
    return PeerClosedError(StrFormat("fd %d: peer hung up", socket_fd));
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return ProtocolViolationError(StrFormat(
        "fd %d: control data truncated (MSG_CTRUNC): the peer attached more "
        "descriptors than the %zu allowed; %zu that arrived were closed",
        socket_fd, limits.max_fds, rights + (out.pidfd.valid() ? 1 : 0)));
  }
  if (msg.msg_flags & MSG_TRUNC) {
    return ProtocolViolationError(StrFormat(
        "fd %d: message longer than the %zu bytes allowed (MSG_TRUNC)",
        socket_fd, limits.max_bytes));
  }
  if (rights > limits.max_fds) {
    return ProtocolViolationError(
        StrFormat("fd %d: %zu descriptors attached, %zu allowed; all closed",
                  socket_fd, rights, limits.max_fds));
  }
  out.bytes.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace shmports::channel
