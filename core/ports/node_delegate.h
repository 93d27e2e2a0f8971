// NodeDelegate: how a Node reaches the world — the embedder's transport.
//
// Implemented by channel/'s Router in production and by the test harness.
// The node calls every method with no node lock and no port lock held, so
// implementations may call back into the node (ForwardEvent to the node's own
// name may AcceptEvent synchronously; PortStatusChanged handlers may read or
// send). Any thread that calls into the Node may receive these calls.
#ifndef SHMPORTS_CORE_PORTS_NODE_DELEGATE_H_
#define SHMPORTS_CORE_PORTS_NODE_DELEGATE_H_

#include "core/ports/event.h"
#include "core/ports/name.h"
#include "core/ports/port_ref.h"

namespace shmports::ports {

class NodeDelegate {
 public:
  virtual ~NodeDelegate() = default;

  // Delivers `event` to `node`, possibly asynchronously; events to one node
  // must arrive in the order given. `node` may be this node. Events to a
  // node that is gone are dropped.
  virtual void ForwardEvent(const NodeName& node, ScopedEvent event) = 0;

  // Delivers `event` to every other known node. Only events whose
  // CloneForBroadcast() is non-null are broadcast.
  virtual void BroadcastEvent(ScopedEvent event) = 0;

  // The status of `port` may have changed (it may already be closed;
  // notifications can be spurious or repeated). Call GetStatus/GetMessage.
  virtual void PortStatusChanged(const PortRef& port) = 0;
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_NODE_DELEGATE_H_
