// What a run prints: the JSON document (--json) and the human table with
// the ratios against the ARCHITECTURE.md targets.
#ifndef SHMPORTS_BENCH_HARNESS_REPORT_H_
#define SHMPORTS_BENCH_HARNESS_REPORT_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/harness/catalog.h"
#include "bench/harness/runner.h"
#include "bench/harness/stats.h"

namespace shmports::bench {

// One ratio across repetitions: the ratio of each repetition in which both
// trials succeeded.
struct RatioResult {
  const RatioSpec* spec;
  std::vector<double> per_repetition;
  Spread spread;
  // "met stretch", "met", "MISSED", "reported" (no target), "not measured".
  std::string verdict;
};

std::vector<RatioResult> ComputeRatios(const std::vector<TrialResult>& trials,
                                       int repetitions);

nlohmann::json ReportJson(const RunConfig& config,
                          const std::vector<TrialResult>& trials,
                          const std::vector<RatioResult>& ratios);

// The human report: figures per subject (median over repetitions, with the
// range) and the ratio table.
std::string ReportTable(const RunConfig& config,
                        const std::vector<TrialResult>& trials,
                        const std::vector<RatioResult>& ratios);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_REPORT_H_
