#include "core/base/linux_compat.h"

#include <gtest/gtest.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>

namespace shmports::linux_compat {
namespace {

// Where the system headers do define a value, ours must agree with it.
TEST(LinuxCompatTest, AgreesWithSystemHeadersWhereTheyHaveTheValue) {
  EXPECT_EQ(kFutexBitsetMatchAny,
            static_cast<uint32_t>(FUTEX_BITSET_MATCH_ANY));
  EXPECT_EQ(kFutex2Private, static_cast<uint32_t>(FUTEX_PRIVATE_FLAG));
  EXPECT_EQ(kClonePidfd, static_cast<uint64_t>(CLONE_PIDFD));
#ifdef SYS_pidfd_open
  EXPECT_EQ(kSysPidfdOpen, SYS_pidfd_open);
#endif
#ifdef SYS_clone3
  EXPECT_EQ(kSysClone3, SYS_clone3);
#endif
#ifdef SYS_futex_waitv
  EXPECT_EQ(kSysFutexWaitv, SYS_futex_waitv);
#endif
#ifdef SO_PASSPIDFD
  EXPECT_EQ(kSoPassPidfd, SO_PASSPIDFD);
#endif
#ifdef SCM_PIDFD
  EXPECT_EQ(kScmPidfd, SCM_PIDFD);
#endif
}

TEST(LinuxCompatTest, FutexOpcodesFollowTheLastOpcodeOfSixOne) {
  // Linux 6.1's last opcode is IORING_OP_SENDMSG_ZC (48); 6.7 added 49..53
  // (READ_MULTISHOT 49, WAITID 50, FUTEX_WAIT 51, FUTEX_WAKE 52, FUTEX_WAITV
  // 53).
  EXPECT_EQ(static_cast<int>(IORING_OP_SENDMSG_ZC), 48);
  EXPECT_EQ(kIoringOpFutexWait, 51);
  EXPECT_EQ(kIoringOpFutexWake, 52);
  EXPECT_EQ(kIoringOpFutexWaitv, 53);
}

}  // namespace
}  // namespace shmports::linux_compat
