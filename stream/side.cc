#include "stream/side.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace spindle {

Side::Side(int fd, std::string name) : fd_(fd), is_socket_(false), name_(std::move(name)) {
  struct stat st;
  is_socket_ = fstat(fd_, &st) == 0 && S_ISSOCK(st.st_mode);
  int fl = fcntl(fd_, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd_, F_SETFL, fl | O_NONBLOCK);
  int fdfl = fcntl(fd_, F_GETFD);
  if (fdfl >= 0 && !(fdfl & FD_CLOEXEC)) fcntl(fd_, F_SETFD, fdfl | FD_CLOEXEC);
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
  return io_op([&] { return ::writev(fd_, iov, count); });
}

std::string describe_disconnect(const IoResult& r) {
  return r.error == 0 ? std::string("EOF") : std::string(strerror(r.error));
}

}  // namespace spindle
