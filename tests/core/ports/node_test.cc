// Mojo's 33 ports scenarios (ports_unittest.cc), under their Mojo names, on
// the multi-node harness. Every test ends with every port closed and every
// remaining node able to shut down cleanly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base/log.h"
#include "core/base/mutex.h"
#include "tests/core/ports/ports_test_harness.h"

namespace shmports::ports::test {
namespace {

constexpr Node::ShutdownPolicy kAllowLocal =
    Node::ShutdownPolicy::ALLOW_LOCAL_PORTS;

TEST_F(PortsTest, Basic1) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "hello", a1));
  EXPECT_EQ(OK, node0.node().ClosePort(a0));

  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));

  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, Basic2) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  PortRef b0, b1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&b0, &b1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "hello", b1));
  EXPECT_EQ(OK, node0.SendStringMessage(b0, "hello again"));
  EXPECT_EQ(OK, node0.node().ClosePort(b0));

  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));

  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, Basic3) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "hello", a1));
  EXPECT_EQ(OK, node0.SendStringMessage(a0, "hello again"));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "foo", a0));

  PortRef b0, b1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&b0, &b1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "bar", b1));
  EXPECT_EQ(OK, node0.SendStringMessage(b0, "baz"));
  EXPECT_EQ(OK, node0.node().ClosePort(b0));

  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));

  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, LostConnectionToNode1) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);
  node1.set_drop_messages(true);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  // a1 goes to node1, whose PortAccepted never comes back: a1 stays a
  // buffering proxy until node1 is lost.
  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "foo", a1));
  WaitForIdle();

  RemoveNode(&node1);
  WaitForIdle();

  EXPECT_EQ(OK, node0.node().ClosePort(a0));
  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, LostConnectionToNode2) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "take a1", a1));
  WaitForIdle();

  node1.set_drop_messages(true);
  RemoveNode(&node1);
  WaitForIdle();

  // a0 learns of the loss through its peer's node.
  ScopedMessage message;
  EXPECT_EQ(ERROR_PORT_PEER_CLOSED,
            node0.node().GetMessage(a0, &message, nullptr));
  EXPECT_FALSE(message);
  EXPECT_EQ(OK, node0.node().ClosePort(a0));
  EXPECT_EQ(OK, node0.node().ClosePort(x0));

  EXPECT_EQ(OK, node1.node().GetMessage(x1, &message, nullptr));
  EXPECT_TRUE(message);
  node1.ClosePortsInEvent(message.get());
  EXPECT_EQ(OK, node1.node().ClosePort(x1));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, LostConnectionToNodeWithSecondaryProxy) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);
  TestNode node2(2);
  AddNode(&node2);

  // A-B spans nodes 0 and 1, C-D spans 1 and 2.
  PortRef A, B, C, D;
  CreatePortPair(&node0, &A, &node1, &B);
  CreatePortPair(&node1, &C, &node2, &D);

  // E-F on node 0; F goes to node 1.
  PortRef E, F;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&E, &F));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(A, ".", F));
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(B, &message));
  ASSERT_EQ(1u, message->num_ports());
  EXPECT_EQ(OK, node1.node().GetPort(message->ports()[0], &F));

  // F moves on to node 2; node 2 holds the ObserveProxy so F's proxy on
  // node 1 survives until node 1 loses node 2.
  node2.BlockOnEvent(EventType::kObserveProxy);
  EXPECT_EQ(OK, node1.SendStringMessageWithPort(C, ".", F));
  WaitForIdle();

  EXPECT_EQ(OK, node1.node().LostConnectionToNode(node2.name()));
  node2.Unblock();
  WaitForIdle();

  EXPECT_EQ(ERROR_PORT_UNKNOWN, node1.node().GetPort(F.name(), &F));

  // E learns of the closure although no continuous route from F remains.
  PortStatus status{};
  EXPECT_EQ(OK, node0.node().GetStatus(E, &status));
  EXPECT_TRUE(status.peer_closed);

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(B));
  EXPECT_EQ(OK, node1.node().ClosePort(C));
  EXPECT_EQ(OK, node0.node().ClosePort(E));
  // node2 still holds D and the moved F; close them so it ends clean too.
  ScopedMessage on_d;
  while (node2.ReadMessage(D, &on_d))
    node2.ClosePortsInEvent(on_d.get());
  EXPECT_EQ(OK, node2.node().ClosePort(D));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
  EXPECT_TRUE(node2.node().CanShutdownCleanly());
}

