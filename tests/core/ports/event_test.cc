// The wire codec: every event type round-trips with extreme field values, the
// byte layout is little-endian as documented in event.h, and each refusal of
// Event::Deserialize (§4.4 plus our descriptor boolean rule) is exercised.
#include "core/ports/event.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "core/ports/name.h"
#include "tests/util/test_util.h"

namespace shmports::ports {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
const PortName kPortA(kMax, kMax);
const PortName kPortB(1, 0);
const NodeName kNodeA(kMax, 0x8000000000000000ull);
const NodeName kNodeB(0x0102030405060708ull, 0x1112131415161718ull);

PortDescriptor ExtremeDescriptor(bool peer_closed) {
  PortDescriptor d;
  d.peer_node_name = kNodeA;
  d.peer_port_name = kPortA;
  d.referring_node_name = kNodeB;
  d.referring_port_name = kPortB;
  d.next_sequence_num_to_send = kMax;
  d.next_sequence_num_to_receive = 0;
  d.last_sequence_num_to_receive = kMax - 1;
  d.peer_closed = peer_closed;
  return d;
}

ScopedEvent RoundTrip(const Event& event) {
  std::vector<uint8_t> bytes = event.SerializeToVector();
  EXPECT_EQ(event.GetSerializedSize(), bytes.size());
  Result<ScopedEvent> decoded = Event::Deserialize(bytes);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  if (!decoded.ok())
    return nullptr;
  ScopedEvent out = std::move(decoded).value();
  EXPECT_EQ(event.type(), out->type());
  EXPECT_EQ(event.port_name(), out->port_name());
  EXPECT_EQ(event.from_port(), out->from_port());
  EXPECT_EQ(event.control_sequence_num(), out->control_sequence_num());
  EXPECT_EQ(bytes, out->SerializeToVector());
  return out;
}

TEST(NameTest, TextFormOrderingAndHash) {
  EXPECT_EQ("1F", PortName(0x1f, 0).ToString());
  EXPECT_EQ("ABCDEF.12", NodeName(0xabcdef, 0x12).ToString());
  EXPECT_LT(PortName(1, 9), PortName(2, 0));
  EXPECT_LT(PortName(1, 1), PortName(1, 2));
  EXPECT_FALSE(kInvalidPortName.is_valid());
  EXPECT_TRUE(PortName(0, 1).is_valid());
  EXPECT_NE(std::hash<PortName>()(PortName(1, 2)),
            std::hash<PortName>()(PortName(2, 1)));
  static_assert(!std::is_convertible_v<PortName, NodeName>);
  static_assert(!std::is_convertible_v<NodeName, PortName>);
  EXPECT_TRUE(GenerateRandomPortName().is_valid());
  EXPECT_NE(GenerateRandomPortName(), GenerateRandomPortName());
}

TEST(EventCodecTest, HeaderIsLittleEndianAsDocumented) {
  ObserveClosureEvent event(PortName(0x0102030405060708ull, 0x1112131415161718),
                            PortName(0x2122232425262728ull, 0),
                            0x3132333435363738ull, 0x4142434445464748ull);
  std::vector<uint8_t> bytes = event.SerializeToVector();
  ASSERT_EQ(kEventHeaderSize + 8, bytes.size());
  const uint8_t expected_head[] = {
      4,    0,    0,    0,    0,    0,    0,    0,  // type, reserved
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
      0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11};
  EXPECT_EQ(0, std::memcmp(bytes.data(), expected_head, sizeof(expected_head)));
  EXPECT_EQ(0x28, bytes[24]);
  EXPECT_EQ(0x21, bytes[31]);
  EXPECT_EQ(0x38, bytes[40]);
  EXPECT_EQ(0x31, bytes[47]);
  EXPECT_EQ(0x48, bytes[48]);
  EXPECT_EQ(0x41, bytes[55]);
}

TEST(EventCodecTest, UserMessageRoundTripsWithPortsAndPayload) {
  for (size_t payload_size :
       {size_t{0}, size_t{64}, size_t{129}, size_t{70000}}) {
    SCOPED_TRACE(payload_size);
    UserMessageEvent event(3);
    event.set_port_name(kPortA);
    event.set_from_port(kPortB);
    event.set_control_sequence_num(kMax);
    event.set_sequence_num(kMax - 7);
    for (size_t i = 0; i < 3; ++i) {
      event.ports()[i] = PortName(kMax - i, i);
      event.port_descriptors()[i] = ExtremeDescriptor(i % 2 == 0);
    }
    std::vector<uint8_t> payload(payload_size);
    for (size_t i = 0; i < payload_size; ++i)
      payload[i] = uint8_t(i * 7 + 1);
    event.message().Assign(payload);
    EXPECT_EQ(kEventHeaderSize + 16 + 3 * 112 + payload_size,
              event.GetSerializedSize());

    ScopedEvent out = RoundTrip(event);
    ASSERT_TRUE(out);
    auto* m = static_cast<UserMessageEvent*>(out.get());
    EXPECT_EQ(kMax - 7, m->sequence_num());
    ASSERT_EQ(3u, m->num_ports());
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(event.ports()[i], m->ports()[i]);
      EXPECT_EQ(event.port_descriptors()[i], m->port_descriptors()[i]);
    }
    EXPECT_EQ(payload, std::vector<uint8_t>(m->message().bytes().begin(),
                                            m->message().bytes().end()));
  }
}

