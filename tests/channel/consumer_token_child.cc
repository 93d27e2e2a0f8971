// Child of consumer_token_multiprocess_test: accepts the invitation, reads
// "N LARGE_EVERY TAIL" from the pipe named "data", sends N numbered messages
// (consumer_token_payload.h), waits for "drained", sends TAIL small ones and
// exits at once without closing anything (no goodbye: the parent sees a
// death with the tail still in the ring, or being drained).
#include <shmports/invitation.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "tests/channel/consumer_token_payload.h"

int main() {
  auto invitation = shmports::AcceptInvitation();
  if (!invitation.ok()) {
    std::fprintf(stderr, "child: %s\n", invitation.status().ToString().c_str());
    return 1;
  }
  auto pipe = invitation->ExtractPipe("data");
  if (!pipe.ok())
    return 1;
  auto order = pipe->Receive(std::chrono::seconds(30));
  if (!order.ok())
    return 1;
  unsigned long n = 0;
  unsigned long large_every = 0;
  unsigned long tail = 0;
  if (std::sscanf(std::string(order->text()).c_str(), "%lu %lu %lu", &n,
                  &large_every, &tail) != 3) {
    return 1;
  }
  auto send = [&](uint64_t i, uint64_t every) {
    auto bytes = shmports::testing::TokenPayload(i, every);
    // Credit spent (the reader lags): retry until it catches up.
    const auto give_up =
        std::chrono::steady_clock::now() + std::chrono::seconds(60);
    shmports::Status sent = pipe->Send(bytes);
    while (sent.code() == shmports::StatusCode::kResourceExhausted &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
      sent = pipe->Send(bytes);
    }
    if (!sent.ok()) {
      std::fprintf(stderr, "child: send %llu: %s\n",
                   static_cast<unsigned long long>(i), sent.ToString().c_str());
      _exit(1);
    }
  };
  for (uint64_t i = 0; i < n; ++i)
    send(i, large_every);
  // The parent has read all of those, so nothing waits in this process's
  // overflow queue and the ring is empty: the small tail below goes
  // straight into the ring (Send commits it before returning).
  auto drained = pipe->Receive(std::chrono::seconds(60));
  if (!drained.ok() || drained->text() != "drained")
    return 1;
  for (uint64_t i = n; i < n + tail; ++i)
    send(i, 0);
  // Everything is committed to the ring: die without a goodbye.
  _exit(0);
}
