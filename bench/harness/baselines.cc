#include "bench/harness/baselines.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include "bench/harness/cleanup.h"
#include "bench/harness/shared_page.h"
#include "bench/harness/transport_subject.h"
#include "core/base/deadline.h"
#include "core/base/random.h"
#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

// A close-on-exec duplicate for the handoff, so that the parent closing the
// peer's copy after launch never closes an fd the parent still uses.
Result<int> DupForPeer(int fd) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) {
    return ResourceExhaustedError(
        StrFormat("dup fd %d for the peer: %s", fd, ErrnoText(errno).c_str()));
  }
  return dup;
}

Status NeedFds(const Handoff& handoff, size_t n, const char* what) {
  if (handoff.fds.size() != n) {
    return InvalidArgumentError(StrFormat("%s peer needs %zu fds, got %zu",
                                          what, n, handoff.fds.size()));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// cacheline

// The one line both processes spin on.
//
// Memory ordering: a sender writes `data` with plain stores, then stores
// `turn` with release; the receiver loads `turn` with acquire (pairs with
// that release store) until it sees the value it waits for, then reads
// `data`. Turns strictly alternate: a side writes `data` only after it has
// received the other side's message, which the other side sent after it
// finished reading — so no read of `data` overlaps a write of it.
struct alignas(64) PingPongLine {
  uint64_t turn;     // Both, alternately: messages written so far.
  uint8_t data[56];  // Both, alternately: the payload.
};
static_assert(sizeof(PingPongLine) == 64);
static_assert(offsetof(PingPongLine, data) == 8);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);

class CacheLineTransport {
 public:
  struct Options {};

  static Result<std::unique_ptr<CacheLineTransport>>
  CreateParent(const Options&, const TrialParams& params, Handoff* handoff) {
    SHMPORTS_ASSIGN_OR_RETURN(auto page,
                              SharedPage::Create("shmports-bench-line", 4096));
    SHMPORTS_ASSIGN_OR_RETURN(int fd, DupForPeer(page->fd()));
    handoff->fds.push_back(fd);
    return std::unique_ptr<CacheLineTransport>(
        new CacheLineTransport(std::move(page), params.size));
  }
  static Result<std::unique_ptr<CacheLineTransport>> CreatePeer(
      const Options&,
      const TrialParams& params,
      const Handoff& handoff) {
    SHMPORTS_RETURN_IF_ERROR(NeedFds(handoff, 1, "cacheline"));
    SHMPORTS_ASSIGN_OR_RETURN(auto page,
                              SharedPage::Adopt(handoff.fds[0], 4096));
    return std::unique_ptr<CacheLineTransport>(
        new CacheLineTransport(std::move(page), params.size));
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    fill(std::span<uint8_t>(line_->data, size));
    ++turn_;
    // Pairs with the acquire load in Receive (other process).
    std::atomic_ref<uint64_t>(line_->turn)
        .store(turn_, std::memory_order_release);
    return Status::Ok();
  }

  template <typename Consume>
  Result<size_t> Receive(size_t, Consume&& consume) {
    const uint64_t want = turn_ + 1;
    std::atomic_ref<uint64_t> turn(line_->turn);
    // Pairs with the release store in Send (other process).
    while (turn.load(std::memory_order_acquire) != want)
      CpuRelax();
    turn_ = want;
    consume(std::span<const uint8_t>(line_->data, size_));
    return size_t{1};
  }

 private:
  CacheLineTransport(std::unique_ptr<SharedPage> page, size_t size)
      : page_(std::move(page)),
        line_(static_cast<PingPongLine*>(page_->data())),
        size_(std::min(size, sizeof(PingPongLine::data))) {}

  std::unique_ptr<SharedPage> page_;
  PingPongLine* line_;
  uint64_t turn_ = 0;  // Last turn value written or seen.
  size_t size_;        // Payload bytes (the subject caps them at 56).
};

// ---------------------------------------------------------------------------
// memcpy

class MemcpySubject final : public Subject {
 public:
  MemcpySubject()
      : Subject({.name = "memcpy",
                 .description = "single-thread memcpy of the message size "
                                "(cache-hot, page-aligned buffers)",
                 .baseline = true,
                 .one_way = true,
                 .local = true}) {}

  Result<OneWayOutcome> RunLocal(const PayloadPattern& payload,
                                 const TrialParams& params) const override {
    const size_t size = payload.size();
    // Page-aligned buffers: glibc 2.36's memcpy (rep movsb for large sizes)
    // runs ~20x slower on this AMD host when (dst - src) mod 4096 is 8..32
    // bytes, which two back-to-back heap blocks easily are. The baseline
    // is memcpy at its ordinary best, not that accident.
    const size_t rounded = (size + 4095) / 4096 * 4096;
    std::unique_ptr<uint8_t, decltype(&std::free)> src(
        static_cast<uint8_t*>(std::aligned_alloc(4096, rounded)), &std::free);
    std::unique_ptr<uint8_t, decltype(&std::free)> dst(
        static_cast<uint8_t*>(std::aligned_alloc(4096, rounded)), &std::free);
    if (!src || !dst) {
      return ResourceExhaustedError(
          StrFormat("memcpy baseline: allocate 2 x %zu bytes", rounded));
    }
    std::span<uint8_t> src_bytes(src.get(), size);
    std::span<uint8_t> dst_bytes(dst.get(), size);
    payload.Write(src_bytes, 0);
    std::memset(dst.get(), 0, size);
    OneWayOutcome out;
    const uint64_t start = MonotonicNanos();
    const uint64_t end = start + params.duration_ns;
    while (out.messages < params.max_messages) {
      std::memcpy(dst.get(), src.get(), size);
      // Keeps the copy: the compiler must assume dst is read here.
      asm volatile("" : : "r"(dst.get()) : "memory");
      ++out.messages;
      if ((out.messages & 63) == 0 && MonotonicNanos() >= end)
        break;
    }
    out.elapsed_ns = MonotonicNanos() - start;
    uint64_t seq = 1;
    if (!payload.Verify(dst_bytes, &seq) || seq != 0) {
      return InternalError("memcpy baseline: destination does not verify");
    }
    return out;
  }
};

// ---------------------------------------------------------------------------
// unix-stream and pipe

Status WriteAll(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EPIPE)
        return PeerClosedError("write: peer closed");
      return InternalError(
          StrFormat("write fd %d: %s", fd, ErrnoText(errno).c_str()));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Messages of a fixed size over byte streams. The receiver reads as much as
// the kernel has (up to its buffer) and hands out whole messages from its
// own buffer, as a real framed protocol over a stream would.
class StreamTransport {
 public:
  struct Options {
    bool unix_socket = true;  // Else a pair of pipes.
  };

  static Result<std::unique_ptr<StreamTransport>> CreateParent(
      const Options& options,
      const TrialParams& params,
      Handoff* handoff) {
    if (options.unix_socket) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return ResourceExhaustedError(
            StrFormat("socketpair: %s", ErrnoText(errno).c_str()));
      }
      handoff->fds = {sv[1]};
      return std::unique_ptr<StreamTransport>(
          new StreamTransport(sv[0], sv[0], params.size));
    }
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0) {
      return ResourceExhaustedError(
          StrFormat("pipe2: %s", ErrnoText(errno).c_str()));
    }
    if (pipe2(up, O_CLOEXEC) != 0) {
      int err = errno;
      close(down[0]);
      close(down[1]);
      return ResourceExhaustedError(
          StrFormat("pipe2: %s", ErrnoText(err).c_str()));
    }
    handoff->fds = {down[0], up[1]};
    return std::unique_ptr<StreamTransport>(
        new StreamTransport(up[0], down[1], params.size));
  }
  static Result<std::unique_ptr<StreamTransport>> CreatePeer(
      const Options&,
      const TrialParams& params,
      const Handoff& handoff) {
    // One fd: the socket; two: the read and the write pipe.
    if (handoff.fds.size() == 1) {
      return std::unique_ptr<StreamTransport>(
          new StreamTransport(handoff.fds[0], handoff.fds[0], params.size));
    }
    SHMPORTS_RETURN_IF_ERROR(NeedFds(handoff, 2, "stream"));
    return std::unique_ptr<StreamTransport>(
        new StreamTransport(handoff.fds[0], handoff.fds[1], params.size));
  }

  StreamTransport(const StreamTransport&) = delete;
  StreamTransport& operator=(const StreamTransport&) = delete;
  ~StreamTransport() {
    close(read_fd_);
    if (write_fd_ != read_fd_)
      close(write_fd_);
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    fill(std::span<uint8_t>(send_buf_.data(), size));
    return WriteAll(write_fd_, send_buf_.data(), size);
  }

  template <typename Consume>
  Result<size_t> Receive(size_t max, Consume&& consume) {
    while (end_ - start_ < size_) {
      if (start_ > 0) {
        std::memmove(recv_buf_.data(), recv_buf_.data() + start_,
                     end_ - start_);
        end_ -= start_;
        start_ = 0;
      }
      ssize_t n =
          read(read_fd_, recv_buf_.data() + end_, recv_buf_.size() - end_);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return InternalError(
            StrFormat("read fd %d: %s", read_fd_, ErrnoText(errno).c_str()));
      }
      if (n == 0)
        return PeerClosedError("read: peer closed the stream");
      end_ += static_cast<size_t>(n);
    }
    size_t count = 0;
    while (count < max && end_ - start_ >= size_) {
      consume(std::span<const uint8_t>(recv_buf_.data() + start_, size_));
      start_ += size_;
      ++count;
    }
    return count;
  }

 private:
  StreamTransport(int read_fd, int write_fd, size_t size)
      : read_fd_(read_fd),
        write_fd_(write_fd),
        size_(size),
        send_buf_(size),
        recv_buf_(std::max<size_t>(256 * 1024, 2 * size)) {}

  int read_fd_;
  int write_fd_;
  size_t size_;
  std::vector<uint8_t> send_buf_;
  std::vector<uint8_t> recv_buf_;
  size_t start_ = 0;  // First unread byte in recv_buf_.
  size_t end_ = 0;    // One past the last byte read into recv_buf_.
};

