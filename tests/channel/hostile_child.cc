// Child program of the hostile-peer tests (hostile_multiprocess_test.cc),
// started by SpawnChild with one end of a credentialed socket pair.
//
//   good <sock> <seed>
//       An honest Process: accepts, then runs the checksummed stream
//       (hostile_stream.h) on its bootstrap port both ways until the parent
//       ends it; exits once the parent closes the port.
//   hostile <sock> <scenario> <seed> <good v1> <good v2> <n>
//       Drops its privileges, performs an honest handshake with the raw
//       Connection (no Node: it writes whatever it likes into its rings),
//       then plays <scenario> (see Play below) and idles until the parent
//       hangs up or sends it "exit" on the bootstrap port.
//
// Exit status: 0 = did what the scenario says, 4 = setup error, 5 = a check
// in the child failed, 6 = privileges could not be dropped, 64 = usage.
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "channel/connection.h"
#include "channel/fragment.h"
#include "channel/frame_kinds.h"
#include "channel/process.h"
#include "core/ports/event.h"
#include "shm/futex.h"
#include "shm/ring_layout.h"
#include "shm/segment.h"
#include "tests/channel/hostile_stream.h"
#include "tests/channel/process_test_util.h"

namespace {

using namespace shmports;                    // NOLINT
using namespace shmports::channel;           // NOLINT
using namespace shmports::channel::testing;  // NOLINT

constexpr int kOk = 0;
constexpr int kSetupError = 4;
constexpr int kCheckFailed = 5;
constexpr int kPrivilegeError = 6;

// The hostile child's bootstrap port name (it has no Node; any name does).
constexpr ports::PortName kHostileBoot{0xbad, 0xb007};

// What the hostile child knows of the good child: its node's name, and the
// name of the parent's port on the good route (a leaked or guessed name).
struct GoodRoute {
  ports::NodeName node;
  ports::PortName parent_port;
};

int Good(int fd, uint64_t seed) {
  auto accepted = Process::AcceptConnection(ScopedFd(fd));
  if (!accepted.ok()) {
    fprintf(stderr, "good child: %s\n", accepted.status().ToString().c_str());
    return kSetupError;
  }
  Process& process = *accepted->process;
  ports::Node& node = process.node();
  ports::PortRef boot = accepted->peer.bootstrap_port;
  PortWaiter waiter(process);
  Status verdict;
  {
    StreamOptions options;
    options.send_seed = seed + 1;
    options.receive_seed = seed;
    StreamEndpoint stream(node, waiter, boot, options, /*is_child=*/true);
    stream.Start();
    verdict = stream.Join();
  }
  if (!verdict.ok())
    fprintf(stderr, "good child: %s\n", verdict.ToString().c_str());
  // The parent closes the port once it has the report.
  for (;;) {
    auto message = ReadMessage(node, waiter, boot, Deadline::Infinite());
    if (!message.ok())
      break;
  }
  (void)node.ClosePort(boot);
  return verdict.ok() ? kOk : kCheckFailed;
}

// Leaves the process with no capabilities and no way to gain any (no new
// privileges through exec), on the SAME uid: the parent's identity policy
// admits only its own uid, so changing uid would fail the handshake rather
// than test the Router. Run as root, this takes away what makes root
// dangerous (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_OVERRIDE... — the
// remaining power is that of a same-uid process, which is the threat model:
// shmports does not defend against root). Run as an ordinary user, every
// step is a no-op that still succeeds except the bounding-set drop, which
// needs CAP_SETPCAP and is skipped (an unprivileged process cannot use the
// bounding set to gain anything).
bool DropPrivileges() {
  for (int cap = 0; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
      (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);  // EPERM as non-root.
  }
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header = {};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0) {
    perror("hostile child: capset");
    return false;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("hostile child: PR_SET_NO_NEW_PRIVS");
    return false;
  }
  __user_cap_data_struct check[2] = {};
  if (syscall(SYS_capget, &header, check) != 0)
    return false;
  for (const auto& d : check) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0)
      return false;
  }
  return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
}

class Hostile {
 public:
  explicit Hostile(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}

  Connection& conn() { return *conn_; }
  shm::RingControl* out_control() { return conn_->outbound_control(); }
  uint8_t* out_data() {
    return reinterpret_cast<uint8_t*>(out_control()) + shm::kRingControlSize;
  }
  uint64_t out_capacity() { return conn_->outbound_ring().capacity(); }
  // The parent's outbound ring, whose head this side writes as consumer.
  shm::RingControl* in_control() {
    return const_cast<shm::RingControl*>(conn_->inbound_control());
  }

