// PortRef: a port's name plus a reference that keeps the Port object alive.
//
// The embedder's handle to a port. Copyable and movable; a default PortRef is
// invalid, and every Node method given one returns ERROR_INVALID_ARGUMENT
// rather than crashing. The Port itself is reachable only through
// PortLocker, so no code touches its fields without its lock.
#ifndef SHMPORTS_CORE_PORTS_PORT_REF_H_
#define SHMPORTS_CORE_PORTS_PORT_REF_H_

#include <memory>
#include <utility>

#include "core/ports/name.h"

namespace shmports::ports {

class Port;

class PortRef {
 public:
  PortRef() = default;
  PortRef(const PortName& name, std::shared_ptr<Port> port)
      : name_(name), port_(std::move(port)) {}

  bool is_valid() const { return port_ != nullptr; }
  const PortName& name() const { return name_; }

 private:
  friend class PortLocker;
  friend class SinglePortLocker;

  Port* port() const { return port_.get(); }

  PortName name_;
  std::shared_ptr<Port> port_;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_PORT_REF_H_
