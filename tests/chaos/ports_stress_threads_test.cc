// Threaded stress of core/ports: two Nodes, each fed by its own delivery
// thread from a thread-safe FIFO (every event serialised and decoded on the
// way), while several worker threads send, read, move ports between the
// nodes and close routes on both nodes at once. Part of CI's ThreadSanitizer
// build (the name ends in _threads; no fork).
//
// Each worker owns a few routes (a writing end and a reading end, either of
// which may sit on either node) and a carrier route spanning the nodes to
// move ends across. It checks that each route's reader gets 1, 2, 3, ... in
// order, that a closed writer's reader gets everything and then
// peer_closed, and at the end every route is drained and closed; then no
// node holds a port and no AcceptEvent was a violation.
//
// Bounded in time: workers stop after Scaled(1500 ms) or a message budget.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/base/deadline.h"
#include "core/base/log.h"
#include "core/base/mutex.h"
#include "core/base/str_format.h"
#include "core/base/thread_annotations.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"
#include "tests/util/test_util.h"

namespace shmports::ports {
namespace {

constexpr auto kWaitTimeout = std::chrono::seconds(20);

class StressNetwork;

// One node plus its inbound queue and delivery thread.
class StressNode : public NodeDelegate {
 public:
  StressNode(StressNetwork* network, int index)
      : network_(network),
        index_(index),
        name_(static_cast<uint64_t>(index) + 1, 0x57),
        node_(name_, this) {}
  ~StressNode() override { Stop(); }

  Node& node() { return node_; }
  const NodeName& name() const { return name_; }

  void Start() {
    thread_ = std::thread([this] { DeliveryLoop(); });
  }
  void Stop() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
    if (thread_.joinable())
      thread_.join();
  }
  void Enqueue(const NodeName& from, const Event& event) {
    {
      MutexLock lock(&mu_);
      queue_.emplace_back(from, event.SerializeToVector());
    }
    cv_.Signal();
  }
  bool Idle() {
    MutexLock lock(&mu_);
    return queue_.empty() && !dispatching_;
  }

  void ForwardEvent(const NodeName& to, ScopedEvent event) override;
  void BroadcastEvent(ScopedEvent event) override;
  void PortStatusChanged(const PortRef&) override {}

 private:
  void DeliveryLoop();

  StressNetwork* const network_;
  const int index_;
  const NodeName name_;
  Node node_;
  std::thread thread_;
  Mutex mu_;
  CondVar cv_;
  std::deque<std::pair<NodeName, std::vector<uint8_t>>> queue_ GUARDED_BY(mu_);
  bool dispatching_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
};

class StressNetwork {
 public:
  StressNetwork() {
    for (int i = 0; i < 2; ++i)
      nodes_[i] = std::make_unique<StressNode>(this, i);
    for (auto& n : nodes_)
      n->Start();
  }
  ~StressNetwork() {
    for (auto& n : nodes_)
      n->Stop();
  }
  StressNode& at(int i) { return *nodes_[i]; }
  StressNode* ByName(const NodeName& name) {
    for (auto& n : nodes_) {
      if (n->name() == name)
        return n.get();
    }
    return nullptr;
  }
  bool Idle() { return nodes_[0]->Idle() && nodes_[1]->Idle(); }

  std::atomic<int> violations{0};
  std::atomic<int> decode_failures{0};

