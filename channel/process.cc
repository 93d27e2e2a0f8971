#include "channel/process.h"

#include <utility>

#include "core/base/random.h"
#include "core/base/str_format.h"
#include "core/ports/error.h"

namespace shmports::channel {
namespace {

ports::NodeName RandomNodeName() {
  uint64_t v1 = RandomU64();
  uint64_t v2 = RandomU64();
  if (v1 == 0 && v2 == 0)
    v2 = 1;
  return ports::NodeName(v1, v2);
}

// Credit: the node enforces exactly the receive caps this
// process announces in its handshakes (options.connection.receive_caps is
// the one source of truth; options.node's queued caps are overridden).
ProcessOptions WithReceiveCapsEnforced(ProcessOptions options) {
  ports::NodeLimits& limits = options.node.limits;
  const ReceiveCaps& caps = options.connection.receive_caps;
  limits.max_queued_messages_per_port =
      static_cast<size_t>(caps.max_queued_messages_per_pipe);
  limits.max_queued_bytes_per_port =
      static_cast<size_t>(caps.max_queued_bytes_per_pipe);
  return options;
}

}  // namespace

Process::Process(const ProcessOptions& options)
    : options_(WithReceiveCapsEnforced(options)) {}

Process::~Process() {
  if (reactor_) {
    reactor_->Stop();
    if (io_thread_.joinable())
      io_thread_.join();
  }
  node_.reset();
  reactor_.reset();
  router_.reset();
}

Status Process::Start() {
  SHMPORTS_ASSIGN_OR_RETURN(reactor_, Reactor::Create(options_.reactor));
  router_ = std::make_unique<Router>(reactor_.get(), options_.router);
  Reactor* reactor = reactor_.get();
  io_thread_ = std::thread([reactor] { reactor->Run(); });
  return Status::Ok();
}

Result<std::unique_ptr<Process>> Process::Create(
    const ProcessOptions& options) {
  std::unique_ptr<Process> process(new Process(options));
  SHMPORTS_RETURN_IF_ERROR(process->Start());
  process->node_ = std::make_unique<ports::Node>(
      RandomNodeName(), process->router_.get(), process->options_.node);
  process->router_->SetNode(process->node_.get());
  return process;
}

Result<Process::Accepted> Process::AcceptConnection(
    ScopedFd socket,
    const ProcessOptions& options) {
  std::unique_ptr<Process> process(new Process(options));
  SHMPORTS_RETURN_IF_ERROR(process->Start());
  Process* p = process.get();
  ports::PortRef bootstrap;
  auto on_name =
      [p, &bootstrap](const ports::NodeName& name) -> Result<ports::PortName> {
    p->node_ =
        std::make_unique<ports::Node>(name, p->router_.get(), p->options_.node);
    p->router_->SetNode(p->node_.get());
    int rv = p->node_->CreateUninitializedPort(&bootstrap);
    if (rv != ports::OK)
      return ports::ErrorToStatus(rv, "create bootstrap port");
    return bootstrap.name();
  };
  auto connection =
      Connection::Accept(std::move(socket), on_name, options.connection);
  if (!connection.ok()) {
    if (bootstrap.is_valid())
      (void)p->node_->ClosePort(bootstrap);
    if (connection.status().code() == StatusCode::kPeerClosed)
      p->router_->RecordHandshakeDeath();
    return std::move(connection).TakeStatus();
  }
  SHMPORTS_ASSIGN_OR_RETURN(
      ConnectedPeer peer,
      p->FinishConnection(std::move(*connection), bootstrap));
  Accepted accepted;
  accepted.process = std::move(process);
  accepted.peer = std::move(peer);
  return accepted;
}

Result<ConnectedPeer> Process::Connect(ScopedFd socket,
                                       int launched_pidfd,
                                       ports::NodeName peer_name) {
  if (reactor_->IsIoThread()) {
    return FailedPreconditionError(
        "Process::Connect blocks; it may not run on the io thread");
  }
  if (!peer_name.is_valid())
    peer_name = RandomNodeName();
  ports::PortRef bootstrap;
  int rv = node_->CreateUninitializedPort(&bootstrap);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "create bootstrap port");
  auto connection =
      Connection::Invite(std::move(socket), node_->name(), peer_name,
                         bootstrap.name(), options_.connection, launched_pidfd);
  if (!connection.ok()) {
    (void)node_->ClosePort(bootstrap);
    if (connection.status().code() == StatusCode::kPeerClosed)
      router_->RecordHandshakeDeath();
    return std::move(connection).TakeStatus();
  }
  auto peer = FinishConnection(std::move(*connection), bootstrap);
  if (!peer.ok())
    (void)node_->ClosePort(bootstrap);
  return peer;
}

