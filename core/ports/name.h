// NodeName and PortName: the 128-bit names of the ports protocol.
//
// A name is two 64-bit words, v1 and v2. Port names are capabilities: whoever
// knows a node:port pair can address events to that port, so names are drawn
// from the CSPRNG (RandomName128) and must never be guessable or leaked. The
// all-zero name is invalid (kInvalidPortName / kInvalidNodeName).
//
// PortName and NodeName are distinct types (a port name cannot be passed
// where a node name is expected), with the same layout, ordering (v1, then
// v2), hash and text form (v1 in upper-case hex, then "." and v2 in hex when
// v2 is non-zero — Mojo's form).
//
// Plain values: thread-compatible.
#ifndef SHMPORTS_CORE_PORTS_NAME_H_
#define SHMPORTS_CORE_PORTS_NAME_H_

#include <compare>
#include <cstdint>
#include <functional>
#include <string>

namespace shmports::ports {

template <typename Tag>
struct BasicName {
  constexpr BasicName() = default;
  constexpr BasicName(uint64_t a, uint64_t b) : v1(a), v2(b) {}

  constexpr bool is_valid() const { return v1 != 0 || v2 != 0; }

  friend constexpr bool operator==(const BasicName&,
                                   const BasicName&) = default;
  friend constexpr auto operator<=>(const BasicName&,
                                    const BasicName&) = default;

  // "1F2E…" or "1F2E….3A" (see the file comment).
  std::string ToString() const;

  uint64_t v1 = 0;
  uint64_t v2 = 0;
};

struct PortNameTag {};
struct NodeNameTag {};
using PortName = BasicName<PortNameTag>;
using NodeName = BasicName<NodeNameTag>;

inline constexpr PortName kInvalidPortName{};
inline constexpr NodeName kInvalidNodeName{};

// Text form shared by both name types.
std::string NameToString(uint64_t v1, uint64_t v2);

template <typename Tag>
std::string BasicName<Tag>::ToString() const {
  return NameToString(v1, v2);
}

// A fresh CSPRNG port name; never the invalid name.
PortName GenerateRandomPortName();

struct NameHash {
  template <typename Tag>
  size_t operator()(const BasicName<Tag>& name) const {
    // Names are uniformly random, so mixing both words is plenty; the
    // multiplier keeps structured test names (i, 1) apart too.
    uint64_t h = name.v1 * 0x9E3779B97F4A7C15ull ^ name.v2;
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

}  // namespace shmports::ports

template <typename Tag>
struct std::hash<shmports::ports::BasicName<Tag>> {
  size_t operator()(const shmports::ports::BasicName<Tag>& name) const {
    return shmports::ports::NameHash()(name);
  }
};

#endif  // SHMPORTS_CORE_PORTS_NAME_H_
