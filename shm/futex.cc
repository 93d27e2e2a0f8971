#include "shm/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
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

int FutexWake(uint32_t* word, int count) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc >= 0 ? static_cast<int>(rc) : -errno;
}

}  // namespace shmports::shm
