// printf-style formatting into std::string (<format> is not available on
// both toolchains), and hex dumps for names and bytes in messages.
#ifndef SHMPORTS_CORE_BASE_STR_FORMAT_H_
#define SHMPORTS_CORE_BASE_STR_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace shmports {

std::string StrFormat(const char* format, ...)
    __attribute__((format(printf, 1, 2)));

// Lower-case hex of `bytes`, at most `max_bytes` of them, "…" after a cut.
std::string HexDump(std::span<const uint8_t> bytes, size_t max_bytes = 64);

// strerror_r text for an errno value, with its symbolic number: "No such file
// or directory (errno 2)".
std::string ErrnoText(int err);

}  // namespace shmports

#endif  // SHMPORTS_CORE_BASE_STR_FORMAT_H_
