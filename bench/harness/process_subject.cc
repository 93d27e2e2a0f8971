#include "bench/harness/process_subject.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "bench/harness/shared_page.h"
#include "bench/harness/transport_subject.h"
#include "channel/process.h"
#include "channel/scoped_fd.h"
#include "channel/socket.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports::bench {
namespace {

// Polls of GetMessage before the receiver sleeps on the status observer.
// Between polls the thread yields rather than spins: the harness pins each
// process to one CPU, which the Process's io thread (it inherits the
// affinity) shares with the receiving thread, and it is the io thread that
// has to run for a message to arrive.
constexpr int kSpinPolls = 200;
// A bounded sleep, so a missed notification shows as a slow trial rather
// than a hang (the watchdog still ends a stuck one).
constexpr auto kWaitSlice = std::chrono::milliseconds(50);
// Unread bytes a one-way sender allows before it waits for acknowledgements.
constexpr size_t kWindowBytes = size_t{16} << 20;
constexpr size_t kMaxMessage = size_t{16} << 20;

// Woken by every PortStatusChanged of the Process. The state is shared with
// the observer, which the io thread may still run while the transport goes
// away.
class StatusWaiter {
 public:
  explicit StatusWaiter(channel::Process& process)
      : state_(std::make_shared<State>()) {
    process.SetPortStatusObserver(
        [state = state_](const ports::PortRef&) { state->Notify(); });
  }
  uint64_t generation() const {
    return state_->generation.load(std::memory_order_acquire);
  }
  void WaitChange(uint64_t seen) {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->cv.wait_for(lock, kWaitSlice, [&] {
      return state_->generation.load(std::memory_order_acquire) != seen;
    });
  }

 private:
  struct State {
    void Notify() {
      // Incremented under the mutex so a waiter between its predicate check
      // and its sleep cannot miss it.
      {
        std::lock_guard<std::mutex> lock(mu);
        generation.fetch_add(1, std::memory_order_release);
      }
      cv.notify_all();
    }
    std::mutex mu;
    std::condition_variable cv;
    std::atomic<uint64_t> generation{0};
  };
  std::shared_ptr<State> state_;
};

class ProcessTransport {
 public:
  struct Options {};

  static Result<std::unique_ptr<ProcessTransport>>
  CreateParent(const Options&, const TrialParams& params, Handoff* handoff) {
    SHMPORTS_ASSIGN_OR_RETURN(std::unique_ptr<channel::Process> process,
                              channel::Process::Create());
    SHMPORTS_ASSIGN_OR_RETURN(channel::SocketPair pair,
                              channel::CreateCredentialedSocketPair());
    handoff->fds.push_back(pair.second.Release());
    auto t = std::unique_ptr<ProcessTransport>(
        new ProcessTransport(std::move(process), params.size));
    // The handshake blocks until the peer runs its side, which it does
    // before it reports ready: run ours meanwhile, finish in AfterPeerReady.
    t->connect_thread_ =
        std::thread([raw = t.get(), fd = pair.first.Release()] {
          raw->connected_ = raw->process_->Connect(channel::ScopedFd(fd));
        });
    return t;
  }

  static Result<std::unique_ptr<ProcessTransport>> CreatePeer(
      const Options&,
      const TrialParams& params,
      const Handoff& handoff) {
    if (handoff.fds.size() != 1)
      return InvalidArgumentError("process peer needs the socket fd");
    SHMPORTS_ASSIGN_OR_RETURN(
        channel::Process::Accepted accepted,
        channel::Process::AcceptConnection(channel::ScopedFd(handoff.fds[0])));
    auto t = std::unique_ptr<ProcessTransport>(
        new ProcessTransport(std::move(accepted.process), params.size));
    SHMPORTS_RETURN_IF_ERROR(t->SetPort(accepted.peer.bootstrap_port));
    return t;
  }

  ~ProcessTransport() {
    if (connect_thread_.joinable())
      connect_thread_.join();
    if (port_) {
      process_->node().ClosePort(*port_);
      // The closure travels ahead of the goodbye: the other side sees the
      // link closed, not a death.
      (void)process_->Shutdown();
    }
  }

