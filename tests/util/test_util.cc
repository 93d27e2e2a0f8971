#include "tests/util/test_util.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <thread>

#include "core/base/random.h"
#include "core/base/str_format.h"

namespace shmports::testing {

double TestScale() {
  const char* env = getenv("SHMPORTS_TEST_SCALE");
  if (env == nullptr || *env == '\0')
    return 1.0;
  char* end = nullptr;
  double v = strtod(env, &end);
  if (end == env || *end != '\0' || !(v > 0.0) || v > 1000.0)
    return 1.0;
  return v;
}

uint64_t Scaled(uint64_t n, uint64_t at_least) {
  auto v = static_cast<uint64_t>(static_cast<double>(n) * TestScale());
  return v < at_least ? at_least : v;
}

uint64_t TestSeed() {
  const char* env = getenv("SHMPORTS_TEST_SEED");
  if (env != nullptr && *env != '\0')
    return strtoull(env, nullptr, 0);
  return RandomU64();
}

std::string SeedTrace(uint64_t seed) {
  return StrFormat("seed %llu (replay: SHMPORTS_TEST_SEED=%llu)",
                   static_cast<unsigned long long>(seed),
                   static_cast<unsigned long long>(seed));
}

bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout) {
  Deadline deadline = Deadline::In(timeout);
  auto pause = std::chrono::microseconds(10);
  while (!condition()) {
    if (deadline.Expired())
      return condition();
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(5))
      pause *= 2;
  }
  return true;
}

std::string HelperPath(const std::string& name) {
  const char* dir = getenv("SHMPORTS_HELPER_DIR");
  if (dir != nullptr && *dir != '\0')
    return std::string(dir) + "/" + name;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return name;
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + name;
}

}  // namespace shmports::testing
