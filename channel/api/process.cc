// The public Process (include/shmports/process.h) and ProcessCore.
#include <pthread.h>
#include <shmports/process.h>

#include <future>
#include <string>
#include <utility>
#include <vector>

#include "channel/api/internal.h"
#include "core/base/log.h"
#include "core/ports/error.h"
#include "core/ports/node.h"

namespace shmports {
namespace api_internal {
namespace {

std::atomic<uint64_t> g_fork_generation{0};

void OnForkChild() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

void RegisterForkHandler() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, OnForkChild); });
}

}  // namespace

uint64_t ForkGeneration() {
  return g_fork_generation.load(std::memory_order_relaxed);
}

CoreUse::CoreUse(ProcessCore* core) : core_(core) {
  if (core_ == nullptr)
    return;
  if (core_->fork_generation != ForkGeneration()) {
    // The parent's io thread does not exist here; touch nothing.
    forked_ = true;
    core_ = nullptr;
    return;
  }
  core_->in_flight.fetch_add(1);  // seq_cst: see internal.h.
  ok_ = core_->alive.load();
}

CoreUse::~CoreUse() {
  if (core_ != nullptr)
    core_->in_flight.fetch_sub(1);
}

Status CoreUse::status() const {
  if (ok_)
    return Status::Ok();
  if (forked_) {
    return FailedPreconditionError(
        "this Process belongs to the parent of a fork(); create a new "
        "Process in the child");
  }
  if (core_ == nullptr)
    return FailedPreconditionError("invalid pipe");
  return FailedPreconditionError("the Process of this pipe is destroyed");
}

Result<std::shared_ptr<ProcessCore>> ProcessCore::Wrap(
    std::unique_ptr<channel::Process> process) {
  RegisterForkHandler();
  auto core = std::make_shared<ProcessCore>();
  core->fork_generation = ForkGeneration();
  std::promise<std::thread::id> id;
  std::future<std::thread::id> id_future = id.get_future();
  process->Post([&id] { id.set_value(std::this_thread::get_id()); });
  if (id_future.wait_for(std::chrono::seconds(10)) !=
      std::future_status::ready) {
    return InternalError("the io thread did not start within 10 s");
  }
  core->io_thread_id = id_future.get();
  ProcessCore* raw = core.get();
  // The observer lives in the Router, which the core outlives.
  process->SetPortStatusObserver(
      [raw](const ports::PortRef& port) { raw->OnPortStatusChanged(port); });
  core->process = std::move(process);
  return core;
}

void ProcessCore::PostToIoThread(std::function<void()> task) {
  process->Post(std::move(task));
}

void ProcessCore::Register(PipeState* state, std::weak_ptr<PipeState> weak) {
  MutexLock lock(&pipes_mu);
  pipes.emplace(state, std::move(weak));
}

void ProcessCore::Unregister(PipeState* state) {
  MutexLock lock(&pipes_mu);
  pipes.erase(state);
}

Pipe ProcessCore::WrapPort(const std::shared_ptr<ProcessCore>& self,
                           const ports::PortRef& port) {
  auto state = std::make_shared<PipeState>(self, port);
  {
    // Conservative until told otherwise (CreatePipe): a port that arrived
    // inside a message does not know what its previous holder left unread
    // (pipe_send.cc).
    MutexLock lock(&state->mu);
    state->backlog_unknown = true;
  }
  Register(state.get(), state);
  (void)process->node().SetUserData(port, std::make_shared<PortLink>(state));
  return PipeState::MakePipe(std::move(state));
}

Pipe WrapNewPort(const std::shared_ptr<ProcessCore>& core,
                 const ports::PortRef& port) {
  Pipe pipe = core->WrapPort(core, port);
  PipeState* state = PipeState::StateOf(pipe).get();
  MutexLock lock(&state->mu);
  state->backlog_unknown = false;
  return pipe;
}

channel::ProcessOptions ChannelOptions(const ProcessOptions& options) {
  channel::ProcessOptions out;
  out.connection.receive_caps.max_queued_messages_per_pipe =
      options.max_queued_messages_per_pipe;
  out.connection.receive_caps.max_queued_bytes_per_pipe =
      options.max_queued_bytes_per_pipe;
  return out;
}

