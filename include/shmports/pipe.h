// Pipe: one end of a two-ended message route between shmports nodes (a
// Mojo message pipe). Messages are bytes plus attached pipes; they arrive in
// the order sent; the other end's closure (or its process's death) is seen
// as peer_closed after everything sent before it has been received.
//
// A Pipe comes from Process::CreatePipe() (both ends in this process; send
// one end to another process inside a message), from
// OutgoingInvitation/IncomingInvitation (invitation.h), or from a received
// message. It is move-only; destroying it (or Close()) closes this end.
//
// Threads: every method may be called from any thread, concurrently. The
// readable callback runs on the owning Process's io thread with no shmports
// lock held; from there the non-waiting methods (Send, Receive(), GetStatus,
// Close, SetReadableCallback) work and the waiting ones answer
// kFailedPrecondition (the io thread is the one that would wake them).
//
// Lifetime: a Pipe refers to its Process but does not keep it alive. Once
// the Process is destroyed every call answers kFailedPrecondition. In a
// child created by fork() the parent's pipes answer kFailedPrecondition.
#ifndef SHMPORTS_PIPE_H_
#define SHMPORTS_PIPE_H_

#include <shmports/status.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace shmports {

namespace api_internal {
struct PipeState;
}  // namespace api_internal

class Pipe;

// One received message: its bytes and the pipes that travelled with it (now
// owned by the receiver).
struct PipeMessage {
  std::vector<uint8_t> bytes;
  std::vector<Pipe> pipes;

  std::string_view text() const {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
};

// A snapshot of one end.
struct PipeStatus {
  // The other end is closed (or its process is gone) and nothing more will
  // arrive; messages already queued can still be received.
  bool peer_closed = false;
  // Received, not yet read.
  size_t queued_messages = 0;
  size_t queued_bytes = 0;
  // Sent from this end and not yet acknowledged as read by the other end.
  // Acknowledgements are requested only while they matter (past half the
  // quota, see PipeQuota), so these may stay high after the reader caught
  // up; the bytes are counted only while a quota applies (a user quota, or
  // the other end is in another process).
  size_t unacknowledged_messages = 0;
  size_t unacknowledged_bytes = 0;
};

// Credit for one sending end: how much it may have sent that the other end
// has not yet read. The reader's reads come back as acknowledgements and
// restore credit. 0 means unlimited. One message is always allowed when
// nothing is unacknowledged, however large. Bytes are payload bytes.
//
// Default: when the other end is in another process, that process's receive
// caps apply (the per-pipe queued messages and bytes it announced when the
// processes connected; ProcessOptions sets ours). It enforces them: a sender
// past them is cut off as violating, so Send never exceeds them, with or
// without SetQuota. A quota set with SetQuota applies as the lower of the
// two, per field. Caveats: a pipe that arrived inside a message does not
// know what its previous holder left unread; until a message sent from here
// is acknowledged it counts the other process's caps at half. While the
// other end is travelling (just sent inside a message from this process),
// its destination is not known yet: the lowest caps of this process and the
// processes connected to it apply until it is.
//
// Acknowledgements cost events, so they are requested only once the
// unacknowledged messages or bytes pass half the quota (every half of the
// unacknowledged messages from then on, until they fall below a quarter): a
// request-reply exchange that never comes near the quota carries no extra
// event. Credit therefore returns in steps, at the latest once the reader
// has read everything this end sent: a reader must not wait for a message
// the sender cannot send before it has read what is queued.
struct PipeQuota {
  size_t max_unacknowledged_messages = 0;
  size_t max_unacknowledged_bytes = 0;
};

// How a waiting Receive waits.
enum class WaitMode : uint8_t {
  // Spin for a short bounded budget (kSpinBudget), then sleep until woken.
  kDefault,
  // Spin until a message arrives or the deadline passes; burns a core.
  kBusyPoll,
  // Sleep at once until woken.
  kBlocking,
};

class Pipe {
 public:
  // Largest payload of one message (large ones travel as fragments). Send
  // refuses larger ones (kInvalidArgument) rather than lose them in transit.
  static constexpr size_t kMaxMessageBytes = size_t{60} << 20;
  // Most pipes attached to one message.
  static constexpr size_t kMaxAttachedPipes = 64;
  // How long kDefault spins before it sleeps.
  static constexpr std::chrono::microseconds kSpinBudget{50};

