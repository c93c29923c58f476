// per_process<T>(): one T per process, which a child of fork() gets afresh.
//
// For the pools of memory kept MADV_DONTFORK (stream/buffer.cc,
// stream/unforked.cc): a child did not inherit what its copy of a pool
// lists, and must not take its copy's lock either (another thread may have
// held it when the parent forked). The T is leaked on purpose, so that it
// stays usable during exit.
//
// Thread safety: any thread. The child's fresh T is made by fork()'s child
// handler, while the child has a single thread.
#ifndef SPINDLE_STREAM_PER_PROCESS_H_
#define SPINDLE_STREAM_PER_PROCESS_H_

#include <pthread.h>

#include <mutex>

namespace spindle {

template <typename T>
T& per_process() {
  static T* current = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    current = new T();
    pthread_atfork(nullptr, nullptr, [] { current = new T(); });
  });
  return *current;
}

}  // namespace spindle

#endif  // SPINDLE_STREAM_PER_PROCESS_H_
