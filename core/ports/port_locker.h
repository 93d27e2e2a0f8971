// PortLocker: holds the locks of several ports at once, taken in port-NAME
// order.
//
// Mojo orders by the Port object's address; we order by name, which is the
// same on every run and so gives reproducible lock order under test. A name
// listed twice is locked once. Every ref must be valid (Node checks before
// building a locker).
//
// Lock order (see node.h): a PortLocker may be built while the node's
// ports_lock_ is held, never the reverse; at most one PortLocker (or
// SinglePortLocker) is alive per thread.
//
// Not movable; lives on the stack of one thread.
#ifndef SHMPORTS_CORE_PORTS_PORT_LOCKER_H_
#define SHMPORTS_CORE_PORTS_PORT_LOCKER_H_

#include <cstddef>
#include <vector>

#include "core/base/thread_annotations.h"
#include "core/ports/port.h"
#include "core/ports/port_ref.h"

namespace shmports::ports {

class PortLocker {
 public:
  // Locks every port in refs[0..count). Up to kInlinePorts refs cost no
  // allocation.
  PortLocker(const PortRef* const* refs,
             size_t count) NO_THREAD_SAFETY_ANALYSIS;
  PortLocker(const PortLocker&) = delete;
  PortLocker& operator=(const PortLocker&) = delete;
  ~PortLocker() NO_THREAD_SAFETY_ANALYSIS;

  // The locked Port behind `ref`, which must be one of the locked refs.
  Port* GetPort(const PortRef& ref) const { return ref.port(); }

 private:
  static constexpr size_t kInlinePorts = 8;

  const PortRef* inline_[kInlinePorts];
  std::vector<const PortRef*> heap_;
  const PortRef** sorted_;
  size_t count_;
};

// The common case of one port.
class SinglePortLocker {
 public:
  explicit SinglePortLocker(const PortRef* ref) NO_THREAD_SAFETY_ANALYSIS;
  SinglePortLocker(const SinglePortLocker&) = delete;
  SinglePortLocker& operator=(const SinglePortLocker&) = delete;
  ~SinglePortLocker() NO_THREAD_SAFETY_ANALYSIS;

  Port* port() const { return port_; }

 private:
  Port* const port_;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_PORT_LOCKER_H_
