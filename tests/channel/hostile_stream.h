// The well-behaved child's stream in the hostile-peer tests, and the checkers
// that say whether a hostile peer disturbed anything.
//
// Stream: both ends of one port send sequence-numbered, checksummed data
// messages whose sizes and bytes follow from (seed, sequence number) alone,
// until told to stop; then each sends kEnd carrying how many it sent. The
// receiving end verifies every message in order (StreamVerifier) and, in the
// child, answers the parent's kEnd with a kReport of its verdict. Flow
// control: at most `window` messages unacknowledged (Node read acks), so a
// sender never piles events into the Router's overflow queue.
//
// Wire format of one message (little-endian, host order is fine: both ends
// run on this machine): u32 magic, u32 type, u64 seq, u64 checksum, payload.
//   kData    seq = sequence number, checksum over (seq, payload)
//   kEnd     seq = number of data messages sent
//   kReport  seq = data messages verified, payload = "ok" or the fault
//
// Threads: StreamVerifier is a value owned by one thread; StreamEndpoint's
// sender and reader run on two threads of their own and share only atomics.
#ifndef SHMPORTS_TESTS_CHANNEL_HOSTILE_STREAM_H_
#define SHMPORTS_TESTS_CHANNEL_HOSTILE_STREAM_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/base/deadline.h"
#include "core/base/status.h"
#include "core/ports/error.h"
#include "core/ports/node.h"
#include "tests/channel/process_test_util.h"

namespace shmports::channel::testing {

inline constexpr uint32_t kStreamMagic = 0x52545348;  // "HSTR"
inline constexpr size_t kStreamHeaderSize = 24;

enum class StreamType : uint32_t { kData = 1, kEnd = 2, kReport = 3 };

struct StreamMessage {
  StreamType type = StreamType::kData;
  uint64_t seq = 0;
  uint64_t checksum = 0;
  std::span<const uint8_t> payload;
};

// FNV-1a over the sequence number and the payload, keyed by the seed.
inline uint64_t StreamChecksum(uint64_t seed,
                               uint64_t seq,
                               std::span<const uint8_t> payload) {
  uint64_t h = 0xcbf29ce484222325ull ^ Mix(seed);
  auto add = [&h](uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ull;
  };
  for (int i = 0; i < 8; ++i)
    add(static_cast<uint8_t>(seq >> (8 * i)));
  for (uint8_t b : payload)
    add(b);
  return h;
}

// Payload bytes of data message `seq`: 0..max_size bytes from (seed, seq).
inline std::vector<uint8_t> StreamPayload(uint64_t seed,
                                          uint64_t seq,
                                          size_t max_size) {
  std::vector<uint8_t> out(Mix(seed ^ (seq * 0x9E37ull)) % (max_size + 1));
  uint64_t state = Mix(seed + seq);
  for (size_t i = 0; i < out.size(); ++i) {
    if ((i & 7) == 0)
      state = Mix(state);
    out[i] = static_cast<uint8_t>(state >> (8 * (i & 7)));
  }
  return out;
}

inline std::vector<uint8_t> EncodeStreamMessage(
    StreamType type,
    uint64_t seq,
    uint64_t checksum,
    std::span<const uint8_t> payload = {}) {
  std::vector<uint8_t> out(kStreamHeaderSize + payload.size());
  uint32_t t = static_cast<uint32_t>(type);
  std::memcpy(out.data(), &kStreamMagic, 4);
  std::memcpy(out.data() + 4, &t, 4);
  std::memcpy(out.data() + 8, &seq, 8);
  std::memcpy(out.data() + 16, &checksum, 8);
  if (!payload.empty())
    std::memcpy(out.data() + kStreamHeaderSize, payload.data(), payload.size());
  return out;
}

inline std::vector<uint8_t> EncodeStreamData(uint64_t seed,
                                             uint64_t seq,
                                             size_t max_size) {
  std::vector<uint8_t> payload = StreamPayload(seed, seq, max_size);
  return EncodeStreamMessage(StreamType::kData, seq,
                             StreamChecksum(seed, seq, payload), payload);
}

inline Result<StreamMessage> DecodeStreamMessage(
    std::span<const uint8_t> bytes) {
  if (bytes.size() < kStreamHeaderSize)
    return CorruptError("stream message of " + std::to_string(bytes.size()) +
                        " bytes is shorter than its header");
  uint32_t magic = 0, type = 0;
  StreamMessage m;
  std::memcpy(&magic, bytes.data(), 4);
  std::memcpy(&type, bytes.data() + 4, 4);
  std::memcpy(&m.seq, bytes.data() + 8, 8);
  std::memcpy(&m.checksum, bytes.data() + 16, 8);
  if (magic != kStreamMagic)
    return CorruptError("stream message with a wrong magic");
  if (type < 1 || type > 3)
    return CorruptError("stream message of unknown type " +
                        std::to_string(type));
  m.type = static_cast<StreamType>(type);
  m.payload = bytes.subspan(kStreamHeaderSize);
  return m;
}

// Checks one direction of a stream: every data message exactly once, in
// order, with the bytes (seed, seq) give, and as many as the sender's kEnd
// says. The first fault is kept and reported from then on.
class StreamVerifier {
 public:
  StreamVerifier(uint64_t seed, size_t max_size)
      : seed_(seed), max_size_(max_size) {}

