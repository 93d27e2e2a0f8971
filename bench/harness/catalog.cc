#include "bench/harness/catalog.h"

#include "bench/harness/baselines.h"

namespace shmports::bench {

const std::vector<std::unique_ptr<Subject>>& AllSubjects() {
  static const auto* subjects = [] {
    auto* list = new std::vector<std::unique_ptr<Subject>>();
    list->push_back(MakeCacheLineSubject());
    list->push_back(MakeMemcpySubject());
    list->push_back(MakeEventfdSubject());
    list->push_back(MakeUnixStreamSubject());
    list->push_back(MakePipeSubject());
    list->push_back(MakeMessageQueueSubject());
    return list;
  }();
  return *subjects;
}

const Subject* FindSubject(std::string_view name) {
  for (const auto& s : AllSubjects()) {
    if (s->info().name == name)
      return s.get();
  }
  return nullptr;
}

const char* MetricName(Metric metric) {
  switch (metric) {
    case Metric::kP50Latency:
      return "p50 latency";
    case Metric::kMessagesPerSecond:
      return "msgs/s";
    case Metric::kGigabytesPerSecond:
      return "GB/s";
  }
  return "?";
}

const std::vector<RatioSpec>& AllRatios() {
  static const auto* ratios = new std::vector<RatioSpec>{
      // Baseline against baseline: reported so a reader can see how the
      // machine behaved in this run.
      {.figure = "eventfd 64 B round trip vs cache line",
       .subject = "eventfd",
       .baseline = "cacheline",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kP50Latency},
      {.figure = "pipe 64 B one-way vs Unix stream",
       .subject = "pipe",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond},
      {.figure = "Unix stream 64 KiB one-way vs memcpy",
       .subject = "unix-stream",
       .baseline = "memcpy",
       .pattern = Pattern::kOneWay,
       .size = 65536,
       .metric = Metric::kGigabytesPerSecond},
  };
  return *ratios;
}

std::vector<Figure> DefaultFigures() {
  return {{Pattern::kRoundTrip, 64},
          {Pattern::kOneWay, 64},
          {Pattern::kOneWay, 65536}};
}

}  // namespace shmports::bench