// ---------------------------------------------------------------------------
// eventfd

// Payload in a shared page, one region per direction; the eventfd write and
// read are the publication: both are syscalls that take the eventfd's
// spinlock, which orders the payload stores before the reader's loads.
class EventfdTransport {
 public:
  struct Options {};

  static Result<std::unique_ptr<EventfdTransport>>
  CreateParent(const Options&, const TrialParams& params, Handoff* handoff) {
    const size_t region = (params.size + 63) / 64 * 64;
    SHMPORTS_ASSIGN_OR_RETURN(
        auto page, SharedPage::Create("shmports-bench-eventfd", 2 * region));
    int down = eventfd(0, EFD_CLOEXEC);
    int up = eventfd(0, EFD_CLOEXEC);
    if (down < 0 || up < 0) {
      int err = errno;
      if (down >= 0)
        close(down);
      if (up >= 0)
        close(up);
      return ResourceExhaustedError(
          StrFormat("eventfd: %s", ErrnoText(err).c_str()));
    }
    auto t = std::unique_ptr<EventfdTransport>(
        new EventfdTransport(std::move(page), params.size, up, down, false));
    SHMPORTS_ASSIGN_OR_RETURN(int page_fd, DupForPeer(t->page_->fd()));
    handoff->fds.push_back(page_fd);
    SHMPORTS_ASSIGN_OR_RETURN(int down_fd, DupForPeer(down));
    handoff->fds.push_back(down_fd);
    SHMPORTS_ASSIGN_OR_RETURN(int up_fd, DupForPeer(up));
    handoff->fds.push_back(up_fd);
    return t;
  }
  static Result<std::unique_ptr<EventfdTransport>> CreatePeer(
      const Options&,
      const TrialParams& params,
      const Handoff& handoff) {
    SHMPORTS_RETURN_IF_ERROR(NeedFds(handoff, 3, "eventfd"));
    const size_t region = (params.size + 63) / 64 * 64;
    SHMPORTS_ASSIGN_OR_RETURN(auto page,
                              SharedPage::Adopt(handoff.fds[0], 2 * region));
    return std::unique_ptr<EventfdTransport>(new EventfdTransport(
        std::move(page), params.size, handoff.fds[1], handoff.fds[2], true));
  }

