// The test side of shm_ring_peer, the helper process of the multi-process
// ring tests: what the parent sends it (a PeerConfig plus the segment's memfd
// over a SOCK_SEQPACKET socket, SCM_RIGHTS), what it answers (a PeerReport),
// and a launcher that fork+execs it.
#ifndef SHMPORTS_TESTS_MULTIPROCESS_RING_PEER_H_
#define SHMPORTS_TESTS_MULTIPROCESS_RING_PEER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "core/base/status.h"
#include "shm/ring.h"

namespace shmports::testing {

enum class PeerMode : uint32_t {
  kProduce = 1,       // Flood the ring, then report.
  kCrashProduce = 2,  // Flood forever, recording the committed count.
  kConsume = 3,       // Consume and check a flood (slowly, in bursts).
  kAttack = 4,        // ftruncate the segment, then punch holes into it.
  kMapOnly = 5,       // Map the segment and report Map's status.
};

// Sent by the parent with the memfd attached.
struct PeerConfig {
  PeerMode mode;
  uint32_t busy_poll;
  uint64_t seed;
  uint64_t frames;
  uint64_t segment_size;
  uint64_t ring_offset;  // Of the ring region within the segment.
  uint64_t capacity;
  uint64_t truth_offset;  // kCrashProduce: page holding the committed count.
  uint32_t max_size;
  uint32_t burst;
  uint32_t pause_us;
  uint32_t wait_ms;
  uint32_t drain_max;  // kConsume: frames per drain.
  uint32_t reserved;
};

// Sent back by the peer when it is done.
struct PeerReport {
  uint32_t code;            // StatusCode of the run.
  int32_t ftruncate_errno;  // kAttack: errno of the ftruncate attempt.
  shm::RingStats stats;
  char message[512];
};

// A launched peer: its pid and our end of the socket.
struct Peer {
  pid_t pid = -1;
  int sock = -1;
};

// fork+execs HelperPath("shm_ring_peer") and sends it `config` and `memfd`.
Result<Peer> LaunchPeer(const PeerConfig& config, int memfd);

// Waits up to `timeout` for the peer's report (kUnavailable on timeout).
Result<PeerReport> ReceiveReport(const Peer& peer,
                                 std::chrono::milliseconds timeout);

// Waits for the peer to exit (SIGKILLs it after `timeout`); returns the
// wait status. Closes the socket.
int ReapPeer(Peer* peer, std::chrono::milliseconds timeout);

// Socket helpers shared with the helper binary.
Status SendWithFd(int sock, const void* data, size_t size, int fd);
Status ReceiveWithFd(int sock, void* data, size_t size, int* fd);

}  // namespace shmports::testing

#endif  // SHMPORTS_TESTS_MULTIPROCESS_RING_PEER_H_