  Status AfterPeerReady() {
    connect_thread_.join();
    if (!connected_.has_value())
      return InternalError("process handshake did not run");
    if (!connected_->ok())
      return std::move(*connected_)
          .TakeStatus()
          .WithContext("process handshake");
    return SetPort((*connected_)->bootstrap_port);
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    SHMPORTS_RETURN_IF_ERROR(WaitForWindow());
    auto event = std::make_unique<ports::UserMessageEvent>();
    uint8_t* bytes = event->message().Resize(size);
    fill(std::span<uint8_t>(bytes, size));
    int rv = node_->SendUserMessage(*port_, std::move(event));
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "send user message");
    ++sent_;
    return Status::Ok();
  }

  template <typename Consume>
  Result<size_t> Receive(size_t max, Consume&& consume) {
    size_t n = 0;
    int polls = 0;
    for (;;) {
      const uint64_t seen = waiter_->generation();
      while (n < max) {
        std::unique_ptr<ports::UserMessageEvent> message;
        int rv = node_->GetMessage(*port_, &message, nullptr);
        if (rv != ports::OK)
          return ports::ErrorToStatus(rv, "get message");
        if (!message)
          break;
        const ports::UserMessage& m = message->message();
        consume(std::span<const uint8_t>(m.data(), m.size()));
        ++n;
      }
      if (n > 0)
        return n;
      if (polls < kSpinPolls) {
        ++polls;
        sched_yield();
      } else {
        waiter_->WaitChange(seen);
      }
    }
  }

  Counters GetCounters() const {
    channel::ProcessStats stats = process_->GetStats();
    Counters out;
    out.emplace_back("peer_deaths", stats.router.peer_deaths);
    out.emplace_back("peers_dropped", stats.router.peers_dropped);
    for (const channel::LinkStats& link : stats.router.links) {
      out.emplace_back("overflow_high_water", link.overflow_high_water);
      out.emplace_back("fragments_sent", link.fragments_sent);
      out.emplace_back("fragments_received", link.fragments_received);
      out.emplace_back("data_wakes_issued", link.data_wakes_issued);
      out.emplace_back("data_wakes_avoided", link.data_wakes_avoided);
      out.emplace_back("space_wakes_issued", link.space_wakes_issued);
    }
    return out;
  }

 private:
  ProcessTransport(std::unique_ptr<channel::Process> process, size_t size)
      : process_(std::move(process)),
        node_(&process_->node()),
        waiter_(std::make_unique<StatusWaiter>(*process_)),
        window_(std::max<size_t>(8, kWindowBytes / std::max<size_t>(size, 1))),
        check_every_(size >= 4096 ? 1 : 32) {}

  Status SetPort(const ports::PortRef& port) {
    port_ = port;
    int rv = node_->SetAcknowledgeRequestInterval(
        port, std::max<uint64_t>(1, window_ / 4));
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "set acknowledge interval");
    return Status::Ok();
  }

  // Waits while more than a window of sent messages is unread by the peer.
  Status WaitForWindow() {
    if (sent_ % check_every_ != 0)
      return Status::Ok();
    for (;;) {
      const uint64_t seen = waiter_->generation();
      ports::PortStatus status;
      int rv = node_->GetStatus(*port_, &status);
      if (rv != ports::OK)
        return ports::ErrorToStatus(rv, "port status");
      if (status.peer_closed)
        return PeerClosedError("peer closed the port");
      if (status.unacknowledged_message_count < window_)
        return Status::Ok();
      waiter_->WaitChange(seen);
    }
  }

  std::unique_ptr<channel::Process> process_;
  ports::Node* node_;
  std::unique_ptr<StatusWaiter> waiter_;
  const size_t window_;
  const uint64_t check_every_;
  std::optional<ports::PortRef> port_;
  uint64_t sent_ = 0;
  std::thread connect_thread_;
  std::optional<Result<channel::ConnectedPeer>> connected_;
};

}  // namespace

std::unique_ptr<Subject> MakeProcessSubject() {
  return MakeTransportSubject<ProcessTransport>(
      {.name = "process",
       .description = "channel::Process pair: Node::SendUserMessage, Router, "
                      "rings, io_uring; receiver spins then sleeps",
       .round_trip = true,
       .one_way = true,
       .max_size = kMaxMessage,
       // Opt-in until the teardown deadlock is fixed in channel/ (see the
       // README): a trial's ~Process can hang with its io thread blocked in
       // Node::LostConnectionToNode.
       .opt_in = true});
}

}  // namespace shmports::bench
