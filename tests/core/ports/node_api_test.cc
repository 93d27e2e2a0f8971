// Node's API error paths, GetStats, user data, error-code names, and the
// AcceptEvent outcomes for hostile input (each rule of node.h: the outcome,
// no other port changed, nothing held, clean shutdown afterwards). Runs
// single-threaded on a hand-pumped network so every step is deterministic.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports::ports {
namespace {

class ManualNet;

class ManualNode : public NodeDelegate {
 public:
  ManualNode(uint64_t id, ManualNet* net, NodeOptions options = NodeOptions())
      : net_(net), node(NodeName(id, 1), this, options) {}

  void ForwardEvent(const NodeName& to, ScopedEvent event) override;
  void BroadcastEvent(ScopedEvent event) override;
  void PortStatusChanged(const PortRef&) override { ++status_changes; }

  ManualNet* net_;
  Node node;
  int status_changes = 0;
};

// Delivers in FIFO order when pumped; events to nodes it does not know (the
// "fake peers" a test impersonates) are kept in `outbox`.
class ManualNet {
 public:
  void Add(ManualNode* node) { nodes_[node->node.name()] = node; }

  void Post(const NodeName& from, const NodeName& to, ScopedEvent event) {
    std::vector<uint8_t> bytes = event->SerializeToVector();
    Result<ScopedEvent> decoded = Event::Deserialize(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    queue_.push_back({from, to, std::move(decoded).value()});
  }

  void Pump() {
    while (!queue_.empty()) {
      Hop hop = std::move(queue_.front());
      queue_.pop_front();
      auto it = nodes_.find(hop.to);
      if (it == nodes_.end()) {
        outbox.push_back(std::move(hop));
        continue;
      }
      AcceptResult r =
          it->second->node.AcceptEvent(hop.from, std::move(hop.event));
      EXPECT_FALSE(r.violation()) << r.ToString();
    }
  }

  struct Hop {
    NodeName from;
    NodeName to;
    ScopedEvent event;
  };
  std::vector<Hop> outbox;

 private:
  std::map<NodeName, ManualNode*> nodes_;
  std::deque<Hop> queue_;
};

void ManualNode::ForwardEvent(const NodeName& to, ScopedEvent event) {
  net_->Post(node.name(), to, std::move(event));
}

void ManualNode::BroadcastEvent(ScopedEvent event) {
  // The fake peers are the only other nodes; record it for them.
  net_->Post(node.name(), kInvalidNodeName, std::move(event));
}

std::unique_ptr<UserMessageEvent> TextMessage(const char* text,
                                              size_t num_ports = 0) {
  auto message = std::make_unique<UserMessageEvent>(num_ports);
  message->message().Assign(text);
  return message;
}

class NodeApiTest : public ::testing::Test {
 protected:
  NodeApiTest() { net_.Add(&n0_); }

  // A port on n0 whose peer (and previous peer) is fake_peer_port on the
  // impersonated node kFake.
  PortRef SpanToFake(const PortName& fake_peer_port) {
    PortRef port;
    EXPECT_EQ(OK, n0_.node.CreateUninitializedPort(&port));
    EXPECT_EQ(OK, n0_.node.InitializePort(port, kFake, fake_peer_port, kFake,
                                          fake_peer_port));
    return port;
  }

  void ExpectClean() {
    net_.Pump();
    EXPECT_TRUE(n0_.node.CanShutdownCleanly());
  }

  static constexpr NodeName kFake{9, 1};
  static constexpr NodeName kOther{8, 1};
  ManualNet net_;
  ManualNode n0_{0, &net_};
};

TEST_F(NodeApiTest, InvalidPortRefIsAnErrorNotACrash) {
  PortRef invalid;
  Node& node = n0_.node;
  std::unique_ptr<UserMessageEvent> message;
  PortStatus status;
  std::shared_ptr<UserData> data;
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.ClosePort(invalid));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.GetStatus(invalid, &status));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.GetMessage(invalid, &message, nullptr));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.SendUserMessage(invalid, TextMessage("x")));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.SendUserMessage(invalid, nullptr));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.SetAcknowledgeRequestInterval(invalid, 1));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.SetUserData(invalid, nullptr));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.GetUserData(invalid, &data));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.InitializePort(invalid, kFake, PortName(1, 1), kFake,
                                PortName(1, 1)));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.MergePorts(invalid, kFake, PortName(1, 1)));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.MergeLocalPorts(invalid, invalid));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT, node.AllowPortMerge(invalid, kFake));
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            node.LostConnectionToNode(kInvalidNodeName));
  EXPECT_FALSE(node.AcceptEvent(kFake, nullptr).ok());
  ExpectClean();
}

TEST_F(NodeApiTest, ClosingTwiceIsAnError) {
  PortRef a, b;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&a, &b));
  EXPECT_EQ(OK, n0_.node.ClosePort(a));
  EXPECT_EQ(ERROR_PORT_STATE_UNEXPECTED, n0_.node.ClosePort(a));
  EXPECT_EQ(OK, n0_.node.ClosePort(b));
  ExpectClean();
}