  EventfdTransport(const EventfdTransport&) = delete;
  EventfdTransport& operator=(const EventfdTransport&) = delete;
  ~EventfdTransport() {
    close(in_fd_);
    close(out_fd_);
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    fill(std::span<uint8_t>(out_, size));
    const uint64_t one = 1;
    while (write(out_fd_, &one, sizeof(one)) != sizeof(one)) {
      if (errno != EINTR) {
        return InternalError(
            StrFormat("eventfd write: %s", ErrnoText(errno).c_str()));
      }
    }
    return Status::Ok();
  }

  template <typename Consume>
  Result<size_t> Receive(size_t, Consume&& consume) {
    uint64_t value = 0;
    while (read(in_fd_, &value, sizeof(value)) != sizeof(value)) {
      if (errno != EINTR) {
        return InternalError(
            StrFormat("eventfd read: %s", ErrnoText(errno).c_str()));
      }
    }
    if (value != 1) {
      return InternalError(StrFormat(
          "eventfd read %llu signals, expected 1 (turns must alternate)",
          static_cast<unsigned long long>(value)));
    }
    consume(std::span<const uint8_t>(in_, size_));
    return size_t{1};
  }

 private:
  EventfdTransport(std::unique_ptr<SharedPage> page,
                   size_t size,
                   int in_fd,
                   int out_fd,
                   bool peer)
      : page_(std::move(page)), size_(size), in_fd_(in_fd), out_fd_(out_fd) {
    const size_t region = (size + 63) / 64 * 64;
    auto* base = static_cast<uint8_t*>(page_->data());
    // Region 0 carries parent -> peer, region 1 peer -> parent.
    in_ = peer ? base : base + region;
    out_ = peer ? base + region : base;
  }