  // Writes one frame honestly through shm::Ring, waiting for space while
  // the parent is there. False once it hung up (it dropped us: see
  // hung_up()) or on an error.
  bool WriteFrame(uint16_t kind, std::span<const uint8_t> bytes) {
    Deadline deadline = Deadline::In(std::chrono::seconds(60));
    for (;;) {
      Status s = conn_->outbound_ring().Write(kind, bytes);
      if (s.ok())
        return true;
      if (s.code() != StatusCode::kUnavailable || deadline.Expired())
        return false;
      if (HungUp())
        return false;
      s = conn_->outbound_ring().WaitForSpace(
          static_cast<uint32_t>(bytes.size()),
          Deadline::In(std::chrono::milliseconds(50)));
      if (!s.ok() && s.code() != StatusCode::kUnavailable)
        return false;
    }
  }

  // Whether the parent has shut the socket (it drops a peer that way).
  bool HungUp() {
    if (!hung_up_) {
      pollfd p = {conn_->socket_fd(), POLLRDHUP, 0};
      hung_up_ = poll(&p, 1, 0) > 0 &&
                 (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
    }
    return hung_up_;
  }

  bool WriteEvent(const ports::Event& event) {
    return WriteFrame(kEventFrameKind, event.SerializeToVector());
  }

  // Raw publication after writing into the data area by hand: moves `tail`
  // and wakes the parent whether or not it announced sleep.
  void PublishRawTail(uint64_t tail) {
    std::atomic_ref<uint64_t>(out_control()->tail)
        .store(tail, std::memory_order_seq_cst);
    std::atomic_ref<uint32_t>(out_control()->data_futex)
        .fetch_add(1, std::memory_order_release);
    shm::FutexWake(&out_control()->data_futex, 1);
  }

  uint64_t PublishedTail() {
    return std::atomic_ref<uint64_t>(out_control()->tail)
        .load(std::memory_order_acquire);
  }

  // Waits until the parent consumed everything published.
  bool WaitConsumed() {
    Deadline deadline = Deadline::In(std::chrono::seconds(30));
    for (;;) {
      uint64_t head = std::atomic_ref<uint64_t>(out_control()->head)
                          .load(std::memory_order_acquire);
      if (head == PublishedTail())
        return true;
      if (deadline.Expired())
        return false;
      usleep(1000);
    }
  }

  // Waits for and decodes the next frame from the parent; null at the
  // deadline.
  ports::ScopedEvent NextInbound(Deadline deadline) {
    ports::ScopedEvent out;
    for (;;) {
      bool bad = false;
      auto drained = conn_->inbound_ring().Drain(
          [&](const shm::FrameView& frame) {
            auto event = ports::Event::Deserialize(frame.payload);
            if (event.ok())
              out = std::move(*event);
            else
              bad = true;
          },
          1);
      if (!drained.ok() || bad)
        return nullptr;
      if (*drained == 1)
        return out;
      Status s = conn_->inbound_ring().WaitForData(deadline);
      if (!s.ok())
        return nullptr;
    }
  }

  // Waits for a user message from the parent whose text is `text`.
  bool WaitForText(const std::string& text) {
    Deadline deadline = Deadline::In(std::chrono::seconds(60));
    for (;;) {
      ports::ScopedEvent event = NextInbound(deadline);
      if (!event)
        return false;
      if (event->type() == ports::EventType::kUserMessage &&
          static_cast<ports::UserMessageEvent*>(event.get())
                  ->message()
                  .AsStringView() == text) {
        return true;
      }
    }
  }

  // Idles until the parent hangs up (it dropped us) or says "exit" on the
  // bootstrap port. `drain_inbound` false: leaves the parent's ring alone
  // (a scenario corrupted its consumer words).
  void Idle(bool drain_inbound) {
    Deadline deadline = Deadline::In(std::chrono::seconds(120));
    while (!deadline.Expired()) {
      pollfd p = {conn_->socket_fd(), POLLIN | POLLRDHUP, 0};
      int n = poll(&p, 1, 20);
      if (n > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0)
        return;
      if (!drain_inbound)
        continue;
      bool exit = false;
      auto drained =
          conn_->inbound_ring().Drain([&](const shm::FrameView& frame) {
            auto event = ports::Event::Deserialize(frame.payload);
            if (event.ok() &&
                (*event)->type() == ports::EventType::kUserMessage &&
                static_cast<ports::UserMessageEvent*>(event->get())
                        ->message()
                        .AsStringView() == "exit") {
              exit = true;
            }
          });
      if (!drained.ok() || exit)
        return;
    }
  }

  // A portless user message from our bootstrap port to `port`.
  ports::ScopedEvent UserMessage(const ports::PortName& port,
                                 const ports::PortName& from,
                                 uint64_t control_seq,
                                 uint64_t seq,
                                 size_t payload_size = 2) {
    auto event = std::make_unique<ports::UserMessageEvent>(0);
    event->set_port_name(port);
    event->set_from_port(from);
    event->set_control_sequence_num(control_seq);
    event->set_sequence_num(seq);
    std::vector<uint8_t> bytes(payload_size, 0x5a);
    event->message().Assign(bytes);
    return event;
  }

 private:
  std::unique_ptr<Connection> conn_;
  bool hung_up_ = false;
};

// Every memfd in our descriptor table (the two ring segments).
std::vector<int> MemfdDescriptors() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr)
    return fds;
  while (dirent* entry = readdir(dir)) {
    char target[256];
    std::string path = std::string("/proc/self/fd/") + entry->d_name;
    ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    if (n <= 0)
      continue;
    target[n] = '\0';
    if (strncmp(target, "/memfd:", 7) == 0)
      fds.push_back(atoi(entry->d_name));
  }
  closedir(dir);
  return fds;
}

