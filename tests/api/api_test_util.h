// Helpers of the public-API tests: deterministic payloads checkable from
// (seed, index) alone.
#ifndef SHMPORTS_TESTS_API_API_TEST_UTIL_H_
#define SHMPORTS_TESTS_API_API_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shmports::testing {

inline std::vector<uint8_t> Payload(uint64_t seed,
                                    uint64_t index,
                                    size_t size) {
  std::vector<uint8_t> bytes(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + index + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[i] = static_cast<uint8_t>(x);
  }
  return bytes;
}

}  // namespace shmports::testing

#endif  // SHMPORTS_TESTS_API_API_TEST_UTIL_H_
