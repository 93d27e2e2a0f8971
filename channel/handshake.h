// Handshake wire format: the messages two processes exchange over their
// credentialed SOCK_SEQPACKET socket before any ring is used.
//
// This file only encodes and decodes; channel/connection.h runs the exchange.
// The exchange, after both sides have authenticated each other from the
// kernel's credentials (identity.h):
//
//   inviter -> invitee   kInvite  + SCM_RIGHTS(segment of ring
//   inviter->invitee) invitee -> inviter   kAccept  + SCM_RIGHTS(segment of
//   ring invitee->inviter) inviter -> invitee   kReady
//
// Either side may answer with kRefuse (a reason string) instead, and then
// hangs up. Each side creates the segment holding the ring it PRODUCES into
// and announces that ring's capacity and largest frame; the receiver maps it
// with the exact seal and size check and attaches with those values.
//
// Wire layout: little-endian, converted explicitly, fixed offsets.
//   Common header (16 bytes):
//     0  u32 magic  kHandshakeMagic ("SPHS")
//     4  u16 major
//     6  u16 minor
//     8  u32 type   (HandshakeType)
//     12 u32 reserved, 0
//   kInvite / kAccept body (kHelloSize bytes in all):
//     16 sender node name (u64 v1, u64 v2)
//     32 receiver node name: in kInvite the name the inviter ASSIGNS to the
//        invitee; in kAccept the inviter's name, echoed
//     48 bootstrap port name of the sender
//     64 u64 ring capacity (the ring the sender produces into)
//     72 u32 max frame payload of that ring
//     76 u32 wake method (WakeMethod) the sender uses for its inbound ring
//     80 u64 receive cap: queued bytes per pipe the sender enforces
//     88 u64 receive cap: queued messages per pipe the sender enforces
//   kReady: the header only.
//   kRefuse: header, u32 reason length (<= kMaxRefuseReason), reason bytes.
//
// Versions: the header is the same in every version, so a peer speaking
// another major version is still named with its version. Majors must match;
// the minor is negotiated down to the lower of the two.
//
// Decoding never trusts the bytes: every length, enum and name is checked,
// and every refusal is a Status naming the field.
//
// Thread-safety: free functions on values.
#ifndef SHMPORTS_CHANNEL_HANDSHAKE_H_
#define SHMPORTS_CHANNEL_HANDSHAKE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/status.h"
#include "core/ports/name.h"

namespace shmports::channel {

inline constexpr uint32_t kHandshakeMagic = 0x53485053;  // "SPHS" LE.
inline constexpr uint16_t kProtocolMajor = 1;
inline constexpr uint16_t kProtocolMinor = 0;

inline constexpr size_t kHandshakeHeaderSize = 16;
inline constexpr size_t kHelloSize = 96;
inline constexpr size_t kMaxRefuseReason = 1024;
inline constexpr size_t kMaxHandshakeMessage =
    kHandshakeHeaderSize + 4 + kMaxRefuseReason;

enum class HandshakeType : uint32_t {
  kInvite = 1,
  kAccept = 2,
  kReady = 3,
  kRefuse = 4,
};
const char* HandshakeTypeName(HandshakeType type);

// How the sender of a hello wants to be woken for its inbound ring. Only
// futex waits exist for now (eventfd fallbacks are a later issue).
enum class WakeMethod : uint32_t {
  kFutex = 1,
};

// What a receiver enforces per pipe. Announced here; the receiving node
// enforces exactly what it announced (channel::Process sets its NodeLimits
// queued caps from ConnectionOptions::receive_caps): a sender past them is
// dropped as violating. Pipe::Send stays within the peer's caps by default.
// 0 = unlimited.
struct ReceiveCaps {
  uint64_t max_queued_bytes_per_pipe = uint64_t{64} << 20;
  uint64_t max_queued_messages_per_pipe = 1 << 16;
};

struct HandshakeHello {
  HandshakeType type = HandshakeType::kInvite;  // kInvite or kAccept.
  uint16_t major = kProtocolMajor;
  uint16_t minor = kProtocolMinor;
  ports::NodeName sender_name;
  ports::NodeName receiver_name;
  ports::PortName bootstrap_port;
  uint64_t ring_capacity = 0;
  uint32_t max_frame = 0;
  WakeMethod wake_method = WakeMethod::kFutex;
  ReceiveCaps caps;
};

// One decoded handshake message.
struct HandshakeMessage {
  HandshakeType type = HandshakeType::kReady;
  uint16_t major = 0;
  uint16_t minor = 0;
  HandshakeHello hello;  // kInvite, kAccept.
  std::string reason;    // kRefuse.
};

std::vector<uint8_t> EncodeHello(const HandshakeHello& hello);
std::vector<uint8_t> EncodeReady(uint16_t major = kProtocolMajor,
                                 uint16_t minor = kProtocolMinor);
// `reason` is cut at kMaxRefuseReason bytes.
std::vector<uint8_t> EncodeRefuse(std::string_view reason,
                                  uint16_t major = kProtocolMajor,
                                  uint16_t minor = kProtocolMinor);

// Decodes one message. Refusals:
//   kProtocolViolation  too short for the header, wrong magic, unknown type,
//                       a body of the wrong size, a reserved field not 0, an
//                       invalid (all-zero) name, an unknown wake method, a
//                       refusal reason of the wrong length;
//   kFailedPrecondition the peer's major version is not `our_major` (checked
//                       right after the header: both versions are named).
Result<HandshakeMessage> DecodeHandshakeMessage(
    std::span<const uint8_t> bytes,
    uint16_t our_major = kProtocolMajor);

// kFailedPrecondition naming both versions unless the majors match.
Status CheckPeerVersion(uint16_t peer_major,
                        uint16_t peer_minor,
                        uint16_t our_major = kProtocolMajor,
                        uint16_t our_minor = kProtocolMinor);

// The minor both sides speak: the lower one.
inline uint16_t NegotiateMinor(uint16_t ours, uint16_t theirs) {
  return ours < theirs ? ours : theirs;
}

// What a receiver is willing to map for one peer's ring.
struct HandshakeLimits {
  uint64_t max_ring_capacity = uint64_t{64} << 20;
};

// Checks the ring a hello announces: a valid shm::Ring capacity within
// `limits`, and a max frame of 1..capacity/4 (0 is resolved by the sender
// before sending). kProtocolViolation naming the value otherwise.
Status CheckAnnouncedRing(const HandshakeHello& hello,
                          const HandshakeLimits& limits);

// Bytes of the segment carrying one ring of `capacity`: the segment header
// page, then the ring's region.
size_t RingSegmentSize(uint64_t capacity);

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_HANDSHAKE_H_
