// The nine events of the ports protocol and their wire format.
//
// Every event has a common header — type, the target `port_name` on the
// receiving node, the sending `from_port` and the per-hop
// `control_sequence_num` (§4.5 of the protocol notes) — and a fixed payload
// per type. Events are created by Node (and by embedders for user messages),
// handed to NodeDelegate::ForwardEvent, serialised by the transport and
// turned back into objects by Event::Deserialize on the receiving node.
//
// Wire format. Unlike Mojo (host order, raw struct copies), every field is
// written little-endian by explicit conversion, so the layout is the same on
// every host and never depends on a compiler's struct packing:
//
//   header (48 bytes)
//     0  u32  type (EventType)
//     4  u32  reserved, written 0, ignored on read
//     8  16   port_name      (v1 u64, v2 u64)
//    24  16   from_port
//    40  u64  control_sequence_num
//   PortDescriptor (96 bytes)
//     0  16   peer_node_name      16 16 peer_port_name
//    32  16   referring_node_name 48 16 referring_port_name
//    64  u64  next_sequence_num_to_send
//    72  u64  next_sequence_num_to_receive
//    80  u64  last_sequence_num_to_receive
//    88  u8   peer_closed (0 or 1; anything else is refused)
//    89  7    reserved, written 0, ignored on read
//   payloads after the header:
//     UserMessage          u64 sequence_num, u32 num_ports, u32 reserved,
//                          num_ports × PortDescriptor, num_ports × PortName,
//                          then the user payload bytes (the rest)
//     PortAccepted         nothing
//     ObserveProxy         proxy_node, proxy_port, proxy_target_node,
//                          proxy_target_port (4 × 16)
//     ObserveProxyAck      u64 last_sequence_num
//     ObserveClosure       u64 last_sequence_num
//     MergePort            new_port_name (16), PortDescriptor (96)
//     UserMessageReadAckRequest  u64 sequence_num_to_acknowledge
//     UserMessageReadAck   u64 sequence_num_acknowledged
//     UpdatePreviousPeer   new_node_name (16), new_port_name (16)
//
// Decoding never trusts the bytes (Event::Deserialize lists each refusal).
// Trailing bytes after a fixed payload are accepted (room for later minors).
//
// Events are plain objects owned through ScopedEvent; not thread-safe.
#ifndef SHMPORTS_CORE_PORTS_EVENT_H_
#define SHMPORTS_CORE_PORTS_EVENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/base/status.h"
#include "core/ports/name.h"
#include "core/ports/user_message.h"

namespace shmports::ports {

inline constexpr uint64_t kInitialSequenceNum = 1;
inline constexpr uint64_t kInvalidSequenceNum = UINT64_MAX;

enum class EventType : uint32_t {
  kUserMessage = 0,
  kPortAccepted = 1,
  kObserveProxy = 2,
  kObserveProxyAck = 3,
  kObserveClosure = 4,
  kMergePort = 5,
  kUserMessageReadAckRequest = 6,
  kUserMessageReadAck = 7,
  kUpdatePreviousPeer = 8,
};
inline constexpr uint32_t kNumEventTypes = 9;

// The newest protocol minor whose event types this build knows, and the
// minor that introduced each type (indexed by type number). All nine are
// minor 0; a later minor appends types and raises kEventProtocolMinor.
inline constexpr uint16_t kEventProtocolMinor = 0;
inline constexpr uint16_t kEventTypeIntroducedInMinor[kNumEventTypes] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0};

// "UserMessage", "ObserveProxy", ...; "Unknown" otherwise.
const char* EventTypeName(EventType type);

// True for Event::Deserialize's "type from a newer minor" refusal, which is
// ignored and counted rather than held against the peer.
inline bool IsEventFromNewerMinor(const Status& status) {
  return status.code() == StatusCode::kNotFound;
}

// Everything the receiving node needs to recreate a port sent to it.
struct PortDescriptor {
  NodeName peer_node_name;
  PortName peer_port_name;
  NodeName referring_node_name;
  PortName referring_port_name;
  uint64_t next_sequence_num_to_send = 0;
  uint64_t next_sequence_num_to_receive = 0;
  uint64_t last_sequence_num_to_receive = 0;
  bool peer_closed = false;