 private:
  std::unique_ptr<StressNode> nodes_[2];
};

void StressNode::ForwardEvent(const NodeName& to, ScopedEvent event) {
  StressNode* target = network_->ByName(to);
  if (target != nullptr)
    target->Enqueue(name_, *event);
}

void StressNode::BroadcastEvent(ScopedEvent event) {
  ScopedEvent copy = event->CloneForBroadcast();
  if (copy != nullptr)
    network_->at(1 - index_).Enqueue(name_, *copy);
}

void StressNode::DeliveryLoop() {
  for (;;) {
    std::pair<NodeName, std::vector<uint8_t>> item;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stop_)
        cv_.Wait(&mu_);
      if (stop_)
        return;
      item = std::move(queue_.front());
      queue_.pop_front();
      dispatching_ = true;
    }
    Result<ScopedEvent> event =
        Event::Deserialize(std::span<const uint8_t>(item.second));
    if (!event.ok()) {
      network_->decode_failures.fetch_add(1);
    } else {
      AcceptResult result =
          node_.AcceptEvent(item.first, std::move(event).value());
      if (result.violation()) {
        network_->violations.fetch_add(1);
        SHMPORTS_LOG(kError, "stress: %s", result.ToString().c_str());
      }
    }
    MutexLock lock(&mu_);
    dispatching_ = false;
  }
}

// Where one end of a route is.
struct EndRef {
  int node = 0;
  PortRef port;
};

struct Route {
  EndRef writer;
  EndRef reader;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint32_t id = 0;
};

struct Payload {
  uint32_t route;
  uint32_t pad;
  uint64_t seq;
};

class Worker {
 public:
  Worker(StressNetwork* net, int index, uint64_t seed)
      : net_(net), index_(index), rng_(seed) {}

  // Runs until `stop` or the message budget; returns failures.
  std::vector<std::string> Run(const std::atomic<bool>& stop,
                               uint64_t max_messages);
  uint64_t messages() const { return messages_; }
  uint64_t transfers() const { return transfers_; }
  uint64_t closes() const { return closes_; }

 private:
  bool CreateRoute(Route* route);
  bool CreateSpanning(EndRef* on0, EndRef* on1);
  bool Send(Route* route, int count);
  bool ReadSome(Route* route, size_t max, bool* peer_closed);
  bool Move(EndRef* end);
  bool CloseAndReplace(Route* route);
  bool DrainAndClose(Route* route);
  void Fail(std::string what) { failures_.push_back(std::move(what)); }
  Node& NodeOf(const EndRef& end) { return net_->at(end.node).node(); }

  StressNetwork* const net_;
  const int index_;
  std::mt19937_64 rng_;
  std::vector<Route> routes_;
  EndRef carrier_[2];  // carrier_[i] sits on node i.
  uint32_t next_route_id_ = 1;
  uint64_t messages_ = 0;
  uint64_t transfers_ = 0;
  uint64_t closes_ = 0;
  std::vector<std::string> failures_;
};

bool Worker::CreateSpanning(EndRef* on0, EndRef* on1) {
  Node& n0 = net_->at(0).node();
  Node& n1 = net_->at(1).node();
  on0->node = 0;
  on1->node = 1;
  if (n0.CreateUninitializedPort(&on0->port) != OK ||
      n1.CreateUninitializedPort(&on1->port) != OK ||
      n0.InitializePort(on0->port, net_->at(1).name(), on1->port.name(),
                        net_->at(1).name(), on1->port.name()) != OK ||
      n1.InitializePort(on1->port, net_->at(0).name(), on0->port.name(),
                        net_->at(0).name(), on0->port.name()) != OK) {
    Fail("could not create a spanning pair");
    return false;
  }
  return true;
}

bool Worker::CreateRoute(Route* route) {
  *route = Route();
  route->id = next_route_id_++;
  if (rng_() % 2 == 0)
    return CreateSpanning(&route->writer, &route->reader);
  int node = static_cast<int>(rng_() % 2);
  route->writer.node = node;
  route->reader.node = node;
  if (net_->at(node).node().CreatePortPair(&route->writer.port,
                                           &route->reader.port) != OK) {
    Fail("CreatePortPair failed");
    return false;
  }
  return true;
}

bool Worker::Send(Route* route, int count) {
  for (int i = 0; i < count; ++i) {
    auto message = std::make_unique<UserMessageEvent>(0);
    Payload payload{route->id, 0, route->sent + 1};
    message->message().Assign(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(&payload), sizeof(payload)));
    int rv = NodeOf(route->writer)
                 .SendUserMessage(route->writer.port, std::move(message));
    if (rv != OK) {
      Fail(StrFormat("worker %d route %u: send: %s", index_, route->id,
                     ErrorCodeName(rv)));
      return false;
    }
    ++route->sent;
    ++messages_;
  }
  return true;
}