TEST_F(PortsTest, LostConnectionToNodeAfterSendingObserveProxy) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);
  TestNode node2(2);
  AddNode(&node2);

  PortRef A, B, C, D;
  CreatePortPair(&node0, &A, &node1, &B);
  CreatePortPair(&node1, &C, &node2, &D);

  PortRef E, F;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&E, &F));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(A, ".", F));
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(B, &message));
  ASSERT_EQ(1u, message->num_ports());
  EXPECT_EQ(OK, node1.node().GetPort(message->ports()[0], &F));

  // This time E (node 0) holds the forwarded ObserveProxy, so it has not
  // answered when node 1 loses node 2.
  node0.BlockOnEvent(EventType::kObserveProxy);
  EXPECT_EQ(OK, node1.SendStringMessageWithPort(C, ".", F));
  WaitForIdle();

  EXPECT_EQ(OK, node1.node().LostConnectionToNode(node2.name()));
  node0.Unblock();
  WaitForIdle();

  // The dead proxy F is gone (erased when node 2 was lost).
  EXPECT_EQ(ERROR_PORT_UNKNOWN, node1.node().GetPort(F.name(), &F));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(B));
  EXPECT_EQ(OK, node1.node().ClosePort(C));
  EXPECT_EQ(OK, node0.node().ClosePort(E));
  ScopedMessage on_d;
  while (node2.ReadMessage(D, &on_d))
    node2.ClosePortsInEvent(on_d.get());
  EXPECT_EQ(OK, node2.node().ClosePort(D));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
  EXPECT_TRUE(node2.node().CanShutdownCleanly());
}

