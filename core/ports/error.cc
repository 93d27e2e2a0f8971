#include "core/ports/error.h"

#include <string>

namespace shmports::ports {

const char* ErrorCodeName(int code) {
  switch (code) {
    case OK:
      return "OK";
    case ERROR_PORT_UNKNOWN:
      return "ERROR_PORT_UNKNOWN";
    case ERROR_PORT_EXISTS:
      return "ERROR_PORT_EXISTS";
    case ERROR_PORT_STATE_UNEXPECTED:
      return "ERROR_PORT_STATE_UNEXPECTED";
    case ERROR_PORT_CANNOT_SEND_SELF:
      return "ERROR_PORT_CANNOT_SEND_SELF";
    case ERROR_PORT_PEER_CLOSED:
      return "ERROR_PORT_PEER_CLOSED";
    case ERROR_PORT_CANNOT_SEND_PEER:
      return "ERROR_PORT_CANNOT_SEND_PEER";
    case ERROR_NOT_IMPLEMENTED:
      return "ERROR_NOT_IMPLEMENTED";
    case ERROR_INVALID_ARGUMENT:
      return "ERROR_INVALID_ARGUMENT";
    case ERROR_RESOURCE_EXHAUSTED:
      return "ERROR_RESOURCE_EXHAUSTED";
    case ERROR_PROTOCOL_VIOLATION:
      return "ERROR_PROTOCOL_VIOLATION";
  }
  return "ERROR_<unknown>";
}

StatusCode ErrorToStatusCode(int code) {
  switch (code) {
    case OK:
      return StatusCode::kOk;
    case ERROR_PORT_UNKNOWN:
      return StatusCode::kNotFound;
    case ERROR_PORT_EXISTS:
      return StatusCode::kAlreadyExists;
    case ERROR_PORT_STATE_UNEXPECTED:
      return StatusCode::kFailedPrecondition;
    case ERROR_PORT_CANNOT_SEND_SELF:
    case ERROR_PORT_CANNOT_SEND_PEER:
    case ERROR_INVALID_ARGUMENT:
      return StatusCode::kInvalidArgument;
    case ERROR_PORT_PEER_CLOSED:
      return StatusCode::kPeerClosed;
    case ERROR_NOT_IMPLEMENTED:
    case ERROR_PROTOCOL_VIOLATION:
      return StatusCode::kProtocolViolation;
    case ERROR_RESOURCE_EXHAUSTED:
      return StatusCode::kResourceExhausted;
  }
  return StatusCode::kInternal;
}

Status ErrorToStatus(int code, std::string_view context) {
  if (code == OK)
    return Status();
  Status status(ErrorToStatusCode(code), ErrorCodeName(code));
  if (!context.empty())
    status.AddContext(context);
  return status;
}

std::string AcceptResult::ToString() const {
  switch (kind) {
    case Kind::kOk:
      return "ok";
    case Kind::kIgnored:
      return std::string("ignored: ") + (reason ? reason : "");
    case Kind::kViolation:
      return std::string("violation: ") + (reason ? reason : "");
  }
  return "?";
}

}  // namespace shmports::ports
