#include "latch/wake_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

namespace spindle {

WakeFd::WakeFd() {
#if defined(__linux__)
  read_fd_ = write_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
#elif defined(__APPLE__)
  // No pipe2() here: a fork+exec on another thread between pipe() and
  // fcntl() may inherit the pair.
  int p[2];
  if (pipe(p) == 0) {
    for (int fd : p) {
      fcntl(fd, F_SETFL, O_NONBLOCK);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    read_fd_ = p[0];
    write_fd_ = p[1];
  }
#else
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
    read_fd_ = p[0];
    write_fd_ = p[1];
  }
#endif
  if (read_fd_ < 0) {
    perror("spindle: wake-up descriptor");
    abort();
  }
}

WakeFd::~WakeFd() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0 && write_fd_ != read_fd_) close(write_fd_);
}

void WakeFd::signal() {
  uint64_t one = 1;  // an eventfd takes 8 bytes; a pipe, the first one
  while (write(write_fd_, &one, write_fd_ == read_fd_ ? sizeof one : 1) < 0 && errno == EINTR) {
  }
}

bool WakeFd::drain() {
  bool any = false;
  uint64_t buf;
  for (;;) {
    ssize_t n = read(read_fd_, &buf, sizeof buf);
    if (n > 0) {
      any = true;
      if (write_fd_ == read_fd_) return true;  // an eventfd empties in one read
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return any;
  }
}

void WakeFd::forget() { read_fd_ = write_fd_ = -1; }

}  // namespace spindle