// Garbage at the publish position: seeded bytes, the first frame's length
// beyond any max_frame.
int PlayGarbage(Hostile& h, uint64_t seed) {
  uint64_t tail = h.PublishedTail();
  uint64_t pos = tail & (h.out_capacity() - 1);
  if (pos + 4096 > h.out_capacity())
    return kSetupError;
  uint64_t state = seed;
  for (size_t i = 0; i < 4096; i += 8) {
    state = Mix(state);
    std::memcpy(h.out_data() + pos + i, &state, 8);
  }
  h.out_data()[pos + 3] |= 0x80;  // Length >= 2^31.
  h.PublishRawTail(tail + 4096);
  return kOk;
}

// Honest frames the parent ignores (user messages to a port it never had),
// consumed by the parent, then `tail` moved backwards.
int PlayTailBackwards(Hostile& h) {
  for (uint64_t i = 0; i < 4; ++i) {
    if (!h.WriteEvent(*h.UserMessage(ports::PortName(0xdead, i + 1),
                                     kHostileBoot, 1, 1, 100)))
      return kSetupError;
  }
  if (!h.WaitConsumed())
    return kSetupError;
  h.PublishRawTail(h.PublishedTail() - 8);
  return kOk;
}

// Frames that fill the data area to 32 bytes before its end (ignored by the
// parent), then a frame header there whose length runs past the end.
int PlayLengthPastEnd(Hostile& h) {
  const uint64_t capacity = h.out_capacity();
  const uint64_t max_frame = h.conn().outbound_ring().max_frame();
  const uint64_t frame = sizeof(shm::FrameHeader) + max_frame;
  const uint64_t target = capacity - 32;
  uint64_t full = target / frame;
  uint64_t last = target - full * frame;
  if (last < sizeof(shm::FrameHeader) + 64 || max_frame % 8 != 0)
    return kSetupError;
  const size_t overhead =
      ports::kEventHeaderSize + ports::kUserMessageFixedSize;
  for (uint64_t i = 0; i <= full; ++i) {
    size_t bytes = i < full ? max_frame : last - sizeof(shm::FrameHeader);
    if (!h.WriteEvent(*h.UserMessage(ports::PortName(0xdead, i + 1),
                                     kHostileBoot, 1, 1, bytes - overhead)))
      return kSetupError;
  }
  if (h.PublishedTail() != target || !h.WaitConsumed())
    return kSetupError;
  shm::FrameHeader header = {};
  header.length = 64;  // 8 + 64 bytes from 32 before the end.
  header.kind = kEventFrameKind;
  std::memcpy(h.out_data() + target, &header, sizeof(header));
  h.PublishRawTail(target + sizeof(header) + 64);
  return kOk;
}

