// Linux constants that Debian 12's kernel headers (6.1) and liburing (2.3)
// lack, under our own names. Never #define the kernel's own names here: a
// newer liburing declares them as enumerators and a macro would break it.
//
// Every value is the kernel ABI value; each is used only after probing that
// the running kernel supports it, with a fallback where it does not.
#ifndef SHMPORTS_CORE_BASE_LINUX_COMPAT_H_
#define SHMPORTS_CORE_BASE_LINUX_COMPAT_H_

#include <cstdint>

namespace shmports::linux_compat {

// io_uring futex operations (Linux 6.7).
inline constexpr uint8_t kIoringOpFutexWait = 51;
inline constexpr uint8_t kIoringOpFutexWake = 52;
inline constexpr uint8_t kIoringOpFutexWaitv = 53;

// futex2 flags (Linux 6.7): the size of the futex word, and the private flag
// that shmports never sets (our futex words are shared between processes).
inline constexpr uint32_t kFutex2SizeU8 = 0x00;
inline constexpr uint32_t kFutex2SizeU16 = 0x01;
inline constexpr uint32_t kFutex2SizeU32 = 0x02;
inline constexpr uint32_t kFutex2SizeU64 = 0x03;
inline constexpr uint32_t kFutex2Numa = 0x04;
inline constexpr uint32_t kFutex2Private = 128;

inline constexpr uint32_t kFutexBitsetMatchAny = 0xffffffffu;

// Pidfds over Unix sockets (Linux 6.5).
inline constexpr int kSoPassPidfd = 76;
inline constexpr int kSoPeerPidfd = 77;
inline constexpr int kScmPidfd = 0x04;

// Syscall numbers (x86-64 and the generic table agree for these).
inline constexpr long kSysPidfdOpen = 434;
inline constexpr long kSysClone3 = 435;
inline constexpr long kSysPidfdSendSignal = 424;
inline constexpr long kSysFutexWaitv = 449;

// clone3 flag (Linux 5.2).
inline constexpr uint64_t kClonePidfd = 0x00001000;

}  // namespace shmports::linux_compat

#endif  // SHMPORTS_CORE_BASE_LINUX_COMPAT_H_
