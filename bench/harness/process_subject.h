// The whole-stack subject (issue 7): two channel::Process objects, one in
// the harness and one in its peer, joined by the real handshake over an
// inherited credentialed socket pair; messages travel as ports user
// messages on the bootstrap port pair (Node::SendUserMessage, Router,
// shared-memory rings, io_uring wake-ups, Node::GetMessage). Messages
// larger than a ring frame travel as fragments.
//
//   process   the receiving thread polls GetMessage for a short while, then
//             sleeps until the Process's port status observer fires (the
//             "spin, then sleep" default mode). The io threads behave as
//             they always do (io_uring waits on the ring futex words).
//
// One-way flow control: the sending port asks for read acknowledgements
// (Node::SetAcknowledgeRequestInterval) and the sender waits while more than
// a window of messages (about 16 MiB, at least 8 messages) is unread, so a
// fast sender never exhausts the Router's per-peer overflow budget.
#ifndef SHMPORTS_BENCH_HARNESS_PROCESS_SUBJECT_H_
#define SHMPORTS_BENCH_HARNESS_PROCESS_SUBJECT_H_

#include <memory>

#include "bench/harness/subject.h"

namespace shmports::bench {

std::unique_ptr<Subject> MakeProcessSubject();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_PROCESS_SUBJECT_H_
