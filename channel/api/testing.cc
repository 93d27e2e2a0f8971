#include "channel/api/testing.h"

#include <thread>
#include <utility>

#include "channel/api/internal.h"
#include "channel/process.h"
#include "channel/socket.h"

namespace shmports::testing {

Result<ConnectedProcesses> ConnectProcessesForTesting(
    const ProcessOptions& a_options,
    const ProcessOptions& b_options) {
  SHMPORTS_ASSIGN_OR_RETURN(channel::SocketPair sockets,
                            channel::CreateCredentialedSocketPair());
  SHMPORTS_ASSIGN_OR_RETURN(
      std::unique_ptr<channel::Process> inviter,
      channel::Process::Create(api_internal::ChannelOptions(a_options)));
  const channel::ProcessOptions b_channel =
      api_internal::ChannelOptions(b_options);
  // Both halves of the handshake block: the invitee runs on its own thread.
  Result<channel::Process::Accepted> accepted =
      InternalError("accept did not run");
  std::thread invitee([&] {
    accepted = channel::Process::AcceptConnection(std::move(sockets.second),
                                                  b_channel);
  });
  auto connected = inviter->Connect(std::move(sockets.first));
  invitee.join();
  if (!connected.ok())
    return std::move(connected).TakeStatus().WithContext("connect for test");
  if (!accepted.ok())
    return std::move(accepted).TakeStatus().WithContext("accept for test");
  ports::PortRef a_port = connected->bootstrap_port;
  ports::PortRef b_port = accepted->peer.bootstrap_port;
  SHMPORTS_ASSIGN_OR_RETURN(
      auto a_core, api_internal::ProcessCore::Wrap(std::move(inviter)));
  SHMPORTS_ASSIGN_OR_RETURN(auto b_core, api_internal::ProcessCore::Wrap(
                                             std::move(accepted->process)));
  ConnectedProcesses out;
  out.a = std::make_unique<Process>(a_core);
  out.b = std::make_unique<Process>(b_core);
  out.a_end = api_internal::WrapNewPort(a_core, a_port);
  out.b_end = api_internal::WrapNewPort(b_core, b_port);
  return out;
}

void PostToIoThreadForTesting(Process& process, std::function<void()> task) {
  process.core()->process->PostToIoThreadForTesting(std::move(task));
}

void IgnorePeerReceiveCapsForTesting(Process& process, bool ignore) {
  process.core()->ignore_peer_caps_for_testing.store(ignore);
}

}  // namespace shmports::testing