bool Worker::ReadSome(Route* route, size_t max, bool* peer_closed) {
  *peer_closed = false;
  for (size_t i = 0; i < max; ++i) {
    std::unique_ptr<UserMessageEvent> message;
    int rv =
        NodeOf(route->reader).GetMessage(route->reader.port, &message, nullptr);
    if (rv == ERROR_PORT_PEER_CLOSED) {
      *peer_closed = true;
      return true;
    }
    if (rv != OK) {
      Fail(StrFormat("worker %d route %u: read: %s", index_, route->id,
                     ErrorCodeName(rv)));
      return false;
    }
    if (message == nullptr)
      return true;
    Payload payload;
    if (message->message().size() != sizeof(payload)) {
      Fail("payload of the wrong size");
      return false;
    }
    std::memcpy(&payload, message->message().data(), sizeof(payload));
    if (payload.route != route->id || payload.seq != route->received + 1) {
      Fail(StrFormat(
          "worker %d route %u: read route %u seq %llu, expected seq %llu",
          index_, route->id, payload.route,
          static_cast<unsigned long long>(payload.seq),
          static_cast<unsigned long long>(route->received + 1)));
      return false;
    }
    ++route->received;
  }
  return true;
}

// Sends `end` to the other node through the carrier and picks up the new
// port there; messages keep flowing on its route meanwhile.
bool Worker::Move(EndRef* end) {
  int from = end->node;
  int to = 1 - from;
  auto message = std::make_unique<UserMessageEvent>(1);
  message->ports()[0] = end->port.name();
  message->message().Assign("move");
  int rv = net_->at(from).node().SendUserMessage(carrier_[from].port,
                                                 std::move(message));
  if (rv != OK) {
    Fail(StrFormat("worker %d: move: %s", index_, ErrorCodeName(rv)));
    return false;
  }
  std::unique_ptr<UserMessageEvent> arrived;
  bool ok = testing::WaitFor(
      [&] {
        return net_->at(to).node().GetMessage(carrier_[to].port, &arrived,
                                              nullptr) == OK &&
               arrived != nullptr;
      },
      kWaitTimeout);
  if (!ok || arrived->num_ports() != 1) {
    Fail(StrFormat("worker %d: moved port never arrived", index_));
    return false;
  }
  PortRef moved;
  if (net_->at(to).node().GetPort(arrived->ports()[0], &moved) != OK) {
    Fail("moved port is not on its new node");
    return false;
  }
  end->node = to;
  end->port = moved;
  ++transfers_;
  return true;
}

// Closes the writer, then reads everything it sent and peer_closed.
bool Worker::DrainAndClose(Route* route) {
  if (NodeOf(route->writer).ClosePort(route->writer.port) != OK) {
    Fail("closing a writer failed");
    return false;
  }
  bool peer_closed = false;
  bool ok = testing::WaitFor(
      [&] { return !ReadSome(route, SIZE_MAX, &peer_closed) || peer_closed; },
      kWaitTimeout);
  if (!ok || !failures_.empty())
    return false;
  if (route->received != route->sent) {
    Fail(StrFormat("worker %d route %u: peer_closed after %llu of %llu", index_,
                   route->id, static_cast<unsigned long long>(route->received),
                   static_cast<unsigned long long>(route->sent)));
    return false;
  }
  if (NodeOf(route->reader).ClosePort(route->reader.port) != OK) {
    Fail("closing a reader failed");
    return false;
  }
  ++closes_;
  return true;
}

bool Worker::CloseAndReplace(Route* route) {
  return DrainAndClose(route) && CreateRoute(route);
}