Result<ConnectedPeer> Process::FinishConnection(
    std::unique_ptr<Connection> c,
    const ports::PortRef& bootstrap) {
  ConnectedPeer peer;
  peer.peer_name = c->peer_name();
  {
    // Credit: what our pipes to this peer may leave unread there.
    MutexLock lock(&peer_caps_mu_);
    peer_caps_[peer.peer_name] = c->peer_receive_caps();
  }
  const ports::PortName peer_port = c->peer_bootstrap_port();
  // Initialised before the link exists, so no event can reach the port
  // while it is still uninitialised.
  int rv = node_->InitializePort(bootstrap, peer.peer_name, peer_port,
                                 peer.peer_name, peer_port);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "initialise bootstrap port");
  SHMPORTS_RETURN_IF_ERROR(router_->AddConnection(std::move(c)));
  peer.bootstrap_port = bootstrap;
  return peer;
}

void Process::SetPortStatusObserver(Router::PortStatusObserver observer) {
  router_->SetPortStatusObserver(std::move(observer));
}

void Process::SetPeerLostObserver(Router::PeerLostObserver observer) {
  router_->SetPeerLostObserver(std::move(observer));
}

void Process::Post(Reactor::Task task) {
  reactor_->Post(std::move(task));
}

bool Process::IsIoThread() const {
  return reactor_->IsIoThread();
}

void Process::PostToIoThreadForTesting(Reactor::Task task) {
  reactor_->Post(std::move(task));
}

Status Process::Shutdown(Deadline deadline) {
  if (reactor_->IsIoThread()) {
    return FailedPreconditionError(
        "Process::Shutdown waits for the io thread; it may not run on it");
  }
  return router_->SendGoodbyes(deadline);
}

// Credit (issue 8).
bool Process::GetPeerReceiveCaps(const ports::NodeName& peer,
                                 ReceiveCaps* caps) const {
  MutexLock lock(&peer_caps_mu_);
  auto it = peer_caps_.find(peer);
  if (it == peer_caps_.end())
    return false;
  *caps = it->second;
  return true;
}

ReceiveCaps Process::GetLowestReceiveCaps() const {
  // 0 means unlimited: it lowers nothing.
  auto lower = [](uint64_t a, uint64_t b) {
    return a == 0 ? b : b == 0 ? a : std::min(a, b);
  };
  ReceiveCaps out = options_.connection.receive_caps;
  MutexLock lock(&peer_caps_mu_);
  for (const auto& [name, caps] : peer_caps_) {
    out.max_queued_messages_per_pipe = lower(out.max_queued_messages_per_pipe,
                                             caps.max_queued_messages_per_pipe);
    out.max_queued_bytes_per_pipe =
        lower(out.max_queued_bytes_per_pipe, caps.max_queued_bytes_per_pipe);
  }
  return out;
}

ProcessStats Process::GetStats() {
  ProcessStats stats;
  stats.name = node_->name();
  stats.router = router_->GetStats();
  stats.node = node_->GetStats();
  stats.reactor = reactor_->GetStats();
  return stats;
}

}  // namespace shmports::channel
