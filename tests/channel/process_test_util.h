// Helpers shared by the Process tests and their child program: a waiter
// woken by PortStatusChanged, reading with a deadline, and deterministic
// payloads that the reader can verify from (seed, index) alone.
#ifndef SHMPORTS_TESTS_CHANNEL_PROCESS_TEST_UTIL_H_
#define SHMPORTS_TESTS_CHANNEL_PROCESS_TEST_UTIL_H_

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "channel/process.h"
#include "core/base/deadline.h"
#include "core/base/status.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"
#include "shm/ring.h"

namespace shmports::channel::testing {

// The largest user payload that fits one frame of a default ring.
inline constexpr size_t kMaxFramePayload = shm::kDefaultRingCapacity / 4 -
                                           ports::kEventHeaderSize -
                                           ports::kUserMessageFixedSize;

// Woken by every PortStatusChanged of a Process; readers wait on it with a
// short timeout and re-check (notifications may be spurious or coalesced).
class PortWaiter {
 public:
  // The state is shared with the observer, which the io thread may still be
  // running when the waiter (or the Process) goes away.
  explicit PortWaiter(Process& process) : state_(std::make_shared<State>()) {
    process.SetPortStatusObserver(
        [state = state_](const ports::PortRef&) { state->Notify(); });
  }
  void Notify() { state_->Notify(); }
  uint64_t generation() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->generation;
  }
  void WaitChange(uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->cv.wait_for(lock, timeout,
                        [&] { return state_->generation != seen; });
  }

 private:
  struct State {
    void Notify() {
      std::lock_guard<std::mutex> lock(mu);
      ++generation;
      cv.notify_all();
    }
    std::mutex mu;
    std::condition_variable cv;
    uint64_t generation = 0;
  };
  std::shared_ptr<State> state_;
};

// The next message on `port`: the message, kPeerClosed once the peer closed
// and everything was read, or kUnavailable at the deadline.
inline Result<std::unique_ptr<ports::UserMessageEvent>> ReadMessage(
    ports::Node& node,
    PortWaiter& waiter,
    const ports::PortRef& port,
    Deadline deadline = Deadline::In(std::chrono::seconds(30))) {
  for (;;) {
    uint64_t seen = waiter.generation();
    std::unique_ptr<ports::UserMessageEvent> message;
    int rv = node.GetMessage(port, &message, nullptr);
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "read message");
    if (message)
      return message;
    if (deadline.Expired())
      return UnavailableError("no message before the deadline");
    waiter.WaitChange(seen, std::chrono::milliseconds(5));
  }
}

inline int SendBytes(ports::Node& node,
                     const ports::PortRef& port,
                     std::span<const uint8_t> bytes,
                     const std::vector<ports::PortName>& attached = {}) {
  auto event = std::make_unique<ports::UserMessageEvent>(attached.size());
  for (size_t i = 0; i < attached.size(); ++i)
    event->ports()[i] = attached[i];
  event->message().Assign(bytes);
  return node.SendUserMessage(port, std::move(event));
}

inline int SendText(ports::Node& node,
                    const ports::PortRef& port,
                    std::string_view text,
                    const std::vector<ports::PortName>& attached = {}) {
  return SendBytes(
      node, port,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()),
                               text.size()),
      attached);
}

inline std::string TextOf(const ports::UserMessageEvent& message) {
  return std::string(message.message().AsStringView());
}

inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Log-uniform in [1, max_size]; index 0 is always max_size (the largest
// frame), index 1 is empty (0 bytes), index 2 is 1 byte.
inline size_t PayloadSize(uint64_t seed, uint64_t index, size_t max_size) {
  if (index == 0)
    return max_size;
  if (index == 1)
    return 0;
  if (index == 2)
    return 1;
  double u = static_cast<double>(Mix(seed ^ (index * 0x51ED27ull)) >> 11) /
             static_cast<double>(uint64_t{1} << 53);
  double size = std::exp(u * std::log(static_cast<double>(max_size)));
  size_t n = static_cast<size_t>(size);
  return n < 1 ? 1 : (n > max_size ? max_size : n);
}

// Bytes 0..7: the index (little-endian, truncated to the size); the rest a
// stream derived from (seed, index).
inline std::vector<uint8_t> MakePayload(uint64_t seed,
                                        uint64_t index,
                                        size_t max_size) {
  std::vector<uint8_t> out(PayloadSize(seed, index, max_size));
  uint64_t state = Mix(seed * 31 + index);
  for (size_t i = 0; i < out.size(); ++i) {
    if (i < 8) {
      out[i] = static_cast<uint8_t>(index >> (8 * i));
    } else {
      if ((i & 7) == 0)
        state = Mix(state);
      out[i] = static_cast<uint8_t>(state >> (8 * (i & 7)));
    }
  }
  return out;
}

inline bool CheckPayload(uint64_t seed,
                         uint64_t index,
                         size_t max_size,
                         std::span<const uint8_t> bytes) {
  std::vector<uint8_t> expected = MakePayload(seed, index, max_size);
  // std::equal, not memcmp: an empty span's data() may be null.
  return std::equal(bytes.begin(), bytes.end(), expected.begin(),
                    expected.end());
}

// The peer-death checker: pattern messages 0, 1, ... must arrive intact and
// in order; Verify(committed) then also requires every message the sender
// recorded as committed to have arrived. Single-threaded: the reader owns it
// until it is joined.
class CommittedPrefixChecker {
 public:
  CommittedPrefixChecker(uint64_t seed, size_t max_size)
      : seed_(seed), max_size_(max_size) {}

  void Observe(std::span<const uint8_t> bytes) {
    if (!error_.empty())
      return;
    if (!CheckPayload(seed_, intact_, max_size_, bytes)) {
      error_ = "message " + std::to_string(intact_) +
               " damaged, missing, repeated or out of order (" +
               std::to_string(bytes.size()) + " bytes)";
      return;
    }
    ++intact_;
  }

  uint64_t intact() const { return intact_; }

  // Empty when every observed message was right and the committed prefix
  // arrived in full.
  std::string Verify(uint64_t committed) const {
    if (!error_.empty())
      return error_;
    if (intact_ < committed) {
      return "committed messages lost: " + std::to_string(committed) +
             " committed, " + std::to_string(intact_) + " arrived";
    }
    return {};
  }

 private:
  const uint64_t seed_;
  const size_t max_size_;
  uint64_t intact_ = 0;
  std::string error_;
};

// Sends `count` pattern messages on `port`, keeping at most `window`
// unacknowledged (read acks every window/4), so that a fast sender does not
// pile everything into the Router's overflow queue. Returns the ports error
// of the first failed send, or OK.
inline int SendPattern(ports::Node& node,
                       PortWaiter& waiter,
                       const ports::PortRef& port,
                       uint64_t seed,
                       uint64_t count,
                       size_t max_size,
                       size_t window = 64,
                       uint64_t* sent_counter = nullptr) {
  (void)node.SetAcknowledgeRequestInterval(port, window / 4 ? window / 4 : 1);
  for (uint64_t i = 0; i < count; ++i) {
    for (;;) {
      uint64_t seen = waiter.generation();
      ports::PortStatus status;
      int rv = node.GetStatus(port, &status);
      if (rv != ports::OK)
        return rv;
      if (status.peer_closed)
        return ports::ERROR_PORT_PEER_CLOSED;
      if (status.unacknowledged_message_count < window)
        break;
      waiter.WaitChange(seen, std::chrono::milliseconds(5));
    }
    std::vector<uint8_t> payload = MakePayload(seed, i, max_size);
    int rv = SendBytes(node, port, payload);
    if (rv != ports::OK)
      return rv;
    if (sent_counter != nullptr)
      __atomic_store_n(sent_counter, i + 1, __ATOMIC_RELEASE);
  }
  return ports::OK;
}

// Reads `count` pattern messages; returns how many were intact and in
// order before the first bad one (== count when all were).
inline Result<uint64_t> ReadPattern(ports::Node& node,
                                    PortWaiter& waiter,
                                    const ports::PortRef& port,
                                    uint64_t seed,
                                    uint64_t count,
                                    size_t max_size) {
  for (uint64_t i = 0; i < count; ++i) {
    auto message = ReadMessage(node, waiter, port);
    if (!message.ok())
      return std::move(message).TakeStatus().WithContext("pattern message " +
                                                         std::to_string(i));
    if (!CheckPayload(seed, i, max_size, (*message)->message().bytes()))
      return i;
  }
  return count;
}

}  // namespace shmports::channel::testing

#endif  // SHMPORTS_TESTS_CHANNEL_PROCESS_TEST_UTIL_H_
