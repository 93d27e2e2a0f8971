// MessageQueue: the user messages arriving at one port, released strictly in
// sequence-number order.
//
// Messages may arrive out of order (a transferred port's old and new routes
// race), but nearly all arrive in order. Those that extend the run of
// consecutive numbers the queue holds go into a FIFO ring of pointers (O(1),
// no comparison, no touch of the event to find the head); the rest wait in a
// min-heap by sequence number and move into the ring as soon as the gap
// before them fills. The head of the queue is the smaller of the ring's
// front and the heap's top, released only when it is the next number
// expected. Reading is two steps, as in Mojo: GetNextMessage takes the head,
// MessageProcessed advances the expected number — so a proxy forwarding a
// message stays "not done" until the message has its routing (see
// Node::ForwardUserMessagesFromProxy).
//
// Both the ring's and the heap's storage are kept between messages: after
// warm-up, accepting and taking a message allocates nothing. Storage above
// 4096 entries left by a burst is given back once that part drains.
//
// Not thread-safe: owned by a Port and guarded by the port's lock.
#ifndef SHMPORTS_CORE_PORTS_MESSAGE_QUEUE_H_
#define SHMPORTS_CORE_PORTS_MESSAGE_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/ports/event.h"

namespace shmports::ports {

// Chooses whether GetMessage may take the head message.
class MessageFilter {
 public:
  virtual ~MessageFilter() = default;
  virtual bool Match(const UserMessageEvent& message) = 0;
};

class MessageQueue {
 public:
  explicit MessageQueue(uint64_t next_sequence_num = kInitialSequenceNum);
  MessageQueue(const MessageQueue&) = delete;
  MessageQueue& operator=(const MessageQueue&) = delete;
  ~MessageQueue();

  // The sequence number of the next message to release.
  uint64_t next_sequence_num() const { return next_sequence_num_; }

  // The head of the queue is the next message in order.
  bool HasNextMessage() const;

  // Takes the next in-order message if there is one and `filter` (may be
  // null) accepts it; otherwise leaves *message null. Does not advance the
  // expected number: call MessageProcessed once the message is dealt with.
  void GetNextMessage(std::unique_ptr<UserMessageEvent>* message,
                      MessageFilter* filter);
  void MessageProcessed() { ++next_sequence_num_; }

  // Adds `message`. *has_next_message says whether the head is now the next
  // in-order message (always false while not signalable).
  void AcceptMessage(std::unique_ptr<UserMessageEvent> message,
                     bool* has_next_message);

  // Moves the queued messages numbered above `last` (in any order) into
  // *messages: the node-loss path, for messages beyond a gap that can no
  // longer be filled.
  void TakeMessagesAfter(
      uint64_t last,
      std::vector<std::unique_ptr<UserMessageEvent>>* messages);

  // Moves every queued message (in any order) into *messages.
  void TakeAllMessages(
      std::vector<std::unique_ptr<UserMessageEvent>>* messages);

  // A port created for a message that is not read yet must not announce its
  // own messages before the embedder has seen the port (Node::GetMessage).
  void set_signalable(bool signalable) { signalable_ = signalable; }

  // The highest sequence number up to which every message has been taken
  // or is queued (next_sequence_num() - 1 when the next one is missing).
  // Allocates and sorts one entry per out-of-order message (the in-order run
  // counts as one); for the node-loss path, not hot.
  uint64_t LastContiguousSequenceNum() const;

  size_t queued_message_count() const { return ring_count_ + heap_.size(); }
  size_t queued_num_bytes() const { return total_queued_bytes_; }

 private:
  // The number a message must carry to join the ring.
  uint64_t RingNextNumber() const;
  // Whether the head of the queue is the ring's front (else the heap's top).
  bool HeadIsInRing() const;
  void PushRing(std::unique_ptr<UserMessageEvent>&& message);
  void PopRing(std::unique_ptr<UserMessageEvent>* message);
  void GrowRing();
  // Moves heap entries that continue the ring into it.
  void MergeHeapIntoRing();
  // The general cases of the two calls, with the heap non-empty.
  void GetNextMessageWithHeap(std::unique_ptr<UserMessageEvent>* message,
                              MessageFilter* filter);
  void AcceptMessageWithHeap(std::unique_ptr<UserMessageEvent>&& message);

  // The in-order run: entry i < ring_count_ is at
  // ring_[(ring_head_ + i) & (ring_.size() - 1)] and carries number
  // ring_end_ - ring_count_ + i. ring_.size() is 0 or a power of two; slots
  // outside the run are null.
  std::vector<std::unique_ptr<UserMessageEvent>> ring_;
  size_t ring_head_ = 0;
  size_t ring_count_ = 0;
  uint64_t ring_end_;
  // Everything else, a min-heap by sequence number (std::push_heap order).
  std::vector<std::unique_ptr<UserMessageEvent>> heap_;
  uint64_t next_sequence_num_;
  size_t total_queued_bytes_ = 0;
  bool signalable_ = true;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_MESSAGE_QUEUE_H_