  // One data message (decoded). Returns the first fault seen so far.
  Status Accept(const StreamMessage& m) {
    if (!first_fault_.ok())
      return first_fault_;
    if (m.type != StreamType::kData) {
      return Fault("a non-data message (type " +
                   std::to_string(static_cast<uint32_t>(m.type)) +
                   ") inside the stream at " + std::to_string(next_));
    }
    if (m.seq > next_) {
      return Fault("messages " + std::to_string(next_) + ".." +
                   std::to_string(m.seq - 1) +
                   " missing (dropped or reordered): got " +
                   std::to_string(m.seq));
    }
    if (m.seq < next_) {
      return Fault("message " + std::to_string(m.seq) + " again after " +
                   std::to_string(next_ - 1) + " (duplicated or reordered)");
    }
    if (StreamChecksum(seed_, m.seq, m.payload) != m.checksum) {
      return Fault("message " + std::to_string(m.seq) +
                   " corrupted: checksum mismatch");
    }
    std::vector<uint8_t> expected = StreamPayload(seed_, m.seq, max_size_);
    if (expected.size() != m.payload.size() ||
        (!expected.empty() && std::memcmp(expected.data(), m.payload.data(),
                                          expected.size()) != 0)) {
      return Fault("message " + std::to_string(m.seq) +
                   " has bytes its sequence number does not give");
    }
    ++next_;
    return Status::Ok();
  }

  Status AcceptBytes(std::span<const uint8_t> bytes) {
    auto m = DecodeStreamMessage(bytes);
    if (!m.ok())
      return Fault(m.status().ToString() + " at " + std::to_string(next_));
    return Accept(*m);
  }

  // The sender's kEnd: it sent `count` data messages.
  Status Finish(uint64_t count) {
    if (!first_fault_.ok())
      return first_fault_;
    if (count != next_) {
      return Fault("the sender sent " + std::to_string(count) + " messages, " +
                   std::to_string(next_) + " arrived");
    }
    return Status::Ok();
  }

  uint64_t verified() const { return next_; }
  const Status& fault() const { return first_fault_; }

 private:
  Status Fault(const std::string& text) {
    if (first_fault_.ok())
      first_fault_ = CorruptError("stream: " + text);
    return first_fault_;
  }

  const uint64_t seed_;
  const size_t max_size_;
  uint64_t next_ = 0;
  Status first_fault_;
};

struct StreamOptions {
  uint64_t send_seed = 0;
  uint64_t receive_seed = 0;
  size_t max_size = 4096;
  size_t window = 16;
};

// One end of the stream on `port`. Start() runs the sender and the reader
// on two threads. The parent calls Stop() (its sender sends kEnd), then
// Join(); the child's reader, on the parent's kEnd, stops its own sender and
// answers with kEnd and kReport (`is_child`).
class StreamEndpoint {
 public:
  StreamEndpoint(ports::Node& node,
                 PortWaiter& waiter,
                 const ports::PortRef& port,
                 const StreamOptions& options,
                 bool is_child)
      : node_(node),
        waiter_(waiter),
        port_(port),
        options_(options),
        is_child_(is_child),
        verifier_(options.receive_seed, options.max_size) {}
  StreamEndpoint(const StreamEndpoint&) = delete;
  StreamEndpoint& operator=(const StreamEndpoint&) = delete;
  ~StreamEndpoint() {
    Stop();
    if (sender_.joinable())
      sender_.join();
    if (reader_.joinable())
      reader_.join();
  }

  void Start() {
    (void)node_.SetAcknowledgeRequestInterval(
        port_, options_.window / 4 ? options_.window / 4 : 1);
    sender_ = std::thread([this] { SendLoop(); });
    reader_ = std::thread([this] { ReadLoop(); });
  }

