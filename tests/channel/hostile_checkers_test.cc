// The checkers of the hostile-peer tests, each fed the fault it looks for:
// the stream verifier sees a drop, a duplicate, a reorder, a flipped byte
// and a short count; the "untouched" checks see a changed node shape, a
// closed route, a missing or redirected link.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "core/ports/node.h"
#include "core/ports/node_delegate.h"
#include "tests/channel/hostile_checks.h"
#include "tests/channel/hostile_stream.h"
#include "tests/util/test_util.h"

namespace shmports::channel::testing {
namespace {

using ::shmports::testing::SeedTrace;
using ::shmports::testing::TestSeed;

constexpr size_t kMaxSize = 512;
constexpr uint64_t kCount = 100;

std::vector<std::vector<uint8_t>> Stream(uint64_t seed) {
  std::vector<std::vector<uint8_t>> out;
  for (uint64_t i = 0; i < kCount; ++i)
    out.push_back(EncodeStreamData(seed, i, kMaxSize));
  return out;
}

// Feeds `messages` and then an end count; returns the verdict.
Status Verify(uint64_t seed,
              const std::vector<std::vector<uint8_t>>& messages,
              uint64_t end_count) {
  StreamVerifier verifier(seed, kMaxSize);
  for (const auto& m : messages) {
    Status s = verifier.AcceptBytes(m);
    if (!s.ok())
      return s;
  }
  return verifier.Finish(end_count);
}

class StreamVerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = TestSeed();
    messages_ = Stream(seed_);
  }
  uint64_t seed_ = 0;
  std::vector<std::vector<uint8_t>> messages_;
};

TEST_F(StreamVerifierTest, IntactStreamPasses) {
  SCOPED_TRACE(SeedTrace(seed_));
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(StreamVerifierTest, ReportsADrop) {
  SCOPED_TRACE(SeedTrace(seed_));
  messages_.erase(messages_.begin() + 37);
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_NE(s.ToString().find("37..37 missing"), std::string::npos)
      << s.ToString();
}

TEST_F(StreamVerifierTest, ReportsADropAtTheEnd) {
  SCOPED_TRACE(SeedTrace(seed_));
  messages_.pop_back();
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_NE(s.ToString().find("sent 100 messages, 99 arrived"),
            std::string::npos)
      << s.ToString();
}

TEST_F(StreamVerifierTest, ReportsADuplicate) {
  SCOPED_TRACE(SeedTrace(seed_));
  messages_.insert(messages_.begin() + 38, messages_[37]);
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_NE(s.ToString().find("message 37 again after 37"), std::string::npos)
      << s.ToString();
}

TEST_F(StreamVerifierTest, ReportsAReorder) {
  SCOPED_TRACE(SeedTrace(seed_));
  std::swap(messages_[37], messages_[38]);
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_NE(s.ToString().find("37..37 missing (dropped or reordered): got 38"),
            std::string::npos)
      << s.ToString();
}

TEST_F(StreamVerifierTest, ReportsAFlippedByteAnywhere) {
  SCOPED_TRACE(SeedTrace(seed_));
  // Message 0 has at least the header; pick one with a payload.
  size_t victim = 1;
  while (messages_[victim].size() <= kStreamHeaderSize)
    ++victim;
  const size_t size = messages_[victim].size();
  for (size_t byte :
       {size_t{0}, size_t{9}, size_t{17}, kStreamHeaderSize, size - 1}) {
    auto copy = messages_;
    copy[victim][byte] ^= 0x10;
    Status s = Verify(seed_, copy, kCount);
    EXPECT_FALSE(s.ok()) << "byte " << byte;
    EXPECT_EQ(s.code(), StatusCode::kCorrupt) << s.ToString();
  }
}

TEST_F(StreamVerifierTest, ReportsAForeignMessageInTheStream) {
  SCOPED_TRACE(SeedTrace(seed_));
  messages_.insert(messages_.begin() + 10,
                   EncodeStreamMessage(StreamType::kReport, 10, 0));
  Status s = Verify(seed_, messages_, kCount);
  EXPECT_NE(s.ToString().find("non-data message"), std::string::npos)
      << s.ToString();
}

TEST_F(StreamVerifierTest, KeepsTheFirstFault) {
  SCOPED_TRACE(SeedTrace(seed_));
  messages_.erase(messages_.begin() + 5);
  StreamVerifier verifier(seed_, kMaxSize);
  for (const auto& m : messages_)
    (void)verifier.AcceptBytes(m);
  EXPECT_NE(verifier.fault().ToString().find("5..5 missing"), std::string::npos)
      << verifier.fault().ToString();
  EXPECT_EQ(verifier.verified(), 5u);
}

ports::NodeStats Shape() {
  ports::NodeStats s;
  s.ports = 3;
  s.receiving = 3;
  return s;
}

TEST(NodeShapeTest, SameShapePasses) {
  ports::NodeStats after = Shape();
  after.queued_messages = 17;  // Not part of the shape.
  after.buffered_events = 4;
  EXPECT_TRUE(CompareNodeShape(Shape(), after).ok());
}

TEST(NodeShapeTest, ReportsEachChangedCount) {
  size_t ports::NodeStats::*fields[] = {
      &ports::NodeStats::ports,     &ports::NodeStats::uninitialized,
      &ports::NodeStats::receiving, &ports::NodeStats::buffering,
      &ports::NodeStats::proxying,  &ports::NodeStats::zombies,
      &ports::NodeStats::proxies};
  for (auto field : fields) {
    ports::NodeStats after = Shape();
    after.*field += 1;
    Status s = CompareNodeShape(Shape(), after);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.ToString().find("->"), std::string::npos) << s.ToString();
  }
}

