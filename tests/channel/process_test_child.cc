// Child program for the Process multi-process tests, started by SpawnChild
// with one end of a credentialed socket pair. Modes (exit status 0 = fine,
// 3 = the handshake was refused, 4 = another error, 5 = a check failed):
//   serve <sock>                  accept, then obey commands on the
//                                 bootstrap port (see Serve below)
//   kill-stream <sock> <side> <seed>
//                                 accept, take the port the parent sends,
//                                 then stream pattern messages until killed,
//                                 recording after each send how many were
//                                 sent (== committed: the window keeps the
//                                 ring from filling) in the memfd <side>
//   die-in-handshake <sock>       introduce itself, then SIGKILL itself
//   accept <sock> <uid|-> <claim|-> <major>
//                                 optionally drop to <uid>, claim a wrong
//                                 node name, announce major <major>; accept
//                                 and report how the handshake ended
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "channel/identity.h"
#include "channel/process.h"
#include "tests/channel/process_test_util.h"

namespace {

using namespace shmports;                    // NOLINT
using namespace shmports::channel;           // NOLINT
using namespace shmports::channel::testing;  // NOLINT

Result<Process::Accepted> AcceptOn(int fd, const ProcessOptions& options = {}) {
  return Process::AcceptConnection(ScopedFd(fd), options);
}

// Commands (text messages on the bootstrap port):
//   "stream <n> <seed> [<max>]"
//                        send n pattern messages of up to <max> bytes
//                        (default: the largest frame) from a second thread
//   "expect <n> <seed> [<max>]"
//                        read n pattern messages, wait for the stream to
//                        finish, reply "verified <intact count>"
//   "flood-goodbye <n> <seed> <max>"
//                        send n pattern messages without waiting for
//                        credit (most wait in the overflow queue), then
//                        Process::Shutdown and exit 0 (5 if it failed)
//   "port" + 1 port      echo each message on that port until "return",
//                        then send the port back with "back"
//   "stats"              reply "proxies=<n>" once proxies are 0 (or 5 s)
//   "exit"               close everything and exit 0
int Serve(int fd) {
  auto accepted = AcceptOn(fd);
  if (!accepted.ok()) {
    fprintf(stderr, "child: %s\n", accepted.status().ToString().c_str());
    return 4;
  }
  Process& process = *accepted->process;
  ports::Node& node = process.node();
  ports::PortRef boot = accepted->peer.bootstrap_port;
  PortWaiter waiter(process);
  std::thread sender;
  std::atomic<int> send_result{ports::OK};
  for (;;) {
    auto message = ReadMessage(node, waiter, boot, Deadline::Infinite());
    if (!message.ok())
      return message.status().code() == StatusCode::kPeerClosed ? 0 : 4;
    std::string text = TextOf(**message);
    unsigned long long n = 0, seed = 0, max = kMaxFramePayload;
    if (sscanf(text.c_str(), "stream %llu %llu %llu", &n, &seed, &max) >= 2) {
      // At most 16 unread messages of up to 2 MiB: far below the overflow
      // budget whatever the sizes.
      sender = std::thread([&, n, seed, max] {
        send_result = SendPattern(node, waiter, boot, seed, n, max, 16);
      });
    } else if (sscanf(text.c_str(), "flood-goodbye %llu %llu %llu", &n, &seed,
                      &max) == 3) {
      for (uint64_t i = 0; i < n; ++i) {
        if (SendBytes(node, boot, MakePayload(seed, i, max)) != ports::OK)
          return 5;
      }
      Status bye = process.Shutdown(Deadline::In(std::chrono::seconds(60)));
      if (!bye.ok()) {
        fprintf(stderr, "child: %s\n", bye.ToString().c_str());
        return 5;
      }
      return 0;
    } else if (sscanf(text.c_str(), "expect %llu %llu %llu", &n, &seed, &max) >=
               2) {
      auto read = ReadPattern(node, waiter, boot, seed, n, max);
      if (sender.joinable())
        sender.join();
      uint64_t ok = read.ok() ? *read : 0;
      if (send_result != ports::OK)
        ok = 0;
      (void)SendText(node, boot, "verified " + std::to_string(ok));
    } else if (text == "port" && (*message)->num_ports() == 1) {
      ports::PortRef echo;
      if (node.GetPort((*message)->ports()[0], &echo) != ports::OK)
        return 5;
      for (;;) {
        auto m = ReadMessage(node, waiter, echo, Deadline::Infinite());
        if (!m.ok())
          return 5;
        if (TextOf(**m) == "return") {
          (void)SendText(node, boot, "back", {echo.name()});
          break;
        }
        (void)SendText(node, echo, TextOf(**m));
      }
    } else if (text == "stats") {
      for (int i = 0; i < 500 && node.GetStats().proxies != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      (void)SendText(node, boot,
                     "proxies=" + std::to_string(node.GetStats().proxies));
    } else if (text == "exit") {
      if (sender.joinable())
        sender.join();
      (void)node.ClosePort(boot);
      return 0;
    } else {
      fprintf(stderr, "child: unknown command '%s'\n", text.c_str());
      return 5;
    }
  }
}

int KillStream(int fd, int side_fd, uint64_t seed) {
  void* side =
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, side_fd, 0);
  if (side == MAP_FAILED)
    return 4;
  auto* committed = static_cast<uint64_t*>(side);
  auto accepted = AcceptOn(fd);
  if (!accepted.ok())
    return 4;
  Process& process = *accepted->process;
  ports::Node& node = process.node();
  ports::PortRef boot = accepted->peer.bootstrap_port;
  PortWaiter waiter(process);
  auto held = ReadMessage(node, waiter, boot);  // Holds the attached port.
  if (!held.ok())
    return 4;
  // Sizes up to 4 KiB and at most 32 unacknowledged: never more than
  // 128 KiB in a 1 MiB ring, so every send commits at once (no overflow)
  // and the count written after it is the committed count. Credit comes as
  // "ack <n>" messages from the parent, read on THIS thread: with Node read
  // acks the io thread would also send on the port (ReadAckRequest), and an
  // event numbered by one thread but not yet committed when the child dies
  // strands every later event on the port in the parent's reorder buffer
  // (see the report on core/ports), which is not what this test measures.
  uint64_t acked = 0;
  for (uint64_t i = 0;; ++i) {
    while (i - acked >= 32) {
      auto ack = ReadMessage(node, waiter, boot, Deadline::Infinite());
      if (!ack.ok())
        return 4;
      unsigned long long n = 0;
      if (sscanf(TextOf(**ack).c_str(), "ack %llu", &n) == 1 && n > acked)
        acked = n;
    }
    std::vector<uint8_t> payload = MakePayload(seed, i, 4096);
    if (SendBytes(node, boot, payload) != ports::OK)
      return 4;
    __atomic_store_n(committed, i + 1, __ATOMIC_RELEASE);
  }
}

int DieInHandshake(int fd) {
  Status s = IntroduceSelf(fd, Deadline::In(std::chrono::seconds(10)));
  (void)s;
  raise(SIGKILL);
  return 4;
}

int AcceptWith(int fd, const char* uid, const char* claim, int major) {
  if (strcmp(uid, "-") != 0) {
    uid_t u = static_cast<uid_t>(atoi(uid));
    if (setresgid(u, u, u) != 0 || setresuid(u, u, u) != 0)
      return 4;
  }
  ProcessOptions options;
  if (strcmp(claim, "-") != 0)
    options.connection.testing_claimed_name = ports::NodeName(0x5eed, 1);
  options.connection.testing_major = static_cast<uint16_t>(major);
  auto accepted = AcceptOn(fd, options);
  if (!accepted.ok()) {
    fprintf(stderr, "child: %s\n", accepted.status().ToString().c_str());
    StatusCode code = accepted.status().code();
    return code == StatusCode::kProtocolViolation ||
                   code == StatusCode::kFailedPrecondition
               ? 3
               : 4;
  }
  PortWaiter waiter(*accepted->process);
  auto end = ReadMessage(accepted->process->node(), waiter,
                         accepted->peer.bootstrap_port);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3)
    return 64;
  std::string mode = argv[1];
  int fd = atoi(argv[2]);
  if (mode == "serve")
    return Serve(fd);
  if (mode == "kill-stream" && argc == 5)
    return KillStream(fd, atoi(argv[3]), strtoull(argv[4], nullptr, 10));
  if (mode == "die-in-handshake")
    return DieInHandshake(fd);
  if (mode == "accept" && argc == 6)
    return AcceptWith(fd, argv[3], argv[4], atoi(argv[5]));
  return 64;
}
