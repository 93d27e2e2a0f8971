// Micro-benchmarks of core/ports:
//  - LocalPairSendRead: 64 B SendUserMessage + GetMessage on a local pair;
//  - MutexDequeBaseline: std::mutex + std::deque push/pop of the same 64 B;
//  - TwoNodesDirectDelegate: send on node A, serialise, deserialise,
//    AcceptEvent on node B, read there;
//  - PortTransferAcrossThreeNodes: a port sent A → B → C until every proxy is
//    gone;
//  - LocalPairBurst: 4096 sends queued on a local pair, then 4096 reads;
//  - QueueBurstInOrder / QueueBurstFewOutOfOrder: 4096 events into one
//    MessageQueue and out again, all in order or with 16 adjacent pairs
//    swapped;
//  - DequeBurstBaseline: the same 4096 events through std::mutex +
//    std::deque, the baseline of the three burst cases.
// Subject and baseline are interleaved and repeated; the closing lines print
// the ratio subject / baseline (min/median/max over the repetitions; for the
// local pair target ≤ 6×, stretch ≤ 3×).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ports/message_queue.h"
#include "core/ports/node.h"
#include "core/ports/node_delegate.h"

namespace shmports::ports {
namespace {

using Payload = std::array<uint8_t, 64>;

class NullDelegate : public NodeDelegate {
 public:
  void ForwardEvent(const NodeName&, ScopedEvent) override {}
  void BroadcastEvent(ScopedEvent) override {}
  void PortStatusChanged(const PortRef&) override {}
};

// Delivers between Nodes in one thread: every event is serialised into a
// reused buffer, decoded, and queued; Pump() accepts them in FIFO order.
class DirectRouter : public NodeDelegate {
 public:
  void Add(Node* node) { nodes_[node->name()] = node; }

  void ForwardEvent(const NodeName& node, ScopedEvent event) override {
    buffer_.resize(event->GetSerializedSize());
    (void)event->Serialize(buffer_);
    Result<ScopedEvent> decoded = Event::Deserialize(buffer_);
    if (!decoded.ok())
      std::abort();
    queue_.emplace_back(node, std::move(decoded).value());
  }
  void BroadcastEvent(ScopedEvent event) override {
    for (auto& [name, node] : nodes_) {
      queue_.emplace_back(name, event->CloneForBroadcast());
    }
  }
  void PortStatusChanged(const PortRef&) override {}

  // The sender of every event is inferred from where it is going: in these
  // benchmarks each route has one other end. Good enough for a bench; the
  // tests' harness tracks the real sender.
  void Pump(const NodeName& default_from) {
    while (!queue_.empty()) {
      auto [to, event] = std::move(queue_.front());
      queue_.pop_front();
      auto it = nodes_.find(to);
      if (it == nodes_.end() || !event)
        continue;
      NodeName from = FromFor(to, default_from);
      AcceptResult r = it->second->AcceptEvent(from, std::move(event));
      if (r.violation())
        std::abort();
    }
  }

  std::map<NodeName, NodeName> peer_of;

 private:
  NodeName FromFor(const NodeName& to, const NodeName& fallback) {
    auto it = peer_of.find(to);
    return it == peer_of.end() ? fallback : it->second;
  }

