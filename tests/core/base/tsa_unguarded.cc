// Compiled by thread_safety_check.sh: must be rejected by -Werror=thread-safety
// (the write to `balance` does not hold `mu`).
#include "core/base/mutex.h"

struct Account {
  shmports::Mutex mu;
  int balance GUARDED_BY(mu) = 0;
  void Deposit(int v) { balance += v; }
};

int main() {
  Account a;
  a.Deposit(1);
  return 0;
}
