// SharedPage: a memfd mapped MAP_SHARED, the way the harness shares bytes
// with its peer process across fork+exec (an anonymous mapping would not
// survive the exec). Used for the control block and for the baselines that
// need shared memory (the cache-line ping-pong, the eventfd payload page).
//
// Ownership: a SharedPage owns its fd and its mapping; both go away with it.
// The fd is created close-on-exec: the launcher clears the flag only in the
// child it is meant for. Not thread-safe; the mapped bytes are shared and
// their users define the ordering.
#ifndef SHMPORTS_BENCH_HARNESS_SHARED_PAGE_H_
#define SHMPORTS_BENCH_HARNESS_SHARED_PAGE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/base/status.h"

namespace shmports::bench {

class SharedPage {
 public:
  // A new zero-filled memfd of `size` bytes (rounded up to the page size),
  // mapped read-write. `name` shows in /proc/<pid>/fd, nowhere else.
  static Result<std::unique_ptr<SharedPage>> Create(const char* name,
                                                    size_t size);
  // Maps an inherited memfd. Takes ownership of `fd`; refuses an fd whose
  // size is smaller than `size`.
  static Result<std::unique_ptr<SharedPage>> Adopt(int fd, size_t size);

  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  ~SharedPage();

  int fd() const { return fd_; }
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedPage(int fd, void* data, size_t size)
      : fd_(fd), data_(data), size_(size) {}

  int fd_;
  void* data_;
  size_t size_;
};

// The CPU relax hint for spin loops (x86 `pause`), so a spinning process
// leaves the core's shared resources to its sibling.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Shared-futex wait and wake on a 32-bit word that another process may
// change. Never FUTEX_PRIVATE_FLAG: the waker is in another process.
// FutexWait returns after a wake, a spurious wake-up, a changed value or
// `timeout_ns`.
void FutexWaitShared(uint32_t* word, uint32_t expected, int64_t timeout_ns);
void FutexWakeShared(uint32_t* word);

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_SHARED_PAGE_H_