  std::unique_ptr<SharedPage> page_;
  size_t size_;
  int in_fd_;
  int out_fd_;
  uint8_t* in_;
  uint8_t* out_;
};

// ---------------------------------------------------------------------------
// mq

namespace bip = boost::interprocess;

// Boost.Interprocess throws; nothing of it leaves this class.
class MessageQueueTransport {
 public:
  struct Options {};

  static Result<std::unique_ptr<MessageQueueTransport>>
  CreateParent(const Options&, const TrialParams& params, Handoff* handoff) {
    const std::string base =
        StrFormat("%s%d_%016llx", kShmNamePrefix, static_cast<int>(getpid()),
                  static_cast<unsigned long long>(RandomU64()));
    auto t = std::unique_ptr<MessageQueueTransport>(
        new MessageQueueTransport(params.size, base + "_down", base + "_up",
                                  /*owner=*/true));
    // Enough depth that one-way senders rarely block, bounded in bytes.
    const size_t depth = std::clamp<size_t>(
        (4u << 20) / std::max<size_t>(params.size, 1), 4, 256);
    try {
      for (const std::string* name : {&t->out_name_, &t->in_name_}) {
        bip::message_queue::remove(name->c_str());
        RegisterShmName(*name);
      }
      t->out_ = std::make_unique<bip::message_queue>(
          bip::create_only, t->out_name_.c_str(), depth, params.size);
      t->in_ = std::make_unique<bip::message_queue>(
          bip::create_only, t->in_name_.c_str(), depth, params.size);
    } catch (const std::exception& e) {
      return ResourceExhaustedError(
          StrFormat("create message_queue %s (depth %zu x %zu B): %s",
                    base.c_str(), depth, params.size, e.what()));
    }
    handoff->values = {t->out_name_, t->in_name_};
    return t;
  }
  static Result<std::unique_ptr<MessageQueueTransport>> CreatePeer(
      const Options&,
      const TrialParams& params,
      const Handoff& handoff) {
    if (handoff.values.size() != 2) {
      return InvalidArgumentError("mq peer needs 2 queue names");
    }
    auto t = std::unique_ptr<MessageQueueTransport>(new MessageQueueTransport(
        params.size, handoff.values[1], handoff.values[0], /*owner=*/false));
    try {
      t->in_ = std::make_unique<bip::message_queue>(bip::open_only,
                                                    t->in_name_.c_str());
      t->out_ = std::make_unique<bip::message_queue>(bip::open_only,
                                                     t->out_name_.c_str());
    } catch (const std::exception& e) {
      return NotFoundError(StrFormat("open message_queue %s: %s",
                                     t->in_name_.c_str(), e.what()));
    }
    return t;
  }

