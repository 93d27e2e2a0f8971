// Fuzz target: Event::Deserialize on arbitrary bytes. Whatever decodes must
// re-encode to a stable form: serialise, decode again, serialise again, and
// the two encodings must be identical (the first may drop trailing bytes the
// decoder accepts for later protocol minors).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "core/ports/event.h"

using shmports::ports::Event;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Decoded as a link at this build's minor would: type checks first.
  auto decoded = Event::Deserialize(std::span<const uint8_t>(data, size),
                                    shmports::ports::kEventProtocolMinor);
  if (!decoded.ok())
    return 0;
  const Event& event = **decoded;
  std::vector<uint8_t> first = event.SerializeToVector();
  if (first.size() != event.GetSerializedSize() || first.size() > size) {
    std::fprintf(stderr, "serialised size %zu, claimed %zu, input %zu\n",
                 first.size(), event.GetSerializedSize(), size);
    abort();
  }
  auto again = Event::Deserialize(first, shmports::ports::kEventProtocolMinor);
  if (!again.ok()) {
    std::fprintf(stderr, "re-decoding our own encoding failed: %s\n",
                 again.status().ToString().c_str());
    abort();
  }
  std::vector<uint8_t> second = (*again)->SerializeToVector();
  if (first != second || (*again)->type() != event.type()) {
    std::fprintf(stderr, "encoding is not stable across a round trip\n");
    abort();
  }
  return 0;
}