// The parent's ring: consumes `n` frames honestly (so the parent has seen
// `head` move), then moves `head` back to 0 and stops consuming.
int PlayHeadBackwards(Hostile& h, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (!h.NextInbound(Deadline::In(std::chrono::seconds(60))))
      return kSetupError;
  }
  std::atomic_ref<uint64_t>(h.in_control()->head)
      .store(0, std::memory_order_seq_cst);
  return kOk;
}

// A UserMessage claiming 1000 attached ports in a few bytes.
int PlayMalformedEvent(Hostile& h) {
  std::vector<uint8_t> bytes =
      h.UserMessage(h.conn().peer_bootstrap_port(), kHostileBoot, 1, 1, 8)
          ->SerializeToVector();
  uint32_t num_ports = 1000;
  std::memcpy(bytes.data() + ports::kEventHeaderSize + 8, &num_ports, 4);
  return h.WriteFrame(kEventFrameKind, bytes) ? kOk : kSetupError;
}

// The broadcast form of ObserveProxy (a proxy died with its node) naming
// the good child's node: believed, it would cut every route to it.
int PlayForgedObserveProxy(Hostile& h, const ports::NodeName& good) {
  ports::ObserveProxyEvent event(
      ports::kInvalidPortName, kHostileBoot, 0, good, ports::kInvalidPortName,
      ports::kInvalidNodeName, ports::kInvalidPortName);
  return h.WriteEvent(event) ? kOk : kSetupError;
}

// `n` events of every type the parent can take without side effects, to
// ports it never gave us.
int PlayUnknownPorts(Hostile& h, uint64_t seed, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    ports::PortName port(Mix(seed + i) | 1, Mix(seed ^ i));
    ports::ScopedEvent event;
    switch (i % 7) {
      case 0:
        event = h.UserMessage(port, kHostileBoot, 1, 1, i % 300);
        break;
      case 1:
        event =
            std::make_unique<ports::PortAcceptedEvent>(port, kHostileBoot, 1);
        break;
      case 2:
        event = std::make_unique<ports::ObserveProxyEvent>(
            port, kHostileBoot, 1, h.conn().local_name(), kHostileBoot,
            h.conn().peer_name(), port);
        break;
      case 3:
        event = std::make_unique<ports::ObserveProxyAckEvent>(
            port, kHostileBoot, 1, 5);
        break;
      case 4:
        event = std::make_unique<ports::ObserveClosureEvent>(port, kHostileBoot,
                                                             1, 5);
        break;
      case 5:
        event = std::make_unique<ports::UserMessageReadAckEvent>(
            port, kHostileBoot, 1, 3);
        break;
      default:
        event = std::make_unique<ports::UpdatePreviousPeerEvent>(
            port, kHostileBoot, 1, h.conn().local_name(), kHostileBoot);
        break;
    }
    if (!h.WriteEvent(*event))
      return kSetupError;
  }
  return kOk;
}

// `n` user messages to our own route's port on the parent that claim to
// come from another port of ours (a previous peer that does not exist):
// buffered, never next. Then, on "go", one more.
int PlayForgedPreviousPeer(Hostile& h, uint64_t n) {
  const ports::PortName target = h.conn().peer_bootstrap_port();
  for (uint64_t i = 0; i <= n; ++i) {
    if (i == n && !h.WaitForText("go"))
      return kSetupError;
    if (!h.WriteEvent(*h.UserMessage(target, ports::PortName(0xf0f0, 1), i + 1,
                                     i + 1, 16)))
      return kSetupError;
  }
  return kOk;
}

// `n` user messages to the parent's port on the GOOD route claiming a
// previous peer there (buffered: never next), then a malformed event that
// gets us dropped. What we left buffered on the good route should go with us.
int PlayForgeOnGoodRoute(Hostile& h,
                         const ports::PortName& target,
                         uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (!h.WriteEvent(*h.UserMessage(target, ports::PortName(0xf0f0, 2), i + 1,
                                     i + 1, 16)))
      return kSetupError;
  }
  return PlayMalformedEvent(h);
}

// `n` forged events on each of two routes (ours and the good one), each
// below the per-port limit, together past a per-peer one.
int PlayForgeOnTwoRoutes(Hostile& h, const ports::PortName& good, uint64_t n) {
  const ports::PortName ours = h.conn().peer_bootstrap_port();
  for (uint64_t i = 0; i < n; ++i) {
    for (const ports::PortName& target : {ours, good}) {
      if (!h.WriteEvent(*h.UserMessage(target, ports::PortName(0xf0f0, 3),
                                       i + 1, i + 1, 16)))
        return kSetupError;
    }
  }
  return kOk;
}

