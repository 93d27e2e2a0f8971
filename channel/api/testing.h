// For tests in this tree only (not installed): two public Processes in this
// OS process joined by a handshake over a socket pair, with a pipe between
// them — the in-process setup the *_threads tests (and TSan) need, since an
// Invitation always launches a child program.
#ifndef SHMPORTS_CHANNEL_API_TESTING_H_
#define SHMPORTS_CHANNEL_API_TESTING_H_

#include <shmports/pipe.h>
#include <shmports/process.h>
#include <shmports/status.h>

#include <memory>

namespace shmports::testing {

struct ConnectedProcesses {
  std::unique_ptr<Process> a;  // The inviter.
  std::unique_ptr<Process> b;
  Pipe a_end;  // On a; its peer is b_end.
  Pipe b_end;  // On b.
};

Result<ConnectedProcesses> ConnectProcessesForTesting();

}  // namespace shmports::testing

#endif  // SHMPORTS_CHANNEL_API_TESTING_H_
