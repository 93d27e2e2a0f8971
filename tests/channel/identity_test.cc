// Identity checks within one process: the exchange over a pair, and each
// refusal fed with the credentials that must trigger it.
#include "channel/identity.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "channel/spawn.h"
#include "core/base/linux_compat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmports::channel {
namespace {

using ::testing::HasSubstr;

ScopedFd PidfdOpen(pid_t pid) {
  return ScopedFd(
      static_cast<int>(syscall(linux_compat::kSysPidfdOpen, pid, 0)));
}

int CountOpenFds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.')
      ++n;
  }
  closedir(dir);
  return n - 1;  // The directory's own descriptor.
}

ReceivedMessage MessageFrom(pid_t pid,
                            uid_t uid,
                            gid_t gid,
                            ScopedFd pidfd = ScopedFd()) {
  ReceivedMessage m;
  m.bytes = {1};
  m.has_credentials = true;
  m.credentials.pid = pid;
  m.credentials.uid = uid;
  m.credentials.gid = gid;
  m.pidfd = std::move(pidfd);
  return m;
}

class IdentityTest : public ::testing::TestWithParam<IdentityMode> {
 protected:
  void SetUp() override {
    if (GetParam() == IdentityMode::kScmPidfd &&
        DetectIdentityMode() != IdentityMode::kScmPidfd) {
      GTEST_SKIP() << "SO_PASSPIDFD unsupported (Linux < 6.5) or forced off";
    }
  }
  IdentityMode mode() const { return GetParam(); }
};

TEST_P(IdentityTest, ExchangeOverAPairIdentifiesTheSender) {
  auto pair = CreateCredentialedSocketPair(mode());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  Status introduced;
  std::thread peer([&] {
    introduced = IntroduceSelf(pair->second.get(),
                               Deadline::In(std::chrono::seconds(10)));
  });
  auto id = AuthenticatePeer(pair->first.get(), mode(), {},
                             Deadline::In(std::chrono::seconds(10)));
  peer.join();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_TRUE(introduced.ok()) << introduced.ToString();
  EXPECT_EQ(id->pid, getpid());
  EXPECT_EQ(id->uid, geteuid());
  EXPECT_EQ(id->mode, mode());
  EXPECT_TRUE(id->confirmed);
  auto pid = PidOfPidfd(id->pidfd.get());
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*pid, getpid());
}

TEST_P(IdentityTest, PidZeroIsUnauthenticated) {
  ReceivedMessage m = MessageFrom(0, geteuid(), getegid(), PidfdOpen(getpid()));
  auto id = IdentifySender(m, mode(), {});
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(id.status().ToString(), HasSubstr("pid 0"));
  EXPECT_FALSE(m.pidfd.valid()) << "the refused message's pidfd must be closed";
}

TEST_P(IdentityTest, MissingCredentialsAreUnauthenticated) {
  ReceivedMessage m;
  m.bytes = {1};
  auto id = IdentifySender(m, mode(), {});
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(id.status().ToString(), HasSubstr("SCM_CREDENTIALS"));
}

TEST_P(IdentityTest, AnotherUidIsRefusedUnlessAllowed) {
  const uid_t other = geteuid() == 65534 ? 65533 : 65534;
  ReceivedMessage m =
      MessageFrom(getpid(), other, getegid(), PidfdOpen(getpid()));
  auto id = IdentifySender(m, mode(), {});
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(id.status().ToString(), HasSubstr("uid"));

  IdentityPolicy policy;
  policy.also_allowed_uids = {other};
  ReceivedMessage allowed =
      MessageFrom(getpid(), other, getegid(), PidfdOpen(getpid()));
  auto ok = IdentifySender(allowed, mode(), policy);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->uid, other);
}

TEST_P(IdentityTest, ConfirmationFromAnotherProcessIsRefused) {
  ReceivedMessage first =
      MessageFrom(getpid(), geteuid(), getegid(), PidfdOpen(getpid()));
  auto id = IdentifySender(first, mode(), {});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  if (mode() == IdentityMode::kScmPidfd) {
    EXPECT_TRUE(id->confirmed);
    return;
  }
  EXPECT_FALSE(id->confirmed);
  ReceivedMessage stranger = MessageFrom(getppid(), geteuid(), getegid());
  Status s = ConfirmIdentity(*id, stranger);
  EXPECT_EQ(s.code(), StatusCode::kProtocolViolation);
  EXPECT_FALSE(id->confirmed);
  ReceivedMessage same = MessageFrom(getpid(), geteuid(), getegid());
  EXPECT_TRUE(ConfirmIdentity(*id, same).ok());
  EXPECT_TRUE(id->confirmed);
}

