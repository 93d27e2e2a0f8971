// Fuzz target: Node::AcceptEvent fed arbitrary event sequences on a small
// live node. The node has a local pair, ports whose peers live on two remote
// nodes, and a port allowed to merge; the input is a list of records
//
//   u8 sender   (which remote node sends: 0 → P1, 1 → P2, else this node)
//   u8 target   (< number of known ports: overwrite the event's port_name,
//                and with bit 7 also from_port, with a known port's name)
//   u16 length  (little-endian), then `length` bytes of an encoded event.
//
// Events the node forwards to itself are accepted in order after each
// record; events to other nodes are dropped. At the end the remote nodes are
// lost and local ports closed; ASan reports anything leaked, and nothing may
// crash or hang whatever the bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <span>
#include <vector>

#include "core/ports/event.h"
#include "core/ports/node.h"

namespace {

using namespace shmports::ports;

const NodeName kSelf(1, 1);
const NodeName kPeer1(2, 1);
const NodeName kPeer2(3, 1);

class LoopbackDelegate : public NodeDelegate {
 public:
  void ForwardEvent(const NodeName& node, ScopedEvent event) override {
    if (node == kSelf)
      self_events.push_back(std::move(event));
  }
  void BroadcastEvent(ScopedEvent) override {}
  void PortStatusChanged(const PortRef&) override {}

  std::deque<ScopedEvent> self_events;
};

void Pump(Node* node, LoopbackDelegate* delegate) {
  // Bounded: a hostile sequence must not keep the node busy forever.
  for (int i = 0; i < 10000 && !delegate->self_events.empty(); ++i) {
    ScopedEvent e = std::move(delegate->self_events.front());
    delegate->self_events.pop_front();
    node->AcceptEvent(kSelf, std::move(e));
  }
  delegate->self_events.clear();
}

void WriteName(uint8_t* out, const PortName& name) {
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<uint8_t>(name.v1 >> (8 * i));
  for (int i = 0; i < 8; ++i)
    out[8 + i] = static_cast<uint8_t>(name.v2 >> (8 * i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  LoopbackDelegate delegate;
  Node node(kSelf, &delegate);

  std::vector<PortRef> ports(6);
  node.CreatePortPair(&ports[0], &ports[1]);
  node.CreateUninitializedPort(&ports[2]);
  node.InitializePort(ports[2], kPeer1, PortName(7, 7), kPeer1, PortName(7, 7));
  node.CreateUninitializedPort(&ports[3]);
  node.InitializePort(ports[3], kPeer2, PortName(8, 8), kPeer2, PortName(8, 8));
  node.CreateUninitializedPort(&ports[4]);
  node.InitializePort(ports[4], kPeer1, PortName(9, 9), kPeer1, PortName(9, 9));
  node.AllowPortMerge(ports[4], kPeer1);
  node.CreatePortPair(&ports[5], &ports[0]);  // ports[0] replaced: a 2nd pair.

  std::vector<uint8_t> record;
  size_t pos = 0;
  while (pos + 4 <= size) {
    uint8_t sender = data[pos];
    uint8_t target = data[pos + 1];
    size_t length = data[pos + 2] | (static_cast<size_t>(data[pos + 3]) << 8);
    pos += 4;
    if (length > size - pos)
      length = size - pos;
    record.assign(data + pos, data + pos + length);
    pos += length;

    size_t which = target & 0x7f;
    if (which < ports.size() && record.size() >= kEventHeaderSize) {
      WriteName(record.data() + 8, ports[which].name());
      if (target & 0x80) {
        WriteName(record.data() + 24, ports[(which + 1) % ports.size()].name());
      }
    }
    auto event = Event::Deserialize(record, kEventProtocolMinor);
    if (!event.ok())
      continue;
    const NodeName& from =
        sender == 0 ? kPeer1 : (sender == 1 ? kPeer2 : kSelf);
    node.AcceptEvent(from, std::move(*event));
    Pump(&node, &delegate);

    // Read whatever became readable, as an application would.
    std::unique_ptr<UserMessageEvent> message;
    for (const PortRef& p : ports) {
      for (int i = 0; i < 4; ++i) {
        if (node.GetMessage(p, &message, nullptr) != OK || !message)
          break;
      }
    }
    Pump(&node, &delegate);
  }

  for (const PortRef& p : ports)
    node.ClosePort(p);
  Pump(&node, &delegate);
  node.LostConnectionToNode(kPeer1);
  node.LostConnectionToNode(kPeer2);
  Pump(&node, &delegate);
  return 0;
}
