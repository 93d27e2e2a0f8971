// Built against the installed shmports through pkg-config only.
#include <shmports/status.h>

#include <cstdio>

int main() {
  shmports::Status s = shmports::NotFoundError("pipe 'hello' is not attached");
  s.AddContext("extract pipe");
  std::printf("%s\n", s.ToString().c_str());
  return s.code() == shmports::StatusCode::kNotFound ? 0 : 1;
}
