#include "core/ports/message_queue.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace shmports::ports {
namespace {

// std::push_heap builds a max-heap; "greater" puts the smallest number on top.
bool LaterMessage(const std::unique_ptr<UserMessageEvent>& a,
                  const std::unique_ptr<UserMessageEvent>& b) {
  return a->sequence_num() > b->sequence_num();
}

constexpr size_t kMinRingCapacity = 16;
// A burst can leave large storage behind; it is given back once drained, but
// small capacities stay so the steady state allocates nothing.
constexpr size_t kKeepCapacity = 4096;

}  // namespace

MessageQueue::MessageQueue(uint64_t next_sequence_num)
    : ring_end_(next_sequence_num), next_sequence_num_(next_sequence_num) {}

MessageQueue::~MessageQueue() = default;

// The helpers are defined before their callers so that the per-message path
// compiles to straight-line code.
inline uint64_t MessageQueue::RingNextNumber() const {
  if (ring_count_ != 0)
    return ring_end_;
  // An empty ring restarts at the next number expected, unless that message
  // was taken and is not processed yet (then ring_end_ is one above it).
  return std::max(ring_end_, next_sequence_num_);
}

inline bool MessageQueue::HeadIsInRing() const {
  if (ring_count_ == 0)
    return false;
  return heap_.empty() ||
         ring_end_ - ring_count_ <= heap_.front()->sequence_num();
}

bool MessageQueue::HasNextMessage() const {
  if (heap_.empty())
    return ring_count_ != 0 && ring_end_ - ring_count_ == next_sequence_num_;
  if (HeadIsInRing())
    return ring_end_ - ring_count_ == next_sequence_num_;
  return heap_.front()->sequence_num() == next_sequence_num_;
}

inline void MessageQueue::PushRing(
    std::unique_ptr<UserMessageEvent>&& message) {
  if (ring_count_ == ring_.size())
    GrowRing();
  ring_end_ = message->sequence_num() + 1;
  ring_[(ring_head_ + ring_count_) & (ring_.size() - 1)] = std::move(message);
  ++ring_count_;
}

inline void MessageQueue::PopRing(std::unique_ptr<UserMessageEvent>* message) {
  *message = std::move(ring_[ring_head_]);
  ring_head_ = (ring_head_ + 1) & (ring_.size() - 1);
  if (--ring_count_ == 0) {
    ring_head_ = 0;
    if (ring_.size() > kKeepCapacity)
      std::vector<std::unique_ptr<UserMessageEvent>>().swap(ring_);
  }
}

void MessageQueue::GrowRing() {
  std::vector<std::unique_ptr<UserMessageEvent>> grown(
      std::max(kMinRingCapacity, ring_.size() * 2));
  for (size_t i = 0; i < ring_count_; ++i)
    grown[i] = std::move(ring_[(ring_head_ + i) & (ring_.size() - 1)]);
  ring_.swap(grown);
  ring_head_ = 0;
}

void MessageQueue::MergeHeapIntoRing() {
  while (!heap_.empty() && heap_.front()->sequence_num() == ring_end_) {
    std::pop_heap(heap_.begin(), heap_.end(), LaterMessage);
    PushRing(std::move(heap_.back()));
    heap_.pop_back();
  }
  if (heap_.empty() && heap_.capacity() > kKeepCapacity)
    heap_.shrink_to_fit();
}

void MessageQueue::GetNextMessageWithHeap(
    std::unique_ptr<UserMessageEvent>* message,
    MessageFilter* filter) {
  // On a tie (a duplicate number) the ring's entry goes first.
  bool from_ring = HeadIsInRing();
  bool ready = from_ring ? ring_end_ - ring_count_ == next_sequence_num_
                         : heap_.front()->sequence_num() == next_sequence_num_;
  if (!ready || (filter && !filter->Match(from_ring ? *ring_[ring_head_]
                                                    : *heap_.front()))) {
    message->reset();
    return;
  }
  if (from_ring) {
    PopRing(message);
  } else {
    std::pop_heap(heap_.begin(), heap_.end(), LaterMessage);
    *message = std::move(heap_.back());
    heap_.pop_back();
    if (heap_.empty() && heap_.capacity() > kKeepCapacity)
      heap_.shrink_to_fit();
  }
  total_queued_bytes_ -= (*message)->GetSizeIfSerialized();
}

