#include "stream/side.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace spindle {
namespace {

// A write to a pipe whose reader is gone raises SIGPIPE, which kills the
// process by default, and pipes have no MSG_NOSIGNAL. So SIGPIPE is blocked
// in this thread for the write, and the one it raised is taken back (when
// the caller had it blocked already, the caller keeps it).
template <typename Op>
IoResult write_without_sigpipe(Op&& op) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  IoResult r = io_op(op);
  if (r.kind == IoResult::kDisconnected && r.error == EPIPE && !sigismember(&old, SIGPIPE)) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return r;
}

}  // namespace

Side::Side(int fd, std::string name) : fd_(fd), is_socket_(false), is_pipe_(false), name_(std::move(name)) {
  struct stat st;
  if (fstat(fd_, &st) == 0) {
    is_socket_ = S_ISSOCK(st.st_mode);
    is_pipe_ = S_ISFIFO(st.st_mode);
  }
  int fl = fcntl(fd_, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd_, F_SETFL, fl | O_NONBLOCK);
  int fdfl = fcntl(fd_, F_GETFD);
  if (fdfl >= 0 && !(fdfl & FD_CLOEXEC)) fcntl(fd_, F_SETFD, fdfl | FD_CLOEXEC);
}

Side::Side(int fd, std::string name, KnownPipe)
    : fd_(fd), is_socket_(false), is_pipe_(true), name_(std::move(name)) {}

std::unique_ptr<Side> Side::pipe_end(int fd, std::string name) {
  return std::unique_ptr<Side>(new Side(fd, std::move(name), KnownPipe{}));
}

Side::~Side() { close(); }

void Side::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int Side::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

IoResult Side::read(void* buf, size_t n) {
  if (fd_ < 0) return {IoResult::kDisconnected, 0, EBADF};
  return io_op([&] { return ::read(fd_, buf, n); });
}

IoResult Side::write(const void* buf, size_t n) {
  if (fd_ < 0) return {IoResult::kDisconnected, 0, EBADF};
  if (n == 0) return {IoResult::kDone, 0, 0};
  if (is_socket_) return io_op([&] { return ::send(fd_, buf, n, MSG_NOSIGNAL); });
  if (is_pipe_) return write_pipe([&] { return ::write(fd_, buf, n); });
  return io_op([&] { return ::write(fd_, buf, n); });
}

IoResult Side::writev(const struct iovec* iov, int count) {
  if (fd_ < 0) return {IoResult::kDisconnected, 0, EBADF};
  if (is_socket_) {
    msghdr mh{};
    mh.msg_iov = const_cast<iovec*>(iov);
    mh.msg_iovlen = static_cast<size_t>(count);
    return io_op([&] { return ::sendmsg(fd_, &mh, MSG_NOSIGNAL); });
  }
  if (is_pipe_) return write_pipe([&] { return ::writev(fd_, iov, count); });
  return io_op([&] { return ::writev(fd_, iov, count); });
}

template <typename Op>
IoResult Side::write_pipe(Op&& op) {
  IoResult r = write_without_sigpipe(op);
#if defined(__linux__)
  if (r.kind == IoResult::kWouldBlock && !widened_) {
    widened_ = true;
    int before = fcntl(fd_, F_GETPIPE_SZ);
    // Refused past the user's pipe limits: then the pipe stays as it is.
    if (before > 0 && fcntl(fd_, F_SETPIPE_SZ, 1 << 20) > before) r = write_without_sigpipe(op);
  }
#endif
  return r;
}

void Side::allow_splice() {
#if defined(__linux__)
  splice_allowed_ = is_pipe_;
#endif
}

IoResult Side::splice_pages(const void* buf, size_t n) {
  if (fd_ < 0) return {IoResult::kDisconnected, 0, EBADF};
#if defined(__linux__)
  iovec iov{const_cast<void*>(buf), n};
  IoResult r = write_pipe([&] { return ::vmsplice(fd_, &iov, 1, SPLICE_F_NONBLOCK); });
  if (r.kind != IoResult::kDisconnected || (r.error != EINVAL && r.error != ENOSYS && r.error != EPERM)) {
    return r;
  }
  splice_allowed_ = false;  // a kernel or sandbox without it: copy from now on
#endif
  return write(buf, n);
}

ssize_t Side::unread_bytes() const {
  int n = 0;
  if (fd_ < 0 || ioctl(fd_, FIONREAD, &n) != 0) return -1;
  return n;
}

std::string describe_disconnect(const IoResult& r) {
  return r.error == 0 ? std::string("EOF") : std::string(strerror(r.error));
}

}  // namespace spindle
