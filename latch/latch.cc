#include "latch/latch.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace spindle {
namespace latch_internal {

namespace {
thread_local ThreadWaker* tls_waker = nullptr;

// Frees the thread's waker when the thread exits.
struct WakerOwner {
  ~WakerOwner() {
    delete tls_waker;
    tls_waker = nullptr;
  }
};
thread_local WakerOwner tls_owner;
}  // namespace

absl::Duration spin_budget() {
  static const absl::Duration budget = [] {
    const char* env = getenv("SPINDLE_SPIN_US");
    return absl::Microseconds(env ? atoi(env) : 50);
  }();
  return budget;
}

SpinPolicy& thread_spin_policy() {
  thread_local SpinPolicy policy;
  return policy;
}

ThreadWaker& ThreadWaker::current() {
  if (tls_waker == nullptr) {
    (void)&tls_owner;  // Instantiates the owner so its destructor runs.
    tls_waker = new ThreadWaker();
  }
  return *tls_waker;
}

void ThreadWaker::forget_after_fork() {
  if (tls_waker != nullptr) {
    tls_waker->fd_.forget();
    delete tls_waker;
    tls_waker = nullptr;
  }
}

bool ThreadWaker::sleep_until(absl::Time deadline) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    }
    pollfd p{fd_.fd(), POLLIN, 0};
    int n = poll(&p, 1, timeout_ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

void ThreadWaker::consume() {
  // The waker marked us woken under the latch lock and signals just after
  // releasing it: wait for the signal if it has not come yet.
  while (!fd_.drain()) {
    pollfd p{fd_.fd(), POLLIN, 0};
    poll(&p, 1, -1);
  }
}

}  // namespace latch_internal

latch_internal::ThreadWaker* LatchBase::take_sleeper_locked() {
  for (Sleeper* s : sleepers_) {
    if (!s->woken) {
      s->woken = true;
      return s->waker;
    }
  }
  return nullptr;
}

bool LatchBase::sleep_locked(std::unique_lock<std::mutex>& lock, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture() && deadline <= absl::Now()) return false;
  Sleeper self{&latch_internal::ThreadWaker::current()};
  sleepers_.push_back(&self);
  lock.unlock();
  self.waker->sleep_until(deadline);
  lock.lock();
  sleepers_.erase(std::find(sleepers_.begin(), sleepers_.end(), &self));
  if (self.woken) {
    // Whoever woke us signalled exactly once; take it so the next sleep on
    // this thread does not return at once.
    self.waker->consume();
    return true;
  }
  return false;
}

}  // namespace spindle
