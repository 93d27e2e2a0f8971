#include "tests/chaos/ports_simulation.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <utility>

#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/node.h"

namespace shmports::ports::sim {
namespace {

// Payload of every simulated message: the oracle's message id plus where
// and in which order it was sent, then filler derived from the id so
// corruption of the bytes is noticed too.
struct PayloadHeader {
  uint32_t magic;
  uint32_t route;
  uint64_t id;
  uint64_t seq;
  uint32_t to_side;
  uint32_t filler_len;
};
constexpr uint32_t kPayloadMagic = 0x53494d31;  // "SIM1"

uint8_t FillerByte(uint64_t id, size_t i) {
  return static_cast<uint8_t>((id * 131 + i * 7) & 0xff);
}

struct End {
  enum State { kLive, kInMessage, kClosed, kMerged };
  int route = -1;
  int side = 0;
  State state = kLive;
  int node = -1;
  PortRef ref;
  uint64_t carrier = 0;  // Message id while kInMessage.
  bool sent_any = false;
  bool read_any = false;
  bool saw_peer_closed = false;
  size_t live_index = 0;
};

struct Route {
  int ends[2] = {-1, -1};
  // Indexed by the receiving side: messages sent toward it, read by it, and
  // the ids sent toward it that are neither read nor known lost.
  uint64_t sent[2] = {0, 0};
  uint64_t read[2] = {0, 0};
  std::deque<uint64_t> unread[2];
  bool tainted = false;
  bool merged_away = false;
  // Nodes an end of this route (or a proxy it left) may be on.
  uint32_t nodes_mask = 0;
};

struct Msg {
  enum State { kInFlight, kRead, kLost };
  int route = -1;
  int to_side = 0;
  uint64_t seq = 0;
  // As written into the payload (a merge relabels route/to_side above).
  uint32_t orig_route = 0;
  uint32_t orig_to_side = 0;
  std::vector<int> attached;
  State state = kInFlight;
};

const char* EndStateName(End::State s) {
  switch (s) {
    case End::kLive:
      return "live";
    case End::kInMessage:
      return "in-message";
    case End::kClosed:
      return "closed";
    case End::kMerged:
      return "merged";
  }
  return "?";
}

class Simulation {
 public:
  Simulation(uint64_t seed, const SimulationOptions& options)
      : options_(options),
        rng_(seed),
        network_(options.num_nodes > 0 ? options.num_nodes
                                       : 2 + static_cast<int>(rng_.Below(5)),
                 &rng_) {
    network_.SetFault(options.fault);
    network_.set_trace(options.trace);
  }

  SimulationResult Run();

 private:
  // Operations.
  void OpCreateLocalPair();
  void OpConnectNodes();
  void OpSend();
  void OpRead(int end_id, size_t max_messages);
  void OpClose();
  void OpMerge();
  void OpRemoveNode();
  void FinalPhase();