void ProcessCore::OnPortStatusChanged(const ports::PortRef& port) {
  std::shared_ptr<ports::UserData> data;
  if (process->node().GetUserData(port, &data) != ports::OK || !data)
    return;
  auto* link = static_cast<PortLink*>(data.get());
  if (std::shared_ptr<PipeState> state = link->state.lock())
    state->Notify();
}

void ProcessCore::Shutdown() {
  alive.store(false);  // seq_cst: see internal.h.
  while (in_flight.load() != 0)
    std::this_thread::yield();
  std::vector<std::shared_ptr<PipeState>> open;
  {
    MutexLock lock(&pipes_mu);
    for (auto& [raw, weak] : pipes) {
      if (auto state = weak.lock())
        open.push_back(std::move(state));
    }
    pipes.clear();
  }
  for (const auto& state : open) {
    state->Close(/*close_port=*/false);
    (void)process->node().ClosePort(state->port);
  }
  // The closures travel ahead of the goodbye; what a peer cannot take
  // within the deadline is lost with the link, as for a death.
  Status flushed = process->Shutdown();
  if (!flushed.ok())
    SHMPORTS_LOG(kWarning, "process shutdown: %s", flushed.ToString().c_str());
  // Not reset(): that nulls the pointer before the destructor joins the io
  // thread, whose last PortStatusChanged (OnPortStatusChanged) still reads
  // it. Nothing else reads it once `alive` is false.
  delete process.get();
  (void)process.release();
}

}  // namespace api_internal

Process::Process(std::shared_ptr<api_internal::ProcessCore> core)
    : core_(std::move(core)) {}

Result<std::unique_ptr<Process>> Process::Create(
    const ProcessOptions& options) {
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<channel::Process> process,
      channel::Process::Create(api_internal::ChannelOptions(options)));
  SHMPORTS_ASSIGN_OR_RETURN(
      std::shared_ptr<api_internal::ProcessCore> core,
      api_internal::ProcessCore::Wrap(std::move(process)));
  return std::make_unique<Process>(std::move(core));
}

Process::~Process() {
  if (!core_)
    return;
  if (core_->fork_generation != api_internal::ForkGeneration()) {
    // A forked child's copy: its io thread does not exist here, so joining
    // it or touching the node would hang or crash. Leak it deliberately.
    (void)core_->process.release();
    return;
  }
  if (core_->IsIoThread()) {
    // From one of our own callbacks: the io thread cannot join itself.
    std::thread([core = std::move(core_)] { core->Shutdown(); }).detach();
    return;
  }
  core_->Shutdown();
}

Result<std::pair<Pipe, Pipe>> Process::CreatePipe() {
  api_internal::CoreUse use(core_.get());
  if (!use.ok())
    return use.status().WithContext("create pipe");
  ports::PortRef a, b;
  int rv = core_->process->node().CreatePortPair(&a, &b);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "create pipe");
  return std::make_pair(api_internal::WrapNewPort(core_, a),
                        api_internal::WrapNewPort(core_, b));
}

Result<ProcessStats> Process::GetStats() {
  api_internal::CoreUse use(core_.get());
  if (!use.ok())
    return use.status().WithContext("process stats");
  channel::ProcessStats s = core_->process->GetStats();
  ProcessStats out;
  out.node_name = s.name.ToString();
  out.connected_peers = s.router.links.size();
  out.open_ports = s.node.ports;
  for (const channel::LinkStats& link : s.router.links) {
    out.messages_sent += link.messages_sent;
    out.bytes_sent += link.bytes_sent;
    out.messages_received += link.messages_received;
    out.bytes_received += link.bytes_received;
  }
  out.peer_deaths = s.router.peer_deaths;
  out.peers_dropped = s.router.peers_dropped;
  out.send_rejections = core_->send_rejections.load(std::memory_order_relaxed);
  for (const auto& [reason, count] : s.router.violations) {
    // The node's reason for a message past our announced receive caps
    // (NodeLimits::max_queued_*_per_port).
    if (reason.find("max_queued_") != std::string::npos)
      out.peers_dropped_for_caps += count;
  }
  return out;
}

}  // namespace shmports
