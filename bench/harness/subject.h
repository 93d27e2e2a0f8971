// Subjects: the things the harness measures between two processes, and the
// one interface every later figure plugs into.
//
// A subject is usually a Transport: a small class that carries messages one
// way or both ways between the harness (the "parent") and its peer process,
// which the harness launches by fork+exec of its own binary in a peer role.
// The harness core owns everything else — launching, pinning, the clock,
// the payload, verification, the stop protocol, repetitions and ratios — so
// a new subject is one Transport class plus one line in catalog.cc:
//
//   struct MyTransport {
//     struct Options { ... };  // fixed per subject (e.g. busy-poll or sleep)
//     // Parent, before launch: create the resources and put what the peer
//     // needs into `handoff` (fds to inherit, short strings).
//     static Result<std::unique_ptr<MyTransport>> CreateParent(
//         const Options&, const TrialParams&, Handoff* handoff);
//     // Peer, after exec: connect to what the parent handed over.
//     static Result<std::unique_ptr<MyTransport>> CreatePeer(
//         const Options&, const TrialParams&, const Handoff& handoff);
//     // Sends one message of `size` bytes; calls `fill(span)` once with the
//     // writable bytes (in place where the transport allows it). May block
//     // or spin when the transport is full.
//     template <typename Fill> Status Send(size_t size, Fill&& fill);
//     // Waits (spins or sleeps, as the subject does) until at least one
//     // message arrived, calls `consume(span)` for each of at most `max`
//     // messages in order, and returns how many.
//     template <typename Consume>
//     Result<size_t> Receive(size_t max, Consume&& consume);
//     // Optional, parent only: called once the peer reported ready.
//     Status AfterPeerReady();
//     // Optional: publishes messages the transport held back (batching);
//     // called after the last one-way send.
//     Status Flush();
//     // Optional, parent only: the subject's own counters after the trial
//     // (e.g. the ring's publishes and wakes), copied into the JSON.
//     Counters GetCounters() const;
//   };
//
// Send and Receive are templates so the measured loop inlines them: at tens
// of millions of messages per second an indirect call per message would be
// part of the figure. Both are called from one thread per process.
#ifndef SHMPORTS_BENCH_HARNESS_SUBJECT_H_
#define SHMPORTS_BENCH_HARNESS_SUBJECT_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench/harness/control_block.h"
#include "bench/harness/launcher.h"
#include "bench/harness/payload.h"
#include "core/base/status.h"

