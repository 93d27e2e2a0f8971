#include "bench/harness/subject.h"

#include <algorithm>

#include "core/base/str_format.h"

namespace shmports::bench {

const char* PatternName(Pattern pattern) {
  return pattern == Pattern::kRoundTrip ? "round-trip" : "one-way";
}

Result<Pattern> ParsePattern(std::string_view text) {
  if (text == "round-trip")
    return Pattern::kRoundTrip;
  if (text == "one-way")
    return Pattern::kOneWay;
  return InvalidArgumentError(
      StrFormat("unknown pattern '%.*s' (expected round-trip or one-way)",
                static_cast<int>(text.size()), text.data()));
}

bool Subject::Supports(Pattern pattern, size_t size) const {
  if (size > info_.max_size || size < kMinPayload)
    return false;
  return pattern == Pattern::kRoundTrip ? info_.round_trip : info_.one_way;
}

size_t Subject::PayloadBytes(size_t size) const {
  return std::max(kMinPayload, std::min(size, info_.payload_cap));
}

Result<std::unique_ptr<ParentEndpoint>> Subject::CreateParent(
    const TrialParams&,
    Handoff*) const {
  return FailedPreconditionError(
      StrFormat("subject %s has no peer process", info_.name.c_str()));
}

Status Subject::RunPeer(const TrialParams&,
                        const Handoff&,
                        ControlBlock*) const {
  return FailedPreconditionError(
      StrFormat("subject %s has no peer role", info_.name.c_str()));
}

Result<OneWayOutcome> Subject::RunLocal(const PayloadPattern&,
                                        const TrialParams&) const {
  return FailedPreconditionError(
      StrFormat("subject %s is not local", info_.name.c_str()));
}

}  // namespace shmports::bench
