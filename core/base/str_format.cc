#include "core/base/str_format.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace shmports {

std::string StrFormat(const char* format, ...) {
  char stack_buf[256];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(stack_buf, sizeof(stack_buf), format, args);
  va_end(args);
  if (n < 0)
    return "<format error>";
  if (static_cast<size_t>(n) < sizeof(stack_buf))
    return std::string(stack_buf, n);
  std::string out(static_cast<size_t>(n), '\0');
  va_start(args, format);
  vsnprintf(out.data(), out.size() + 1, format, args);
  va_end(args);
  return out;
}

std::string HexDump(std::span<const uint8_t> bytes, size_t max_bytes) {
  static const char kDigits[] = "0123456789abcdef";
  size_t n = bytes.size() < max_bytes ? bytes.size() : max_bytes;
  std::string out;
  out.reserve(n * 2 + 3);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  if (n < bytes.size())
    out.append("…");
  return out;
}

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r returns a pointer that may or may not be `buf`.
  const char* text = strerror_r(err, buf, sizeof(buf));
  return StrFormat("%s (errno %d)", text, err);
}

}  // namespace shmports
