// Side: one non-blocking file descriptor (pipe end, tty or socket) that a
// Stream reads from or writes to.
//
// A pipe starts at the kernel's default size (64 KiB on Linux); the first
// write that finds it full grows it to 1 MiB, where the user's pipe limits
// allow, and tries again: a stream that carries bulk or bursts then wakes
// its reader and writer a sixteenth as often, and one that never fills its
// pipe takes no more of the user's pipe allowance than any pipe.
//
// Owns the descriptor and closes it on destruction (unless release()d).
// read() and write() go through io_op(), which turns the errors a peer's
// disappearance produces (EIO from a pty whose other end closed, ECONNRESET,
// EPIPE) into a plain disconnect, exactly as if EOF had been read: callers
// then have one way to learn that the other side is gone.
//
// Thread safety: none of its own. A Stream reads its receive Side on the
// broker thread only, and writes its transmit Side from any thread, under
// the Stream's transmit lock.
#ifndef SPINDLE_STREAM_SIDE_H_
#define SPINDLE_STREAM_SIDE_H_

#include <errno.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <memory>
#include <string>

namespace spindle {

// What one read or write did.
struct IoResult {
  enum Kind { kDone, kWouldBlock, kDisconnected };
  Kind kind;
  size_t bytes = 0;   // with kDone
  int error = 0;      // with kDisconnected: the errno, or 0 for EOF
};

// Runs read/write-like `op`, retrying EINTR; maps EAGAIN to kWouldBlock and
// EOF, EIO, ECONNRESET, EPIPE (and any other error) to kDisconnected.
template <typename Op>
IoResult io_op(Op&& op);

class Side {
 public:
  // Takes ownership of `fd` and makes it non-blocking and close-on-exec.
  // `name` appears in error messages ("stdin of ctx 3").
  Side(int fd, std::string name);
  // Takes ownership of `fd`, a pipe end that its maker opened non-blocking
  // and close-on-exec (pipe2(O_NONBLOCK | O_CLOEXEC)): unlike the
  // constructor, asks the kernel nothing (four system calls fewer, on the
  // path of every fork).
  static std::unique_ptr<Side> pipe_end(int fd, std::string name);
  ~Side();
  Side(const Side&) = delete;
  Side& operator=(const Side&) = delete;

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }
  bool closed() const { return fd_ < 0; }

  IoResult read(void* buf, size_t n);
  IoResult write(const void* buf, size_t n);
  IoResult writev(const struct iovec* iov, int count);

  // Lets splice_pages() hand this pipe's reader our pages by reference.
  // Only for a pipe whose reader is a Stream of ours: it copies with
  // read(), so the pipe's unread count says when our pages are free again.
  // A reader that moved them on with splice() or tee() would hold them
  // after the count fell. No effect but on a pipe on Linux. Call it before
  // the Side goes to its Stream.
  void allow_splice();
  bool can_splice() const { return splice_allowed_; }
  // Pipes only. Puts the pages of [buf, buf + n) into the pipe by
  // reference instead of copying them (vmsplice; a plain write where the
  // kernel refuses). The caller must leave those bytes unchanged until the
  // reader has read past them (unread_bytes()); see Stream.
  IoResult splice_pages(const void* buf, size_t n);
  // Pipes only. Bytes written and not yet read, or -1 when unknown.
  ssize_t unread_bytes() const;

  // Closes the descriptor now; later I/O reports kDisconnected.
  void close();
  // Gives up ownership of the descriptor without closing it.
  int release();

 private:
  // A write to a pipe: `op`, once more after growing a full pipe.
  template <typename Op>
  IoResult write_pipe(Op&& op);

  struct KnownPipe {};
  Side(int fd, std::string name, KnownPipe);

  int fd_;
  bool is_socket_;  // writes use MSG_NOSIGNAL: a gone peer is EPIPE, not SIGPIPE
  bool is_pipe_;    // writes block SIGPIPE and take back the one they raise
  bool widened_ = false;  // a write found the pipe full and grew it
  bool splice_allowed_ = false;
  std::string name_;
};

// Text for a disconnect: "EOF" or strerror(error).
std::string describe_disconnect(const IoResult& r);

template <typename Op>
IoResult io_op(Op&& op) {
  for (;;) {
    ssize_t n = op();
    if (n > 0) return {IoResult::kDone, static_cast<size_t>(n), 0};
    if (n == 0) return {IoResult::kDisconnected, 0, 0};
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) return {IoResult::kWouldBlock, 0, 0};
    return {IoResult::kDisconnected, 0, e};
  }
}

}  // namespace spindle

#endif  // SPINDLE_STREAM_SIDE_H_
