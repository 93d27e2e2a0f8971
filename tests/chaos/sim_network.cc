#include "tests/chaos/sim_network.h"

#include <cstdio>
#include <span>
#include <utility>

#include "core/base/str_format.h"
#include "core/ports/error.h"

namespace shmports::ports::sim {

const char* FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kNone:
      return "none";
    case FaultKind::kDropUserMessage:
      return "drop";
    case FaultKind::kDuplicateUserMessage:
      return "duplicate";
    case FaultKind::kSwapUserMessagePayloads:
      return "reorder";
  }
  return "unknown";
}

SimNetwork::SimNode::SimNode(SimNetwork* network,
                             int index,
                             const NodeName& name)
    : network(network),
      index(index),
      name(name),
      node(std::make_unique<Node>(name, this)) {}

void SimNetwork::SimNode::ForwardEvent(const NodeName& to, ScopedEvent event) {
  int to_index = network->IndexOf(to);
  if (to_index < 0) {
    network->Fail(StrFormat("node %d forwarded %s to unknown node %s", index,
                            EventTypeName(event->type()),
                            to.ToString().c_str()));
    return;
  }
  network->Enqueue(index, to_index, *event);
}

void SimNetwork::SimNode::BroadcastEvent(ScopedEvent event) {
  for (int to = 0; to < network->num_nodes(); ++to) {
    if (to == index)
      continue;
    ScopedEvent copy = event->CloneForBroadcast();
    if (copy == nullptr) {
      network->Fail(StrFormat("node %d broadcast a non-broadcast %s", index,
                              EventTypeName(event->type())));
      return;
    }
    network->Enqueue(index, to, *copy);
  }
}

// The simulation polls ports itself; notifications carry no information it
// needs.
void SimNetwork::SimNode::PortStatusChanged(const PortRef&) {}

SimNetwork::SimNetwork(int num_nodes, SimRandom* rng) : rng_(rng) {
  if (num_nodes > kMaxNodes)
    num_nodes = kMaxNodes;
  for (int i = 0; i < num_nodes; ++i) {
    // Fixed names keep a replay identical; 0x51 marks "simulated".
    nodes_.push_back(std::make_unique<SimNode>(
        this, i, NodeName(static_cast<uint64_t>(i) + 1, 0x51)));
  }
}

SimNetwork::~SimNetwork() {
  // Nodes may forward while being torn down; nothing is delivered any more.
  for (auto& n : nodes_)
    n->alive = false;
  for (auto& n : nodes_)
    n->node.reset();
}

int SimNetwork::IndexOf(const NodeName& name) const {
  for (const auto& n : nodes_) {
    if (n->name == name)
      return n->index;
  }
  return -1;
}

void SimNetwork::Fail(std::string what) {
  failures_.push_back(std::move(what));
}

void SimNetwork::Enqueue(int from, int to, const Event& event) {
  if (!nodes_[from]->alive || !nodes_[to]->alive)
    return;  // A dead node's links carry nothing new.
  links_[from][to].push_back(Packet{event.SerializeToVector(), false});
}

size_t SimNetwork::pending_events() const {
  size_t total = 0;
  for (const auto& row : links_) {
    for (const auto& link : row)
      total += link.size();
  }
  return total;
}

bool SimNetwork::DeliverOne() {
  int candidates[kMaxNodes * kMaxNodes];
  int count = 0;
  for (int from = 0; from < num_nodes(); ++from) {
    for (int to = 0; to < num_nodes(); ++to) {
      if (!links_[from][to].empty())
        candidates[count++] = from * kMaxNodes + to;
    }
  }
  if (count == 0)
    return false;
  int pick = candidates[rng_->Below(static_cast<size_t>(count))];
  return DeliverFrom(pick / kMaxNodes, pick % kMaxNodes);
}