TEST_F(PortsTest, LostConnectionToNodeWithLocalProxy) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B;
  CreatePortPair(&node0, &A, &node1, &B);
  PortRef C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&C, &D));

  // D's proxy on node 0 stays while node 0 holds the ObserveProxy.
  node0.BlockOnEvent(EventType::kObserveProxy);
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(A, ".", D));
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(B, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef E;
  EXPECT_EQ(OK, node1.node().GetPort(message->ports()[0], &E));

  RemoveNode(&node1);
  node0.Unblock();
  WaitForIdle();

  // C found the dead local proxy D and sees its peer closed.
  PortStatus status{};
  EXPECT_EQ(OK, node0.node().GetStatus(C, &status));
  EXPECT_TRUE(status.peer_closed);

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(B));
  EXPECT_EQ(OK, node0.node().ClosePort(C));
  EXPECT_EQ(OK, node1.node().ClosePort(E));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, GetMessage1) {
  TestNode node(0);
  AddNode(&node);

  PortRef a0, a1;
  EXPECT_EQ(OK, node.node().CreatePortPair(&a0, &a1));

  ScopedMessage message;
  EXPECT_EQ(OK, node.node().GetMessage(a0, &message, nullptr));
  EXPECT_FALSE(message);

  EXPECT_EQ(OK, node.node().ClosePort(a1));
  WaitForIdle();

  EXPECT_EQ(ERROR_PORT_PEER_CLOSED,
            node.node().GetMessage(a0, &message, nullptr));
  EXPECT_FALSE(message);

  EXPECT_EQ(OK, node.node().ClosePort(a0));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, GetMessage2) {
  TestNode node(0);
  AddNode(&node);

  PortRef a0, a1;
  EXPECT_EQ(OK, node.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node.SendStringMessage(a1, "1"));

  ScopedMessage message;
  EXPECT_EQ(OK, node.node().GetMessage(a0, &message, nullptr));
  ASSERT_TRUE(message);
  EXPECT_TRUE(MessageEquals(message, "1"));

  EXPECT_EQ(OK, node.node().ClosePort(a0));
  EXPECT_EQ(OK, node.node().ClosePort(a1));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, GetMessage3) {
  TestNode node(0);
  AddNode(&node);

  PortRef a0, a1;
  EXPECT_EQ(OK, node.node().CreatePortPair(&a0, &a1));
  const char* kStrings[] = {"1", "2", "3"};
  for (const char* s : kStrings)
    EXPECT_EQ(OK, node.SendStringMessage(a1, s));

  ScopedMessage message;
  for (const char* s : kStrings) {
    EXPECT_EQ(OK, node.node().GetMessage(a0, &message, nullptr));
    ASSERT_TRUE(message);
    EXPECT_TRUE(MessageEquals(message, s));
  }

  EXPECT_EQ(OK, node.node().ClosePort(a0));
  EXPECT_EQ(OK, node.node().ClosePort(a1));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, Delegation1) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);

  // a0 stays on node0; a1 goes to node1 and comes back as a3.
  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "a1", a1));
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(x1, &message));
  ASSERT_EQ(1u, message->num_ports());
  EXPECT_TRUE(MessageEquals(message, "a1"));
  PortName a2_name = message->ports()[0];

  EXPECT_EQ(OK, node1.SendStringMessageWithPort(x1, "a2", a2_name));
  EXPECT_EQ(OK, node0.SendStringMessage(a0, "hello"));
  WaitForIdle();

  ASSERT_TRUE(node0.ReadMessage(x0, &message));
  ASSERT_EQ(1u, message->num_ports());
  EXPECT_TRUE(MessageEquals(message, "a2"));
  PortName a3_name = message->ports()[0];
  PortRef a3;
  EXPECT_EQ(OK, node0.node().GetPort(a3_name, &a3));

  ASSERT_TRUE(node0.ReadMessage(a3, &message));
  EXPECT_EQ(0u, message->num_ports());
  EXPECT_TRUE(MessageEquals(message, "hello"));

  EXPECT_EQ(OK, node0.node().ClosePort(a0));
  EXPECT_EQ(OK, node0.node().ClosePort(a3));
  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, Delegation2) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  for (int i = 0; i < 100; ++i) {
    SCOPED_TRACE(i);
    PortRef A, B;
    CreatePortPair(&node0, &A, &node1, &B);
    PortRef C, D;
    EXPECT_EQ(OK, node0.node().CreatePortPair(&C, &D));
    PortRef E, F;
    EXPECT_EQ(OK, node0.node().CreatePortPair(&E, &F));

    node1.set_save_messages(true);

    // D goes over A to B; F goes over C into D while D is in transit.
    EXPECT_EQ(OK, node0.SendStringMessageWithPort(A, "1", D));
    EXPECT_EQ(OK, node0.SendStringMessageWithPort(C, "1", F));
    // This one must find its way to node1 through two moves.
    EXPECT_EQ(OK, node0.SendStringMessage(E, "hello"));
    WaitForIdle();

    EXPECT_EQ(OK, node0.node().ClosePort(C));
    EXPECT_EQ(OK, node0.node().ClosePort(E));
    EXPECT_EQ(OK, node0.node().ClosePort(A));
    EXPECT_EQ(OK, node1.node().ClosePort(B));

    bool got_hello = false;
    ScopedMessage message;
    while (node1.GetSavedMessage(&message)) {
      node1.ClosePortsInEvent(message.get());
      if (MessageEquals(message, "hello")) {
        got_hello = true;
        break;
      }
    }
    EXPECT_TRUE(got_hello);
    // Drain what is left so no port outlives the iteration.
    while (node1.GetSavedMessage(&message)) {
      node1.ClosePortsInEvent(message.get());
    }
    WaitForIdle();
  }

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, SendUninitialized) {
  TestNode node(0);
  AddNode(&node);

  PortRef x0;
  EXPECT_EQ(OK, node.node().CreateUninitializedPort(&x0));
  EXPECT_EQ(ERROR_PORT_STATE_UNEXPECTED, node.SendStringMessage(x0, "oops"));
  EXPECT_EQ(OK, node.node().ClosePort(x0));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, SendFailure) {
  TestNode node(0);
  AddNode(&node);
  node.set_save_messages(true);

  PortRef A, B;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));

  EXPECT_EQ(ERROR_PORT_CANNOT_SEND_SELF,
            node.SendStringMessageWithPort(A, "oops", A));
  EXPECT_EQ(ERROR_PORT_CANNOT_SEND_PEER,
            node.SendStringMessageWithPort(A, "nope", B));
  // B was closed by the failed send.
  EXPECT_EQ(ERROR_PORT_UNKNOWN, node.node().GetPort(B.name(), &B));

  WaitForIdle();
  ScopedMessage message;
  EXPECT_FALSE(node.GetSavedMessage(&message));

  EXPECT_EQ(OK, node.node().ClosePort(A));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, DontLeakUnreceivedPorts) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node.node().CreatePortPair(&C, &D));
  EXPECT_EQ(OK, node.SendStringMessageWithPort(A, "foo", D));

  EXPECT_EQ(OK, node.node().ClosePort(C));
  EXPECT_EQ(OK, node.node().ClosePort(A));
  EXPECT_EQ(OK, node.node().ClosePort(B));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, AllowShutdownWithLocalPortsOpen) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node.node().CreatePortPair(&C, &D));
  EXPECT_EQ(OK, node.SendStringMessageWithPort(A, "foo", D));

  ScopedMessage message;
  EXPECT_TRUE(node.ReadMessage(B, &message));
  ASSERT_EQ(1u, message->num_ports());
  EXPECT_TRUE(MessageEquals(message, "foo"));
  PortRef E;
  ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &E));

  EXPECT_TRUE(node.node().CanShutdownCleanly(kAllowLocal));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly(kAllowLocal));
  EXPECT_FALSE(node.node().CanShutdownCleanly());

  EXPECT_EQ(OK, node.node().ClosePort(A));
  EXPECT_EQ(OK, node.node().ClosePort(B));
  EXPECT_EQ(OK, node.node().ClosePort(C));
  EXPECT_EQ(OK, node.node().ClosePort(E));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, ProxyCollapse1) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  PortRef X, Y;
  EXPECT_EQ(OK, node.node().CreatePortPair(&X, &Y));

  // B → C → D → E by repeated local transfers.
  PortRef current = B;
  for (int i = 0; i < 3; ++i) {
    ScopedMessage message;
    EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", current));
    ASSERT_TRUE(node.ReadMessage(Y, &message));
    ASSERT_EQ(1u, message->num_ports());
    PortRef next;
    ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &next));
    current = next;
  }

  EXPECT_EQ(OK, node.node().ClosePort(X));
  EXPECT_EQ(OK, node.node().ClosePort(Y));
  EXPECT_EQ(OK, node.node().ClosePort(A));
  EXPECT_EQ(OK, node.node().ClosePort(current));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, ProxyCollapse2) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  PortRef X, Y;
  EXPECT_EQ(OK, node.node().CreatePortPair(&X, &Y));

  // Both ends travel in unread messages; closing X and Y closes them.
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", B));
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "bar", A));

  EXPECT_EQ(OK, node.node().ClosePort(X));
  EXPECT_EQ(OK, node.node().ClosePort(Y));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, SendWithClosedPeer) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  PortRef X, Y;
  EXPECT_EQ(OK, node.node().CreatePortPair(&X, &Y));

  EXPECT_EQ(OK, node.SendStringMessage(A, "hey"));
  EXPECT_EQ(OK, node.node().ClosePort(A));

  // B travels as C, carrying its queue and its peer's closure.
  ScopedMessage message;
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", B));
  ASSERT_TRUE(node.ReadMessage(Y, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef C;
  ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &C));

  EXPECT_EQ(OK, node.node().ClosePort(X));
  EXPECT_EQ(OK, node.node().ClosePort(Y));
  WaitForIdle();

  ASSERT_TRUE(node.ReadMessage(C, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  PortStatus status{};
  EXPECT_EQ(OK, node.node().GetStatus(C, &status));
  EXPECT_FALSE(status.receiving_messages);
  EXPECT_FALSE(status.has_messages);
  EXPECT_TRUE(status.peer_closed);

  EXPECT_EQ(OK, node.node().ClosePort(C));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, SendWithClosedPeerSent) {
  TestNode node(0);
  AddNode(&node);

  PortRef A, B;
  EXPECT_EQ(OK, node.node().CreatePortPair(&A, &B));
  PortRef X, Y;
  EXPECT_EQ(OK, node.node().CreatePortPair(&X, &Y));

  ScopedMessage message;
  // A → C.
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", A));
  ASSERT_TRUE(node.ReadMessage(Y, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef C;
  ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &C));
  // C → D.
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", C));
  ASSERT_TRUE(node.ReadMessage(Y, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef D;
  ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &D));

  EXPECT_EQ(OK, node.SendStringMessage(D, "hey"));
  EXPECT_EQ(OK, node.node().ClosePort(D));

  // B → E.
  EXPECT_EQ(OK, node.SendStringMessageWithPort(X, "foo", B));
  ASSERT_TRUE(node.ReadMessage(Y, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef E;
  ASSERT_EQ(OK, node.node().GetPort(message->ports()[0], &E));

  EXPECT_EQ(OK, node.node().ClosePort(X));
  EXPECT_EQ(OK, node.node().ClosePort(Y));
  WaitForIdle();

  ASSERT_TRUE(node.ReadMessage(E, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  PortStatus status{};
  EXPECT_EQ(OK, node.node().GetStatus(E, &status));
  EXPECT_FALSE(status.receiving_messages);
  EXPECT_FALSE(status.has_messages);
  EXPECT_TRUE(status.peer_closed);

  EXPECT_EQ(OK, node.node().ClosePort(E));
  WaitForIdle();
  EXPECT_TRUE(node.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePorts) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  EXPECT_EQ(OK, node0.SendStringMessage(A, "hey"));

  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();

  // No proxies remain.
  EXPECT_TRUE(node0.node().CanShutdownCleanly(kAllowLocal));
  EXPECT_TRUE(node1.node().CanShutdownCleanly(kAllowLocal));

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(D, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, PendingMergeRejectsUnexpectedNode) {
  Mutex log_lock;
  std::vector<std::string> logs;
  SetLogSink([&](LogSeverity severity, std::string_view line) {
    if (severity != LogSeverity::kError)
      return;
    MutexLock lock(&log_lock);
    logs.emplace_back(line);
  });

  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);
  TestNode node2(2);
  AddNode(&node2);

  PortRef A, B, C, D, E, F;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));
  EXPECT_EQ(OK, node2.node().CreatePortPair(&E, &F));

  // C accepts a merge from node0 only.
  EXPECT_EQ(OK, node1.AllowPortMerge(C, node0.name()));

  // node2 is not node0: its merge is refused as a violation.
  node1.set_expect_violations(true);
  EXPECT_EQ(OK, node2.SendStringMessage(E, "intruder"));
  EXPECT_EQ(OK, node2.node().MergePorts(F, node1.name(), C.name()));
  WaitForIdle();
  EXPECT_EQ(1, node1.violations());

  {
    MutexLock lock(&log_lock);
    int matching = 0;
    for (const auto& line : logs) {
      if (line.find("MergePort sender") != std::string::npos)
        ++matching;
    }
    EXPECT_EQ(1, matching);
  }
  SetLogSink(nullptr);

  ScopedMessage message;
  EXPECT_FALSE(node1.ReadMessage(D, &message));

  // The legitimate merge still works.
  EXPECT_EQ(OK, node0.SendStringMessage(A, "expected"));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();
  ASSERT_TRUE(node1.ReadMessage(D, &message));
  EXPECT_TRUE(MessageEquals(message, "expected"));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  EXPECT_EQ(OK, node2.node().ClosePort(E));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
  EXPECT_TRUE(node2.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePortWithClosedPeer1) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  EXPECT_EQ(OK, node0.SendStringMessage(A, "hey"));
  EXPECT_EQ(OK, node0.node().ClosePort(A));
  WaitForIdle();

  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly(kAllowLocal));

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(D, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  EXPECT_EQ(OK, node1.node().ClosePort(D));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePortWithClosedPeer2) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  EXPECT_EQ(OK, node1.SendStringMessage(D, "hey"));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  WaitForIdle();

  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly(kAllowLocal));
  EXPECT_TRUE(node1.node().CanShutdownCleanly());

  ScopedMessage message;
  ASSERT_TRUE(node0.ReadMessage(A, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePortsWithClosedPeers) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  WaitForIdle();

  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();

  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePortsWithMovedPeers) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  PortRef X, Y;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&X, &Y));

  // A moves (locally) to E.
  ScopedMessage message;
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(X, "foo", A));
  ASSERT_TRUE(node0.ReadMessage(Y, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef E;
  ASSERT_EQ(OK, node0.node().GetPort(message->ports()[0], &E));

  EXPECT_EQ(OK, node0.node().ClosePort(X));
  EXPECT_EQ(OK, node0.node().ClosePort(Y));

  EXPECT_EQ(OK, node0.SendStringMessage(E, "hey"));
  EXPECT_EQ(OK, node1.SendStringMessage(D, "hi"));

  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));
  WaitForIdle();

  ASSERT_TRUE(node0.ReadMessage(E, &message));
  EXPECT_TRUE(MessageEquals(message, "hi"));
  ASSERT_TRUE(node1.ReadMessage(D, &message));
  EXPECT_TRUE(MessageEquals(message, "hey"));

  EXPECT_EQ(OK, node0.node().ClosePort(E));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, MergePortsFailsGracefully) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef A, B, C, D;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&A, &B));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&C, &D));

  PortRef X, Y;
  CreatePortPair(&node0, &X, &node1, &Y);

  // Hold the MergePort until C has been moved away.
  node1.BlockOnEvent(EventType::kMergePort);
  EXPECT_EQ(OK, node1.AllowPortMerge(C));
  EXPECT_EQ(OK, node0.node().MergePorts(B, node1.name(), C.name()));

  // Not a sane use of the API, but possible: C leaves, so the merge fails
  // and B is closed.
  EXPECT_EQ(OK, node1.SendStringMessageWithPort(Y, "foo", C));
  node1.Unblock();
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node0.ReadMessage(X, &message));
  ASSERT_EQ(1u, message->num_ports());
  PortRef E;
  ASSERT_EQ(OK, node0.node().GetPort(message->ports()[0], &E));

  EXPECT_EQ(OK, node0.node().ClosePort(X));
  EXPECT_EQ(OK, node1.node().ClosePort(Y));
  WaitForIdle();

  // C went away as a normal proxy; B was destroyed by the failed merge.
  EXPECT_EQ(ERROR_PORT_UNKNOWN, node0.node().GetPort(B.name(), &B));
  EXPECT_EQ(ERROR_PORT_UNKNOWN, node1.node().GetPort(C.name(), &C));

  EXPECT_EQ(OK, node0.node().ClosePort(A));
  EXPECT_EQ(OK, node1.node().ClosePort(D));
  EXPECT_EQ(OK, node0.node().ClosePort(E));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