  // Oracle.
  int NewRoute(int node0, int node1);
  int NewLiveEnd(int route, int side, int node, PortRef ref);
  void AddLive(int end_id);
  void RemoveLive(int end_id);
  void CloseEnd(int end_id);
  void LoseMessage(uint64_t id);
  void LoseUnread(int route_id, int side);
  void Taint(int route_id);
  bool CheckMessage(int end_id, std::unique_ptr<UserMessageEvent> message);
  void CheckPeerClosed(int end_id);
  // True if `receiver` sits (through carrier messages) inside a message
  // toward `attached`: sending `attached` to it would make a cycle no one
  // can read (a leak Mojo allows; the simulation does not create one).
  bool WouldNest(int attached, int receiver) const {
    int at = receiver;
    for (int depth = 0; depth < 10000; ++depth) {
      if (at == attached)
        return true;
      if (ends_[at].state != End::kInMessage)
        return false;
      const Msg& carrier = msgs_[ends_[at].carrier - 1];
      at = routes_[carrier.route].ends[carrier.to_side];
    }
    return true;
  }
  int PeerOf(int end_id) const {
    const End& e = ends_[end_id];
    return routes_[e.route].ends[1 - e.side];
  }
  Node& NodeOf(int end_id) { return network_.node(ends_[end_id].node); }
  int RandomLiveEnd() {
    if (live_.empty())
      return -1;
    return live_[rng_.Below(live_.size())];
  }
  template <typename... Args>
  void Trace(const char* format, Args... args) {
    if (options_.trace) {
      fprintf(stderr, "op %llu: %s\n", static_cast<unsigned long long>(op_),
              StrFormat(format, args...).c_str());
    }
  }
  // Network failures (violations, codec) with the op they happened in.
  void PullNetworkFailures() {
    const std::vector<std::string>& all = network_.failures();
    for (; network_failures_seen_ < all.size(); ++network_failures_seen_) {
      Fail("network: " + all[network_failures_seen_]);
      Trace("FAILURE network: %s", all[network_failures_seen_].c_str());
    }
  }
  void Fail(std::string what) {
    if (failures_.size() < 20)
      failures_.push_back(
          StrFormat("op %llu: ", static_cast<unsigned long long>(op_)) + what);
  }
  std::string Describe(int end_id) const {
    const End& e = ends_[end_id];
    const Route& r = routes_[e.route];
    return StrFormat("end %d (route %d side %d, node %d, %s%s%s%s)", end_id,
                     e.route, e.side, e.node, EndStateName(e.state),
                     r.tainted ? ", tainted" : "",
                     e.ref.is_valid() ? ", port " : "",
                     e.ref.is_valid() ? e.ref.name().ToString().c_str() : "");
  }

