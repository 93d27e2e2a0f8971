#include "core/ports/message_queue.h"

#include <algorithm>
#include <vector>

namespace shmports::ports {
namespace {

// std::push_heap builds a max-heap; "greater" puts the smallest number on top.
bool LaterMessage(const std::unique_ptr<UserMessageEvent>& a,
                  const std::unique_ptr<UserMessageEvent>& b) {
  return a->sequence_num() > b->sequence_num();
}

}  // namespace

MessageQueue::MessageQueue(uint64_t next_sequence_num)
    : next_sequence_num_(next_sequence_num) {}

MessageQueue::~MessageQueue() = default;

bool MessageQueue::HasNextMessage() const {
  return !heap_.empty() && heap_.front()->sequence_num() == next_sequence_num_;
}

void MessageQueue::GetNextMessage(std::unique_ptr<UserMessageEvent>* message,
                                  MessageFilter* filter) {
  if (!HasNextMessage() || (filter && !filter->Match(*heap_.front()))) {
    message->reset();
    return;
  }
  std::pop_heap(heap_.begin(), heap_.end(), LaterMessage);
  *message = std::move(heap_.back());
  heap_.pop_back();
  total_queued_bytes_ -= (*message)->GetSizeIfSerialized();
  // A burst can leave a large heap behind; give it back once it drains, but
  // keep small capacities so the steady state allocates nothing.
  if (heap_.empty() && heap_.capacity() > 4096) {
    heap_.shrink_to_fit();
  }
}

void MessageQueue::AcceptMessage(std::unique_ptr<UserMessageEvent> message,
                                 bool* has_next_message) {
  total_queued_bytes_ += message->GetSizeIfSerialized();
  heap_.push_back(std::move(message));
  std::push_heap(heap_.begin(), heap_.end(), LaterMessage);
  *has_next_message = signalable_ && HasNextMessage();
}

uint64_t MessageQueue::LastContiguousSequenceNum() const {
  std::vector<uint64_t> queued;
  queued.reserve(heap_.size());
  for (const auto& message : heap_)
    queued.push_back(message->sequence_num());
  std::sort(queued.begin(), queued.end());
  uint64_t last = next_sequence_num_ - 1;
  for (uint64_t seq : queued) {
    if (seq == last + 1)
      last = seq;
    else if (seq > last + 1)
      break;
  }
  return last;
}

void MessageQueue::TakeMessagesAfter(
    uint64_t last,
    std::vector<std::unique_ptr<UserMessageEvent>>* messages) {
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
  for (auto& message : heap_)
    messages->push_back(std::move(message));
  heap_.clear();
  total_queued_bytes_ = 0;
}

}  // namespace shmports::ports
