// The catalog: which subjects exist, which trials a default run makes, and
// which ratios it reports against the ARCHITECTURE.md targets. This file and
// catalog.cc are where later issues add the whole stack (Process/Router/
// Node, then Pipe) as more subjects and ratios; the harness core iterates
// what is listed here and needs no change.
#ifndef SHMPORTS_BENCH_HARNESS_CATALOG_H_
#define SHMPORTS_BENCH_HARNESS_CATALOG_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/harness/subject.h"

namespace shmports::bench {

// Every subject, baselines first, in the order trials run within one
// repetition (each subject next to the baselines it is compared with).
const std::vector<std::unique_ptr<Subject>>& AllSubjects();

// nullptr when no subject has that name.
const Subject* FindSubject(std::string_view name);

// What a figure's ratio compares.
enum class Metric {
  kTripTime,  // Round trip p50, ns (lower is better).
  kMessagesPerSecond,
  kGigabytesPerSecond,
};
const char* MetricName(Metric metric);

// One row of the ratio table: subject's metric / baseline's metric, both
// measured in the same repetition, for the given pattern and size.
struct RatioSpec {
  std::string figure;  // "raw Ring busy-poll 64 B round trip"
  std::string subject;
  std::string baseline;
  Pattern pattern;
  size_t size;
  Metric metric;
  // Target and stretch on the median ratio; 0 means "reported only".
  // For kTripTime the ratio must be at most the target, else at least.
  double target = 0;
  double stretch = 0;
  std::string owner;  // Who owns the target (ARCHITECTURE.md).
};
const std::vector<RatioSpec>& AllRatios();

// The (pattern, size) pairs of a default run.
struct Figure {
  Pattern pattern;
  size_t size;
};
std::vector<Figure> DefaultFigures();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_CATALOG_H_