bool SimNetwork::DeliverFrom(int from, int to) {
  if (links_[from][to].empty())
    return false;
  Packet packet = std::move(links_[from][to].front());
  links_[from][to].pop_front();
  ++delivered_;
  if (packet.lost_connection) {
    if (trace_)
      fprintf(stderr, "  deliver LostConnectionToNode(%d) to %d\n", from, to);
    if (nodes_[to]->node->LostConnectionToNode(nodes_[from]->name) != OK)
      Fail(StrFormat("node %d: LostConnectionToNode(%d) failed", to, from));
    return true;
  }
  Result<ScopedEvent> decoded = Event::Deserialize(
      std::span<const uint8_t>(packet.bytes), kEventProtocolMinor);
  if (!decoded.ok()) {
    Fail(StrFormat("link %d->%d: an honest event failed to decode: %s", from,
                   to, decoded.status().ToString().c_str()));
    return true;
  }
  ScopedEvent event = std::move(decoded).value();
  if (MaybeApplyFault(from, to, &event))
    return true;
  Accept(from, to, std::move(event));
  return true;
}

void SimNetwork::DrainAll(size_t limit) {
  for (size_t i = 0; i < limit; ++i) {
    if (!DeliverOne())
      return;
  }
  Fail(StrFormat("network still busy after %zu deliveries (livelock?)", limit));
}

void SimNetwork::Accept(int from, int to, ScopedEvent event) {
  EventType type = event->type();
  PortName target = event->port_name();
  PortName source = event->from_port();
  if (trace_) {
    fprintf(stderr, "  deliver %s %d->%d port %s from %s\n",
            EventTypeName(type), from, to, target.ToString().c_str(),
            source.ToString().c_str());
  }
  AcceptResult result =
      nodes_[to]->node->AcceptEvent(nodes_[from]->name, std::move(event));
  if (result.violation()) {
    Fail(
        StrFormat("honest %s on link %d->%d (port %s from port %s) judged a %s",
                  EventTypeName(type), from, to, target.ToString().c_str(),
                  source.ToString().c_str(), result.ToString().c_str()));
  }
}

bool SimNetwork::MaybeApplyFault(int from, int to, ScopedEvent* event) {
  if (!fault_armed_ || fault_applied_ || fault_ == FaultKind::kNone)
    return false;
  if ((*event)->type() != EventType::kUserMessage ||
      static_cast<UserMessageEvent*>(event->get())->num_ports() != 0) {
    return false;
  }
  switch (fault_) {
    case FaultKind::kNone:
      return false;
    case FaultKind::kDropUserMessage:
      fault_applied_ = true;
      return true;
    case FaultKind::kDuplicateUserMessage:
    case FaultKind::kSwapUserMessagePayloads: {
      // Only with the very next packet on the link, so FIFO order of every
      // other event is kept and only payloads change: swapped (a reorder),
      // or the first one's copied over the second (a duplicate the node
      // cannot spot, since it comes with a fresh sequence number; an exact
      // copy of the event is absorbed by the node's sequencing).
      auto& link = links_[from][to];
      if (link.empty() || link.front().lost_connection)
        return false;
      Result<ScopedEvent> next = Event::Deserialize(
          std::span<const uint8_t>(link.front().bytes), kEventProtocolMinor);
      if (!next.ok())
        return false;
      ScopedEvent second = std::move(next).value();
      if (second->type() != EventType::kUserMessage ||
          second->port_name() != (*event)->port_name()) {
        return false;
      }
      auto* m1 = static_cast<UserMessageEvent*>(event->get());
      auto* m2 = static_cast<UserMessageEvent*>(second.get());
      if (m2->num_ports() != 0)
        return false;
      link.pop_front();
      ++delivered_;
      UserMessage payload = m1->message();
      if (fault_ == FaultKind::kSwapUserMessagePayloads)
        m1->message() = m2->message();
      m2->message() = payload;
      fault_applied_ = true;
      Accept(from, to, std::move(*event));
      Accept(from, to, std::move(second));
      return true;
    }
  }
  return false;
}

bool SimNetwork::DropNewest(int from, int to) {
  auto& link = links_[from][to];
  if (link.empty() || link.back().lost_connection)
    return false;
  link.pop_back();
  return true;
}

void SimNetwork::RemoveNode(int index) {
  SimNode* dead = nodes_[index].get();
  if (!dead->alive)
    return;
  dead->alive = false;
  for (int other = 0; other < num_nodes(); ++other) {
    links_[other][index].clear();
    if (other == index) {
      continue;
    }
    auto& out = links_[index][other];
    // A crash loses whatever the node had not yet published.
    size_t keep = rng_->Below(out.size() + 1);
    out.resize(keep);
    if (nodes_[other]->alive)
      out.push_back(Packet{{}, true});
    else
      out.clear();
  }
}

}  // namespace shmports::ports::sim
