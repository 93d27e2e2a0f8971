#include "core/base/random.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <utility>
#include <vector>

namespace shmports {
namespace {

TEST(RandomTest, NamesAreNeverZeroAndDoNotRepeat) {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (int i = 0; i < 10000; ++i) {
    Random128 r = RandomName128();
    EXPECT_FALSE(r.v1 == 0 && r.v2 == 0);
    EXPECT_TRUE(seen.emplace(r.v1, r.v2).second);
  }
}

// The parent warms its cache, forks, and both draw the next names. With a
// shared cache they would be identical.
TEST(RandomTest, ForkedChildDrawsDifferentNames) {
  (void)RandomName128();  // Fill the cache before the fork.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Random128 names[8];
    for (auto& n : names)
      n = RandomName128();
    ssize_t w = write(fds[1], names, sizeof(names));
    _exit(w == static_cast<ssize_t>(sizeof(names)) ? 0 : 1);
  }
  close(fds[1]);
  Random128 parent[8];
  for (auto& n : parent)
    n = RandomName128();
  Random128 child[8];
  size_t got = 0;
  while (got < sizeof(child)) {
    ssize_t n =
        read(fds[0], reinterpret_cast<char*>(child) + got, sizeof(child) - got);
    ASSERT_GT(n, 0);
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::set<std::pair<uint64_t, uint64_t>> parent_set;
  for (auto& n : parent)
    parent_set.emplace(n.v1, n.v2);
  for (auto& n : child) {
    EXPECT_EQ(parent_set.count({n.v1, n.v2}), 0u)
        << "child reused a name from the parent's cache";
  }
}

TEST(RandomTest, RandomBytesFillsLargeBuffers) {
  std::vector<uint8_t> buf(1 << 20, 0);
  RandomBytes(buf.data(), buf.size());
  size_t zeros = 0;
  for (uint8_t b : buf)
    zeros += (b == 0);
  // About 1/256 of the bytes are zero; all-zero would mean nothing was written.
  EXPECT_LT(zeros, buf.size() / 64);
}

}  // namespace
}  // namespace shmports