  // Invalid: every call answers kFailedPrecondition.
  Pipe();
  Pipe(Pipe&& other) noexcept;
  Pipe& operator=(Pipe&& other) noexcept;  // Closes what this held.
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe();  // Close().

  bool is_valid() const { return state_ != nullptr; }

  // Sends `bytes` with `pipes` attached (not this pipe). Once the message is
  // handed over the attached pipes are consumed and `pipes` is cleared, even
  // if the node then refuses it (they are closed, as Mojo does); when Send
  // refuses up front (kResourceExhausted, kInvalidArgument,
  // kFailedPrecondition) they stay in `pipes` for a retry. Never blocks: a full
  // ring queues inside shmports. Errors: kResourceExhausted (credit is spent
  // — the quota, by default the other process's receive caps, see PipeQuota:
  // nothing was sent; retry once the reader has caught up, or use the
  // waiting Send below), kPeerClosed (the other end is closed: the message is
  // dropped), kInvalidArgument (too large, too many or invalid pipes, the
  // pipe's own peer attached), kFailedPrecondition (closed/invalid pipe,
  // Process gone, forked child). Refusals other than kPeerClosed count in
  // ProcessStats::send_rejections.
  Status Send(std::span<const uint8_t> bytes, std::vector<Pipe>&& pipes = {});
  Status Send(std::string_view text, std::vector<Pipe>&& pipes = {});

  // As Send, but when credit is spent it waits for the reader to catch up
  // (acknowledgements restore credit) instead of refusing. Returns when the
  // message is sent, or with the other end closed (kPeerClosed), this end
  // closed or its Process destroyed (kFailedPrecondition), or at `deadline`
  // with credit still spent (kResourceExhausted: nothing was sent, the
  // attached pipes stay in `pipes`). kFailedPrecondition at once when called
  // on the io thread (from a readable callback): the io thread is the one
  // that would bring the credit back.
  Status Send(std::span<const uint8_t> bytes,
              std::vector<Pipe>&& pipes,
              std::chrono::steady_clock::time_point deadline);
  Status Send(std::string_view text,
              std::vector<Pipe>&& pipes,
              std::chrono::steady_clock::time_point deadline);
  Status Send(std::span<const uint8_t> bytes,
              std::vector<Pipe>&& pipes,
              std::chrono::nanoseconds timeout);
  Status Send(std::string_view text,
              std::vector<Pipe>&& pipes,
              std::chrono::nanoseconds timeout);

  // The next message, without waiting. kUnavailable when none is queued,
  // kPeerClosed once the other end is closed and everything it sent has been
  // received.
  Result<PipeMessage> Receive();

  // Waits up to `deadline` for the next message (kUnavailable at the
  // deadline). kFailedPrecondition when called on the io thread (from a
  // readable callback).
  Result<PipeMessage> Receive(std::chrono::steady_clock::time_point deadline,
                              WaitMode mode = WaitMode::kDefault);
  Result<PipeMessage> Receive(std::chrono::nanoseconds timeout,
                              WaitMode mode = WaitMode::kDefault);

  // `callback` runs on the io thread whenever this end's status may have
  // changed (a message arrived, the peer closed), and once soon after it is
  // set. Calls may be spurious or coalesced: read with Receive() until
  // kUnavailable. Replaces the previous callback; an empty function removes
  // it. A callback may destroy its own pipe: the function object is kept
  // until the call returns.
  Status SetReadableCallback(std::function<void()> callback);

  // Sets this end's sending quota (see PipeQuota; it combines with the
  // other process's receive caps). A quota of zeros removes it (the caps
  // still apply). With several threads sending on one end the byte count
  // may overstate by the messages in flight, never understate.
  Status SetQuota(const PipeQuota& quota);

  Result<PipeStatus> GetStatus() const;

  // Closes this end (the peer sees peer_closed after every message sent
  // before). Idempotent; the Pipe becomes invalid.
  void Close();

 private:
  friend struct api_internal::PipeState;
  explicit Pipe(std::shared_ptr<api_internal::PipeState> state);
  // Send; `wait`: the waiting form, until `deadline`.
  Status SendImpl(std::span<const uint8_t> bytes,
                  std::vector<Pipe>& pipes,
                  bool wait,
                  std::chrono::steady_clock::time_point deadline);

  std::shared_ptr<api_internal::PipeState> state_;
};

}  // namespace shmports

#endif  // SHMPORTS_PIPE_H_
