#include "bench/harness/clock.h"

#include <time.h>

#include <fstream>
#include <string>

#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

bool TscIsReliable() {
#if defined(__x86_64__) || defined(__i386__)
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" constant_tsc") != std::string::npos &&
             line.find(" nonstop_tsc") != std::string::npos;
    }
  }
#endif
  return false;
}

}  // namespace

void TripClock::Calibrate() {
  use_tsc_ = false;
  ns_per_tick_ = 1.0;
  if (TscIsReliable()) {
    // Two readings of both clocks 20 ms apart; the spin keeps the thread
    // on its CPU so both pairs are taken back to back.
    const uint64_t ns0 = MonotonicNanos();
    use_tsc_ = true;
    const uint64_t t0 = Now();
    uint64_t ns1 = ns0;
    while ((ns1 = MonotonicNanos()) - ns0 < 20000000) {
    }
    const uint64_t t1 = Now();
    if (t1 > t0) {
      ns_per_tick_ =
          static_cast<double>(ns1 - ns0) / static_cast<double>(t1 - t0);
    } else {
      use_tsc_ = false;
    }
  }
  constexpr int kReads = 100000;
  uint64_t sink = 0;
  const uint64_t start = MonotonicNanos();
  for (int i = 0; i < kReads; ++i)
    sink += Now();
  asm volatile("" : : "r"(sink));
  read_cost_ns_ = static_cast<double>(MonotonicNanos() - start) /
                  static_cast<double>(kReads);
}

std::string TripClock::Describe() {
  if (!use_tsc_)
    return "steady_clock";
  return StrFormat("tsc (%.3f GHz)", 1.0 / ns_per_tick_);
}

}  // namespace shmports::bench
