// Subjects for the raw shm::Ring (issue 5): two rings (parent -> peer and
// peer -> parent) in one sealed Segment, the peer mapping it through
// Segment::Map with its seal and size checks, frames of kind
// kFirstChannelKind written in place (Reserve, fill, Commit) and read from
// Drain's private copy.
//
//   ring-busy    the consumer spins on Drain, the producer spins on a full
//                ring: the busy-poll figures.
//   ring-batch   as ring-busy, one way only, but `tail` is published once
//                per 16 messages (Commit(kDeferred), then a publishing
//                Commit; a full ring and the end of the stream flush): what
//                batching the publish store buys.
//   ring-sleep   the consumer sleeps in WaitForData when Drain finds
//                nothing, the producer in WaitForSpace when the ring is
//                full: the sleeping-consumer figures (futex wake per
//                message when the consumer keeps up).
//
// The ring capacity is the default 1 MiB, or the next power of two that
// holds four frames of the message size for larger messages.
#ifndef SHMPORTS_BENCH_HARNESS_RING_SUBJECT_H_
#define SHMPORTS_BENCH_HARNESS_RING_SUBJECT_H_

#include <memory>

#include "bench/harness/subject.h"

namespace shmports::bench {

std::unique_ptr<Subject> MakeRingBusySubject();
std::unique_ptr<Subject> MakeRingBatchSubject();
std::unique_ptr<Subject> MakeRingSleepSubject();

}  // namespace shmports::bench

#endif  // SHMPORTS_BENCH_HARNESS_RING_SUBJECT_H_