TEST(EventCodecTest, ControlEventsRoundTripWithExtremeValues) {
  {
    PortAcceptedEvent e(kPortA, kInvalidPortName, kInvalidSequenceNum);
    EXPECT_TRUE(RoundTrip(e));
  }
  {
    ObserveProxyEvent e(kPortA, kPortB, kMax, kNodeA, kPortA, kNodeB, kPortB);
    ScopedEvent out = RoundTrip(e);
    ASSERT_TRUE(out);
    auto* o = static_cast<ObserveProxyEvent*>(out.get());
    EXPECT_EQ(kNodeA, o->proxy_node_name());
    EXPECT_EQ(kPortA, o->proxy_port_name());
    EXPECT_EQ(kNodeB, o->proxy_target_node_name());
    EXPECT_EQ(kPortB, o->proxy_target_port_name());
  }
  for (uint64_t v : {uint64_t{0}, kMax}) {
    ObserveProxyAckEvent ack(kPortA, kPortB, v, v);
    ScopedEvent out = RoundTrip(ack);
    ASSERT_TRUE(out);
    EXPECT_EQ(
        v, static_cast<ObserveProxyAckEvent*>(out.get())->last_sequence_num());
    ObserveClosureEvent closure(kPortA, kPortB, v, v);
    out = RoundTrip(closure);
    ASSERT_TRUE(out);
    EXPECT_EQ(
        v, static_cast<ObserveClosureEvent*>(out.get())->last_sequence_num());
    UserMessageReadAckRequestEvent request(kPortA, kPortB, v, v);
    out = RoundTrip(request);
    ASSERT_TRUE(out);
    EXPECT_EQ(v, static_cast<UserMessageReadAckRequestEvent*>(out.get())
                     ->sequence_num_to_acknowledge());
    UserMessageReadAckEvent read_ack(kPortA, kPortB, v, v);
    out = RoundTrip(read_ack);
    ASSERT_TRUE(out);
    EXPECT_EQ(v, static_cast<UserMessageReadAckEvent*>(out.get())
                     ->sequence_num_acknowledged());
  }
  {
    MergePortEvent e(kPortA, kInvalidPortName, kInvalidSequenceNum, kPortB,
                     ExtremeDescriptor(true));
    ScopedEvent out = RoundTrip(e);
    ASSERT_TRUE(out);
    auto* m = static_cast<MergePortEvent*>(out.get());
    EXPECT_EQ(kPortB, m->new_port_name());
    EXPECT_EQ(ExtremeDescriptor(true), m->new_port_descriptor());
  }
  {
    UpdatePreviousPeerEvent e(kPortA, kPortB, 0, kNodeA, kPortA);
    ScopedEvent out = RoundTrip(e);
    ASSERT_TRUE(out);
    auto* u = static_cast<UpdatePreviousPeerEvent*>(out.get());
    EXPECT_EQ(kNodeA, u->new_node_name());
    EXPECT_EQ(kPortA, u->new_port_name());
  }
}

