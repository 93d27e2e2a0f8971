#include "core/ports/event.h"

#include <cstring>
#include <limits>

#include "core/base/str_format.h"

namespace shmports::ports {
namespace {

// Explicit little-endian conversion: the wire never depends on the host.
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
template <typename Tag>
void PutName(uint8_t* p, const BasicName<Tag>& name) {
  PutU64(p, name.v1);
  PutU64(p + 8, name.v2);
}
template <typename NameT>
NameT GetName(const uint8_t* p) {
  return NameT(GetU64(p), GetU64(p + 8));
}

void PutDescriptor(uint8_t* p, const PortDescriptor& d) {
  PutName(p + 0, d.peer_node_name);
  PutName(p + 16, d.peer_port_name);
  PutName(p + 32, d.referring_node_name);
  PutName(p + 48, d.referring_port_name);
  PutU64(p + 64, d.next_sequence_num_to_send);
  PutU64(p + 72, d.next_sequence_num_to_receive);
  PutU64(p + 80, d.last_sequence_num_to_receive);
  p[88] = d.peer_closed ? 1 : 0;
  std::memset(p + 89, 0, 7);
}

// False when the boolean byte is neither 0 nor 1 (a value no encoder writes).
bool GetDescriptor(const uint8_t* p, PortDescriptor* d) {
  if (p[88] > 1)
    return false;
  d->peer_node_name = GetName<NodeName>(p + 0);
  d->peer_port_name = GetName<PortName>(p + 16);
  d->referring_node_name = GetName<NodeName>(p + 32);
  d->referring_port_name = GetName<PortName>(p + 48);
  d->next_sequence_num_to_send = GetU64(p + 64);
  d->next_sequence_num_to_receive = GetU64(p + 72);
  d->last_sequence_num_to_receive = GetU64(p + 80);
  d->peer_closed = p[88] == 1;
  return true;
}

size_t FixedPayloadSize(EventType type) {
  switch (type) {
    case EventType::kUserMessage:
      return kUserMessageFixedSize;
    case EventType::kPortAccepted:
      return 0;
    case EventType::kObserveProxy:
      return 64;
    case EventType::kObserveProxyAck:
    case EventType::kObserveClosure:
    case EventType::kUserMessageReadAckRequest:
    case EventType::kUserMessageReadAck:
      return 8;
    case EventType::kMergePort:
      return 16 + kPortDescriptorSize;
    case EventType::kUpdatePreviousPeer:
      return 32;
  }
  return 0;
}

// `payload` is the event's payload; with `adopt` non-null it ends where the
// user payload starts, and *adopt is the user payload.
Result<ScopedEvent> DeserializeUserMessage(const PortName& port_name,
                                           const PortName& from_port,
                                           uint64_t control_sequence_num,
                                           std::span<const uint8_t> payload,
                                           std::vector<uint8_t>* adopt) {
  const uint8_t* p = payload.data();
  uint64_t sequence_num = GetU64(p);
  uint64_t num_ports = GetU32(p + 8);
  size_t available = payload.size() - kUserMessageFixedSize;
  // num_ports is at most 2^32-1, so the product fits in 64 bits; compare
  // against what is there before allocating anything.
  if (num_ports > available / kSerializedPortSize) {
    return CorruptError(StrFormat(
        "UserMessage claims %llu ports (%llu bytes) but carries %zu bytes",
        static_cast<unsigned long long>(num_ports),
        static_cast<unsigned long long>(num_ports * kSerializedPortSize),
        available));
  }
  auto event = std::make_unique<UserMessageEvent>(num_ports);
  event->set_port_name(port_name);
  event->set_from_port(from_port);
  event->set_control_sequence_num(control_sequence_num);
  event->set_sequence_num(sequence_num);
  const uint8_t* descriptors = p + kUserMessageFixedSize;
  const uint8_t* names = descriptors + num_ports * kPortDescriptorSize;
  for (size_t i = 0; i < num_ports; ++i) {
    if (!GetDescriptor(descriptors + i * kPortDescriptorSize,
                       &event->port_descriptors()[i])) {
      return CorruptError(StrFormat(
          "UserMessage port descriptor %zu: peer_closed byte is not 0 or 1",
          i));
    }
    event->ports()[i] = GetName<PortName>(names + i * 16);
  }
  size_t used = kUserMessageFixedSize + num_ports * kSerializedPortSize;
  if (adopt != nullptr)
    event->message().Adopt(std::move(*adopt));
  else
    event->message().Assign(payload.subspan(used));
  return ScopedEvent(std::move(event));
}

}  // namespace

const char* EventTypeName(EventType type) {
  switch (type) {
    case EventType::kUserMessage:
      return "UserMessage";
    case EventType::kPortAccepted:
      return "PortAccepted";
    case EventType::kObserveProxy:
      return "ObserveProxy";
    case EventType::kObserveProxyAck:
      return "ObserveProxyAck";
    case EventType::kObserveClosure:
      return "ObserveClosure";
    case EventType::kMergePort:
      return "MergePort";
    case EventType::kUserMessageReadAckRequest:
      return "UserMessageReadAckRequest";
    case EventType::kUserMessageReadAck:
      return "UserMessageReadAck";
    case EventType::kUpdatePreviousPeer:
      return "UpdatePreviousPeer";
  }
  return "Unknown";
}

Status Event::Serialize(std::span<uint8_t> out) const {
  size_t size = GetSerializedSize();
  if (out.size() < size) {
    return InvalidArgumentError(
        StrFormat("serialise %s: buffer of %zu bytes, need %zu",
                  EventTypeName(type_), out.size(), size));
  }
  uint8_t* p = out.data();
  PutU32(p, static_cast<uint32_t>(type_));
  PutU32(p + 4, 0);
  PutName(p + 8, port_name_);
  PutName(p + 24, from_port_);
  PutU64(p + 40, control_sequence_num_);
  SerializePayload(p + kEventHeaderSize);
  std::span<const uint8_t> trailing = TrailingBytes();
  if (!trailing.empty())
    std::memcpy(p + size - trailing.size(), trailing.data(), trailing.size());
  return Status();
}

std::vector<uint8_t> Event::SerializeToVector() const {
  const size_t size = GetSerializedSize();
  std::span<const uint8_t> trailing = TrailingBytes();
  std::vector<uint8_t> out;
  out.reserve(size);
  // The header and fixed payload are small: zeroed, then written; the
  // trailing bytes are appended into the reserved block, written once.
  out.resize(size - trailing.size());
  uint8_t* p = out.data();
  PutU32(p, static_cast<uint32_t>(type_));
  PutU32(p + 4, 0);
  PutName(p + 8, port_name_);
  PutName(p + 24, from_port_);
  PutU64(p + 40, control_sequence_num_);
  SerializePayload(p + kEventHeaderSize);
  out.insert(out.end(), trailing.begin(), trailing.end());
  return out;
}

size_t Event::UserPayloadOffset(std::span<const uint8_t> prefix,
                                uint64_t total) {
  constexpr size_t kFixedEnd = kEventHeaderSize + kUserMessageFixedSize;
  if (prefix.size() < kFixedEnd || total < kFixedEnd ||
      GetU32(prefix.data()) != static_cast<uint32_t>(EventType::kUserMessage)) {
    return 0;
  }
  const uint64_t num_ports = GetU32(prefix.data() + kEventHeaderSize + 8);
  // As in DeserializeUserMessage: compare before multiplying.
  if (num_ports > (total - kFixedEnd) / kSerializedPortSize)
    return 0;
  return kFixedEnd + static_cast<size_t>(num_ports) * kSerializedPortSize;
}

Result<ScopedEvent> Event::Deserialize(
    std::span<const uint8_t> head,
    std::vector<uint8_t>&& body,
    uint16_t negotiated_minor,
    std::span<const uint16_t> introduced_in_minor) {
  if (head.empty()) {
    // Nothing split off: no payload boundary to adopt at.
    return Deserialize(std::span<const uint8_t>(body), negotiated_minor,
                       introduced_in_minor);
  }
  if (head.size() != UserPayloadOffset(head, head.size() + body.size())) {
    std::vector<uint8_t> joined;
    joined.reserve(head.size() + body.size());
    joined.insert(joined.end(), head.begin(), head.end());
    joined.insert(joined.end(), body.begin(), body.end());
    return Deserialize(std::span<const uint8_t>(joined), negotiated_minor,
                       introduced_in_minor);
  }
  // A UserMessage whose header, fixed payload and ports are all of `head`:
  // the same checks as the joined bytes get, then the payload is adopted.
  // (The ports fit in `head`, so refusal 4 cannot apply; refusal 5 is
  // judged by DeserializeUserMessage on `head`.)
  const uint8_t* p = head.data();
  const uint32_t raw_type = GetU32(p);
  if (raw_type >= introduced_in_minor.size()) {
    return ProtocolViolationError(
        StrFormat("event type %u is unknown within protocol minor %u", raw_type,
                  static_cast<unsigned>(negotiated_minor)));
  }
  if (introduced_in_minor[raw_type] > negotiated_minor) {
    return NotFoundError(StrFormat(
        "event type %u belongs to protocol minor %u, above the negotiated "
        "%u",
        raw_type, static_cast<unsigned>(introduced_in_minor[raw_type]),
        static_cast<unsigned>(negotiated_minor)));
  }
  return DeserializeUserMessage(GetName<PortName>(p + 8),
                                GetName<PortName>(p + 24), GetU64(p + 40),
                                head.subspan(kEventHeaderSize), &body);
}

Result<ScopedEvent> Event::Deserialize(
    std::span<const uint8_t> bytes,
    uint16_t negotiated_minor,
    std::span<const uint16_t> introduced_in_minor) {
  if (bytes.size() >= kEventHeaderSize) {
    uint32_t raw_type = GetU32(bytes.data());
    if (raw_type >= introduced_in_minor.size()) {
      return ProtocolViolationError(
          StrFormat("event type %u is unknown within protocol minor %u",
                    raw_type, static_cast<unsigned>(negotiated_minor)));
    }
    if (introduced_in_minor[raw_type] > negotiated_minor) {
      return NotFoundError(StrFormat(
          "event type %u belongs to protocol minor %u, above the negotiated "
          "%u",
          raw_type, static_cast<unsigned>(introduced_in_minor[raw_type]),
          static_cast<unsigned>(negotiated_minor)));
    }
  }
  return Deserialize(bytes);
}

Result<ScopedEvent> Event::Deserialize(std::span<const uint8_t> bytes) {
  if (bytes.size() < kEventHeaderSize) {
    return CorruptError(
        StrFormat("event of %zu bytes is shorter than the "
                  "%zu-byte header",
                  bytes.size(), kEventHeaderSize));
  }
  const uint8_t* p = bytes.data();
  uint32_t raw_type = GetU32(p);
  if (raw_type >= kNumEventTypes) {
    return ProtocolViolationError(StrFormat("unknown event type %u", raw_type));
  }
  auto type = static_cast<EventType>(raw_type);
  PortName port_name = GetName<PortName>(p + 8);
  PortName from_port = GetName<PortName>(p + 24);
  uint64_t control_sequence_num = GetU64(p + 40);
  std::span<const uint8_t> payload = bytes.subspan(kEventHeaderSize);
  if (payload.size() < FixedPayloadSize(type)) {
    return CorruptError(StrFormat("%s payload of %zu bytes, need %zu",
                                  EventTypeName(type), payload.size(),
                                  FixedPayloadSize(type)));
  }
  const uint8_t* q = payload.data();
  switch (type) {
    case EventType::kUserMessage:
      return DeserializeUserMessage(port_name, from_port, control_sequence_num,
                                    payload, nullptr);
    case EventType::kPortAccepted:
      return ScopedEvent(std::make_unique<PortAcceptedEvent>(
          port_name, from_port, control_sequence_num));
    case EventType::kObserveProxy:
      return ScopedEvent(std::make_unique<ObserveProxyEvent>(
          port_name, from_port, control_sequence_num, GetName<NodeName>(q),
          GetName<PortName>(q + 16), GetName<NodeName>(q + 32),
          GetName<PortName>(q + 48)));
    case EventType::kObserveProxyAck:
      return ScopedEvent(std::make_unique<ObserveProxyAckEvent>(
          port_name, from_port, control_sequence_num, GetU64(q)));
    case EventType::kObserveClosure:
      return ScopedEvent(std::make_unique<ObserveClosureEvent>(
          port_name, from_port, control_sequence_num, GetU64(q)));
    case EventType::kMergePort: {
      PortDescriptor descriptor;
      if (!GetDescriptor(q + 16, &descriptor)) {
        return CorruptError(
            "MergePort descriptor: peer_closed byte is not 0 or 1");
      }
      return ScopedEvent(std::make_unique<MergePortEvent>(
          port_name, from_port, control_sequence_num, GetName<PortName>(q),
          descriptor));
    }
    case EventType::kUserMessageReadAckRequest:
      return ScopedEvent(std::make_unique<UserMessageReadAckRequestEvent>(
          port_name, from_port, control_sequence_num, GetU64(q)));
    case EventType::kUserMessageReadAck:
      return ScopedEvent(std::make_unique<UserMessageReadAckEvent>(
          port_name, from_port, control_sequence_num, GetU64(q)));
    case EventType::kUpdatePreviousPeer:
      return ScopedEvent(std::make_unique<UpdatePreviousPeerEvent>(
          port_name, from_port, control_sequence_num, GetName<NodeName>(q),
          GetName<PortName>(q + 16)));
  }
  return InternalError("unreachable event type");
}

UserMessageEvent::UserMessageEvent(size_t num_ports)
    : Event(EventType::kUserMessage,
            kInvalidPortName,
            kInvalidPortName,
            kInvalidSequenceNum) {
  if (num_ports != 0)
    ReservePorts(num_ports);
}

UserMessageEvent::~UserMessageEvent() = default;

void UserMessageEvent::ReservePorts(size_t num_ports) {
  ports_.resize(num_ports);
  port_descriptors_.resize(num_ports);
}

size_t UserMessageEvent::GetPayloadSize() const {
  return kUserMessageFixedSize + ports_.size() * kSerializedPortSize +
         message_.size();
}

void UserMessageEvent::SerializePayload(uint8_t* out) const {
  PutU64(out, sequence_num_);
  // Ports per message are bounded far below 2^32 by Node's limits; a larger
  // count could not be sent honestly anyway.
  PutU32(out + 8, static_cast<uint32_t>(ports_.size()));
  PutU32(out + 12, 0);
  uint8_t* descriptors = out + kUserMessageFixedSize;
  uint8_t* names = descriptors + ports_.size() * kPortDescriptorSize;
  for (size_t i = 0; i < ports_.size(); ++i) {
    PutDescriptor(descriptors + i * kPortDescriptorSize, port_descriptors_[i]);
    PutName(names + i * 16, ports_[i]);
  }
  // The user payload follows: TrailingBytes().
}

PortAcceptedEvent::PortAcceptedEvent(const PortName& port_name,
                                     const PortName& from_port,
                                     uint64_t control_sequence_num)
    : Event(EventType::kPortAccepted,
            port_name,
            from_port,
            control_sequence_num) {}
PortAcceptedEvent::~PortAcceptedEvent() = default;

ObserveProxyEvent::ObserveProxyEvent(const PortName& port_name,
                                     const PortName& from_port,
                                     uint64_t control_sequence_num,
                                     const NodeName& proxy_node_name,
                                     const PortName& proxy_port_name,
                                     const NodeName& proxy_target_node_name,
                                     const PortName& proxy_target_port_name)
    : Event(EventType::kObserveProxy,
            port_name,
            from_port,
            control_sequence_num),
      proxy_node_name_(proxy_node_name),
      proxy_port_name_(proxy_port_name),
      proxy_target_node_name_(proxy_target_node_name),
      proxy_target_port_name_(proxy_target_port_name) {}
ObserveProxyEvent::~ObserveProxyEvent() = default;

ScopedEvent ObserveProxyEvent::CloneForBroadcast() const {
  // A targeted ObserveProxy must travel only along its route: broadcasting it
  // would let it bypass the receiver's previous-peer check.
  if (port_name().is_valid())
    return nullptr;
  return std::make_unique<ObserveProxyEvent>(
      port_name(), from_port(), control_sequence_num(), proxy_node_name_,
      proxy_port_name_, proxy_target_node_name_, proxy_target_port_name_);
}

void ObserveProxyEvent::SerializePayload(uint8_t* out) const {
  PutName(out, proxy_node_name_);
  PutName(out + 16, proxy_port_name_);
  PutName(out + 32, proxy_target_node_name_);
  PutName(out + 48, proxy_target_port_name_);
}

ObserveProxyAckEvent::ObserveProxyAckEvent(const PortName& port_name,
                                           const PortName& from_port,
                                           uint64_t control_sequence_num,
                                           uint64_t last_sequence_num)
    : Event(EventType::kObserveProxyAck,
            port_name,
            from_port,
            control_sequence_num),
      last_sequence_num_(last_sequence_num) {}
ObserveProxyAckEvent::~ObserveProxyAckEvent() = default;
void ObserveProxyAckEvent::SerializePayload(uint8_t* out) const {
  PutU64(out, last_sequence_num_);
}

ObserveClosureEvent::ObserveClosureEvent(const PortName& port_name,
                                         const PortName& from_port,
                                         uint64_t control_sequence_num,
                                         uint64_t last_sequence_num)
    : Event(EventType::kObserveClosure,
            port_name,
            from_port,
            control_sequence_num),
      last_sequence_num_(last_sequence_num) {}
ObserveClosureEvent::~ObserveClosureEvent() = default;
void ObserveClosureEvent::SerializePayload(uint8_t* out) const {
  PutU64(out, last_sequence_num_);
}

MergePortEvent::MergePortEvent(const PortName& port_name,
                               const PortName& from_port,
                               uint64_t control_sequence_num,
                               const PortName& new_port_name,
                               const PortDescriptor& new_port_descriptor)
    : Event(EventType::kMergePort, port_name, from_port, control_sequence_num),
      new_port_name_(new_port_name),
      new_port_descriptor_(new_port_descriptor) {}
MergePortEvent::~MergePortEvent() = default;
void MergePortEvent::SerializePayload(uint8_t* out) const {
  PutName(out, new_port_name_);
  PutDescriptor(out + 16, new_port_descriptor_);
}

UserMessageReadAckRequestEvent::UserMessageReadAckRequestEvent(
    const PortName& port_name,
    const PortName& from_port,
    uint64_t control_sequence_num,
    uint64_t sequence_num_to_acknowledge)
    : Event(EventType::kUserMessageReadAckRequest,
            port_name,
            from_port,
            control_sequence_num),
      sequence_num_to_acknowledge_(sequence_num_to_acknowledge) {}
UserMessageReadAckRequestEvent::~UserMessageReadAckRequestEvent() = default;
void UserMessageReadAckRequestEvent::SerializePayload(uint8_t* out) const {
  PutU64(out, sequence_num_to_acknowledge_);
}

UserMessageReadAckEvent::UserMessageReadAckEvent(
    const PortName& port_name,
    const PortName& from_port,
    uint64_t control_sequence_num,
    uint64_t sequence_num_acknowledged)
    : Event(EventType::kUserMessageReadAck,
            port_name,
            from_port,
            control_sequence_num),
      sequence_num_acknowledged_(sequence_num_acknowledged) {}
UserMessageReadAckEvent::~UserMessageReadAckEvent() = default;
void UserMessageReadAckEvent::SerializePayload(uint8_t* out) const {
  PutU64(out, sequence_num_acknowledged_);
}

UpdatePreviousPeerEvent::UpdatePreviousPeerEvent(const PortName& port_name,
                                                 const PortName& from_port,
                                                 uint64_t control_sequence_num,
                                                 const NodeName& new_node_name,
                                                 const PortName& new_port_name)
    : Event(EventType::kUpdatePreviousPeer,
            port_name,
            from_port,
            control_sequence_num),
      new_node_name_(new_node_name),
      new_port_name_(new_port_name) {}
UpdatePreviousPeerEvent::~UpdatePreviousPeerEvent() = default;
void UpdatePreviousPeerEvent::SerializePayload(uint8_t* out) const {
  PutName(out, new_node_name_);
  PutName(out + 16, new_port_name_);
}

}  // namespace shmports::ports