// `n` control events from our true port, numbered far ahead of the next
// one the parent expects: all early.
int PlayEarlyControlFlood(Hostile& h, uint64_t n) {
  const ports::PortName target = h.conn().peer_bootstrap_port();
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t control_seq = 1000 + i;
    ports::ScopedEvent event;
    if (i % 2 == 0) {
      event = std::make_unique<ports::UserMessageReadAckRequestEvent>(
          target, kHostileBoot, control_seq, i + 1);
    } else {
      event = std::make_unique<ports::ObserveClosureEvent>(target, kHostileBoot,
                                                           control_seq, i + 1);
    }
    if (!h.WriteEvent(*event))
      return kSetupError;
  }
  return kOk;
}

// `n` user messages of 64 KiB from our true port, numbered far ahead: all
// early, and large.
int PlayEarlyMessageFlood(Hostile& h, uint64_t n) {
  const ports::PortName target = h.conn().peer_bootstrap_port();
  for (uint64_t i = 0; i < n; ++i) {
    if (!h.WriteEvent(
            *h.UserMessage(target, kHostileBoot, 1000 + i, i + 1, 64 << 10)))
      return kSetupError;
  }
  return kOk;
}

// ftruncate must fail on both sealed segments (shrink and grow); then holes
// are punched through the whole segment of the ring the parent reads, after
// it consumed a few honest frames.
int PlayTruncateAndPunch(Hostile& h) {
  for (uint64_t i = 0; i < 4; ++i) {
    if (!h.WriteEvent(*h.UserMessage(ports::PortName(0xdead, i + 1),
                                     kHostileBoot, 1, 1, 100)))
      return kSetupError;
  }
  if (!h.WaitConsumed())
    return kSetupError;
  std::vector<int> memfds = MemfdDescriptors();
  if (memfds.size() < 2) {
    fprintf(stderr, "hostile child: %zu memfds\n", memfds.size());
    return kCheckFailed;
  }
  int ours = -1;
  for (int fd : memfds) {
    struct stat st = {};
    if (fstat(fd, &st) != 0)
      return kSetupError;
    for (off_t size : {st.st_size - 4096, st.st_size + 4096, off_t{0}}) {
      if (ftruncate(fd, size) == 0 || errno != EPERM) {
        fprintf(stderr,
                "hostile child: ftruncate(%d, %lld) did not fail "
                "with EPERM\n",
                fd, static_cast<long long>(size));
        return kCheckFailed;
      }
    }
    shm::SegmentHeader header = {};
    if (pread(fd, &header, sizeof(header), 0) != sizeof(header))
      return kSetupError;
    if (header.creator_pid == static_cast<uint32_t>(getpid()))
      ours = fd;
  }
  if (ours < 0)
    return kSetupError;
  struct stat st = {};
  if (fstat(ours, &st) != 0 ||
      fallocate(ours, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                st.st_size) != 0) {
    perror("hostile child: fallocate(PUNCH_HOLE)");
    return kCheckFailed;
  }
  // Wake the parent so it looks at the zeroed words now.
  std::atomic_ref<uint32_t>(h.out_control()->data_futex)
      .fetch_add(1, std::memory_order_release);
  shm::FutexWake(&h.out_control()->data_futex, 1);
  return kOk;
}

