// The child program of the invitation tests: accepts the invitation and
// acts as argv[1] says. Through the public API only.
//   echo            extract "pipe"; echo each message (pipes attached to a
//                   message get "hello from the child" and are closed)
//                   until the peer closes; exit 0.
//   exit N          exit with status N at once, without accepting.
//   extract NAME    extract "pipe", then NAME; send the outcome on "pipe".
//   no-invitation   report what AcceptInvitation says on stdout; exit 0 if
//                   it is kNotFound.
#include <shmports/invitation.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using shmports::Pipe;

int Echo(Pipe& pipe) {
  for (;;) {
    auto m = pipe.Receive(std::chrono::seconds(60));
    if (!m.ok())
      return m.status().code() == shmports::StatusCode::kPeerClosed ? 0 : 3;
    for (Pipe& attached : m->pipes)
      (void)attached.Send("hello from the child");
    if (!pipe.Send(m->bytes).ok())
      return 4;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "exit" && argc > 2)
    return std::atoi(argv[2]);
  auto invitation = shmports::AcceptInvitation();
  if (mode == "no-invitation") {
    std::printf("%s\n", invitation.status().ToString().c_str());
    return invitation.status().code() == shmports::StatusCode::kNotFound ? 0
                                                                         : 1;
  }
  if (!invitation.ok()) {
    std::fprintf(stderr, "child: %s\n", invitation.status().ToString().c_str());
    return 2;
  }
  auto pipe = invitation->ExtractPipe("pipe");
  if (!pipe.ok()) {
    std::fprintf(stderr, "child: %s\n", pipe.status().ToString().c_str());
    return 2;
  }
  if (mode == "extract" && argc > 2) {
    auto other = invitation->ExtractPipe(argv[2]);
    std::string outcome = other.ok() ? "ok" : other.status().ToString();
    (void)pipe->Send(outcome);
    return Echo(*pipe);
  }
  return Echo(*pipe);
}
