#include "tests/shm/flood_frames.h"

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "core/base/str_format.h"

namespace shmports::testing {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

uint32_t FloodFrameSize(uint64_t seed, uint64_t seq, uint32_t max_size) {
  return static_cast<uint32_t>(Mix(seed ^ Mix(seq)) % (uint64_t{max_size} + 1));
}

namespace {

constexpr size_t kBodyOffset = 16;

uint64_t PatternBase(uint64_t seed, uint64_t seq) {
  return Mix(seed + seq);
}

uint64_t PatternWord(uint64_t base, size_t offset) {
  return base + offset * 0x9e3779b97f4a7c15ull;
}

uint64_t ChecksumStep(uint64_t sum, uint64_t word) {
  return (sum ^ word) * 0x100000001b3ull;
}

uint32_t Fold(uint64_t sum) {
  return static_cast<uint32_t>(sum ^ (sum >> 32));
}

// Frames below kBodyOffset bytes: the pattern bytes, then the seq where it
// fits. Small enough to regenerate and compare.
void FillTiny(uint64_t seed, uint64_t seq, std::span<uint8_t> out) {
  uint64_t base = PatternBase(seed, seq);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(base >> (8 * (i % 8)));
  }
  if (out.size() >= 8)
    memcpy(out.data(), &seq, 8);
}

}  // namespace

uint32_t FloodChecksum(std::span<const uint8_t> payload) {
  uint64_t sum = 0x12345678;
  size_t i = kBodyOffset;
  for (; i + 8 <= payload.size(); i += 8) {
    uint64_t w;
    memcpy(&w, payload.data() + i, 8);
    sum = ChecksumStep(sum, w);
  }
  for (; i < payload.size(); ++i)
    sum = ChecksumStep(sum, payload[i]);
  return Fold(sum);
}

// Layout for frames of at least 16 bytes: [0,8) seq, [8,12) checksum of
// [16, L), [12,16) length, [16, L) pattern words. One pass writes the
// pattern and the checksum; one pass on the consumer checks both.
void FillFloodFrame(uint64_t seed, uint64_t seq, std::span<uint8_t> out) {
  if (out.size() < kBodyOffset) {
    FillTiny(seed, seq, out);
    return;
  }
  uint64_t base = PatternBase(seed, seq);
  uint64_t sum = 0x12345678;
  size_t i = kBodyOffset;
  for (; i + 8 <= out.size(); i += 8) {
    uint64_t w = PatternWord(base, i);
    memcpy(out.data() + i, &w, 8);
    sum = ChecksumStep(sum, w);
  }
  for (; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(base >> (8 * (i % 8)));
    sum = ChecksumStep(sum, out[i]);
  }
  uint32_t checksum = Fold(sum);
  uint32_t length = static_cast<uint32_t>(out.size());
  memcpy(out.data(), &seq, 8);
  memcpy(out.data() + 8, &checksum, 4);
  memcpy(out.data() + 12, &length, 4);
}

bool FloodChecker::Check(uint16_t kind, std::span<const uint8_t> payload) {
  if (!error_.empty())
    return false;
  uint64_t seq = next_++;
  auto fail = [&](const char* what) {
    error_ =
        StrFormat("frame %llu (%zu bytes): %s",
                  static_cast<unsigned long long>(seq), payload.size(), what);
    return false;
  };
  if (kind != kFloodKind)
    return fail("wrong kind");
  uint32_t size = FloodFrameSize(seed_, seq, max_size_);
  if (payload.size() != size) {
    return fail("wrong length (dropped, duplicated or reordered frame?)");
  }
  if (size >= 8) {
    uint64_t got;
    memcpy(&got, payload.data(), 8);
    if (got != seq)
      return fail("wrong sequence number");
  }
  if (size < kBodyOffset) {
    expected_.resize(size);
    FillTiny(seed_, seq, expected_);
    if (size != 0 && memcmp(expected_.data(), payload.data(), size) != 0) {
      return fail("content differs from the pattern");
    }
    return true;
  }
  uint32_t checksum;
  uint32_t length;
  memcpy(&checksum, payload.data() + 8, 4);
  memcpy(&length, payload.data() + 12, 4);
  if (length != size)
    return fail("wrong length field");
  uint64_t base = PatternBase(seed_, seq);
  uint64_t sum = 0x12345678;
  bool pattern_ok = true;
  size_t i = kBodyOffset;
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    memcpy(&w, payload.data() + i, 8);
    pattern_ok &= w == PatternWord(base, i);
    sum = ChecksumStep(sum, w);
  }
  for (; i < size; ++i) {
    pattern_ok &= payload[i] == static_cast<uint8_t>(base >> (8 * (i % 8)));
    sum = ChecksumStep(sum, payload[i]);
  }
  if (Fold(sum) != checksum)
    return fail("checksum mismatch");
  if (!pattern_ok)
    return fail("content differs from the pattern");
  return true;
}

