// Result codes of the ports layer and the outcome of Node::AcceptEvent.
//
// The API methods of Node return Mojo's error codes (an int, 0 = OK), plus
// the codes Mojo lacks because it crashes instead: an invalid argument (a null
// PortRef, an attached port that does not exist), resource exhaustion and
// protocol violations. ErrorCodeName gives a readable name; ErrorToStatus maps
// a code onto the library-wide StatusCode for layers above:
//
//   OK                          -> kOk
//   ERROR_PORT_UNKNOWN          -> kNotFound
//   ERROR_PORT_EXISTS           -> kAlreadyExists
//   ERROR_PORT_STATE_UNEXPECTED -> kFailedPrecondition
//   ERROR_PORT_CANNOT_SEND_SELF -> kInvalidArgument
//   ERROR_PORT_PEER_CLOSED      -> kPeerClosed
//   ERROR_PORT_CANNOT_SEND_PEER -> kInvalidArgument
//   ERROR_NOT_IMPLEMENTED       -> kProtocolViolation (an unknown event type)
//   ERROR_INVALID_ARGUMENT      -> kInvalidArgument
//   ERROR_RESOURCE_EXHAUSTED    -> kResourceExhausted
//   ERROR_PROTOCOL_VIOLATION    -> kProtocolViolation
//   anything else               -> kInternal
#ifndef SHMPORTS_CORE_PORTS_ERROR_H_
#define SHMPORTS_CORE_PORTS_ERROR_H_

#include <string_view>

#include "core/base/status.h"

namespace shmports::ports {

// Mojo's names and values; the last three are ours.
enum ErrorCode : int {
  OK = 0,
  ERROR_PORT_UNKNOWN = -10,
  ERROR_PORT_EXISTS = -11,
  ERROR_PORT_STATE_UNEXPECTED = -12,
  ERROR_PORT_CANNOT_SEND_SELF = -13,
  ERROR_PORT_PEER_CLOSED = -14,
  ERROR_PORT_CANNOT_SEND_PEER = -15,
  ERROR_NOT_IMPLEMENTED = -100,
  ERROR_INVALID_ARGUMENT = -101,
  ERROR_RESOURCE_EXHAUSTED = -102,
  ERROR_PROTOCOL_VIOLATION = -103,
};

// "ERROR_PORT_PEER_CLOSED", or "ERROR_<unknown>" for a value not listed.
const char* ErrorCodeName(int code);

// See the table in the file comment.
StatusCode ErrorToStatusCode(int code);

// OK for OK; otherwise a Status with the mapped code, `context` and the
// code's name.
Status ErrorToStatus(int code, std::string_view context);

// What Node::AcceptEvent made of one event. Cheap to return: an enum and a
// pointer to a string that outlives the call.
//
//  - kOk: handled (or buffered until its turn).
//  - kIgnored: a normal race, not the sender's fault — the target port is
//    gone or stale. The event changed nothing.
//  - kViolation: no honest peer sends this. `reason` says what was wrong. The
//    node changed nothing it should not have; the embedder should drop the
//    sending node.
struct AcceptResult {
  enum class Kind : unsigned char { kOk, kIgnored, kViolation };

  static constexpr AcceptResult Ok() { return {Kind::kOk, nullptr}; }
  static constexpr AcceptResult Ignored(const char* why) {
    return {Kind::kIgnored, why};
  }
  static constexpr AcceptResult Violation(const char* why) {
    return {Kind::kViolation, why};
  }

  bool ok() const { return kind == Kind::kOk; }
  bool ignored() const { return kind == Kind::kIgnored; }
  bool violation() const { return kind == Kind::kViolation; }

  // "ok", "ignored: <reason>" or "violation: <reason>".
  std::string ToString() const;

  Kind kind = Kind::kOk;
  // Null for kOk. A static string, except for a violation that carries
  // figures (Node's per-port queue caps): that points at a thread-local
  // buffer valid until the calling thread's next such violation — copy it
  // (ToString does) to keep it.
  const char* reason = nullptr;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_ERROR_H_
