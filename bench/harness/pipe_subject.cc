#include "bench/harness/pipe_subject.h"

#include <sched.h>
#include <shmports/invitation.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "bench/harness/transport_subject.h"
#include "core/base/str_format.h"

namespace shmports::bench {
namespace {

// The name the harness attaches its pipe under.
constexpr char kPipeName[] = "bench";
// Longest single busy-poll Receive before the waiter yields (see the
// header): short against a trial, long against a 64 B round trip.
constexpr std::chrono::microseconds kBusySlice{50};
// Longest single sleeping Receive; a stuck trial is the watchdog's.
constexpr std::chrono::seconds kSleepSlice{1};
// Most messages a --pipe-window quota allows: half the receive cap a
// Process announces by default (ProcessOptions::max_queued_messages_per_pipe,
// 65536), so a small-message window cannot make the sender a violator.
constexpr size_t kMaxWindowMessages = 32768;

class PipeTransport {
 public:
  struct Options {
    WaitMode mode = WaitMode::kDefault;
  };

  static Result<std::unique_ptr<PipeTransport>> CreateParent(
      const Options& options,
      const TrialParams& params,
      Handoff* handoff) {
    SHMPORTS_ASSIGN_OR_RETURN(std::unique_ptr<Process> process,
                              Process::Create());
    auto t = std::unique_ptr<PipeTransport>(new PipeTransport(options));
    t->process_ = std::move(process);
    t->invitation_ = std::make_unique<OutgoingInvitation>(*t->process_);
    SHMPORTS_ASSIGN_OR_RETURN(t->pipe_, t->invitation_->AttachPipe(kPipeName));
    if (params.pipe_window_bytes != 0) {
      const size_t size = std::max<size_t>(params.size, 1);
      SHMPORTS_RETURN_IF_ERROR(t->pipe_.SetQuota(
          {.max_unacknowledged_messages = std::clamp<size_t>(
               static_cast<size_t>(params.pipe_window_bytes) / size, 2,
               kMaxWindowMessages)}));
    }
    // Launch runs the handshake, which the peer completes in CreatePeer,
    // before it reports ready.
    handoff->launch = [raw = t.get()](const std::vector<std::string>& argv)
        -> Result<std::unique_ptr<PeerProcess>> {
      SHMPORTS_ASSIGN_OR_RETURN(raw->child_, raw->invitation_->Launch(argv));
      return PeerProcess::Adopt(raw->child_.pid());
    };
    return t;
  }

  static Result<std::unique_ptr<PipeTransport>>
  CreatePeer(const Options& options, const TrialParams&, const Handoff&) {
    auto t = std::unique_ptr<PipeTransport>(new PipeTransport(options));
    SHMPORTS_ASSIGN_OR_RETURN(IncomingInvitation invitation,
                              AcceptInvitation());
    t->incoming_ = std::make_unique<IncomingInvitation>(std::move(invitation));
    SHMPORTS_ASSIGN_OR_RETURN(t->pipe_, t->incoming_->ExtractPipe(kPipeName));
    return t;
  }

  PipeTransport(const PipeTransport&) = delete;
  PipeTransport& operator=(const PipeTransport&) = delete;
  ~PipeTransport() {
    // The pipe before the Process it belongs to (members are destroyed in
    // reverse order, but say it).
    pipe_.Close();
  }

  template <typename Fill>
  Status Send(size_t size, Fill&& fill) {
    buffer_.resize(size);
    fill(std::span<uint8_t>(buffer_.data(), size));
    const std::span<const uint8_t> bytes(buffer_.data(), size);
    Status s = pipe_.Send(bytes);
    while (s.code() == StatusCode::kResourceExhausted) {
      // Out of credit: the reader has not caught up and nothing was sent.
      // Wait for it in the waiting Send (woken as acknowledgements bring
      // credit back); a stuck trial is the watchdog's.
      ++credit_waits_;
      s = pipe_.Send(bytes, {}, std::chrono::nanoseconds(kSleepSlice));
    }
    if (s.ok())
      return s;
    return std::move(s).WithContext("pipe send");
  }

