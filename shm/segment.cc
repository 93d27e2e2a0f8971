#include "shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/detail/os_file_functions.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include "core/base/str_format.h"

namespace shmports::shm {
namespace {

namespace bip = boost::interprocess;

static_assert(kRequiredSeals == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));

// F_SEAL_EXEC (Linux 6.3) is missing from Debian 12's headers. The kernel adds
// it by itself to memfds under vm.memfd_noexec, so a receiver tolerates it.
constexpr int kSealExec = 0x0020;

// What Boost.Interprocess needs to map a memfd: its file_mapping does the
// same for files. is_xsi must be false, or mapped_region takes the SysV path
// (shmat) with our fd as a shm id.
class MemfdMappable {
 public:
  explicit MemfdMappable(int fd) : fd_(fd) {}
  bip::mapping_handle_t get_mapping_handle() const {
    bip::mapping_handle_t handle;
    handle.handle = fd_;
    handle.is_xsi = false;
    return handle;
  }

 private:
  int fd_;
};

std::string SealNames(int seals) {
  std::string out;
  auto add = [&](int bit, const char* name) {
    if ((seals & bit) == 0)
      return;
    if (!out.empty())
      out += ", ";
    out += name;
  };
  add(F_SEAL_SHRINK, "F_SEAL_SHRINK");
  add(F_SEAL_GROW, "F_SEAL_GROW");
  add(F_SEAL_SEAL, "F_SEAL_SEAL");
  add(F_SEAL_WRITE, "F_SEAL_WRITE");
  add(F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE");
  add(kSealExec, "F_SEAL_EXEC");
  return out.empty() ? "none" : out;
}

Status CheckSizeArgument(size_t size) {
  long page = sysconf(_SC_PAGESIZE);
  if (page != static_cast<long>(kSegmentPageSize)) {
    return FailedPreconditionError(StrFormat(
        "page size is %ld; shm/ layouts assume %zu", page, kSegmentPageSize));
  }
  if (size <= kSegmentHeaderSize || size % kSegmentPageSize != 0) {
    return InvalidArgumentError(StrFormat(
        "segment size %zu must be a multiple of %zu larger than the %zu-byte "
        "header",
        size, kSegmentPageSize, kSegmentHeaderSize));
  }
  return Status::Ok();
}

}  // namespace

struct Segment::Mapping {
  bip::mapped_region region;
};

namespace {

// Maps `size` bytes of `fd` read-write and shared. Boost reports failures by
// exception; they stop here.
Result<std::unique_ptr<Segment::Mapping>> MapShared(int fd, size_t size) {
  try {
    auto mapping = std::make_unique<Segment::Mapping>();
    mapping->region = bip::mapped_region(MemfdMappable(fd), bip::read_write,
                                         /*offset=*/0, size);
    return mapping;
  } catch (const bip::interprocess_exception& e) {
    int err = e.get_native_error();
    return ResourceExhaustedError(StrFormat(
        "mmap of %zu bytes failed: %s (%s; likely cause: address space, "
        "vm.max_map_count or memory limits)",
        size, e.what(), err != 0 ? ErrnoText(err).c_str() : "no errno"));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory allocating the mapping");
  } catch (const std::exception& e) {
    return InternalError(StrFormat("mapping %zu bytes: %s", size, e.what()));
  }
}

}  // namespace

Segment::Segment(int fd, size_t size, std::unique_ptr<Mapping> mapping)
    : fd_(fd),
      size_(size),
      base_(static_cast<uint8_t*>(mapping->region.get_address())),
      mapping_(std::move(mapping)) {}

Segment::Segment(Segment&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      size_(std::exchange(other.size_, 0)),
      base_(std::exchange(other.base_, nullptr)),
      creator_pid_(std::exchange(other.creator_pid_, 0)),
      mapping_(std::move(other.mapping_)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    mapping_.reset();
    if (fd_ >= 0)
      close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = std::exchange(other.size_, 0);
    base_ = std::exchange(other.base_, nullptr);
    creator_pid_ = std::exchange(other.creator_pid_, 0);
    mapping_ = std::move(other.mapping_);
  }
  return *this;
}

Segment::~Segment() {
  mapping_.reset();  // Unmaps; Boost's destructor does not throw.
  if (fd_ >= 0)
    close(fd_);
}

Result<Segment> Segment::Create(size_t size, const char* debug_name) {
  SHMPORTS_RETURN_IF_ERROR(CheckSizeArgument(size));
  int fd = memfd_create(debug_name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    int err = errno;
    return ResourceExhaustedError(StrFormat(
        "memfd_create(\"%s\") failed: %s (likely cause: the open-file limit, "
        "RLIMIT_NOFILE or fs.file-max)",
        debug_name, ErrnoText(err).c_str()));
  }
  auto fail = [fd](Status status) {
    close(fd);
    return status;
  };
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    return fail(ResourceExhaustedError(
        StrFormat("ftruncate of memfd to %zu bytes failed: %s", size,
                  ErrnoText(err).c_str())));
  }
  // Allocate every page now: a memfd that runs out of memory on first touch
  // raises SIGBUS instead of returning an error.
  if (fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
    int err = errno;
    return fail(ResourceExhaustedError(StrFormat(
        "allocating %zu bytes of shared memory failed: %s (likely cause: "
        "memory cgroup limit or low memory)",
        size, ErrnoText(err).c_str())));
  }
  auto mapping = MapShared(fd, size);
  if (!mapping.ok()) {
    return fail(std::move(mapping).TakeStatus().WithContext("map new segment"));
  }
  Segment segment(fd, size, std::move(mapping).value());
  SegmentHeader header = {};
  header.magic = kSegmentMagic;
  header.layout_version = kSegmentLayoutVersion;
  header.header_size = kSegmentHeaderSize;
  header.size = size;
  header.creator_pid = static_cast<uint32_t>(getpid());
  memcpy(segment.base_, &header, sizeof(header));
  segment.creator_pid_ = getpid();
  if (fcntl(fd, F_ADD_SEALS, kRequiredSeals) != 0) {
    int err = errno;
    return InternalError(StrFormat("sealing memfd (F_ADD_SEALS %s) failed: %s",
                                   SealNames(kRequiredSeals).c_str(),
                                   ErrnoText(err).c_str()));
  }
  return segment;
}

