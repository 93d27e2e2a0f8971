// Segment: sealing, the receiver's exact seal and size check, the header,
// and what a peer can still do to a sealed segment (punch holes).
#include "shm/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/str_format.h"
#include "shm/ring.h"
#include "tests/util/test_util.h"

namespace shmports::shm {
namespace {

using ::testing::HasSubstr;

constexpr size_t kSize = 4 * kSegmentPageSize;

// A raw memfd of `size` bytes, with a valid segment header, carrying
// `seals` (and made with `flags`).
int RawMemfd(size_t size,
             int seals,
             unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING) {
  int fd = memfd_create("shmports-raw", flags);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  SegmentHeader header = {};
  header.magic = kSegmentMagic;
  header.layout_version = kSegmentLayoutVersion;
  header.header_size = kSegmentHeaderSize;
  header.size = size;
  EXPECT_EQ(pwrite(fd, &header, sizeof(header), 0),
            static_cast<ssize_t>(sizeof(header)));
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0) << errno;
  }
  return fd;
}

std::vector<std::string> DevShmEntries() {
  std::vector<std::string> names;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr)
    return names;
  while (dirent* e = readdir(dir))
    names.push_back(e->d_name);
  closedir(dir);
  return names;
}

TEST(SegmentTest, CreateSealsSizesAndWritesTheHeader) {
  auto segment = Segment::Create(kSize);
  ASSERT_TRUE(segment.ok()) << segment.status().ToString();
  EXPECT_EQ(fcntl(segment->fd(), F_GET_SEALS), kRequiredSeals);
  struct stat st;
  ASSERT_EQ(fstat(segment->fd(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kSize);
  EXPECT_EQ(fcntl(segment->fd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  SegmentHeader header;
  memcpy(&header, segment->base(), sizeof(header));
  EXPECT_EQ(header.magic, kSegmentMagic);
  EXPECT_EQ(header.layout_version, kSegmentLayoutVersion);
  EXPECT_EQ(header.size, kSize);
  EXPECT_EQ(header.creator_pid, static_cast<uint32_t>(getpid()));
}

TEST(SegmentTest, BadSizesAreInvalid) {
  for (size_t size :
       {size_t{0}, kSegmentPageSize, kSegmentPageSize + 1, kSize - 8}) {
    auto segment = Segment::Create(size);
    EXPECT_EQ(segment.status().code(), StatusCode::kInvalidArgument) << size;
  }
}

TEST(SegmentTest, MapSharesTheCreatorsMemory) {
  auto creator = Segment::Create(kSize);
  ASSERT_TRUE(creator.ok());
  auto peer = Segment::Map(dup(creator->fd()), kSize);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  EXPECT_EQ(peer->creator_pid(), getpid());
  creator->base()[kSize - 1] = 0x42;
  EXPECT_EQ(peer->base()[kSize - 1], 0x42);
  EXPECT_NE(peer->base(), creator->base());
}

TEST(SegmentTest, PeersFtruncateFailsAndTheSurvivorIsUnaffected) {
  auto segment = Segment::Create(kSize);
  ASSERT_TRUE(segment.ok());
  int peer_fd = dup(segment->fd());
  EXPECT_EQ(ftruncate(peer_fd, 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(ftruncate(peer_fd, kSize * 2), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(fcntl(peer_fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
  close(peer_fd);
  // Every page is still there.
  for (size_t off = 0; off < kSize; off += kSegmentPageSize) {
    segment->base()[off + 1] = 1;
  }
}

TEST(SegmentTest, EachMissingSealIsRefusedByName) {
  struct Case {
    int seals;
    const char* missing;
  };
  for (Case c : {Case{F_SEAL_GROW | F_SEAL_SEAL, "F_SEAL_SHRINK"},
                 Case{F_SEAL_SHRINK | F_SEAL_SEAL, "F_SEAL_GROW"},
                 Case{F_SEAL_SHRINK | F_SEAL_GROW, "F_SEAL_SEAL"},
                 Case{0, "F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL"}}) {
    int fd = RawMemfd(kSize, c.seals);
    auto segment = Segment::Map(fd, kSize);
    EXPECT_EQ(segment.status().code(), StatusCode::kProtocolViolation);
    EXPECT_THAT(segment.status().ToString(),
                HasSubstr(std::string("seals missing (") + c.missing));
    // Map took the fd: it is closed even on refusal.
    EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  }
}

TEST(SegmentTest, MemfdWithoutAllowSealingIsRefusedWithTheLikelyCause) {
  int fd = RawMemfd(kSize, 0, MFD_CLOEXEC);
  EXPECT_EQ(fcntl(fd, F_GET_SEALS), F_SEAL_SEAL);
  auto segment = Segment::Map(fd, kSize);
  EXPECT_EQ(segment.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(segment.status().ToString(), HasSubstr("MFD_ALLOW_SEALING"));
}

TEST(SegmentTest, ShmOpenObjectIsRefused) {
  std::string name = StrFormat("/shmports-segment-test-%d", getpid());
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0) << ErrnoText(errno);
  shm_unlink(name.c_str());
  ASSERT_EQ(ftruncate(fd, kSize), 0);
  auto segment = Segment::Map(fd, kSize);
  EXPECT_EQ(segment.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(segment.status().ToString(), HasSubstr("shm_open"));
}

TEST(SegmentTest, WrongSizeIsRefused) {
  auto creator = Segment::Create(kSize);
  ASSERT_TRUE(creator.ok());
  for (size_t expected : {kSize - kSegmentPageSize, kSize + kSegmentPageSize}) {
    auto peer = Segment::Map(dup(creator->fd()), expected);
    EXPECT_EQ(peer.status().code(), StatusCode::kProtocolViolation);
    EXPECT_THAT(peer.status().ToString(), HasSubstr("size"));
  }
}

TEST(SegmentTest, WriteSealIsRefused) {
  int fd = RawMemfd(kSize, kRequiredSeals & ~F_SEAL_SEAL);
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL), 0);
  auto segment = Segment::Map(fd, kSize);
  EXPECT_EQ(segment.status().code(), StatusCode::kProtocolViolation);
  EXPECT_THAT(segment.status().ToString(), HasSubstr("F_SEAL_WRITE"));
}

TEST(SegmentTest, RegularFileIsRefused) {
  char path[] = "/tmp/shmports-segment-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(ftruncate(fd, kSize), 0);
  auto segment = Segment::Map(fd, kSize);
  EXPECT_EQ(segment.status().code(), StatusCode::kProtocolViolation);
}

TEST(SegmentTest, BadHeaderIsCorrupt) {
  int fd = RawMemfd(kSize, 0);
  uint64_t bad_magic = 7;
  ASSERT_EQ(pwrite(fd, &bad_magic, 8, 0), 8);
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, kRequiredSeals), 0);
  auto segment = Segment::Map(fd, kSize);
  EXPECT_EQ(segment.status().code(), StatusCode::kCorrupt);
  EXPECT_THAT(segment.status().ToString(), HasSubstr("magic"));
}

TEST(SegmentTest, RegionMustLieInsideTheSegmentPastTheHeader) {
  auto segment = Segment::Create(kSize);
  ASSERT_TRUE(segment.ok());
  EXPECT_TRUE(
      segment->Region(kSegmentHeaderSize, kSize - kSegmentHeaderSize).ok());
  EXPECT_FALSE(segment->Region(0, kSegmentPageSize).ok());
  EXPECT_FALSE(segment->Region(kSegmentHeaderSize, kSize).ok());
  EXPECT_FALSE(segment->Region(kSegmentHeaderSize + 8, 8).ok());
  EXPECT_FALSE(segment->Region(SIZE_MAX & ~size_t{4095}, 4096).ok());
}

TEST(SegmentTest, NothingAppearsInDevShm) {
  std::string tag = StrFormat("shmports-devshm-%d", getpid());
  {
    std::vector<Segment> segments;
    for (int i = 0; i < 4; ++i) {
      auto s = Segment::Create(kSize, tag.c_str());
      ASSERT_TRUE(s.ok());
      auto peer = Segment::Map(dup(s->fd()), kSize);
      ASSERT_TRUE(peer.ok());
      segments.push_back(std::move(s).value());
      segments.push_back(std::move(peer).value());
    }
    for (const std::string& name : DevShmEntries()) {
      EXPECT_EQ(name.find(tag), std::string::npos) << name;
      EXPECT_EQ(name.find("memfd"), std::string::npos) << name;
    }
  }
  for (const std::string& name : DevShmEntries()) {
    EXPECT_EQ(name.find(tag), std::string::npos) << name;
  }
}

// ---- Hole punching into a ring ----

class HolePunchTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kCap = 16384;

  void SetUp() override {
    auto s = Segment::Create(kSegmentHeaderSize + Ring::RegionSize(kCap));
    ASSERT_TRUE(s.ok());
    creator_ = std::make_unique<Segment>(std::move(s).value());
    auto p = Segment::Map(dup(creator_->fd()), creator_->size());
    ASSERT_TRUE(p.ok());
    peer_ = std::make_unique<Segment>(std::move(p).value());
    RingOptions options{.capacity = kCap};
    auto producer = Ring::Create(
        *creator_->Region(kSegmentHeaderSize, Ring::RegionSize(kCap)), options);
    ASSERT_TRUE(producer.ok());
    producer_ = std::move(producer).value();
    auto consumer = Ring::Attach(
        *peer_->Region(kSegmentHeaderSize, Ring::RegionSize(kCap)), options);
    ASSERT_TRUE(consumer.ok());
    consumer_ = std::move(consumer).value();
  }

  // The peer punches a hole of `length` bytes at ring offset `offset`.
  void Punch(size_t offset, size_t length) {
    ASSERT_EQ(
        fallocate(creator_->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(kSegmentHeaderSize + offset),
                  static_cast<off_t>(length)),
        0)
        << ErrnoText(errno);
  }

  void WriteSome(int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(
          producer_->Write(kFirstChannelKind, std::vector<uint8_t>(1000, 0x33))
              .ok());
    }
  }

  // The survivor reads either nothing more or kCorrupt.
  void ExpectEmptyOrCorrupt() {
    for (int round = 0; round < 3; ++round) {
      auto n = consumer_->Drain([](const FrameView& f) {
        for (uint8_t b : f.payload)
          ASSERT_TRUE(b == 0x33 || b == 0);
      });
      if (!n.ok()) {
        EXPECT_EQ(n.status().code(), StatusCode::kCorrupt);
        return;
      }
    }
    auto has = consumer_->HasData();
    EXPECT_TRUE(!has.ok() || !*has);
    Status wait =
        consumer_->WaitForData(Deadline::In(std::chrono::milliseconds(2)));
    EXPECT_TRUE(wait.code() == StatusCode::kUnavailable ||
                wait.code() == StatusCode::kCorrupt)
        << wait.ToString();
  }

  std::unique_ptr<Segment> creator_;
  std::unique_ptr<Segment> peer_;
  std::unique_ptr<Ring> producer_;
  std::unique_ptr<Ring> consumer_;
};

TEST_F(HolePunchTest, HoleInTheDataAreaReadsAsCorrupt) {
  WriteSome(5);
  Punch(kRingControlSize, kCap);
  auto n = consumer_->Drain([](const FrameView&) {});
  EXPECT_EQ(n.status().code(), StatusCode::kCorrupt);
  EXPECT_THAT(n.status().ToString(), HasSubstr("kind 0"));
}

TEST_F(HolePunchTest, HoleOverHeadTailAndWakeWordsIsEmptyOrCorrupt) {
  WriteSome(3);
  ASSERT_TRUE(consumer_->Drain([](const FrameView&) {}).ok());
  WriteSome(2);
  Punch(0, kRingControlSize);
  ExpectEmptyOrCorrupt();
  // The producer sees head zeroed: full (it never saw a later head) or
  // kCorrupt, never a crash.
  Status s;
  for (int i = 0; i < 40 && s.ok(); ++i) {
    s = producer_->Write(kFirstChannelKind, std::vector<uint8_t>(1000));
  }
  EXPECT_TRUE(s.code() == StatusCode::kCorrupt ||
              s.code() == StatusCode::kUnavailable)
      << s.ToString();
}

TEST_F(HolePunchTest, HoleBeforeAnyTrafficReadsEmpty) {
  Punch(0, kRingControlSize + kCap);
  auto has = consumer_->HasData();
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TEST_F(HolePunchTest, HolesAtEveryPageNeverCrash) {
  for (size_t page = 0; page < (kRingControlSize + kCap) / kSegmentPageSize;
       ++page) {
    SetUp();
    WriteSome(7);
    ASSERT_TRUE(consumer_->Drain([](const FrameView&) {}, 2).ok());
    Punch(page * kSegmentPageSize, kSegmentPageSize);
    ExpectEmptyOrCorrupt();
  }
}

}  // namespace
}  // namespace shmports::shm