bool PeerRemote(TestNode& node, const PortRef& port) {
  PortStatus status{};
  EXPECT_EQ(OK, node.node().GetStatus(port, &status));
  return status.peer_remote;
}

PortRef ReadPort(TestNode& node, const PortRef& from) {
  ScopedMessage message;
  EXPECT_TRUE(node.ReadMessage(from, &message));
  PortRef port;
  if (message && message->num_ports() == 1) {
    EXPECT_EQ(OK, node.node().GetPort(message->ports()[0], &port));
  } else {
    ADD_FAILURE() << "expected a message carrying one port";
  }
  return port;
}

TEST_F(PortsTest, RemotePeerStatus) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef a, b;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a, &b));
  EXPECT_FALSE(PeerRemote(node0, a));
  EXPECT_FALSE(PeerRemote(node0, b));

  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);
  EXPECT_TRUE(PeerRemote(node0, x0));
  EXPECT_TRUE(PeerRemote(node1, x1));

  PortRef x2, x3;
  CreatePortPair(&node0, &x2, &node1, &x3);

  // b goes to node1 and x1 to node0: the local pair spans, the spanning pair
  // becomes local.
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x2, "foo", b));
  EXPECT_EQ(OK, node1.SendStringMessageWithPort(x3, "bar", x1));
  WaitForIdle();
  x1 = ReadPort(node0, x2);
  b = ReadPort(node1, x3);

  EXPECT_TRUE(PeerRemote(node0, a));
  EXPECT_TRUE(PeerRemote(node1, b));
  EXPECT_FALSE(PeerRemote(node0, x0));
  EXPECT_FALSE(PeerRemote(node0, x1));

  // And back again.
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x2, "foo", x1));
  EXPECT_EQ(OK, node1.SendStringMessageWithPort(x3, "bar", b));
  WaitForIdle();
  b = ReadPort(node0, x2);
  x1 = ReadPort(node1, x3);

  EXPECT_FALSE(PeerRemote(node0, a));
  EXPECT_FALSE(PeerRemote(node0, b));
  EXPECT_TRUE(PeerRemote(node0, x0));
  EXPECT_TRUE(PeerRemote(node1, x1));

  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));
  EXPECT_EQ(OK, node0.node().ClosePort(x2));
  EXPECT_EQ(OK, node1.node().ClosePort(x3));
  EXPECT_EQ(OK, node0.node().ClosePort(a));
  EXPECT_EQ(OK, node0.node().ClosePort(b));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, RemotePeerStatusAfterLocalPortMerge) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef a, b;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a, &b));
  PortRef c, d;
  CreatePortPair(&node0, &c, &node1, &d);
  EXPECT_FALSE(PeerRemote(node0, a));
  EXPECT_FALSE(PeerRemote(node0, b));
  EXPECT_TRUE(PeerRemote(node0, c));
  EXPECT_TRUE(PeerRemote(node1, d));

  EXPECT_EQ(OK, node0.node().MergeLocalPorts(b, c));
  WaitForIdle();

  EXPECT_TRUE(PeerRemote(node0, a));
  EXPECT_TRUE(PeerRemote(node1, d));

  EXPECT_EQ(OK, node0.node().ClosePort(a));
  EXPECT_EQ(OK, node1.node().ClosePort(d));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, RemotePeerStatusAfterRemotePortMerge) {
  TestNode node0(0);
  AddNode(&node0);
  TestNode node1(1);
  AddNode(&node1);

  PortRef a, b, c, d;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a, &b));
  EXPECT_EQ(OK, node1.node().CreatePortPair(&c, &d));
  EXPECT_FALSE(PeerRemote(node0, a));
  EXPECT_FALSE(PeerRemote(node0, b));
  EXPECT_FALSE(PeerRemote(node1, c));
  EXPECT_FALSE(PeerRemote(node1, d));

  EXPECT_EQ(OK, node1.AllowPortMerge(c));
  EXPECT_EQ(OK, node0.node().MergePorts(b, node1.name(), c.name()));
  WaitForIdle();

  EXPECT_TRUE(PeerRemote(node0, a));
  EXPECT_TRUE(PeerRemote(node1, d));

  EXPECT_EQ(OK, node0.node().ClosePort(a));
  EXPECT_EQ(OK, node1.node().ClosePort(d));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

