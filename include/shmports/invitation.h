// Invitation: launching a child program with named pipes attached.
//
// Parent:
//   OutgoingInvitation invitation(*process);
//   Pipe pipe = *invitation.AttachPipe("hello");
//   auto child = invitation.Launch({"/path/to/child", "arg"});
// Child:
//   auto invitation = AcceptInvitation();
//   Pipe pipe = *invitation->ExtractPipe("hello");
//
// How it works: Launch creates a credentialed socket pair, starts the child
// with clone3 (holding its pidfd), keeps the child's end open under the same
// descriptor number and names it in the environment variable
// SHMPORTS_INVITATION_FD. It then runs the handshake (mutual kernel
// identity, shared-memory rings) and sends the attached pipes' far ends in
// one message over the bootstrap route. AcceptInvitation in the child does
// the other half.
//
// Threads: any thread but an io thread (both sides block in the handshake).
#ifndef SHMPORTS_INVITATION_H_
#define SHMPORTS_INVITATION_H_

#include <shmports/pipe.h>
#include <shmports/process.h>
#include <shmports/status.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace shmports {

// The environment variable naming the invitation's descriptor in a child.
inline constexpr char kInvitationFdEnv[] = "SHMPORTS_INVITATION_FD";

// A child started by OutgoingInvitation::Launch. Holds its pidfd, so the
// pid it names cannot be reused while this object lives. Move-only;
// destroying it before the child was waited for kills (SIGKILL) and reaps
// the child, so no child outlives its handle as a zombie or an orphan.
class LaunchedChild {
 public:
  LaunchedChild();
  LaunchedChild(LaunchedChild&&) noexcept;
  LaunchedChild& operator=(LaunchedChild&&) noexcept;
  ~LaunchedChild();

  pid_t pid() const;

  // Sends `signal` through the pidfd. kFailedPrecondition once reaped.
  Status Kill(int signal);

  // Waits up to `timeout` for the child to exit and reaps it; the raw wait
  // status (WIFEXITED/WEXITSTATUS apply). kUnavailable at the deadline.
  Result<int> Wait(std::chrono::nanoseconds timeout);

  struct Rep;
  explicit LaunchedChild(std::unique_ptr<Rep> rep);

 private:
  std::unique_ptr<Rep> rep_;
};

// Parent side. Attach pipes, then Launch once.
class OutgoingInvitation {
 public:
  // `process` must outlive the invitation and the pipes.
  explicit OutgoingInvitation(Process& process);
  ~OutgoingInvitation();
  OutgoingInvitation(const OutgoingInvitation&) = delete;
  OutgoingInvitation& operator=(const OutgoingInvitation&) = delete;

  // A new pipe whose far end goes to the child under `name` (non-empty,
  // unique in this invitation: kInvalidArgument / kAlreadyExists).
  Result<Pipe> AttachPipe(std::string_view name);

  // Starts `argv[0]` (a path; no PATH search) with `argv` and this
  // process's environment plus `extra_env` ("NAME=value"), runs the
  // handshake and hands over the attached pipes. Errors: kNotFound (the
  // program cannot be started), kPeerClosed "child exited early with status
  // N" (it died or exited before accepting), kUnavailable (the handshake
  // timed out), kFailedPrecondition (launched already).
  Result<LaunchedChild> Launch(const std::vector<std::string>& argv,
                               const std::vector<std::string>& extra_env = {});

 private:
  Process* process_;
  bool launched_ = false;
  std::map<std::string, Pipe, std::less<>> far_ends_;
};

// Child side: what AcceptInvitation returns. Owns the child's Process.
class IncomingInvitation {
 public:
  IncomingInvitation(std::unique_ptr<Process> process,
                     std::map<std::string, Pipe, std::less<>> pipes);
  IncomingInvitation(IncomingInvitation&&) noexcept;
  IncomingInvitation& operator=(IncomingInvitation&&) noexcept;
  ~IncomingInvitation();

  // The pipe the parent attached under `name`, once. kNotFound naming the
  // attached names when there is no such pipe (or it was extracted).
  Result<Pipe> ExtractPipe(std::string_view name);

  // The Process the invitation joined; keep it alive while using pipes.
  Process& process() { return *process_; }

 private:
  std::unique_ptr<Process> process_;
  std::map<std::string, Pipe, std::less<>> pipes_;
};

// Joins the parent that launched this program. kNotFound "no invitation in
// this process" when SHMPORTS_INVITATION_FD is unset; kInvalidArgument when
// it does not name an open descriptor; kPeerClosed when the parent went
// away. Once per process (the descriptor is consumed).
Result<IncomingInvitation> AcceptInvitation(
    std::chrono::nanoseconds timeout = std::chrono::seconds(10));

}  // namespace shmports

#endif  // SHMPORTS_INVITATION_H_