TEST_F(NodeApiTest, SendingUnknownOrDuplicateAttachedPortsFails) {
  PortRef a, b, c, d;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&a, &b));
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&c, &d));
  auto unknown = TextMessage("x", 1);
  unknown->ports()[0] = PortName(123, 456);
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            n0_.node.SendUserMessage(a, std::move(unknown)));

  auto twice = TextMessage("x", 2);
  twice->ports()[0] = c.name();
  twice->ports()[1] = c.name();
  EXPECT_EQ(ERROR_INVALID_ARGUMENT,
            n0_.node.SendUserMessage(a, std::move(twice)));
  // The failed send closed the attached port, as any failed send does.
  PortRef lookup;
  EXPECT_EQ(ERROR_PORT_UNKNOWN, n0_.node.GetPort(c.name(), &lookup));
  std::unique_ptr<UserMessageEvent> message;
  EXPECT_EQ(OK, n0_.node.GetMessage(b, &message, nullptr));
  EXPECT_FALSE(message);

  EXPECT_EQ(OK, n0_.node.ClosePort(a));
  EXPECT_EQ(OK, n0_.node.ClosePort(b));
  EXPECT_EQ(OK, n0_.node.ClosePort(d));
  ExpectClean();
}

class Tag : public UserData {
 public:
  explicit Tag(int v) : value(v) {}
  int value;
};

TEST_F(NodeApiTest, UserDataStaysWithThePortUntilClosed) {
  PortRef a, b;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&a, &b));
  EXPECT_EQ(OK, n0_.node.SetUserData(a, std::make_shared<Tag>(42)));
  std::shared_ptr<UserData> data;
  EXPECT_EQ(OK, n0_.node.GetUserData(a, &data));
  ASSERT_TRUE(data);
  EXPECT_EQ(42, static_cast<Tag*>(data.get())->value);
  EXPECT_EQ(OK, n0_.node.ClosePort(a));
  EXPECT_EQ(ERROR_PORT_STATE_UNEXPECTED, n0_.node.GetUserData(a, &data));
  EXPECT_EQ(OK, n0_.node.ClosePort(b));
  ExpectClean();
}

TEST_F(NodeApiTest, StatsCountPortsProxiesZombiesAndQueues) {
  PortRef a, b;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&a, &b));
  EXPECT_EQ(OK, n0_.node.SendUserMessage(a, TextMessage("12345")));
  NodeStats stats = n0_.node.GetStats();
  EXPECT_EQ(2u, stats.ports);
  EXPECT_EQ(2u, stats.receiving);
  EXPECT_EQ(1u, stats.queued_messages);
  EXPECT_EQ(5u, stats.queued_message_bytes);

  // Send b to the fake node: b becomes a buffering proxy (no PortAccepted).
  PortRef x = SpanToFake(PortName(77, 1));
  auto carry = TextMessage("take b", 1);
  carry->ports()[0] = b.name();
  EXPECT_EQ(OK, n0_.node.SendUserMessage(x, std::move(carry)));
  net_.Pump();
  stats = n0_.node.GetStats();
  EXPECT_EQ(1u, stats.buffering);
  EXPECT_EQ(1u, stats.proxies);

  // Losing the fake node erases the proxy at once (as Mojo does): no zombie
  // waits for an answer that may never come.
  EXPECT_EQ(OK, n0_.node.LostConnectionToNode(kFake));
  stats = n0_.node.GetStats();
  EXPECT_EQ(0u, stats.zombies);
  EXPECT_EQ(0u, stats.proxies);
  net_.Pump();
  EXPECT_EQ(0u, n0_.node.GetStats().zombies);

  EXPECT_EQ(OK, n0_.node.ClosePort(a));
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST(ErrorCodeTest, NamesAndStatusMapping) {
  EXPECT_STREQ("ERROR_PORT_PEER_CLOSED", ErrorCodeName(ERROR_PORT_PEER_CLOSED));
  EXPECT_STREQ("OK", ErrorCodeName(OK));
  EXPECT_STREQ("ERROR_<unknown>", ErrorCodeName(-9999));
  EXPECT_EQ(StatusCode::kPeerClosed, ErrorToStatusCode(ERROR_PORT_PEER_CLOSED));
  EXPECT_EQ(StatusCode::kNotFound, ErrorToStatusCode(ERROR_PORT_UNKNOWN));
  EXPECT_EQ(StatusCode::kFailedPrecondition,
            ErrorToStatusCode(ERROR_PORT_STATE_UNEXPECTED));
  EXPECT_EQ(StatusCode::kProtocolViolation,
            ErrorToStatusCode(ERROR_PROTOCOL_VIOLATION));
  EXPECT_EQ(StatusCode::kInternal, ErrorToStatusCode(-9999));
  EXPECT_TRUE(ErrorToStatus(OK, "x").ok());
  Status s = ErrorToStatus(ERROR_PORT_PEER_CLOSED, "send on pipe 3");
  EXPECT_EQ(StatusCode::kPeerClosed, s.code());
  EXPECT_NE(std::string::npos, s.ToString().find("send on pipe 3"));
  EXPECT_NE(std::string::npos, s.ToString().find("ERROR_PORT_PEER_CLOSED"));
  EXPECT_EQ("violation: why", AcceptResult::Violation("why").ToString());
}

// ---- Hostile peers: one test per rule. ----

TEST_F(NodeApiTest, EventForUnknownPortIsIgnored) {
  AcceptResult r =
      n0_.node.AcceptEvent(kFake, std::make_unique<ObserveClosureEvent>(
                                      PortName(5, 5), PortName(6, 6), 1, 0));
  EXPECT_TRUE(r.ignored()) << r.ToString();
  r = n0_.node.AcceptEvent(
      kFake, std::make_unique<PortAcceptedEvent>(
                 PortName(5, 5), kInvalidPortName, kInvalidSequenceNum));
  EXPECT_TRUE(r.ignored()) << r.ToString();
  ExpectClean();
}

