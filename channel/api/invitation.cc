// Invitations (include/shmports/invitation.h): a child launched with named
// pipes attached.
//
// After the handshake the parent sends ONE message on the bootstrap route:
// the names, encoded as u32 count then (u32 length, bytes) each, little
// endian, with the pipes' far ends attached in the same order. Then both
// sides close their bootstrap ends.
#include <fcntl.h>
#include <shmports/invitation.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "channel/api/internal.h"
#include "channel/socket.h"
#include "channel/spawn.h"
#include "core/base/deadline.h"
#include "core/base/str_format.h"

namespace shmports {
namespace {

using api_internal::ProcessCore;

// Names in one invitation: bounded so a bad message cannot make us allocate.
constexpr size_t kMaxNameBytes = 256;

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

bool GetU32(std::span<const uint8_t>* in, uint32_t* v) {
  if (in->size() < 4)
    return false;
  *v = 0;
  for (int i = 0; i < 4; ++i)
    *v |= static_cast<uint32_t>((*in)[i]) << (8 * i);
  *in = in->subspan(4);
  return true;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status))
    return StrFormat("exited early with status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return StrFormat("was killed early by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
  }
  return StrFormat("ended early (wait status 0x%x)", status);
}

}  // namespace

struct LaunchedChild::Rep {
  channel::SpawnedChild child;
  bool reaped = false;
};

