#include "tests/multiprocess/ring_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "core/base/deadline.h"
#include "core/base/str_format.h"
#include "tests/util/test_util.h"

namespace shmports::testing {

Status SendWithFd(int sock, const void* data, size_t size, int fd) {
  struct iovec iov = {const_cast<void*>(data), size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) {
    return UnavailableError("sendmsg: " + ErrnoText(errno));
  }
  return Status::Ok();
}

Status ReceiveWithFd(int sock, void* data, size_t size, int* fd) {
  struct iovec iov = {data, size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n != static_cast<ssize_t>(size)) {
    return UnavailableError(StrFormat("recvmsg got %zd of %zu bytes: %s", n,
                                      size, ErrnoText(errno).c_str()));
  }
  if (fd != nullptr) {
    *fd = -1;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
         c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        memcpy(fd, CMSG_DATA(c), sizeof(int));
      }
    }
  }
  return Status::Ok();
}

Result<Peer> LaunchPeer(const PeerConfig& config, int memfd) {
  int socks[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, socks) != 0) {
    return InternalError("socketpair: " + ErrnoText(errno));
  }
  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed.
  std::string path = HelperPath("shm_ring_peer");
  std::string arg = "--sock=3";
  char* argv[] = {path.data(), arg.data(), nullptr};
  pid_t pid = fork();
  if (pid < 0)
    return InternalError("fork: " + ErrnoText(errno));
  if (pid == 0) {
    if (socks[1] == 3) {
      fcntl(3, F_SETFD, 0);
    } else {
      dup2(socks[1], 3);  // dup2 clears FD_CLOEXEC on the copy.
    }
    execv(path.c_str(), argv);
    _exit(127);
  }
  close(socks[1]);
  Peer peer{pid, socks[0]};
  Status sent = SendWithFd(peer.sock, &config, sizeof(config), memfd);
  if (!sent.ok()) {
    ReapPeer(&peer, std::chrono::milliseconds(0));
    return std::move(sent).WithContext("send config to " + path);
  }
  return peer;
}

Result<PeerReport> ReceiveReport(const Peer& peer,
                                 std::chrono::milliseconds timeout) {
  struct pollfd pfd = {peer.sock, POLLIN, 0};
  int ready = poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) {
    return UnavailableError(StrFormat("no report from peer %d within %lld ms",
                                      peer.pid,
                                      static_cast<long long>(timeout.count())));
  }
  PeerReport report;
  SHMPORTS_RETURN_IF_ERROR(
      ReceiveWithFd(peer.sock, &report, sizeof(report), nullptr));
  report.message[sizeof(report.message) - 1] = '\0';
  return report;
}

int ReapPeer(Peer* peer, std::chrono::milliseconds timeout) {
  if (peer->sock >= 0)
    close(peer->sock);
  peer->sock = -1;
  if (peer->pid <= 0)
    return -1;
  int status = 0;
  Deadline deadline = Deadline::In(timeout);
  for (;;) {
    pid_t r = waitpid(peer->pid, &status, WNOHANG);
    if (r == peer->pid)
      break;
    if (r < 0 && errno != EINTR)
      break;
    if (deadline.Expired()) {
      kill(peer->pid, SIGKILL);
      waitpid(peer->pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  peer->pid = -1;
  return status;
}

}  // namespace shmports::testing
