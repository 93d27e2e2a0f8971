#include "shm/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>

#include "core/base/linux_compat.h"

namespace shmports::shm {

int FutexWait(uint32_t* word, uint32_t expected, const Deadline& deadline) {
  struct timespec ts;
  struct timespec* timeout = nullptr;
  if (!deadline.is_infinite()) {
    ts = deadline.ToTimespec();
    timeout = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (no
  // FUTEX_CLOCK_REALTIME), which is what Deadline holds.
  long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, timeout,
                    nullptr, linux_compat::kFutexBitsetMatchAny);
  return rc == 0 ? 0 : errno;
}

int FutexWaitv(const FutexWaitvEntry* entries,
               int count,
               const Deadline& deadline) {
  struct futex_waitv waiters[8] = {};
  if (count < 1 || count > 8)
    return EINVAL;
  for (int i = 0; i < count; ++i) {
    waiters[i].val = entries[i].expected;
    waiters[i].uaddr = reinterpret_cast<uintptr_t>(entries[i].word);
    // Shared (no FUTEX2_PRIVATE): the producer's FUTEX_WAKE is the shared
    // form, and a private waiter would be keyed differently.
    waiters[i].flags = linux_compat::kFutex2SizeU32;
  }
  struct timespec ts;
  struct timespec* timeout = nullptr;
  if (!deadline.is_infinite()) {
    ts = deadline.ToTimespec();
    timeout = &ts;
  }
  long rc =
      syscall(SYS_futex_waitv, waiters, count, 0, timeout, CLOCK_MONOTONIC);
  return rc >= 0 ? 0 : errno;
}

bool FutexWaitvSupported() {
  static const bool supported = [] {
    uint32_t word = 0;
    FutexWaitvEntry entry{&word, 1};  // Differs: returns EAGAIN at once.
    return FutexWaitv(&entry, 1, Deadline::Now()) != ENOSYS;
  }();
  return supported;
}

int FutexWake(uint32_t* word, int count) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc >= 0 ? static_cast<int>(rc) : -errno;
}

}  // namespace shmports::shm