  friend bool operator==(const PortDescriptor&,
                         const PortDescriptor&) = default;
};

inline constexpr size_t kEventHeaderSize = 48;
inline constexpr size_t kPortDescriptorSize = 96;
inline constexpr size_t kUserMessageFixedSize = 16;
inline constexpr size_t kSerializedPortSize = kPortDescriptorSize + 16;

class Event;
using ScopedEvent = std::unique_ptr<Event>;

class Event {
 public:
  virtual ~Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Decodes one event from `bytes`. Refused (kCorrupt unless noted):
  //  1. fewer bytes than the header;
  //  2. a type that is not one of the nine (kProtocolViolation);
  //  3. fewer payload bytes than the type's fixed payload;
  //  4. a UserMessage whose num_ports × 112 overflows or exceeds the bytes;
  //  5. a PortDescriptor whose peer_closed byte is not 0 or 1.
  // Names, sequence numbers and reserved bytes are not judged here; Node
  // does that with the port state at hand.
  static Result<ScopedEvent> Deserialize(std::span<const uint8_t> bytes);

  // As above for a link whose handshake negotiated `negotiated_minor`; the
  // type is judged against `introduced_in_minor` (by type number; tests may
  // pass their own table):
  //  - a type introduced in a minor above the negotiated one (the peer
  //    speaks ahead of what was agreed; harmless) → kNotFound: the caller
  //    ignores and counts it (IsEventFromNewerMinor);
  //  - a type no table entry names → kProtocolViolation: nothing the
  //    negotiated minor allows (the negotiated minor is never above ours).
  static Result<ScopedEvent> Deserialize(
      std::span<const uint8_t> bytes,
      uint16_t negotiated_minor,
      std::span<const uint16_t> introduced_in_minor =
          std::span<const uint16_t>(kEventTypeIntroducedInMinor));

  // As Deserialize(bytes, negotiated_minor, introduced_in_minor) for the
  // bytes `head` followed by `body` (every refusal is the same). `body` is
  // given up: when `head` ends exactly where a UserMessage's user payload
  // starts (see UserPayloadOffset), the message adopts `body` as its payload
  // without a copy; otherwise the bytes are joined and decoded as above.
  static Result<ScopedEvent> Deserialize(
      std::span<const uint8_t> head,
      std::vector<uint8_t>&& body,
      uint16_t negotiated_minor,
      std::span<const uint16_t> introduced_in_minor =
          std::span<const uint16_t>(kEventTypeIntroducedInMinor));

  // Where the user payload of a serialised UserMessage of `total` bytes
  // starts, read from its first bytes `prefix` (header and fixed payload):
  // kEventHeaderSize + kUserMessageFixedSize + num_ports × 112. 0 when
  // `prefix` is too short to tell, the type is not UserMessage, or the
  // claimed ports do not fit in `total` (the decoder then refuses the event
  // whatever its split). Reads nothing beyond `prefix`; trusts nothing.
  static size_t UserPayloadOffset(std::span<const uint8_t> prefix,
                                  uint64_t total);

  // A copy for NodeDelegate::BroadcastEvent: only the untargeted
  // ObserveProxy (invalid port_name) may be broadcast; null for anything else.
  virtual ScopedEvent CloneForBroadcast() const { return nullptr; }

  // Header plus payload (for UserMessage including the user bytes).
  size_t GetSerializedSize() const {
    return kEventHeaderSize + GetPayloadSize();
  }
  // Writes GetSerializedSize() bytes; `out` must be at least that large
  // (kInvalidArgument otherwise, nothing written).
  Status Serialize(std::span<uint8_t> out) const;
  // The same bytes in a new vector, each written once (the block is not
  // zeroed first).
  std::vector<uint8_t> SerializeToVector() const;

  EventType type() const { return type_; }
  const PortName& port_name() const { return port_name_; }
  void set_port_name(const PortName& name) { port_name_ = name; }
  const PortName& from_port() const { return from_port_; }
  void set_from_port(const PortName& name) { from_port_ = name; }
  uint64_t control_sequence_num() const { return control_sequence_num_; }
  void set_control_sequence_num(uint64_t n) { control_sequence_num_ = n; }

