// Deadline: a point on the monotonic clock, for every wait with a time limit.
// Tests wait on conditions with deadlines, never with sleeps.
#ifndef SHMPORTS_CORE_BASE_DEADLINE_H_
#define SHMPORTS_CORE_BASE_DEADLINE_H_

#include <chrono>
#include <cstdint>
#include <ctime>

namespace shmports {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline Infinite() { return Deadline(Clock::time_point::max()); }
  static Deadline Now() { return Deadline(Clock::now()); }
  // A duration past the clock's range (nanoseconds::max() for "forever")
  // is Infinite(): the sum would overflow into the past and time out at once.
  static Deadline In(std::chrono::nanoseconds d) {
    const Clock::time_point now = Clock::now();
    if (d >= Clock::time_point::max() - now)
      return Infinite();
    return Deadline(now + d);
  }
  static Deadline At(Clock::time_point t) { return Deadline(t); }

  bool is_infinite() const { return when_ == Clock::time_point::max(); }
  bool Expired() const { return !is_infinite() && Clock::now() >= when_; }
  Clock::time_point when() const { return when_; }

  // Time left, clamped at zero; nanoseconds::max() when infinite.
  std::chrono::nanoseconds Remaining() const {
    if (is_infinite())
      return std::chrono::nanoseconds::max();
    auto left = when_ - Clock::now();
    return left.count() > 0
               ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
               : std::chrono::nanoseconds(0);
  }

  // Absolute CLOCK_MONOTONIC timespec (steady_clock is CLOCK_MONOTONIC on
  // Linux), for futex waits and io_uring timeouts.
  struct timespec ToTimespec() const {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  when_.time_since_epoch())
                  .count();
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    return ts;
  }

 private:
  explicit Deadline(Clock::time_point when) : when_(when) {}
  Clock::time_point when_;
};

// Nanoseconds on the monotonic clock, for timestamps and latency figures.
inline uint64_t MonotonicNanos() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace shmports

#endif  // SHMPORTS_CORE_BASE_DEADLINE_H_