// Delivers every event to the one local node.
class LoopbackDelegate : public ports::NodeDelegate {
 public:
  void set_node(ports::Node* node) { node_ = node; }
  void ForwardEvent(const ports::NodeName& node,
                    ports::ScopedEvent event) override {
    (void)node_->AcceptEvent(node, std::move(event));
  }
  void BroadcastEvent(ports::ScopedEvent event) override {
    (void)node_->AcceptEvent(node_->name(), std::move(event));
  }
  void PortStatusChanged(const ports::PortRef&) override {}

 private:
  ports::Node* node_ = nullptr;
};

TEST(RouteOpenTest, ReportsAClosedPeer) {
  LoopbackDelegate delegate;
  ports::Node node(ports::NodeName(1, 2), &delegate);
  delegate.set_node(&node);
  ports::PortRef a, b;
  ASSERT_EQ(node.CreatePortPair(&a, &b), ports::OK);
  EXPECT_TRUE(CheckRouteOpen(node, a).ok());
  ASSERT_EQ(node.ClosePort(b), ports::OK);
  Status s = CheckRouteOpen(node, a);
  EXPECT_NE(s.ToString().find("route closed"), std::string::npos)
      << s.ToString();
  ASSERT_EQ(node.ClosePort(a), ports::OK);
  EXPECT_FALSE(CheckRouteOpen(node, a).ok());
}

TEST(LinkIntactTest, ReportsAMissingOrRedirectedLink) {
  const ports::NodeName peer(5, 6);
  RouterStats stats;
  LinkStats link;
  link.peer = peer;
  link.peer_pid = 1234;
  stats.links.push_back(link);
  EXPECT_TRUE(CheckLinkIntact(stats, peer, 1234).ok());
  Status other = CheckLinkIntact(stats, peer, 4321);
  EXPECT_NE(other.ToString().find("pid 1234"), std::string::npos)
      << other.ToString();
  stats.links.clear();
  Status missing = CheckLinkIntact(stats, peer, 1234);
  EXPECT_NE(missing.ToString().find("no link"), std::string::npos)
      << missing.ToString();
}

// This test process has not dropped anything (no_new_privs at least is
// unset; as root it also holds capabilities): the check must say so.
TEST(PrivilegesTest, ReportsAProcessThatKeptItsPrivileges) {
  std::string problems = PrivilegeProblems(getpid());
  EXPECT_NE(problems.find("no_new_privs not set"), std::string::npos)
      << problems;
  if (geteuid() == 0) {
    EXPECT_NE(problems.find("CapEff"), std::string::npos) << problems;
  }
  EXPECT_NE(PrivilegeProblems(-1), "");
}

}  // namespace
}  // namespace shmports::channel::testing
