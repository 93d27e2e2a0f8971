// Status and Result<T>: the one error type of shmports.
//
// A Status is a StatusCode plus a chain of context strings. Each layer that
// passes an error upward adds what it was doing, so the final message reads
// outermost first: "connect to node 3F2A…: map segment: seals missing (…)".
// The chain is built only on the error path; an OK Status holds no heap memory.
//
// Result<T> holds either a T or a non-OK Status (std::expected is not
// available on both of our toolchains).
//
// This header is installed as <shmports/status.h>: it includes only standard
// headers. Both types are values; they are not thread-safe for concurrent
// mutation but may be copied and moved freely between threads.
#ifndef SHMPORTS_CORE_BASE_STATUS_H_
#define SHMPORTS_CORE_BASE_STATUS_H_

#include <cassert>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace shmports {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,     // The caller passed something that can never work.
  kNotFound,            // A named thing does not exist.
  kAlreadyExists,       // A name is already taken.
  kFailedPrecondition,  // Right call, wrong time or state (e.g. after fork).
  kResourceExhausted,   // A quota, budget, queue or system limit is reached.
  kUnavailable,         // Temporarily impossible; retrying may succeed.
  kPeerClosed,          // The other side is gone.
  kProtocolViolation,   // A peer sent something no honest peer sends.
  kCorrupt,             // Shared memory or a frame broke a layout rule.
  kInternal,            // A bug in shmports or an unexpected system error.
};

// Stable, human-readable name of a code ("kPeerClosed" -> "peer closed").
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  // OK.
  Status() = default;
  Status(StatusCode code, std::string_view message);

  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }

  // The innermost message, as given to the constructor.
  std::string_view message() const;

  // Prepends one layer of context. Returns *this for chaining:
  //   return std::move(s).WithContext("map segment");
  Status& AddContext(std::string_view context) &;
  Status&& WithContext(std::string_view context) &&;

  // "<code name>: <outermost context>: ... : <innermost message>"; "ok" when
  // OK.
  std::string ToString() const;

  // The context chain and message without the code name.
  const std::string& text() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.text() == b.text();
  }

 private:
  struct Rep {
    StatusCode code;
    size_t message_offset;  // Where the innermost message starts in `text`.
    std::string text;       // "ctx_n: ...: ctx_1: message".
  };
  std::unique_ptr<Rep> rep_;
};

// Convenience constructors, named for the code.
Status InvalidArgumentError(std::string_view message);
Status NotFoundError(std::string_view message);
Status AlreadyExistsError(std::string_view message);
Status FailedPreconditionError(std::string_view message);
Status ResourceExhaustedError(std::string_view message);
Status UnavailableError(std::string_view message);
Status PeerClosedError(std::string_view message);
Status ProtocolViolationError(std::string_view message);
Status CorruptError(std::string_view message);
Status InternalError(std::string_view message);

// Either a T or an error Status. Constructing from an OK Status is a bug: it
// is turned into kInternal so that a Result never claims success without a
// value.
template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Status>,
                "use Status directly");

 public:
  Result(const T& value) : has_value_(true) { new (&value_) T(value); }
  Result(T&& value) : has_value_(true) { new (&value_) T(std::move(value)); }
  Result(Status status) : has_value_(false), status_(std::move(status)) {
    if (status_.ok()) {
      status_ = Status(StatusCode::kInternal, "Result built from an OK Status");
    }
  }

  Result(const Result& other)
      : has_value_(other.has_value_), status_(other.status_) {
    if (has_value_)
      new (&value_) T(other.value_);
  }
  Result(Result&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
      : has_value_(other.has_value_), status_(std::move(other.status_)) {
    if (has_value_)
      new (&value_) T(std::move(other.value_));
  }
  Result& operator=(const Result& other) {
    if (this != &other) {
      Reset();
      has_value_ = other.has_value_;
      status_ = other.status_;
      if (has_value_)
        new (&value_) T(other.value_);
    }
    return *this;
  }
  Result& operator=(Result&& other) noexcept(
      std::is_nothrow_move_constructible_v<T>) {
    if (this != &other) {
      Reset();
      has_value_ = other.has_value_;
      status_ = std::move(other.status_);
      if (has_value_)
        new (&value_) T(std::move(other.value_));
    }
    return *this;
  }
  ~Result() { Reset(); }

  bool ok() const { return has_value_; }
  // OK when a value is held.
  const Status& status() const { return status_; }

  // Precondition: ok().
  T& value() & {
    assert(has_value_);
    return value_;
  }
  const T& value() const& {
    assert(has_value_);
    return value_;
  }
  T&& value() && {
    assert(has_value_);
    return std::move(value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  // Takes the status out (for forwarding with added context).
  Status TakeStatus() && { return std::move(status_); }

 private:
  void Reset() {
    if (has_value_) {
      value_.~T();
      has_value_ = false;
    }
  }

  bool has_value_;
  Status status_;
  union {
    T value_;
  };
};

}  // namespace shmports

// Returns early from a function returning Status (or Result<T>) when `expr`
// yields a non-OK Status.
#define SHMPORTS_RETURN_IF_ERROR(expr)            \
  do {                                            \
    ::shmports::Status shmports_status_ = (expr); \
    if (!shmports_status_.ok())                   \
      return shmports_status_;                    \
  } while (0)

#define SHMPORTS_CONCAT_INNER_(a, b) a##b
#define SHMPORTS_CONCAT_(a, b) SHMPORTS_CONCAT_INNER_(a, b)

// `lhs = value of rexpr`, or return its Status. `lhs` may declare a variable:
//   SHMPORTS_ASSIGN_OR_RETURN(auto seg, Segment::Create(size));
#define SHMPORTS_ASSIGN_OR_RETURN(lhs, rexpr)                      \
  auto SHMPORTS_CONCAT_(shmports_result_, __LINE__) = (rexpr);     \
  if (!SHMPORTS_CONCAT_(shmports_result_, __LINE__).ok())          \
    return std::move(SHMPORTS_CONCAT_(shmports_result_, __LINE__)) \
        .TakeStatus();                                             \
  lhs = std::move(SHMPORTS_CONCAT_(shmports_result_, __LINE__)).value()

#endif  // SHMPORTS_CORE_BASE_STATUS_H_
