// The core/ports test harness, in the style of Mojo's ports_unittest.cc:
// several Nodes in one process, each with its own thread and a FIFO of
// incoming events; a router that delivers every forwarded event to the
// destination's FIFO after serialising AND deserialising it (so a codec bug
// shows up as wrong behaviour); and knobs to drop a node's outgoing events,
// block a node on an event type, and remove a node (the others see
// LostConnectionToNode). Tests use only the public Node API.
#ifndef SHMPORTS_TESTS_CORE_PORTS_PORTS_TEST_HARNESS_H_
#define SHMPORTS_TESTS_CORE_PORTS_PORTS_TEST_HARNESS_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "core/base/mutex.h"
#include "core/ports/event.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace shmports::ports::test {

using ScopedMessage = std::unique_ptr<UserMessageEvent>;

// A user message carrying `payload` and room for `num_ports` ports.
ScopedMessage NewUserMessageEvent(std::string_view payload, size_t num_ports);
bool MessageEquals(const ScopedMessage& message, std::string_view payload);

class PortsTest;

// One node plus its event thread. Create, then PortsTest::AddNode.
class TestNode : public NodeDelegate {
 public:
  explicit TestNode(uint64_t id);
  ~TestNode() override;

  Node& node() { return node_; }
  const NodeName& name() const { return node_name_; }

  // Events of `type` stop the node's processing at the front of its queue
  // until Unblock.
  void BlockOnEvent(EventType type);
  void Unblock();
  // Drop every event this node forwards (its link is "cut").
  void set_drop_messages(bool value);
  // Read every available message on each PortStatusChanged and keep it.
  void set_save_messages(bool value);
  bool GetSavedMessage(ScopedMessage* message);

  int SendStringMessage(const PortRef& port, std::string_view s);
  int SendMultipleMessages(const PortRef& port, size_t num_messages);
  int SendStringMessageWithPort(const PortRef& port,
                                std::string_view s,
                                const PortName& sent_port_name);
  int SendStringMessageWithPort(const PortRef& port,
                                std::string_view s,
                                const PortRef& sent_port);
  // True only for OK with a message.
  bool ReadMessage(const PortRef& port, ScopedMessage* message);
  bool ReadMultipleMessages(const PortRef& port, size_t num_messages);
  // Through GetStatus; 0 on error.
  uint64_t GetUnacknowledgedMessageCount(const PortRef& port);
  int AllowPortMerge(const PortRef& port,
                     const NodeName& allowed_node = kInvalidNodeName);
  // Closes every port carried by `message` that exists on this node.
  void ClosePortsInEvent(UserMessageEvent* message);

  // The harness side.
  void Start(PortsTest* test);
  void Stop();
  void EnqueueEvent(const NodeName& from_node, ScopedEvent event);
  bool IsIdle();
  // AcceptEvent results that were violations. An honest run has none, so
  // each one fails the test unless set_expect_violations(true).
  int violations();
  void set_expect_violations(bool value);

  // NodeDelegate.
  void ForwardEvent(const NodeName& node, ScopedEvent event) override;
  void BroadcastEvent(ScopedEvent event) override;
  void PortStatusChanged(const PortRef& port) override;

 private:
  void ProcessEvents();

  const NodeName node_name_;
  Node node_;
  PortsTest* test_ = nullptr;
  std::thread thread_;

  Mutex lock_;
  CondVar events_available_;
  std::deque<std::pair<NodeName, ScopedEvent>> events_ GUARDED_BY(lock_);
  std::deque<ScopedMessage> saved_messages_ GUARDED_BY(lock_);
  bool started_ GUARDED_BY(lock_) = false;
  bool dispatching_ GUARDED_BY(lock_) = false;
  bool should_quit_ GUARDED_BY(lock_) = false;
  bool drop_messages_ GUARDED_BY(lock_) = false;
  bool save_messages_ GUARDED_BY(lock_) = false;
  bool block_on_event_ GUARDED_BY(lock_) = false;
  bool blocked_ GUARDED_BY(lock_) = false;
  EventType blocked_event_type_ GUARDED_BY(lock_) = EventType::kUserMessage;
  int violations_ GUARDED_BY(lock_) = 0;
  bool expect_violations_ GUARDED_BY(lock_) = false;
};

class PortsTest : public ::testing::Test {
 public:
  PortsTest();
  ~PortsTest() override;

  // Registers and starts `node` (it must outlive its registration; TestNode's
  // destructor unregisters it).
  void AddNode(TestNode* node);
  // Unregisters `node` (its events are dropped from now on) and tells every
  // remaining node LostConnectionToNode.
  void RemoveNode(TestNode* node);
  // Returns once every node is idle: no queued event (or blocked on its
  // front one) and not dispatching.
  void WaitForIdle();
  // A pair spanning two nodes (or local when node0 == node1).
  void CreatePortPair(TestNode* node0,
                      PortRef* port0,
                      TestNode* node1,
                      PortRef* port1);

  // Router side.
  void RouteEvent(const NodeName& from, const NodeName& to, ScopedEvent event);
  void BroadcastFrom(const NodeName& from, const Event& event);
  void NotifyIdle();
  void Unregister(TestNode* node);

 private:
  Mutex global_lock_;
  std::map<NodeName, TestNode*> nodes_ GUARDED_BY(global_lock_);
  Mutex idle_lock_;
  CondVar idle_changed_;
};

}  // namespace shmports::ports::test

#endif  // SHMPORTS_TESTS_CORE_PORTS_PORTS_TEST_HARNESS_H_