  template <typename Consume>
  Result<size_t> Receive(size_t max, Consume&& consume) {
    size_t n = 0;
    while (n < max) {
      Result<PipeMessage> m = n == 0 ? WaitOne() : pipe_.Receive();
      if (!m.ok()) {
        if (n > 0 && m.status().code() == StatusCode::kUnavailable)
          break;
        return std::move(m).TakeStatus().WithContext("pipe receive");
      }
      consume(std::span<const uint8_t>(m->bytes.data(), m->bytes.size()));
      ++n;
    }
    return n;
  }

  Counters GetCounters() const {
    Counters out;
    out.emplace_back("credit_waits", credit_waits_);
    if (process_) {
      auto stats = process_->GetStats();
      if (stats.ok()) {
        out.emplace_back("messages_sent", stats->messages_sent);
        out.emplace_back("messages_received", stats->messages_received);
        out.emplace_back("send_rejections", stats->send_rejections);
        out.emplace_back("peer_deaths", stats->peer_deaths);
        out.emplace_back("peers_dropped", stats->peers_dropped);
        out.emplace_back("peers_dropped_for_caps",
                         stats->peers_dropped_for_caps);
      }
    }
    return out;
  }

 private:
  explicit PipeTransport(const Options& options) : mode_(options.mode) {}

  // The next message, waiting as the subject's mode does.
  Result<PipeMessage> WaitOne() {
    for (;;) {
      Result<PipeMessage> m =
          mode_ == WaitMode::kBusyPoll
              ? pipe_.Receive(std::chrono::nanoseconds(kBusySlice), mode_)
              : pipe_.Receive(std::chrono::nanoseconds(kSleepSlice), mode_);
      if (m.ok() || m.status().code() != StatusCode::kUnavailable)
        return m;
      if (mode_ == WaitMode::kBusyPoll)
        sched_yield();
    }
  }

  const WaitMode mode_;
  // Parent.
  std::unique_ptr<Process> process_;
  std::unique_ptr<OutgoingInvitation> invitation_;
  LaunchedChild child_;
  // Peer: owns the peer's Process.
  std::unique_ptr<IncomingInvitation> incoming_;
  Pipe pipe_;
  std::vector<uint8_t> buffer_;
  uint64_t credit_waits_ = 0;
};

SubjectInfo ApiInfo(const char* name, const char* description, bool one_way) {
  return {.name = name,
          .description = description,
          .round_trip = true,
          .one_way = one_way,
          .max_size = Pipe::kMaxMessageBytes,
          // Measured on request (-s, or the pipe-targets command): each
          // trial launches a child through an invitation and joins two
          // Processes, and a default run stays short.
          .opt_in = true};
}

}  // namespace

std::unique_ptr<Subject> MakeApiBusySubject() {
  return MakeTransportSubject<PipeTransport>(
      ApiInfo("api-busy",
              "shmports::Pipe Send -> Receive(kBusyPoll), child launched "
              "with an Invitation",
              /*one_way=*/false),
      {.mode = WaitMode::kBusyPoll});
}

std::unique_ptr<Subject> MakeApiDefaultSubject() {
  return MakeTransportSubject<PipeTransport>(
      ApiInfo("api-default",
              "shmports::Pipe Send -> Receive(kDefault: spin, then sleep), "
              "child launched with an Invitation",
              /*one_way=*/true),
      {.mode = WaitMode::kDefault});
}

std::unique_ptr<Subject> MakeApiBlockingSubject() {
  return MakeTransportSubject<PipeTransport>(
      ApiInfo("api-blocking",
              "shmports::Pipe Send -> Receive(kBlocking), child launched "
              "with an Invitation",
              /*one_way=*/false),
      {.mode = WaitMode::kBlocking});
}

}  // namespace shmports::bench
