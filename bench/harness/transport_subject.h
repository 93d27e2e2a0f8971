// TransportSubject<T>: turns a Transport (see subject.h) into a Subject by
// instantiating the harness's measured loops over it. The loops live here,
// not in the transports, so every subject is measured the same way:
//
//   round trip  parent: stamp seq, Send; Receive 1, verify body and seq;
//               after an untimed warm-up, every trip is timed with
//               TripClock (one read per trip: the end of one starts the
//               next).
//               Peer: Receive 1, verify, Send the same seq back.
//   one way     parent: Send seq 0, 1, ... (clock checked every 64
//               messages). Peer: Receive in batches, verify each body,
//               require consecutive numbers.
//   both        end with kStopSeq, which the peer echoes (round trip) or
//               takes as the end (one way) before it reports its counts in
//               the control block.
#ifndef SHMPORTS_BENCH_HARNESS_TRANSPORT_SUBJECT_H_
#define SHMPORTS_BENCH_HARNESS_TRANSPORT_SUBJECT_H_

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "bench/harness/clock.h"
#include "bench/harness/control_block.h"
#include "bench/harness/payload.h"
#include "bench/harness/subject.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"

namespace shmports::bench {

// How many messages the one-way receiver takes per Receive call.
inline constexpr size_t kReceiveBatch = 256;

template <Transport T>
Result<RoundTripOutcome> RunRoundTripLoop(T& t,
                                          const PayloadPattern& payload,
                                          const TrialParams& params) {
  RoundTripOutcome out;
  const size_t size = payload.size();
  uint64_t seq = 0;
  auto trip = [&]() -> Status {
    SHMPORTS_RETURN_IF_ERROR(t.Send(size, [&](std::span<uint8_t> bytes) {
      payload.Write(bytes, seq);
      if (seq == params.corrupt_at)
        bytes.back() ^= 1;
    }));
    uint64_t got = 0;
    bool body_ok = false;
    SHMPORTS_ASSIGN_OR_RETURN(size_t n,
                              t.Receive(1, [&](std::span<const uint8_t> bytes) {
                                body_ok = payload.Verify(bytes, &got);
                              }));
    ++out.messages;
    if (n != 1 || !body_ok || got != seq)
      ++out.reply_errors;
    ++seq;
    return Status::Ok();
  };

  while (seq < params.warmup_messages)
    SHMPORTS_RETURN_IF_ERROR(trip());
  const uint64_t limit = params.warmup_messages + params.max_messages;
  out.samples_ns.reserve(std::min<uint64_t>(params.max_messages, 1u << 20));
  // Every trip timed: the end of one is the start of the next, so each
  // sample includes exactly one clock read (TripClock::ReadCostNs()).
  const uint64_t end_ns = MonotonicNanos() + params.duration_ns;
  uint64_t t0 = TripClock::Now();
  while (seq < limit) {
    SHMPORTS_RETURN_IF_ERROR(trip());
    const uint64_t t1 = TripClock::Now();
    out.samples_ns.push_back(t1 - t0);
    t0 = t1;
    if ((seq & 63) == 0 && MonotonicNanos() >= end_ns)
      break;
  }
  for (uint64_t& sample : out.samples_ns)
    sample = TripClock::ToNanos(sample);

  SHMPORTS_RETURN_IF_ERROR(t.Send(
      size, [&](std::span<uint8_t> bytes) { payload.Write(bytes, kStopSeq); }));
  uint64_t got = 0;
  SHMPORTS_RETURN_IF_ERROR(t.Receive(1, [&](std::span<const uint8_t> bytes) {
                              payload.Verify(bytes, &got);
                            }).status());
  if (got != kStopSeq)
    ++out.reply_errors;
  return out;
}

template <Transport T>
Result<OneWayOutcome> RunOneWaySendLoop(T& t,
                                        const PayloadPattern& payload,
                                        const TrialParams& params) {
  OneWayOutcome out;
  const size_t size = payload.size();
  const uint64_t end = MonotonicNanos() + params.duration_ns;
  uint64_t seq = 0;
  while (seq < params.max_messages) {
    if (seq == params.skip_at)
      ++seq;
    SHMPORTS_RETURN_IF_ERROR(t.Send(size, [&](std::span<uint8_t> bytes) {
      payload.Write(bytes, seq);
      if (seq == params.corrupt_at)
        bytes.back() ^= 1;
    }));
    ++seq;
    if ((seq & 63) == 0 && MonotonicNanos() >= end)
      break;
  }
  SHMPORTS_RETURN_IF_ERROR(t.Send(
      size, [&](std::span<uint8_t> bytes) { payload.Write(bytes, kStopSeq); }));
  // A transport that batches publishes what it holds back.
  if constexpr (requires(T & x) {
                  { x.Flush() } -> std::same_as<Status>;
                }) {
    SHMPORTS_RETURN_IF_ERROR(t.Flush());
  }
  out.messages = seq;
  return out;
}

template <Transport T>
Status RunRoundTripPeerLoop(T& t,
                            const PayloadPattern& payload,
                            ControlBlock* control) {
  const size_t size = payload.size();
  uint64_t expected = 0;
  uint64_t received = 0, checksum_errors = 0, order_errors = 0;
  for (;;) {
    uint64_t got = 0;
    bool body_ok = false;
    SHMPORTS_ASSIGN_OR_RETURN(size_t n,
                              t.Receive(1, [&](std::span<const uint8_t> bytes) {
                                body_ok = payload.Verify(bytes, &got);
                              }));
    if (n != 1)
      return InternalError("round trip: Receive returned no message");
    if (!body_ok)
      ++checksum_errors;
    if (got != kStopSeq) {
      if (got != expected)
        ++order_errors;
      expected = got + 1;
      ++received;
    }
    SHMPORTS_RETURN_IF_ERROR(t.Send(
        size, [&](std::span<uint8_t> bytes) { payload.Write(bytes, got); }));
    if (got == kStopSeq)
      break;
  }
  control->messages_received = received;
  control->bytes_received = received * size;
  control->checksum_errors = checksum_errors;
  control->order_errors = order_errors;
  return Status::Ok();
}

template <Transport T>
Status RunOneWayPeerLoop(T& t,
                         const PayloadPattern& payload,
                         ControlBlock* control) {
  const size_t size = payload.size();
  uint64_t expected = 0;
  bool stop = false;
  uint64_t received = 0, checksum_errors = 0, order_errors = 0;
  while (!stop) {
    SHMPORTS_RETURN_IF_ERROR(
        t.Receive(kReceiveBatch, [&](std::span<const uint8_t> bytes) {
           uint64_t got = 0;
           if (!payload.Verify(bytes, &got))
             ++checksum_errors;
           if (stop) {
             ++order_errors;  // Anything after the stop message.
           } else if (got == kStopSeq) {
             stop = true;
           } else {
             if (got != expected)
               ++order_errors;
             expected = got + 1;
             ++received;
           }
         }).status());
  }
  control->messages_received = received;
  control->bytes_received = received * size;
  control->checksum_errors = checksum_errors;
  control->order_errors = order_errors;
  return Status::Ok();
}

template <Transport T>
class TransportEndpoint final : public ParentEndpoint {
 public:
  explicit TransportEndpoint(std::unique_ptr<T> t) : t_(std::move(t)) {}

