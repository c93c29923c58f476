// Latch: a thread-safe FIFO queue that any number of threads may put into
// and wait on.
//
// Why not a condition variable: a sleeping waiter here blocks in poll() on a
// wake-up descriptor (latch/wake_fd.h) owned by its own thread (created
// lazily, kept in thread-local storage and lent to one latch only while the
// thread sleeps), so a wait with a timeout wakes exactly on time, and the
// number of descriptors grows with threads, not with latches. Before sleeping a waiter spins for a few
// microseconds: on small virtual machines a sleep/wake pair costs tens of
// microseconds, more than most request/reply exchanges.
//
// Thread safety: every method may be called from any thread.
// Errors: get() returns DEADLINE_EXCEEDED when the timeout passes with
// nothing queued, and UNAVAILABLE once close() has been called (items queued
// before close() are still returned first).
#ifndef SPINDLE_LATCH_LATCH_H_
#define SPINDLE_LATCH_LATCH_H_

#include <sched.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "latch/wake_fd.h"

namespace spindle {

namespace latch_internal {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The calling thread's wake-up descriptor, created on first use: polled by
// the thread while it sleeps on a latch, signalled by whoever wakes it.
class ThreadWaker {
 public:
  static ThreadWaker& current();
  // After fork() in the child: forget (without closing) the descriptor that
  // the thread inherited, so that a fresh one is made on next use.
  static void forget_after_fork();

  void wake() { fd_.signal(); }
  // Blocks until woken or `deadline`; returns true when woken.
  bool sleep_until(absl::Time deadline);
  // Consumes a wake-up that is known to have been sent.
  void consume();

  ThreadWaker() = default;
  ThreadWaker(const ThreadWaker&) = delete;
  ThreadWaker& operator=(const ThreadWaker&) = delete;

 private:
  WakeFd fd_;
};

// Nanoseconds of CLOCK_MONOTONIC. Unlike Abseil's clock, which may take a
// spin lock to recalibrate, it takes no lock: a broker may be corked for
// fork() while it spins reading it (broker.h).
inline int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// How long a waiter spins before it sleeps; SPINDLE_SPIN_US overrides it
// (0 disables spinning).
absl::Duration spin_budget();

// Spin-then-sleep for one waiter: a thread's latch waits, or a broker loop.
// Spinning pays only when what we wait for comes soon. After a wait that
// lasted well past the spin budget, the next wait sleeps at once, so idle
// contexts do not burn the CPU that busy ones need; a short wait turns
// spinning back on.
class SpinPolicy {
 public:
  // Spins for at most spin_budget() until `ready()` is true (or not at all
  // after a long wait), yielding the CPU after every `checks_per_yield`
  // checks. Returns ready(), or false without asking when it may not spin
  // (the caller's sleep finds out). Sets *started for finished().
  template <typename F>
  bool spin(F&& ready, int64_t* started, int checks_per_yield) {
    *started = monotonic_ns();
    const int64_t budget_ns = absl::ToInt64Nanoseconds(spin_budget());
    // For a broker a look is a system call, which its sleep makes anyway.
    if (budget_ns == 0 || !enabled_) return false;
    if (ready()) return true;
    const int64_t end = *started + budget_ns;
    for (;;) {
      for (int i = 0; i < checks_per_yield; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
      // Yield rather than only pause: on a machine with fewer cores than
      // busy threads the thread we wait for may be queued behind us.
      sched_yield();
      if (monotonic_ns() >= end) return ready();
    }
  }
  // Records how long the wait begun by spin() took in all.
  void finished(int64_t started) {
    enabled_ = monotonic_ns() - started < 4 * absl::ToInt64Nanoseconds(spin_budget());
  }

 private:
  bool enabled_ = true;
};

// The calling thread's policy for latch waits.
SpinPolicy& thread_spin_policy();

}  // namespace latch_internal

class LatchBase {
 public:
  LatchBase() = default;
  LatchBase(const LatchBase&) = delete;
  LatchBase& operator=(const LatchBase&) = delete;

