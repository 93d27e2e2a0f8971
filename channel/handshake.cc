#include "channel/handshake.h"

#include <cstring>

#include "core/base/str_format.h"
#include "shm/ring.h"
#include "shm/segment.h"

namespace shmports::channel {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t Get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

template <typename Name>
void PutName(uint8_t* p, const Name& name) {
  Put64(p, name.v1);
  Put64(p + 8, name.v2);
}
template <typename Name>
Name GetName(const uint8_t* p) {
  return Name(Get64(p), Get64(p + 8));
}

void PutHeader(uint8_t* p, HandshakeType type, uint16_t major, uint16_t minor) {
  Put32(p, kHandshakeMagic);
  Put16(p + 4, major);
  Put16(p + 6, minor);
  Put32(p + 8, static_cast<uint32_t>(type));
  Put32(p + 12, 0);
}

Status Violation(const std::string& what) {
  return ProtocolViolationError("handshake message: " + what);
}

}  // namespace

const char* HandshakeTypeName(HandshakeType type) {
  switch (type) {
    case HandshakeType::kInvite:
      return "invite";
    case HandshakeType::kAccept:
      return "accept";
    case HandshakeType::kReady:
      return "ready";
    case HandshakeType::kRefuse:
      return "refuse";
  }
  return "unknown";
}

std::vector<uint8_t> EncodeHello(const HandshakeHello& hello) {
  std::vector<uint8_t> out(kHelloSize, 0);
  uint8_t* p = out.data();
  PutHeader(p, hello.type, hello.major, hello.minor);
  PutName(p + 16, hello.sender_name);
  PutName(p + 32, hello.receiver_name);
  PutName(p + 48, hello.bootstrap_port);
  Put64(p + 64, hello.ring_capacity);
  Put32(p + 72, hello.max_frame);
  Put32(p + 76, static_cast<uint32_t>(hello.wake_method));
  Put64(p + 80, hello.caps.max_queued_bytes_per_pipe);
  Put64(p + 88, hello.caps.max_queued_messages_per_pipe);
  return out;
}

std::vector<uint8_t> EncodeReady(uint16_t major, uint16_t minor) {
  std::vector<uint8_t> out(kHandshakeHeaderSize, 0);
  PutHeader(out.data(), HandshakeType::kReady, major, minor);
  return out;
}

std::vector<uint8_t> EncodeRefuse(std::string_view reason,
                                  uint16_t major,
                                  uint16_t minor) {
  if (reason.size() > kMaxRefuseReason)
    reason = reason.substr(0, kMaxRefuseReason);
  std::vector<uint8_t> out(kHandshakeHeaderSize + 4 + reason.size(), 0);
  PutHeader(out.data(), HandshakeType::kRefuse, major, minor);
  Put32(out.data() + kHandshakeHeaderSize,
        static_cast<uint32_t>(reason.size()));
  if (!reason.empty())
    std::memcpy(out.data() + kHandshakeHeaderSize + 4, reason.data(),
                reason.size());
  return out;
}

Status CheckPeerVersion(uint16_t peer_major,
                        uint16_t peer_minor,
                        uint16_t our_major,
                        uint16_t our_minor) {
  if (peer_major == our_major)
    return Status::Ok();
  return FailedPreconditionError(StrFormat(
      "peer speaks shmports protocol %u.%u, this process speaks %u.%u: major "
      "versions must match (run the same shmports release on both sides)",
      peer_major, peer_minor, our_major, our_minor));
}

