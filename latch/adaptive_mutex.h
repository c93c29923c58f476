// AdaptiveMutex: a mutex whose waiters spin briefly before they sleep.
//
// For critical sections that two threads enter at a high rate, each a few
// instructions or a few non-blocking system calls long: a stream's
// transmit queue (a caller's direct write against the broker's flush) and
// the router's handle table (a caller allocating reply handles against the
// broker delivering replies). std::mutex sleeps at the first
// contention, and on a small virtual machine a sleep and its wake-up cost
// tens of microseconds, far more than the section itself: with 10,000
// calls in flight, a third of the runs fell into a convoy of thousands of
// futex sleeps and ran at a third of the speed. glibc's adaptive mutex
// spins a bounded number of times before it sleeps; where there is none
// this is a std::mutex.
//
// Owns nothing but the lock. Thread safety: a mutex. Meets Lockable, so
// std::lock_guard and std::unique_lock take it.
#ifndef SPINDLE_LATCH_ADAPTIVE_MUTEX_H_
#define SPINDLE_LATCH_ADAPTIVE_MUTEX_H_

#include <pthread.h>

#include <mutex>

namespace spindle {

#if defined(__GLIBC__)
class AdaptiveMutex {
 public:
  AdaptiveMutex() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&mu_, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~AdaptiveMutex() { pthread_mutex_destroy(&mu_); }
  AdaptiveMutex(const AdaptiveMutex&) = delete;
  AdaptiveMutex& operator=(const AdaptiveMutex&) = delete;

  void lock() { pthread_mutex_lock(&mu_); }
  bool try_lock() { return pthread_mutex_trylock(&mu_) == 0; }
  void unlock() { pthread_mutex_unlock(&mu_); }

 private:
  pthread_mutex_t mu_;
};
#else
using AdaptiveMutex = std::mutex;
#endif

}  // namespace spindle

#endif  // SPINDLE_LATCH_ADAPTIVE_MUTEX_H_
