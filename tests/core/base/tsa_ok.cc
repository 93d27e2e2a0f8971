// Compiled by thread_safety_check.sh: must build cleanly with
// -Werror=thread-safety.
#include "core/base/mutex.h"

struct Account {
  shmports::Mutex mu;
  int balance GUARDED_BY(mu) = 0;
  void Deposit(int v) {
    shmports::MutexLock lock(&mu);
    balance += v;
  }
};

int main() {
  Account a;
  a.Deposit(1);
  return 0;
}
