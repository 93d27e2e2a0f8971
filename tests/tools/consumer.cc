// Built against the installed shmports through pkg-config only: every
// public header, and a message through a pipe.
#include <shmports/invitation.h>
#include <shmports/pipe.h>
#include <shmports/process.h>
#include <shmports/status.h>

#include <chrono>
#include <cstdio>

int main() {
  shmports::Status s = shmports::NotFoundError("pipe 'hello' is not attached");
  s.AddContext("extract pipe");
  std::printf("%s\n", s.ToString().c_str());
  if (s.code() != shmports::StatusCode::kNotFound)
    return 1;
  auto process = shmports::Process::Create();
  if (!process.ok())
    return 1;
  auto pipe = (*process)->CreatePipe();
  if (!pipe.ok() || !pipe->first.Send("hello").ok())
    return 1;
  auto m = pipe->second.Receive(std::chrono::seconds(10));
  if (!m.ok() || m->text() != "hello")
    return 1;
  std::printf("received \"%.*s\"\n", static_cast<int>(m->text().size()),
              m->text().data());
  return shmports::AcceptInvitation().status().code() ==
                 shmports::StatusCode::kNotFound
             ? 0
             : 1;
}
