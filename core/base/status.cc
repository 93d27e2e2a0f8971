#include "core/base/status.h"

namespace shmports {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kNotFound:
      return "not found";
    case StatusCode::kAlreadyExists:
      return "already exists";
    case StatusCode::kFailedPrecondition:
      return "failed precondition";
    case StatusCode::kResourceExhausted:
      return "resource exhausted";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kPeerClosed:
      return "peer closed";
    case StatusCode::kProtocolViolation:
      return "protocol violation";
    case StatusCode::kCorrupt:
      return "corrupt";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown status code";
}

Status::Status(StatusCode code, std::string_view message) {
  if (code == StatusCode::kOk)
    return;
  rep_ = std::make_unique<Rep>(Rep{code, 0, std::string(message)});
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) {
    rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  }
  return *this;
}

std::string_view Status::message() const {
  if (!rep_)
    return {};
  return std::string_view(rep_->text).substr(rep_->message_offset);
}

Status& Status::AddContext(std::string_view context) & {
  if (!rep_ || context.empty())
    return *this;
  std::string text;
  text.reserve(context.size() + 2 + rep_->text.size());
  text.append(context).append(": ").append(rep_->text);
  rep_->message_offset += context.size() + 2;
  rep_->text = std::move(text);
  return *this;
}

Status&& Status::WithContext(std::string_view context) && {
  AddContext(context);
  return std::move(*this);
}

const std::string& Status::text() const {
  static const std::string kEmpty;
  return rep_ ? rep_->text : kEmpty;
}

std::string Status::ToString() const {
  if (!rep_)
    return "ok";
  std::string out = StatusCodeName(rep_->code);
  if (!rep_->text.empty())
    out.append(": ").append(rep_->text);
  return out;
}

Status InvalidArgumentError(std::string_view m) {
  return Status(StatusCode::kInvalidArgument, m);
}
Status NotFoundError(std::string_view m) {
  return Status(StatusCode::kNotFound, m);
}
Status AlreadyExistsError(std::string_view m) {
  return Status(StatusCode::kAlreadyExists, m);
}
Status FailedPreconditionError(std::string_view m) {
  return Status(StatusCode::kFailedPrecondition, m);
}
Status ResourceExhaustedError(std::string_view m) {
  return Status(StatusCode::kResourceExhausted, m);
}
Status UnavailableError(std::string_view m) {
  return Status(StatusCode::kUnavailable, m);
}
Status PeerClosedError(std::string_view m) {
  return Status(StatusCode::kPeerClosed, m);
}
Status ProtocolViolationError(std::string_view m) {
  return Status(StatusCode::kProtocolViolation, m);
}
Status CorruptError(std::string_view m) {
  return Status(StatusCode::kCorrupt, m);
}
Status InternalError(std::string_view m) {
  return Status(StatusCode::kInternal, m);
}

}  // namespace shmports
