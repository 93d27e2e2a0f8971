#include "channel/fragment.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/util/test_util.h"

namespace shmports::channel {
namespace {

using ::shmports::testing::Scaled;
using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

std::vector<uint8_t> Pattern(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out)
    b = static_cast<uint8_t>(rng());
  return out;
}

std::span<const uint8_t> Data(const std::vector<uint8_t>& v) {
  return std::span<const uint8_t>(v.data(), v.size());
}

// Feeds fragments; returns the first error, or the completed message.
Result<std::vector<uint8_t>> Feed(
    FragmentAssembler& assembler,
    const std::vector<std::vector<uint8_t>>& fragments) {
  for (size_t i = 0; i < fragments.size(); ++i) {
    SHMPORTS_ASSIGN_OR_RETURN(bool done, assembler.Accept(fragments[i]));
    if (done) {
      if (i + 1 != fragments.size())
        return InternalError("stream completed early");
      return assembler.TakeMessage();
    }
  }
  return UnavailableError("stream not complete");
}

void ExpectViolation(const Result<std::vector<uint8_t>>& result,
                     const std::string& text) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kProtocolViolation)
      << result.status().ToString();
  EXPECT_NE(result.status().text().find(text), std::string::npos)
      << result.status().ToString();
}

TEST(FragmentTest, HeaderRoundTrips) {
  std::vector<uint8_t> bytes =
      EncodeFragment(0x0102030405060708ull, 77, std::vector<uint8_t>{9});
  ASSERT_EQ(bytes.size(), kFragmentHeaderSize + 1);
  EXPECT_EQ(bytes[0], 0x08);  // Little-endian on the wire.
  auto header = ReadFragmentHeader(bytes);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_EQ(header->total, 0x0102030405060708ull);
  EXPECT_EQ(header->offset, 77u);
}

TEST(FragmentTest, SplitAndReassembleRandomSizes) {
  uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  FragmentAssembler assembler(kDefaultMaxMessageBytes);
  for (uint64_t trial = 0; trial < Scaled(200, 20); ++trial) {
    size_t size = 1 + rng() % (300 * 1024);
    uint32_t max_frame =
        static_cast<uint32_t>(kFragmentHeaderSize + 1 + rng() % (64 * 1024));
    std::vector<uint8_t> message = Pattern(size, rng());
    auto fragments = SplitIntoFragments(Data(message), max_frame);
    for (const auto& f : fragments)
      ASSERT_LE(f.size(), max_frame);
    auto out = Feed(assembler, fragments);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_EQ(*out, message);
    EXPECT_FALSE(assembler.stream_open());
  }
}

TEST(FragmentTest, ChargesTheAnnouncedTotalUpFront) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> data(10, 1);
  auto r = assembler.Accept(EncodeFragment(5000, 0, data));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(assembler.charged_bytes(), 5000u);
}

TEST(FragmentTest, ShortFragmentIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> header_only = EncodeFragment(10, 0, {});
  ExpectViolation(Feed(assembler, {header_only}), "at least one data byte");
}

TEST(FragmentTest, ZeroTotalIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(0, 0, std::vector<uint8_t>{1})}),
      "0-byte stream");
}

TEST(FragmentTest, TotalBeyondTheLimitIsAViolation) {
  FragmentAssembler assembler(1000);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(1001, 0, std::vector<uint8_t>(10, 1))}),
      "beyond the largest message");
  // A lie about the size bigger than memory is refused before allocating.
  FragmentAssembler big(kDefaultMaxMessageBytes);
  ExpectViolation(
      Feed(big, {EncodeFragment(~uint64_t{0}, 0, std::vector<uint8_t>(10, 1))}),
      "beyond the largest message");
}

TEST(FragmentTest, StreamNotStartingAtZeroIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(100, 10, std::vector<uint8_t>(10, 1))}),
      "starts at offset 10");
}

TEST(FragmentTest, GapIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> d(10, 1);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(100, 0, d), EncodeFragment(100, 20, d)}),
      "gap");
}

TEST(FragmentTest, OverlapIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> d(10, 1);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(100, 0, d), EncodeFragment(100, 10, d),
                       EncodeFragment(100, 15, d)}),
      "overlap");
}

TEST(FragmentTest, ChangedTotalIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> d(10, 1);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(100, 0, d), EncodeFragment(90, 10, d)}),
      "inside a stream of 100");
}

TEST(FragmentTest, FragmentPastTheEndIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(15, 0, std::vector<uint8_t>(10, 1)),
                       EncodeFragment(15, 10, std::vector<uint8_t>(10, 1))}),
      "runs past the stream's end");
  FragmentAssembler first(1 << 20);
  ExpectViolation(
      Feed(first, {EncodeFragment(5, 0, std::vector<uint8_t>(10, 1))}),
      "first fragment carries 10 bytes of a 5-byte stream");
}

TEST(FragmentTest, NewStreamBeforeTheOldFinishedIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  std::vector<uint8_t> d(10, 1);
  ExpectViolation(
      Feed(assembler, {EncodeFragment(100, 0, d), EncodeFragment(50, 0, d)}),
      "before the old one finished");
}

TEST(FragmentTest, OtherFrameInsideAStreamIsAViolation) {
  FragmentAssembler assembler(1 << 20);
  EXPECT_TRUE(assembler.CheckNoStreamOpen("event frame").ok());
  ASSERT_TRUE(
      assembler.Accept(EncodeFragment(100, 0, std::vector<uint8_t>(10, 1)))
          .ok());
  Status s = assembler.CheckNoStreamOpen("event frame");
  EXPECT_EQ(s.code(), StatusCode::kProtocolViolation);
  EXPECT_NE(s.text().find("event frame in the middle"), std::string::npos)
      << s.ToString();
}

TEST(FragmentTest, NonZeroFlagsAreAViolation) {
  FragmentAssembler assembler(1 << 20);
  auto r = assembler.Accept(EncodeFragment(10, 0, std::vector<uint8_t>(10, 1)),
                            /*flags=*/1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocolViolation);
}

}  // namespace
}  // namespace shmports::channel