TEST(IdentityScmPidfdTest, MissingPidfdIsUnauthenticated) {
  ReceivedMessage m = MessageFrom(getpid(), geteuid(), getegid());
  auto id = IdentifySender(m, IdentityMode::kScmPidfd, {});
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(id.status().ToString(), HasSubstr("SCM_PIDFD"));
}

TEST(IdentityScmPidfdTest, PidfdOfAnotherProcessIsRefused) {
  ReceivedMessage m =
      MessageFrom(getpid(), geteuid(), getegid(), PidfdOpen(getppid()));
  auto id = IdentifySender(m, IdentityMode::kScmPidfd, {});
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
}

TEST(IdentityExchangeTest, GarbageInsteadOfHelloIsRefused) {
  auto pair = CreateCredentialedSocketPair(IdentityMode::kPidfdOpen);
  ASSERT_TRUE(pair.ok());
  const uint8_t garbage[] = {'h', 'e', 'l', 'l', 'o'};
  ASSERT_TRUE(SendMessage(pair->second.get(), garbage).ok());
  auto id = AuthenticatePeer(pair->first.get(), IdentityMode::kPidfdOpen, {},
                             Deadline::In(std::chrono::seconds(5)));
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(id.status().ToString(), HasSubstr("not an identity message"));
}

TEST(IdentityExchangeTest, HelloWithAttachedDescriptorsIsRefusedWithoutLeaks) {
  auto pair = CreateCredentialedSocketPair(DetectIdentityMode());
  ASSERT_TRUE(pair.ok());
  // A well-formed hello (wire format in identity.h) carrying descriptors
  // nobody asked for.
  const uint8_t hello[16] = {'S', 'P', 'I', 'D', 1, 0, 0, 0,
                             0,   0,   0,   0,   0, 0, 0, 0};
  int extra[] = {pair->second.get(), pair->second.get()};
  ASSERT_TRUE(SendMessage(pair->second.get(), hello, extra).ok());
  int before = CountOpenFds();
  auto id = AuthenticatePeer(pair->first.get(), DetectIdentityMode(), {},
                             Deadline::In(std::chrono::seconds(5)));
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation)
      << id.status().ToString();
  EXPECT_EQ(CountOpenFds(), before);
}

// A peer that answers the challenge with another nonce is refused: the
// confirmation must answer this exchange, not replay an old one.
TEST(IdentityExchangeTest, ConfirmationWithTheWrongNonceIsRefused) {
  auto pair = CreateCredentialedSocketPair(IdentityMode::kPidfdOpen);
  ASSERT_TRUE(pair.ok());
  Status peer_status;
  std::thread peer([&] {
    int fd = pair->second.get();
    uint8_t msg[16] = {'S', 'P', 'I', 'D', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    peer_status = SendMessage(fd, msg);
    if (!peer_status.ok())
      return;
    ReceiveLimits limits;
    limits.max_bytes = 16;
    auto challenge =
        ReceiveMessage(fd, limits, Deadline::In(std::chrono::seconds(5)));
    if (!challenge.ok() || challenge->bytes.size() != 16 ||
        challenge->bytes[4] != 2) {
      peer_status = InternalError("no challenge");
      return;
    }
    memcpy(msg + 8, challenge->bytes.data() + 8, 8);
    msg[4] = 3;   // Confirm...
    msg[8] ^= 1;  // ...with a nonce that is not the one asked for.
    peer_status = SendMessage(fd, msg);
  });
  auto id = AuthenticatePeer(pair->first.get(), IdentityMode::kPidfdOpen, {},
                             Deadline::In(std::chrono::seconds(5)));
  peer.join();
  ASSERT_TRUE(peer_status.ok()) << peer_status.ToString();
  EXPECT_EQ(id.status().code(), StatusCode::kProtocolViolation)
      << id.status().ToString();
  EXPECT_THAT(id.status().ToString(), HasSubstr("nonce"));
}

std::string ModeName(const ::testing::TestParamInfo<IdentityMode>& p) {
  return p.param == IdentityMode::kScmPidfd ? "ScmPidfd" : "PidfdOpen";
}

INSTANTIATE_TEST_SUITE_P(Modes,
                         IdentityTest,
                         ::testing::Values(IdentityMode::kScmPidfd,
                                           IdentityMode::kPidfdOpen),
                         ModeName);

}  // namespace
}  // namespace shmports::channel