  MessageQueueTransport(const MessageQueueTransport&) = delete;
  MessageQueueTransport& operator=(const MessageQueueTransport&) = delete;
  ~MessageQueueTransport() {
    in_.reset();
    out_.reset();
    if (!owner_)
      return;
    for (const std::string* name : {&out_name_, &in_name_}) {
      try {
        bip::message_queue::remove(name->c_str());
      } catch (const std::exception&) {
        // remove() reports failure by return value; nothing else to do.
      }
      UnregisterShmName(*name);
    }
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    fill(std::span<uint8_t>(send_buf_.data(), size));
    try {
      out_->send(send_buf_.data(), size, 0);
    } catch (const std::exception& e) {
      return InternalError(StrFormat("message_queue send: %s", e.what()));
    }
    return Status::Ok();
  }

  template <typename Consume>
  Result<size_t> Receive(size_t, Consume&& consume) {
    bip::message_queue::size_type received = 0;
    unsigned int priority = 0;
    try {
      in_->receive(recv_buf_.data(), recv_buf_.size(), received, priority);
    } catch (const std::exception& e) {
      return InternalError(StrFormat("message_queue receive: %s", e.what()));
    }
    if (received != size_) {
      return InternalError(StrFormat("message_queue: got %zu bytes, sent %zu",
                                     static_cast<size_t>(received), size_));
    }
    consume(std::span<const uint8_t>(recv_buf_.data(), size_));
    return size_t{1};
  }

 private:
  MessageQueueTransport(size_t size,
                        std::string out_name,
                        std::string in_name,
                        bool owner)
      : size_(size),
        out_name_(std::move(out_name)),
        in_name_(std::move(in_name)),
        owner_(owner),
        send_buf_(size),
        recv_buf_(size) {}

  size_t size_;
  std::string out_name_;
  std::string in_name_;
  bool owner_;  // The parent created the names and removes them.
  std::unique_ptr<bip::message_queue> out_;
  std::unique_ptr<bip::message_queue> in_;
  std::vector<uint8_t> send_buf_;
  std::vector<uint8_t> recv_buf_;
};

}  // namespace

std::unique_ptr<Subject> MakeCacheLineSubject() {
  return MakeTransportSubject<CacheLineTransport>(
      {.name = "cacheline",
       .description = "two processes spinning on one shared 64 B cache line "
                      "(8 B turn + 56 B payload)",
       .baseline = true,
       .round_trip = true,
       .max_size = 64,
       .payload_cap = sizeof(PingPongLine::data)});
}

std::unique_ptr<Subject> MakeMemcpySubject() {
  return std::make_unique<MemcpySubject>();
}

std::unique_ptr<Subject> MakeUnixStreamSubject() {
  return MakeTransportSubject<StreamTransport>(
      {.name = "unix-stream",
       .description = "AF_UNIX SOCK_STREAM socketpair, one write per message",
       .baseline = true,
       .round_trip = true,
       .one_way = true},
      {.unix_socket = true});
}

std::unique_ptr<Subject> MakePipeSubject() {
  return MakeTransportSubject<StreamTransport>(
      {.name = "pipe",
       .description = "two pipes, one write per message",
       .baseline = true,
       .round_trip = true,
       .one_way = true},
      {.unix_socket = false});
}

std::unique_ptr<Subject> MakeEventfdSubject() {
  return MakeTransportSubject<EventfdTransport>(
      {.name = "eventfd",
       .description = "blocking eventfd ping-pong, payload in a shared page",
       .baseline = true,
       .round_trip = true});
}

std::unique_ptr<Subject> MakeMessageQueueSubject() {
  return MakeTransportSubject<MessageQueueTransport>(
      {.name = "mq",
       .description = "Boost.Interprocess message_queue pair in /dev/shm",
       .baseline = true,
       .round_trip = true,
       .one_way = true});
}

}  // namespace shmports::bench
