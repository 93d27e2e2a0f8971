#include "channel/reactor.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <utility>

#include "core/base/linux_compat.h"
#include "core/base/log.h"
#include "core/base/str_format.h"

namespace shmports::channel {
namespace {

// user_data values that are not tokens. Tokens count up from 1 and never
// reach these.
constexpr uint64_t kWakeReadUserData = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kCancelUserData = std::numeric_limits<uint64_t>::max() - 1;

std::string KernelRelease() {
  struct utsname u;
  if (uname(&u) != 0)
    return "unknown";
  return u.release;
}

Status KernelError(const char* what, int res) {
  return InternalError(StrFormat("%s: %s", what, ErrnoText(-res).c_str()));
}

}  // namespace

struct Reactor::Op {
  enum class Kind { kFutex, kPoll, kTimer };
  Kind kind;
  FutexCallback futex_callback;
  PollCallback poll_callback;
  TimerCallback timer_callback;
  uint64_t futex_addr = 0;
  uint32_t futex_expected = 0;
  int fd = -1;
  uint32_t poll_events = 0;
  bool multishot = false;
  // The kernel copies the timespec when the timeout is submitted; it lives
  // here until then.
  __kernel_timespec when{};
  bool never = false;  // An infinite timer: kept for Cancel, never armed.
};

Result<std::unique_ptr<Reactor>> Reactor::Create(
    const ReactorOptions& options) {
  std::unique_ptr<Reactor> reactor(new Reactor(options));
  Status s = reactor->Init();
  if (!s.ok())
    return std::move(s).WithContext("create io_uring reactor");
  return reactor;
}

Reactor::Reactor(const ReactorOptions& options) : options_(options) {}

Status Reactor::Init() {
  if (options_.queue_depth == 0 || options_.queue_depth > 32768) {
    return InvalidArgumentError(StrFormat(
        "queue_depth %u out of range 1..32768", options_.queue_depth));
  }
  struct io_uring_params params;
  memset(&params, 0, sizeof(params));
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = options_.queue_depth * 2;
  int res = io_uring_queue_init_params(options_.queue_depth, &ring_, &params);
  if (res < 0) {
    return UnavailableError(
        StrFormat("io_uring_setup failed: %s (io_uring disabled by the "
                  "kernel.io_uring_disabled sysctl or a seccomp profile?)",
                  ErrnoText(-res).c_str()));
  }
  ring_ready_ = true;

  bool futex_wait = false;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
    futex_wait =
        io_uring_opcode_supported(probe, linux_compat::kIoringOpFutexWait);
    io_uring_free_probe(probe);
  }
  if (options_.pretend_futex_wait_unsupported)
    futex_wait = false;
  if (!futex_wait) {
    return UnavailableError(StrFormat(
        "io_uring futex wait (IORING_OP_FUTEX_WAIT, opcode %u) is not "
        "supported by this kernel (%s%s): shmports needs Linux 6.7 or newer",
        static_cast<unsigned>(linux_compat::kIoringOpFutexWait),
        KernelRelease().c_str(),
        options_.pretend_futex_wait_unsupported
            ? ", reported unsupported because "
              "ReactorOptions::pretend_futex_wait_unsupported is set"
            : ""));
  }

  wake_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) {
    return InternalError(StrFormat("eventfd: %s", ErrnoText(errno).c_str()));
  }
  ArmWakeRead();
  return Status::Ok();
}

Reactor::~Reactor() {
  if (!ring_ready_)
    return;
  CancelAllAndDrain(Deadline::In(std::chrono::seconds(1)));
  io_uring_queue_exit(&ring_);
}

io_uring_sqe* Reactor::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand what is queued to the kernel. The
    // completion queue cannot drop entries (IORING_FEAT_NODROP), so this
    // makes progress.
    int res = io_uring_submit(&ring_);
    if (res < 0 && res != -EINTR && res != -EAGAIN && res != -EBUSY) {
      SHMPORTS_LOG(kError, "io_uring_submit: %s", ErrnoText(-res).c_str());
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Reactor::ArmWakeRead() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_.get(), &wake_buf_, sizeof(wake_buf_), 0);
  io_uring_sqe_set_data64(sqe, kWakeReadUserData);
  ++in_flight_;
}

bool Reactor::IsIoThread() const {
  return io_thread_.load(std::memory_order_relaxed) ==
         std::this_thread::get_id();
}

