// The child program of the invitation tests: accepts the invitation and
// acts as argv[1] says. Through the public API only.
//   echo            extract "pipe"; echo each message (pipes attached to a
//                   message get "hello from the child" and are closed)
//                   until the peer closes; exit 0.
//   exit N          exit with status N at once, without accepting.
//   extract NAME    extract "pipe", then NAME; send the outcome on "pipe".
//   no-invitation   report what AcceptInvitation says on stdout; exit 0 if
//                   it is kNotFound.
//   flood N         extract "pipe" and "report"; send messages "0".."N-1"
//                   on "pipe" with no quota set; at the first refusal for
//                   credit send "refused at K" on "report", then send the
//                   rest with the waiting Send; exit 0 once the peer closes.
//   ignore-credit N extract "pipe"; send N messages ignoring the parent's
//                   receive caps (the test switch of channel/api/testing.h);
//                   exit 0 once the parent has cut us off (kPeerClosed).
#include <shmports/invitation.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "channel/api/testing.h"

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

int WaitForPeerClosed(Pipe& pipe) {
  for (;;) {
    auto m = pipe.Receive(std::chrono::seconds(60));
    if (!m.ok())
      return m.status().code() == shmports::StatusCode::kPeerClosed ? 0 : 3;
  }
}

int Flood(Pipe& pipe, Pipe& report, int n) {
  bool refused = false;
  for (int i = 0; i < n; ++i) {
    const std::string text = std::to_string(i);
    shmports::Status s = pipe.Send(text);
    if (s.code() == shmports::StatusCode::kResourceExhausted) {
      if (!refused) {
        refused = true;
        if (!report.Send("refused at " + text).ok())
          return 5;
      }
      s = pipe.Send(text, {}, std::chrono::seconds(60));
    }
    if (!s.ok()) {
      std::fprintf(stderr, "child: send %d: %s\n", i, s.ToString().c_str());
      return 4;
    }
  }
  if (!refused)
    (void)report.Send("never refused");
  return WaitForPeerClosed(pipe);
}

int IgnoreCredit(shmports::Process& process, Pipe& pipe, int n) {
  shmports::testing::IgnorePeerReceiveCapsForTesting(process, true);
  for (int i = 0; i < n; ++i) {
    shmports::Status s = pipe.Send(std::to_string(i));
    if (!s.ok() && s.code() != shmports::StatusCode::kPeerClosed) {
      std::fprintf(stderr, "child: send %d: %s\n", i, s.ToString().c_str());
      return 4;
    }
  }
  return WaitForPeerClosed(pipe);
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
  if (mode == "flood" && argc > 2) {
    auto report = invitation->ExtractPipe("report");
    if (!report.ok())
      return 2;
    return Flood(*pipe, *report, std::atoi(argv[2]));
  }
  if (mode == "ignore-credit" && argc > 2)
    return IgnoreCredit(invitation->process(), *pipe, std::atoi(argv[2]));
  if (mode == "extract" && argc > 2) {
    auto other = invitation->ExtractPipe(argv[2]);
    std::string outcome = other.ok() ? "ok" : other.status().ToString();
    (void)pipe->Send(outcome);
    return Echo(*pipe);
  }
  return Echo(*pipe);
}
