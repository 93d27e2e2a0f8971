// MessageQueue on its own: in-order messages take the ring, out-of-order ones
// the heap, and the two behave as one queue ordered by sequence number. Each
// randomised test checks every step against a reference model with the
// queue's documented semantics (a multimap by number: the head is the
// smallest, released only when it is the next number expected), so a
// divergence names the step and the seed replays it.
#include "core/ports/message_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/ports/event.h"
#include "tests/util/test_util.h"

namespace shmports::ports {
namespace {

using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

using Messages = std::vector<std::unique_ptr<UserMessageEvent>>;

std::unique_ptr<UserMessageEvent> Make(uint64_t seq, size_t bytes = 10) {
  auto message = std::make_unique<UserMessageEvent>(0);
  message->set_sequence_num(seq);
  std::vector<uint8_t> payload(bytes, static_cast<uint8_t>(seq));
  message->message().Assign(payload);
  return message;
}

bool Accept(MessageQueue* queue, uint64_t seq, size_t bytes = 10) {
  bool has_next = false;
  queue->AcceptMessage(Make(seq, bytes), &has_next);
  return has_next;
}

// Reads (both steps) until nothing is ready; returns the numbers read.
std::vector<uint64_t> Drain(MessageQueue* queue) {
  std::vector<uint64_t> read;
  for (;;) {
    std::unique_ptr<UserMessageEvent> message;
    queue->GetNextMessage(&message, nullptr);
    if (!message)
      return read;
    read.push_back(message->sequence_num());
    queue->MessageProcessed();
  }
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> numbers;
  for (uint64_t n = first; n <= last; ++n)
    numbers.push_back(n);
  return numbers;
}

std::vector<uint64_t> SortedNumbers(const Messages& messages) {
  std::vector<uint64_t> numbers;
  for (const auto& message : messages)
    numbers.push_back(message->sequence_num());
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

// The reader's checker: numbers read must be consecutive from `first`.
// Empty when they are, else what is wrong.
std::string CheckConsecutive(const std::vector<uint64_t>& read,
                             uint64_t first) {
  for (size_t i = 0; i < read.size(); ++i) {
    if (read[i] != first + i) {
      return "read " + std::to_string(read[i]) + " at position " +
             std::to_string(i) + ", expected " + std::to_string(first + i);
    }
  }
  return {};
}

class RefusingFilter : public MessageFilter {
 public:
  bool Match(const UserMessageEvent& message) override {
    seen.push_back(message.sequence_num());
    return accept;
  }
  bool accept = false;
  std::vector<uint64_t> seen;
};

TEST(MessageQueueTest, InOrderMessagesAreReadyAsTheyArrive) {
  MessageQueue queue;
  EXPECT_FALSE(queue.HasNextMessage());
  const uint64_t n = Scaled(1000, 100);
  for (uint64_t seq = 1; seq <= n; ++seq)
    EXPECT_TRUE(Accept(&queue, seq, 7)) << seq;
  EXPECT_EQ(n, queue.queued_message_count());
  EXPECT_EQ(7 * n, queue.queued_num_bytes());
  EXPECT_EQ(n, queue.LastContiguousSequenceNum());
  EXPECT_EQ(Range(1, n), Drain(&queue));
  EXPECT_EQ(0u, queue.queued_message_count());
  EXPECT_EQ(0u, queue.queued_num_bytes());
  EXPECT_EQ(n + 1, queue.next_sequence_num());
  EXPECT_EQ(n, queue.LastContiguousSequenceNum());
}

// Reads trail the arrivals by a varying distance, so the ring wraps around
// and grows while its front is not at slot 0.
TEST(MessageQueueTest, RingWrapsAndGrowsInOrder) {
  MessageQueue queue(1000);
  uint64_t sent = 1000;
  uint64_t read = 1000;
  for (int round = 0; round < 200; ++round) {
    int accept = 1 + (round * 7) % 40;
    for (int i = 0; i < accept; ++i)
      Accept(&queue, sent++);
    int take = 1 + (round * 11) % 37;
    for (int i = 0; i < take && read < sent; ++i) {
      std::unique_ptr<UserMessageEvent> message;
      queue.GetNextMessage(&message, nullptr);
      ASSERT_TRUE(message);
      ASSERT_EQ(read, message->sequence_num());
      queue.MessageProcessed();
      ++read;
    }
    ASSERT_EQ(sent - read, queue.queued_message_count());
    ASSERT_EQ(10 * (sent - read), queue.queued_num_bytes());
  }
  std::vector<uint64_t> rest = Drain(&queue);
  EXPECT_EQ(Range(read, sent - 1), rest);
}

TEST(MessageQueueTest, GapFilledLate) {
  MessageQueue queue;
  EXPECT_TRUE(Accept(&queue, 1));
  EXPECT_EQ(std::vector<uint64_t>{1}, Drain(&queue));
  for (uint64_t seq = 3; seq <= 100; ++seq)
    EXPECT_FALSE(Accept(&queue, seq)) << seq;
  EXPECT_TRUE(Drain(&queue).empty());
  EXPECT_FALSE(queue.HasNextMessage());
  EXPECT_EQ(1u, queue.LastContiguousSequenceNum());
  EXPECT_EQ(98u, queue.queued_message_count());
  // The missing one arrives: everything behind it is ready, and the numbers
  // after it keep taking the in-order path.
  EXPECT_TRUE(Accept(&queue, 2));
  EXPECT_EQ(100u, queue.LastContiguousSequenceNum());
  EXPECT_TRUE(Accept(&queue, 101));
  EXPECT_EQ(Range(2, 101), Drain(&queue));
  EXPECT_EQ(0u, queue.queued_num_bytes());
}

// The fault a reader's checker looks for — a missing number — is injected
// and the queue holds back everything behind it; a reorder is repaired. The
// checker itself is shown to see a reorder.
TEST(MessageQueueTest, MissingNumberHoldsBackAndReorderIsRepaired) {
  ASSERT_FALSE(CheckConsecutive({1, 3, 2}, 1).empty());
  ASSERT_FALSE(CheckConsecutive({1, 2, 4}, 1).empty());
  ASSERT_TRUE(CheckConsecutive({5, 6, 7}, 5).empty());

  MessageQueue queue;
  const uint64_t n = 200;
  const uint64_t dropped = 57;
  std::vector<uint64_t> read;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    // 10/11, 30/31, ... arrive swapped; `dropped` does not arrive at all.
    uint64_t send = seq;
    if (seq % 20 == 10)
      send = seq + 1;
    else if (seq % 20 == 11)
      send = seq - 1;
    if (send == dropped)
      continue;
    Accept(&queue, send);
    std::vector<uint64_t> now = Drain(&queue);
    read.insert(read.end(), now.begin(), now.end());
  }
  EXPECT_EQ("", CheckConsecutive(read, 1));
  EXPECT_EQ(dropped - 1, read.size());
  EXPECT_FALSE(queue.HasNextMessage());
  EXPECT_EQ(dropped - 1, queue.LastContiguousSequenceNum());
  EXPECT_EQ(n - dropped, queue.queued_message_count());
  Accept(&queue, dropped);
  std::vector<uint64_t> rest = Drain(&queue);
  read.insert(read.end(), rest.begin(), rest.end());
  EXPECT_EQ("", CheckConsecutive(read, 1));
  EXPECT_EQ(n, read.size());
}

TEST(MessageQueueTest, RandomPermutationIsReadInOrder) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const uint64_t n = Scaled(3000, 300);
  for (int round = 0; round < 4; ++round) {
    std::vector<uint64_t> order = Range(1, n);
    std::shuffle(order.begin(), order.end(), rng);
    MessageQueue queue;
    std::vector<uint64_t> read;
    std::vector<size_t> sizes(n + 1);
    size_t bytes = 0;
    for (uint64_t seq : order) {
      sizes[seq] = rng() % 200;
      bytes += sizes[seq];
      Accept(&queue, seq, sizes[seq]);
      // Round 0 reads nothing until the end; the others read what is ready.
      if (round != 0) {
        for (uint64_t got : Drain(&queue)) {
          read.push_back(got);
          bytes -= sizes[got];
        }
      }
      ASSERT_EQ(bytes, queue.queued_num_bytes());
    }
    std::vector<uint64_t> rest = Drain(&queue);
    read.insert(read.end(), rest.begin(), rest.end());
    ASSERT_EQ(Range(1, n), read) << "round " << round;
    EXPECT_EQ(0u, queue.queued_num_bytes());
    EXPECT_EQ(0u, queue.queued_message_count());
  }
}

// A duplicate number is held like any message, as it always was: both
// copies count, one is read, and the other — now below the next number —
// stays at the head and holds the queue (the node refuses a number below
// the next one before it reaches the queue; a duplicate of a queued one
// wedges only the port of the peer that sent it).
TEST(MessageQueueTest, DuplicateNumbersAreHeldAsBefore) {
  for (bool duplicate_first : {false, true}) {
    SCOPED_TRACE(duplicate_first ? "duplicate arrives first"
                                 : "duplicate arrives later");
    MessageQueue queue;
    Accept(&queue, 1);
    if (duplicate_first) {
      Accept(&queue, 3, 5);
      Accept(&queue, 3, 6);
      Accept(&queue, 2);
    } else {
      Accept(&queue, 2);
      Accept(&queue, 3, 5);
      Accept(&queue, 3, 6);
    }
    Accept(&queue, 4);
    EXPECT_EQ(5u, queue.queued_message_count());
    EXPECT_EQ(41u, queue.queued_num_bytes());
    EXPECT_EQ(4u, queue.LastContiguousSequenceNum());
    EXPECT_EQ(Range(1, 3), Drain(&queue));
    EXPECT_FALSE(queue.HasNextMessage());
    EXPECT_EQ(2u, queue.queued_message_count());
    Messages all;
    queue.TakeAllMessages(&all);
    EXPECT_EQ((std::vector<uint64_t>{3, 4}), SortedNumbers(all));
    EXPECT_EQ(0u, queue.queued_num_bytes());
  }
}

TEST(MessageQueueTest, TwoStepReadHoldsTheNextNumber) {
  MessageQueue queue;
  Accept(&queue, 1);
  Accept(&queue, 2);
  std::unique_ptr<UserMessageEvent> first;
  queue.GetNextMessage(&first, nullptr);
  ASSERT_TRUE(first);
  EXPECT_EQ(1u, first->sequence_num());
  // Until the first is processed the second is not next.
  EXPECT_FALSE(queue.HasNextMessage());
  std::unique_ptr<UserMessageEvent> second;
  queue.GetNextMessage(&second, nullptr);
  EXPECT_FALSE(second);
  EXPECT_FALSE(Accept(&queue, 3));
  EXPECT_EQ(0u, queue.LastContiguousSequenceNum());
  queue.MessageProcessed();
  EXPECT_TRUE(queue.HasNextMessage());
  EXPECT_EQ(Range(2, 3), Drain(&queue));
  // The same with the ring empty while a message is out: the next arrival
  // still continues the run.
  std::unique_ptr<UserMessageEvent> out;
  Accept(&queue, 4);
  queue.GetNextMessage(&out, nullptr);
  ASSERT_TRUE(out);
  EXPECT_FALSE(Accept(&queue, 5));
  queue.MessageProcessed();
  EXPECT_TRUE(queue.HasNextMessage());
  EXPECT_EQ(std::vector<uint64_t>{5}, Drain(&queue));
}

TEST(MessageQueueTest, FilterRefusingTheHeadLeavesItQueued) {
  for (bool head_in_heap : {false, true}) {
    SCOPED_TRACE(head_in_heap ? "head came out of order" : "head in order");
    MessageQueue queue;
    if (head_in_heap) {
      Accept(&queue, 3);
      Accept(&queue, 2);
      Accept(&queue, 1);
    } else {
      Accept(&queue, 1);
      Accept(&queue, 2);
      Accept(&queue, 3);
    }
    RefusingFilter filter;
    std::unique_ptr<UserMessageEvent> message = Make(99);
    queue.GetNextMessage(&message, &filter);
    EXPECT_FALSE(message);
    EXPECT_EQ(std::vector<uint64_t>{1}, filter.seen);
    EXPECT_TRUE(queue.HasNextMessage());
    EXPECT_EQ(3u, queue.queued_message_count());
    EXPECT_EQ(30u, queue.queued_num_bytes());
    EXPECT_EQ(1u, queue.next_sequence_num());
    filter.accept = true;
    queue.GetNextMessage(&message, &filter);
    ASSERT_TRUE(message);
    EXPECT_EQ(1u, message->sequence_num());
    queue.MessageProcessed();
    EXPECT_EQ(Range(2, 3), Drain(&queue));
  }
}

TEST(MessageQueueTest, NotSignalableReportsNothingButStillOrders) {
  MessageQueue queue;
  queue.set_signalable(false);
  EXPECT_FALSE(Accept(&queue, 2));
  EXPECT_FALSE(Accept(&queue, 1));
  EXPECT_TRUE(queue.HasNextMessage());
  queue.set_signalable(true);
  EXPECT_TRUE(Accept(&queue, 3));
  EXPECT_EQ(Range(1, 3), Drain(&queue));
}

TEST(MessageQueueTest, TakeMessagesAfterCutsRingAndHeap) {
  MessageQueue queue;
  for (uint64_t seq : {1, 2, 3, 4, 5, 7, 8, 10})
    Accept(&queue, seq, static_cast<size_t>(seq));
  EXPECT_EQ(5u, queue.LastContiguousSequenceNum());
  Messages taken;
  queue.TakeMessagesAfter(3, &taken);
  EXPECT_EQ((std::vector<uint64_t>{4, 5, 7, 8, 10}), SortedNumbers(taken));
  EXPECT_EQ(3u, queue.queued_message_count());
  EXPECT_EQ(6u, queue.queued_num_bytes());
  EXPECT_EQ(3u, queue.LastContiguousSequenceNum());
  // The run continues from the cut.
  EXPECT_TRUE(Accept(&queue, 4, 4));
  EXPECT_EQ(4u, queue.LastContiguousSequenceNum());
  EXPECT_EQ(Range(1, 4), Drain(&queue));

  // A cut beyond the ring takes only from the heap.
  for (uint64_t seq : {5, 6, 9, 7, 12})
    Accept(&queue, seq, 1);
  taken.clear();
  queue.TakeMessagesAfter(8, &taken);
  EXPECT_EQ((std::vector<uint64_t>{9, 12}), SortedNumbers(taken));
  EXPECT_EQ(Range(5, 7), Drain(&queue));
  EXPECT_EQ(0u, queue.queued_num_bytes());

  // A cut below everything queued takes everything; nothing to take is fine.
  Accept(&queue, 8, 2);
  Accept(&queue, 10, 3);
  taken.clear();
  queue.TakeMessagesAfter(7, &taken);
  EXPECT_EQ((std::vector<uint64_t>{8, 10}), SortedNumbers(taken));
  queue.TakeMessagesAfter(7, &taken);
  EXPECT_EQ(2u, taken.size());
  EXPECT_EQ(0u, queue.queued_message_count());
  EXPECT_EQ(0u, queue.queued_num_bytes());
}

TEST(MessageQueueTest, TakeAllMessagesEmptiesRingAndHeap) {
  MessageQueue queue;
  for (uint64_t seq : {1, 2, 3, 6, 5, 9})
    Accept(&queue, seq, 3);
  Messages all;
  queue.TakeAllMessages(&all);
  EXPECT_EQ((std::vector<uint64_t>{1, 2, 3, 5, 6, 9}), SortedNumbers(all));
  EXPECT_EQ(0u, queue.queued_message_count());
  EXPECT_EQ(0u, queue.queued_num_bytes());
  EXPECT_FALSE(queue.HasNextMessage());
  EXPECT_EQ(0u, queue.LastContiguousSequenceNum());
  // Still usable afterwards.
  EXPECT_TRUE(Accept(&queue, 1));
  EXPECT_EQ(std::vector<uint64_t>{1}, Drain(&queue));
}

TEST(MessageQueueTest, BurstStorageIsGivenBackAndTheQueueStillWorks) {
  MessageQueue queue;
  uint64_t seq = 1;
  for (int round = 0; round < 3; ++round) {
    const uint64_t first = seq;
    const uint64_t burst = 10000;
    // Mostly in order, with a slice out of order so both parts grow.
    for (uint64_t i = 0; i < burst; ++i) {
      uint64_t n = first + i;
      if (i >= 100 && i < 5100)
        n = first + 5099 - (i - 100);
      Accept(&queue, n, 1);
    }
    seq = first + burst;
    EXPECT_EQ(burst, queue.queued_message_count());
    EXPECT_EQ(Range(first, seq - 1), Drain(&queue));
    EXPECT_EQ(0u, queue.queued_num_bytes());
  }
}

// The reference: a multimap by number holding which event was accepted.
struct Model {
  std::multimap<uint64_t, const UserMessageEvent*> queued;
  uint64_t next = kInitialSequenceNum;
  size_t bytes = 0;

