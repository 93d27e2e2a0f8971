// The receive path's buffer hand-over: a fragmented UserMessage reassembled
// in split mode (FragmentAssembler::kSplitUserPayload) is decoded by
// adopting the assembler's payload block (Event::Deserialize(head, body)),
// and UserMessage::TakeBytes hands that same block on (to the PipeMessage).
// What this relies on and checks: the bytes are intact whatever the fragment
// cut, the block is the one the fragments were copied into (no copy on the
// way), and the split decode refuses exactly what the whole decode refuses
// (flipped bytes, truncation, lying port counts), seeded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "channel/fragment.h"
#include "core/ports/event.h"
#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ports::Event;
using ports::EventType;
using ports::PortDescriptor;
using ports::PortName;
using ports::ScopedEvent;
using ports::UserMessage;
using ports::UserMessageEvent;
using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

std::vector<uint8_t> Pattern(size_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> out(n);
  for (auto& b : out)
    b = static_cast<uint8_t>(rng());
  return out;
}

// A serialised UserMessage with `num_ports` ports and `size` payload bytes.
std::vector<uint8_t> SerializedMessage(size_t num_ports,
                                       size_t size,
                                       std::mt19937_64& rng) {
  UserMessageEvent event(num_ports);
  event.set_port_name(PortName(rng(), rng()));
  event.set_from_port(PortName(rng(), rng()));
  event.set_control_sequence_num(rng());
  event.set_sequence_num(rng());
  for (size_t i = 0; i < num_ports; ++i) {
    event.ports()[i] = PortName(rng(), rng());
    PortDescriptor& d = event.port_descriptors()[i];
    d.peer_port_name = PortName(rng(), rng());
    d.next_sequence_num_to_send = rng();
    d.peer_closed = rng() % 2 == 0;
  }
  event.message().Assign(std::span<const uint8_t>(Pattern(size, rng)));
  std::vector<uint8_t> bytes = event.SerializeToVector();
  // SerializeToVector and Serialize write the same bytes.
  std::vector<uint8_t> again(event.GetSerializedSize(), 0xEE);
  EXPECT_TRUE(event.Serialize(again).ok());
  EXPECT_EQ(bytes, again);
  return bytes;
}

struct Reassembled {
  Status status;  // Of the assembler; OK when complete.
  FragmentAssembler::Parts parts;
  const uint8_t* body_block = nullptr;
};

Reassembled Reassemble(const std::vector<std::vector<uint8_t>>& fragments,
                       FragmentAssembler::Mode mode) {
  FragmentAssembler assembler(kDefaultMaxMessageBytes, mode);
  Reassembled out;
  for (size_t i = 0; i < fragments.size(); ++i) {
    auto done = assembler.Accept(fragments[i]);
    if (!done.ok()) {
      out.status = done.status();
      return out;
    }
    if (*done) {
      out.parts = assembler.TakeParts();
      out.body_block = out.parts.body.data();
      if (i + 1 != fragments.size())
        out.status = InternalError("stream completed early");
      return out;
    }
  }
  out.status = UnavailableError("stream not complete");
  return out;
}

// Decodes `bytes` both ways (whole, and split through the assembler at
// `max_frame`); expects the same verdict and, when accepted, the same event.
void ExpectSameVerdict(const std::vector<uint8_t>& bytes, uint32_t max_frame) {
  auto whole = Event::Deserialize(std::span<const uint8_t>(bytes), 0);
  Reassembled r = Reassemble(SplitIntoFragments(bytes, max_frame),
                             FragmentAssembler::Mode::kSplitUserPayload);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  auto split = Event::Deserialize(r.parts.head, std::move(r.parts.body), 0);
  ASSERT_EQ(whole.ok(), split.ok())
      << (whole.ok() ? split.status() : whole.status()).ToString();
  if (!whole.ok()) {
    EXPECT_EQ(whole.status().code(), split.status().code());
    EXPECT_EQ(whole.status().ToString(), split.status().ToString());
    return;
  }
  EXPECT_EQ((*whole)->SerializeToVector(), (*split)->SerializeToVector());
}

