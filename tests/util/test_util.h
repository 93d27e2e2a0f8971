// Helpers shared by every test binary: the size scale, seeds, waiting on a
// condition with a deadline (never a sleep), and locating helper binaries.
#ifndef SHMPORTS_TESTS_UTIL_TEST_UTIL_H_
#define SHMPORTS_TESTS_UTIL_TEST_UTIL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "core/base/deadline.h"

namespace shmports::testing {

// SHMPORTS_TEST_SCALE from the environment: 1 in plain builds, 0.1 under
// sanitisers. Malformed or missing values mean 1.
double TestScale();

// `n` scaled, never below `at_least`.
uint64_t Scaled(uint64_t n, uint64_t at_least = 1);

// The seed of a randomised test: SHMPORTS_TEST_SEED if set (replay), else a
// fresh random one. Call once per test and log it with SeedTrace().
uint64_t TestSeed();

// Text for SCOPED_TRACE naming the seed and how to replay it.
std::string SeedTrace(uint64_t seed);

// Polls `condition` (with a short backoff) until it holds or `timeout`
// passes; returns whether it held. For conditions with no wake-up to wait on.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Absolute path of a helper binary built next to the tests: the directory in
// SHMPORTS_HELPER_DIR, else the directory of the running test binary.
std::string HelperPath(const std::string& name);

}  // namespace shmports::testing

#endif  // SHMPORTS_TESTS_UTIL_TEST_UTIL_H_
