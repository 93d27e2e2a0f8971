#include "bench/harness/cleanup.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace shmports::bench {
namespace {

constexpr int kMaxNames = 32;
constexpr size_t kMaxNameLength = 120;

// A slot is claimed by CAS on `used` (0 -> 1), filled, then published by
// storing 2 with release; the signal handler unlinks slots it reads as 2
// (acquire, pairs with that store). Unregistering stores 0.
struct NameSlot {
  std::atomic<int> used{0};
  char path[kMaxNameLength + 2];  // "/" + name + NUL.
};
NameSlot g_names[kMaxNames];
std::atomic<pid_t> g_active_peer{0};

void OnExitSignal(int sig) {
  KillActivePeer();
  RemoveRegisteredShmNames();
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

bool RegisterShmName(const std::string& name) {
  if (name.size() > kMaxNameLength)
    return false;
  for (NameSlot& slot : g_names) {
    int expected = 0;
    if (slot.used.compare_exchange_strong(expected, 1,
                                          std::memory_order_acquire)) {
      slot.path[0] = '/';
      std::memcpy(slot.path + 1, name.data(), name.size());
      slot.path[name.size() + 1] = '\0';
      slot.used.store(2, std::memory_order_release);
      return true;
    }
  }
  return false;
}

void UnregisterShmName(const std::string& name) {
  for (NameSlot& slot : g_names) {
    if (slot.used.load(std::memory_order_acquire) == 2 &&
        name == slot.path + 1) {
      slot.used.store(0, std::memory_order_release);
      return;
    }
  }
}

void RemoveRegisteredShmNames() {
  for (NameSlot& slot : g_names) {
    if (slot.used.load(std::memory_order_acquire) == 2)
      shm_unlink(slot.path);
  }
}

void SetActivePeer(pid_t pid) {
  g_active_peer.store(pid, std::memory_order_relaxed);
}

void KillActivePeer() {
  pid_t pid = g_active_peer.load(std::memory_order_relaxed);
  if (pid > 0)
    kill(pid, SIGKILL);
}

void InstallExitHandlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnExitSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int RemoveStaleShmNames() {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr)
    return 0;
  int removed = 0;
  const size_t prefix_len = std::strlen(kShmNamePrefix);
  while (struct dirent* entry = readdir(dir)) {
    if (std::strncmp(entry->d_name, kShmNamePrefix, prefix_len) != 0)
      continue;
    char* end = nullptr;
    long pid = std::strtol(entry->d_name + prefix_len, &end, 10);
    if (end == entry->d_name + prefix_len || *end != '_' || pid <= 0)
      continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)
      continue;
    std::string path = std::string("/") + entry->d_name;
    if (shm_unlink(path.c_str()) == 0)
      ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace shmports::bench
