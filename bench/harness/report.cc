#include "bench/harness/report.h"

#include <algorithm>
#include <cinttypes>
#include <map>
#include <tuple>

#include "bench/harness/clock.h"
#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

const TrialResult* FindTrial(const std::vector<TrialResult>& trials,
                             const std::string& subject,
                             Pattern pattern,
                             size_t size,
                             int repetition) {
  for (const TrialResult& t : trials) {
    if (t.subject == subject && t.pattern == pattern && t.size == size &&
        t.repetition == repetition && t.status.ok()) {
      return &t;
    }
  }
  return nullptr;
}

double MetricOf(const TrialResult& t, Metric metric) {
  switch (metric) {
    case Metric::kTripTime:
      return static_cast<double>(t.latency.p50_ns);
    case Metric::kMessagesPerSecond:
      return t.msgs_per_s;
    case Metric::kGigabytesPerSecond:
      return t.gb_per_s;
  }
  return 0;
}

bool LowerIsBetter(Metric metric) {
  return metric == Metric::kTripTime;
}

std::string SizeText(size_t size) {
  if (size >= (1u << 20) && size % (1u << 20) == 0) {
    return StrFormat("%zu MiB", size >> 20);
  }
  if (size >= 1024 && size % 1024 == 0)
    return StrFormat("%zu KiB", size >> 10);
  return StrFormat("%zu B", size);
}

// Trials grouped by (pattern, size, subject), in the order first run.
struct Group {
  const TrialResult* first;
  std::vector<const TrialResult*> ok;
  int failed = 0;
};

std::vector<Group> GroupTrials(const std::vector<TrialResult>& trials) {
  std::vector<Group> groups;
  std::map<std::tuple<int, size_t, std::string>, size_t> index;
  for (const TrialResult& t : trials) {
    auto key = std::make_tuple(static_cast<int>(t.pattern), t.size, t.subject);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, groups.size()).first;
      groups.push_back({&t, {}, 0});
    }
    if (t.status.ok()) {
      groups[it->second].ok.push_back(&t);
    } else {
      ++groups[it->second].failed;
    }
  }
  return groups;
}

template <typename F>
Spread SpreadOver(const std::vector<const TrialResult*>& trials, F f) {
  std::vector<double> v;
  for (const TrialResult* t : trials)
    v.push_back(f(*t));
  return SpreadOf(std::move(v));
}

nlohmann::json SpreadJson(const Spread& s) {
  return {{"min", s.min}, {"median", s.median}, {"max", s.max}};
}

std::string TargetText(const RatioSpec& spec, double value) {
  if (value == 0)
    return "-";
  return StrFormat("%s %.2g", LowerIsBetter(spec.metric) ? "<=" : ">=", value);
}

}  // namespace