TEST(EventCodecTest, RejectsShortHeader) {
  std::vector<uint8_t> bytes =
      PortAcceptedEvent(kPortA, kPortB, 1).SerializeToVector();
  for (size_t n = 0; n < kEventHeaderSize; ++n) {
    Result<ScopedEvent> r =
        Event::Deserialize(std::span<const uint8_t>(bytes.data(), n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(StatusCode::kCorrupt, r.status().code());
  }
  EXPECT_TRUE(Event::Deserialize(bytes).ok());
}

TEST(EventCodecTest, RejectsUnknownType) {
  std::vector<uint8_t> bytes =
      PortAcceptedEvent(kPortA, kPortB, 1).SerializeToVector();
  for (uint32_t type : {9u, 10u, 0x100u, 0xFFFFFFFFu}) {
    for (int i = 0; i < 4; ++i)
      bytes[i] = uint8_t(type >> (8 * i));
    Result<ScopedEvent> r = Event::Deserialize(bytes);
    ASSERT_FALSE(r.ok()) << type;
    EXPECT_EQ(StatusCode::kProtocolViolation, r.status().code());
  }
}

// Against the negotiated minor: a type no minor defines is a violation; a
// type of a minor above the negotiated one is refused as ignorable
// (IsEventFromNewerMinor); an allowed type decodes. The table is the test's
// own, with PortAccepted pretending to come from minor 2.
TEST(EventCodecTest, JudgesTheTypeAgainstTheNegotiatedMinor) {
  std::vector<uint8_t> bytes =
      PortAcceptedEvent(kPortA, kPortB, 1).SerializeToVector();
  EXPECT_TRUE(Event::Deserialize(bytes, kEventProtocolMinor).ok());

  const uint16_t table[] = {0, 2, 0};
  Result<ScopedEvent> newer = Event::Deserialize(bytes, 1, table);
  ASSERT_FALSE(newer.ok());
  EXPECT_TRUE(IsEventFromNewerMinor(newer.status()))
      << newer.status().ToString();
  Result<ScopedEvent> allowed = Event::Deserialize(bytes, 2, table);
  ASSERT_TRUE(allowed.ok()) << allowed.status().ToString();
  EXPECT_EQ(EventType::kPortAccepted, allowed.value()->type());

  for (uint32_t type : {3u, 9u, 0xFFFFFFFFu}) {
    for (int i = 0; i < 4; ++i)
      bytes[i] = uint8_t(type >> (8 * i));
    Result<ScopedEvent> unknown = Event::Deserialize(bytes, 2, table);
    ASSERT_FALSE(unknown.ok()) << type;
    EXPECT_EQ(StatusCode::kProtocolViolation, unknown.status().code());
    EXPECT_FALSE(IsEventFromNewerMinor(unknown.status()));
  }
  // A short buffer is still judged by the codec itself.
  std::vector<uint8_t> shorter(bytes.begin(), bytes.begin() + 4);
  Result<ScopedEvent> short_result =
      Event::Deserialize(shorter, kEventProtocolMinor);
  ASSERT_FALSE(short_result.ok());
  EXPECT_EQ(StatusCode::kCorrupt, short_result.status().code());
}

TEST(EventCodecTest, RejectsTruncatedFixedPayloads) {
  std::vector<ScopedEvent> events;
  events.push_back(std::make_unique<ObserveProxyEvent>(
      kPortA, kPortB, 1, kNodeA, kPortA, kNodeB, kPortB));
  events.push_back(
      std::make_unique<ObserveProxyAckEvent>(kPortA, kPortB, 1, 2));
  events.push_back(std::make_unique<ObserveClosureEvent>(kPortA, kPortB, 1, 2));
  events.push_back(std::make_unique<MergePortEvent>(kPortA, kPortB, 1, kPortB,
                                                    ExtremeDescriptor(false)));
  events.push_back(
      std::make_unique<UserMessageReadAckRequestEvent>(kPortA, kPortB, 1, 2));
  events.push_back(
      std::make_unique<UserMessageReadAckEvent>(kPortA, kPortB, 1, 2));
  events.push_back(std::make_unique<UpdatePreviousPeerEvent>(kPortA, kPortB, 1,
                                                             kNodeA, kPortA));
  events.push_back(std::make_unique<UserMessageEvent>(0));
  for (const auto& event : events) {
    SCOPED_TRACE(EventTypeName(event->type()));
    std::vector<uint8_t> bytes = event->SerializeToVector();
    for (size_t n = kEventHeaderSize; n < bytes.size(); ++n) {
      Result<ScopedEvent> r =
          Event::Deserialize(std::span<const uint8_t>(bytes.data(), n));
      ASSERT_FALSE(r.ok()) << n;
      EXPECT_EQ(StatusCode::kCorrupt, r.status().code());
    }
    // Trailing bytes are accepted (room for later protocol minors).
    bytes.push_back(0xEE);
    EXPECT_TRUE(Event::Deserialize(bytes).ok());
  }
}

std::vector<uint8_t> UserMessageBytes(size_t num_ports) {
  UserMessageEvent event(num_ports);
  for (size_t i = 0; i < num_ports; ++i) {
    event.ports()[i] = PortName(i + 1, 0);
    event.port_descriptors()[i] = ExtremeDescriptor(false);
  }
  return event.SerializeToVector();
}

void SetNumPorts(std::vector<uint8_t>* bytes, uint32_t n) {
  for (int i = 0; i < 4; ++i)
    (*bytes)[kEventHeaderSize + 8 + i] = uint8_t(n >> (8 * i));
}

TEST(EventCodecTest, RejectsUserMessagePortCountBeyondBytes) {
  std::vector<uint8_t> bytes = UserMessageBytes(2);
  // One port more than the bytes hold.
  SetNumPorts(&bytes, 3);
  EXPECT_EQ(StatusCode::kCorrupt, Event::Deserialize(bytes).status().code());
  // A count whose byte size would overflow 32 bits, and the largest count.
  for (uint32_t n : {0x02492493u, 0xFFFFFFFFu}) {
    SetNumPorts(&bytes, n);
    Result<ScopedEvent> r = Event::Deserialize(bytes);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(StatusCode::kCorrupt, r.status().code());
  }
  // Cut in the middle of the port names.
  bytes = UserMessageBytes(2);
  bytes.resize(bytes.size() - 1);
  EXPECT_FALSE(Event::Deserialize(bytes).ok());
}

TEST(EventCodecTest, RejectsDescriptorBooleanOtherThanZeroOrOne) {
  std::vector<uint8_t> bytes = UserMessageBytes(1);
  size_t flag = kEventHeaderSize + kUserMessageFixedSize + 88;
  bytes[flag] = 1;
  EXPECT_TRUE(Event::Deserialize(bytes).ok());
  bytes[flag] = 2;
  EXPECT_EQ(StatusCode::kCorrupt, Event::Deserialize(bytes).status().code());
  bytes[flag] = 0xFF;
  EXPECT_FALSE(Event::Deserialize(bytes).ok());

  std::vector<uint8_t> merge =
      MergePortEvent(kPortA, kPortB, 1, kPortB, ExtremeDescriptor(false))
          .SerializeToVector();
  merge[kEventHeaderSize + 16 + 88] = 7;
  EXPECT_EQ(StatusCode::kCorrupt, Event::Deserialize(merge).status().code());
}

TEST(EventCodecTest, IgnoresReservedBytes) {
  std::vector<uint8_t> bytes = UserMessageBytes(1);
  bytes[5] = 0xAA;                      // header reserved
  bytes[kEventHeaderSize + 13] = 0xBB;  // user message reserved
  bytes[kEventHeaderSize + kUserMessageFixedSize + 90] = 0xCC;  // descriptor
  EXPECT_TRUE(Event::Deserialize(bytes).ok());
}

TEST(EventCodecTest, OnlyUntargetedObserveProxyIsBroadcast) {
  ObserveProxyEvent broadcast(kInvalidPortName, kInvalidPortName,
                              kInvalidSequenceNum, kNodeA, kPortA,
                              kInvalidNodeName, kInvalidPortName);
  ScopedEvent clone = broadcast.CloneForBroadcast();
  ASSERT_TRUE(clone);
  EXPECT_EQ(broadcast.SerializeToVector(), clone->SerializeToVector());
  ObserveProxyEvent targeted(kPortA, kPortB, 1, kNodeA, kPortA, kNodeB, kPortB);
  EXPECT_FALSE(targeted.CloneForBroadcast());
  EXPECT_FALSE(
      ObserveClosureEvent(kInvalidPortName, kPortB, 1, 1).CloneForBroadcast());
}

TEST(EventCodecTest, SerializeRefusesSmallBuffer) {
  ObserveClosureEvent event(kPortA, kPortB, 1, 1);
  std::vector<uint8_t> small(event.GetSerializedSize() - 1);
  EXPECT_EQ(StatusCode::kInvalidArgument, event.Serialize(small).code());
}

// Random bytes (seeded; SHMPORTS_TEST_SEED replays) never crash the decoder
// and whatever decodes re-encodes to a prefix-compatible form.
TEST(EventCodecTest, RandomBytesNeverCrash) {
  uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const uint64_t iterations = testing::Scaled(20000, 500);
  for (uint64_t i = 0; i < iterations; ++i) {
    std::vector<uint8_t> bytes;
    // Half the inputs start from a valid event so the deeper paths are hit.
    if (rng() % 2) {
      bytes = UserMessageBytes(rng() % 3);
    } else {
      bytes.resize(rng() % 400);
    }
    for (auto& b : bytes) {
      if (rng() % 8 == 0)
        b = uint8_t(rng());
    }
    if (!bytes.empty() && rng() % 2)
      bytes[0] = uint8_t(rng() % 10);
    Result<ScopedEvent> r = Event::Deserialize(bytes);
    if (r.ok()) {
      std::vector<uint8_t> again = (*r)->SerializeToVector();
      EXPECT_LE(again.size(), bytes.size());
    }
  }
}

}  // namespace
}  // namespace shmports::ports