std::vector<std::string> Worker::Run(const std::atomic<bool>& stop,
                                     uint64_t max_messages) {
  if (!CreateSpanning(&carrier_[0], &carrier_[1]))
    return failures_;
  routes_.resize(3);
  for (Route& r : routes_) {
    if (!CreateRoute(&r))
      return failures_;
  }
  while (!stop.load(std::memory_order_relaxed) && messages_ < max_messages &&
         failures_.empty()) {
    Route& route = routes_[rng_() % routes_.size()];
    uint64_t dice = rng_() % 100;
    bool peer_closed = false;
    if (dice < 45) {
      Send(&route, 1 + static_cast<int>(rng_() % 4));
    } else if (dice < 85) {
      ReadSome(&route, 1 + rng_() % 8, &peer_closed);
      if (peer_closed)
        Fail(StrFormat("worker %d route %u: peer_closed on a live route",
                       index_, route.id));
    } else if (dice < 95) {
      Move(rng_() % 2 == 0 ? &route.writer : &route.reader);
    } else {
      CloseAndReplace(&route);
    }
  }
  for (Route& r : routes_) {
    if (failures_.empty())
      DrainAndClose(&r);
  }
  for (EndRef& c : carrier_)
    NodeOf(c).ClosePort(c.port);
  return failures_;
}

TEST(PortsStressThreadsTest, SendReadMoveAndCloseFromManyThreads) {
  constexpr int kWorkers = 4;
  StressNetwork net;
  std::atomic<bool> stop{false};
  uint64_t seed = testing::TestSeed();
  SCOPED_TRACE(testing::SeedTrace(seed));
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::vector<std::string>> failures(kWorkers);
  for (int i = 0; i < kWorkers; ++i)
    workers.push_back(std::make_unique<Worker>(&net, i, seed + i));
  uint64_t budget = testing::Scaled(200000, 20000);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    threads.emplace_back([&, i] {
      failures[i] = workers[i]->Run(stop, budget / kWorkers);
      done.fetch_add(1);
    });
  }
  // The run ends at its message budget or its time bound, whichever first.
  auto run_for = std::chrono::milliseconds(testing::Scaled(3000, 1000));
  testing::WaitFor([&] { return done.load() == kWorkers; }, run_for);
  stop.store(true);
  for (auto& t : threads)
    t.join();

  uint64_t messages = 0, transfers = 0, closes = 0;
  for (int i = 0; i < kWorkers; ++i) {
    for (const std::string& f : failures[i])
      ADD_FAILURE() << f;
    messages += workers[i]->messages();
    transfers += workers[i]->transfers();
    closes += workers[i]->closes();
  }
  printf("%llu messages, %llu ports moved, %llu routes closed\n",
         static_cast<unsigned long long>(messages),
         static_cast<unsigned long long>(transfers),
         static_cast<unsigned long long>(closes));
  EXPECT_GT(messages, 0u);
  EXPECT_GT(transfers, 0u);

  // Every port is closed; wait for the closures to settle.
  auto clean = [&] {
    return net.Idle() && net.at(0).node().CanShutdownCleanly() &&
           net.at(1).node().CanShutdownCleanly() && net.Idle();
  };
  EXPECT_TRUE(testing::WaitFor(clean, kWaitTimeout))
      << "ports left: " << net.at(0).node().GetStats().ports << " and "
      << net.at(1).node().GetStats().ports;
  EXPECT_EQ(net.violations.load(), 0);
  EXPECT_EQ(net.decode_failures.load(), 0);
}

