#include "bench/harness/catalog.h"

#include "bench/harness/baselines.h"
#include "bench/harness/pipe_subject.h"
#include "bench/harness/process_subject.h"
#include "bench/harness/ring_subject.h"

namespace shmports::bench {

const std::vector<std::unique_ptr<Subject>>& AllSubjects() {
  static const auto* subjects = [] {
    auto* list = new std::vector<std::unique_ptr<Subject>>();
    list->push_back(MakeCacheLineSubject());
    list->push_back(MakeRingBusySubject());
    list->push_back(MakeRingBatchSubject());
    list->push_back(MakeMemcpySubject());
    list->push_back(MakeRingSleepSubject());
    list->push_back(MakeEventfdSubject());
    list->push_back(MakeUnixStreamSubject());
    list->push_back(MakePipeSubject());
    list->push_back(MakeMessageQueueSubject());
    list->push_back(MakeProcessSubject());
    list->push_back(MakeApiBusySubject());
    list->push_back(MakeApiDefaultSubject());
    list->push_back(MakeApiBlockingSubject());
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
    case Metric::kTripTime:
      return "round trip";
    case Metric::kMessagesPerSecond:
      return "msgs/s";
    case Metric::kGigabytesPerSecond:
      return "GB/s";
  }
  return "?";
}

const std::vector<RatioSpec>& AllRatios() {
  static const auto* ratios = new std::vector<RatioSpec>{
      {.figure = "raw Ring busy-poll 64 B round trip",
       .subject = "ring-busy",
       .baseline = "cacheline",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime,
       .target = 2.0,
       .stretch = 1.5,
       .owner = "shm"},
      {.figure = "raw Ring 64 B one-way msgs/s",
       .subject = "ring-busy",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond,
       .target = 20.0,
       .stretch = 40.0,
       .owner = "shm"},
      {.figure = "raw Ring 64 B one-way, tail per 16 msgs",
       .subject = "ring-batch",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond},
      {.figure = "raw Ring 64 KiB one-way GB/s",
       .subject = "ring-busy",
       .baseline = "memcpy",
       .pattern = Pattern::kOneWay,
       .size = 65536,
       .metric = Metric::kGigabytesPerSecond,
       .target = 0.5,
       .stretch = 0.8,
       .owner = "shm"},
      // Reported only: the sleeping consumer next to its natural baselines.
      {.figure = "raw Ring sleeping 64 B round trip vs eventfd",
       .subject = "ring-sleep",
       .baseline = "eventfd",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime},
      {.figure = "raw Ring sleeping 64 B one-way vs Unix stream",
       .subject = "ring-sleep",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond},
      {.figure = "raw Ring sleeping 64 KiB one-way vs memcpy",
       .subject = "ring-sleep",
       .baseline = "memcpy",
       .pattern = Pattern::kOneWay,
       .size = 65536,
       .metric = Metric::kGigabytesPerSecond},
      // The whole stack (issue 7: Process/Router/Node, no user API yet),
      // next to the raw Ring and the Unix stream socket. The ARCHITECTURE.md
      // whole-stack targets belong to the user API; reported here.
      {.figure = "Process 64 B round trip vs raw Ring",
       .subject = "process",
       .baseline = "ring-busy",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime},
      {.figure = "Process 64 B round trip vs Unix stream",
       .subject = "process",
       .baseline = "unix-stream",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime},
      {.figure = "Process 64 B one-way msgs/s vs Unix stream",
       .subject = "process",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond},
      {.figure = "Process 64 KiB one-way GB/s vs Unix stream",
       .subject = "process",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 65536,
       .metric = Metric::kGigabytesPerSecond},
      {.figure = "Process 1 MiB one-way GB/s vs Unix stream",
       .subject = "process",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 1 << 20,
       .metric = Metric::kGigabytesPerSecond},
      {.figure = "Process 1 MiB one-way GB/s vs memcpy",
       .subject = "process",
       .baseline = "memcpy",
       .pattern = Pattern::kOneWay,
       .size = 1 << 20,
       .metric = Metric::kGigabytesPerSecond},
      // The user API (issue 8): Pipe::Send -> Pipe::Receive, the targets
      // of ARCHITECTURE.md, owned by "API" (the pipe-targets command prints
      // exactly these five), then the other sizes, reported only.
      {.figure = "whole stack busy-poll 64 B round trip",
       .subject = "api-busy",
       .baseline = "ring-busy",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime,
       .target = 5.0,
       .stretch = 3.0,
       .owner = "API"},
      {.figure = "whole stack default-mode 64 B round trip",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime,
       .target = 0.2,
       .stretch = 0.1,
       .owner = "API"},
      {.figure = "whole stack blocking 64 B round trip",
       .subject = "api-blocking",
       .baseline = "eventfd",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime,
       .target = 1.3,
       .stretch = 1.1,
       .owner = "API"},
      {.figure = "whole stack 64 B one-way msgs/s",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 64,
       .metric = Metric::kMessagesPerSecond,
       .target = 5.0,
       .stretch = 10.0,
       .owner = "API"},
      {.figure = "whole stack 1 MiB one-way GB/s",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 1 << 20,
       .metric = Metric::kGigabytesPerSecond,
       .target = 5.0,
       .owner = "API"},
      // The 1 MiB stretch is against memcpy (>= 0.8x): its own row.
      {.figure = "whole stack 1 MiB one-way GB/s vs memcpy",
       .subject = "api-default",
       .baseline = "memcpy",
       .pattern = Pattern::kOneWay,
       .size = 1 << 20,
       .metric = Metric::kGigabytesPerSecond},
      {.figure = "whole stack 64 KiB one-way GB/s vs Unix stream",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kOneWay,
       .size = 65536,
       .metric = Metric::kGigabytesPerSecond},
      {.figure = "whole stack busy-poll 64 KiB round trip vs Ring",
       .subject = "api-busy",
       .baseline = "ring-busy",
       .pattern = Pattern::kRoundTrip,
       .size = 65536,
       .metric = Metric::kTripTime},
      {.figure = "whole stack default-mode 64 KiB round trip vs Unix",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kRoundTrip,
       .size = 65536,
       .metric = Metric::kTripTime},
      {.figure = "whole stack blocking 64 KiB round trip vs eventfd",
       .subject = "api-blocking",
       .baseline = "eventfd",
       .pattern = Pattern::kRoundTrip,
       .size = 65536,
       .metric = Metric::kTripTime},
      {.figure = "whole stack default-mode 1 MiB round trip vs Unix",
       .subject = "api-default",
       .baseline = "unix-stream",
       .pattern = Pattern::kRoundTrip,
       .size = 1 << 20,
       .metric = Metric::kTripTime},
      {.figure = "whole stack blocking 1 MiB round trip vs eventfd",
       .subject = "api-blocking",
       .baseline = "eventfd",
       .pattern = Pattern::kRoundTrip,
       .size = 1 << 20,
       .metric = Metric::kTripTime},
      // Baseline against baseline: reported so a reader can see how the
      // machine behaved in this run.
      {.figure = "eventfd 64 B round trip vs cache line",
       .subject = "eventfd",
       .baseline = "cacheline",
       .pattern = Pattern::kRoundTrip,
       .size = 64,
       .metric = Metric::kTripTime},
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
