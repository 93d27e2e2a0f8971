#include "core/base/random.h"

#include <errno.h>
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/base/mutex.h"

namespace shmports {
namespace {

constexpr size_t kCacheBytes = 4096;

struct NameCache {
  Mutex mu;
  uint8_t bytes[kCacheBytes] GUARDED_BY(mu);
  size_t next GUARDED_BY(mu) = kCacheBytes;  // kCacheBytes: empty.
  pid_t owner GUARDED_BY(mu) = 0;            // Pid that filled the cache.
};

NameCache& Cache() {
  static NameCache* cache = new NameCache();
  return *cache;
}

// Fork handlers: hold the lock across fork so the child never inherits it
// locked mid-refill, and empty the child's copy.
void PrepareFork() NO_THREAD_SAFETY_ANALYSIS {
  Cache().mu.Lock();
}
void ParentAfterFork() NO_THREAD_SAFETY_ANALYSIS {
  Cache().mu.Unlock();
}
void ChildAfterFork() NO_THREAD_SAFETY_ANALYSIS {
  NameCache& c = Cache();
  memset(c.bytes, 0, sizeof(c.bytes));
  c.next = kCacheBytes;
  c.owner = 0;
  c.mu.Unlock();
}

void TakeFromCache(void* out, size_t size) {
  static std::once_flag registered;
  std::call_once(registered, [] {
    pthread_atfork(&PrepareFork, &ParentAfterFork, &ChildAfterFork);
  });
  NameCache& c = Cache();
  MutexLock lock(&c.mu);
  // A child made by a raw clone() runs no atfork handler: the pid check
  // catches it.
  pid_t pid = getpid();
  if (c.owner != pid || c.next + size > kCacheBytes) {
    RandomBytes(c.bytes, kCacheBytes);
    c.next = 0;
    c.owner = pid;
  }
  memcpy(out, c.bytes + c.next, size);
  memset(c.bytes + c.next, 0, size);  // A used name is not kept around.
  c.next += size;
}

}  // namespace

void RandomBytes(void* out, size_t size) {
  auto* p = static_cast<uint8_t*>(out);
  while (size > 0) {
    ssize_t n = getrandom(p, size, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "shmports: getrandom failed: %s\n", strerror(errno));
      abort();
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

Random128 RandomName128() {
  Random128 r;
  do {
    TakeFromCache(&r, sizeof(r));
  } while (r.v1 == 0 && r.v2 == 0);
  return r;
}

uint64_t RandomU64() {
  uint64_t v;
  TakeFromCache(&v, sizeof(v));
  return v;
}

}  // namespace shmports
