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

uint32_t FloodChecksum(std::span<const uint8_t> payload) {
  uint64_t sum = 0x12345678;
  size_t i = 12;
  for (; i + 8 <= payload.size(); i += 8) {
    uint64_t w;
    memcpy(&w, payload.data() + i, 8);
    sum = (sum ^ w) * 0x100000001b3ull;
  }
  for (; i < payload.size(); ++i)
    sum = (sum ^ payload[i]) * 0x100000001b3ull;
  return static_cast<uint32_t>(sum ^ (sum >> 32));
}

void FillFloodFrame(uint64_t seed, uint64_t seq, std::span<uint8_t> out) {
  uint64_t base = Mix(seed + seq);
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    uint64_t w = base + i * 0x9e3779b97f4a7c15ull;
    memcpy(out.data() + i, &w, 8);
  }
  for (; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(base >> (i % 8));
  if (out.size() >= 8)
    memcpy(out.data(), &seq, 8);
  if (out.size() >= 12) {
    uint32_t sum = FloodChecksum(out);
    memcpy(out.data() + 8, &sum, 4);
  }
}

bool FloodChecker::Check(uint16_t kind, std::span<const uint8_t> payload) {
  if (!error_.empty())
    return false;
  uint64_t seq = next_++;
  uint32_t size = FloodFrameSize(seed_, seq, max_size_);
  if (kind != kFloodKind) {
    error_ = StrFormat("frame %llu: kind %u, expected %u",
                       static_cast<unsigned long long>(seq), kind, kFloodKind);
    return false;
  }
  if (payload.size() != size) {
    error_ = StrFormat(
        "frame %llu: %zu bytes, expected %u (dropped, "
        "duplicated or reordered frame?)",
        static_cast<unsigned long long>(seq), payload.size(), size);
    return false;
  }
  if (size >= 8) {
    uint64_t got;
    memcpy(&got, payload.data(), 8);
    if (got != seq) {
      error_ = StrFormat("frame %llu: carries sequence number %llu",
                         static_cast<unsigned long long>(seq),
                         static_cast<unsigned long long>(got));
      return false;
    }
  }
  if (size >= 12) {
    uint32_t sum;
    memcpy(&sum, payload.data() + 8, 4);
    if (sum != FloodChecksum(payload)) {
      error_ = StrFormat("frame %llu: checksum mismatch",
                         static_cast<unsigned long long>(seq));
      return false;
    }
  }
  expected_.resize(size);
  FillFloodFrame(seed_, seq, expected_);
  if (size != 0 && memcmp(expected_.data(), payload.data(), size) != 0) {
    error_ = StrFormat("frame %llu: content differs from the pattern",
                       static_cast<unsigned long long>(seq));
    return false;
  }
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
