#include "core/base/log.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "core/base/mutex.h"

namespace shmports {
namespace {

struct LogState {
  Mutex mu;
  std::shared_ptr<const LogSink> sink GUARDED_BY(mu);
  std::map<std::string, uint64_t, std::less<>> counts GUARDED_BY(mu);
};

LogState& State() {
  static LogState* state = new LogState();  // Never destroyed: used at exit.
  return *state;
}

const char* BaseName(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

void Emit(LogSeverity severity, const std::string& line) {
  std::shared_ptr<const LogSink> sink;
  {
    LogState& s = State();
    MutexLock lock(&s.mu);
    sink = s.sink;
  }
  if (sink) {
    (*sink)(severity, line);
    return;
  }
  std::string out = line;
  out.push_back('\n');
  // One write(2) so lines of concurrent processes do not interleave.
  ssize_t ignored = write(STDERR_FILENO, out.data(), out.size());
  (void)ignored;
}

bool IsPowerOfTen(uint64_t n) {
  while (n >= 10 && n % 10 == 0)
    n /= 10;
  return n == 1;
}

}  // namespace

const char* LogSeverityName(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return "I";
    case LogSeverity::kWarning:
      return "W";
    case LogSeverity::kError:
      return "E";
  }
  return "?";
}

void LogMessage(LogSeverity severity,
                const char* file,
                int line,
                std::string_view message) {
  Emit(severity,
       StrFormat("[shmports %s %d %s:%d] %.*s", LogSeverityName(severity),
                 static_cast<int>(getpid()), BaseName(file), line,
                 static_cast<int>(message.size()), message.data()));
}

uint64_t LogRepeated(std::string_view key,
                     LogSeverity severity,
                     const char* file,
                     int line,
                     std::string_view message) {
  uint64_t count;
  {
    LogState& s = State();
    MutexLock lock(&s.mu);
    auto it = s.counts.find(key);
    if (it == s.counts.end())
      it = s.counts.emplace(std::string(key), 0).first;
    count = ++it->second;
  }
  if (count == 1) {
    LogMessage(severity, file, line, message);
  } else if (IsPowerOfTen(count)) {
    LogMessage(severity, file, line,
               StrFormat("%.*s (seen %llu times; logged once)",
                         static_cast<int>(message.size()), message.data(),
                         static_cast<unsigned long long>(count)));
  }
  return count;
}

uint64_t RepeatedLogCount(std::string_view key) {
  LogState& s = State();
  MutexLock lock(&s.mu);
  auto it = s.counts.find(key);
  return it == s.counts.end() ? 0 : it->second;
}

void SetLogSink(LogSink sink) {
  LogState& s = State();
  MutexLock lock(&s.mu);
  s.sink = sink ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
}

}  // namespace shmports
