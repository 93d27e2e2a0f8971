// Frames for flood tests: sizes and contents derived from (seed, sequence
// number), so a checker on the other side of a ring (another thread or
// another process) can verify order and every byte without being told
// anything but the seed.
//
// Payload of frame `seq` (length L = FloodFrameSize(seed, seq, max)), when
// L >= 16:
//   [0, 8)   seq
//   [8, 12)  checksum of bytes [16, L)
//   [12, 16) L
//   [16, L)  a pattern of (seed, seq, offset)
// Shorter frames hold pattern bytes, with seq in [0, 8) when L >= 8.
// A dropped, duplicated or reordered frame changes the expected length or
// seq; a flipped byte breaks the checksum or the pattern.
#ifndef SHMPORTS_TESTS_SHM_FLOOD_FRAMES_H_
#define SHMPORTS_TESTS_SHM_FLOOD_FRAMES_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "shm/ring.h"

namespace shmports::testing {

inline constexpr uint16_t kFloodKind = 16;

// Length of frame `seq`, uniform in [0, max_size].
uint32_t FloodFrameSize(uint64_t seed, uint64_t seq, uint32_t max_size);

// Writes frame `seq` into `out` (its length is the frame's length).
void FillFloodFrame(uint64_t seed, uint64_t seq, std::span<uint8_t> out);

// Checksum stored at [8, 12) for a payload of at least 16 bytes.
uint32_t FloodChecksum(std::span<const uint8_t> payload);

// Verifies frames in order. Not thread-safe; one per consumer.
class FloodChecker {
 public:
  FloodChecker(uint64_t seed, uint32_t max_size)
      : seed_(seed), max_size_(max_size) {}

  // Checks the next frame. Returns false (and keeps the first error) if it is
  // not exactly frame next() of the flood.
  bool Check(uint16_t kind, std::span<const uint8_t> payload);

  uint64_t next() const { return next_; }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  uint64_t seed_;
  uint32_t max_size_;
  uint64_t next_ = 0;
  std::string error_;
  std::vector<uint8_t> expected_;
};

// How a flood is driven.
struct FloodOptions {
  uint64_t seed = 1;
  uint64_t frames = 1000;
  uint32_t max_size = 4096;
  uint16_t flags = 0;  // Stamped on every frame (producer id).
  // Busy-poll instead of WaitForData/WaitForSpace when empty/full.
  bool busy_poll = false;
  // Bursty producer: after a burst of 1..burst frames, pause 0..pause_us
  // microseconds. 0 means no pauses.
  uint32_t burst = 0;
  uint32_t pause_us = 0;
  // Longest any single wait may take; a lost wake-up fails by this deadline.
  uint32_t wait_ms = 30000;
  // Called after each Commit with the number of frames committed so far.
  std::function<void(uint64_t)> on_commit;
};

// Produces `options.frames` flood frames into `ring`. Returns the first
// error, or kUnavailable if a wait for space reached its deadline.
Status ProduceFlood(shm::Ring& ring, const FloodOptions& options);

// Consumes and checks `options.frames` frames from `ring` (single producer).
Status ConsumeFlood(shm::Ring& ring, const FloodOptions& options);

}  // namespace shmports::testing

#endif  // SHMPORTS_TESTS_SHM_FLOOD_FRAMES_H_
