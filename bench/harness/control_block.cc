#include "bench/harness/control_block.h"

#include <cstring>

#include "bench/harness/shared_page.h"

namespace shmports::bench {

void PublishPeerState(ControlBlock* block, PeerState state) {
  // Pairs with the acquire load in LoadPeerState (parent).
  std::atomic_ref<uint32_t>(block->state)
      .store(static_cast<uint32_t>(state), std::memory_order_release);
  FutexWakeShared(&block->state);
}

void PublishPeerFailure(ControlBlock* block, const Status& status) {
  std::string text = status.ToString();
  size_t n = std::min(text.size(), sizeof(block->error) - 1);
  std::memcpy(block->error, text.data(), n);
  block->error[n] = '\0';
  PublishPeerState(block, PeerState::kFailed);
}

std::string PeerErrorText(const ControlBlock* block) {
  return std::string(block->error, strnlen(block->error, sizeof(block->error)));
}

}  // namespace shmports::bench