  std::map<NodeName, Node*> nodes_;
  std::deque<std::pair<NodeName, ScopedEvent>> queue_;
  std::vector<uint8_t> buffer_;
};

void LocalPairSendRead(benchmark::State& state) {
  NullDelegate delegate;
  Node node(NodeName(1, 1), &delegate);
  PortRef a, b;
  node.CreatePortPair(&a, &b);
  Payload payload;
  payload.fill(0x5A);
  for (auto _ : state) {
    auto message = std::make_unique<UserMessageEvent>(0);
    message->message().Assign(payload);
    node.SendUserMessage(a, std::move(message));
    std::unique_ptr<UserMessageEvent> received;
    node.GetMessage(b, &received, nullptr);
    benchmark::DoNotOptimize(received->message().data());
  }
  node.ClosePort(a);
  node.ClosePort(b);
}

void MutexDequeBaseline(benchmark::State& state) {
  std::mutex mu;
  std::deque<Payload> queue;
  Payload payload;
  payload.fill(0x5A);
  for (auto _ : state) {
    {
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(payload);
    }
    Payload out;
    {
      std::lock_guard<std::mutex> lock(mu);
      out = queue.front();
      queue.pop_front();
    }
    benchmark::DoNotOptimize(out.data());
  }
}

// Repetitions are interleaved at random (main() turns it on), so a
// placement change of the VM's vCPUs hits both.
BENCHMARK(LocalPairSendRead)->Repetitions(5);
BENCHMARK(MutexDequeBaseline)->Repetitions(5);

constexpr int64_t kBurst = 4096;

// The burst case: the reader falls behind and thousands of messages queue.
void LocalPairBurst(benchmark::State& state) {
  NullDelegate delegate;
  Node node(NodeName(1, 1), &delegate);
  PortRef a, b;
  node.CreatePortPair(&a, &b);
  Payload payload;
  payload.fill(0x5A);
  const int64_t n = state.range(0);
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) {
      auto message = std::make_unique<UserMessageEvent>(0);
      message->message().Assign(payload);
      node.SendUserMessage(a, std::move(message));
    }
    for (int64_t i = 0; i < n; ++i) {
      std::unique_ptr<UserMessageEvent> received;
      node.GetMessage(b, &received, nullptr);
      benchmark::DoNotOptimize(received->message().data());
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
  node.ClosePort(a);
  node.ClosePort(b);
}

// Events made once and reused, so the queue is what is measured. Each is a
// separate heap block, as received events are.
std::vector<std::unique_ptr<UserMessageEvent>> MakeEvents(int64_t n) {
  Payload payload;
  payload.fill(0x5A);
  std::vector<std::unique_ptr<UserMessageEvent>> events;
  for (int64_t i = 0; i < n; ++i) {
    events.push_back(std::make_unique<UserMessageEvent>(0));
    events.back()->message().Assign(payload);
  }
  return events;
}

// Accepts `events` numbered from the queue's next number in the order
// `order` gives (a permutation of 0..n-1), then reads them all back into
// `events`.
void QueueBurst(benchmark::State& state, const std::vector<int64_t>& order) {
  const int64_t n = static_cast<int64_t>(order.size());
  std::vector<std::unique_ptr<UserMessageEvent>> events = MakeEvents(n);
  MessageQueue queue;
  for (auto _ : state) {
    uint64_t base = queue.next_sequence_num();
    for (int64_t i = 0; i < n; ++i) {
      events[i]->set_sequence_num(base + static_cast<uint64_t>(order[i]));
      bool has_next = false;
      queue.AcceptMessage(std::move(events[i]), &has_next);
      benchmark::DoNotOptimize(has_next);
    }
    for (int64_t i = 0; i < n; ++i) {
      queue.GetNextMessage(&events[i], nullptr);
      if (!events[i]) {
        state.SkipWithError("queue released fewer messages than it took");
        return;
      }
      queue.MessageProcessed();
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void QueueBurstInOrder(benchmark::State& state) {
  std::vector<int64_t> order(static_cast<size_t>(state.range(0)));
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int64_t>(i);
  QueueBurst(state, order);
}

// 16 adjacent pairs swapped, spread over the burst: the rare reorder a
// transferred port's racing routes produce.
void QueueBurstFewOutOfOrder(benchmark::State& state) {
  std::vector<int64_t> order(static_cast<size_t>(state.range(0)));
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int64_t>(i);
  size_t stride = std::max<size_t>(order.size() / 16, 2);
  for (size_t i = stride / 2; i + 1 < order.size(); i += stride)
    std::swap(order[i], order[i + 1]);
  QueueBurst(state, order);
}

void DequeBurstBaseline(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<std::unique_ptr<UserMessageEvent>> events = MakeEvents(n);
  std::mutex mu;
  std::deque<std::unique_ptr<UserMessageEvent>> queue;
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) {
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(std::move(events[i]));
    }
    for (int64_t i = 0; i < n; ++i) {
      std::lock_guard<std::mutex> lock(mu);
      events[i] = std::move(queue.front());
      queue.pop_front();
    }
    benchmark::DoNotOptimize(events.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(LocalPairBurst)->Arg(kBurst)->Repetitions(5);
BENCHMARK(QueueBurstInOrder)->Arg(kBurst)->Repetitions(5);
BENCHMARK(QueueBurstFewOutOfOrder)->Arg(kBurst)->Repetitions(5);
BENCHMARK(DequeBurstBaseline)->Arg(kBurst)->Repetitions(5);

void TwoNodesDirectDelegate(benchmark::State& state) {
  DirectRouter router;
  NodeName name_a(1, 1), name_b(2, 1);
  Node node_a(name_a, &router);
  Node node_b(name_b, &router);
  router.Add(&node_a);
  router.Add(&node_b);
  router.peer_of[name_a] = name_b;
  router.peer_of[name_b] = name_a;
  PortRef a, b;
  node_a.CreateUninitializedPort(&a);
  node_b.CreateUninitializedPort(&b);
  node_a.InitializePort(a, name_b, b.name(), name_b, b.name());
  node_b.InitializePort(b, name_a, a.name(), name_a, a.name());
  Payload payload;
  payload.fill(0x5A);
  for (auto _ : state) {
    auto message = std::make_unique<UserMessageEvent>(0);
    message->message().Assign(payload);
    node_a.SendUserMessage(a, std::move(message));
    router.Pump(name_a);
    std::unique_ptr<UserMessageEvent> received;
    node_b.GetMessage(b, &received, nullptr);
    benchmark::DoNotOptimize(received->message().data());
  }
  node_a.ClosePort(a);
  node_b.ClosePort(b);
  router.Pump(name_a);
}
BENCHMARK(TwoNodesDirectDelegate);

// Three nodes on a line A–B–C with one pair per link. Each iteration creates
// a pair on A, sends one end A → B → C, and pumps until every proxy is gone.
class ThreeNodeRouter : public NodeDelegate {
 public:
  explicit ThreeNodeRouter(const NodeName& self) : self_(self) {}
  void ForwardEvent(const NodeName& node, ScopedEvent event) override {
    buffer.resize(event->GetSerializedSize());
    (void)event->Serialize(buffer);
    Result<ScopedEvent> decoded = Event::Deserialize(buffer);
    if (!decoded.ok())
      std::abort();
    queue->emplace_back(Hop{self_, node, std::move(decoded).value()});
  }
  void BroadcastEvent(ScopedEvent) override {}
  void PortStatusChanged(const PortRef&) override {}

  struct Hop {
    NodeName from;
    NodeName to;
    ScopedEvent event;
  };
  std::deque<Hop>* queue = nullptr;
  std::vector<uint8_t> buffer;

 private:
  NodeName self_;
};

void PortTransferAcrossThreeNodes(benchmark::State& state) {
  const NodeName names[3] = {NodeName(1, 1), NodeName(2, 1), NodeName(3, 1)};
  std::deque<ThreeNodeRouter::Hop> queue;
  std::vector<std::unique_ptr<ThreeNodeRouter>> routers;
  std::vector<std::unique_ptr<Node>> nodes;
  for (const auto& name : names) {
    routers.push_back(std::make_unique<ThreeNodeRouter>(name));
    routers.back()->queue = &queue;
    nodes.push_back(std::make_unique<Node>(name, routers.back().get()));
  }
  auto pump = [&] {
    while (!queue.empty()) {
      ThreeNodeRouter::Hop hop = std::move(queue.front());
      queue.pop_front();
      for (size_t i = 0; i < 3; ++i) {
        if (names[i] == hop.to) {
          nodes[i]->AcceptEvent(hop.from, std::move(hop.event));
        }
      }
    }
  };
  auto span = [&](size_t i, size_t j, PortRef* pi, PortRef* pj) {
    nodes[i]->CreateUninitializedPort(pi);
    nodes[j]->CreateUninitializedPort(pj);
    nodes[i]->InitializePort(*pi, names[j], pj->name(), names[j], pj->name());
    nodes[j]->InitializePort(*pj, names[i], pi->name(), names[i], pi->name());
  };
  PortRef ab_a, ab_b, bc_b, bc_c;
  span(0, 1, &ab_a, &ab_b);
  span(1, 2, &bc_b, &bc_c);
  auto forward = [&](Node* from_node, const PortRef& via, const PortName& port,
                     Node* to_node, const PortRef& read_on) {
    auto message = std::make_unique<UserMessageEvent>(1);
    message->ports()[0] = port;
    from_node->SendUserMessage(via, std::move(message));
    pump();
    std::unique_ptr<UserMessageEvent> received;
    to_node->GetMessage(read_on, &received, nullptr);
    return received ? received->ports()[0] : kInvalidPortName;
  };
  for (auto _ : state) {
    PortRef p, q;
    nodes[0]->CreatePortPair(&p, &q);
    PortName on_b =
        forward(nodes[0].get(), ab_a, q.name(), nodes[1].get(), ab_b);
    PortName on_c = forward(nodes[1].get(), bc_b, on_b, nodes[2].get(), bc_c);
    pump();
    if (nodes[0]->GetStats().proxies + nodes[1]->GetStats().proxies != 0) {
      state.SkipWithError("proxies left after the transfer");
      break;
    }
    PortRef q_on_c;
    nodes[2]->GetPort(on_c, &q_on_c);
    nodes[0]->ClosePort(p);
    nodes[2]->ClosePort(q_on_c);
    pump();
  }
  nodes[0]->ClosePort(ab_a);
  nodes[1]->ClosePort(ab_b);
  nodes[1]->ClosePort(bc_b);
  nodes[2]->ClosePort(bc_c);
  pump();
}
BENCHMARK(PortTransferAcrossThreeNodes);

// Keeps each repetition's time per iteration so main() can print ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.iterations == 0)
        continue;
      times[run.run_name.function_name].push_back(run.GetAdjustedRealTime());
      cpu_times[run.run_name.function_name].push_back(run.GetAdjustedCPUTime());
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, std::vector<double>> times;
  std::map<std::string, std::vector<double>> cpu_times;
};

// Prints min/median/max of subject/baseline over paired repetitions.
void PrintRatio(const char* label,
                const char* what,
                const std::vector<double>& subject,
                const std::vector<double>& baseline,
                const char* targets) {
  size_t n = std::min(subject.size(), baseline.size());
  if (n == 0)
    return;
  std::vector<double> ratios;
  for (size_t i = 0; i < n; ++i)
    ratios.push_back(subject[i] / baseline[i]);
  std::sort(ratios.begin(), ratios.end());
  std::printf(
      "ratio %s (%s): min %.2fx  median %.2fx  max %.2fx  over %zu "
      "runs%s\n",
      label, what, ratios.front(), ratios[n / 2], ratios.back(), n, targets);
}

}  // namespace
}  // namespace shmports::ports

int main(int argc, char** argv) {
  // Google Benchmark runs all repetitions of one benchmark before the next
  // unless told to interleave them; on a shared VM the subject and its
  // baseline must see the same placements, so interleaving is the default
  // here (a --benchmark_enable_random_interleaving flag given still wins).
  std::vector<char*> args(argv, argv + argc);
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  bool given = false;
  for (int i = 1; i < argc; ++i) {
    given = given || std::string_view(argv[i]).starts_with(
                         "--benchmark_enable_random_interleaving");
  }
  if (!given)
    args.insert(args.begin() + 1, interleave.data());
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  argc = args_count;
  argv = args.data();
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  shmports::ports::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  // Real time is what the targets name; on a loaded VM CPU time is steadier,
  // so both are printed.
  using shmports::ports::PrintRatio;
  auto& real = reporter.times;
  auto& cpu = reporter.cpu_times;
  const char* kPair = "local-pair send+read / mutex+deque push+pop (64 B)";
  const char* kPairTargets = " (target <= 6x, stretch <= 3x)";
  PrintRatio(kPair, "real time", real["LocalPairSendRead"],
             real["MutexDequeBaseline"], kPairTargets);
  PrintRatio(kPair, "CPU time", cpu["LocalPairSendRead"],
             cpu["MutexDequeBaseline"], kPairTargets);
  const char* kBaseline = "DequeBurstBaseline";
  for (const char* subject :
       {"LocalPairBurst", "QueueBurstInOrder", "QueueBurstFewOutOfOrder"}) {
    std::string label =
        std::string(subject) + " / " + kBaseline + " (4096 queued, 64 B)";
    PrintRatio(label.c_str(), "real time", real[subject], real[kBaseline], "");
    PrintRatio(label.c_str(), "CPU time", cpu[subject], cpu[kBaseline], "");
  }
  benchmark::Shutdown();
  return 0;
}