std::vector<RatioResult> ComputeRatios(const std::vector<TrialResult>& trials,
                                       int repetitions) {
  std::vector<RatioResult> out;
  for (const RatioSpec& spec : AllRatios()) {
    RatioResult r{&spec, {}, {}, ""};
    for (int rep = 0; rep < repetitions; ++rep) {
      const TrialResult* s =
          FindTrial(trials, spec.subject, spec.pattern, spec.size, rep);
      const TrialResult* b =
          FindTrial(trials, spec.baseline, spec.pattern, spec.size, rep);
      if (s == nullptr || b == nullptr)
        continue;
      const double base = MetricOf(*b, spec.metric);
      if (base > 0)
        r.per_repetition.push_back(MetricOf(*s, spec.metric) / base);
    }
    if (r.per_repetition.empty()) {
      r.verdict = "not measured";
    } else {
      r.spread = SpreadOf(r.per_repetition);
      const double m = r.spread.median;
      const bool lower = LowerIsBetter(spec.metric);
      auto meets = [&](double bound) {
        return lower ? m <= bound : m >= bound;
      };
      if (spec.target == 0) {
        r.verdict = "reported";
      } else if (spec.stretch != 0 && meets(spec.stretch)) {
        r.verdict = "met stretch";
      } else if (meets(spec.target)) {
        r.verdict = "met";
      } else {
        r.verdict = "MISSED";
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

nlohmann::json ReportJson(const RunConfig& config,
                          const std::vector<TrialResult>& trials,
                          const std::vector<RatioResult>& ratios) {
  nlohmann::json j;
  j["tool"] = "shmports_bench";
  j["schema"] = 1;
  j["config"] = {
      {"duration_s", static_cast<double>(config.duration_ns) / 1e9},
      {"max_messages", config.max_messages},
      {"warmup_messages", config.warmup_messages},
      {"repetitions", config.repetitions},
      {"seed", config.seed},
  };
  j["clock"] = {{"source", TripClock::Describe()},
                {"read_cost_ns", TripClock::ReadCostNs()}};
  j["pinning"] = {{"pinned", config.pin.pinned},
                  {"parent_cpu", config.pin.parent_cpu},
                  {"peer_cpu", config.pin.peer_cpu},
                  {"note", config.pin.note}};
  j["host"] = {{"cpus_online", config.cpus_online},
               {"kernel", config.kernel},
               {"load_average_before", config.load_before},
               {"load_average_after", config.load_after}};
  j["subjects"] = nlohmann::json::array();
  for (const auto& s : AllSubjects()) {
    const SubjectInfo& i = s->info();
    // An opt-in subject is listed only when this run measured it.
    if (i.opt_in &&
        std::none_of(trials.begin(), trials.end(), [&](const TrialResult& t) {
          return t.subject == i.name;
        })) {
      continue;
    }
    j["subjects"].push_back({{"name", i.name},
                             {"description", i.description},
                             {"baseline", i.baseline},
                             {"round_trip", i.round_trip},
                             {"one_way", i.one_way},
                             {"local", i.local}});
  }
  bool ok = true;
  j["trials"] = nlohmann::json::array();
  j["failures"] = nlohmann::json::array();
  for (const TrialResult& t : trials) {
    nlohmann::json tj = {{"subject", t.subject},
                         {"baseline", t.baseline},
                         {"pattern", PatternName(t.pattern)},
                         {"size", t.size},
                         {"payload_bytes", t.payload_bytes},
                         {"repetition", t.repetition},
                         {"ok", t.status.ok()},
                         {"parent_cpu", t.parent_cpu},
                         {"peer_cpu", t.peer_cpu},
                         {"messages", t.messages},
                         {"verified", t.verified}};
    if (!t.counters.empty()) {
      nlohmann::json counters = nlohmann::json::object();
      for (const auto& [name, value] : t.counters)
        counters[name] = value;
      tj["counters"] = std::move(counters);
    }
    if (!t.status.ok()) {
      ok = false;
      tj["error"] = t.status.ToString();
      j["failures"].push_back(t.status.ToString());
    } else if (t.pattern == Pattern::kRoundTrip) {
      nlohmann::json hist = nlohmann::json::array();
      for (const auto& [upper, count] : t.latency.histogram) {
        hist.push_back({upper, count});
      }
      tj["latency_ns"] = {
          {"count", t.latency.count},   {"min", t.latency.min_ns},
          {"p50", t.latency.p50_ns},    {"p99", t.latency.p99_ns},
          {"p99_9", t.latency.p999_ns}, {"max", t.latency.max_ns},
          {"mean", t.latency.mean_ns},  {"histogram", hist}};
    } else {
      tj["seconds"] = static_cast<double>(t.elapsed_ns) / 1e9;
      tj["msgs_per_s"] = t.msgs_per_s;
      tj["gb_per_s"] = t.gb_per_s;
    }
    j["trials"].push_back(std::move(tj));
  }
  j["summary"] = nlohmann::json::array();
  for (const Group& g : GroupTrials(trials)) {
    nlohmann::json sj = {{"subject", g.first->subject},
                         {"baseline", g.first->baseline},
                         {"pattern", PatternName(g.first->pattern)},
                         {"size", g.first->size},
                         {"payload_bytes", g.first->payload_bytes},
                         {"repetitions_ok", g.ok.size()},
                         {"repetitions_failed", g.failed}};
    if (!g.ok.empty()) {
      if (g.first->pattern == Pattern::kRoundTrip) {
        sj["p50_ns"] = SpreadJson(SpreadOver(g.ok, [](const TrialResult& t) {
          return static_cast<double>(t.latency.p50_ns);
        }));
        sj["p99_ns"] = SpreadJson(SpreadOver(g.ok, [](const TrialResult& t) {
          return static_cast<double>(t.latency.p99_ns);
        }));
        sj["p99_9_ns"] = SpreadJson(SpreadOver(g.ok, [](const TrialResult& t) {
          return static_cast<double>(t.latency.p999_ns);
        }));
        sj["max_ns"] = SpreadJson(SpreadOver(g.ok, [](const TrialResult& t) {
          return static_cast<double>(t.latency.max_ns);
        }));
      } else {
        sj["msgs_per_s"] = SpreadJson(SpreadOver(
            g.ok, [](const TrialResult& t) { return t.msgs_per_s; }));
        sj["gb_per_s"] = SpreadJson(
            SpreadOver(g.ok, [](const TrialResult& t) { return t.gb_per_s; }));
      }
    }
    j["summary"].push_back(std::move(sj));
  }
  j["ratios"] = nlohmann::json::array();
  for (const RatioResult& r : ratios) {
    const RatioSpec& s = *r.spec;
    nlohmann::json rj = {
        {"figure", s.figure},
        {"subject", s.subject},
        {"baseline", s.baseline},
        {"pattern", PatternName(s.pattern)},
        {"size", s.size},
        {"metric", MetricName(s.metric)},
        {"comparison", LowerIsBetter(s.metric) ? "<=" : ">="},
        {"target", s.target},
        {"stretch", s.stretch},
        {"owner", s.owner},
        {"per_repetition", r.per_repetition},
        {"verdict", r.verdict},
    };
    if (!r.per_repetition.empty())
      rj["ratio"] = SpreadJson(r.spread);
    j["ratios"].push_back(std::move(rj));
  }
  j["ok"] = ok;
  return j;
}

std::string ReportTable(const RunConfig& config,
                        const std::vector<TrialResult>& trials,
                        const std::vector<RatioResult>& ratios) {
  std::string out;
  out += StrFormat(
      "shmports_bench: %d repetitions, interleaved; %.2f s or %" PRIu64
      " messages per trial\n",
      config.repetitions, static_cast<double>(config.duration_ns) / 1e9,
      config.max_messages);
  out += "pinning: " + config.pin.note + "\n";
  out += StrFormat(
      "machine: %d CPUs online, kernel %s, 1-min load average %.2f before, "
      "%.2f after (above ~0.5 the machine is shared and figures are noisy)\n",
      config.cpus_online, config.kernel.c_str(), config.load_before,
      config.load_after);
  out +=
      "payload: written by the sender and verified by the receiver on "
      "every message\n";
  const std::vector<Group> groups = GroupTrials(trials);

  auto any_of = [&](Pattern p) {
    for (const Group& g : groups) {
      if (g.first->pattern == p && !g.ok.empty())
        return true;
    }
    return false;
  };
  if (any_of(Pattern::kRoundTrip)) {
    out += StrFormat(
        "\nround trip (ns, median over repetitions; every trip timed with %s, "
        "each sample includes one read, %.0f ns)\n",
        TripClock::Describe().c_str(), TripClock::ReadCostNs());
    out += StrFormat("  %-8s %-12s %24s %9s %9s %10s %9s\n", "size", "subject",
                     "p50 [min..max]", "p99", "p99.9", "max", "samples");
  }
  for (const Group& g : groups) {
    if (g.first->pattern != Pattern::kRoundTrip || g.ok.empty())
      continue;
    auto spread = [&](uint64_t LatencySummary::*field) {
      return SpreadOver(g.ok, [field](const TrialResult& t) {
        return static_cast<double>(t.latency.*field);
      });
    };
    const Spread p50 = spread(&LatencySummary::p50_ns);
    out += StrFormat(
        "  %-8s %-12s %8.0f [%6.0f..%6.0f] %9.0f %9.0f %10.0f %9.0f\n",
        SizeText(g.first->size).c_str(), g.first->subject.c_str(), p50.median,
        p50.min, p50.max, spread(&LatencySummary::p99_ns).median,
        spread(&LatencySummary::p999_ns).median,
        spread(&LatencySummary::max_ns).median,
        spread(&LatencySummary::count).median);
  }

  if (any_of(Pattern::kOneWay)) {
    out += "\none way (median over repetitions, [min..max])\n";
  }
  if (any_of(Pattern::kOneWay))
    out += StrFormat("  %-8s %-12s %32s %24s\n", "size", "subject",
                     "msgs/s [min..max]", "GB/s [min..max]");
  for (const Group& g : groups) {
    if (g.first->pattern != Pattern::kOneWay || g.ok.empty())
      continue;
    Spread m =
        SpreadOver(g.ok, [](const TrialResult& t) { return t.msgs_per_s; });
    Spread gb =
        SpreadOver(g.ok, [](const TrialResult& t) { return t.gb_per_s; });
    out += StrFormat(
        "  %-8s %-12s %10.3gM [%6.3g..%6.3g]M %7.2f [%5.2f..%5.2f]\n",
        SizeText(g.first->size).c_str(), g.first->subject.c_str(),
        m.median / 1e6, m.min / 1e6, m.max / 1e6, gb.median, gb.min, gb.max);
  }

  out += "\nratios (subject / baseline in the same repetition)\n";
  out += StrFormat("  %-50s %-14s %-22s %-9s %-9s %s\n", "figure", "metric",
                   "min / median / max", "target", "stretch", "verdict");
  for (const RatioResult& r : ratios) {
    const RatioSpec& s = *r.spec;
    std::string range = r.per_repetition.empty()
                            ? std::string("-")
                            : StrFormat("%.2f / %.2f / %.2f", r.spread.min,
                                        r.spread.median, r.spread.max);
    out += StrFormat("  %-50s %-14s %-22s %-9s %-9s %s\n", s.figure.c_str(),
                     MetricName(s.metric), range.c_str(),
                     TargetText(s, s.target).c_str(),
                     TargetText(s, s.stretch).c_str(), r.verdict.c_str());
  }

  int failed = 0;
  for (const TrialResult& t : trials) {
    if (t.status.ok())
      continue;
    if (failed++ == 0)
      out += "\nfailed trials\n";
    out += "  " + t.status.ToString() + "\n";
  }
  return out;
}

}  // namespace shmports::bench
