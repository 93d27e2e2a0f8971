// SimNetwork: a single-threaded, deterministic network of ports Nodes for the
// seeded simulation (tests/chaos/).
//
// Every ordered pair of nodes (including a node and itself) is a FIFO link.
// ForwardEvent and BroadcastEvent serialise the event into the link of the
// destination; DeliverOne() picks a non-empty link with the simulation's RNG,
// deserialises its front event and hands it to AcceptEvent. So the seed
// decides every interleaving, each directed link stays FIFO, and every
// forwarded event goes through the wire codec (a codec bug shows up as wrong
// behaviour, not only in codec tests).
//
// RemoveNode models a peer's death the way channel/'s Router sees it: events
// the dead node had already published on a link are delivered (a random
// prefix survives, the rest is lost), then the survivor gets
// LostConnectionToNode; events to the dead node are dropped from then on.
//
// Test-only fault hooks (SetFault) corrupt exactly one user message on its
// way, so tests can prove that the oracle notices: drop it; deliver its
// payload twice (copied over the next message to the same port, so the node
// sees fresh sequence numbers and cannot absorb it); or swap the payloads of
// two consecutive user messages to the same port (which the node cannot put
// back in order, since their sequence numbers stay).
//
// Every AcceptEvent result is checked: a violation, a decoding failure or an
// event the codec refuses is recorded in failures().
//
// Not thread-safe: one thread drives the network and its nodes.
#ifndef SHMPORTS_TESTS_CHAOS_SIM_NETWORK_H_
#define SHMPORTS_TESTS_CHAOS_SIM_NETWORK_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/ports/event.h"
#include "core/ports/name.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace shmports::ports::sim {

// The simulation's single source of randomness: std::mt19937_64 with plain
// modulo reduction, so a seed means the same run under every toolchain.
class SimRandom {
 public:
  explicit SimRandom(uint64_t seed) : engine_(seed) {}
  uint64_t Next() { return engine_(); }
  // Uniform-ish in [0, n); 0 when n is 0.
  size_t Below(size_t n) { return n == 0 ? 0 : engine_() % n; }
  // True with probability num/den.
  bool Chance(uint64_t num, uint64_t den) { return engine_() % den < num; }

 private:
  std::mt19937_64 engine_;
};

enum class FaultKind {
  kNone,
  kDropUserMessage,
  kDuplicateUserMessage,
  kSwapUserMessagePayloads,
};

const char* FaultKindName(FaultKind kind);

class SimNetwork {
 public:
  static constexpr int kMaxNodes = 8;

  // `rng` is shared with the caller (one stream decides everything) and
  // must outlive the network.
  SimNetwork(int num_nodes, SimRandom* rng);
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;
  ~SimNetwork();

  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  bool alive(int index) const { return nodes_[index]->alive; }
  Node& node(int index) { return *nodes_[index]->node; }
  const NodeName& name(int index) const { return nodes_[index]->name; }

  // Delivers one event from a randomly chosen non-empty link. False when
  // every link is empty.
  bool DeliverOne();
  // Delivers the front event of link from→to (scripted tests); false if
  // that link is empty.
  bool DeliverFrom(int from, int to);
  // Delivers until every link is empty or `limit` events went (a guard
  // against a protocol livelock, reported as a failure).
  void DrainAll(size_t limit = 10'000'000);
  size_t pending_events() const;

  // Kills node `index` (see the file comment). Its Node object stays
  // allocated, unreachable, until the network is destroyed.
  void RemoveNode(int index);

  // Queues `event` on link from→to as if node `from` had forwarded it (a
  // test hook for events no honest node sends).
  void InjectEvent(int from, int to, const Event& event) {
    Enqueue(from, to, event);
  }

  // Drops the newest event queued on link from→to, as if node `from` had
  // taken its sequence number but died before publishing it (a test hook
  // for the lost-node races). False if that link is empty.
  bool DropNewest(int from, int to);
  // Events queued on link from→to.
  size_t pending_on(int from, int to) const { return links_[from][to].size(); }
  // Arms a one-shot fault on the first eligible user message (no attached
  // ports) delivered once `armed` is set by ArmFault().
  void SetFault(FaultKind kind) { fault_ = kind; }
  void ArmFault() { fault_armed_ = true; }
  bool fault_applied() const { return fault_applied_; }

  // Print every delivery to stderr.
  void set_trace(bool trace) { trace_ = trace; }

  // Events delivered so far.
  uint64_t delivered() const { return delivered_; }

  // Problems seen by the network itself: violations, codec failures.
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  struct Packet {
    std::vector<uint8_t> bytes;
    // The marker queued behind a dead node's last surviving event.
    bool lost_connection = false;
  };

  class SimNode : public NodeDelegate {
   public:
    SimNode(SimNetwork* network, int index, const NodeName& name);
    void ForwardEvent(const NodeName& node, ScopedEvent event) override;
    void BroadcastEvent(ScopedEvent event) override;
    void PortStatusChanged(const PortRef& port) override;

    SimNetwork* const network;
    const int index;
    const NodeName name;
    bool alive = true;
    std::unique_ptr<Node> node;
  };

  int IndexOf(const NodeName& name) const;
  void Enqueue(int from, int to, const Event& event);
  void Accept(int from, int to, ScopedEvent event);
  // Applies the armed fault to the front of link from→to; true if it
  // consumed the packet(s) itself.
  bool MaybeApplyFault(int from, int to, ScopedEvent* event);
  void Fail(std::string what);

  SimRandom* const rng_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::deque<Packet> links_[kMaxNodes][kMaxNodes];
  FaultKind fault_ = FaultKind::kNone;
  bool fault_armed_ = false;
  bool fault_applied_ = false;
  uint64_t delivered_ = 0;
  bool trace_ = false;
  std::vector<std::string> failures_;
};

}  // namespace shmports::ports::sim

#endif  // SHMPORTS_TESTS_CHAOS_SIM_NETWORK_H_
