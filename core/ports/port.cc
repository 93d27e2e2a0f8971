#include "core/ports/port.h"

#include <algorithm>

namespace shmports::ports {

Port::Port(uint64_t next_sequence_num_to_send,
           uint64_t next_sequence_num_to_receive)
    : next_sequence_num_to_send(next_sequence_num_to_send),
      last_sequence_num_acknowledged(next_sequence_num_to_send - 1),
      message_queue(next_sequence_num_to_receive) {}

Port::~Port() = default;

bool Port::IsNextEvent(const NodeName& from_node, const Event& event) const {
  return from_node == prev_node_name && event.from_port() == prev_port_name &&
         event.control_sequence_num() == next_control_sequence_num_to_receive;
}

bool Port::PrevLostWith(const NodeName& lost_node, const NodeName& self) const {
  if (prev_node_name == lost_node)
    return true;
  // A previous peer on this node that never arrived is awaited_prevs_'s.
  return prev_announced_by == lost_node && prev_node_name != self &&
         next_control_sequence_num_to_receive == kInitialSequenceNum;
}

void Port::EndStreamIfPeerLost() {
  if (peer_lost_unexpectedly)
    last_sequence_num_to_receive = message_queue.LastContiguousSequenceNum();
}

bool PeerEventBudget::TryCharge(const NodeName& peer, size_t bytes) {
  MutexLock lock(&mutex_);
  Use& use = use_[peer];
  if (use.events + 1 > max_events_ || bytes > max_bytes_ ||
      use.bytes > max_bytes_ - bytes) {
    if (use.events == 0)
      use_.erase(peer);
    return false;
  }
  ++use.events;
  use.bytes += bytes;
  return true;
}

void PeerEventBudget::Release(const NodeName& peer, size_t bytes) {
  MutexLock lock(&mutex_);
  auto it = use_.find(peer);
  if (it == use_.end())
    return;
  it->second.bytes -= std::min(bytes, it->second.bytes);
  if (--it->second.events == 0)
    use_.erase(it);
}

void PeerEventBudget::Largest(size_t* events, size_t* bytes) {
  MutexLock lock(&mutex_);
  *events = 0;
  *bytes = 0;
  for (const auto& [peer, use] : use_) {
    *events = std::max(*events, use.events);
    *bytes = std::max(*bytes, use.bytes);
  }
}

bool Port::BufferEvent(const NodeName& from_node,
                       ScopedEvent event,
                       size_t max_buffered) {
  auto sender_it = buffered_per_sender_.find(from_node);
  if (sender_it != buffered_per_sender_.end() &&
      sender_it->second >= max_buffered) {
    return false;
  }
  auto key = SenderKey(from_node, event->from_port());
  auto queue_it = control_event_queues_.find(key);
  uint64_t seq = event->control_sequence_num();
  // A duplicate number from the same sender replaces nothing: the first one
  // stays (an honest sender never repeats a number).
  if (queue_it != control_event_queues_.end() &&
      queue_it->second.count(seq) != 0) {
    return true;
  }
  size_t bytes = event->GetSerializedSize();
  if (budget != nullptr && !budget->TryCharge(from_node, bytes))
    return false;
  control_event_queues_[key].emplace(
      seq, std::make_pair(from_node, std::move(event)));
  ++buffered_per_sender_[from_node];
  ++buffered_event_count_;
  buffered_event_bytes_ += bytes;
  return true;
}

void Port::NextEvent(NodeName* from_node, ScopedEvent* event) {
  auto it = control_event_queues_.find({prev_node_name, prev_port_name});
  if (it == control_event_queues_.end())
    return;
  auto& queue = it->second;
  auto head = queue.begin();
  if (head == queue.end() ||
      head->first != next_control_sequence_num_to_receive) {
    return;
  }
  *from_node = head->second.first;
  *event = std::move(head->second.second);
  queue.erase(head);
  if (queue.empty())
    control_event_queues_.erase(it);
  Unbuffer(*from_node, (*event)->GetSerializedSize());
}

void Port::Unbuffer(const NodeName& node, size_t bytes) {
  auto sender_it = buffered_per_sender_.find(node);
  if (sender_it != buffered_per_sender_.end() && --sender_it->second == 0)
    buffered_per_sender_.erase(sender_it);
  --buffered_event_count_;
  buffered_event_bytes_ -= bytes;
  if (budget != nullptr)
    budget->Release(node, bytes);
}

size_t Port::buffered_event_count_from(const NodeName& node) const {
  auto it = buffered_per_sender_.find(node);
  return it == buffered_per_sender_.end() ? 0 : it->second;
}

void Port::DiscardEventsFrom(const NodeName& node,
                             std::vector<PendingMessage>* messages) {
  if (buffered_per_sender_.count(node) == 0)
    return;
  for (auto it = control_event_queues_.begin();
       it != control_event_queues_.end();) {
    // The queue's key names the sending node (each entry repeats it).
    if (it->first.first != node) {
      ++it;
      continue;
    }
    for (auto& [seq, entry] : it->second) {
      Unbuffer(entry.first, entry.second->GetSerializedSize());
      if (entry.second->type() == EventType::kUserMessage) {
        messages->emplace_back(entry.first,
                               EventCast<UserMessageEvent>(&entry.second));
      }
    }
    it = control_event_queues_.erase(it);
  }
}

bool Port::AdoptBufferedSenderAfterLoss(const NodeName& lost_node) {
  const SenderKey* chosen = nullptr;
  for (const auto& [key, queue] : control_event_queues_) {
    if (queue.empty() || queue.begin()->first != kInitialSequenceNum)
      continue;
    if (key.first == prev_node_name && key.second == prev_port_name)
      continue;
    if (chosen == nullptr ||
        (chosen->first == lost_node && key.first != lost_node))
      chosen = &key;
  }
  if (chosen == nullptr)
    return false;
  prev_node_name = chosen->first;
  prev_port_name = chosen->second;
  prev_announced_by = NodeName();
  next_control_sequence_num_to_receive = kInitialSequenceNum;
  return true;
}

void Port::TakePendingMessages(std::vector<PendingMessage>* messages) {
  for (auto& [key, queue] : control_event_queues_) {
    for (auto& [seq, entry] : queue) {
      if (budget != nullptr)
        budget->Release(entry.first, entry.second->GetSerializedSize());
      if (entry.second->type() == EventType::kUserMessage) {
        messages->emplace_back(entry.first,
                               EventCast<UserMessageEvent>(&entry.second));
      }
    }
  }
  control_event_queues_.clear();
  buffered_per_sender_.clear();
  buffered_event_count_ = 0;
  buffered_event_bytes_ = 0;
}

}  // namespace shmports::ports