Result<Reactor::Token> Reactor::WatchFutex(const std::atomic<uint32_t>* word,
                                           uint32_t expected,
                                           FutexCallback callback) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  static_assert(std::atomic<uint32_t>::is_always_lock_free);
  return WatchFutex(reinterpret_cast<const uint32_t*>(word), expected,
                    std::move(callback));
}

Result<Reactor::Token> Reactor::WatchFutex(const uint32_t* word,
                                           uint32_t expected,
                                           FutexCallback callback) {
  auto addr = reinterpret_cast<uintptr_t>(word);
  if (word == nullptr || addr % alignof(uint32_t) != 0) {
    return InvalidArgumentError(
        StrFormat("futex word at %p is null or not 4-byte aligned",
                  static_cast<const void*>(word)));
  }
  if (!callback)
    return InvalidArgumentError("futex watch without a callback");
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kFutex;
  op->futex_callback = std::move(callback);
  op->futex_addr = addr;
  op->futex_expected = expected;
  return Submit(std::move(op));
}

Result<Reactor::Token> Reactor::WatchFd(int fd,
                                        uint32_t events,
                                        PollCallback callback,
                                        PollMode mode) {
  if (fd < 0)
    return InvalidArgumentError(StrFormat("poll on fd %d", fd));
  if (!callback)
    return InvalidArgumentError("fd watch without a callback");
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kPoll;
  op->poll_callback = std::move(callback);
  op->fd = fd;
  op->poll_events = events;
  op->multishot = mode == PollMode::kMultiShot;
  return Submit(std::move(op));
}

Result<Reactor::Token> Reactor::AddTimer(Deadline when,
                                         TimerCallback callback) {
  if (!callback)
    return InvalidArgumentError("timer without a callback");
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kTimer;
  op->timer_callback = std::move(callback);
  if (when.is_infinite()) {
    op->never = true;
  } else {
    struct timespec ts = when.ToTimespec();
    op->when.tv_sec = ts.tv_sec;
    op->when.tv_nsec = ts.tv_nsec;
  }
  return Submit(std::move(op));
}

Result<Reactor::Token> Reactor::Submit(std::unique_ptr<Op> op) {
  Token token = NextToken();
  if (IsIoThread()) {
    ArmOnIoThread(token, std::move(op));
  } else {
    // std::function needs a copyable callable: hand the Op over as a raw
    // pointer owned by a shared_ptr so a task destroyed unrun frees it.
    auto shared = std::make_shared<std::unique_ptr<Op>>(std::move(op));
    Post([this, token, shared] { ArmOnIoThread(token, std::move(*shared)); });
  }
  return token;
}

void Reactor::ArmOnIoThread(Token token, std::unique_ptr<Op> op) {
  Op& o = *op;
  if (o.kind == Op::Kind::kTimer && o.never) {
    ops_.emplace(token, std::move(op));
    return;
  }
  io_uring_sqe* sqe = GetSqe();
  switch (o.kind) {
    case Op::Kind::kFutex:
      // liburing 2.3 has no io_uring_prep_futex_wait: the SQE layout of
      // IORING_OP_FUTEX_WAIT (Linux 6.7) is filled by hand. fd carries the
      // futex2 flags: size only, never FUTEX2_PRIVATE (the word is shared
      // between processes; a private wait would miss their wakes).
      memset(sqe, 0, sizeof(*sqe));
      sqe->opcode = linux_compat::kIoringOpFutexWait;
      sqe->fd = static_cast<int32_t>(linux_compat::kFutex2SizeU32);
      sqe->addr = o.futex_addr;
      sqe->addr2 = o.futex_expected;
      sqe->addr3 = linux_compat::kFutexBitsetMatchAny;
      counters_.futex_waits_armed.fetch_add(1, std::memory_order_relaxed);
      break;
    case Op::Kind::kPoll:
      if (o.multishot) {
        io_uring_prep_poll_multishot(sqe, o.fd, o.poll_events);
      } else {
        io_uring_prep_poll_add(sqe, o.fd, o.poll_events);
      }
      counters_.polls_armed.fetch_add(1, std::memory_order_relaxed);
      break;
    case Op::Kind::kTimer:
      io_uring_prep_timeout(sqe, &o.when, 0, IORING_TIMEOUT_ABS);
      counters_.timers_armed.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  io_uring_sqe_set_data64(sqe, token);
  ++in_flight_;
  ops_.emplace(token, std::move(op));
}

void Reactor::Cancel(Token token) {
  if (token == kInvalidToken)
    return;
  if (IsIoThread()) {
    CancelOnIoThread(token);
  } else {
    Post([this, token] { CancelOnIoThread(token); });
  }
}

void Reactor::CancelOnIoThread(Token token) {
  auto it = ops_.find(token);
  if (it == ops_.end())
    return;
  bool armed = !(it->second->kind == Op::Kind::kTimer && it->second->never);
  // Dropping the Op drops its callback: a completion that is already in the
  // completion queue finds no Op and is ignored.
  ops_.erase(it);
  counters_.cancels.fetch_add(1, std::memory_order_relaxed);
  if (!armed)
    return;
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, token, 0);
  io_uring_sqe_set_data64(sqe, kCancelUserData);
  ++in_flight_;
}

