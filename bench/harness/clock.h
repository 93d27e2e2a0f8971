// The round-trip clock. A steady_clock read costs ~80 ns on this VM (the
// vDSO path under KVM), as much as half a cache-line round trip, so the
// harness reads the TSC instead (~30 ns here) when the CPU says it is
// constant and non-stop, converted to nanoseconds with a factor calibrated
// against steady_clock at start-up. Elsewhere: steady_clock.
//
// Thread-compatible after Calibrate(); reads are lock-free.
#ifndef SHMPORTS_BENCH_HARNESS_CLOCK_H_
#define SHMPORTS_BENCH_HARNESS_CLOCK_H_

#include <cstdint>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "core/base/deadline.h"

namespace shmports::bench {

class TripClock {
 public:
  // Picks the source and calibrates it (takes ~20 ms). Call once, before
  // any trial.
  static void Calibrate();

  // Ticks of the chosen source; only differences are meaningful.
  static uint64_t Now() {
#if defined(__x86_64__) || defined(__i386__)
    if (use_tsc_)
      return __rdtsc();
#endif
    return MonotonicNanos();
  }
  static uint64_t ToNanos(uint64_t ticks) {
    return use_tsc_ ? static_cast<uint64_t>(static_cast<double>(ticks) *
                                            ns_per_tick_)
                    : ticks;
  }

  // "tsc (2.994 GHz)" or "steady_clock".
  static std::string Describe();
  // Cost of one Now() in ns, measured back to back at calibration.
  static double ReadCostNs() {
    return read_cost_ns_;
  }

 private:
  static inline bool use_tsc_ = false;
  static inline double ns_per_tick_ = 1.0;
  static inline double read_cost_ns_ = 0;
};

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_CLOCK_H_
