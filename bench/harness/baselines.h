// The same-run baselines every subject is compared with. Each is a Subject
// (see subject.h) measured by the same loops, with the same payload rules:
//
//   cacheline    two processes spinning on one 64-byte line of a shared
//                memfd page: 8-byte turn word + 56 payload bytes. The floor
//                for a busy-poll round trip. Round trip only.
//   memcpy       single-thread memcpy of the message size between two
//                cache-hot, page-aligned buffers, in the parent alone. One
//                way (GB/s).
//   unix-stream  AF_UNIX SOCK_STREAM socketpair: one write() per message,
//                the receiver reads up to 256 KiB per read() and splits.
//   pipe         two pipes, same framing as unix-stream.
//   eventfd      two eventfds (blocking read/write) signalling a payload in
//                a shared memfd page. Round trip only.
//   mq           Boost.Interprocess message_queue, a uniquely named pair in
//                /dev/shm, removed at start and exit (cleanup.h).
#ifndef SHMPORTS_BENCH_HARNESS_BASELINES_H_
#define SHMPORTS_BENCH_HARNESS_BASELINES_H_

#include <memory>

#include "bench/harness/subject.h"

namespace shmports::bench {

std::unique_ptr<Subject> MakeCacheLineSubject();
std::unique_ptr<Subject> MakeMemcpySubject();
std::unique_ptr<Subject> MakeUnixStreamSubject();
std::unique_ptr<Subject> MakePipeSubject();
std::unique_ptr<Subject> MakeEventfdSubject();
std::unique_ptr<Subject> MakeMessageQueueSubject();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_BASELINES_H_