  bool HasNext() const {
    return !queued.empty() && queued.begin()->first == next;
  }
  uint64_t LastContiguous() const {
    uint64_t last = next - 1;
    for (const auto& [seq, message] : queued) {
      if (seq == last + 1)
        last = seq;
      else if (seq > last + 1)
        break;
    }
    return last;
  }
  // Removes the entry for `message`; false if it is not queued.
  bool Remove(const UserMessageEvent* message) {
    auto [begin, end] = queued.equal_range(message->sequence_num());
    for (auto it = begin; it != end; ++it) {
      if (it->second == message) {
        bytes -= message->GetSizeIfSerialized();
        queued.erase(it);
        return true;
      }
    }
    return false;
  }
};

void ExpectSame(const MessageQueue& queue, const Model& model) {
  ASSERT_EQ(model.queued.size(), queue.queued_message_count());
  ASSERT_EQ(model.bytes, queue.queued_num_bytes());
  ASSERT_EQ(model.next, queue.next_sequence_num());
  ASSERT_EQ(model.HasNext(), queue.HasNextMessage());
  ASSERT_EQ(model.LastContiguous(), queue.LastContiguousSequenceNum());
}

// Random operations against the model: a sender that mostly sends in order
// but holds some numbers back and sends them late, reads in one or two
// steps, refused reads, and the node-loss cuts. With `faults`, duplicates
// and numbers below the next one are injected too; once one wedges the
// queue (as it always did) everything is taken and the run goes on.
void RunAgainstModel(uint64_t seed, bool faults) {
  std::mt19937_64 rng(seed);
  MessageQueue queue;
  Model model;
  uint64_t send_next = kInitialSequenceNum;
  std::vector<uint64_t> delayed;
  std::unique_ptr<UserMessageEvent> out;  // taken, not processed yet
  const uint64_t steps = Scaled(20000, 2000);
  auto take = [&](Messages* taken) {
    for (const auto& message : *taken)
      ASSERT_TRUE(model.Remove(message.get())) << message->sequence_num();
  };
  for (uint64_t step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    uint64_t op = rng() % 100;
    if (op < 60) {
      uint64_t seq;
      if (!delayed.empty() && rng() % 3 == 0) {
        size_t i = rng() % delayed.size();
        seq = delayed[i];
        delayed.erase(delayed.begin() + static_cast<ptrdiff_t>(i));
      } else {
        // Rare enough that the queue often holds a long in-order run.
        while (delayed.size() < 16 && rng() % 24 == 0)
          delayed.push_back(send_next++);
        seq = send_next++;
      }
      if (faults && rng() % 50 == 0) {
        // A duplicate of the head, or a number at or just below the next.
        if (!model.queued.empty() && rng() % 2)
          seq = model.queued.begin()->first;
        else
          seq = std::max<uint64_t>(model.next, 3) - rng() % 3;
      }
      auto message = Make(seq, rng() % 300);
      model.queued.emplace(seq, message.get());
      model.bytes += message->GetSizeIfSerialized();
      bool has_next = false;
      queue.AcceptMessage(std::move(message), &has_next);
      ASSERT_EQ(model.HasNext(), has_next);
    } else if (op < 90) {
      if (out) {
        queue.MessageProcessed();
        ++model.next;
        out.reset();
      } else {
        RefusingFilter filter;
        filter.accept = rng() % 8 != 0;
        queue.GetNextMessage(&out, rng() % 2 ? &filter : nullptr);
        bool refused = !filter.seen.empty() && !filter.accept;
        ASSERT_EQ(model.HasNext() && !refused, out != nullptr);
        if (out) {
          ASSERT_EQ(model.next, out->sequence_num());
          ASSERT_TRUE(model.Remove(out.get()));
          // Half the reads are one step.
          if (rng() % 2) {
            queue.MessageProcessed();
            ++model.next;
            out.reset();
          }
        }
      }
    } else if (op < 92) {
      // The node cuts at the last contiguous number; any point is allowed.
      uint64_t last = queue.LastContiguousSequenceNum();
      if (rng() % 2)
        last = model.next - 1 + rng() % (model.queued.size() + 2);
      Messages taken;
      queue.TakeMessagesAfter(last, &taken);
      take(&taken);
      for (const auto& message : taken)
        ASSERT_GT(message->sequence_num(), last);
      // What was cut off is sent again later, as a new route would.
      for (const auto& message : taken) {
        if (message->sequence_num() >= model.next)
          delayed.push_back(message->sequence_num());
      }
    } else if (op < 93 || (faults && !model.queued.empty() &&
                           model.queued.begin()->first < model.next)) {
      Messages taken;
      queue.TakeAllMessages(&taken);
      take(&taken);
      ASSERT_TRUE(model.queued.empty());
      for (const auto& message : taken) {
        if (message->sequence_num() >= model.next)
          delayed.push_back(message->sequence_num());
      }
    }
    ExpectSame(queue, model);
    if (::testing::Test::HasFatalFailure())
      return;
  }
}

TEST(MessageQueueTest, MatchesTheModelUnderReorderAndCuts) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RunAgainstModel(seed, /*faults=*/false);
}

TEST(MessageQueueTest, MatchesTheModelWithDuplicatesAndStaleNumbers) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  RunAgainstModel(seed, /*faults=*/true);
}

// The model check sees a queue that breaks its order: a fault injected by
// using the queue wrongly (MessageProcessed twice skips a number).
TEST(MessageQueueTest, ModelCheckSeesASkippedNumber) {
  MessageQueue queue;
  Model model;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    auto message = Make(seq);
    model.queued.emplace(seq, message.get());
    model.bytes += message->GetSizeIfSerialized();
    bool has_next = false;
    queue.AcceptMessage(std::move(message), &has_next);
  }
  std::unique_ptr<UserMessageEvent> out;
  queue.GetNextMessage(&out, nullptr);
  ASSERT_TRUE(out);
  ASSERT_TRUE(model.Remove(out.get()));
  queue.MessageProcessed();
  queue.MessageProcessed();  // the fault
  ++model.next;
  EXPECT_NE(model.next, queue.next_sequence_num());
  EXPECT_NE(model.HasNext(), queue.HasNextMessage());
}

}  // namespace
}  // namespace shmports::ports