// A fragment stream (frame kind 17) that lies as `lie` says. Every lie is
// written after an honest start where the lie needs one.
int PlayLyingFragments(Hostile& h, const std::string& lie) {
  std::vector<uint8_t> data(4500, 0x33);
  const uint64_t total = 5000;
  auto fragment = [&](uint64_t stream_total, uint64_t offset, size_t length) {
    return h.WriteFrame(
        kEventFragmentFrameKind,
        EncodeFragment(stream_total, offset,
                       std::span<const uint8_t>(data).first(length)));
  };
  if (lie == "beyond-limit")
    return fragment(kDefaultMaxMessageBytes + 1, 0, 1000) ? kOk : kSetupError;
  if (lie == "first-not-at-zero")
    return fragment(total, 100, 1000) ? kOk : kSetupError;
  if (lie == "undecodable-content") {
    // A whole, well-cut stream whose bytes are no event.
    std::vector<uint8_t> event =
        h.UserMessage(h.conn().peer_bootstrap_port(), kHostileBoot, 1, 1, 64)
            ->SerializeToVector();
    uint32_t num_ports = 1000;
    std::memcpy(event.data() + ports::kEventHeaderSize + 8, &num_ports, 4);
    size_t half = event.size() / 2;
    std::span<const uint8_t> bytes(event);
    return h.WriteFrame(kEventFragmentFrameKind,
                        EncodeFragment(event.size(), 0, bytes.first(half))) &&
                   h.WriteFrame(
                       kEventFragmentFrameKind,
                       EncodeFragment(event.size(), half, bytes.subspan(half)))
               ? kOk
               : kSetupError;
  }
  if (!fragment(total, 0, 1000))
    return kSetupError;
  bool ok = false;
  if (lie == "overlap")
    ok = fragment(total, 500, 1000);
  else if (lie == "gap")
    ok = fragment(total, 1500, 1000);
  else if (lie == "total-changes")
    ok = fragment(total + 1000, 1000, 1000);
  else if (lie == "past-end")
    ok = fragment(total, 1000, 4500);
  else if (lie == "restart")
    ok = fragment(total, 0, 1000);
  else if (lie == "event-in-the-middle")
    ok = h.WriteEvent(
        *h.UserMessage(h.conn().peer_bootstrap_port(), kHostileBoot, 1, 1));
  else
    return 64;
  return ok ? kOk : kSetupError;
}

int Play(Hostile& h,
         const std::string& scenario,
         uint64_t seed,
         const GoodRoute& good,
         uint64_t n) {
  if (scenario == "garbage")
    return PlayGarbage(h, seed);
  if (scenario == "tail-backwards")
    return PlayTailBackwards(h);
  if (scenario == "length-past-end")
    return PlayLengthPastEnd(h);
  if (scenario == "head-backwards")
    return PlayHeadBackwards(h, n);
  if (scenario == "malformed-event")
    return PlayMalformedEvent(h);
  if (scenario == "forged-observe-proxy")
    return PlayForgedObserveProxy(h, good.node);
  if (scenario == "unknown-ports")
    return PlayUnknownPorts(h, seed, n);
  if (scenario == "forged-previous-peer")
    return PlayForgedPreviousPeer(h, n);
  if (scenario == "early-control-flood")
    return PlayEarlyControlFlood(h, n);
  if (scenario == "early-message-flood")
    return PlayEarlyMessageFlood(h, n);
  if (scenario == "truncate-and-punch")
    return PlayTruncateAndPunch(h);
  if (scenario == "forge-on-good-route")
    return PlayForgeOnGoodRoute(h, good.parent_port, n);
  if (scenario == "forge-on-two-routes")
    return PlayForgeOnTwoRoutes(h, good.parent_port, n);
  if (scenario.rfind("fragments-", 0) == 0)
    return PlayLyingFragments(h, scenario.substr(10));
  fprintf(stderr, "hostile child: unknown scenario '%s'\n", scenario.c_str());
  return 64;
}

int HostileMain(int fd,
                const std::string& scenario,
                uint64_t seed,
                const GoodRoute& good,
                uint64_t n) {
  if (!DropPrivileges())
    return kPrivilegeError;
  auto conn = Connection::Accept(
      ScopedFd(fd),
      [](const ports::NodeName&) -> Result<ports::PortName> {
        return kHostileBoot;
      },
      ConnectionOptions());
  if (!conn.ok()) {
    fprintf(stderr, "hostile child: %s\n", conn.status().ToString().c_str());
    return kSetupError;
  }
  Hostile h(std::move(*conn));
  int rv = Play(h, scenario, seed, good, n);
  // Dropped before the scenario was played out: the parent saw enough.
  if (rv == kSetupError && h.HungUp())
    rv = kOk;
  if (rv != kOk)
    fprintf(stderr, "hostile child: %s ended with %d\n", scenario.c_str(), rv);
  h.Idle(/*drain_inbound=*/scenario != "head-backwards");
  return rv;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3)
    return 64;
  std::string mode = argv[1];
  int fd = atoi(argv[2]);
  if (mode == "good" && argc == 4)
    return Good(fd, strtoull(argv[3], nullptr, 10));
  if (mode == "hostile" && argc == 10) {
    auto u64 = [&](int i) { return strtoull(argv[i], nullptr, 10); };
    GoodRoute good = {ports::NodeName(u64(5), u64(6)),
                      ports::PortName(u64(7), u64(8))};
    return HostileMain(fd, argv[3], u64(4), good, u64(9));
  }
  return 64;
}
