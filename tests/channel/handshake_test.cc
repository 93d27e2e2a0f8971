// The handshake wire format: round trips, and each decode refusal (every
// check is shown to fire on the fault it looks for).
#include "channel/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shmports::channel {
namespace {

HandshakeHello SampleHello() {
  HandshakeHello hello;
  hello.type = HandshakeType::kInvite;
  hello.sender_name = ports::NodeName(1, 2);
  hello.receiver_name = ports::NodeName(3, 4);
  hello.bootstrap_port = ports::PortName(5, 6);
  hello.ring_capacity = uint64_t{1} << 20;
  hello.max_frame = 1 << 18;
  hello.caps.max_queued_bytes_per_pipe = 12345;
  hello.caps.max_queued_messages_per_pipe = 678;
  return hello;
}

TEST(HandshakeTest, HelloRoundTrips) {
  HandshakeHello hello = SampleHello();
  std::vector<uint8_t> bytes = EncodeHello(hello);
  ASSERT_EQ(bytes.size(), kHelloSize);
  auto decoded = DecodeHandshakeMessage(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->type, HandshakeType::kInvite);
  const HandshakeHello& h = decoded->hello;
  EXPECT_EQ(h.sender_name, hello.sender_name);
  EXPECT_EQ(h.receiver_name, hello.receiver_name);
  EXPECT_EQ(h.bootstrap_port, hello.bootstrap_port);
  EXPECT_EQ(h.ring_capacity, hello.ring_capacity);
  EXPECT_EQ(h.max_frame, hello.max_frame);
  EXPECT_EQ(h.caps.max_queued_bytes_per_pipe, 12345u);
  EXPECT_EQ(h.caps.max_queued_messages_per_pipe, 678u);
}

TEST(HandshakeTest, LayoutIsLittleEndian) {
  std::vector<uint8_t> bytes = EncodeHello(SampleHello());
  EXPECT_EQ(bytes[0], 'S');
  EXPECT_EQ(bytes[1], 'P');
  EXPECT_EQ(bytes[2], 'H');
  EXPECT_EQ(bytes[3], 'S');
  EXPECT_EQ(bytes[4], kProtocolMajor);
  EXPECT_EQ(bytes[16], 1);     // sender v1, low byte first.
  EXPECT_EQ(bytes[66], 0x10);  // capacity 1 MiB = 0x100000.
}

TEST(HandshakeTest, ReadyAndRefuseRoundTrip) {
  auto ready = DecodeHandshakeMessage(EncodeReady());
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->type, HandshakeType::kReady);
  auto refuse = DecodeHandshakeMessage(EncodeRefuse("no thanks"));
  ASSERT_TRUE(refuse.ok());
  EXPECT_EQ(refuse->type, HandshakeType::kRefuse);
  EXPECT_EQ(refuse->reason, "no thanks");
  auto long_refuse =
      DecodeHandshakeMessage(EncodeRefuse(std::string(5000, 'x')));
  ASSERT_TRUE(long_refuse.ok());
  EXPECT_EQ(long_refuse->reason.size(), kMaxRefuseReason);
}

void ExpectRefused(const std::vector<uint8_t>& bytes,
                   StatusCode code,
                   const std::string& needle) {
  auto decoded = DecodeHandshakeMessage(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), code) << decoded.status().ToString();
  EXPECT_NE(decoded.status().ToString().find(needle), std::string::npos)
      << decoded.status().ToString();
}

TEST(HandshakeTest, RefusesShortMessage) {
  std::vector<uint8_t> bytes = EncodeHello(SampleHello());
  bytes.resize(10);
  ExpectRefused(bytes, StatusCode::kProtocolViolation, "shorter");
}

TEST(HandshakeTest, RefusesWrongMagic) {
  std::vector<uint8_t> bytes = EncodeHello(SampleHello());
  bytes[0] ^= 1;
  ExpectRefused(bytes, StatusCode::kProtocolViolation, "magic");
}

