#include "bench/harness/payload.h"

#include <cstring>

namespace shmports::bench {

uint64_t SumWords(const uint8_t* bytes, size_t size) {
  // Four accumulators so the loop vectorises; the sum is still every word.
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    uint64_t w[4];
    std::memcpy(w, bytes + i, sizeof(w));
    s0 += w[0];
    s1 += w[1];
    s2 += w[2];
    s3 += w[3];
  }
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes + i, 8);
    s0 += w;
  }
  if (i < size) {
    uint64_t w = 0;
    std::memcpy(&w, bytes + i, size - i);
    s1 += w;
  }
  return s0 + s1 + s2 + s3;
}

PayloadPattern::PayloadPattern(uint64_t seed, size_t size)
    : size_(size < kMinPayload ? kMinPayload : size) {
  const size_t span = (size_ + 4095) / 4096 * 4096 + 4096;
  storage_.resize(2 * span + 4096);
  const auto addr = reinterpret_cast<uintptr_t>(storage_.data());
  uint8_t* a = storage_.data() + ((4096 - (addr & 4095)) & 4095);
  uint8_t* b = a + span + 2048;
  // xorshift64*: cheap, and different seeds give different bodies.
  uint64_t x = seed | 1;
  for (size_t i = 0; i < size_; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    a[i] = static_cast<uint8_t>((x * 0x2545F4914F6CDD1DULL) >> 56);
  }
  std::memcpy(b, a, size_);
  copies_[0] = a;
  copies_[1] = b;
  body_sum_ = SumWords(a + kMinPayload, size_ - kMinPayload);
}

void PayloadPattern::Write(std::span<uint8_t> dst, uint64_t seq) const {
  const uintptr_t distance = (reinterpret_cast<uintptr_t>(dst.data()) -
                              reinterpret_cast<uintptr_t>(copies_[0])) &
                             4095;
  const uint8_t* src = copies_[distance < 64 ? 1 : 0];
  std::memcpy(dst.data() + kMinPayload, src + kMinPayload, size_ - kMinPayload);
  std::memcpy(dst.data(), &seq, sizeof(seq));
}

bool PayloadPattern::Verify(std::span<const uint8_t> src, uint64_t* seq) const {
  // The stamp is read even from a message of the wrong size, so that a
  // stop message still stops the receiver.
  *seq = 0;
  if (src.size() >= sizeof(*seq))
    std::memcpy(seq, src.data(), sizeof(*seq));
  if (src.size() != size_)
    return false;
  return SumWords(src.data() + kMinPayload, src.size() - kMinPayload) ==
         body_sum_;
}

}  // namespace shmports::bench
