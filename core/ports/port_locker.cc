#include "core/ports/port_locker.h"

#include <algorithm>

namespace shmports::ports {

// The analysis cannot follow locks chosen at run time; the constructor and
// destructor pair them by construction.
PortLocker::PortLocker(const PortRef* const* refs, size_t count)
    : sorted_(inline_), count_(count) {
  if (count > kInlinePorts) {
    heap_.resize(count);
    sorted_ = heap_.data();
  }
  std::copy(refs, refs + count, sorted_);
  std::sort(sorted_, sorted_ + count_, [](const PortRef* a, const PortRef* b) {
    return a->name() < b->name();
  });
  for (size_t i = 0; i < count_; ++i) {
    if (i > 0 && sorted_[i]->port() == sorted_[i - 1]->port())
      continue;
    sorted_[i]->port()->lock_.Lock();
  }
}

PortLocker::~PortLocker() {
  for (size_t i = count_; i-- > 0;) {
    if (i > 0 && sorted_[i]->port() == sorted_[i - 1]->port())
      continue;
    sorted_[i]->port()->lock_.Unlock();
  }
}

SinglePortLocker::SinglePortLocker(const PortRef* ref) : port_(ref->port()) {
  port_->lock_.Lock();
}

SinglePortLocker::~SinglePortLocker() {
  port_->lock_.Unlock();
}

}  // namespace shmports::ports
