#include "core/ports/name.h"

#include <cinttypes>
#include <cstdio>

#include "core/base/random.h"

namespace shmports::ports {

std::string NameToString(uint64_t v1, uint64_t v2) {
  char buf[40];
  if (v2 != 0) {
    std::snprintf(buf, sizeof(buf), "%" PRIX64 ".%" PRIX64, v1, v2);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIX64, v1);
  }
  return buf;
}

PortName GenerateRandomPortName() {
  Random128 r = RandomName128();
  return PortName(r.v1, r.v2);
}

}  // namespace shmports::ports