TEST(PayloadAdoptionTest, UserMessageAdoptsAndHandsOnTheSameBlock) {
  std::mt19937_64 rng(1);
  std::vector<uint8_t> big = Pattern(UserMessage::kInlineCapacity + 1, rng);
  const std::vector<uint8_t> expected = big;
  const uint8_t* block = big.data();
  UserMessage m;
  m.Adopt(std::move(big));
  EXPECT_EQ(m.data(), block);
  EXPECT_EQ(std::vector<uint8_t>(m.bytes().begin(), m.bytes().end()), expected);
  UserMessage copy(m);  // A copy has its own block.
  EXPECT_NE(copy.data(), block);
  std::vector<uint8_t> taken = m.TakeBytes();
  EXPECT_EQ(taken.data(), block);
  EXPECT_EQ(taken, expected);
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(copy.TakeBytes(), expected);

  // Small payloads live inline and are copied out.
  std::vector<uint8_t> small = Pattern(UserMessage::kInlineCapacity, rng);
  UserMessage s;
  s.Adopt(std::vector<uint8_t>(small));
  EXPECT_EQ(s.TakeBytes(), small);
  s.Assign(std::string_view("again"));
  EXPECT_EQ(s.AsStringView(), "again");
}

TEST(PayloadAdoptionTest, LargeMessageIntactAcrossFragmentBoundaries) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  for (uint64_t trial = 0; trial < Scaled(60, 10); ++trial) {
    SCOPED_TRACE(trial);
    const size_t num_ports = trial % 3 == 0 ? rng() % 5 : 0;
    const size_t size = rng() % (trial % 4 == 0 ? 2000 : 600 * 1024);
    // Cuts from one byte per fragment (the head then spans many) up.
    const uint32_t max_frame = static_cast<uint32_t>(
        kFragmentHeaderSize + 1 +
        (trial % 5 == 0 ? rng() % 200 : rng() % (256 * 1024)));
    if (size / (max_frame - kFragmentHeaderSize) > 20000)
      continue;  // Too many tiny fragments for a unit test.
    std::vector<uint8_t> bytes = SerializedMessage(num_ports, size, rng);
    Reassembled r = Reassemble(SplitIntoFragments(bytes, max_frame),
                               FragmentAssembler::Mode::kSplitUserPayload);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    ASSERT_EQ(r.parts.head.size(), ports::kEventHeaderSize +
                                       ports::kUserMessageFixedSize +
                                       num_ports * ports::kSerializedPortSize);
    auto event = Event::Deserialize(r.parts.head, std::move(r.parts.body), 0);
    ASSERT_TRUE(event.ok()) << event.status().ToString();
    ASSERT_EQ((*event)->type(), EventType::kUserMessage);
    EXPECT_EQ((*event)->SerializeToVector(), bytes);
    auto message = ports::EventCast<UserMessageEvent>(&*event);
    ASSERT_EQ(message->message().size(), size);
    if (size > UserMessage::kInlineCapacity) {
      // Adopted, then handed on: the block the fragments were copied into.
      EXPECT_EQ(message->message().data(), r.body_block);
      std::vector<uint8_t> taken = message->message().TakeBytes();
      EXPECT_EQ(taken.data(), r.body_block);
      EXPECT_TRUE(std::equal(taken.begin(), taken.end(),
                             bytes.end() - static_cast<ptrdiff_t>(size)));
    }

    // Whole mode still gives one contiguous buffer.
    Reassembled w = Reassemble(SplitIntoFragments(bytes, max_frame),
                               FragmentAssembler::Mode::kWhole);
    ASSERT_TRUE(w.status.ok());
    EXPECT_TRUE(w.parts.head.empty());
    EXPECT_EQ(w.parts.body, bytes);
  }
}

