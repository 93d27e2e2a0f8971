#include "tools/demo.h"

#include <cstdio>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/random.h"
#include "core/base/status.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"
#include "core/ports/event.h"
#include "core/ports/node.h"

namespace shmports::tools {
namespace {

using ports::Node;
using ports::NodeName;
using ports::PortRef;
using ports::UserMessageEvent;

struct Step {
  std::string title;
  std::string detail;
};

// Two nodes in this process joined the way a transport joins them: every
// event is serialised, queued with its sender, decoded and accepted by its
// destination.
class DemoNetwork {
 public:
  DemoNetwork()
      : link_a_(this, NodeName(RandomName128().v1, 1)),
        link_b_(this, NodeName(RandomName128().v1, 2)),
        a_(link_a_.self, &link_a_),
        b_(link_b_.self, &link_b_) {}

  Node& a() { return a_; }
  Node& b() { return b_; }

  // Delivers until nothing is in flight; returns the events delivered.
  size_t Pump() {
    size_t delivered = 0;
    while (!queue_.empty()) {
      Envelope e = std::move(queue_.front());
      queue_.pop_front();
      auto event = ports::Event::Deserialize(e.bytes);
      if (!event.ok())
        continue;
      Node& target = e.to == a_.name() ? a_ : b_;
      target.AcceptEvent(e.from, std::move(*event));
      ++delivered;
    }
    return delivered;
  }

 private:
  struct Envelope {
    NodeName from;
    NodeName to;
    std::vector<uint8_t> bytes;
  };

  // The delegate of one node: knows who is sending.
  struct Link : ports::NodeDelegate {
    Link(DemoNetwork* net, NodeName name) : network(net), self(name) {}
    void ForwardEvent(const NodeName& node, ports::ScopedEvent event) override {
      network->queue_.push_back({self, node, event->SerializeToVector()});
    }
    void BroadcastEvent(ports::ScopedEvent event) override {
      std::vector<uint8_t> bytes = event->SerializeToVector();
      for (const Link* l : {&network->link_a_, &network->link_b_}) {
        if (l->self != self)
          network->queue_.push_back({self, l->self, bytes});
      }
    }
    void PortStatusChanged(const PortRef&) override {}

    DemoNetwork* network;
    NodeName self;
  };

  Link link_a_;
  Link link_b_;
  Node a_;
  Node b_;
  std::deque<Envelope> queue_;
};

std::unique_ptr<UserMessageEvent> Text(const std::string& text) {
  auto m = std::make_unique<UserMessageEvent>();
  m->message().Assign(text);
  return m;
}

std::string Read(Node& node, const PortRef& port) {
  std::unique_ptr<UserMessageEvent> m;
  int rv = node.GetMessage(port, &m, nullptr);
  if (rv != ports::OK)
    return ports::ErrorCodeName(rv);
  return m ? "\"" + std::string(m->message().AsStringView()) + "\"" : "(none)";
}

std::string StatsText(Node& node) {
  ports::NodeStats s = node.GetStats();
  return StrFormat("%zu ports (%zu receiving, %zu proxies, %zu zombies)",
                   s.ports, s.receiving, s.proxies, s.zombies);
}

// Returns whether every step showed what it should.
bool RunPortsSteps(std::vector<Step>* steps) {
  DemoNetwork net;
  Node& a = net.a();
  Node& b = net.b();
  steps->push_back({"two nodes", "A = " + a.name().ToString() +
                                     ", B = " + b.name().ToString()});

  // A route spanning the nodes: each side initialises its port with the
  // other as peer, as a handshake does with its bootstrap ports.
  PortRef a0, b0;
  a.CreateUninitializedPort(&a0);
  b.CreateUninitializedPort(&b0);
  a.InitializePort(a0, b.name(), b0.name(), b.name(), b0.name());
  b.InitializePort(b0, a.name(), a0.name(), a.name(), a0.name());
  steps->push_back({"route A<->B", "port " + a0.name().ToString() + " on A, " +
                                       b0.name().ToString() + " on B"});

  a.SendUserMessage(a0, Text("hello from A"));
  size_t events = net.Pump();
  steps->push_back(
      {"message A->B",
       StrFormat("%zu event(s) carried; B reads ", events) + Read(b, b0)});

  // Send one end of a fresh local pair from A to B inside a message.
  PortRef x, y;
  a.CreatePortPair(&x, &y);
  auto carrier = Text("here is a port");
  carrier->ReservePorts(1);
  carrier->ports()[0] = y.name();
  a.SendUserMessage(a0, std::move(carrier));
  std::unique_ptr<UserMessageEvent> got;
  net.Pump();
  b.GetMessage(b0, &got, nullptr);
  PortRef y_on_b;
  b.GetPort(got->ports()[0], &y_on_b);
  steps->push_back({"port in a message", "B received port " +
                                             y_on_b.name().ToString() +
                                             "; A now has " + StatsText(a)});

  a.SendUserMessage(x, Text("through the moved port"));
  events = net.Pump();
  steps->push_back(
      {"proxy removed", StrFormat("%zu events later B reads ", events) +
                            Read(b, y_on_b) + "; A has " + StatsText(a)});

  a.ClosePort(x);
  net.Pump();
  ports::PortStatus status;
  b.GetStatus(y_on_b, &status);
  steps->push_back(
      {"peer closed", std::string("A closed its end; B sees "
                                  "peer_closed = ") +
                          (status.peer_closed ? "true" : "false")});

  a.LostConnectionToNode(b.name());
  b.LostConnectionToNode(a.name());
  b.GetStatus(b0, &status);
  steps->push_back({"lost node", std::string("B loses A: its route port sees "
                                             "peer_closed = ") +
                                     (status.peer_closed ? "true" : "false")});
  b.ClosePort(y_on_b);
  a.ClosePort(a0);
  b.ClosePort(b0);
  net.Pump();
  bool ok = status.peer_closed && a.GetStats().proxies == 0 &&
            a.CanShutdownCleanly() && b.CanShutdownCleanly();
  steps->push_back({"clean shutdown",
                    std::string("A: ") +
                        (a.CanShutdownCleanly() ? "yes" : "no") +
                        ", B: " + (b.CanShutdownCleanly() ? "yes" : "no")});
  return ok;
}

}  // namespace

int RunDemo(bool json) {
  std::vector<Step> steps;
  bool ok = RunPortsSteps(&steps);

  Status s = CorruptError("frame length 70000 exceeds the largest frame 65536");
  s.AddContext("drain ring from node 3F2A");
  steps.push_back({"errors carry context", s.ToString()});

  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Step& step : steps) {
      out.push_back({{"step", step.title}, {"detail", step.detail}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return ok ? 0 : 1;
  }
  std::printf("shmports demo: the ports protocol between two nodes\n");
  for (size_t i = 0; i < steps.size(); ++i) {
    std::printf("  %2zu. %-22s %s\n", i + 1, steps[i].title.c_str(),
                steps[i].detail.c_str());
  }
  if (!ok)
    std::printf("demo: a step did not show what it should\n");
  return ok ? 0 : 1;
}

}  // namespace shmports::tools
