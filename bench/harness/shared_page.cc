#include "bench/harness/shared_page.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

size_t RoundToPage(size_t size) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (size + page - 1) / page * page;
}

}  // namespace

Result<std::unique_ptr<SharedPage>> SharedPage::Create(const char* name,
                                                       size_t size) {
  size = RoundToPage(size == 0 ? 1 : size);
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) {
    return InternalError(
        StrFormat("memfd_create(%s): %s", name, ErrnoText(errno).c_str()));
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    return ResourceExhaustedError(
        StrFormat("ftruncate memfd %s to %zu bytes: %s", name, size,
                  ErrnoText(err).c_str()));
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    int err = errno;
    close(fd);
    return ResourceExhaustedError(StrFormat(
        "mmap %zu bytes of memfd %s: %s", size, name, ErrnoText(err).c_str()));
  }
  return std::unique_ptr<SharedPage>(new SharedPage(fd, data, size));
}

Result<std::unique_ptr<SharedPage>> SharedPage::Adopt(int fd, size_t size) {
  size = RoundToPage(size == 0 ? 1 : size);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return InvalidArgumentError(
        StrFormat("fstat inherited fd %d: %s", fd, ErrnoText(err).c_str()));
  }
  if (static_cast<size_t>(st.st_size) < size) {
    close(fd);
    return InvalidArgumentError(
        StrFormat("inherited fd %d holds %lld bytes, expected at least %zu", fd,
                  static_cast<long long>(st.st_size), size));
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    int err = errno;
    close(fd);
    return ResourceExhaustedError(
        StrFormat("mmap %zu bytes of inherited fd %d: %s", size, fd,
                  ErrnoText(err).c_str()));
  }
  return std::unique_ptr<SharedPage>(new SharedPage(fd, data, size));
}

SharedPage::~SharedPage() {
  munmap(data_, size_);
  close(fd_);
}

void FutexWaitShared(uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000);
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeShared(uint32_t* word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace shmports::bench