Status Segment::CheckSealsAndSize(int fd, size_t expected_size) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    return InvalidArgumentError(StrFormat("fstat of segment fd %d failed: %s",
                                          fd, ErrnoText(err).c_str()));
  }
  if (!S_ISREG(st.st_mode)) {
    return ProtocolViolationError(
        StrFormat("segment fd %d is not a memfd (file type 0%o)", fd,
                  static_cast<unsigned>(st.st_mode & S_IFMT)));
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    int err = errno;
    return ProtocolViolationError(StrFormat(
        "segment fd %d has no seals: F_GET_SEALS failed: %s (likely cause: "
        "the peer sent a regular file, not a memfd)",
        fd, ErrnoText(err).c_str()));
  }
  int missing = kRequiredSeals & ~seals;
  if (missing != 0) {
    return ProtocolViolationError(StrFormat(
        "segment refused: seals missing (%s; has %s). Likely cause: the peer "
        "did not seal it, or made it with shm_open or memfd_create without "
        "MFD_ALLOW_SEALING; an unsealed segment could be truncated under us",
        SealNames(missing).c_str(), SealNames(seals).c_str()));
  }
  int extra = seals & ~(kRequiredSeals | kSealExec);
  if (extra != 0) {
    return ProtocolViolationError(StrFormat(
        "segment refused: unexpected seals %s (the ring must stay writable)",
        SealNames(extra).c_str()));
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) != expected_size) {
    return ProtocolViolationError(StrFormat(
        "segment refused: size is %lld bytes, the handshake announced %zu",
        static_cast<long long>(st.st_size), expected_size));
  }
  return Status::Ok();
}

Result<Segment> Segment::Map(int fd, size_t expected_size) {
  Status status = CheckSizeArgument(expected_size);
  if (status.ok())
    status = CheckSealsAndSize(fd, expected_size);
  if (!status.ok()) {
    if (fd >= 0)
      close(fd);
    return std::move(status).WithContext("map segment");
  }
  auto mapping = MapShared(fd, expected_size);
  if (!mapping.ok()) {
    close(fd);
    return std::move(mapping).TakeStatus().WithContext("map segment");
  }
  Segment segment(fd, expected_size, std::move(mapping).value());
  SegmentHeader header;
  memcpy(&header, segment.base_, sizeof(header));
  if (header.magic != kSegmentMagic) {
    return CorruptError(
        StrFormat("map segment: bad magic 0x%016llx",
                  static_cast<unsigned long long>(header.magic)));
  }
  if (header.layout_version != kSegmentLayoutVersion) {
    return CorruptError(
        StrFormat("map segment: layout version %u, this build reads %u",
                  header.layout_version, kSegmentLayoutVersion));
  }
  if (header.header_size != kSegmentHeaderSize ||
      header.size != expected_size) {
    return CorruptError(StrFormat(
        "map segment: header says %llu bytes (header %u), fstat says %zu",
        static_cast<unsigned long long>(header.size), header.header_size,
        expected_size));
  }
  segment.creator_pid_ = static_cast<pid_t>(header.creator_pid);
  return segment;
}

Result<std::span<uint8_t>> Segment::Region(size_t offset, size_t length) const {
  if (offset < kSegmentHeaderSize || offset % kSegmentPageSize != 0 ||
      offset > size_ || length > size_ - offset) {
    return InvalidArgumentError(StrFormat(
        "region [%zu, +%zu) is not a page-aligned range past the header of "
        "this %zu-byte segment",
        offset, length, size_));
  }
  return std::span<uint8_t>(base_ + offset, length);
}

}  // namespace shmports::shm
