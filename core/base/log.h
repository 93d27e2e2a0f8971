// Logging for shmports: a line to stderr (or a sink a test installs), and a
// rate-limited form that says a repeating condition once and then counts it.
//
//   SHMPORTS_LOG(kWarning, "peer %s dropped: %s", name, reason);
//   SHMPORTS_LOG_REPEATED("ring-full", kInfo, "ring to %s full", name);
//
// A repeated key prints its first occurrence, then only a count line at each
// power of ten (10, 100, 1000, ...). Thread-safe; callable from any thread.
#ifndef SHMPORTS_CORE_BASE_LOG_H_
#define SHMPORTS_CORE_BASE_LOG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/base/str_format.h"

namespace shmports {

enum class LogSeverity { kInfo, kWarning, kError };

const char* LogSeverityName(LogSeverity severity);

// Writes one line. `file`/`line` name the call site.
void LogMessage(LogSeverity severity,
                const char* file,
                int line,
                std::string_view message);

// Logs under `key` with the rate limit described above. Returns how many
// times `key` has been seen, including this one.
uint64_t LogRepeated(std::string_view key,
                     LogSeverity severity,
                     const char* file,
                     int line,
                     std::string_view message);

// How many times `key` has been seen by LogRepeated.
uint64_t RepeatedLogCount(std::string_view key);

// Replaces the output (nullptr restores stderr). For tests. The sink is
// called with no shmports lock held.
using LogSink = std::function<void(LogSeverity, std::string_view line)>;
void SetLogSink(LogSink sink);

}  // namespace shmports

#define SHMPORTS_LOG(severity, ...)                                   \
  ::shmports::LogMessage(::shmports::LogSeverity::severity, __FILE__, \
                         __LINE__, ::shmports::StrFormat(__VA_ARGS__))

#define SHMPORTS_LOG_REPEATED(key, severity, ...)                             \
  ::shmports::LogRepeated((key), ::shmports::LogSeverity::severity, __FILE__, \
                          __LINE__, ::shmports::StrFormat(__VA_ARGS__))

#endif  // SHMPORTS_CORE_BASE_LOG_H_
