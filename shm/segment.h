// Segment: a sealed, nameless shared-memory object (a memfd) mapped into this
// process, with a SegmentHeader at offset 0.
//
// The creating process makes the memfd with MFD_CLOEXEC | MFD_ALLOW_SEALING,
// sizes it, writes the header, seals it F_SEAL_SHRINK | F_SEAL_GROW |
// F_SEAL_SEAL and sends fd() to its peer with SCM_RIGHTS. The receiving
// process calls Segment::Map, which refuses the fd unless exactly those seals
// are set (F_SEAL_EXEC, which the kernel may add by itself, is tolerated) and
// the size is exactly what the handshake announced: an unsealed object could
// be truncated under us, turning every access into SIGBUS. Having no name,
// the object leaves nothing in /dev/shm when a process dies.
//
// A peer can still punch holes (fallocate PUNCH_HOLE) in a sealed memfd; the
// pages then read as zeros, which every reader of shared memory in shm/
// treats as empty or kCorrupt.
//
// Mapping goes through Boost.Interprocess mapped_region; its exceptions are
// caught here and never leave shm/.
//
// Thread-safety: a Segment is a value owned by one thread at a time; the
// memory it maps is shared and follows the rules of whatever lives in it
// (see shm/ring.h).
#ifndef SHMPORTS_SHM_SEGMENT_H_
#define SHMPORTS_SHM_SEGMENT_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>

#include "core/base/status.h"

namespace shmports::shm {

inline constexpr uint64_t kSegmentMagic = 0x47455354524f504dull;  // "MPORTSEG"
inline constexpr uint32_t kSegmentLayoutVersion = 1;
inline constexpr size_t kSegmentPageSize = 4096;
// The header occupies the first page; regions start after it.
inline constexpr size_t kSegmentHeaderSize = kSegmentPageSize;

// At offset 0 of every segment. Written once by the creator before sealing;
// the receiver copies it out and checks magic, version and size.
struct SegmentHeader {
  uint64_t magic;           // kSegmentMagic.
  uint32_t layout_version;  // kSegmentLayoutVersion.
  uint32_t header_size;     // kSegmentHeaderSize.
  uint64_t size;            // Total bytes of the memfd.
  uint32_t creator_pid;     // Informational only: never trusted.
  uint32_t reserved0;
  uint64_t reserved[12];
};
static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(std::is_trivially_copyable_v<SegmentHeader>);
static_assert(sizeof(SegmentHeader) == 128);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, layout_version) == 8);
static_assert(offsetof(SegmentHeader, header_size) == 12);
static_assert(offsetof(SegmentHeader, size) == 16);
static_assert(offsetof(SegmentHeader, creator_pid) == 24);

// The seals a receiver requires.
inline constexpr int kRequiredSeals =
    0x0002 | 0x0004 | 0x0001;  // SHRINK|GROW|SEAL

class Segment {
 public:
  // Creates, sizes, initialises the header of, seals and maps a new memfd of
  // `size` bytes (a multiple of the page size, more than the header).
  // `debug_name` shows in /proc/<pid>/fd and /proc/<pid>/maps only.
  static Result<Segment> Create(size_t size,
                                const char* debug_name = "shmports");

  // Checks and maps a segment received from a peer. Takes ownership of `fd`
  // (closed on failure too). Refused unless the seals are exactly
  // kRequiredSeals (plus F_SEAL_EXEC), fstat's size is `expected_size`, and
  // the header's magic, version and size agree: kCorrupt or
  // kInvalidArgument naming what is missing and the likely cause.
  static Result<Segment> Map(int fd, size_t expected_size);

  // The seal and size check of Map alone; `fd` stays the caller's.
  static Status CheckSealsAndSize(int fd, size_t expected_size);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();  // Unmaps and closes the fd.

  // The memfd, owned by this Segment. dup() it to keep it past the Segment;
  // pass it (it is O_CLOEXEC) to a peer with SCM_RIGHTS.
  int fd() const { return fd_; }
  size_t size() const { return size_; }
  uint8_t* base() const { return base_; }
  // Creator pid from the header as read at Map time (untrusted).
  pid_t creator_pid() const { return creator_pid_; }

  // `length` bytes at `offset` (page-aligned, past the header), or
  // kInvalidArgument if they do not lie inside the segment.
  Result<std::span<uint8_t>> Region(size_t offset, size_t length) const;

  // Opaque: holds the boost::interprocess::mapped_region (segment.cc).
  struct Mapping;

 private:
  Segment(int fd, size_t size, std::unique_ptr<Mapping> mapping);

  int fd_ = -1;
  size_t size_ = 0;
  uint8_t* base_ = nullptr;
  pid_t creator_pid_ = 0;
  std::unique_ptr<Mapping> mapping_;
};

}  // namespace shmports::shm

#endif  // SHMPORTS_SHM_SEGMENT_H_
