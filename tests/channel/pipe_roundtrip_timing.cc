// A 64 B round trip between two Processes in this OS process, through the
// public Pipe, in each waiting mode: a timing loop for measuring the
// consumer token by hand (not a test; speed is never asserted in tests).
//
//   build-x/tests/channel/pipe_roundtrip_timing [iterations]
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "channel/api/testing.h"

namespace {

using shmports::Pipe;
using shmports::WaitMode;

const char* ModeName(WaitMode mode) {
  switch (mode) {
    case WaitMode::kDefault:
      return "default";
    case WaitMode::kBusyPoll:
      return "busy-poll";
    case WaitMode::kBlocking:
      return "blocking";
  }
  return "?";
}

int RunMode(WaitMode mode, int iterations) {
  auto connected = shmports::testing::ConnectProcessesForTesting();
  if (!connected.ok()) {
    std::fprintf(stderr, "connect: %s\n",
                 connected.status().ToString().c_str());
    return 1;
  }
  const std::vector<uint8_t> payload(64, 0x5a);
  const auto timeout = std::chrono::seconds(30);
  Pipe& a = connected->a_end;
  Pipe& b = connected->b_end;
  bool echo_ok = true;
  std::thread echo([&] {
    for (int i = 0; i < iterations + 100; ++i) {
      auto m = b.Receive(timeout, mode);
      if (!m.ok() || !b.Send(m->bytes).ok()) {
        echo_ok = false;
        return;
      }
    }
  });
  std::chrono::steady_clock::time_point start;
  for (int i = 0; i < iterations + 100; ++i) {
    if (i == 100)  // Warm-up done.
      start = std::chrono::steady_clock::now();
    if (!a.Send(payload).ok() || !a.Receive(timeout, mode).ok()) {
      std::fprintf(stderr, "%s: round trip %d failed\n", ModeName(mode), i);
      echo.join();
      return 1;
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  echo.join();
  if (!echo_ok)
    return 1;
  std::printf(
      "%-9s 64 B round trip: %8.2f us (%d iterations)\n", ModeName(mode),
      std::chrono::duration<double, std::micro>(elapsed).count() / iterations,
      iterations);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  int rc = 0;
  for (WaitMode mode :
       {WaitMode::kBlocking, WaitMode::kDefault, WaitMode::kBusyPoll})
    rc |= RunMode(mode, iterations);
  return rc;
}
