// Child program for the channel/ multi-process tests, started by SpawnChild.
// Each mode does one thing and reports through its exit status:
//   exit <code>                 exit at once with <code>
//   wait-eof <fd>               block until <fd> reads EOF, then exit 0
//   futex-wake <memfd>          map <memfd>, FUTEX_WAKE (shared) its first
//                               word until a waiter was woken: exit 0, or 2
//                               after 10 s with nobody waiting
//   hello <sock>                IntroduceSelf on <sock>: 0 accepted,
//                               3 refused, 4 other error
//   setuid-hello <sock> <uid>   drop to <uid> (gid too), then as hello
//   hello-and-exit <sock>       send the hello, exit 0 without waiting
//   send-fds <sock> <n>         send one message with <n> eventfds attached,
//                               then wait for EOF on <sock>; 0, or 4
//   check-fds <fd>...           0 iff the open descriptors are exactly
//                               0, 1, 2 and the listed ones, else 5
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "channel/identity.h"
#include "channel/scoped_fd.h"
#include "channel/socket.h"

namespace {

using shmports::Deadline;
using shmports::StatusCode;
namespace channel = shmports::channel;

int Arg(char** argv, int i) {
  return atoi(argv[i]);
}

int Hello(int sock) {
  shmports::Status s =
      channel::IntroduceSelf(sock, Deadline::In(std::chrono::seconds(20)));
  if (s.ok())
    return 0;
  fprintf(stderr, "helper: %s\n", s.ToString().c_str());
  return s.code() == StatusCode::kProtocolViolation ? 3 : 4;
}

int FutexWake(int memfd) {
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED)
    return 4;
  auto* word = static_cast<uint32_t*>(p);
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < end) {
    // FUTEX_WAKE without FUTEX_PRIVATE_FLAG: the waiter is another process.
    long woken = syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
    if (woken >= 1)
      return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return 2;
}

int SendFds(int sock, int n) {
  std::vector<channel::ScopedFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    owned.emplace_back(eventfd(0, EFD_CLOEXEC));
    fds.push_back(owned.back().get());
  }
  const uint8_t payload[] = {'f', 'd', 's'};
  shmports::Status s = channel::SendMessage(sock, payload, fds);
  if (!s.ok()) {
    fprintf(stderr, "helper: %s\n", s.ToString().c_str());
    return 4;
  }
  char c;
  while (read(sock, &c, 1) > 0) {
  }
  return 0;
}

int CheckFds(int argc, char** argv) {
  std::set<int> want = {0, 1, 2};
  for (int i = 2; i < argc; ++i)
    want.insert(Arg(argv, i));
  std::set<int> open_fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr)
    return 4;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.')
      continue;
    int fd = atoi(e->d_name);
    if (fd != dirfd(dir))
      open_fds.insert(fd);
  }
  closedir(dir);
  if (open_fds == want)
    return 0;
  for (int fd : open_fds)
    fprintf(stderr, "helper: open fd %d\n", fd);
  return 5;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2)
    return 64;
  std::string mode = argv[1];
  if (mode == "exit" && argc == 3)
    return Arg(argv, 2);
  if (mode == "wait-eof" && argc == 3) {
    char c;
    while (read(Arg(argv, 2), &c, 1) > 0) {
    }
    return 0;
  }
  if (mode == "futex-wake" && argc == 3)
    return FutexWake(Arg(argv, 2));
  if (mode == "hello" && argc == 3)
    return Hello(Arg(argv, 2));
  if (mode == "setuid-hello" && argc == 4) {
    auto id = static_cast<uid_t>(Arg(argv, 3));
    // Group first: after setresuid we may no longer change it.
    if (setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) {
      perror("helper: setresuid");
      return 4;
    }
    return Hello(Arg(argv, 2));
  }
  if (mode == "hello-and-exit" && argc == 3) {
    // No time to wait for the answer: the hello is sent, then we are gone.
    shmports::Status s = channel::IntroduceSelf(Arg(argv, 2), Deadline::Now());
    return s.code() == StatusCode::kUnavailable ? 0 : 4;
  }
  if (mode == "send-fds" && argc == 4)
    return SendFds(Arg(argv, 2), Arg(argv, 3));
  if (mode == "check-fds")
    return CheckFds(argc, argv);
  fprintf(stderr, "helper: unknown mode or arguments: %s\n", mode.c_str());
  return 64;
}
