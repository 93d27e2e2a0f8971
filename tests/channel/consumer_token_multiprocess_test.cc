// The consumer token against a real child (fork+exec of
// consumer_token_child): the child sends numbered messages (some large
// enough to be fragmented), then, once we read them all (so its overflow
// queue is empty: what waits there dies with it), a small tail straight into
// the ring, and dies without a goodbye while this process's thread waits in
// Pipe::Receive, most likely holding the ring's token. The
// io thread's death handling must take the ring back and deliver everything
// the child committed, in order, and only then report peer_closed.
#include <gtest/gtest.h>
#include <shmports/invitation.h>
#include <shmports/pipe.h>
#include <shmports/process.h>

#include <chrono>
#include <string>

#include "tests/channel/consumer_token_payload.h"
#include "tests/util/test_util.h"

namespace shmports {
namespace {

using std::chrono::seconds;

class ConsumerTokenDeath : public ::testing::TestWithParam<WaitMode> {};

TEST_P(ConsumerTokenDeath, EverythingCommittedArrivesInOrder) {
  auto process = Process::Create();
  ASSERT_TRUE(process.ok()) << process.status().ToString();
  OutgoingInvitation invitation(**process);
  auto pipe = invitation.AttachPipe("data");
  ASSERT_TRUE(pipe.ok());
  auto child = invitation.Launch({testing::HelperPath("consumer_token_child")});
  ASSERT_TRUE(child.ok()) << child.status().ToString();
  const uint64_t n = testing::Scaled(3000, 100);
  const uint64_t large_every = 97;
  const uint64_t tail = 100;
  ASSERT_TRUE(pipe->Send(std::to_string(n) + " " + std::to_string(large_every) +
                         " " + std::to_string(tail))
                  .ok());
  for (uint64_t i = 0; i < n + tail; ++i) {
    if (i == n) {
      ASSERT_TRUE(pipe->Send("drained").ok());
    }
    auto m = pipe->Receive(seconds(60), GetParam());
    ASSERT_TRUE(m.ok()) << "message " << i << ": " << m.status().ToString();
    ASSERT_TRUE(m->bytes == testing::TokenPayload(i, i < n ? large_every : 0))
        << "message " << i << " differs (" << m->bytes.size() << " bytes)";
  }
  auto end = pipe->Receive(seconds(60), GetParam());
  EXPECT_EQ(end.status().code(), StatusCode::kPeerClosed)
      << end.status().ToString();
  auto status = child->Wait(seconds(60));
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

INSTANTIATE_TEST_SUITE_P(AllModes,
                         ConsumerTokenDeath,
                         ::testing::Values(WaitMode::kBlocking,
                                           WaitMode::kDefault,
                                           WaitMode::kBusyPoll));

}  // namespace
}  // namespace shmports
