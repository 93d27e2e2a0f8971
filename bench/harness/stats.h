// Figures computed from a trial's raw measurements: latency percentiles and
// a log-scale histogram for round trips, min/median/max across repetitions.
#ifndef SHMPORTS_BENCH_HARNESS_STATS_H_
#define SHMPORTS_BENCH_HARNESS_STATS_H_

#include <cstdint>
#include <utility>
#include <vector>

namespace shmports::bench {

struct LatencySummary {
  uint64_t count = 0;
  uint64_t min_ns = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t p999_ns = 0;
  uint64_t max_ns = 0;
  double mean_ns = 0;
  // Non-empty buckets as (upper bound in ns, count); bounds grow by 2^(1/4)
  // so each bucket is within 19% of its neighbours.
  std::vector<std::pair<uint64_t, uint64_t>> histogram;
};

// Sorts `samples` in place. Percentiles are nearest-rank on the exact
// samples, not on the histogram.
LatencySummary Summarize(std::vector<uint64_t>* samples);

struct Spread {
  double min = 0;
  double median = 0;
  double max = 0;
};

// Of a non-empty list (median of an even count: mean of the middle two).
Spread SpreadOf(std::vector<double> values);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_STATS_H_
