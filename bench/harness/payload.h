// The payload every subject carries: the sender writes every byte of every
// message and the receiver reads every byte, so no subject can win by
// moving untouched buffers.
//
// Message `seq` of size n (n >= 8) is a fixed pseudo-random body, chosen by
// the trial's seed, with `seq` stamped into its first 8 bytes (host order: both
// ends run on one machine). The receiver sums the body as 64-bit words (every
// byte is loaded) and compares the sum with the one the seed implies; it checks
// `seq` against the order it expects. Writing is a memcpy of the body plus the
// stamp, so the sender's cost is that of filling the message once.
//
// Thread-compatible: const methods may be called from any thread.
#ifndef SHMPORTS_BENCH_HARNESS_PAYLOAD_H_
#define SHMPORTS_BENCH_HARNESS_PAYLOAD_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace shmports::bench {

// The sequence number that ends a trial: the receiver stops after it.
inline constexpr uint64_t kStopSeq = ~uint64_t{0};

// The smallest payload: the stamp itself.
inline constexpr size_t kMinPayload = 8;

class PayloadPattern {
 public:
  // Precondition: size >= kMinPayload.
  PayloadPattern(uint64_t seed, size_t size);

  size_t size() const { return size_; }

  // Writes message `seq` into `dst`. Precondition: dst.size() == size().
  void Write(std::span<uint8_t> dst, uint64_t seq) const;

  // Reads every byte of `src`; stores the stamped sequence number in `*seq`
  // and returns whether the size and the body are right.
  bool Verify(std::span<const uint8_t> src, uint64_t* seq) const;

 private:
  // Two copies of the message, page-aligned and 2 KiB past a page: Write
  // copies from the one whose distance to the destination is not 1..63
  // bytes mod 4096. glibc 2.36's memcpy (rep movsb) on this AMD host runs
  // ~20x slower at those distances, and a writer that generated the bytes
  // in place would not pay for that accident.
  size_t size_;
  std::vector<uint8_t> storage_;
  const uint8_t* copies_[2];
  uint64_t body_sum_ = 0;
};

// Sum of `bytes` as 64-bit words in host order (a short tail is zero-padded).
uint64_t SumWords(const uint8_t* bytes, size_t size);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_PAYLOAD_H_