namespace shmports::bench {

enum class Pattern : uint8_t {
  kRoundTrip,  // Parent sends, peer echoes; the parent times each trip.
  kOneWay,     // Parent sends as fast as it can; throughput to the peer.
};

const char* PatternName(Pattern pattern);  // "round-trip", "one-way"
Result<Pattern> ParsePattern(std::string_view text);

inline constexpr uint64_t kNoFault = ~uint64_t{0};

// One trial's parameters. The first three are the same in both processes
// (the launcher passes them on the peer's command line).
struct TrialParams {
  Pattern pattern = Pattern::kRoundTrip;
  size_t size = 64;  // Payload bytes per message (>= kMinPayload).
  uint64_t seed = 1;
  // Parent only.
  uint64_t duration_ns = 0;      // Stop sending after this long...
  uint64_t max_messages = 0;     // ...or after this many messages.
  uint64_t warmup_messages = 0;  // Round trips not sampled at the start.
  // Fault injection, to prove the checks fail when they should (parent
  // side): flip the last byte of message `corrupt_at`; skip sequence number
  // `skip_at` (one way only). kNoFault: off.
  uint64_t corrupt_at = kNoFault;
  uint64_t skip_at = kNoFault;
  // Peer side: stop answering once ready (tests the watchdog).
  bool peer_stalls = false;
  // Parent side, Pipe subjects: the sending end's quota in bytes of unread
  // messages (Pipe::SetQuota), 0: the library's default credit.
  uint64_t pipe_window_bytes = 0;
};

// What the parent hands its peer across exec.
struct Handoff {
  // The peer's ends: inherited by the peer under the same numbers, closed
  // in the parent once the peer is launched. Created close-on-exec.
  std::vector<int> fds;
  // Short strings without NUL (e.g. a queue name).
  std::vector<std::string> values;
  // Optional: the subject starts the peer itself, with this argv (the
  // harness's peer command line), e.g. through shmports::OutgoingInvitation,
  // which passes the child no descriptor but its own. Such a peer gets no
  // fds: it opens the control page through /proc/<harness>/fd/<n>, pins
  // itself and asks to die with the harness (--control-path, --cpu,
  // --parent-pid). Unset: the harness forks and executes the peer.
  std::function<Result<std::unique_ptr<PeerProcess>>(
      const std::vector<std::string>& argv)>
      launch;
};

// A subject's own counters, by name.
using Counters = std::vector<std::pair<std::string, uint64_t>>;

// Round trips seen by the parent.
struct RoundTripOutcome {
  uint64_t messages = 0;             // Round trips made, warm-up included.
  std::vector<uint64_t> samples_ns;  // One per timed round trip.
  uint64_t reply_errors = 0;         // Replies with a wrong body or number.
};

// Messages the parent sent one way (the stop message not counted).
struct OneWayOutcome {
  uint64_t messages = 0;
  uint64_t elapsed_ns = 0;  // Only set by local subjects.
};

struct SubjectInfo {
  std::string name;               // Command-line and JSON name: "ring-busy".
  std::string description;        // One line for --list and the report.
  bool baseline = false;          // A reference the subjects are compared with.
  bool round_trip = false;        // Supports Pattern::kRoundTrip.
  bool one_way = false;           // Supports Pattern::kOneWay.
  bool local = false;             // Runs in the parent alone (no peer).
  size_t max_size = SIZE_MAX;     // Largest message it can carry.
  size_t payload_cap = SIZE_MAX;  // Carries min(size, cap) payload bytes.
  // Left out of a run that names no subjects (-s): measured only on request.
  bool opt_in = false;
};

// The parent's side of one trial, built by Subject::CreateParent.
class ParentEndpoint {
 public:
  virtual ~ParentEndpoint() = default;
  virtual Status AfterPeerReady() = 0;
  virtual Counters GetCounters() const = 0;
  virtual Result<RoundTripOutcome> RunRoundTrips(const PayloadPattern& payload,
                                                 const TrialParams& params) = 0;
  // Sends until the duration or the message limit, then the stop message.
  virtual Result<OneWayOutcome> SendOneWay(const PayloadPattern& payload,
                                           const TrialParams& params) = 0;
};

// Type-erased subject held by the catalog. Immutable; shared by all trials.
class Subject {
 public:
  explicit Subject(SubjectInfo info) : info_(std::move(info)) {}
  virtual ~Subject() = default;
  Subject(const Subject&) = delete;
  Subject& operator=(const Subject&) = delete;

  const SubjectInfo& info() const { return info_; }
  bool Supports(Pattern pattern, size_t size) const;
  // Payload bytes per message when asked for `size`.
  size_t PayloadBytes(size_t size) const;

  // Parent: resources for one trial; `handoff` gets what the peer needs.
  virtual Result<std::unique_ptr<ParentEndpoint>> CreateParent(
      const TrialParams& params,
      Handoff* handoff) const;
  // Peer: connects, publishes kReady, serves the trial, fills the result
  // fields of `control` and publishes kDone. On error returns it (the
  // caller publishes kFailed).
  virtual Status RunPeer(const TrialParams& params,
                         const Handoff& handoff,
                         ControlBlock* control) const;
  // Local subjects: one trial in this process.
  virtual Result<OneWayOutcome> RunLocal(const PayloadPattern& payload,
                                         const TrialParams& params) const;

 private:
  SubjectInfo info_;
};

// Probes for the Transport concept: a fill and a consume callback.
struct FillProbe {
  void operator()(std::span<uint8_t>) const {}
};
struct ConsumeProbe {
  void operator()(std::span<const uint8_t>) const {}
};

template <typename T>
concept Transport = requires(T& t,
                             const typename T::Options& options,
                             const TrialParams& params,
                             Handoff* out,
                             const Handoff& in,
                             size_t n) {
  {
    T::CreateParent(options, params, out)
    } -> std::same_as<Result<std::unique_ptr<T>>>;
  {
    T::CreatePeer(options, params, in)
    } -> std::same_as<Result<std::unique_ptr<T>>>;
  { t.Send(n, FillProbe{}) } -> std::same_as<Status>;
  { t.Receive(n, ConsumeProbe{}) } -> std::same_as<Result<size_t>>;
};

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_SUBJECT_H_
