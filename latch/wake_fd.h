// WakeFd: a descriptor that one thread makes readable to wake another
// thread blocked polling it (a broker in its poller, a latch sleeper).
//
// An eventfd where the kernel has one (one descriptor; signals add up in a
// counter), else a non-blocking pipe. Both cost a fraction of a unix
// socket's write and read.
//
// Owns its descriptors and closes them on destruction. Thread safety:
// signal() from any thread; drain() from the thread that polls fd().
#ifndef SPINDLE_LATCH_WAKE_FD_H_
#define SPINDLE_LATCH_WAKE_FD_H_

namespace spindle {

class WakeFd {
 public:
  // Aborts when no descriptor can be made: without one no thread can sleep.
  WakeFd();
  ~WakeFd();
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;

  // What a sleeper polls for readability.
  int fd() const { return read_fd_; }
  // Makes fd() readable until drained.
  void signal();
  // Consumes every signal so far; false when there was none.
  bool drain();
  // After fork() in the child: let go of the inherited descriptors without
  // closing them (the child closes what it inherited by number).
  void forget();

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;  // == read_fd_ for an eventfd
};

}  // namespace spindle

#endif  // SPINDLE_LATCH_WAKE_FD_H_