TEST_F(NodeApiTest, PortAcceptedFromAnotherNodeIsAViolation) {
  PortRef a, b;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&a, &b));
  PortRef x = SpanToFake(PortName(77, 1));
  auto carry = TextMessage("take b", 1);
  carry->ports()[0] = b.name();
  ASSERT_EQ(OK, n0_.node.SendUserMessage(x, std::move(carry)));
  net_.Pump();
  ASSERT_EQ(1u, n0_.node.GetStats().buffering);

  AcceptResult r = n0_.node.AcceptEvent(
      kOther, std::make_unique<PortAcceptedEvent>(b.name(), kInvalidPortName,
                                                  kInvalidSequenceNum));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(1u, n0_.node.GetStats().buffering);  // Unchanged.

  // The real PortAccepted still works.
  r = n0_.node.AcceptEvent(
      kFake, std::make_unique<PortAcceptedEvent>(b.name(), kInvalidPortName,
                                                 kInvalidSequenceNum));
  EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(1u, n0_.node.GetStats().proxying);

  EXPECT_EQ(OK, n0_.node.LostConnectionToNode(kFake));
  net_.Pump();
  EXPECT_EQ(OK, n0_.node.ClosePort(a));
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

PortDescriptor FakeDescriptor(const NodeName& node,
                              const PortName& peer,
                              const PortName& referring) {
  PortDescriptor d;
  d.peer_node_name = node;
  d.peer_port_name = peer;
  d.referring_node_name = node;
  d.referring_port_name = referring;
  d.next_sequence_num_to_send = 1;
  d.next_sequence_num_to_receive = 1;
  return d;
}

TEST_F(NodeApiTest, MergePortToPortNotPendingIsAViolationAndChangesNothing) {
  PortRef c, d;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&c, &d));
  AcceptResult r = n0_.node.AcceptEvent(
      kFake,
      std::make_unique<MergePortEvent>(
          c.name(), kInvalidPortName, kInvalidSequenceNum, PortName(90, 1),
          FakeDescriptor(kFake, PortName(91, 1), PortName(92, 1))));
  EXPECT_TRUE(r.violation()) << r.ToString();
  net_.Pump();
  // c is untouched: still receiving, still paired with d.
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(c, &status));
  EXPECT_FALSE(status.peer_closed);
  EXPECT_FALSE(status.peer_remote);
  EXPECT_EQ(2u, n0_.node.GetStats().ports);
  EXPECT_EQ(OK, n0_.node.ClosePort(c));
  EXPECT_EQ(OK, n0_.node.ClosePort(d));
  ExpectClean();
}

TEST_F(NodeApiTest, MergePortFromNodeNotAllowedIsAViolation) {
  PortRef c, d;
  ASSERT_EQ(OK, n0_.node.CreatePortPair(&c, &d));
  ASSERT_EQ(OK, n0_.node.AllowPortMerge(c, kOther));
  AcceptResult r = n0_.node.AcceptEvent(
      kFake,
      std::make_unique<MergePortEvent>(
          c.name(), kInvalidPortName, kInvalidSequenceNum, PortName(90, 1),
          FakeDescriptor(kFake, PortName(91, 1), PortName(92, 1))));
  EXPECT_TRUE(r.violation()) << r.ToString();
  net_.Pump();
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(c, &status));
  EXPECT_FALSE(status.peer_remote);
  EXPECT_EQ(2u, n0_.node.GetStats().ports);
  EXPECT_EQ(OK, n0_.node.ClosePort(c));
  EXPECT_EQ(OK, n0_.node.ClosePort(d));
  ExpectClean();
}

// A user message from the fake peer to `x`, in order on its stream.
std::unique_ptr<UserMessageEvent> FromFake(const PortRef& x,
                                           const PortName& fake_port,
                                           uint64_t control_seq,
                                           uint64_t seq,
                                           size_t num_ports) {
  auto m = TextMessage("hostile", num_ports);
  m->set_port_name(x.name());
  m->set_from_port(fake_port);
  m->set_control_sequence_num(control_seq);
  m->set_sequence_num(seq);
  return m;
}

