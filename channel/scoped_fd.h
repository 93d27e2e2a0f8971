// ScopedFd: sole owner of one file descriptor, closed on destruction.
//
// Every descriptor channel/ receives from the kernel (sockets, pidfds, fds
// that arrive with SCM_RIGHTS) goes into a ScopedFd the moment it exists, so
// no error path can leak one. Movable, not copyable; not thread-safe (like
// an int it belongs to whoever holds it).
#ifndef SHMPORTS_CHANNEL_SCOPED_FD_H_
#define SHMPORTS_CHANNEL_SCOPED_FD_H_

#include <unistd.h>

#include <utility>

namespace shmports::channel {

class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other)
      Reset(other.Release());
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() { Reset(); }

  bool valid() const { return fd_ >= 0; }
  int get() const { return fd_; }

  // Gives up ownership without closing; returns the descriptor (or -1).
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }

  // Closes the held descriptor (if any) and takes `fd`. close() errors are
  // ignored: on Linux the descriptor is gone either way, and retrying could
  // close a descriptor another thread has just been given.
  void Reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_SCOPED_FD_H_
