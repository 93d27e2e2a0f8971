// Hello world, child: accepts the invitation, reads the greeting from the
// pipe named "hello" and answers.
#include <shmports/invitation.h>

#include <chrono>
#include <cstdio>
#include <string>

int main() {
  auto invitation = shmports::AcceptInvitation();
  if (!invitation.ok()) {
    std::fprintf(stderr, "%s\n", invitation.status().ToString().c_str());
    return 1;
  }
  auto pipe = invitation->ExtractPipe("hello");
  auto message = pipe->Receive(std::chrono::seconds(10));
  if (!message.ok())
    return 1;
  std::printf("child got: %s\n", std::string(message->text()).c_str());
  return pipe->Send("hello, parent").ok() ? 0 : 1;
}