  void Stop() { stop_.store(true, std::memory_order_release); }

  // Waits for both threads. The verdict on what this end received, and (in
  // the parent) `*peer_report`: the child's verdict on what it received.
  Status Join(std::string* peer_report = nullptr) {
    if (sender_.joinable())
      sender_.join();
    if (reader_.joinable())
      reader_.join();
    if (peer_report != nullptr)
      *peer_report = peer_report_;
    if (send_result_ != ports::OK)
      return InternalError("send failed: ports error " +
                           std::to_string(send_result_));
    return read_result_;
  }

  uint64_t sent() const { return sent_.load(std::memory_order_acquire); }
  uint64_t received() const {
    return received_.load(std::memory_order_acquire);
  }

 private:
  void SendLoop() {
    SendAll();
    sender_done_.set_value();
  }

  void SendAll() {
    uint64_t seq = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      uint64_t seen = waiter_.generation();
      ports::PortStatus status;
      int rv = node_.GetStatus(port_, &status);
      if (rv != ports::OK || status.peer_closed) {
        send_result_ = rv != ports::OK ? rv : ports::ERROR_PORT_PEER_CLOSED;
        return;
      }
      if (status.unacknowledged_message_count >= options_.window) {
        waiter_.WaitChange(seen, std::chrono::milliseconds(5));
        continue;
      }
      rv = SendBytes(
          node_, port_,
          EncodeStreamData(options_.send_seed, seq, options_.max_size));
      if (rv != ports::OK) {
        send_result_ = rv;
        return;
      }
      sent_.store(++seq, std::memory_order_release);
    }
    send_result_ =
        SendBytes(node_, port_, EncodeStreamMessage(StreamType::kEnd, seq, 0));
  }

  void ReadLoop() { read_result_ = Read(); }

  Status Read() {
    for (;;) {
      auto message = ReadMessage(node_, waiter_, port_,
                                 Deadline::In(std::chrono::seconds(60)));
      if (!message.ok()) {
        return std::move(message).TakeStatus().WithContext(
            "stream after " + std::to_string(verifier_.verified()));
      }
      auto m = DecodeStreamMessage((*message)->message().bytes());
      if (m.ok() && m->type == StreamType::kEnd) {
        Status verdict = verifier_.Finish(m->seq);
        if (is_child_) {
          // The child's kEnd must precede its report; the sender is joined
          // by the owner's thread, so wait for it to be done instead.
          Stop();
          sender_done_future_.wait();
          std::string text = verdict.ok() ? "ok" : verdict.ToString();
          (void)SendBytes(node_, port_,
                          EncodeStreamMessage(
                              StreamType::kReport, verifier_.verified(), 0,
                              std::span<const uint8_t>(
                                  reinterpret_cast<const uint8_t*>(text.data()),
                                  text.size())));
          return verdict;
        }
        auto report = ReadMessage(node_, waiter_, port_,
                                  Deadline::In(std::chrono::seconds(60)));
        if (!report.ok())
          return std::move(report).TakeStatus().WithContext("stream report");
        auto r = DecodeStreamMessage((*report)->message().bytes());
        if (!r.ok() || r->type != StreamType::kReport)
          return CorruptError("stream: no report after the child's end");
        peer_report_ =
            std::to_string(r->seq) + " " +
            std::string(reinterpret_cast<const char*>(r->payload.data()),
                        r->payload.size());
        return verdict;
      }
      Status s = m.ok() ? verifier_.Accept(*m)
                        : verifier_.AcceptBytes((*message)->message().bytes());
      if (!s.ok())
        return s;
      received_.store(verifier_.verified(), std::memory_order_release);
    }
  }

  ports::Node& node_;
  PortWaiter& waiter_;
  const ports::PortRef port_;
  const StreamOptions options_;
  const bool is_child_;
  StreamVerifier verifier_;  // Reader thread only.
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> received_{0};
  int send_result_ = ports::OK;  // Sender thread; read after Join.
  Status read_result_;           // Reader thread; read after Join.
  std::string peer_report_;      // Reader thread; read after Join.
  std::promise<void> sender_done_;
  std::future<void> sender_done_future_ = sender_done_.get_future();
  std::thread sender_;
  std::thread reader_;
};

}  // namespace shmports::channel::testing

#endif  // SHMPORTS_TESTS_CHANNEL_HOSTILE_STREAM_H_