Result<HandshakeMessage> DecodeHandshakeMessage(std::span<const uint8_t> bytes,
                                                uint16_t our_major) {
  if (bytes.size() < kHandshakeHeaderSize) {
    return Violation(StrFormat("%zu bytes, shorter than the %zu-byte header",
                               bytes.size(), kHandshakeHeaderSize));
  }
  const uint8_t* p = bytes.data();
  if (Get32(p) != kHandshakeMagic) {
    return Violation(
        StrFormat("magic 0x%08x, expected 0x%08x (not a shmports "
                  "peer?)",
                  Get32(p), kHandshakeMagic));
  }
  HandshakeMessage msg;
  msg.major = Get16(p + 4);
  msg.minor = Get16(p + 6);
  SHMPORTS_RETURN_IF_ERROR(
      CheckPeerVersion(msg.major, msg.minor, our_major, kProtocolMinor));
  uint32_t type = Get32(p + 8);
  if (type < 1 || type > 4)
    return Violation(StrFormat("unknown message type %u", type));
  if (Get32(p + 12) != 0)
    return Violation(
        StrFormat("reserved header field is 0x%08x, not 0", Get32(p + 12)));
  msg.type = static_cast<HandshakeType>(type);
  const char* name = HandshakeTypeName(msg.type);
  switch (msg.type) {
    case HandshakeType::kReady:
      if (bytes.size() != kHandshakeHeaderSize)
        return Violation(StrFormat("%s of %zu bytes, expected %zu", name,
                                   bytes.size(), kHandshakeHeaderSize));
      return msg;
    case HandshakeType::kRefuse: {
      if (bytes.size() < kHandshakeHeaderSize + 4)
        return Violation(StrFormat("refuse of %zu bytes has no reason length",
                                   bytes.size()));
      uint32_t len = Get32(p + kHandshakeHeaderSize);
      if (len > kMaxRefuseReason ||
          bytes.size() != kHandshakeHeaderSize + 4 + len) {
        return Violation(StrFormat(
            "refuse reason length %u does not match the %zu-byte message", len,
            bytes.size()));
      }
      msg.reason.assign(reinterpret_cast<const char*>(p + 20), len);
      return msg;
    }
    case HandshakeType::kInvite:
    case HandshakeType::kAccept:
      break;
  }
  if (bytes.size() != kHelloSize)
    return Violation(StrFormat("%s of %zu bytes, expected %zu", name,
                               bytes.size(), kHelloSize));
  HandshakeHello& h = msg.hello;
  h.type = msg.type;
  h.major = msg.major;
  h.minor = msg.minor;
  h.sender_name = GetName<ports::NodeName>(p + 16);
  h.receiver_name = GetName<ports::NodeName>(p + 32);
  h.bootstrap_port = GetName<ports::PortName>(p + 48);
  h.ring_capacity = Get64(p + 64);
  h.max_frame = Get32(p + 72);
  uint32_t wake = Get32(p + 76);
  h.caps.max_queued_bytes_per_pipe = Get64(p + 80);
  h.caps.max_queued_messages_per_pipe = Get64(p + 88);
  if (!h.sender_name.is_valid())
    return Violation(StrFormat("%s names an invalid (zero) sender node", name));
  if (!h.receiver_name.is_valid())
    return Violation(
        StrFormat("%s names an invalid (zero) receiver node", name));
  if (!h.bootstrap_port.is_valid())
    return Violation(
        StrFormat("%s names an invalid (zero) bootstrap port", name));
  if (wake != static_cast<uint32_t>(WakeMethod::kFutex))
    return Violation(
        StrFormat("%s asks for unknown wake method %u (this "
                  "version knows 1 = futex)",
                  name, wake));
  h.wake_method = WakeMethod::kFutex;
  return msg;
}

Status CheckAnnouncedRing(const HandshakeHello& hello,
                          const HandshakeLimits& limits) {
  Status cap = shm::Ring::CheckCapacity(hello.ring_capacity);
  if (!cap.ok())
    return ProtocolViolationError(
        StrFormat("peer announced ring capacity %llu: %s",
                  static_cast<unsigned long long>(hello.ring_capacity),
                  std::string(cap.message()).c_str()));
  if (hello.ring_capacity > limits.max_ring_capacity)
    return ProtocolViolationError(StrFormat(
        "peer announced ring capacity %llu, above this side's limit %llu",
        static_cast<unsigned long long>(hello.ring_capacity),
        static_cast<unsigned long long>(limits.max_ring_capacity)));
  if (hello.max_frame == 0 || hello.max_frame > hello.ring_capacity / 4)
    return ProtocolViolationError(StrFormat(
        "peer announced max frame %u for a ring of %llu bytes (must be "
        "1..capacity/4)",
        hello.max_frame, static_cast<unsigned long long>(hello.ring_capacity)));
  return Status::Ok();
}

size_t RingSegmentSize(uint64_t capacity) {
  return shm::kSegmentHeaderSize + shm::Ring::RegionSize(capacity);
}

}  // namespace shmports::channel
