#include "tests/core/ports/ports_test_harness.h"

#include <chrono>
#include <vector>

namespace shmports::ports::test {

ScopedMessage NewUserMessageEvent(std::string_view payload, size_t num_ports) {
  auto message = std::make_unique<UserMessageEvent>(num_ports);
  message->message().Assign(payload);
  return message;
}

bool MessageEquals(const ScopedMessage& message, std::string_view payload) {
  return message && message->message().AsStringView() == payload;
}

TestNode::TestNode(uint64_t id)
    : node_name_(NodeName(id, 1)), node_(node_name_, this) {}

TestNode::~TestNode() {
  Stop();
}

void TestNode::BlockOnEvent(EventType type) {
  MutexLock lock(&lock_);
  block_on_event_ = true;
  blocked_event_type_ = type;
}

void TestNode::Unblock() {
  {
    MutexLock lock(&lock_);
    block_on_event_ = false;
    blocked_ = false;
  }
  events_available_.SignalAll();
}

void TestNode::set_drop_messages(bool value) {
  MutexLock lock(&lock_);
  drop_messages_ = value;
}

void TestNode::set_save_messages(bool value) {
  MutexLock lock(&lock_);
  save_messages_ = value;
}

bool TestNode::GetSavedMessage(ScopedMessage* message) {
  MutexLock lock(&lock_);
  if (saved_messages_.empty()) {
    message->reset();
    return false;
  }
  *message = std::move(saved_messages_.front());
  saved_messages_.pop_front();
  return true;
}

int TestNode::SendStringMessage(const PortRef& port, std::string_view s) {
  return node_.SendUserMessage(port, NewUserMessageEvent(s, 0));
}

int TestNode::SendMultipleMessages(const PortRef& port, size_t num_messages) {
  for (size_t i = 0; i < num_messages; ++i) {
    int result = SendStringMessage(port, "foo");
    if (result != OK)
      return result;
  }
  return OK;
}

int TestNode::SendStringMessageWithPort(const PortRef& port,
                                        std::string_view s,
                                        const PortName& sent_port_name) {
  auto message = NewUserMessageEvent(s, 1);
  message->ports()[0] = sent_port_name;
  return node_.SendUserMessage(port, std::move(message));
}

int TestNode::SendStringMessageWithPort(const PortRef& port,
                                        std::string_view s,
                                        const PortRef& sent_port) {
  return SendStringMessageWithPort(port, s, sent_port.name());
}

bool TestNode::ReadMessage(const PortRef& port, ScopedMessage* message) {
  return node_.GetMessage(port, message, nullptr) == OK && *message;
}

bool TestNode::ReadMultipleMessages(const PortRef& port, size_t num_messages) {
  for (size_t i = 0; i < num_messages; ++i) {
    ScopedMessage message;
    if (!ReadMessage(port, &message))
      return false;
  }
  return true;
}

uint64_t TestNode::GetUnacknowledgedMessageCount(const PortRef& port) {
  PortStatus status{};
  if (node_.GetStatus(port, &status) != OK)
    return 0;
  return status.unacknowledged_message_count;
}

int TestNode::AllowPortMerge(const PortRef& port,
                             const NodeName& allowed_node) {
  return node_.AllowPortMerge(port, allowed_node);
}

void TestNode::ClosePortsInEvent(UserMessageEvent* message) {
  for (size_t i = 0; i < message->num_ports(); ++i) {
    PortRef port;
    if (node_.GetPort(message->ports()[i], &port) == OK) {
      EXPECT_EQ(OK, node_.ClosePort(port));
    }
  }
}

void TestNode::Start(PortsTest* test) {
  test_ = test;
  thread_ = std::thread([this] { ProcessEvents(); });
}

void TestNode::Stop() {
  if (test_)
    test_->Unregister(this);
  {
    MutexLock lock(&lock_);
    should_quit_ = true;
  }
  events_available_.SignalAll();
  if (thread_.joinable())
    thread_.join();
  test_ = nullptr;
}

void TestNode::EnqueueEvent(const NodeName& from_node, ScopedEvent event) {
  {
    MutexLock lock(&lock_);
    events_.emplace_back(from_node, std::move(event));
  }
  events_available_.SignalAll();
}

bool TestNode::IsIdle() {
  MutexLock lock(&lock_);
  return started_ && !dispatching_ &&
         (events_.empty() ||
          (block_on_event_ &&
           events_.front().second->type() == blocked_event_type_));
}

void TestNode::set_expect_violations(bool value) {
  MutexLock lock(&lock_);
  expect_violations_ = value;
}

int TestNode::violations() {
  MutexLock lock(&lock_);
  return violations_;
}

void TestNode::ProcessEvents() {
  for (;;) {
    NodeName from;
    ScopedEvent event;
    {
      MutexLock lock(&lock_);
      for (;;) {
        if (should_quit_)
          return;
        bool runnable = !events_.empty() &&
                        !(block_on_event_ && events_.front().second->type() ==
                                                 blocked_event_type_);
        if (runnable)
          break;
        blocked_ = !events_.empty();
        if (dispatching_ || !started_) {
          dispatching_ = false;
          started_ = true;
          // idle_lock_ is a leaf lock: safe to take under ours.
          if (test_)
            test_->NotifyIdle();
        }
        events_available_.Wait(&lock_);
      }
      dispatching_ = true;
      from = events_.front().first;
      event = std::move(events_.front().second);
      events_.pop_front();
    }
    AcceptResult result = node_.AcceptEvent(from, std::move(event));
    if (result.violation()) {
      MutexLock lock(&lock_);
      ++violations_;
      if (!expect_violations_) {
        ADD_FAILURE() << "node " << node_name_.ToString()
                      << " saw a violation from " << from.ToString() << ": "
                      << result.ToString();
      }
    }
  }
}

void TestNode::ForwardEvent(const NodeName& node, ScopedEvent event) {
  bool drop;
  {
    MutexLock lock(&lock_);
    drop = drop_messages_;
  }
  if (drop) {
    if (event->type() == EventType::kUserMessage) {
      // A dropped message's ports must not leak on this node.
      auto message = EventCast<UserMessageEvent>(&event);
      ClosePortsInEvent(message.get());
    }
    return;
  }
  if (test_)
    test_->RouteEvent(node_name_, node, std::move(event));
}

void TestNode::BroadcastEvent(ScopedEvent event) {
  {
    MutexLock lock(&lock_);
    if (drop_messages_)
      return;
  }
  if (test_)
    test_->BroadcastFrom(node_name_, *event);
}

void TestNode::PortStatusChanged(const PortRef& port) {
  {
    MutexLock lock(&lock_);
    if (!save_messages_)
      return;
  }
  for (;;) {
    ScopedMessage message;
    if (!ReadMessage(port, &message))
      break;
    MutexLock lock(&lock_);
    saved_messages_.push_back(std::move(message));
  }
}

PortsTest::PortsTest() = default;

PortsTest::~PortsTest() = default;

void PortsTest::AddNode(TestNode* node) {
  {
    MutexLock lock(&global_lock_);
    nodes_[node->name()] = node;
  }
  node->Start(this);
}

void PortsTest::Unregister(TestNode* node) {
  MutexLock lock(&global_lock_);
  auto it = nodes_.find(node->name());
  if (it != nodes_.end() && it->second == node)
    nodes_.erase(it);
}

void PortsTest::RemoveNode(TestNode* node) {
  Unregister(node);
  std::vector<TestNode*> remaining;
  {
    MutexLock lock(&global_lock_);
    for (auto& [name, other] : nodes_)
      remaining.push_back(other);
  }
  for (TestNode* other : remaining) {
    EXPECT_EQ(OK, other->node().LostConnectionToNode(node->name()));
  }
}

void PortsTest::WaitForIdle() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    {
      // Forwarding also holds global_lock_, so "all idle" seen here is
      // stable: no event is between a sender and its destination queue.
      MutexLock lock(&global_lock_);
      bool all_idle = true;
      for (auto& [name, node] : nodes_) {
        if (!node->IsIdle()) {
          all_idle = false;
          break;
        }
      }
      if (all_idle)
        return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "nodes did not go idle within 30 s";
      return;
    }
    MutexLock lock(&idle_lock_);
    // Re-checked on wake and at least every few milliseconds (a wake-up that
    // raced with the check above is not lost for long).
    idle_changed_.WaitUntil(&idle_lock_, std::chrono::steady_clock::now() +
                                             std::chrono::milliseconds(5));
  }
}