LaunchedChild::LaunchedChild() = default;
LaunchedChild::LaunchedChild(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
LaunchedChild::LaunchedChild(LaunchedChild&&) noexcept = default;
LaunchedChild& LaunchedChild::operator=(LaunchedChild&& other) noexcept {
  if (this != &other) {
    LaunchedChild dying(std::move(*this));
    rep_ = std::move(other.rep_);
  }
  return *this;
}

LaunchedChild::~LaunchedChild() {
  if (!rep_ || rep_->reaped)
    return;
  (void)Kill(SIGKILL);
  (void)Wait(std::chrono::seconds(10));
}

pid_t LaunchedChild::pid() const {
  return rep_ ? rep_->child.pid : -1;
}

Status LaunchedChild::Kill(int signal) {
  if (!rep_ || rep_->reaped)
    return FailedPreconditionError("kill child: it was already reaped");
  if (syscall(SYS_pidfd_send_signal, rep_->child.pidfd.get(), signal, nullptr,
              0) != 0) {
    return InternalError(StrFormat("kill child %d: pidfd_send_signal: %s",
                                   rep_->child.pid, strerror(errno)));
  }
  return Status::Ok();
}

Result<int> LaunchedChild::Wait(std::chrono::nanoseconds timeout) {
  if (!rep_ || rep_->reaped)
    return FailedPreconditionError("wait for child: it was already reaped");
  SHMPORTS_ASSIGN_OR_RETURN(
      int status, channel::WaitForExit(rep_->child, Deadline::In(timeout)));
  rep_->reaped = true;
  return status;
}

OutgoingInvitation::OutgoingInvitation(Process& process) : process_(&process) {}
OutgoingInvitation::~OutgoingInvitation() = default;

Result<Pipe> OutgoingInvitation::AttachPipe(std::string_view name) {
  if (launched_)
    return FailedPreconditionError("attach pipe: the invitation was launched");
  if (name.empty() || name.size() > kMaxNameBytes) {
    return InvalidArgumentError(
        StrFormat("attach pipe: a name has 1..%zu bytes", kMaxNameBytes));
  }
  if (far_ends_.count(name) != 0) {
    return AlreadyExistsError(StrFormat("attach pipe: '%.*s' is attached",
                                        static_cast<int>(name.size()),
                                        name.data()));
  }
  SHMPORTS_ASSIGN_OR_RETURN(auto pair, process_->CreatePipe());
  far_ends_.emplace(std::string(name), std::move(pair.second));
  return std::move(pair.first);
}

Result<LaunchedChild> OutgoingInvitation::Launch(
    const std::vector<std::string>& argv,
    const std::vector<std::string>& extra_env) {
  if (launched_)
    return FailedPreconditionError("launch: this invitation was launched");
  if (argv.empty())
    return InvalidArgumentError("launch: empty argv");
  const std::string context = "launch " + argv[0];
  const std::shared_ptr<ProcessCore>& core = process_->core();
  if (core->IsIoThread()) {
    return FailedPreconditionError(context +
                                   ": blocks; may not run on the io thread");
  }
  auto pair = channel::CreateCredentialedSocketPair();
  if (!pair.ok())
    return std::move(pair).TakeStatus().WithContext(context);
  const int child_fd = pair->second.get();
  std::vector<std::string> env = extra_env;
  env.push_back(StrFormat("%s=%d", kInvitationFdEnv, child_fd));
  const int keep[] = {child_fd};
  auto spawned = channel::SpawnChild(argv, channel::EnvironmentWith(env), keep);
  if (!spawned.ok())
    return std::move(spawned).TakeStatus().WithContext(context);
  launched_ = true;
  pair->second.Reset();
  auto rep = std::make_unique<LaunchedChild::Rep>();
  rep->child = std::move(*spawned);
  const int pidfd = rep->child.pidfd.get();  // Owned by `child` below.
  LaunchedChild child(std::move(rep));

  api_internal::CoreUse use(core.get());
  if (!use.ok())
    return use.status().WithContext(context);
  auto peer = core->process->Connect(std::move(pair->first), pidfd);
  if (!peer.ok()) {
    Status s = std::move(peer).TakeStatus();
    if (s.code() == StatusCode::kPeerClosed) {
      auto status = child.Wait(std::chrono::seconds(2));
      if (status.ok()) {
        return PeerClosedError(StrFormat("child %d %s", child.pid(),
                                         DescribeWaitStatus(*status).c_str()))
            .WithContext(context);
      }
    }
    return std::move(s).WithContext(context);
  }
  Pipe bootstrap = core->WrapPort(core, peer->bootstrap_port);
  std::vector<uint8_t> names;
  std::vector<Pipe> pipes;
  PutU32(&names, static_cast<uint32_t>(far_ends_.size()));
  for (auto& [name, pipe] : far_ends_) {
    PutU32(&names, static_cast<uint32_t>(name.size()));
    names.insert(names.end(), name.begin(), name.end());
    pipes.push_back(std::move(pipe));
  }
  far_ends_.clear();
  Status sent = bootstrap.Send(names, std::move(pipes));
  if (!sent.ok())
    return std::move(sent).WithContext(context + ": send attached pipes");
  return child;
}

IncomingInvitation::IncomingInvitation(
    std::unique_ptr<Process> process,
    std::map<std::string, Pipe, std::less<>> pipes)
    : process_(std::move(process)), pipes_(std::move(pipes)) {}
IncomingInvitation::IncomingInvitation(IncomingInvitation&&) noexcept = default;
IncomingInvitation& IncomingInvitation::operator=(
    IncomingInvitation&&) noexcept = default;
IncomingInvitation::~IncomingInvitation() {
  // Pipes before the Process they belong to.
  pipes_.clear();
  process_.reset();
}

Result<Pipe> IncomingInvitation::ExtractPipe(std::string_view name) {
  auto it = pipes_.find(name);
  if (it == pipes_.end()) {
    std::string attached;
    for (const auto& [n, pipe] : pipes_)
      attached += (attached.empty() ? "'" : ", '") + n + "'";
    return NotFoundError(
        StrFormat("extract pipe: '%.*s' is not attached (attached: %s)",
                  static_cast<int>(name.size()), name.data(),
                  attached.empty() ? "none left" : attached.c_str()));
  }
  Pipe pipe = std::move(it->second);
  pipes_.erase(it);
  return pipe;
}

Result<IncomingInvitation> AcceptInvitation(std::chrono::nanoseconds timeout) {
  const char* value = std::getenv(kInvitationFdEnv);
  if (value == nullptr) {
    return NotFoundError(StrFormat(
        "accept invitation: no invitation in this process (%s is not set: "
        "was this program launched by OutgoingInvitation::Launch?)",
        kInvitationFdEnv));
  }
  char* end = nullptr;
  errno = 0;
  long fd = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || fd < 0 || fd > INT32_MAX ||
      fcntl(static_cast<int>(fd), F_GETFD) < 0) {
    return InvalidArgumentError(
        StrFormat("accept invitation: %s=%s does not name an open descriptor",
                  kInvitationFdEnv, value));
  }
  // Consumed: a grandchild must not think the invitation is its own.
  unsetenv(kInvitationFdEnv);
  (void)fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  channel::ProcessOptions options;
  options.connection.handshake_timeout = timeout;
  auto accepted = channel::Process::AcceptConnection(
      channel::ScopedFd(static_cast<int>(fd)), options);
  if (!accepted.ok())
    return std::move(accepted).TakeStatus().WithContext("accept invitation");
  ports::PortRef bootstrap_port = accepted->peer.bootstrap_port;
  SHMPORTS_ASSIGN_OR_RETURN(std::shared_ptr<ProcessCore> core,
                            ProcessCore::Wrap(std::move(accepted->process)));
  auto process = std::make_unique<Process>(core);
  Pipe bootstrap = core->WrapPort(core, bootstrap_port);
  auto message = bootstrap.Receive(timeout);
  if (!message.ok()) {
    return std::move(message).TakeStatus().WithContext(
        "accept invitation: read the attached pipes");
  }
  std::span<const uint8_t> in(message->bytes);
  uint32_t count = 0;
  std::map<std::string, Pipe, std::less<>> pipes;
  bool ok = GetU32(&in, &count) && count == message->pipes.size();
  for (uint32_t i = 0; ok && i < count; ++i) {
    uint32_t len = 0;
    ok = GetU32(&in, &len) && len <= kMaxNameBytes && len <= in.size();
    if (!ok)
      break;
    std::string name(reinterpret_cast<const char*>(in.data()), len);
    in = in.subspan(len);
    ok = pipes.emplace(std::move(name), std::move(message->pipes[i])).second;
  }
  if (!ok || !in.empty()) {
    return ProtocolViolationError(
        "accept invitation: the parent's list of attached pipes is malformed");
  }
  bootstrap.Close();
  return IncomingInvitation(std::move(process), std::move(pipes));
}

}  // namespace shmports