  const SimulationOptions options_;
  SimRandom rng_;
  SimNetwork network_;
  std::vector<End> ends_;
  std::vector<Route> routes_;
  std::vector<Msg> msgs_;  // Message id N is msgs_[N - 1].
  std::vector<int> live_;
  // Ports handed to AllowPortMerge (node, port).
  std::vector<std::pair<int, PortRef>> pending_merges_;
  std::vector<std::string> failures_;
  uint64_t op_ = 0;
  size_t network_failures_seen_ = 0;
  SimulationResult stats_;
};

int Simulation::NewRoute(int node0, int node1) {
  Route r;
  r.nodes_mask = (1u << node0) | (1u << node1);
  routes_.push_back(std::move(r));
  ++stats_.routes;
  return static_cast<int>(routes_.size()) - 1;
}

int Simulation::NewLiveEnd(int route, int side, int node, PortRef ref) {
  End e;
  e.route = route;
  e.side = side;
  e.node = node;
  e.ref = std::move(ref);
  ends_.push_back(std::move(e));
  int id = static_cast<int>(ends_.size()) - 1;
  routes_[route].ends[side] = id;
  AddLive(id);
  return id;
}

void Simulation::AddLive(int end_id) {
  ends_[end_id].state = End::kLive;
  ends_[end_id].live_index = live_.size();
  live_.push_back(end_id);
}

void Simulation::RemoveLive(int end_id) {
  size_t index = ends_[end_id].live_index;
  int last = live_.back();
  live_[index] = last;
  ends_[last].live_index = index;
  live_.pop_back();
  ends_[end_id].ref = PortRef();
}

void Simulation::CloseEnd(int end_id) {
  End& e = ends_[end_id];
  if (e.state == End::kClosed || e.state == End::kMerged)
    return;
  if (e.state == End::kLive)
    RemoveLive(end_id);
  e.state = End::kClosed;
  // What was on its way to it dies with it, and so do the ports inside.
  LoseUnread(e.route, e.side);
}

void Simulation::LoseUnread(int route_id, int side) {
  std::deque<uint64_t> lost;
  lost.swap(routes_[route_id].unread[side]);
  for (uint64_t id : lost)
    LoseMessage(id);
}

void Simulation::LoseMessage(uint64_t id) {
  Msg& m = msgs_[id - 1];
  if (m.state != Msg::kInFlight)
    return;
  m.state = Msg::kLost;
  for (int a : m.attached) {
    if (ends_[a].state == End::kInMessage && ends_[a].carrier == id)
      CloseEnd(a);
  }
}

void Simulation::Taint(int route_id) {
  Route& r = routes_[route_id];
  if (r.tainted)
    return;
  r.tainted = true;
  ++stats_.tainted_routes;
  // Anything still travelling on a broken route may be lost, and with it
  // the ends it carries.
  for (int side = 0; side < 2; ++side) {
    std::deque<uint64_t> unread = routes_[route_id].unread[side];
    for (uint64_t id : unread) {
      for (int a : msgs_[id - 1].attached)
        Taint(ends_[a].route);
    }
  }
}

void Simulation::OpCreateLocalPair() {
  int node = static_cast<int>(rng_.Below(network_.num_nodes()));
  if (!network_.alive(node))
    return;
  PortRef p0, p1;
  int rv = network_.node(node).CreatePortPair(&p0, &p1);
  if (rv != OK) {
    Fail(StrFormat("CreatePortPair on node %d: %s", node, ErrorCodeName(rv)));
    return;
  }
  if (rng_.Chance(1, 4) && options_.ack_requests) {
    network_.node(node).SetAcknowledgeRequestInterval(p0, 1 + rng_.Below(4));
  }
  int route = NewRoute(node, node);
  int e0 = NewLiveEnd(route, 0, node, std::move(p0));
  int e1 = NewLiveEnd(route, 1, node, std::move(p1));
  Trace("pair on node %d: route %d, ends %d %d", node, route, e0, e1);
}

void Simulation::OpConnectNodes() {
  int n = network_.num_nodes();
  int x = static_cast<int>(rng_.Below(n));
  int y = static_cast<int>(rng_.Below(n));
  if (x == y || !network_.alive(x) || !network_.alive(y))
    return;
  PortRef px, py;
  Node& nx = network_.node(x);
  Node& ny = network_.node(y);
  if (nx.CreateUninitializedPort(&px) != OK ||
      ny.CreateUninitializedPort(&py) != OK) {
    Fail("CreateUninitializedPort failed");
    return;
  }
  int rv0 = nx.InitializePort(px, network_.name(y), py.name(), network_.name(y),
                              py.name());
  int rv1 = ny.InitializePort(py, network_.name(x), px.name(), network_.name(x),
                              px.name());
  if (rv0 != OK || rv1 != OK) {
    Fail(StrFormat("InitializePort: %s / %s", ErrorCodeName(rv0),
                   ErrorCodeName(rv1)));
    return;
  }
  int route = NewRoute(x, y);
  int e0 = NewLiveEnd(route, 0, x, std::move(px));
  int e1 = NewLiveEnd(route, 1, y, std::move(py));
  Trace("spanning pair nodes %d-%d: route %d, ends %d %d", x, y, route, e0, e1);
}

void Simulation::OpSend() {
  int sender = RandomLiveEnd();
  if (sender < 0)
    return;
  int count = 1 + static_cast<int>(rng_.Below(3));
  for (int i = 0; i < count && ends_[sender].state == End::kLive; ++i) {
    End& s = ends_[sender];
    int node = s.node;
    // Ports to carry: live ends on the sender's node other than the sender
    // and its own peer.
    size_t want = rng_.Chance(1, 2) ? 0 : 1 + rng_.Below(3);
    std::vector<int> attached;
    for (size_t tries = 0; tries < 8 && attached.size() < want; ++tries) {
      int a = RandomLiveEnd();
      if (a < 0 || a == sender || ends_[a].node != node ||
          ends_[a].route == s.route ||
          std::find(attached.begin(), attached.end(), a) != attached.end() ||
          WouldNest(a, routes_[s.route].ends[1 - s.side])) {
        continue;
      }
      attached.push_back(a);
    }
    Route& route = routes_[s.route];
    int to_side = 1 - s.side;
    uint64_t id = msgs_.size() + 1;
    uint64_t seq = route.sent[to_side] + 1;
    size_t filler = rng_.Chance(1, 8) ? 129 + rng_.Below(300) : rng_.Below(64);
    auto message = std::make_unique<UserMessageEvent>(attached.size());
    for (size_t k = 0; k < attached.size(); ++k)
      message->ports()[k] = ends_[attached[k]].ref.name();
    uint8_t* bytes = message->message().Resize(sizeof(PayloadHeader) + filler);
    PayloadHeader header{kPayloadMagic,
                         static_cast<uint32_t>(s.route),
                         id,
                         seq,
                         static_cast<uint32_t>(to_side),
                         static_cast<uint32_t>(filler)};
    std::memcpy(bytes, &header, sizeof(header));
    for (size_t k = 0; k < filler; ++k)
      bytes[sizeof(header) + k] = FillerByte(id, k);

    int peer = route.ends[to_side];
    bool peer_closed = ends_[peer].state == End::kClosed;
    int rv = network_.node(node).SendUserMessage(s.ref, std::move(message));
    if (options_.trace) {
      std::string list;
      for (int a : attached)
        list += StrFormat(" %d", a);
      Trace("send msg %llu seq %llu from %s carrying [%s ] -> %s",
            static_cast<unsigned long long>(id),
            static_cast<unsigned long long>(seq), Describe(sender).c_str(),
            list.c_str(), ErrorCodeName(rv));
    }
    if (rv == ERROR_PORT_PEER_CLOSED) {
      if (!peer_closed && !route.tainted) {
        Fail("send refused with peer_closed, but the peer is " +
             Describe(peer) + "; sender " + Describe(sender));
      }
      // The node closes the ports it was asked to carry.
      for (int a : attached)
        CloseEnd(a);
      return;
    }
    if (rv != OK) {
      Fail(StrFormat("SendUserMessage: %s; sender ", ErrorCodeName(rv)) +
           Describe(sender));
      for (int a : attached)
        CloseEnd(a);
      return;
    }
    ++stats_.messages_sent;
    stats_.ports_transferred += attached.size();
    s.sent_any = true;
    Msg m;
    m.route = s.route;
    m.to_side = to_side;
    m.seq = seq;
    m.orig_route = static_cast<uint32_t>(s.route);
    m.orig_to_side = static_cast<uint32_t>(to_side);
    m.attached = attached;
    msgs_.push_back(std::move(m));
    route.sent[to_side] = seq;
    for (int a : attached) {
      RemoveLive(a);
      ends_[a].state = End::kInMessage;
      ends_[a].carrier = id;
      // It may pass any proxy this route left behind.
      routes_[ends_[a].route].nodes_mask |= route.nodes_mask;
      if (route.tainted)
        Taint(ends_[a].route);
    }
    if (peer_closed) {
      LoseMessage(id);
    } else {
      routes_[s.route].unread[to_side].push_back(id);
    }
  }
}

bool Simulation::CheckMessage(int end_id,
                              std::unique_ptr<UserMessageEvent> message) {
  End& e = ends_[end_id];
  const UserMessage& payload = message->message();
  PayloadHeader header;
  if (payload.size() < sizeof(header)) {
    Fail(StrFormat("%zu-byte payload read on ", payload.size()) +
         Describe(end_id));
    return false;
  }
  std::memcpy(&header, payload.data(), sizeof(header));
  if (header.magic != kPayloadMagic || header.id == 0 ||
      header.id > msgs_.size() ||
      payload.size() != sizeof(header) + header.filler_len) {
    Fail("garbled payload read on " + Describe(end_id));
    return false;
  }
  for (size_t k = 0; k < header.filler_len; ++k) {
    if (payload.data()[sizeof(header) + k] != FillerByte(header.id, k)) {
      Fail(StrFormat("payload of message %llu corrupted at byte %zu",
                     static_cast<unsigned long long>(header.id), k));
      return false;
    }
  }
  Msg& m = msgs_[header.id - 1];
  Route& r = routes_[e.route];
  if (header.route != m.orig_route || header.seq != m.seq ||
      header.to_side != m.orig_to_side) {
    Fail(StrFormat("message %llu's header does not match what was sent",
                   static_cast<unsigned long long>(header.id)));
    return false;
  }
  if (m.route != e.route || m.to_side != e.side) {
    Fail(StrFormat("message %llu (route %d side %d) read on ",
                   static_cast<unsigned long long>(header.id), m.route,
                   m.to_side) +
         Describe(end_id));
    return false;
  }
  if (m.state == Msg::kRead) {
    Fail(StrFormat("duplicate: message %llu (seq %llu) read twice on ",
                   static_cast<unsigned long long>(header.id),
                   static_cast<unsigned long long>(m.seq)) +
         Describe(end_id));
    return false;
  }
  if (m.seq != r.read[e.side] + 1) {
    Fail(StrFormat("out of order: seq %llu read after %llu on ",
                   static_cast<unsigned long long>(m.seq),
                   static_cast<unsigned long long>(r.read[e.side])) +
         Describe(end_id));
    return false;
  }
  if (m.state == Msg::kLost) {
    Fail(StrFormat("message %llu, believed lost, read on ",
                   static_cast<unsigned long long>(header.id)) +
         Describe(end_id));
    return false;
  }
  if (r.unread[e.side].empty() || r.unread[e.side].front() != header.id) {
    Fail("oracle bookkeeping: unread queue out of step on " + Describe(end_id));
    return false;
  }
  r.unread[e.side].pop_front();
  Trace("read msg %llu seq %llu on %s",
        static_cast<unsigned long long>(header.id),
        static_cast<unsigned long long>(m.seq), Describe(end_id).c_str());
  r.read[e.side] = m.seq;
  m.state = Msg::kRead;
  e.read_any = true;
  ++stats_.messages_read;
  if (message->num_ports() != m.attached.size()) {
    Fail(StrFormat("message %llu carries %zu ports, %zu were attached",
                   static_cast<unsigned long long>(header.id),
                   message->num_ports(), m.attached.size()));
    return false;
  }
  int node = e.node;
  uint32_t via_mask = r.nodes_mask;
  for (size_t k = 0; k < m.attached.size(); ++k) {
    int a = m.attached[k];
    PortRef ref;
    if (network_.node(node).GetPort(message->ports()[k], &ref) != OK) {
      Fail(StrFormat("port %zu of message %llu is not on node %d", k,
                     static_cast<unsigned long long>(header.id), node));
      continue;
    }
    if (ends_[a].state != End::kInMessage || ends_[a].carrier != header.id) {
      Fail("attached " + Describe(a) + " arrived but was not in transit");
      continue;
    }
    ends_[a].node = node;
    ends_[a].ref = std::move(ref);
    AddLive(a);
    routes_[ends_[a].route].nodes_mask |= via_mask | (1u << node);
  }
  return true;
}

void Simulation::CheckPeerClosed(int end_id) {
  End& e = ends_[end_id];
  const Route& r = routes_[e.route];
  e.saw_peer_closed = true;
  Trace("peer_closed seen on %s", Describe(end_id).c_str());
  if (r.tainted)
    return;
  int peer = PeerOf(end_id);
  if (ends_[peer].state != End::kClosed) {
    Fail("peer_closed on " + Describe(end_id) + " but its peer is " +
         Describe(peer));
  } else if (r.read[e.side] != r.sent[e.side]) {
    Fail(StrFormat("peer_closed after reading %llu of %llu on ",
                   static_cast<unsigned long long>(r.read[e.side]),
                   static_cast<unsigned long long>(r.sent[e.side])) +
         Describe(end_id));
  }
}

void Simulation::OpRead(int end_id, size_t max_messages) {
  for (size_t i = 0; i < max_messages; ++i) {
    if (ends_[end_id].state != End::kLive)
      return;
    std::unique_ptr<UserMessageEvent> message;
    int rv = NodeOf(end_id).GetMessage(ends_[end_id].ref, &message, nullptr);
    if (rv == ERROR_PORT_PEER_CLOSED) {
      if (!ends_[end_id].saw_peer_closed)
        CheckPeerClosed(end_id);
      return;
    }
    if (rv != OK) {
      Fail(StrFormat("GetMessage: %s on ", ErrorCodeName(rv)) +
           Describe(end_id));
      return;
    }
    if (message == nullptr)
      return;
    if (!CheckMessage(end_id, std::move(message)))
      return;
  }
}

void Simulation::OpClose() {
  int end_id = RandomLiveEnd();
  if (end_id < 0)
    return;
  int rv = NodeOf(end_id).ClosePort(ends_[end_id].ref);
  Trace("close %s -> %s", Describe(end_id).c_str(), ErrorCodeName(rv));
  if (rv != OK)
    Fail(StrFormat("ClosePort: %s on ", ErrorCodeName(rv)) + Describe(end_id));
  CloseEnd(end_id);
}

void Simulation::OpMerge() {
  // Only ends that never sent or read can merge (their sequence numbers
  // would clash otherwise).
  int a = RandomLiveEnd();
  int b = RandomLiveEnd();
  if (a < 0 || b < 0 || a == b || ends_[a].route == ends_[b].route)
    return;
  for (int x : {a, b}) {
    if (ends_[x].sent_any || ends_[x].read_any)
      return;
  }
  // A peer end travelling inside a queue the merge redirects would be sent
  // to itself (the node refuses and closes both ports): not an honest merge.
  for (int x : {PeerOf(a), PeerOf(b)}) {
    if (WouldNest(a, x) || WouldNest(b, x))
      return;
  }
  int node_a = ends_[a].node;
  int node_b = ends_[b].node;
  int rv;
  if (node_a == node_b) {
    rv = network_.node(node_a).MergeLocalPorts(ends_[a].ref, ends_[b].ref);
  } else {
    NodeName allowed =
        rng_.Chance(1, 2) ? network_.name(node_a) : kInvalidNodeName;
    rv = network_.node(node_b).AllowPortMerge(ends_[b].ref, allowed);
    // Until the MergePort arrives the port is still ours to close.
    pending_merges_.push_back({node_b, ends_[b].ref});
    if (rv == OK) {
      rv = network_.node(node_a).MergePorts(ends_[a].ref, network_.name(node_b),
                                            ends_[b].ref.name());
    }
  }
  Trace("merge %s with %s -> %s", Describe(a).c_str(), Describe(b).c_str(),
        ErrorCodeName(rv));
  if (rv != OK) {
    Fail(StrFormat("merge of %d and %d: %s", a, b, ErrorCodeName(rv)));
    return;
  }
  ++stats_.merges;
  int r1 = ends_[a].route;
  int r2 = ends_[b].route;
  int p = PeerOf(a);
  int q = PeerOf(b);
  int merged = NewRoute(node_a, node_b);
  Route& m = routes_[merged];
  m.nodes_mask |= routes_[r1].nodes_mask | routes_[r2].nodes_mask;
  // P's messages to a now go to Q, and Q's to b go to P, numbering kept.
  m.ends[0] = p;
  m.ends[1] = q;
  m.sent[1] = routes_[r1].sent[ends_[a].side];
  m.sent[0] = routes_[r2].sent[ends_[b].side];
  m.unread[1] = std::move(routes_[r1].unread[ends_[a].side]);
  m.unread[0] = std::move(routes_[r2].unread[ends_[b].side]);
  for (int side = 0; side < 2; ++side) {
    for (uint64_t id : m.unread[side]) {
      msgs_[id - 1].route = merged;
      msgs_[id - 1].to_side = side;
    }
  }
  bool tainted = routes_[r1].tainted || routes_[r2].tainted;
  routes_[r1].merged_away = true;
  routes_[r2].merged_away = true;
  ends_[p].route = merged;
  ends_[p].side = 0;
  ends_[q].route = merged;
  ends_[q].side = 1;
  for (int x : {a, b}) {
    RemoveLive(x);
    ends_[x].state = End::kMerged;
  }
  if (tainted)
    Taint(merged);
  for (int side = 0; side < 2; ++side) {
    if (ends_[m.ends[side]].state == End::kClosed)
      LoseUnread(merged, side);
  }
}

void Simulation::OpRemoveNode() {
  std::vector<int> alive;
  for (int i = 0; i < network_.num_nodes(); ++i) {
    if (network_.alive(i))
      alive.push_back(i);
  }
  if (alive.size() <= 2)
    return;
  int victim = alive[rng_.Below(alive.size())];
  network_.RemoveNode(victim);
  Trace("remove node %d", victim);
  ++stats_.removals;
  for (size_t r = 0; r < routes_.size(); ++r) {
    if (!routes_[r].merged_away && (routes_[r].nodes_mask & (1u << victim)))
      Taint(static_cast<int>(r));
  }
  std::vector<int> doomed;
  for (int id : live_) {
    if (ends_[id].node == victim)
      doomed.push_back(id);
  }
  for (int id : doomed)
    CloseEnd(id);
}

void Simulation::FinalPhase() {
  network_.DrainAll();
  // A merge whose MergePort died with its sender's node leaves the target
  // receiving and pending: its owner gives up on it, as an embedder would.
  for (auto& [node, ref] : pending_merges_) {
    PortStatus status;
    if (network_.alive(node) &&
        network_.node(node).GetStatus(ref, &status) == OK) {
      Trace("closing a merge target that never merged on node %d", node);
      network_.node(node).ClosePort(ref);
    }
  }
  pending_merges_.clear();
  bool lenient = !options_.strict_lost_node && stats_.removals > 0;
  // Deliver and read until nothing moves: reading can bring carried ports
  // to life, whose queues must be read too.
  for (int round = 0; round < 1000; ++round) {
    network_.DrainAll();
    // A livelock is reported once; more rounds would only repeat it.
    if (!network_.failures().empty())
      break;
    uint64_t before = stats_.messages_read;
    std::vector<int> live = live_;
    for (int id : live)
      OpRead(id, SIZE_MAX);
    if (stats_.messages_read == before && network_.pending_events() == 0)
      break;
  }
  // Whatever is still unread now will never come.
  for (size_t r = 0; r < routes_.size(); ++r) {
    Route& route = routes_[r];
    if (route.merged_away)
      continue;
    for (int side = 0; side < 2; ++side) {
      int end_id = route.ends[side];
      if (!route.tainted && !route.unread[side].empty()) {
        const Msg& m = msgs_[route.unread[side].front() - 1];
        Fail(StrFormat("stuck: seq %llu of %llu never reached ",
                       static_cast<unsigned long long>(m.seq),
                       static_cast<unsigned long long>(route.sent[side])) +
             Describe(end_id));
      }
      LoseUnread(static_cast<int>(r), side);
    }
  }
  for (int id : live_) {
    const End& e = ends_[id];
    const Route& route = routes_[e.route];
    int peer = PeerOf(id);
    bool peer_gone = ends_[peer].state == End::kClosed;
    bool lost_some = route.read[e.side] != route.sent[e.side];
    if ((peer_gone || lost_some) && !e.saw_peer_closed) {
      if (lenient && route.tainted) {
        ++stats_.tolerated_leftovers;
        continue;
      }
      Fail(StrFormat("never saw peer_closed (read %llu of %llu) on ",
                     static_cast<unsigned long long>(route.read[e.side]),
                     static_cast<unsigned long long>(route.sent[e.side])) +
           Describe(id) + "; peer " + Describe(peer));
    }
  }
  for (int i = 0; i < network_.num_nodes(); ++i) {
    if (!network_.alive(i))
      continue;
    NodeStats stats = network_.node(i).GetStats();
    if (stats.proxies != 0 || stats.zombies != 0) {
      if (lenient) {
        ++stats_.tolerated_leftovers;
        continue;
      }
      Fail(StrFormat("node %d after draining: %zu proxies, %zu zombies", i,
                     stats.proxies, stats.zombies) +
           (options_.trace ? "\n" + network_.node(i).DescribeNonReceivingPorts()
                           : std::string()));
    }
  }
  if (options_.leak_one_port && !live_.empty())
    RemoveLive(live_.back());
  while (!live_.empty()) {
    int id = live_.back();
    int rv = NodeOf(id).ClosePort(ends_[id].ref);
    if (rv != OK)
      Fail(StrFormat("final ClosePort: %s on ", ErrorCodeName(rv)) +
           Describe(id));
    CloseEnd(id);
  }
  network_.DrainAll();
  for (int i = 0; i < network_.num_nodes(); ++i) {
    if (!network_.alive(i))
      continue;
    NodeStats stats = network_.node(i).GetStats();
    if (lenient && stats.ports != 0) {
      ++stats_.tolerated_leftovers;
      continue;
    }
    if (stats.ports != 0 || !network_.node(i).CanShutdownCleanly()) {
      Fail(StrFormat(
          "node %d at quiescence: %zu ports (%zu receiving, %zu proxies, %zu "
          "zombies, %zu uninitialized), %zu buffered events",
          i, stats.ports, stats.receiving, stats.proxies, stats.zombies,
          stats.uninitialized, stats.buffered_events));
    }
  }
}

SimulationResult Simulation::Run() {
  // Removals happen at op indices the seed picks up front.
  std::vector<uint64_t> removal_ops;
  size_t removals = rng_.Below(static_cast<size_t>(options_.max_removals) + 1);
  for (size_t i = 0; i < removals; ++i)
    removal_ops.push_back(rng_.Below(static_cast<size_t>(options_.num_ops)));
  uint64_t fault_op = static_cast<uint64_t>(options_.num_ops) / 4;

  for (op_ = 0; op_ < static_cast<uint64_t>(options_.num_ops); ++op_) {
    if (op_ == fault_op)
      network_.ArmFault();
    for (uint64_t r : removal_ops) {
      if (r == op_)
        OpRemoveNode();
    }
    bool room = live_.size() < static_cast<size_t>(options_.max_live_ends);
    size_t dice = rng_.Below(100);
    if (dice < 30) {
      size_t n = 1 + rng_.Below(8);
      for (size_t i = 0; i < n && network_.DeliverOne(); ++i) {
      }
    } else if (dice < 38) {
      if (room)
        OpCreateLocalPair();
    } else if (dice < 42) {
      if (room)
        OpConnectNodes();
    } else if (dice < 68) {
      OpSend();
    } else if (dice < 86) {
      int id = RandomLiveEnd();
      if (id >= 0)
        OpRead(id, 1 + rng_.Below(4));
    } else if (dice < 93) {
      if (options_.allow_close)
        OpClose();
    } else if (dice < 97) {
      if (options_.allow_merge)
        OpMerge();
    } else {
      // A burst: a long run of deliveries lets routes settle (proxies go).
      size_t n = rng_.Below(200);
      for (size_t i = 0; i < n && network_.DeliverOne(); ++i) {
      }
    }
    PullNetworkFailures();
    if (failures_.size() >= 20)
      break;
  }
  if (failures_.empty())
    FinalPhase();

  PullNetworkFailures();
  SimulationResult result = stats_;
  result.ops = op_;
  result.failures = failures_;
  result.fault_applied = network_.fault_applied();
  result.events_delivered = network_.delivered();
  return result;
}

}  // namespace

SimulationResult RunSimulation(uint64_t seed,
                               const SimulationOptions& options) {
  Simulation simulation(seed, options);
  return simulation.Run();
}

}  // namespace shmports::ports::sim
