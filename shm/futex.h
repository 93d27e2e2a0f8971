// Shared futex wait and wake on a 32-bit word in shared memory.
//
// Always the shared form (no FUTEX_PRIVATE_FLAG): the waiter and the waker
// may be different processes mapping the same page, and a private futex is
// keyed by address space, so a cross-process wake would be lost. This is also
// why shmports never uses std::atomic::wait/notify (libstdc++ uses private
// futexes).
//
// Thread-safety: both functions may be called from any thread.
#ifndef SHMPORTS_SHM_FUTEX_H_
#define SHMPORTS_SHM_FUTEX_H_

#include <cstdint>

#include "core/base/deadline.h"

namespace shmports::shm {

// FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline (none if
// infinite). Returns 0 when woken, or the errno: EAGAIN (the word no longer
// held `expected`), ETIMEDOUT, EINTR. Callers re-check their condition in
// every case.
int FutexWait(uint32_t* word, uint32_t expected, const Deadline& deadline);

// FUTEX_WAKE of up to `count` waiters. Returns how many were woken, or -errno.
int FutexWake(uint32_t* word, int count);

// One word of a FutexWaitv: sleep while *word == expected.
struct FutexWaitvEntry {
  const uint32_t* word;
  uint32_t expected;
};

// futex_waitv(2) (Linux 5.16) over up to 8 shared 32-bit words with an
// absolute CLOCK_MONOTONIC deadline: returns when any word is woken or
// differs from its expected value. 0 when woken, else the errno (EAGAIN: a
// word differed; ETIMEDOUT; EINTR; ENOSYS on older kernels). A FUTEX_WAKE on
// any of the words (shared form, as FutexWake issues) reaches the sleeper.
int FutexWaitv(const FutexWaitvEntry* entries,
               int count,
               const Deadline& deadline);

// Whether this kernel has futex_waitv (probed once).
bool FutexWaitvSupported();

}  // namespace shmports::shm

#endif  // SHMPORTS_SHM_FUTEX_H_