Status ProduceFlood(shm::Ring& ring, const FloodOptions& options) {
  std::mt19937_64 rng(options.seed ^ 0x5eed);
  uint64_t burst_left = 0;
  uint64_t spins = 0;
  for (uint64_t seq = 0; seq < options.frames; ++seq) {
    if (options.burst != 0) {
      if (burst_left == 0) {
        burst_left = 1 + rng() % options.burst;
        if (options.pause_us != 0) {
          std::this_thread::sleep_for(
              std::chrono::microseconds(rng() % options.pause_us));
        }
      }
      --burst_left;
    }
    uint32_t size = FloodFrameSize(options.seed, seq, options.max_size);
    std::span<uint8_t> payload;
    Status error;
    Deadline idle = Deadline::Infinite();
    while (!ring.Reserve(size, kFloodKind, options.flags, &payload, &error)) {
      if (!error.ok()) {
        return std::move(error).WithContext("reserve");
      }
      if (options.busy_poll) {
        if (idle.is_infinite()) {
          idle = Deadline::In(std::chrono::milliseconds(options.wait_ms));
        } else if (idle.Expired()) {
          return UnavailableError("ring stayed full");
        }
        // On an oversubscribed machine the consumer may not be running at
        // all: spinning then only delays it.
        if (++spins % 1024 == 0)
          std::this_thread::yield();
        continue;
      }
      SHMPORTS_RETURN_IF_ERROR(ring.WaitForSpace(
          size, Deadline::In(std::chrono::milliseconds(options.wait_ms))));
    }
    FillFloodFrame(options.seed, seq, payload);
    SHMPORTS_RETURN_IF_ERROR(ring.Commit());
    if (options.on_commit)
      options.on_commit(seq + 1);
  }
  return Status::Ok();
}

Status ConsumeFlood(shm::Ring& ring, const FloodOptions& options) {
  FloodChecker checker(options.seed, options.max_size);
  Deadline idle = Deadline::In(std::chrono::milliseconds(options.wait_ms));
  uint64_t spins = 0;
  while (checker.next() < options.frames) {
    auto got = ring.Drain([&](const shm::FrameView& frame) {
      checker.Check(frame.kind, frame.payload);
    });
    if (!got.ok())
      return std::move(got).TakeStatus().WithContext("drain");
    if (!checker.ok())
      return InternalError(checker.error());
    if (*got != 0) {
      if (options.busy_poll) {
        idle = Deadline::In(std::chrono::milliseconds(options.wait_ms));
      }
      continue;
    }
    if (options.busy_poll) {
      if (idle.Expired()) {
        return UnavailableError(StrFormat(
            "no frame %llu within %u ms of busy polling",
            static_cast<unsigned long long>(checker.next()), options.wait_ms));
      }
      if (++spins % 1024 == 0)
        std::this_thread::yield();
    } else {
      Status s = ring.WaitForData(
          Deadline::In(std::chrono::milliseconds(options.wait_ms)));
      if (!s.ok()) {
        return std::move(s).WithContext(
            StrFormat("waiting for frame %llu (lost wake-up?)",
                      static_cast<unsigned long long>(checker.next())));
      }
    }
  }
  if (checker.next() != options.frames) {
    return InternalError(
        StrFormat("received %llu frames, expected %llu",
                  static_cast<unsigned long long>(checker.next()),
                  static_cast<unsigned long long>(options.frames)));
  }
  return Status::Ok();
}

}  // namespace shmports::testing
