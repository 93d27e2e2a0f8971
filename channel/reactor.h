// Reactor: one io_uring and the one thread that runs it (the "io thread").
//
// A Reactor is the single place where an owner (a channel::Process, later)
// sleeps. One io_uring wait covers:
//   - shared futex words: each inbound ring's "data ready" and "space ready"
//     words (IORING_OP_FUTEX_WAIT, Linux 6.7). The words live in memory shared
//     with other processes, so the waits never use the private futex flag:
//     a FUTEX_WAKE from any process that maps the word reaches us;
//   - file descriptors, by poll: pidfds (a peer's death), sockets (hang-up,
//     handshake traffic), eventfds;
//   - timers, on CLOCK_MONOTONIC (Deadline);
//   - tasks posted by other threads (Post), delivered through an eventfd that
//     the ring always has a read armed on.
//
// Futex waits are one-shot, like the futex(2) call they stand for: a wait
// completes once (woken, or the word already differed from `expected` when
// the kernel checked it) and the owner re-arms after draining. The expected
// value closes the lost-wake-up window: the owner reads the word, drains,
// and arms with the value it read; if a producer changed the word in between,
// the wait completes at once with FutexWake::kValueDiffered instead of
// sleeping through the change.
//
// Threading contract:
//   - Run()/RunOnce() are called by one thread at a time: that thread is the
//     io thread while it runs them. Every callback (futex, poll, timer, and
//     every Post()ed task) runs on the io thread, in the order completions are
//     reaped, with no Reactor lock held: callbacks may call any Reactor method
//     (re-arm, cancel, post), but must not call Run()/RunOnce() re-entrantly.
//   - WatchFutex/WatchFd/AddTimer/Cancel/Post/Stop/GetStats may be called from
//     any thread. Called on the io thread they act immediately; from another
//     thread the request is queued and the io thread is woken to carry it out.
//   - Cancel(token) on the io thread guarantees the callback of `token` will
//   not
//     run afterwards. From another thread the callback may still run (or be
//     running) until the io thread has processed the cancellation; owners that
//     need a synchronous cancel from another thread Post() the Cancel.
//   - Memory passed to WatchFutex must stay mapped until its callback has run
//     or its Cancel has been processed on the io thread (the kernel reads the
//     word when the wait is submitted; it keeps no pointer into it after that,
//     but a wait not yet submitted still would read it).
//   - The destructor must not run concurrently with Run()/RunOnce(): Stop() the
//     io thread and join it first. The destructor cancels every armed
//     operation, waits (bounded) for the kernel to confirm each, and destroys
//     callbacks and tasks that never ran without calling them.
//
// Ownership: the Reactor owns its io_uring and wake eventfd. It does not own
// the fds or futex words it watches; callers keep them valid as above.
#ifndef SHMPORTS_CHANNEL_REACTOR_H_
#define SHMPORTS_CHANNEL_REACTOR_H_

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "channel/scoped_fd.h"
#include "core/base/deadline.h"
#include "core/base/mutex.h"
#include "core/base/status.h"
#include "core/base/thread_annotations.h"

namespace shmports::channel {

struct ReactorOptions {
  // Submission queue entries; the completion queue is twice as large and the
  // kernel buffers overflow beyond that (IORING_FEAT_NODROP).
  unsigned queue_depth = 256;
  // Behave as if the kernel lacked IORING_OP_FUTEX_WAIT, so tests can check
  // that Create() refuses with the kernel requirement named.
  bool pretend_futex_wait_unsupported = false;
};

// How a futex wait completed. Both outcomes mean "re-read the word".
enum class FutexWake {
  kWoken,          // A FUTEX_WAKE on the word reached this wait.
  kValueDiffered,  // The word was not `expected` when the kernel checked it.
};

// Whether a poll watch completes once, or keeps reporting readiness until
// cancelled (multishot; the kernel may still end it, see WatchFd).
enum class PollMode { kOneShot, kMultiShot };

struct ReactorStats {
  uint64_t loop_iterations = 0;
  uint64_t futex_waits_armed = 0;
  uint64_t futex_woken = 0;
  uint64_t futex_value_differed = 0;
  uint64_t polls_armed = 0;
  uint64_t poll_events = 0;
  uint64_t timers_armed = 0;
  uint64_t timers_fired = 0;
  uint64_t cancels = 0;
  uint64_t tasks_run = 0;
  uint64_t cross_thread_wakes = 0;    // eventfd writes by posting threads.
  uint64_t operations_in_flight = 0;  // SQEs whose last CQE is not yet seen.
};

class Reactor {
 public:
  // Names one armed operation; never reused within a Reactor. 0 is invalid.
  using Token = uint64_t;
  static constexpr Token kInvalidToken = 0;

  // Ok(FutexWake) or the kernel's error for this wait (never ECANCELED: a
  // cancelled wait's callback is not called).
  using FutexCallback = std::function<void(Result<FutexWake>)>;
  // Ok(revents) (POLLIN, POLLHUP, ...) or the kernel's error.
  using PollCallback = std::function<void(Result<uint32_t>)>;
  using TimerCallback = std::function<void()>;
  using Task = std::function<void()>;