TEST_F(PortsTest, RetransmitUserMessageEvents) {
  TestNode node0(0);
  AddNode(&node0);

  PortRef a, b;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a, &b));

  const char kMessage[] = "hey";
  ScopedMessage message;
  EXPECT_EQ(OK, node0.SendStringMessage(a, kMessage));
  ASSERT_TRUE(node0.ReadMessage(b, &message));
  EXPECT_TRUE(MessageEquals(message, kMessage));

  // The same event object bounces back and forth.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(OK, node0.node().SendUserMessage(b, std::move(message)));
    EXPECT_FALSE(message);
    ASSERT_TRUE(node0.ReadMessage(a, &message));
    EXPECT_TRUE(MessageEquals(message, kMessage));
    EXPECT_EQ(OK, node0.node().SendUserMessage(a, std::move(message)));
    EXPECT_FALSE(message);
    ASSERT_TRUE(node0.ReadMessage(b, &message));
    EXPECT_TRUE(MessageEquals(message, kMessage));
  }

  EXPECT_EQ(OK, node0.node().ClosePort(a));
  EXPECT_EQ(OK, node0.node().ClosePort(b));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
}

TEST_F(PortsTest, SetAcknowledgeRequestInterval) {
  TestNode node0(0);
  AddNode(&node0);

  PortRef a0, a1;
  EXPECT_EQ(OK, node0.node().CreatePortPair(&a0, &a1));
  EXPECT_EQ(0u, node0.GetUnacknowledgedMessageCount(a0));

  EXPECT_EQ(OK, node0.SendMultipleMessages(a0, 15));
  EXPECT_EQ(15u, node0.GetUnacknowledgedMessageCount(a0));

  EXPECT_TRUE(node0.ReadMultipleMessages(a1, 5));
  WaitForIdle();
  EXPECT_EQ(15u, node0.GetUnacknowledgedMessageCount(a0));

  // Acknowledge every read; what was already read is acknowledged at once.
  EXPECT_EQ(OK, node0.node().SetAcknowledgeRequestInterval(a0, 1));
  WaitForIdle();
  EXPECT_EQ(10u, node0.GetUnacknowledgedMessageCount(a0));

  EXPECT_TRUE(node0.ReadMultipleMessages(a1, 5));
  WaitForIdle();
  EXPECT_EQ(5u, node0.GetUnacknowledgedMessageCount(a0));

  TestNode node1(1);
  AddNode(&node1);

  // a1 moves to node1; its pending ack request travels with it (forwarded by
  // the proxy).
  PortRef x0, x1;
  CreatePortPair(&node0, &x0, &node1, &x1);
  EXPECT_EQ(OK, node0.SendStringMessageWithPort(x0, "foo", a1));
  WaitForIdle();

  ScopedMessage message;
  ASSERT_TRUE(node1.ReadMessage(x1, &message));
  ASSERT_EQ(1u, message->num_ports());
  ASSERT_EQ(OK, node1.node().GetPort(message->ports()[0], &a1));

  EXPECT_TRUE(node1.ReadMultipleMessages(a1, 5));
  WaitForIdle();
  EXPECT_EQ(0u, node0.GetUnacknowledgedMessageCount(a0));

  // With the interval back at 0 requests stop.
  EXPECT_EQ(OK, node0.node().SetAcknowledgeRequestInterval(a0, 0));
  EXPECT_EQ(OK, node0.SendMultipleMessages(a0, 10));
  WaitForIdle();
  EXPECT_TRUE(node1.ReadMultipleMessages(a1, 10));
  WaitForIdle();
  EXPECT_NE(0u, node0.GetUnacknowledgedMessageCount(a0));

  // Closure counts as acknowledgement.
  EXPECT_EQ(OK, node1.node().ClosePort(a1));
  WaitForIdle();
  EXPECT_EQ(0u, node0.GetUnacknowledgedMessageCount(a0));

  EXPECT_EQ(OK, node0.node().ClosePort(a0));
  EXPECT_EQ(OK, node0.node().ClosePort(x0));
  EXPECT_EQ(OK, node1.node().ClosePort(x1));
  WaitForIdle();
  EXPECT_TRUE(node0.node().CanShutdownCleanly());
  EXPECT_TRUE(node1.node().CanShutdownCleanly());
}

}  // namespace
}  // namespace shmports::ports::test
