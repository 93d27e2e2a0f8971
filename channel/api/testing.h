// For tests in this tree only (not installed): two public Processes in this
// OS process joined by a handshake over a socket pair, with a pipe between
// them — the in-process setup the *_threads tests (and TSan) need, since an
// Invitation always launches a child program. Also the switches tests need
// to play a misbehaving sender.
#ifndef SHMPORTS_CHANNEL_API_TESTING_H_
#define SHMPORTS_CHANNEL_API_TESTING_H_

#include <shmports/pipe.h>
#include <shmports/process.h>
#include <shmports/status.h>

#include <functional>
#include <memory>

namespace shmports::testing {

struct ConnectedProcesses {
  std::unique_ptr<Process> a;  // The inviter.
  std::unique_ptr<Process> b;
  Pipe a_end;  // On a; its peer is b_end.
  Pipe b_end;  // On b.
};

Result<ConnectedProcesses> ConnectProcessesForTesting(
    const ProcessOptions& a_options = {},
    const ProcessOptions& b_options = {});

// Makes every Send of `process` ignore the receive caps its peers announced
// (a user quota set with SetQuota still applies): a sender that ignores
// credit, which the receiving process must cut off.
void IgnorePeerReceiveCapsForTesting(Process& process, bool ignore);

// Runs `task` on `process`'s io thread; it may block there, which is how a
// test holds a receiving process back deterministically (release it before
// the Process is destroyed).
void PostToIoThreadForTesting(Process& process, std::function<void()> task);

}  // namespace shmports::testing

#endif  // SHMPORTS_CHANNEL_API_TESTING_H_
