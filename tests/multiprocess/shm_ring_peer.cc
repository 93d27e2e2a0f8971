// shm_ring_peer: the other process of the multi-process ring tests. Started
// by LaunchPeer with its socket on fd 3; receives a PeerConfig and the
// segment's memfd, maps it as a real peer would (Segment::Map checks seals
// and size), attaches to the ring and plays its part. Reports with a
// PeerReport; exits 0 when the part succeeded.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "core/base/str_format.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "tests/multiprocess/ring_peer.h"
#include "tests/shm/flood_frames.h"

namespace shmports::testing {
namespace {

FloodOptions OptionsFrom(const PeerConfig& config) {
  FloodOptions options;
  options.seed = config.seed;
  options.frames = config.frames;
  options.max_size = config.max_size;
  options.busy_poll = config.busy_poll != 0;
  options.burst = config.burst;
  options.pause_us = config.pause_us;
  options.wait_ms = config.wait_ms;
  return options;
}

// A slow consumer: drains at most drain_max frames at a time and pauses, so
// the producer keeps filling the ring and sleeping for space.
Status ConsumeSlowly(shm::Ring& ring, const PeerConfig& config) {
  FloodChecker checker(config.seed, config.max_size);
  std::mt19937_64 rng(config.seed);
  while (checker.next() < config.frames) {
    auto n = ring.Drain(
        [&](const shm::FrameView& f) { checker.Check(f.kind, f.payload); },
        config.drain_max != 0 ? config.drain_max : SIZE_MAX);
    if (!n.ok())
      return n.status();
    if (!checker.ok())
      return InternalError(checker.error());
    if (*n == 0) {
      SHMPORTS_RETURN_IF_ERROR(ring.WaitForData(
          Deadline::In(std::chrono::milliseconds(config.wait_ms))));
    } else if (config.pause_us != 0 && rng() % 8 == 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(rng() % config.pause_us));
    }
  }
  return Status::Ok();
}

// Tries what a hostile peer can do to a sealed segment: truncating fails;
// punching holes succeeds and must not hurt the survivor.
Status Attack(int fd, const PeerConfig& config, PeerReport* report) {
  report->ftruncate_errno = ftruncate(fd, 0) == 0 ? 0 : errno;
  std::mt19937_64 rng(config.seed);
  uint64_t pages = (shm::kRingControlSize + config.capacity) / 4096;
  for (uint64_t i = 0; i < config.frames; ++i) {
    uint64_t page = rng() % pages;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(config.ring_offset + page * 4096),
                  4096) != 0) {
      return InternalError("fallocate(PUNCH_HOLE): " + ErrnoText(errno));
    }
    if (config.pause_us != 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(rng() % config.pause_us));
    }
  }
  return Status::Ok();
}

Status Run(const PeerConfig& config, int fd, PeerReport* report) {
  int attack_fd = config.mode == PeerMode::kAttack ? dup(fd) : -1;
  auto segment = shm::Segment::Map(fd, config.segment_size);
  if (!segment.ok())
    return segment.status();
  if (config.mode == PeerMode::kMapOnly)
    return Status::Ok();
  if (config.mode == PeerMode::kAttack) {
    Status s = Attack(attack_fd, config, report);
    close(attack_fd);
    return s;
  }
  SHMPORTS_ASSIGN_OR_RETURN(
      std::span<uint8_t> region,
      segment->Region(config.ring_offset,
                      shm::Ring::RegionSize(config.capacity)));
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<shm::Ring> ring,
      shm::Ring::Attach(region, shm::RingOptions{.capacity = config.capacity}));
  FloodOptions options = OptionsFrom(config);
  Status status;
  switch (config.mode) {
    case PeerMode::kProduce:
      status = ProduceFlood(*ring, options);
      break;
    case PeerMode::kCrashProduce: {
      SHMPORTS_ASSIGN_OR_RETURN(std::span<uint8_t> truth,
                                segment->Region(config.truth_offset, 4096));
      auto* count = reinterpret_cast<uint64_t*>(truth.data());
      options.frames = UINT64_MAX;
      options.on_commit = [count](uint64_t committed) {
        // Pairs with the parent's acquire load after our death: it reads
        // at most one frame more than this count.
        std::atomic_ref<uint64_t>(*count).store(committed,
                                                std::memory_order_release);
      };
      status = ProduceFlood(*ring, options);
      break;
    }
    case PeerMode::kConsume:
      status = ConsumeSlowly(*ring, config);
      break;
    default:
      status = InvalidArgumentError("unknown mode");
  }
  report->stats = ring->stats();
  return status;
}

}  // namespace
}  // namespace shmports::testing

int main(int argc, char** argv) {
  using namespace shmports::testing;
  int sock = 3;
  if (argc > 1 && strncmp(argv[1], "--sock=", 7) == 0)
    sock = atoi(argv[1] + 7);
  PeerConfig config;
  int fd = -1;
  shmports::Status received = ReceiveWithFd(sock, &config, sizeof(config), &fd);
  if (!received.ok()) {
    fprintf(stderr, "shm_ring_peer: %s\n", received.ToString().c_str());
    return 2;
  }
  PeerReport report = {};
  shmports::Status status = Run(config, fd, &report);
  report.code = static_cast<uint32_t>(status.code());
  snprintf(report.message, sizeof(report.message), "%s",
           status.ToString().c_str());
  shmports::Status sent = SendWithFd(sock, &report, sizeof(report), -1);
  if (!status.ok())
    fprintf(stderr, "shm_ring_peer: %s\n", report.message);
  return status.ok() && sent.ok() ? 0 : 1;
}