  // Sets up the io_uring and probes for IORING_OP_FUTEX_WAIT. Fails with
  // kUnavailable when io_uring cannot be used (disabled by sysctl or a
  // seccomp profile) or lacks futex waits (Linux < 6.7); the message names
  // the requirement and the running kernel.
  static Result<std::unique_ptr<Reactor>> Create(
      const ReactorOptions& options = {});

  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;
  ~Reactor();

  // One-shot wait on a 32-bit futex word shared between processes: `callback`
  // runs once when a FUTEX_WAKE reaches the word, or at once if the word is
  // not `expected` when the wait is submitted. `word` must be 4-byte aligned.
  Result<Token> WatchFutex(const std::atomic<uint32_t>* word,
                           uint32_t expected,
                           FutexCallback callback);
  Result<Token> WatchFutex(const uint32_t* word,
                           uint32_t expected,
                           FutexCallback callback);

  // Waits for `events` (POLLIN, ...) on `fd`. kOneShot: the callback runs
  // once. kMultiShot: it runs on each readiness edge the kernel reports until
  // the watch is cancelled or the kernel ends it (an error result ends it;
  // the caller re-arms if it still cares). POLLHUP/POLLERR are always
  // reported. A pidfd polls readable once its process has exited.
  Result<Token> WatchFd(int fd,
                        uint32_t events,
                        PollCallback callback,
                        PollMode mode = PollMode::kOneShot);

  // Runs `callback` once at `when` (CLOCK_MONOTONIC). Timers fire in
  // deadline order. An infinite deadline never fires.
  Result<Token> AddTimer(Deadline when, TimerCallback callback);

  // Stops watching `token` (see the threading contract for when the callback
  // is guaranteed not to run). Unknown or finished tokens are ignored.
  void Cancel(Token token);

  // Runs `task` on the io thread. From another thread this wakes the io
  // thread. Tasks from one thread run in the order posted.
  void Post(Task task);

  // Runs the loop on the calling thread until Stop(). Armed operations stay
  // armed after it returns.
  void Run();

  // One round: carries out queued requests, submits, waits until at least
  // one completion arrives or `deadline` passes, then runs the callbacks.
  // Returns kUnavailable when the deadline passed with nothing to do, or the
  // error of the wait itself (kInternal).
  Status RunOnce(Deadline deadline);

  // Makes Run() return after its current round. Any thread; idempotent.
  void Stop();

  // Whether the calling thread is currently running this Reactor's loop.
  bool IsIoThread() const;

  ReactorStats GetStats() const;

 private:
  struct Op;
  using Clock = Deadline::Clock;

  explicit Reactor(const ReactorOptions& options);
  Status Init();

  Token NextToken() {
    return next_token_.fetch_add(1, std::memory_order_relaxed);
  }
  // Arms now if on the io thread, else queues the arming for it.
  Result<Token> Submit(std::unique_ptr<Op> op);
  void ArmOnIoThread(Token token, std::unique_ptr<Op> op);
  void CancelOnIoThread(Token token);
  io_uring_sqe* GetSqe();
  void ArmWakeRead();
  void RunPostedTasks();
  void Dispatch(uint64_t user_data, int32_t res, uint32_t flags);
  void CancelAllAndDrain(Deadline deadline);

  const ReactorOptions options_;
  io_uring ring_;
  bool ring_ready_ = false;
  ScopedFd wake_fd_;
  uint64_t wake_buf_ = 0;  // Target of the armed eventfd read.

  std::atomic<Token> next_token_{1};
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::thread::id> io_thread_{};

  // io thread only.
  struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };
  std::unordered_map<Token, std::unique_ptr<Op>> ops_;
  uint64_t in_flight_ = 0;
  // Completions of one round, copied out of the ring before any callback
  // runs (a callback may arm operations, which touches the rings). Kept
  // between rounds so a round allocates nothing once warmed up.
  std::vector<Completion> completions_;

  // A leaf lock: never held while calling out (callbacks, tasks, the kernel
  // beyond an eventfd write).
  mutable Mutex mu_;
  std::vector<Task> posted_ GUARDED_BY(mu_);
  // Set when a wake-up is already owed to the io thread (its eventfd written
  // and not yet drained), so a burst of posts costs one write.
  bool wake_pending_ GUARDED_BY(mu_) = false;

  // Relaxed counters: read by GetStats from any thread, written on the io
  // thread (cross_thread_wakes: by posting threads).
  struct Counters {
    std::atomic<uint64_t> loop_iterations{0};
    std::atomic<uint64_t> futex_waits_armed{0};
    std::atomic<uint64_t> futex_woken{0};
    std::atomic<uint64_t> futex_value_differed{0};
    std::atomic<uint64_t> polls_armed{0};
    std::atomic<uint64_t> poll_events{0};
    std::atomic<uint64_t> timers_armed{0};
    std::atomic<uint64_t> timers_fired{0};
    std::atomic<uint64_t> cancels{0};
    std::atomic<uint64_t> tasks_run{0};
    std::atomic<uint64_t> cross_thread_wakes{0};
    std::atomic<uint64_t> in_flight{0};
  };
  Counters counters_;
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_REACTOR_H_