void PortsTest::NotifyIdle() {
  MutexLock lock(&idle_lock_);
  idle_changed_.SignalAll();
}

void PortsTest::CreatePortPair(TestNode* node0,
                               PortRef* port0,
                               TestNode* node1,
                               PortRef* port1) {
  if (node0 == node1) {
    EXPECT_EQ(OK, node0->node().CreatePortPair(port0, port1));
    return;
  }
  EXPECT_EQ(OK, node0->node().CreateUninitializedPort(port0));
  EXPECT_EQ(OK, node1->node().CreateUninitializedPort(port1));
  EXPECT_EQ(OK,
            node0->node().InitializePort(*port0, node1->name(), port1->name(),
                                         node1->name(), port1->name()));
  EXPECT_EQ(OK,
            node1->node().InitializePort(*port1, node0->name(), port0->name(),
                                         node0->name(), port0->name()));
}

namespace {

// The event as the receiving node would decode it from the wire. A second
// encoding must give the same bytes.
ScopedEvent RoundTrip(const Event& event) {
  std::vector<uint8_t> bytes = event.SerializeToVector();
  Result<ScopedEvent> copy = Event::Deserialize(bytes);
  if (!copy.ok()) {
    ADD_FAILURE() << "event " << EventTypeName(event.type())
                  << " failed to decode: " << copy.status().ToString();
    return nullptr;
  }
  ScopedEvent decoded = std::move(copy).value();
  EXPECT_EQ(bytes, decoded->SerializeToVector())
      << "re-encoding " << EventTypeName(event.type()) << " differs";
  return decoded;
}

}  // namespace

void PortsTest::RouteEvent(const NodeName& from,
                           const NodeName& to,
                           ScopedEvent event) {
  MutexLock lock(&global_lock_);
  if (nodes_.count(from) == 0)
    return;  // The sender was removed.
  auto it = nodes_.find(to);
  if (it == nodes_.end())
    return;  // A removed or unknown destination.
  ScopedEvent decoded = RoundTrip(*event);
  if (decoded)
    it->second->EnqueueEvent(from, std::move(decoded));
}

void PortsTest::BroadcastFrom(const NodeName& from, const Event& event) {
  MutexLock lock(&global_lock_);
  if (nodes_.count(from) == 0)
    return;
  for (auto& [name, node] : nodes_) {
    if (name == from)
      continue;
    ScopedEvent clone = event.CloneForBroadcast();
    if (!clone) {
      ADD_FAILURE() << "broadcast of a non-broadcastable "
                    << EventTypeName(event.type());
      return;
    }
    ScopedEvent decoded = RoundTrip(*clone);
    if (decoded)
      node->EnqueueEvent(from, std::move(decoded));
  }
}

}  // namespace shmports::ports::test
