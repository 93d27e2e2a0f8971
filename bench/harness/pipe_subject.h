// The user-API subjects (issue 8): the whole stack as a user sees it,
// Pipe::Send -> Pipe::Receive between the harness and a peer it launches
// with shmports::OutgoingInvitation (the peer is this binary in its peer
// role; it joins with AcceptInvitation and extracts the pipe). Nothing but
// the public headers <shmports/process.h>, <shmports/pipe.h> and
// <shmports/invitation.h> is used, so changes behind them (credit, the
// consumer token) show up here without a change to the harness.
//
//   api-busy      round trip; both sides wait in Receive(kBusyPoll)
//   api-default   round trip and one way; Receive(kDefault) (spin for
//                 Pipe::kSpinBudget, then sleep)
//   api-blocking  round trip; Receive(kBlocking)
//
// Send copies the message from a buffer the harness fills (the API takes a
// span); Receive hands out a PipeMessage that owns its bytes. Both are part
// of the figure, as they are of a user's.
//
// One way, the sender uses the library's default credit unless
// --pipe-window sets a quota (Pipe::SetQuota: bytes of unread messages /
// message size, 2 to 32768 messages, under the receiver's default cap);
// a Send answered kResourceExhausted is retried with the waiting Send
// (Send(bytes, {}, timeout): it sleeps until acknowledgements bring credit
// back), never dropped, and counted (`credit_waits`). The
// receiver checks every body and every sequence number (the harness core).
//
// The busy-poll waiter never spins longer than kBusySlice in one Receive
// call and yields between calls: the Process's io thread inherits the pinning
// of its process's main thread and shares its CPU, and under SCHED_FIFO a
// spinner that never yields would keep it off that CPU for good.
#ifndef SHMPORTS_BENCH_HARNESS_PIPE_SUBJECT_H_
#define SHMPORTS_BENCH_HARNESS_PIPE_SUBJECT_H_

#include <memory>

#include "bench/harness/subject.h"

namespace shmports::bench {

std::unique_ptr<Subject> MakeApiBusySubject();
std::unique_ptr<Subject> MakeApiDefaultSubject();
std::unique_ptr<Subject> MakeApiBlockingSubject();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_PIPE_SUBJECT_H_