  Status AfterPeerReady() override {
    if constexpr (requires(T & x) {
                    { x.AfterPeerReady() } -> std::same_as<Status>;
                  }) {
      return t_->AfterPeerReady();
    } else {
      return Status::Ok();
    }
  }
  Counters GetCounters() const override {
    if constexpr (requires(const T& x) {
                    { x.GetCounters() } -> std::same_as<Counters>;
                  }) {
      return t_->GetCounters();
    } else {
      return {};
    }
  }
  Result<RoundTripOutcome> RunRoundTrips(const PayloadPattern& payload,
                                         const TrialParams& params) override {
    return RunRoundTripLoop(*t_, payload, params);
  }
  Result<OneWayOutcome> SendOneWay(const PayloadPattern& payload,
                                   const TrialParams& params) override {
    return RunOneWaySendLoop(*t_, payload, params);
  }

 private:
  std::unique_ptr<T> t_;
};

template <Transport T>
class TransportSubject final : public Subject {
 public:
  TransportSubject(SubjectInfo info, typename T::Options options)
      : Subject(std::move(info)), options_(std::move(options)) {}

  Result<std::unique_ptr<ParentEndpoint>> CreateParent(
      const TrialParams& params,
      Handoff* handoff) const override {
    SHMPORTS_ASSIGN_OR_RETURN(std::unique_ptr<T> t,
                              T::CreateParent(options_, params, handoff));
    return std::unique_ptr<ParentEndpoint>(
        new TransportEndpoint<T>(std::move(t)));
  }

  Status RunPeer(const TrialParams& params,
                 const Handoff& handoff,
                 ControlBlock* control) const override {
    SHMPORTS_ASSIGN_OR_RETURN(std::unique_ptr<T> t,
                              T::CreatePeer(options_, params, handoff));
    control->peer_cpu = sched_getcpu();
    PublishPeerState(control, PeerState::kReady);
    if (params.peer_stalls) {
      for (;;)
        pause();  // Until the harness kills us.
    }
    const PayloadPattern payload(params.seed, PayloadBytes(params.size));
    if (params.pattern == Pattern::kRoundTrip) {
      SHMPORTS_RETURN_IF_ERROR(RunRoundTripPeerLoop(*t, payload, control));
    } else {
      SHMPORTS_RETURN_IF_ERROR(RunOneWayPeerLoop(*t, payload, control));
    }
    PublishPeerState(control, PeerState::kDone);
    return Status::Ok();
  }

 private:
  typename T::Options options_;
};

template <Transport T>
std::unique_ptr<Subject> MakeTransportSubject(
    SubjectInfo info,
    typename T::Options options = {}) {
  return std::make_unique<TransportSubject<T>>(std::move(info),
                                               std::move(options));
}

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_TRANSPORT_SUBJECT_H_