TEST(HandshakeTest, RefusesOtherMajorNamingBothVersions) {
  HandshakeHello hello = SampleHello();
  hello.major = kProtocolMajor + 1;
  hello.minor = 7;
  std::vector<uint8_t> bytes = EncodeHello(hello);
  std::string theirs = std::to_string(kProtocolMajor + 1) + ".7";
  std::string ours =
      std::to_string(kProtocolMajor) + "." + std::to_string(kProtocolMinor);
  ExpectRefused(bytes, StatusCode::kFailedPrecondition, theirs);
  ExpectRefused(bytes, StatusCode::kFailedPrecondition, ours);
  // Even a message too short for a hello is named by its version.
  ExpectRefused(EncodeReady(kProtocolMajor + 1, 0),
                StatusCode::kFailedPrecondition, "major versions must match");
}

TEST(HandshakeTest, MinorIsNegotiatedDown) {
  HandshakeHello hello = SampleHello();
  hello.minor = kProtocolMinor + 3;
  auto decoded = DecodeHandshakeMessage(EncodeHello(hello));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->minor, kProtocolMinor + 3);
  EXPECT_EQ(NegotiateMinor(kProtocolMinor, decoded->minor), kProtocolMinor);
  EXPECT_EQ(NegotiateMinor(5, 2), 2);
}

TEST(HandshakeTest, RefusesUnknownType) {
  std::vector<uint8_t> bytes = EncodeReady();
  bytes[8] = 9;
  ExpectRefused(bytes, StatusCode::kProtocolViolation, "unknown message type");
}

TEST(HandshakeTest, RefusesNonZeroReserved) {
  std::vector<uint8_t> bytes = EncodeReady();
  bytes[13] = 1;
  ExpectRefused(bytes, StatusCode::kProtocolViolation, "reserved");
}

TEST(HandshakeTest, RefusesWrongSizes) {
  std::vector<uint8_t> hello = EncodeHello(SampleHello());
  hello.push_back(0);
  ExpectRefused(hello, StatusCode::kProtocolViolation, "expected 96");
  std::vector<uint8_t> ready = EncodeReady();
  ready.push_back(0);
  ExpectRefused(ready, StatusCode::kProtocolViolation, "expected 16");
  std::vector<uint8_t> refuse = EncodeRefuse("abc");
  refuse.pop_back();
  ExpectRefused(refuse, StatusCode::kProtocolViolation, "reason length");
}

TEST(HandshakeTest, RefusesZeroNames) {
  HandshakeHello hello = SampleHello();
  hello.sender_name = ports::kInvalidNodeName;
  ExpectRefused(EncodeHello(hello), StatusCode::kProtocolViolation, "sender");
  hello = SampleHello();
  hello.receiver_name = ports::kInvalidNodeName;
  ExpectRefused(EncodeHello(hello), StatusCode::kProtocolViolation, "receiver");
  hello = SampleHello();
  hello.bootstrap_port = ports::kInvalidPortName;
  ExpectRefused(EncodeHello(hello), StatusCode::kProtocolViolation,
                "bootstrap");
}

TEST(HandshakeTest, RefusesUnknownWakeMethod) {
  std::vector<uint8_t> bytes = EncodeHello(SampleHello());
  bytes[76] = 2;
  ExpectRefused(bytes, StatusCode::kProtocolViolation, "wake method 2");
}

TEST(HandshakeTest, ChecksAnnouncedRing) {
  HandshakeLimits limits;
  HandshakeHello hello = SampleHello();
  EXPECT_TRUE(CheckAnnouncedRing(hello, limits).ok());
  hello.ring_capacity = 3 << 20;  // Not a power of two.
  EXPECT_EQ(CheckAnnouncedRing(hello, limits).code(),
            StatusCode::kProtocolViolation);
  hello = SampleHello();
  hello.ring_capacity = limits.max_ring_capacity * 2;
  hello.max_frame = 4096;
  Status s = CheckAnnouncedRing(hello, limits);
  EXPECT_EQ(s.code(), StatusCode::kProtocolViolation);
  EXPECT_NE(s.ToString().find("limit"), std::string::npos) << s.ToString();
  hello = SampleHello();
  hello.max_frame = static_cast<uint32_t>(hello.ring_capacity / 4 + 8);
  EXPECT_EQ(CheckAnnouncedRing(hello, limits).code(),
            StatusCode::kProtocolViolation);
  hello.max_frame = 0;
  EXPECT_EQ(CheckAnnouncedRing(hello, limits).code(),
            StatusCode::kProtocolViolation);
}

}  // namespace
}  // namespace shmports::channel