TEST(PayloadAdoptionTest, SplitDecodeRefusesWhatWholeDecodeRefuses) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  for (uint64_t trial = 0; trial < Scaled(400, 40); ++trial) {
    SCOPED_TRACE(trial);
    const size_t num_ports = rng() % 3;
    std::vector<uint8_t> bytes =
        SerializedMessage(num_ports, 200 + rng() % 3000, rng);
    const uint32_t max_frame =
        static_cast<uint32_t>(kFragmentHeaderSize + 1 + rng() % 1500);
    switch (trial % 4) {
      case 0:  // A flipped byte anywhere.
        bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
        break;
      case 1:  // Truncated (the fragments announce the shorter total).
        bytes.resize(rng() % bytes.size() + 1);
        break;
      case 2: {  // A lying port count.
        const uint32_t claimed = static_cast<uint32_t>(rng());
        for (int i = 0; i < 4; ++i)
          bytes[ports::kEventHeaderSize + 8 + i] =
              static_cast<uint8_t>(claimed >> (8 * i));
        break;
      }
      case 3:  // A descriptor's peer_closed byte that is neither 0 nor 1.
        if (num_ports > 0) {
          bytes[ports::kEventHeaderSize + ports::kUserMessageFixedSize + 88] =
              static_cast<uint8_t>(2 + rng() % 254);
        }
        break;
    }
    ExpectSameVerdict(bytes, max_frame);
  }
}

TEST(PayloadAdoptionTest, InjectedFaultsAreRefusedAfterSplitReassembly) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> bytes = SerializedMessage(2, 100000, rng);
  const uint32_t max_frame = 4096;

  // The second descriptor's peer_closed byte flipped to 2: kCorrupt.
  std::vector<uint8_t> flipped = bytes;
  flipped[ports::kEventHeaderSize + ports::kUserMessageFixedSize +
          ports::kPortDescriptorSize + 88] = 2;
  Reassembled r = Reassemble(SplitIntoFragments(flipped, max_frame),
                             FragmentAssembler::Mode::kSplitUserPayload);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  auto decoded = Event::Deserialize(r.parts.head, std::move(r.parts.body), 0);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorrupt);

  // Cut so short that the ports no longer fit: refused, not adopted.
  std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + 100);
  r = Reassemble(SplitIntoFragments(truncated, 40),
                 FragmentAssembler::Mode::kSplitUserPayload);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  // The claimed ports do not fit: the head stays at the header and fixed
  // payload, and the decoder joins the parts.
  EXPECT_EQ(r.parts.head.size(),
            ports::kEventHeaderSize + ports::kUserMessageFixedSize);
  decoded = Event::Deserialize(r.parts.head, std::move(r.parts.body), 0);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorrupt);

  // A stream missing its last fragment never completes.
  auto fragments = SplitIntoFragments(bytes, max_frame);
  fragments.pop_back();
  r = Reassemble(fragments, FragmentAssembler::Mode::kSplitUserPayload);
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);

  // A type from a newer minor is still told apart when split.
  const uint16_t table[ports::kNumEventTypes] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
  r = Reassemble(SplitIntoFragments(bytes, max_frame),
                 FragmentAssembler::Mode::kSplitUserPayload);
  ASSERT_TRUE(r.status.ok());
  decoded = Event::Deserialize(r.parts.head, std::move(r.parts.body), 0,
                               std::span<const uint16_t>(table));
  ASSERT_FALSE(decoded.ok());
  EXPECT_TRUE(ports::IsEventFromNewerMinor(decoded.status()));
}

TEST(PayloadAdoptionTest, ArbitrarySplitDecodesAsJoined) {
  // A head that does not end at the user payload is joined, not adopted.
  std::mt19937_64 rng(11);
  std::vector<uint8_t> bytes = SerializedMessage(1, 5000, rng);
  for (size_t cut : {size_t{1}, size_t{47}, size_t{64}, size_t{177},
                     size_t{1000}, bytes.size()}) {
    SCOPED_TRACE(cut);
    std::vector<uint8_t> head(bytes.begin(),
                              bytes.begin() + static_cast<ptrdiff_t>(cut));
    std::vector<uint8_t> body(bytes.begin() + static_cast<ptrdiff_t>(cut),
                              bytes.end());
    auto decoded = Event::Deserialize(head, std::move(body), 0);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ((*decoded)->SerializeToVector(), bytes);
  }
}

}  // namespace
}  // namespace shmports::channel