void Reactor::Post(Task task) {
  if (!task)
    return;
  bool write_wake = false;
  {
    MutexLock lock(&mu_);
    posted_.push_back(std::move(task));
    if (!IsIoThread() && !wake_pending_) {
      wake_pending_ = true;
      write_wake = true;
    }
  }
  if (write_wake) {
    counters_.cross_thread_wakes.fetch_add(1, std::memory_order_relaxed);
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: a wake-up is pending anyway.
    [[maybe_unused]] ssize_t n = write(wake_fd_.get(), &one, sizeof(one));
  }
}

void Reactor::Stop() {
  stop_requested_.store(true, std::memory_order_relaxed);
  // An empty round is enough to make the loop re-check the flag.
  Post([] {});
}

void Reactor::RunPostedTasks() {
  std::vector<Task> tasks;
  {
    MutexLock lock(&mu_);
    tasks.swap(posted_);
    wake_pending_ = false;
  }
  for (Task& task : tasks) {
    task();
    counters_.tasks_run.fetch_add(1, std::memory_order_relaxed);
  }
}

void Reactor::Run() {
  while (!stop_requested_.load(std::memory_order_relaxed)) {
    Status s = RunOnce(Deadline::Infinite());
    if (!s.ok() && s.code() != StatusCode::kUnavailable) {
      SHMPORTS_LOG_REPEATED("reactor-wait", kError, "reactor: %s",
                            s.ToString().c_str());
    }
  }
  stop_requested_.store(false, std::memory_order_relaxed);
}

Status Reactor::RunOnce(Deadline deadline) {
  std::thread::id previous = io_thread_.exchange(std::this_thread::get_id(),
                                                 std::memory_order_relaxed);
  counters_.loop_iterations.fetch_add(1, std::memory_order_relaxed);
  RunPostedTasks();

  io_uring_cqe* cqe = nullptr;
  int res;
  // Tasks posted on the io thread (by callbacks) must not wait for a wake.
  bool has_posted;
  {
    MutexLock lock(&mu_);
    has_posted = !posted_.empty();
  }
  if (has_posted) {
    res = io_uring_submit(&ring_);
  } else if (deadline.is_infinite()) {
    res = io_uring_submit_and_wait(&ring_, 1);
  } else {
    auto left = deadline.Remaining();
    __kernel_timespec ts;
    ts.tv_sec = left.count() / 1000000000;
    ts.tv_nsec = left.count() % 1000000000;
    res = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  Status status;
  if (res < 0 && res != -ETIME && res != -EINTR && res != -EBUSY) {
    status = KernelError("io_uring wait", res);
  }

  completions_.clear();
  unsigned head;
  unsigned count = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    completions_.push_back({cqe->user_data, cqe->res, cqe->flags});
    ++count;
  }
  io_uring_cq_advance(&ring_, count);
  bool any = !completions_.empty();
  for (const Completion& c : completions_)
    Dispatch(c.user_data, c.res, c.flags);
  counters_.in_flight.store(in_flight_, std::memory_order_relaxed);
  if (status.ok() && !any && !has_posted && deadline.Expired()) {
    status = UnavailableError("deadline passed with no completion");
  }
  io_thread_.store(previous, std::memory_order_relaxed);
  return status;
}

