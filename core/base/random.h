// Cryptographically random bytes and 128-bit names, from getrandom(2).
//
// Port and node names are capabilities: whoever knows one can address it, so
// they must be unguessable. Names come from a process-wide cache of random
// bytes (one getrandom call per 4 KiB) so that creating a port rarely costs
// a getrandom. A forked child must never reuse the parent's cache — both
// would hand out the same names — so the cache is discarded in the child at
// fork (pthread_atfork) and, as a second guard for a raw clone, whenever the
// pid has changed (a getpid per draw: glibc no longer caches it).
//
// Thread-safe.
#ifndef SHMPORTS_CORE_BASE_RANDOM_H_
#define SHMPORTS_CORE_BASE_RANDOM_H_

#include <cstddef>
#include <cstdint>

namespace shmports {

// Fills `out` straight from getrandom(2) (no cache). Never fails: on an
// unexpected error it aborts, since running without randomness would make
// every name guessable.
void RandomBytes(void* out, size_t size);

// A random 128-bit value that is never all-zero, from the cache.
struct Random128 {
  uint64_t v1;
  uint64_t v2;
};
Random128 RandomName128();

// A random 64-bit value from the cache, for seeds and jitter.
uint64_t RandomU64();

}  // namespace shmports

#endif  // SHMPORTS_CORE_BASE_RANDOM_H_
