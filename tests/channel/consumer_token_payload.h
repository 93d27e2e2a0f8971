// Payloads of the consumer-token multiprocess test: message i is checkable
// from i alone. Every `large_every`-th message (0: none) is 300 KiB, past the
// ring's largest frame, so it travels as fragments.
#ifndef SHMPORTS_TESTS_CHANNEL_CONSUMER_TOKEN_PAYLOAD_H_
#define SHMPORTS_TESTS_CHANNEL_CONSUMER_TOKEN_PAYLOAD_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shmports::testing {

inline std::vector<uint8_t> TokenPayload(uint64_t i, uint64_t large_every) {
  const size_t size = large_every != 0 && i % large_every == large_every - 1
                          ? 300 * 1024
                          : 8 + i % 120;
  std::vector<uint8_t> bytes(size);
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
  for (size_t k = 0; k < size; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[k] = static_cast<uint8_t>(x);
  }
  return bytes;
}

}  // namespace shmports::testing

#endif  // SHMPORTS_TESTS_CHANNEL_CONSUMER_TOKEN_PAYLOAD_H_