void Reactor::Dispatch(uint64_t user_data, int32_t res, uint32_t flags) {
  bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more)
    --in_flight_;
  if (user_data == kCancelUserData)
    return;
  if (user_data == kWakeReadUserData) {
    if (res < 0 && res != -EAGAIN && res != -ECANCELED) {
      SHMPORTS_LOG_REPEATED("reactor-wake-read", kError,
                            "reactor: eventfd read: %s",
                            ErrnoText(-res).c_str());
    }
    if (res != -ECANCELED)
      ArmWakeRead();
    return;
  }
  auto it = ops_.find(user_data);
  if (it == ops_.end())
    return;  // Cancelled.
  // The Op leaves the table before its callback runs, so the callback may
  // re-arm or cancel freely; a multishot poll stays while the kernel says
  // more will come.
  std::unique_ptr<Op> finished;
  Op* op = it->second.get();
  if (!more) {
    finished = std::move(it->second);
    ops_.erase(it);
  }
  switch (op->kind) {
    case Op::Kind::kFutex:
      if (res == 0) {
        counters_.futex_woken.fetch_add(1, std::memory_order_relaxed);
        op->futex_callback(FutexWake::kWoken);
      } else if (res == -EAGAIN) {
        counters_.futex_value_differed.fetch_add(1, std::memory_order_relaxed);
        op->futex_callback(FutexWake::kValueDiffered);
      } else {
        op->futex_callback(KernelError("futex wait", res));
      }
      break;
    case Op::Kind::kPoll: {
      // A multishot Op stays in the table, and its callback may cancel it
      // (destroying the Op): call a copy.
      PollCallback callback =
          more ? op->poll_callback : std::move(op->poll_callback);
      if (res >= 0) {
        counters_.poll_events.fetch_add(1, std::memory_order_relaxed);
        callback(static_cast<uint32_t>(res));
      } else {
        callback(KernelError(StrFormat("poll fd %d", op->fd).c_str(), res));
      }
      break;
    }
    case Op::Kind::kTimer:
      // -ETIME is the normal expiry; 0 would mean a completion count was
      // reached, which we never ask for.
      if (res == -ETIME || res == 0) {
        counters_.timers_fired.fetch_add(1, std::memory_order_relaxed);
      } else {
        SHMPORTS_LOG_REPEATED("reactor-timer", kWarning,
                              "reactor: timer completed with %s",
                              ErrnoText(-res).c_str());
      }
      op->timer_callback();
      break;
  }
}

void Reactor::CancelAllAndDrain(Deadline deadline) {
  {
    MutexLock lock(&mu_);
    posted_.clear();
  }
  ops_.clear();
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  io_uring_sqe_set_data64(sqe, kCancelUserData);
  ++in_flight_;
  // ASYNC_CANCEL_ANY (Linux 5.19) ends every armed request, the eventfd read
  // included; wait for each to report so nothing refers to our memory when
  // the ring is torn down.
  int res = io_uring_submit(&ring_);
  while (in_flight_ > 0 && res >= 0 && !deadline.Expired()) {
    auto left = deadline.Remaining();
    __kernel_timespec ts;
    ts.tv_sec = left.count() / 1000000000;
    ts.tv_nsec = left.count() % 1000000000;
    io_uring_cqe* cqe = nullptr;
    res = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    if (res == -ETIME || res == -EINTR) {
      res = 0;
      continue;
    }
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (!(cqe->flags & IORING_CQE_F_MORE))
        --in_flight_;
      ++count;
    }
    io_uring_cq_advance(&ring_, count);
  }
  counters_.in_flight.store(in_flight_, std::memory_order_relaxed);
  if (in_flight_ > 0) {
    SHMPORTS_LOG(kWarning,
                 "reactor shutdown: %llu io_uring operations did not report "
                 "cancellation in time; closing the ring cancels them",
                 static_cast<unsigned long long>(in_flight_));
  }
}

ReactorStats Reactor::GetStats() const {
  auto get = [](const std::atomic<uint64_t>& v) {
    return v.load(std::memory_order_relaxed);
  };
  ReactorStats s;
  s.loop_iterations = get(counters_.loop_iterations);
  s.futex_waits_armed = get(counters_.futex_waits_armed);
  s.futex_woken = get(counters_.futex_woken);
  s.futex_value_differed = get(counters_.futex_value_differed);
  s.polls_armed = get(counters_.polls_armed);
  s.poll_events = get(counters_.poll_events);
  s.timers_armed = get(counters_.timers_armed);
  s.timers_fired = get(counters_.timers_fired);
  s.cancels = get(counters_.cancels);
  s.tasks_run = get(counters_.tasks_run);
  s.cross_thread_wakes = get(counters_.cross_thread_wakes);
  s.operations_in_flight = get(counters_.in_flight);
  return s;
}

}  // namespace shmports::channel