 protected:
  struct Sleeper {
    latch_internal::ThreadWaker* waker;
    bool woken = false;
  };
  // Caller holds mu_. Marks the oldest sleeper not yet woken as woken and
  // returns its waker (or null), for the caller to wake() once it has
  // released mu_: a sleeper woken under the lock would only block on it.
  // The waker stays valid until woken, because a sleeper marked woken waits
  // for its signal before it returns.
  latch_internal::ThreadWaker* take_sleeper_locked();
  // Called with `lock` held and nothing available; sleeps until woken, closed
  // or deadline. Returns false on deadline. The lock is held again on return.
  bool sleep_locked(std::unique_lock<std::mutex>& lock, absl::Time deadline);

  std::mutex mu_;
  std::vector<Sleeper*> sleepers_;
  // Mirrors "queue non-empty or closed", so spinners can poll without the lock.
  std::atomic<bool> ready_{false};
  bool closed_ = false;
};

template <typename T>
class Latch : public LatchBase {
 public:
  // Queues `item` and wakes one sleeping getter. After close() the item is
  // dropped.
  void put(T item) {
    latch_internal::ThreadWaker* waker;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      items_.push_back(std::move(item));
      ready_.store(true, std::memory_order_release);
      waker = take_sleeper_locked();
    }
    if (waker) waker->wake();
  }

  // Returns the oldest item, waiting up to `timeout` for one.
  absl::StatusOr<T> get(absl::Duration timeout = absl::InfiniteDuration()) {
    int64_t started = 0;
    latch_internal::SpinPolicy* policy = nullptr;
    if (timeout > absl::ZeroDuration() && !ready_.load(std::memory_order_acquire)) {
      policy = &latch_internal::thread_spin_policy();
      policy->spin([this] { return ready_.load(std::memory_order_acquire); }, &started, 16);
    }
    absl::Time deadline = timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
    std::unique_lock<std::mutex> lock(mu_);
    while (queued() == 0) {
      if (closed_) return absl::UnavailableError("latch closed");
      if (!sleep_locked(lock, deadline)) {
        if (queued() != 0) break;
        if (policy) policy->finished(started);
        return absl::DeadlineExceededError(
            absl::StrCat("nothing arrived within ", absl::FormatDuration(timeout)));
      }
    }
    if (policy) policy->finished(started);
    return pop_locked();
  }

  // Returns the oldest item without waiting, or UNAVAILABLE when closed,
  // or DEADLINE_EXCEEDED when nothing is queued.
  absl::StatusOr<T> try_get() { return get(absl::ZeroDuration()); }

  // Wakes every sleeper with UNAVAILABLE; later puts are dropped.
  void close() {
    std::vector<latch_internal::ThreadWaker*> wakers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      ready_.store(true, std::memory_order_release);
      while (latch_internal::ThreadWaker* w = take_sleeper_locked()) wakers.push_back(w);
    }
    for (latch_internal::ThreadWaker* w : wakers) w->wake();
  }

  // True when get() would have to wait. Only a hint under concurrency.
  bool empty() {
    std::lock_guard<std::mutex> lock(mu_);
    return queued() == 0;
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return queued();
  }

 private:
  size_t queued() const { return items_.size() - head_; }

  T pop_locked() {
    T item = std::move(items_[head_++]);
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
      if (!closed_) ready_.store(false, std::memory_order_release);
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      // A queue that never quite drains would otherwise grow for ever:
      // drop the consumed half (amortised O(1) per item).
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return item;
  }

  // A FIFO as a vector and a read index: no allocation until the first put
  // (most latches carry one reply), and the vector is reused once drained.
  std::vector<T> items_;
  size_t head_ = 0;
};

}  // namespace spindle

#endif  // SPINDLE_LATCH_LATCH_H_