// One thread writes and another reads each route at the same time (the
// port's lock is contended by two users plus the delivery threads); the
// writer closes when done and the reader must see every message, in order,
// then peer_closed.
TEST(PortsStressThreadsTest, WriterAndReaderOfOneRouteOnDifferentThreads) {
  constexpr int kRoutes = 3;
  StressNetwork net;
  uint64_t per_route = testing::Scaled(30000, 3000);
  std::vector<std::thread> threads;
  std::vector<std::string> failures[2 * kRoutes];
  for (int r = 0; r < kRoutes; ++r) {
    // Route 0 is local to node 0; the others span the nodes both ways.
    EndRef writer, reader;
    writer.node = r == 0 ? 0 : r % 2;
    reader.node = r == 0 ? 0 : 1 - writer.node;
    Node& wn = net.at(writer.node).node();
    Node& rn = net.at(reader.node).node();
    if (r == 0) {
      ASSERT_EQ(wn.CreatePortPair(&writer.port, &reader.port), OK);
    } else {
      ASSERT_EQ(wn.CreateUninitializedPort(&writer.port), OK);
      ASSERT_EQ(rn.CreateUninitializedPort(&reader.port), OK);
      ASSERT_EQ(wn.InitializePort(
                    writer.port, net.at(reader.node).name(), reader.port.name(),
                    net.at(reader.node).name(), reader.port.name()),
                OK);
      ASSERT_EQ(rn.InitializePort(
                    reader.port, net.at(writer.node).name(), writer.port.name(),
                    net.at(writer.node).name(), writer.port.name()),
                OK);
    }
    threads.emplace_back([&net, writer, per_route, r, &failures] {
      Node& node = net.at(writer.node).node();
      for (uint64_t seq = 1; seq <= per_route; ++seq) {
        auto message = std::make_unique<UserMessageEvent>(0);
        Payload payload{static_cast<uint32_t>(r), 0, seq};
        message->message().Assign(std::span<const uint8_t>(
            reinterpret_cast<const uint8_t*>(&payload), sizeof(payload)));
        int rv = node.SendUserMessage(writer.port, std::move(message));
        if (rv != OK) {
          failures[2 * r].push_back(
              StrFormat("route %d: send: %s", r, ErrorCodeName(rv)));
          break;
        }
      }
      node.ClosePort(writer.port);
    });
    threads.emplace_back([&net, reader, per_route, r, &failures] {
      Node& node = net.at(reader.node).node();
      uint64_t expected = 1;
      Deadline deadline = Deadline::In(kWaitTimeout);
      for (;;) {
        std::unique_ptr<UserMessageEvent> message;
        int rv = node.GetMessage(reader.port, &message, nullptr);
        if (rv == ERROR_PORT_PEER_CLOSED)
          break;
        if (rv != OK || deadline.Expired()) {
          failures[2 * r + 1].push_back(
              StrFormat("route %d: read: %s after %llu", r, ErrorCodeName(rv),
                        static_cast<unsigned long long>(expected - 1)));
          break;
        }
        if (message == nullptr) {
          std::this_thread::yield();
          continue;
        }
        Payload payload{};
        if (message->message().size() == sizeof(payload))
          std::memcpy(&payload, message->message().data(), sizeof(payload));
        if (payload.seq != expected) {
          failures[2 * r + 1].push_back(
              StrFormat("route %d: seq %llu, expected %llu", r,
                        static_cast<unsigned long long>(payload.seq),
                        static_cast<unsigned long long>(expected)));
          break;
        }
        ++expected;
      }
      if (expected - 1 != per_route) {
        failures[2 * r + 1].push_back(
            StrFormat("route %d: peer_closed after %llu of %llu", r,
                      static_cast<unsigned long long>(expected - 1),
                      static_cast<unsigned long long>(per_route)));
      }
      node.ClosePort(reader.port);
    });
  }
  for (auto& t : threads)
    t.join();
  for (const auto& list : failures) {
    for (const std::string& f : list)
      ADD_FAILURE() << f;
  }
  auto clean = [&] {
    return net.Idle() && net.at(0).node().CanShutdownCleanly() &&
           net.at(1).node().CanShutdownCleanly() && net.Idle();
  };
  EXPECT_TRUE(testing::WaitFor(clean, kWaitTimeout));
  EXPECT_EQ(net.violations.load(), 0);
}

}  // namespace
}  // namespace shmports::ports
