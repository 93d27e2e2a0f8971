// Hello world, parent: launches hello_child with a pipe named "hello",
// greets it and prints the reply. Usage: hello_parent PATH_TO_HELLO_CHILD
#include <shmports/invitation.h>

#include <chrono>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  auto process = shmports::Process::Create();
  if (argc < 2 || !process.ok())
    return 2;
  shmports::OutgoingInvitation invitation(**process);
  auto pipe = invitation.AttachPipe("hello");
  auto child = invitation.Launch({argv[1]});
  if (!pipe.ok() || !child.ok()) {
    std::fprintf(stderr, "%s\n", child.status().ToString().c_str());
    return 1;
  }
  (void)pipe->Send("hello, child");
  auto reply = pipe->Receive(std::chrono::seconds(10));
  if (!reply.ok())
    return 1;
  std::printf("parent got: %s\n", std::string(reply->text()).c_str());
  return child->Wait(std::chrono::seconds(10)).ok() ? 0 : 1;
}
