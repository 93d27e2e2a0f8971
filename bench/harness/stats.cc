#include "bench/harness/stats.h"

#include <algorithm>
#include <cmath>

namespace shmports::bench {
namespace {

uint64_t Percentile(const std::vector<uint64_t>& sorted, double p) {
  size_t rank =
      static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  if (rank == 0)
    rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

}  // namespace

LatencySummary Summarize(std::vector<uint64_t>* samples) {
  LatencySummary s;
  if (samples->empty())
    return s;
  std::sort(samples->begin(), samples->end());
  const std::vector<uint64_t>& v = *samples;
  s.count = v.size();
  s.min_ns = v.front();
  s.max_ns = v.back();
  s.p50_ns = Percentile(v, 0.50);
  s.p99_ns = Percentile(v, 0.99);
  s.p999_ns = Percentile(v, 0.999);
  double sum = 0;
  for (uint64_t x : v)
    sum += static_cast<double>(x);
  s.mean_ns = sum / static_cast<double>(v.size());

  // Walk the sorted samples once, bucket by bucket.
  double bound = 1.0;
  size_t i = 0;
  while (i < v.size()) {
    while (static_cast<double>(v[i]) > bound)
      bound *= 1.189207115;  // 2^(1/4)
    const uint64_t upper = static_cast<uint64_t>(bound);
    uint64_t count = 0;
    while (i < v.size() && v[i] <= upper) {
      ++count;
      ++i;
    }
    if (count > 0)
      s.histogram.emplace_back(upper, count);
    bound *= 1.189207115;
  }
  return s;
}

Spread SpreadOf(std::vector<double> values) {
  Spread s;
  if (values.empty())
    return s;
  std::sort(values.begin(), values.end());
  s.min = values.front();
  s.max = values.back();
  const size_t n = values.size();
  s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return s;
}

}  // namespace shmports::bench