 protected:
  Event(EventType type,
        const PortName& port_name,
        const PortName& from_port,
        uint64_t control_sequence_num)
      : type_(type),
        port_name_(port_name),
        from_port_(from_port),
        control_sequence_num_(control_sequence_num) {}

  // GetPayloadSize() includes the trailing bytes; SerializePayload writes
  // the payload up to them (Serialize appends them).
  virtual size_t GetPayloadSize() const = 0;
  virtual void SerializePayload(uint8_t* out) const = 0;
  // Bytes that end the payload verbatim (a UserMessage's user payload).
  virtual std::span<const uint8_t> TrailingBytes() const { return {}; }

 private:
  const EventType type_;
  PortName port_name_;
  PortName from_port_;
  uint64_t control_sequence_num_;
};

// Downcast of an owning pointer; the caller has checked type().
template <typename T>
std::unique_ptr<T> EventCast(ScopedEvent* event) {
  return std::unique_ptr<T>(static_cast<T*>(event->release()));
}

// A user message: payload bytes plus attached ports. Before sending, the
// embedder fills ports() with the names of local receiving ports; the node
// rewrites them (and fills port_descriptors()) if the message leaves the node.
class UserMessageEvent : public Event {
 public:
  explicit UserMessageEvent(size_t num_ports = 0);
  ~UserMessageEvent() override;

  // Resizes both port arrays (names zeroed, descriptors default).
  void ReservePorts(size_t num_ports);

  size_t num_ports() const { return ports_.size(); }
  PortName* ports() { return ports_.data(); }
  const PortName* ports() const { return ports_.data(); }
  PortDescriptor* port_descriptors() { return port_descriptors_.data(); }
  const PortDescriptor* port_descriptors() const {
    return port_descriptors_.data();
  }

  // 0 until the sending port assigns one; reset to 0 by Node::GetMessage so
  // that the event can be sent again.
  uint64_t sequence_num() const { return sequence_num_; }
  void set_sequence_num(uint64_t n) { sequence_num_ = n; }

  UserMessage& message() { return message_; }
  const UserMessage& message() const { return message_; }

  // Bytes this message counts for in queue accounting (the user payload).
  size_t GetSizeIfSerialized() const { return message_.size(); }

 private:
  friend class Event;
  size_t GetPayloadSize() const override;
  void SerializePayload(uint8_t* out) const override;
  std::span<const uint8_t> TrailingBytes() const override {
    return message_.bytes();
  }

  uint64_t sequence_num_ = 0;
  std::vector<PortName> ports_;
  std::vector<PortDescriptor> port_descriptors_;
  UserMessage message_;
};

// Sent by the node that accepted a transferred port to its referring (now
// buffering) port: start proxying. Unsequenced.
class PortAcceptedEvent : public Event {
 public:
  PortAcceptedEvent(const PortName& port_name,
                    const PortName& from_port,
                    uint64_t control_sequence_num);
  ~PortAcceptedEvent() override;

 private:
  size_t GetPayloadSize() const override { return 0; }
  void SerializePayload(uint8_t*) const override {}
};

// "A proxy sits between us": travels along the route until it reaches the
// port whose peer is the proxy. With an invalid port_name it is the
// broadcast form announcing a dead proxy (proxy_target_* invalid).
class ObserveProxyEvent : public Event {
 public:
  ObserveProxyEvent(const PortName& port_name,
                    const PortName& from_port,
                    uint64_t control_sequence_num,
                    const NodeName& proxy_node_name,
                    const PortName& proxy_port_name,
                    const NodeName& proxy_target_node_name,
                    const PortName& proxy_target_port_name);
  ~ObserveProxyEvent() override;

  const NodeName& proxy_node_name() const { return proxy_node_name_; }
  const PortName& proxy_port_name() const { return proxy_port_name_; }
  const NodeName& proxy_target_node_name() const {
    return proxy_target_node_name_;
  }
  const PortName& proxy_target_port_name() const {
    return proxy_target_port_name_;
  }

  ScopedEvent CloneForBroadcast() const override;

 private:
  size_t GetPayloadSize() const override { return 64; }
  void SerializePayload(uint8_t* out) const override;