void MessageQueue::GetNextMessage(std::unique_ptr<UserMessageEvent>* message,
                                  MessageFilter* filter) {
  if (!heap_.empty()) {
    GetNextMessageWithHeap(message, filter);
    return;
  }
  // Everything is in the ring: the in-order steady state.
  if (ring_count_ == 0 || ring_end_ - ring_count_ != next_sequence_num_ ||
      (filter && !filter->Match(*ring_[ring_head_]))) {
    message->reset();
    return;
  }
  PopRing(message);
  total_queued_bytes_ -= (*message)->GetSizeIfSerialized();
}

void MessageQueue::AcceptMessageWithHeap(
    std::unique_ptr<UserMessageEvent>&& message) {
  if (message->sequence_num() == RingNextNumber()) {
    PushRing(std::move(message));
    MergeHeapIntoRing();
  } else {
    heap_.push_back(std::move(message));
    std::push_heap(heap_.begin(), heap_.end(), LaterMessage);
  }
}

void MessageQueue::AcceptMessage(std::unique_ptr<UserMessageEvent> message,
                                 bool* has_next_message) {
  total_queued_bytes_ += message->GetSizeIfSerialized();
  if (heap_.empty() && message->sequence_num() == RingNextNumber()) {
    PushRing(std::move(message));
    *has_next_message =
        signalable_ && ring_end_ - ring_count_ == next_sequence_num_;
    return;
  }
  AcceptMessageWithHeap(std::move(message));
  *has_next_message = signalable_ && HasNextMessage();
}

uint64_t MessageQueue::LastContiguousSequenceNum() const {
  // The ring is one span of consecutive numbers; each heap entry is a span
  // of one.
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  spans.reserve(heap_.size() + 1);
  if (ring_count_ != 0)
    spans.emplace_back(ring_end_ - ring_count_, ring_end_ - 1);
  for (const auto& message : heap_)
    spans.emplace_back(message->sequence_num(), message->sequence_num());
  std::sort(spans.begin(), spans.end());
  uint64_t last = next_sequence_num_ - 1;
  for (const auto& [first, end] : spans) {
    if (first > last + 1)
      break;
    last = std::max(last, end);
  }
  return last;
}

void MessageQueue::TakeMessagesAfter(
    uint64_t last,
    std::vector<std::unique_ptr<UserMessageEvent>>* messages) {
  // In the ring, the messages numbered above `last` are a suffix.
  if (ring_count_ != 0) {
    uint64_t first = ring_end_ - ring_count_;
    size_t keep = 0;
    if (last >= first)
      keep = last - first >= ring_count_ ? ring_count_ : last - first + 1;
    for (size_t i = keep; i < ring_count_; ++i) {
      auto& slot = ring_[(ring_head_ + i) & (ring_.size() - 1)];
      total_queued_bytes_ -= slot->GetSizeIfSerialized();
      messages->push_back(std::move(slot));
    }
    ring_count_ = keep;
    ring_end_ = first + keep;
    if (ring_count_ == 0)
      ring_head_ = 0;
  }
  auto beyond =
      std::partition(heap_.begin(), heap_.end(),
                     [last](const std::unique_ptr<UserMessageEvent>& message) {
                       return message->sequence_num() <= last;
                     });
  if (beyond == heap_.end())
    return;
  for (auto it = beyond; it != heap_.end(); ++it) {
    total_queued_bytes_ -= (*it)->GetSizeIfSerialized();
    messages->push_back(std::move(*it));
  }
  heap_.erase(beyond, heap_.end());
  std::make_heap(heap_.begin(), heap_.end(), LaterMessage);
}

void MessageQueue::TakeAllMessages(
    std::vector<std::unique_ptr<UserMessageEvent>>* messages) {
  ring_end_ -= ring_count_;
  while (ring_count_ != 0) {
    messages->emplace_back();
    PopRing(&messages->back());
  }
  for (auto& message : heap_)
    messages->push_back(std::move(message));
  heap_.clear();
  total_queued_bytes_ = 0;
}

}  // namespace shmports::ports
