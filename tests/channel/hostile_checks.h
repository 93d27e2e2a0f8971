// The "untouched" checks of the hostile-peer tests: what a hostile peer must
// not be able to change in the parent. Pure functions over snapshots, so that
// hostile_checkers_test.cc can feed each one the fault it looks for.
#ifndef SHMPORTS_TESTS_CHANNEL_HOSTILE_CHECKS_H_
#define SHMPORTS_TESTS_CHANNEL_HOSTILE_CHECKS_H_

#include <sys/types.h>

#include <fstream>
#include <string>

#include "channel/router.h"
#include "core/base/status.h"
#include "core/ports/error.h"
#include "core/ports/node.h"

namespace shmports::channel::testing {

// The port table's shape: every count a hostile event could change by
// creating, closing, or converting a port. Message and buffered counts are
// left out: the good stream moves them all the time.
inline Status CompareNodeShape(const ports::NodeStats& before,
                               const ports::NodeStats& after) {
  std::string diff;
  auto field = [&diff](const char* name, size_t a, size_t b) {
    if (a != b) {
      diff += std::string(diff.empty() ? "" : ", ") + name + " " +
              std::to_string(a) + " -> " + std::to_string(b);
    }
  };
  field("ports", before.ports, after.ports);
  field("uninitialized", before.uninitialized, after.uninitialized);
  field("receiving", before.receiving, after.receiving);
  field("buffering", before.buffering, after.buffering);
  field("proxying", before.proxying, after.proxying);
  field("zombies", before.zombies, after.zombies);
  field("proxies", before.proxies, after.proxies);
  if (diff.empty())
    return Status::Ok();
  return FailedPreconditionError("node changed shape: " + diff);
}

// The route on `port` is open: a receiving port whose peer has not closed.
inline Status CheckRouteOpen(ports::Node& node, const ports::PortRef& port) {
  ports::PortStatus status;
  int rv = node.GetStatus(port, &status);
  if (rv != ports::OK)
    return ports::ErrorToStatus(rv, "route status");
  if (status.peer_closed)
    return FailedPreconditionError("route closed: its peer is gone");
  if (!status.receiving_messages)
    return FailedPreconditionError("route no longer receiving");
  return Status::Ok();
}

// The link to `peer` is there, to the same process. (Ignored events are not
// judged: a late read ack of the stream is a normal race.)
inline Status CheckLinkIntact(const RouterStats& stats,
                              const ports::NodeName& peer,
                              pid_t pid) {
  for (const LinkStats& link : stats.links) {
    if (link.peer != peer)
      continue;
    if (link.peer_pid != pid) {
      return FailedPreconditionError(
          "link to " + peer.ToString() + " now leads to pid " +
          std::to_string(link.peer_pid) + ", not " + std::to_string(pid));
    }
    return Status::Ok();
  }
  return FailedPreconditionError("no link to " + peer.ToString());
}

// What the kernel says `pid` can still do beyond a plain process of its
// uid: capabilities in any set but the bounding one (which only limits what
// exec may grant), or no_new_privs unset. Empty when it has dropped
// everything.
inline std::string PrivilegeProblems(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in)
    return "no /proc status for pid " + std::to_string(pid);
  std::string line, problems;
  bool no_new_privs = false;
  while (std::getline(in, line)) {
    if (line.rfind("Cap", 0) == 0 && line.rfind("CapBnd", 0) != 0 &&
        line.find("0000000000000000") == std::string::npos) {
      problems += line + "; ";
    }
    if (line.rfind("NoNewPrivs:", 0) == 0)
      no_new_privs = line.find('1') != std::string::npos;
  }
  if (!no_new_privs)
    problems += "no_new_privs not set";
  return problems;
}

}  // namespace shmports::channel::testing

#endif  // SHMPORTS_TESTS_CHANNEL_HOSTILE_CHECKS_H_