  NodeName proxy_node_name_;
  PortName proxy_port_name_;
  NodeName proxy_target_node_name_;
  PortName proxy_target_port_name_;
};

// Answer to ObserveProxy: the proxy may go once it has forwarded
// last_sequence_num. kInvalidSequenceNum means "try again later".
class ObserveProxyAckEvent : public Event {
 public:
  ObserveProxyAckEvent(const PortName& port_name,
                       const PortName& from_port,
                       uint64_t control_sequence_num,
                       uint64_t last_sequence_num);
  ~ObserveProxyAckEvent() override;

  uint64_t last_sequence_num() const { return last_sequence_num_; }

 private:
  size_t GetPayloadSize() const override { return 8; }
  void SerializePayload(uint8_t* out) const override;

  uint64_t last_sequence_num_;
};

// The peer closed after sending last_sequence_num.
class ObserveClosureEvent : public Event {
 public:
  ObserveClosureEvent(const PortName& port_name,
                      const PortName& from_port,
                      uint64_t control_sequence_num,
                      uint64_t last_sequence_num);
  ~ObserveClosureEvent() override;

  uint64_t last_sequence_num() const { return last_sequence_num_; }
  void set_last_sequence_num(uint64_t n) { last_sequence_num_ = n; }

 private:
  size_t GetPayloadSize() const override { return 8; }
  void SerializePayload(uint8_t* out) const override;

  uint64_t last_sequence_num_;
};

// Merge the described port (to be created as new_port_name) into the target
// port's route. Unsequenced.
class MergePortEvent : public Event {
 public:
  MergePortEvent(const PortName& port_name,
                 const PortName& from_port,
                 uint64_t control_sequence_num,
                 const PortName& new_port_name,
                 const PortDescriptor& new_port_descriptor);
  ~MergePortEvent() override;

  const PortName& new_port_name() const { return new_port_name_; }
  const PortDescriptor& new_port_descriptor() const {
    return new_port_descriptor_;
  }

 private:
  size_t GetPayloadSize() const override { return 16 + kPortDescriptorSize; }
  void SerializePayload(uint8_t* out) const override;

  PortName new_port_name_;
  PortDescriptor new_port_descriptor_;
};

// Please send a UserMessageReadAck once sequence_num_to_acknowledge is read.
class UserMessageReadAckRequestEvent : public Event {
 public:
  UserMessageReadAckRequestEvent(const PortName& port_name,
                                 const PortName& from_port,
                                 uint64_t control_sequence_num,
                                 uint64_t sequence_num_to_acknowledge);
  ~UserMessageReadAckRequestEvent() override;

  uint64_t sequence_num_to_acknowledge() const {
    return sequence_num_to_acknowledge_;
  }

 private:
  size_t GetPayloadSize() const override { return 8; }
  void SerializePayload(uint8_t* out) const override;

  uint64_t sequence_num_to_acknowledge_;
};

// Messages up to sequence_num_acknowledged have been read.
class UserMessageReadAckEvent : public Event {
 public:
  UserMessageReadAckEvent(const PortName& port_name,
                          const PortName& from_port,
                          uint64_t control_sequence_num,
                          uint64_t sequence_num_acknowledged);
  ~UserMessageReadAckEvent() override;

  uint64_t sequence_num_acknowledged() const {
    return sequence_num_acknowledged_;
  }

 private:
  size_t GetPayloadSize() const override { return 8; }
  void SerializePayload(uint8_t* out) const override;

  uint64_t sequence_num_acknowledged_;
};

// From now on, sequenced events for the target come from new_node:new_port.
class UpdatePreviousPeerEvent : public Event {
 public:
  UpdatePreviousPeerEvent(const PortName& port_name,
                          const PortName& from_port,
                          uint64_t control_sequence_num,
                          const NodeName& new_node_name,
                          const PortName& new_port_name);
  ~UpdatePreviousPeerEvent() override;

  const NodeName& new_node_name() const { return new_node_name_; }
  const PortName& new_port_name() const { return new_port_name_; }

 private:
  size_t GetPayloadSize() const override { return 32; }
  void SerializePayload(uint8_t* out) const override;

  NodeName new_node_name_;
  PortName new_port_name_;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_EVENT_H_