TEST_F(NodeApiTest, DuplicateAttachedPortNameIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  auto m = FromFake(x, fake_port, 1, 1, 2);
  for (size_t i = 0; i < 2; ++i) {
    m->ports()[i] = PortName(500, 1);
    m->port_descriptors()[i] =
        FakeDescriptor(kFake, PortName(501 + i, 1), PortName(503 + i, 1));
  }
  AcceptResult r = n0_.node.AcceptEvent(kFake, std::move(m));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(1u, n0_.node.GetStats().ports);  // No port was created.
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_EQ(0u, status.queued_message_count);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, AttachedPortListBadPartWayLeavesNoOrphans) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  auto m = FromFake(x, fake_port, 1, 1, 2);
  m->ports()[0] = PortName(500, 1);
  m->port_descriptors()[0] =
      FakeDescriptor(kFake, PortName(501, 1), PortName(502, 1));
  m->ports()[1] = x.name();  // Already exists here.
  m->port_descriptors()[1] =
      FakeDescriptor(kFake, PortName(503, 1), PortName(504, 1));
  AcceptResult r = n0_.node.AcceptEvent(kFake, std::move(m));
  EXPECT_TRUE(r.violation()) << r.ToString();
  net_.Pump();
  EXPECT_EQ(1u, n0_.node.GetStats().ports);  // The first port was closed.
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, TooManyAttachedPortsIsAViolation) {
  ManualNode small(
      3, &net_, NodeOptions{NodeLimits{.max_attached_ports_per_message = 2}});
  PortRef x;
  ASSERT_EQ(OK, small.node.CreateUninitializedPort(&x));
  const PortName fake_port(77, 1);
  ASSERT_EQ(OK,
            small.node.InitializePort(x, kFake, fake_port, kFake, fake_port));
  auto m = FromFake(x, fake_port, 1, 1, 3);
  for (size_t i = 0; i < 3; ++i) {
    m->ports()[i] = PortName(600 + i, 1);
    m->port_descriptors()[i] =
        FakeDescriptor(kFake, PortName(610 + i, 1), PortName(620 + i, 1));
  }
  AcceptResult r = small.node.AcceptEvent(kFake, std::move(m));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(1u, small.node.GetStats().ports);
  EXPECT_EQ(OK, small.node.ClosePort(x));
  net_.Pump();
  EXPECT_TRUE(small.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(NodeApiTest, TooManyUnreadPortsFromOnePeerIsAViolation) {
  ManualNode small(3, &net_,
                   NodeOptions{NodeLimits{.max_unread_ports_per_peer = 2}});
  PortRef x;
  ASSERT_EQ(OK, small.node.CreateUninitializedPort(&x));
  const PortName fake_port(77, 1);
  ASSERT_EQ(OK,
            small.node.InitializePort(x, kFake, fake_port, kFake, fake_port));
  auto with_ports = [&](uint64_t control_seq, uint64_t seq, size_t n,
                        uint64_t first_name) {
    auto m = FromFake(x, fake_port, control_seq, seq, n);
    for (size_t i = 0; i < n; ++i) {
      m->ports()[i] = PortName(first_name + i, 1);
      m->port_descriptors()[i] =
          FakeDescriptor(kFake, PortName(first_name + 100 + i, 1),
                         PortName(first_name + 200 + i, 1));
    }
    return m;
  };
  // Two unread ports are allowed; a third is not.
  AcceptResult r = small.node.AcceptEvent(kFake, with_ports(1, 1, 2, 1000));
  EXPECT_TRUE(r.ok()) << r.ToString();
  r = small.node.AcceptEvent(kFake, with_ports(2, 2, 1, 2000));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(3u, small.node.GetStats().ports);
  // Reading the first message releases its ports from the budget.
  std::unique_ptr<UserMessageEvent> message;
  ASSERT_EQ(OK, small.node.GetMessage(x, &message, nullptr));
  ASSERT_TRUE(message);
  r = small.node.AcceptEvent(kFake, with_ports(3, 2, 1, 3000));
  EXPECT_TRUE(r.ok()) << r.ToString();
  for (size_t i = 0; i < message->num_ports(); ++i) {
    PortRef port;
    ASSERT_EQ(OK, small.node.GetPort(message->ports()[i], &port));
    EXPECT_EQ(OK, small.node.ClosePort(port));
  }
  EXPECT_EQ(OK, small.node.ClosePort(x));
  net_.Pump();
  EXPECT_TRUE(small.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(NodeApiTest, UserSequenceNumberOutsideTheWindowIsAViolation) {
  ManualNode small(3, &net_, NodeOptions{NodeLimits{.sequence_window = 8}});
  PortRef x;
  ASSERT_EQ(OK, small.node.CreateUninitializedPort(&x));
  const PortName fake_port(77, 1);
  ASSERT_EQ(OK,
            small.node.InitializePort(x, kFake, fake_port, kFake, fake_port));
  // 0 is below the next number to read (1): it would wedge the queue.
  AcceptResult r =
      small.node.AcceptEvent(kFake, FromFake(x, fake_port, 1, 0, 0));
  EXPECT_TRUE(r.violation()) << r.ToString();
  // Far beyond anything received.
  r = small.node.AcceptEvent(kFake, FromFake(x, fake_port, 2, 100, 0));
  EXPECT_TRUE(r.violation()) << r.ToString();
  // In the window (out of order) is fine, and so is an unread backlog.
  r = small.node.AcceptEvent(kFake, FromFake(x, fake_port, 3, 5, 0));
  EXPECT_TRUE(r.ok()) << r.ToString();
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    r = small.node.AcceptEvent(kFake, FromFake(x, fake_port, 3 + seq, seq, 0));
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
  PortStatus status;
  ASSERT_EQ(OK, small.node.GetStatus(x, &status));
  EXPECT_EQ(5u, status.queued_message_count);
  EXPECT_EQ(OK, small.node.ClosePort(x));
  net_.Pump();
  EXPECT_TRUE(small.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(NodeApiTest, ReadAckForMessageNeverSentIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  EXPECT_EQ(OK, n0_.node.SendUserMessage(x, TextMessage("one")));
  AcceptResult r = n0_.node.AcceptEvent(
      kFake,
      std::make_unique<UserMessageReadAckEvent>(x.name(), fake_port, 1, 5));
  EXPECT_TRUE(r.violation()) << r.ToString();
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_EQ(1u, status.unacknowledged_message_count);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, BroadcastObserveProxyNotFromTheProxyNodeIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  // kOther claims kFake's port died: believing it would cut x's route.
  AcceptResult r = n0_.node.AcceptEvent(
      kOther, std::make_unique<ObserveProxyEvent>(
                  kInvalidPortName, kInvalidPortName, kInvalidSequenceNum,
                  kFake, fake_port, kInvalidNodeName, kInvalidPortName));
  EXPECT_TRUE(r.violation()) << r.ToString();
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_FALSE(status.peer_closed);
  // From the proxy's own node it is believed.
  r = n0_.node.AcceptEvent(
      kFake, std::make_unique<ObserveProxyEvent>(
                 kInvalidPortName, kInvalidPortName, kInvalidSequenceNum, kFake,
                 fake_port, kInvalidNodeName, kInvalidPortName));
  EXPECT_TRUE(r.ok()) << r.ToString();
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_TRUE(status.peer_closed);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, ObserveProxyAckToReceivingPortIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  AcceptResult r = n0_.node.AcceptEvent(
      kFake, std::make_unique<ObserveProxyAckEvent>(x.name(), fake_port, 1, 0));
  EXPECT_TRUE(r.violation()) << r.ToString();
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_TRUE(status.receiving_messages);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, UpdatePreviousPeerToInvalidNameIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  AcceptResult r = n0_.node.AcceptEvent(
      kFake, std::make_unique<UpdatePreviousPeerEvent>(
                 x.name(), fake_port, 1, kInvalidNodeName, kInvalidPortName));
  EXPECT_TRUE(r.violation()) << r.ToString();
  // The route still works: the next event from the fake peer is accepted.
  r = n0_.node.AcceptEvent(kFake, FromFake(x, fake_port, 2, 1, 0));
  EXPECT_TRUE(r.ok()) << r.ToString();
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, TooManyBufferedEarlyEventsIsAViolation) {
  ManualNode small(3, &net_,
                   NodeOptions{NodeLimits{.max_buffered_events_per_port = 4}});
  PortRef x;
  ASSERT_EQ(OK, small.node.CreateUninitializedPort(&x));
  const PortName fake_port(77, 1);
  ASSERT_EQ(OK,
            small.node.InitializePort(x, kFake, fake_port, kFake, fake_port));
  // Control numbers 10.. are early (1 is next): they are buffered.
  for (uint64_t i = 0; i < 4; ++i) {
    AcceptResult r = small.node.AcceptEvent(
        kFake,
        std::make_unique<ObserveClosureEvent>(x.name(), fake_port, 10 + i, 0));
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
  AcceptResult r = small.node.AcceptEvent(
      kFake, std::make_unique<ObserveClosureEvent>(x.name(), fake_port, 20, 0));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(4u, small.node.GetStats().buffered_events);
  EXPECT_EQ(OK, small.node.ClosePort(x));
  EXPECT_EQ(0u, small.node.GetStats().buffered_events);
  net_.Pump();
  EXPECT_TRUE(small.node.CanShutdownCleanly());
  ExpectClean();
}

// The per-port limit is per sending node: a forger that fills its share of
// a port cannot make the honest sender's next early event the one that
// trips it; only the forger's own next one is the violation.
TEST_F(NodeApiTest, PerPortEarlyEventLimitBlamesOnlyTheSenderPastItsShare) {
  ManualNode small(3, &net_,
                   NodeOptions{NodeLimits{.max_buffered_events_per_port = 4}});
  PortRef x;
  ASSERT_EQ(OK, small.node.CreateUninitializedPort(&x));
  const PortName fake_port(77, 1);
  const PortName forged_port(66, 1);
  ASSERT_EQ(OK,
            small.node.InitializePort(x, kFake, fake_port, kFake, fake_port));
  // kOther is not x's previous peer: all its events wait.
  for (uint64_t i = 1; i <= 4; ++i) {
    AcceptResult r =
        small.node.AcceptEvent(kOther, FromFake(x, forged_port, i, i, 0));
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
  // The honest peer's early events (2..5; 1 is next) are still accepted.
  for (uint64_t i = 2; i <= 5; ++i) {
    AcceptResult r =
        small.node.AcceptEvent(kFake, FromFake(x, fake_port, i, i, 0));
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
  EXPECT_EQ(8u, small.node.GetStats().buffered_events);
  AcceptResult r =
      small.node.AcceptEvent(kOther, FromFake(x, forged_port, 5, 5, 0));
  EXPECT_TRUE(r.violation()) << r.ToString();
  // The honest gap fills: its whole stream is readable, in order.
  r = small.node.AcceptEvent(kFake, FromFake(x, fake_port, 1, 1, 0));
  EXPECT_TRUE(r.ok()) << r.ToString();
  for (uint64_t i = 1; i <= 5; ++i) {
    std::unique_ptr<UserMessageEvent> message;
    ASSERT_EQ(OK, small.node.GetMessage(x, &message, nullptr));
    ASSERT_TRUE(message) << i;
  }
  {
    std::unique_ptr<UserMessageEvent> message;
    ASSERT_EQ(OK, small.node.GetMessage(x, &message, nullptr));
    EXPECT_FALSE(message);
  }
  EXPECT_EQ(4u, small.node.GetStats().buffered_events);
  EXPECT_EQ(OK, small.node.ClosePort(x));
  EXPECT_EQ(0u, small.node.GetStats().buffered_events);
  net_.Pump();
  EXPECT_TRUE(small.node.CanShutdownCleanly());
  ExpectClean();
}

// Events a peer forged onto another peer's route (and left buffered there:
// their sender is not the previous peer) go, with their budget charge, when
// that peer's node is lost; the honest route is untouched.
TEST_F(NodeApiTest, ForgedEarlyEventsGoWithTheLostForger) {
  const PortName fake_port(77, 1);
  const PortName forged_port(66, 1);
  PortRef x = SpanToFake(fake_port);
  const uint64_t n = 100;
  for (uint64_t i = 1; i <= n; ++i) {
    AcceptResult r =
        n0_.node.AcceptEvent(kOther, FromFake(x, forged_port, i, i, 0));
    EXPECT_TRUE(r.ok()) << r.ToString();
  }
  // And one early event of the honest peer's own (1 is next).
  AcceptResult r = n0_.node.AcceptEvent(kFake, FromFake(x, fake_port, 2, 2, 0));
  EXPECT_TRUE(r.ok()) << r.ToString();
  NodeStats stats = n0_.node.GetStats();
  EXPECT_EQ(n + 1, stats.buffered_events);
  EXPECT_EQ(n, stats.buffered_events_largest_peer);

  EXPECT_EQ(OK, n0_.node.LostConnectionToNode(kOther));
  stats = n0_.node.GetStats();
  EXPECT_EQ(1u, stats.buffered_events);
  EXPECT_EQ(1u, stats.buffered_events_largest_peer);
  EXPECT_EQ(1u, stats.ports);
  PortStatus status;
  ASSERT_EQ(OK, n0_.node.GetStatus(x, &status));
  EXPECT_FALSE(status.peer_closed);

  r = n0_.node.AcceptEvent(kFake, FromFake(x, fake_port, 1, 1, 0));
  EXPECT_TRUE(r.ok()) << r.ToString();
  for (uint64_t i = 1; i <= 3; ++i) {
    std::unique_ptr<UserMessageEvent> message;
    ASSERT_EQ(OK, n0_.node.GetMessage(x, &message, nullptr));
    // Only the honest peer's two messages: nothing forged got through.
    EXPECT_EQ(i <= 2, message != nullptr) << i;
  }
  stats = n0_.node.GetStats();
  EXPECT_EQ(0u, stats.buffered_events);
  EXPECT_EQ(0u, stats.buffered_event_bytes);
  EXPECT_EQ(0u, stats.buffered_events_largest_peer);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

TEST_F(NodeApiTest, AttachedPortReferringToAnotherNodeIsAViolation) {
  const PortName fake_port(77, 1);
  PortRef x = SpanToFake(fake_port);
  auto m = FromFake(x, fake_port, 1, 1, 1);
  m->ports()[0] = PortName(500, 1);
  // Says kOther proxies for it: PortAccepted would go to a third node.
  m->port_descriptors()[0] =
      FakeDescriptor(kOther, PortName(501, 1), PortName(502, 1));
  AcceptResult r = n0_.node.AcceptEvent(kFake, std::move(m));
  EXPECT_TRUE(r.violation()) << r.ToString();
  EXPECT_EQ(1u, n0_.node.GetStats().ports);
  EXPECT_EQ(OK, n0_.node.ClosePort(x));
  ExpectClean();
}

// ---- The per-port receive cap (NodeLimits::max_queued_*_per_port). ----

// A user message of `size` payload bytes from the fake peer to `x`.
std::unique_ptr<UserMessageEvent> SizedFromFake(const PortRef& x,
                                                const PortName& fake_port,
                                                uint64_t control_seq,
                                                uint64_t seq,
                                                size_t size,
                                                size_t num_ports = 0) {
  auto m = FromFake(x, fake_port, control_seq, seq, num_ports);
  m->message().Assign(std::string(size, 's'));
  return m;
}

class QueueCapTest : public NodeApiTest {
 protected:
  static NodeOptions Capped(size_t messages, size_t bytes) {
    NodeOptions options;
    options.limits.max_queued_messages_per_port = messages;
    options.limits.max_queued_bytes_per_port = bytes;
    return options;
  }

  // A port on `n` whose peer is `fake_port` on kFake.
  static PortRef SpanFrom(ManualNode* n, const PortName& fake_port) {
    PortRef x;
    EXPECT_EQ(OK, n->node.CreateUninitializedPort(&x));
    EXPECT_EQ(OK,
              n->node.InitializePort(x, kFake, fake_port, kFake, fake_port));
    return x;
  }

  static PortStatus StatusOf(ManualNode* n, const PortRef& port) {
    PortStatus status;
    EXPECT_EQ(OK, n->node.GetStatus(port, &status));
    return status;
  }
};

TEST_F(QueueCapTest, AtTheMessageCapIsOkOnePastIsAViolationThatChangesNothing) {
  ManualNode capped(3, &net_, Capped(3, 0));
  const PortName fake_port(77, 1), other_fake_port(78, 1);
  PortRef x = SpanFrom(&capped, fake_port);
  PortRef y = SpanFrom(&capped, other_fake_port);
  AcceptResult r =
      capped.node.AcceptEvent(kFake, FromFake(y, other_fake_port, 1, 1, 0));
  ASSERT_TRUE(r.ok()) << r.ToString();
  // In order 1, 2 and out of order 4: three queued, the cap.
  for (uint64_t seq : {1, 2, 4}) {
    r = capped.node.AcceptEvent(
        kFake, FromFake(x, fake_port, seq == 4 ? 3 : seq, seq, 0));
    EXPECT_TRUE(r.ok()) << seq << ": " << r.ToString();
  }
  PortStatus before = StatusOf(&capped, x);
  EXPECT_EQ(3u, before.queued_message_count);
  EXPECT_EQ(kFake, before.peer_node_name);

  // A fourth (the missing 3, so the in-order fast path is tried) is one past.
  r = capped.node.AcceptEvent(kFake, FromFake(x, fake_port, 4, 3, 0));
  ASSERT_TRUE(r.violation()) << r.ToString();
  const std::string reason = r.ToString();
  EXPECT_NE(std::string::npos, reason.find("max_queued_messages_per_port"))
      << reason;
  EXPECT_NE(std::string::npos, reason.find("4 queued, cap 3")) << reason;

  // Nothing else changed: the queue, the other port, the port table.
  PortStatus after = StatusOf(&capped, x);
  EXPECT_EQ(before.queued_message_count, after.queued_message_count);
  EXPECT_EQ(before.queued_num_bytes, after.queued_num_bytes);
  EXPECT_EQ(1u, StatusOf(&capped, y).queued_message_count);
  EXPECT_EQ(2u, capped.node.GetStats().ports);

  // The messages that were taken read as sent.
  std::unique_ptr<UserMessageEvent> message;
  ASSERT_EQ(OK, capped.node.GetMessage(x, &message, nullptr));
  ASSERT_TRUE(message);
  EXPECT_EQ("hostile", message->message().AsStringView());

  EXPECT_EQ(OK, capped.node.LostConnectionToNode(kFake));
  EXPECT_EQ(OK, capped.node.ClosePort(x));
  EXPECT_EQ(OK, capped.node.ClosePort(y));
  net_.Pump();
  EXPECT_TRUE(capped.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(QueueCapTest, MessagePastTheCapLeavesNoOrphanedAttachedPorts) {
  ManualNode capped(3, &net_, Capped(1, 0));
  const PortName fake_port(77, 1);
  PortRef x = SpanFrom(&capped, fake_port);
  AcceptResult r =
      capped.node.AcceptEvent(kFake, FromFake(x, fake_port, 1, 1, 0));
  ASSERT_TRUE(r.ok()) << r.ToString();
  auto m = FromFake(x, fake_port, 2, 2, 1);
  m->ports()[0] = PortName(500, 1);
  m->port_descriptors()[0] =
      FakeDescriptor(kFake, PortName(501, 1), PortName(502, 1));
  r = capped.node.AcceptEvent(kFake, std::move(m));
  EXPECT_TRUE(r.violation()) << r.ToString();
  net_.Pump();
  // The attached port was adopted (its route hears PortAccepted) and closed.
  EXPECT_EQ(1u, capped.node.GetStats().ports);
  EXPECT_EQ(1u, StatusOf(&capped, x).queued_message_count);
  EXPECT_EQ(OK, capped.node.LostConnectionToNode(kFake));
  EXPECT_EQ(OK, capped.node.ClosePort(x));
  net_.Pump();
  EXPECT_TRUE(capped.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(QueueCapTest, ByteCapAllowsOneMessageOfAnySize) {
  ManualNode capped(3, &net_, Capped(0, 10));
  const PortName fake_port(77, 1);
  PortRef x = SpanFrom(&capped, fake_port);
  // Alone in the queue, 100 bytes is fine (the sender had nothing
  // unacknowledged); a second message on top of it is not, even of 1 byte.
  AcceptResult r =
      capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 1, 1, 100));
  EXPECT_TRUE(r.ok()) << r.ToString();
  r = capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 2, 2, 1));
  ASSERT_TRUE(r.violation()) << r.ToString();
  EXPECT_NE(std::string::npos,
            r.ToString().find("max_queued_bytes_per_port (101 bytes in 2 "
                              "queued messages, cap 10)"))
      << r.ToString();
  EXPECT_EQ(100u, StatusOf(&capped, x).queued_num_bytes);

  // Once it is read: two messages of 5 bytes reach the cap exactly; one more
  // byte is past it.
  std::unique_ptr<UserMessageEvent> message;
  ASSERT_EQ(OK, capped.node.GetMessage(x, &message, nullptr));
  ASSERT_TRUE(message);
  r = capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 3, 2, 5));
  EXPECT_TRUE(r.ok()) << r.ToString();
  r = capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 4, 3, 5));
  EXPECT_TRUE(r.ok()) << r.ToString();
  r = capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 5, 4, 0));
  EXPECT_TRUE(r.ok()) << "an empty message adds no bytes: " << r.ToString();
  r = capped.node.AcceptEvent(kFake, SizedFromFake(x, fake_port, 6, 5, 1));
  EXPECT_TRUE(r.violation()) << r.ToString();
  PortStatus status = StatusOf(&capped, x);
  EXPECT_EQ(3u, status.queued_message_count);
  EXPECT_EQ(10u, status.queued_num_bytes);

  EXPECT_EQ(OK, capped.node.LostConnectionToNode(kFake));
  EXPECT_EQ(OK, capped.node.ClosePort(x));
  net_.Pump();
  EXPECT_TRUE(capped.node.CanShutdownCleanly());
  ExpectClean();
}

TEST_F(QueueCapTest, LocalSendsAreNotCapped) {
  ManualNode capped(3, &net_, Capped(2, 4));
  PortRef a, b;
  ASSERT_EQ(OK, capped.node.CreatePortPair(&a, &b));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(OK, capped.node.SendUserMessage(a, TextMessage("ten bytes!")));
  }
  net_.Pump();
  PortStatus status = StatusOf(&capped, b);
  EXPECT_EQ(5u, status.queued_message_count);
  EXPECT_EQ(50u, status.queued_num_bytes);
  EXPECT_EQ(capped.node.name(), status.peer_node_name);
  EXPECT_EQ(OK, capped.node.ClosePort(a));
  EXPECT_EQ(OK, capped.node.ClosePort(b));
  net_.Pump();
  EXPECT_TRUE(capped.node.CanShutdownCleanly());
}

// What Pipe::Send's credit does: at most `cap_messages` unacknowledged, and
// their bytes at most `cap_bytes` unless it is the only one.
class HonestSender {
 public:
  HonestSender(Node* node, PortRef port, size_t cap_messages, size_t cap_bytes)
      : node_(node),
        port_(std::move(port)),
        cap_messages_(cap_messages),
        cap_bytes_(cap_bytes) {}

  // False when the credit is spent.
  bool TrySend(uint64_t index, size_t size) {
    PortStatus status;
    EXPECT_EQ(OK, node_->GetStatus(port_, &status));
    while (unacked_.size() > status.unacknowledged_message_count) {
      held_ -= unacked_.front();
      unacked_.pop_front();
    }
    if (!unacked_.empty() && unacked_.size() >= cap_messages_) {
      ++message_cap_waits;
      return false;
    }
    if (!unacked_.empty() && held_ + size > cap_bytes_) {
      ++byte_cap_waits;
      return false;
    }
    std::string payload(size, '.');
    payload.replace(0, std::min<size_t>(size, 8),
                    std::to_string(index % 100000000).substr(0, size));
    auto message = std::make_unique<UserMessageEvent>(0);
    message->message().Assign(payload);
    EXPECT_EQ(OK, node_->SendUserMessage(port_, std::move(message)));
    unacked_.push_back(size);
    held_ += size;
    return true;
  }

  // How often each part of the credit made the sender wait.
  int message_cap_waits = 0;
  int byte_cap_waits = 0;

 private:
  Node* node_;
  PortRef port_;
  size_t cap_messages_;
  size_t cap_bytes_;
  std::deque<size_t> unacked_;
  size_t held_ = 0;
};

void ConnectAcross(ManualNode* a, ManualNode* b, PortRef* pa, PortRef* pb) {
  ASSERT_EQ(OK, a->node.CreateUninitializedPort(pa));
  ASSERT_EQ(OK, b->node.CreateUninitializedPort(pb));
  ASSERT_EQ(OK, a->node.InitializePort(*pa, b->node.name(), pb->name(),
                                       b->node.name(), pb->name()));
  ASSERT_EQ(OK, b->node.InitializePort(*pb, a->node.name(), pa->name(),
                                       a->node.name(), pa->name()));
}

TEST_F(QueueCapTest, HonestSenderUsingReadAcksNeverTripsTheCap) {
  constexpr size_t kCapMessages = 4;
  constexpr size_t kCapBytes = 64;
  // Every node enforces the cap; ManualNet::Pump fails on any violation.
  ManualNode sender(11, &net_, Capped(kCapMessages, kCapBytes));
  ManualNode reader(12, &net_, Capped(kCapMessages, kCapBytes));
  ManualNode later(13, &net_, Capped(kCapMessages, kCapBytes));
  net_.Add(&sender);
  net_.Add(&reader);
  net_.Add(&later);
  PortRef p, q, to_later, from_reader;
  ConnectAcross(&sender, &reader, &p, &q);
  ConnectAcross(&reader, &later, &to_later, &from_reader);
  // As Pipe::SetQuota: with a byte quota every read is acknowledged (an
  // interval could leave the credit spent with everything read).
  ASSERT_EQ(OK, sender.node.SetAcknowledgeRequestInterval(p, 1));
  net_.Pump();

  HonestSender honest(&sender.node, p, kCapMessages, kCapBytes);
  constexpr uint64_t kMessages = 300;
  uint64_t sent = 0, received = 0;
  ManualNode* holder = &reader;
  PortRef receiving = q;
  for (int step = 0; step < 10000 && received < kMessages; ++step) {
    // Sizes 8..37 or 1 in 4 tiny: both caps bind.
    while (sent < kMessages &&
           honest.TrySend(sent, sent % 4 == 0 ? 8 : 8 + (sent * 7) % 30))
      ++sent;
    net_.Pump();
    PortStatus status = StatusOf(holder, receiving);
    EXPECT_LE(status.queued_message_count, kCapMessages);
    if (status.queued_message_count > 1) {
      EXPECT_LE(status.queued_num_bytes, kCapBytes);
    }
    if (step == 20) {
      // Move the receiving port to another node with messages still queued:
      // they reach it through the proxy left behind, alongside new ones.
      ASSERT_GT(status.queued_message_count, 0u);
      auto carry = TextMessage("take q", 1);
      carry->ports()[0] = q.name();
      ASSERT_EQ(OK, reader.node.SendUserMessage(to_later, std::move(carry)));
      net_.Pump();
      std::unique_ptr<UserMessageEvent> message;
      ASSERT_EQ(OK, later.node.GetMessage(from_reader, &message, nullptr));
      ASSERT_TRUE(message);
      ASSERT_EQ(1u, message->num_ports());
      ASSERT_EQ(OK, later.node.GetPort(message->ports()[0], &receiving));
      holder = &later;
      continue;
    }
    // Read one to three messages, so acks lag reads by varying amounts.
    for (int i = 0; i <= step % 3; ++i) {
      std::unique_ptr<UserMessageEvent> message;
      ASSERT_EQ(OK, holder->node.GetMessage(receiving, &message, nullptr));
      if (!message)
        break;
      std::string expected = std::to_string(received % 100000000);
      EXPECT_EQ(expected.substr(0, 8),
                message->message().AsStringView().substr(0, expected.size()));
      ++received;
    }
    net_.Pump();
  }
  EXPECT_EQ(kMessages, sent);
  EXPECT_EQ(kMessages, received);
  EXPECT_GT(honest.message_cap_waits, 0);
  EXPECT_GT(honest.byte_cap_waits, 0);
  EXPECT_EQ(&later, holder);

  EXPECT_EQ(OK, sender.node.ClosePort(p));
  EXPECT_EQ(OK, later.node.ClosePort(receiving));
  EXPECT_EQ(OK, reader.node.ClosePort(to_later));
  EXPECT_EQ(OK, later.node.ClosePort(from_reader));
  net_.Pump();
  EXPECT_TRUE(sender.node.CanShutdownCleanly());
  EXPECT_TRUE(reader.node.CanShutdownCleanly());
  EXPECT_TRUE(later.node.CanShutdownCleanly());
  ExpectClean();
}

}  // namespace
}  // namespace shmports::ports
