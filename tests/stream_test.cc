// The stream layer: Side/io_op turning EOF, EPIPE, ECONNRESET and a pty's
// EIO into a clean disconnect (and never killing the process with SIGPIPE:
// this file deliberately leaves SIGPIPE at its default action); the frame
// codec; and Stream over real socketpairs with a recording Protocol: partial
// reads, a 64 MiB frame, batched frames, partial writes to a slow reader,
// bad magic, oversized frames skipped without buffering, EOF, send() after a
// disconnect, SendResult semantics, send() from many threads while one
// thread flushes, and large bodies spliced into pipes (kept until read).
#include "stream/stream.h"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "latch/latch.h"
#include "stream/buffer.h"
#include "stream/frame.h"
#include "stream/side.h"

namespace spindle {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(30);

Frame make_frame(uint32_t handle, std::string body) {
  Frame f;
  f.dst_id = 0x01020304;
  f.src_id = 2;
  f.auth_id = 3;
  f.handle = handle;
  f.reply_to = 0xFFFFFFFE;
  f.body = std::move(body);
  return f;
}

std::string encode(const Frame& f) {
  char h[kFrameHeaderSize];
  encode_frame_header(f, h);
  return std::string(h, kFrameHeaderSize) + f.body;
}

// A header announcing `length` bytes regardless of the body it carries.
std::string header_claiming(const Frame& f, uint32_t length) {
  char h[kFrameHeaderSize];
  encode_frame_header(f, h);
  h[22] = static_cast<char>(length >> 24);
  h[23] = static_cast<char>(length >> 16);
  h[24] = static_cast<char>(length >> 8);
  h[25] = static_cast<char>(length);
  return std::string(h, kFrameHeaderSize);
}

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// Writes all of `data` to blocking `fd`; false on error.
// Uses send(MSG_NOSIGNAL) on sockets, so that a stream that wrongly closed
// early fails the test instead of killing it with SIGPIPE.
bool write_all(int fd, const char* data, size_t n) {
  bool socket = true;
  while (n > 0) {
    ssize_t w = socket ? send(fd, data, n, MSG_NOSIGNAL) : write(fd, data, n);
    if (w < 0 && errno == ENOTSOCK) {
      socket = false;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
bool write_all(int fd, const std::string& s) { return write_all(fd, s.data(), s.size()); }

void expect_same_frame(const Frame& got, const Frame& want) {
  EXPECT_EQ(got.dst_id, want.dst_id);
  EXPECT_EQ(got.src_id, want.src_id);
  EXPECT_EQ(got.auth_id, want.auth_id);
  EXPECT_EQ(got.handle, want.handle);
  EXPECT_EQ(got.reply_to, want.reply_to);
  EXPECT_EQ(got.body.size(), want.body.size());
  EXPECT_TRUE(got.body == want.body) << "body differs (handle " << want.handle << ")";
}

// ---------------------------------------------------------------- Side

TEST(SideTest, MakesDescriptorNonBlockingAndCloseOnExec) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Side side(p[0], "rx");
  EXPECT_TRUE(fcntl(p[0], F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(side.name(), "rx");
  char c;
  IoResult r = side.read(&c, 1);
  EXPECT_EQ(r.kind, IoResult::kWouldBlock);
  ASSERT_EQ(write(p[1], "ab", 2), 2);
  char buf[8];
  r = side.read(buf, sizeof buf);
  ASSERT_EQ(r.kind, IoResult::kDone);
  EXPECT_EQ(r.bytes, 2u);
  EXPECT_EQ(std::string(buf, 2), "ab");
  close(p[1]);
}

TEST(SideTest, ReadFromPipeWhoseWriterClosedIsCleanDisconnect) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Side side(p[0], "rx");
  close(p[1]);
  char c;
  IoResult r = side.read(&c, 1);
  EXPECT_EQ(r.kind, IoResult::kDisconnected);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(describe_disconnect(r), "EOF");
}

TEST(SideTest, WriteToSocketWhosePeerClosedIsDisconnectNotSigpipe) {
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  Side side(s[0], "tx");
  close(s[1]);
  IoResult r = side.write("x", 1);
  EXPECT_EQ(r.kind, IoResult::kDisconnected);
  EXPECT_EQ(r.error, EPIPE);
  EXPECT_EQ(describe_disconnect(r), strerror(EPIPE));
  iovec iov[2] = {{const_cast<char*>("a"), 1}, {const_cast<char*>("b"), 1}};
  r = side.writev(iov, 2);
  EXPECT_EQ(r.kind, IoResult::kDisconnected);
  EXPECT_EQ(r.error, EPIPE);
}

// Both ways to make a Side of a pipe: the constructor finds out that it is
// one; pipe_end() is told (and would let SIGPIPE kill the test if it took
// the pipe for something else).
TEST(SideTest, WriteToPipeWhoseReaderClosedIsDisconnectNotSigpipe) {
  for (bool told : {false, true}) {
    SCOPED_TRACE(told ? "Side::pipe_end" : "Side::Side");
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    std::unique_ptr<Side> side = told ? Side::pipe_end(p[1], "tx") : std::make_unique<Side>(p[1], "tx");
    close(p[0]);
    IoResult r = side->write("x", 1);
    EXPECT_EQ(r.kind, IoResult::kDisconnected);
    EXPECT_EQ(r.error, EPIPE);
    iovec iov[1] = {{const_cast<char*>("a"), 1}};
    r = side->writev(iov, 1);
    EXPECT_EQ(r.kind, IoResult::kDisconnected);
    EXPECT_EQ(r.error, EPIPE);
    // A SIGPIPE the caller blocked and left pending is not ours to consume,
    // and none of ours may be left behind.
    sigset_t pending;
    sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  }
}

#if defined(__linux__)
TEST(SideTest, ReadAfterPeerClosedWithUnreadDataIsDisconnect) {
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  Side side(s[0], "rx");
  ASSERT_EQ(side.write("unread", 6).kind, IoResult::kDone);
  close(s[1]);  // with our bytes unread: ECONNRESET on Linux
  char buf[8];
  IoResult r = side.read(buf, sizeof buf);
  EXPECT_EQ(r.kind, IoResult::kDisconnected);
  EXPECT_TRUE(r.error == ECONNRESET || r.error == 0) << strerror(r.error);
}
#endif

TEST(SideTest, PtyMasterReadAfterSlaveClosedIsDisconnect) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0) << strerror(errno);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  const char* name = ptsname(master);
  ASSERT_NE(name, nullptr);
  int slave = open(name, O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0) << strerror(errno);
  Side side(master, "pty");
  close(slave);
  char buf[16];
  IoResult r{IoResult::kWouldBlock};
  // The hang-up is immediate on Linux; allow a moment elsewhere.
  for (int i = 0; i < 100 && r.kind == IoResult::kWouldBlock; ++i) {
    r = side.read(buf, sizeof buf);
    if (r.kind == IoResult::kWouldBlock) {
      pollfd p{master, POLLIN, 0};
      poll(&p, 1, 10);
    }
  }
  EXPECT_EQ(r.kind, IoResult::kDisconnected);
#if defined(__linux__)
  EXPECT_EQ(r.error, EIO);
#endif
}

TEST(SideTest, ClosedSideReportsDisconnect) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Side side(p[0], "rx");
  side.close();
  EXPECT_TRUE(side.closed());
  EXPECT_EQ(fcntl(p[0], F_GETFD), -1);  // really closed
  char c;
  EXPECT_EQ(side.read(&c, 1).kind, IoResult::kDisconnected);
  side.close();  // twice is harmless
  close(p[1]);
}

TEST(SideTest, ReleaseKeepsDescriptorOpen) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  {
    Side side(p[0], "rx");
    EXPECT_EQ(side.release(), p[0]);
    EXPECT_TRUE(side.closed());
  }
  EXPECT_NE(fcntl(p[0], F_GETFD), -1);
  close(p[0]);
  close(p[1]);
}

TEST(SideTest, DestructorClosesDescriptor) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  { Side side(p[1], "tx"); }
  EXPECT_EQ(fcntl(p[1], F_GETFD), -1);
  close(p[0]);
}

TEST(IoOpTest, RetriesEintrAndMapsErrors) {
  int calls = 0;
  IoResult r = io_op([&]() -> ssize_t {
    if (++calls < 3) {
      errno = EINTR;
      return -1;
    }
    return 5;
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.kind, IoResult::kDone);
  EXPECT_EQ(r.bytes, 5u);
  r = io_op([]() -> ssize_t {
    errno = EAGAIN;
    return -1;
  });
  EXPECT_EQ(r.kind, IoResult::kWouldBlock);
  for (int e : {EIO, ECONNRESET, EPIPE}) {
    r = io_op([e]() -> ssize_t {
      errno = e;
      return -1;
    });
    EXPECT_EQ(r.kind, IoResult::kDisconnected);
    EXPECT_EQ(r.error, e);
  }
}

// ---------------------------------------------------------------- frame codec

TEST(FrameTest, HeaderRoundTripAndWireLayout) {
  Frame f = make_frame(0xA0B0C0D0, "body!");
  char h[kFrameHeaderSize];
  encode_frame_header(f, h);
  // Big-endian, magic first, length last.
  const unsigned char want[kFrameHeaderSize] = {
      0x53, 0x70, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 2, 0, 0, 0, 3,
      0xA0, 0xB0, 0xC0, 0xD0, 0xFF, 0xFF, 0xFF, 0xFE, 0, 0, 0, 5};
  EXPECT_EQ(std::memcmp(h, want, kFrameHeaderSize), 0);
  Frame g;
  g.body = "untouched";
  uint32_t length = 0;
  ASSERT_TRUE(decode_frame_header(h, &g, &length));
  EXPECT_EQ(length, 5u);
  EXPECT_EQ(g.dst_id, f.dst_id);
  EXPECT_EQ(g.src_id, f.src_id);
  EXPECT_EQ(g.auth_id, f.auth_id);
  EXPECT_EQ(g.handle, f.handle);
  EXPECT_EQ(g.reply_to, f.reply_to);
  EXPECT_EQ(g.body, "untouched");
}

TEST(FrameTest, ExtremeValues) {
  Frame f;
  f.dst_id = f.src_id = f.auth_id = f.handle = f.reply_to = 0xFFFFFFFF;
  char h[kFrameHeaderSize];
  encode_frame_header(f, h);
  std::string claim = header_claiming(f, 0xFFFFFFFF);
  Frame g;
  uint32_t length = 0;
  ASSERT_TRUE(decode_frame_header(claim.data(), &g, &length));
  EXPECT_EQ(length, 0xFFFFFFFFu);
  EXPECT_EQ(g.dst_id, 0xFFFFFFFFu);
  EXPECT_EQ(g.reply_to, 0xFFFFFFFFu);
}

TEST(FrameTest, BadMagicRejected) {
  char h[kFrameHeaderSize];
  encode_frame_header(make_frame(1, ""), h);
  for (int byte : {0, 1}) {
    char bad[kFrameHeaderSize];
    std::memcpy(bad, h, sizeof bad);
    bad[byte] ^= 0x01;
    Frame g;
    uint32_t length = 0;
    EXPECT_FALSE(decode_frame_header(bad, &g, &length)) << "byte " << byte;
  }
}

// ---------------------------------------------------------------- Stream

class Recorder : public Stream::Protocol {
 public:
  void on_frame(Stream& stream, Frame&& frame) override {
    frames.push_back(std::move(frame));
    if (frame_hook) frame_hook(stream);
  }
  void on_oversized(Stream& stream, const Frame& header, uint64_t length) override {
    oversized.push_back(header);
    oversized_lengths.push_back(length);
  }
  void on_disconnect(Stream& stream, const std::string& reason) override {
    disconnects.push_back(reason);
    fds_open_in_disconnect = stream.rx_fd() >= 0 && fcntl(stream.rx_fd(), F_GETFD) != -1;
  }

  std::vector<Frame> frames;
  std::vector<Frame> oversized;
  std::vector<uint64_t> oversized_lengths;
  std::vector<std::string> disconnects;
  bool fds_open_in_disconnect = false;
  std::function<void(Stream&)> frame_hook;
};

// A Stream on one end of a socketpair; the test holds the other, blocking,
// end as `peer`.
class StreamTest : public testing::Test {
 protected:
  void open(size_t max_frame = size_t{128} << 20, size_t max_pending = size_t{1} << 30) {
    int s[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    peer_ = s[1];
    stream_ = std::make_unique<Stream>(std::make_unique<Side>(s[0], "test"), nullptr, "test-stream",
                                       &rec_, max_frame, max_pending);
  }
  void TearDown() override {
    stream_.reset();
    close_peer();
  }
  void close_peer() {
    if (peer_ >= 0) close(peer_);
    peer_ = -1;
  }

  // Waits for input and feeds it to the stream until `done()` or the
  // deadline or a disconnect.
  void pump_until(const std::function<bool()>& done, absl::Duration timeout = kDeadline) {
    absl::Time deadline = absl::Now() + timeout;
    while (!done() && !stream_->disconnected() && absl::Now() < deadline) {
      pollfd p{stream_->rx_fd(), POLLIN, 0};
      if (poll(&p, 1, 50) > 0) stream_->on_readable();
    }
  }
  // Feeds the stream everything that is readable right now.
  void pump_available() {
    for (;;) {
      pollfd p{stream_->rx_fd(), POLLIN, 0};
      if (stream_->disconnected() || poll(&p, 1, 0) <= 0) return;
      stream_->on_readable();
    }
  }

  Recorder rec_;
  std::unique_ptr<Stream> stream_;
  int peer_ = -1;
};

TEST_F(StreamTest, FramesWrittenOneByteAtATimeArriveIntact) {
  open();
  std::vector<Frame> want = {make_frame(1, ""), make_frame(2, "hello"), make_frame(3, pattern(300, 3)),
                             make_frame(4, pattern(70 * 1024, 4))};
  std::string wire;
  for (const Frame& f : want) wire += encode(f);
  // Byte by byte for the small frames; the last one in odd-sized pieces.
  size_t small = wire.size() - want.back().body.size() - kFrameHeaderSize;
  for (size_t i = 0; i < wire.size();) {
    size_t n = i < small + 40 ? 1 : std::min<size_t>(997, wire.size() - i);
    ASSERT_TRUE(write_all(peer_, wire.data() + i, n));
    i += n;
    pollfd p{stream_->rx_fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 1000), 1);
    stream_->on_readable();
    // A frame may only complete with its own last byte.
    size_t complete = 0;
    size_t end = 0;
    for (const Frame& f : want) {
      end += kFrameHeaderSize + f.body.size();
      if (end <= i) ++complete;
    }
    ASSERT_EQ(rec_.frames.size(), complete) << "after " << i << " bytes";
  }
  ASSERT_EQ(rec_.frames.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) expect_same_frame(rec_.frames[i], want[i]);
  EXPECT_TRUE(rec_.disconnects.empty());
}

TEST_F(StreamTest, LargeFrameArrivesIntact) {
  open();
  Frame big = make_frame(7, pattern(size_t{64} << 20, 7));
  Frame after = make_frame(8, "after");
  std::atomic<bool> wrote{false};
  std::thread writer([&] {
    char h[kFrameHeaderSize];
    encode_frame_header(big, h);
    wrote = write_all(peer_, h, sizeof h) && write_all(peer_, big.body) && write_all(peer_, encode(after));
  });
  pump_until([&] { return rec_.frames.size() == 2; });
  if (rec_.frames.size() != 2) shutdown(peer_, SHUT_WR);  // unblock the writer
  writer.join();
  EXPECT_TRUE(wrote);
  ASSERT_EQ(rec_.frames.size(), 2u);
  expect_same_frame(rec_.frames[0], big);
  expect_same_frame(rec_.frames[1], after);
  EXPECT_TRUE(rec_.disconnects.empty());
}

TEST_F(StreamTest, ManySmallFramesInOneReadAllDelivered) {
  open();
  std::vector<Frame> want;
  std::string wire;
  for (uint32_t i = 0; i < 1000; ++i) {
    want.push_back(make_frame(i, std::string(i % 17, static_cast<char>('a' + i % 26))));
    wire += encode(want.back());
  }
  ASSERT_LT(wire.size(), 100000u);  // fits in the socket buffer at once
  ASSERT_TRUE(write_all(peer_, wire));
  pollfd p{stream_->rx_fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 1000), 1);
  stream_->on_readable();  // one call takes the whole batch
  ASSERT_EQ(rec_.frames.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) expect_same_frame(rec_.frames[i], want[i]);
}

TEST_F(StreamTest, SentFramesLeaveInOrderAndPendingBytesTracked) {
  open();
  std::vector<Frame> want;
  std::string wire;
  size_t total = 0;
  for (uint32_t i = 0; i < 300; ++i) {  // more than one writev's iovec limit
    want.push_back(make_frame(i, pattern(i % 100 * 3, i)));
    wire += encode(want.back());
    total += kFrameHeaderSize + want.back().body.size();
    Frame copy = want.back();
    ASSERT_NE(stream_->send(std::move(copy)), Stream::SendResult::kRejected);
    EXPECT_EQ(stream_->pending_bytes(), total);
  }
  EXPECT_TRUE(stream_->wants_write());
  ASSERT_LT(total, 100000u);
  stream_->on_writable();
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  EXPECT_FALSE(stream_->wants_write());
  std::string got(total, '\0');
  ASSERT_EQ(recv(peer_, got.data(), total, MSG_WAITALL), static_cast<ssize_t>(total));
  EXPECT_TRUE(got == wire);
}

TEST_F(StreamTest, SendResultsSayWhoMustFlush) {
  open();
  Frame a = make_frame(1, "first");
  Frame b = make_frame(2, "second");
  std::string wire = encode(a) + encode(b);
  EXPECT_EQ(stream_->send(Frame(a)), Stream::SendResult::kNeedsFlush);
  EXPECT_EQ(stream_->send(Frame(b)), Stream::SendResult::kQueued);
  // write_now with frames queued ahead: it must not overtake them.
  EXPECT_EQ(stream_->send(make_frame(3, "third"), true), Stream::SendResult::kQueued);
  wire += encode(make_frame(3, "third"));
  stream_->on_writable();
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  // write_now into an empty queue goes straight to the descriptor.
  Frame c = make_frame(4, "direct");
  EXPECT_EQ(stream_->send(Frame(c), true), Stream::SendResult::kWritten);
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  EXPECT_FALSE(stream_->wants_write());
  wire += encode(c);
  std::string got(wire.size(), '\0');
  ASSERT_EQ(recv(peer_, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_TRUE(got == wire);
}

TEST_F(StreamTest, DirectWriteToVanishedPeerDisconnectsOnNextFlush) {
  open();
  close_peer();
  absl::SleepFor(absl::Microseconds(20));  // outside any burst window
  Stream::SendResult r = stream_->send(make_frame(1, "x"), true);
  EXPECT_NE(r, Stream::SendResult::kWritten);
  EXPECT_NE(r, Stream::SendResult::kRejected);
  // Not off the broker thread: the disconnect is reported by on_writable().
  EXPECT_TRUE(rec_.disconnects.empty());
  stream_->on_writable();
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(rec_.disconnects[0], strerror(EPIPE));
}

TEST_F(StreamTest, PartialWritesToSlowReader) {
  open();
  constexpr int kFrames = 64;
  std::string wire;
  for (int i = 0; i < kFrames; ++i) {
    Frame f = make_frame(i, pattern(128 * 1024 + i, i));
    wire += encode(f);
    ASSERT_NE(stream_->send(std::move(f)), Stream::SendResult::kRejected);
  }
  ASSERT_EQ(stream_->pending_bytes(), wire.size());
  // Nobody reads yet: the socket buffer fills and the write is partial.
  stream_->on_writable();
  size_t pending = stream_->pending_bytes();
  EXPECT_GT(pending, 0u);
  EXPECT_LT(pending, wire.size());
  EXPECT_TRUE(stream_->wants_write());
  stream_->on_writable();  // still full: nothing more, nothing lost
  EXPECT_EQ(stream_->pending_bytes(), pending);

  std::string got;
  std::thread reader([&] {
    std::string buf(16 * 1024, '\0');
    absl::Time deadline = absl::Now() + kDeadline;
    while (got.size() < wire.size() && absl::Now() < deadline) {
      pollfd p{peer_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = read(peer_, buf.data(), buf.size());
      if (n <= 0) break;
      got.append(buf.data(), static_cast<size_t>(n));
      absl::SleepFor(absl::Microseconds(200));  // a slow consumer
    }
  });
  absl::Time deadline = absl::Now() + kDeadline;
  int rounds = 0;
  while (stream_->pending_bytes() > 0 && absl::Now() < deadline) {
    pollfd p{stream_->tx_fd(), POLLOUT, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    stream_->on_writable();
    EXPECT_LE(stream_->pending_bytes(), pending) << "pending_bytes grew";
    pending = stream_->pending_bytes();
    ++rounds;
  }
  reader.join();
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  EXPECT_FALSE(stream_->wants_write());
  EXPECT_GT(rounds, 1);
  ASSERT_EQ(got.size(), wire.size());
  EXPECT_TRUE(got == wire) << "bytes arrived out of order or corrupted";
}

TEST_F(StreamTest, SendRespectsMaxPending) {
  open(size_t{1} << 20, 1000);
  // One frame is always accepted into an empty queue, even a big one.
  EXPECT_NE(stream_->send(make_frame(1, std::string(2000, 'x'))), Stream::SendResult::kRejected);
  size_t pending = stream_->pending_bytes();
  EXPECT_EQ(stream_->send(make_frame(2, "y")), Stream::SendResult::kRejected);
  EXPECT_EQ(stream_->pending_bytes(), pending);
  stream_->on_writable();
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  EXPECT_NE(stream_->send(make_frame(3, std::string(900, 'z'))), Stream::SendResult::kRejected);
  EXPECT_EQ(stream_->send(make_frame(4, std::string(100, 'z'))), Stream::SendResult::kRejected);
}

TEST_F(StreamTest, BadMagicDisconnectsOnceWithReason) {
  open();
  Frame good = make_frame(1, "fine");
  std::string wire = encode(good) + "this is not a frame header, it is text\n";
  ASSERT_TRUE(write_all(peer_, wire));
  pump_until([&] { return !rec_.disconnects.empty(); });
  ASSERT_EQ(rec_.frames.size(), 1u);
  expect_same_frame(rec_.frames[0], good);
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_NE(rec_.disconnects[0].find("magic"), std::string::npos) << rec_.disconnects[0];
  EXPECT_TRUE(stream_->disconnected());
  EXPECT_TRUE(rec_.fds_open_in_disconnect);
  // Nothing more is delivered, and no second disconnect.
  stream_->on_readable();
  stream_->disconnect("again");
  EXPECT_EQ(rec_.frames.size(), 1u);
  EXPECT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(stream_->send(make_frame(2, "late")), Stream::SendResult::kRejected);
}

TEST_F(StreamTest, OversizedFrameSkippedAndNextFrameIntact) {
  constexpr size_t kMax = size_t{1} << 20;
  open(kMax);
  Frame big = make_frame(0xBEEF, pattern(4 * kMax, 9));
  Frame next = make_frame(0xCAFE, "the next one");
  Frame limit = make_frame(0xF00D, pattern(kMax, 10));  // exactly the maximum: fine
  std::atomic<bool> wrote{false};
  std::thread writer([&] {
    wrote = write_all(peer_, encode(big)) && write_all(peer_, encode(next)) &&
            write_all(peer_, encode(limit));
  });
  pump_until([&] { return rec_.frames.size() == 2; });
  if (rec_.frames.size() != 2) shutdown(peer_, SHUT_WR);  // unblock the writer
  writer.join();
  EXPECT_TRUE(wrote);
  ASSERT_EQ(rec_.oversized.size(), 1u);
  EXPECT_EQ(rec_.oversized_lengths[0], 4 * kMax);
  EXPECT_EQ(rec_.oversized[0].dst_id, big.dst_id);
  EXPECT_EQ(rec_.oversized[0].src_id, big.src_id);
  EXPECT_EQ(rec_.oversized[0].auth_id, big.auth_id);
  EXPECT_EQ(rec_.oversized[0].handle, big.handle);
  EXPECT_EQ(rec_.oversized[0].reply_to, big.reply_to);
  ASSERT_EQ(rec_.frames.size(), 2u);
  expect_same_frame(rec_.frames[0], next);
  expect_same_frame(rec_.frames[1], limit);
  EXPECT_TRUE(rec_.disconnects.empty());
}

size_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

size_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST_F(StreamTest, OversizedClaimIsNeverAllocated) {
  open(size_t{1} << 20);
  std::string body = pattern(size_t{8} << 20, 11);  // allocated before measuring
  std::string header = header_claiming(make_frame(5, ""), 0xFFFFFFFF);  // ~4 GiB
  size_t heap_before = heap_in_use();
  size_t rss_before = rss_bytes();
  Latch<bool> wrote;
  std::thread writer([&] { wrote.put(write_all(peer_, header) && write_all(peer_, body)); });
  absl::StatusOr<bool> ok = absl::DeadlineExceededError("");
  pump_until([&] {
    if (!ok.ok()) ok = wrote.try_get();
    return ok.ok();
  });
  if (!ok.ok()) shutdown(peer_, SHUT_WR);  // unblock the writer
  writer.join();
  pump_available();
  ASSERT_TRUE(ok.ok() && *ok);
  ASSERT_EQ(rec_.oversized.size(), 1u);
  EXPECT_EQ(rec_.oversized_lengths[0], 0xFFFFFFFFu);
  EXPECT_EQ(rec_.oversized[0].handle, 5u);
  EXPECT_TRUE(rec_.frames.empty());
  EXPECT_TRUE(rec_.disconnects.empty());
  size_t heap_growth = heap_in_use() > heap_before ? heap_in_use() - heap_before : 0;
  size_t rss_growth = rss_bytes() > rss_before ? rss_bytes() - rss_before : 0;
  EXPECT_LT(heap_growth, size_t{16} << 20) << "the stream buffered the announced body";
  EXPECT_LT(rss_growth, size_t{64} << 20) << "the stream buffered the announced body";
  // The peer going away in the middle of the skipped body is a plain EOF.
  close_peer();
  pump_until([&] { return !rec_.disconnects.empty(); });
  ASSERT_EQ(rec_.disconnects.size(), 1u);
}

TEST_F(StreamTest, EofDisconnectsOnce) {
  open();
  ASSERT_TRUE(write_all(peer_, encode(make_frame(1, "last words"))));
  close_peer();
  pump_until([&] { return !rec_.disconnects.empty(); });
  ASSERT_EQ(rec_.frames.size(), 1u);
  EXPECT_EQ(rec_.frames[0].body, "last words");
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(rec_.disconnects[0], "EOF");
  EXPECT_TRUE(stream_->disconnected());
  stream_->on_readable();
  stream_->on_writable();
  stream_->disconnect("again");
  EXPECT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(stream_->send(make_frame(2, "too late")), Stream::SendResult::kRejected);
  EXPECT_FALSE(stream_->wants_write());
  EXPECT_EQ(stream_->pending_bytes(), 0u);
}

TEST_F(StreamTest, EofInsideAFrameDisconnectsWithoutDelivering) {
  open();
  std::string wire = encode(make_frame(1, "cut short"));
  ASSERT_TRUE(write_all(peer_, wire.substr(0, kFrameHeaderSize + 3)));
  close_peer();
  pump_until([&] { return !rec_.disconnects.empty(); });
  EXPECT_TRUE(rec_.frames.empty());
  EXPECT_EQ(rec_.disconnects.size(), 1u);
}

TEST_F(StreamTest, WriteToVanishedPeerDisconnects) {
  open();
  ASSERT_NE(stream_->send(make_frame(1, "into the void")), Stream::SendResult::kRejected);
  close_peer();
  stream_->on_writable();
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(rec_.disconnects[0], strerror(EPIPE));
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  EXPECT_EQ(stream_->send(make_frame(2, "more")), Stream::SendResult::kRejected);
}

TEST_F(StreamTest, ExplicitDisconnectDropsQueueAndClosesSides) {
  open();
  ASSERT_NE(stream_->send(make_frame(1, "queued")), Stream::SendResult::kRejected);
  stream_->disconnect("closing");
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(rec_.disconnects[0], "closing");
  EXPECT_TRUE(rec_.fds_open_in_disconnect);
  EXPECT_LT(stream_->rx_fd(), 0);
  EXPECT_EQ(stream_->pending_bytes(), 0u);
  // The peer sees EOF.
  char c;
  EXPECT_EQ(read(peer_, &c, 1), 0);
}

TEST_F(StreamTest, DisconnectFromInsideOnFrameStopsDelivery) {
  open();
  rec_.frame_hook = [](Stream& s) { s.disconnect("enough"); };
  ASSERT_TRUE(write_all(peer_, encode(make_frame(1, "a")) + encode(make_frame(2, "b"))));
  pump_until([&] { return !rec_.disconnects.empty(); });
  EXPECT_EQ(rec_.frames.size(), 1u);
  ASSERT_EQ(rec_.disconnects.size(), 1u);
  EXPECT_EQ(rec_.disconnects[0], "enough");
}

TEST(StreamThreadsTest, SendFromManyThreadsWhileOneFlushes) {
  // send() may be called from any thread (with write_now, straight to the
  // descriptor); on_writable() runs on one "broker" thread. Every frame must
  // arrive once, whole, and in each sender's order.
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  Recorder rec;
  Stream stream(std::make_unique<Side>(s[0], "tx"), nullptr, "threads", &rec, 1 << 20);
  constexpr int kSenders = 4;
  constexpr int kFrames = 3000;
  auto body_of = [](int t, int i) {
    return absl::StrCat(t, ":", i, ":", std::string(static_cast<size_t>((t * 7919 + i * 104729) % 1500), 'x'));
  };
  size_t total = 0;
  for (int t = 0; t < kSenders; ++t) {
    for (int i = 0; i < kFrames; ++i) total += kFrameHeaderSize + body_of(t, i).size();
  }
  std::string got;
  std::thread reader([&] {
    std::string buf(64 * 1024, '\0');
    absl::Time deadline = absl::Now() + kDeadline;
    while (got.size() < total && absl::Now() < deadline) {
      pollfd p{s[1], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = read(s[1], buf.data(), buf.size());
      if (n <= 0) break;
      got.append(buf.data(), static_cast<size_t>(n));
    }
  });
  std::atomic<int> senders_left{kSenders};
  std::atomic<int> rejected{0};
  std::thread flusher([&] {
    absl::Time deadline = absl::Now() + kDeadline;
    while (absl::Now() < deadline && (senders_left.load() > 0 || stream.wants_write())) {
      if (!stream.wants_write()) {
        std::this_thread::yield();
        continue;
      }
      pollfd p{stream.tx_fd(), POLLOUT, 0};
      if (poll(&p, 1, 10) > 0) stream.on_writable();
    }
  });
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kFrames; ++i) {
        Frame f = make_frame(static_cast<uint32_t>(t), body_of(t, i));
        if (stream.send(std::move(f), /*write_now=*/i % 3 != 0) == Stream::SendResult::kRejected) ++rejected;
      }
      --senders_left;
    });
  }
  for (auto& th : senders) th.join();
  flusher.join();
  reader.join();
  EXPECT_EQ(rejected.load(), 0);
  EXPECT_EQ(stream.pending_bytes(), 0u);
  ASSERT_EQ(got.size(), total);
  std::vector<int> next(kSenders, 0);
  size_t pos = 0;
  int frames = 0;
  while (pos + kFrameHeaderSize <= got.size()) {
    Frame f;
    uint32_t length = 0;
    ASSERT_TRUE(decode_frame_header(got.data() + pos, &f, &length)) << "framing lost at byte " << pos;
    ASSERT_LE(pos + kFrameHeaderSize + length, got.size());
    ASSERT_LT(f.handle, static_cast<uint32_t>(kSenders));
    int t = static_cast<int>(f.handle);
    std::string body = got.substr(pos + kFrameHeaderSize, length);
    ASSERT_EQ(body, body_of(t, next[t])) << "sender " << t;
    ++next[t];
    ++frames;
    pos += kFrameHeaderSize + length;
  }
  EXPECT_EQ(pos, got.size());
  EXPECT_EQ(frames, kSenders * kFrames);
  close(s[1]);
}

TEST(StreamPipesTest, SeparateReceiveAndTransmitSides) {
  int in[2], out[2];
  ASSERT_EQ(pipe(in), 0);
  ASSERT_EQ(pipe(out), 0);
  Recorder rec;
  Stream stream(std::make_unique<Side>(in[0], "in"), std::make_unique<Side>(out[1], "out"), "pipes", &rec,
                1 << 20);
  EXPECT_EQ(stream.rx_fd(), in[0]);
  EXPECT_EQ(stream.tx_fd(), out[1]);
  Frame f = make_frame(3, "over pipes");
  std::string wire = encode(f);
  ASSERT_TRUE(write_all(in[1], wire));
  stream.on_readable();
  ASSERT_EQ(rec.frames.size(), 1u);
  expect_same_frame(rec.frames[0], f);
  ASSERT_NE(stream.send(Frame(f)), Stream::SendResult::kRejected);
  stream.on_writable();
  std::string got(wire.size(), '\0');
  ASSERT_EQ(read(out[0], got.data(), got.size()), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, wire);
  // The reader of our output goes away: a disconnect, not a SIGPIPE.
  close(out[0]);
  ASSERT_NE(stream.send(Frame(f)), Stream::SendResult::kRejected);
  stream.on_writable();
  ASSERT_EQ(rec.disconnects.size(), 1u);
  EXPECT_EQ(rec.disconnects[0], strerror(EPIPE));
  close(in[1]);
}

// Reads what `fd` (non-blocking) has now, at most `max` bytes, onto `out`.
size_t read_some(int fd, std::string* out, size_t max) {
  std::string buf(max, '\0');
  ssize_t n = read(fd, buf.data(), max);
  if (n <= 0) return 0;
  out->append(buf.data(), static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

// Reads from `fd` until `out` holds `want` bytes or the deadline passes.
void read_until(int fd, std::string* out, size_t want) {
  absl::Time deadline = absl::Now() + kDeadline;
  while (out->size() < want && absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) > 0) read_some(fd, out, want - out->size());
  }
}

TEST(SideTest, PipePagesStayWithThePipeWhenTheWriterDropsThem) {
  // What Stream relies on when it disconnects with spliced bodies: once the
  // pages are in the pipe, unmapping and rewriting our copy changes nothing
  // the reader gets.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Side tx(p[1], "tx");
  EXPECT_FALSE(tx.can_splice()) << "splicing is for pipes whose reader is known, on request";
  tx.allow_splice();
  ASSERT_TRUE(tx.can_splice());
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t n = 8 * page;
  void* mem = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  char* buf = static_cast<char*>(mem);
  std::string want = pattern(n, 11);
  std::memcpy(buf, want.data(), n);
  IoResult r = tx.splice_pages(buf, n);
  ASSERT_EQ(r.kind, IoResult::kDone);
  ASSERT_EQ(r.bytes, n);
  EXPECT_EQ(tx.unread_bytes(), static_cast<ssize_t>(n));
  ASSERT_EQ(madvise(buf, n, MADV_DONTNEED), 0);
  std::memset(buf, 'x', n);
  std::string got;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  read_until(p[0], &got, n);
  EXPECT_TRUE(got == want) << "the pipe's pages changed with ours";
  EXPECT_EQ(tx.unread_bytes(), 0);
  munmap(mem, n);
  close(p[0]);
}

TEST(SideTest, AFullPipeGrowsOnceThenTheWriteGoesOn) {
  {
    int probe[2];
    ASSERT_EQ(pipe(probe), 0);
    bool can_grow = fcntl(probe[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20);
    close(probe[0]);
    close(probe[1]);
    if (!can_grow) GTEST_SKIP() << "this user may not grow a pipe to 1 MiB here";
  }
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Side tx(p[1], "tx");
  const int initial = fcntl(p[1], F_GETPIPE_SZ);
  ASSERT_GT(initial, 0);
  if (initial >= (1 << 20)) GTEST_SKIP() << "pipes start at 1 MiB here";
  std::string block(static_cast<size_t>(initial), 'a');
  IoResult r = tx.write(block.data(), block.size());
  ASSERT_EQ(r.kind, IoResult::kDone);
  ASSERT_EQ(r.bytes, block.size());
  // Full now: the next write grows the pipe and is taken.
  r = tx.write(block.data(), block.size());
  ASSERT_EQ(r.kind, IoResult::kDone);
  EXPECT_EQ(r.bytes, block.size());
  EXPECT_EQ(fcntl(p[1], F_GETPIPE_SZ), 1 << 20);
  EXPECT_EQ(tx.unread_bytes(), 2 * initial);
  // It grows once: a pipe full at 1 MiB is simply full.
  std::string rest((1 << 20) - 2 * static_cast<size_t>(initial), 'b');
  ASSERT_EQ(tx.write(rest.data(), rest.size()).kind, IoResult::kDone);
  EXPECT_EQ(tx.write("c", 1).kind, IoResult::kWouldBlock);
  EXPECT_EQ(fcntl(p[1], F_GETPIPE_SZ), 1 << 20);
  close(p[0]);
}

TEST(SideTest, SocketsCannotSplice) {
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  Side a(s[0], "a");
  a.allow_splice();
  EXPECT_FALSE(a.can_splice());
  close(s[1]);
}

// Recycles a buffer of `capacity` bytes and returns where its bytes live,
// or nullptr when the spares did not keep it.
const char* recycle_new(size_t capacity) {
  std::string s;
  s.reserve(capacity);
  const char* at = s.data();
  recycle_buffer(std::move(s));
  return s.data() == at ? nullptr : at;
}

TEST(SpareBuffers, EachRequestGetsTheSmallestSpareThatFits) {
  release_spare_buffers();
  const char* small = recycle_new(300 << 10);
  const char* middle = recycle_new(600 << 10);
  const char* large = recycle_new(1 << 20);
  std::string a = take_buffer(500 << 10);
  EXPECT_EQ(a.data(), middle);
  std::string b = take_filled_buffer(200 << 10);  // under kLargeBuffer: never a spare
  EXPECT_NE(b.data(), small);
  EXPECT_NE(b.data(), large);
  std::string c = take_buffer(300 << 10);
  EXPECT_EQ(c.data(), small);
  std::string d = take_filled_buffer(700 << 10);
  EXPECT_EQ(d.data(), large);
  EXPECT_EQ(d.size(), size_t{700} << 10);
  std::string e = take_buffer(300 << 10);
  EXPECT_NE(e.data(), small) << "a spare was handed out twice";
}

TEST(SpareBuffers, KeepUpToTheBudgetAndTheLargestBeyondIt) {
  release_spare_buffers();
  const size_t n = kSpareBudget / (1 << 20);
  std::set<const char*> kept;
  for (size_t i = 0; i <= n; ++i) {
    if (const char* at = recycle_new(1 << 20)) kept.insert(at);
  }
  EXPECT_EQ(kept.size(), n) << "the spares should hold kSpareBudget bytes, no more";
  std::vector<std::string> taken;
  size_t reused = 0;
  for (size_t i = 0; i < n; ++i) {
    taken.push_back(take_buffer(1 << 20));
    reused += kept.count(taken.back().data());
  }
  EXPECT_EQ(reused, n);

  const char* huge = recycle_new(kSpareBudget + (4 << 20));
  EXPECT_NE(huge, nullptr);
  EXPECT_EQ(recycle_new(kSpareBudget + (1 << 20)), nullptr) << "a smaller one replaced the largest";
  std::string big = take_buffer(kSpareBudget + (2 << 20));
  EXPECT_EQ(big.data(), huge);
  std::string next = take_buffer(kSpareBudget + (1 << 20));
  EXPECT_NE(next.data(), huge);
  release_spare_buffers();
}

// A stream writing into a pipe whose reader (the test) lags behind.
class SplicedPipeTest : public testing::Test {
 protected:
  void SetUp() override {
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    in_writer_ = in[1];
    reader_ = out[0];
    fcntl(reader_, F_SETFL, O_NONBLOCK);
    auto tx = std::make_unique<Side>(out[1], "out");
    tx->allow_splice();
    stream_ = std::make_unique<Stream>(std::make_unique<Side>(in[0], "in"), std::move(tx), "spliced", &rec_,
                                       size_t{128} << 20);
    // The spare buffers start empty, so that what lands there is ours.
    release_spare_buffers();
  }
  void TearDown() override {
    stream_.reset();
    close(in_writer_);
    close(reader_);
  }
  // Sends `f` and reads behind the stream until the stream has written all
  // of it; some of it is then still in the pipe, unread.
  void write_all_of(Frame f) {
    ASSERT_NE(stream_->send(std::move(f), true), Stream::SendResult::kRejected);
    absl::Time deadline = absl::Now() + kDeadline;
    while (stream_->wants_write() && absl::Now() < deadline) {
      read_some(reader_, &got_, 256 * 1024);
      stream_->on_writable();
    }
    ASSERT_FALSE(stream_->wants_write());
    // More than the copied tail of the last frame (under a page) is unread,
    // so spliced pages are still in the pipe.
    const ssize_t page = sysconf(_SC_PAGESIZE);
    ASSERT_GT(Side(dup(reader_), "probe").unread_bytes(), 2 * page)
        << "no spliced page left unread: the test proves nothing";
  }

  Recorder rec_;
  std::unique_ptr<Stream> stream_;
  int in_writer_ = -1;
  int reader_ = -1;
  std::string got_;
};

TEST_F(SplicedPipeTest, BodyIsKeptUntilTheReaderIsPastItThenRecycled) {
  Frame f = make_frame(5, pattern(3 << 20, 5));
  const std::string wire = encode(f);
  const char* body = f.body.data();
  write_all_of(std::move(f));
  // Written, not yet read: the body must not be handed out for reuse.
  std::string next = take_buffer(3 << 20);
  EXPECT_NE(next.data(), body) << "a body still in the pipe was recycled";
  next.assign(3 << 20, 'x');
  read_until(reader_, &got_, wire.size());
  EXPECT_TRUE(got_ == wire) << "the frame changed in the pipe";
  // Once read, the next write (here: none, just a flush) recycles it.
  stream_->on_writable();
  EXPECT_EQ(take_buffer(3 << 20).data(), body) << "a body read out of the pipe was not recycled";
}

TEST_F(SplicedPipeTest, PeerSpeakingReleasesTheBody) {
  Frame f = make_frame(6, pattern(3 << 20, 6));
  const std::string wire = encode(f);
  const char* body = f.body.data();
  write_all_of(std::move(f));
  read_until(reader_, &got_, wire.size());
  ASSERT_TRUE(got_ == wire);
  ASSERT_TRUE(write_all(in_writer_, encode(make_frame(7, "reply"))));
  stream_->on_readable();
  ASSERT_EQ(rec_.frames.size(), 1u);
  EXPECT_EQ(take_buffer(3 << 20).data(), body);
}

TEST_F(SplicedPipeTest, FramesAroundASplicedBodyArriveInOrder) {
  // Small frames before and after a spliced one, all queued at once: the
  // pieces (copied header and edges, spliced pages) keep their order.
  std::vector<Frame> frames = {make_frame(1, "a"), make_frame(2, pattern(300 * 1024 + 7, 2)),
                               make_frame(3, pattern(1000, 3)), make_frame(4, pattern(5 << 20, 4)),
                               make_frame(5, "")};
  std::string wire;
  for (const Frame& f : frames) {
    wire += encode(f);
    ASSERT_NE(stream_->send(Frame(f)), Stream::SendResult::kRejected);
  }
  absl::Time deadline = absl::Now() + kDeadline;
  while (got_.size() < wire.size() && absl::Now() < deadline) {
    stream_->on_writable();
    read_some(reader_, &got_, 256 * 1024);
  }
  ASSERT_EQ(got_.size(), wire.size());
  EXPECT_TRUE(got_ == wire);
  EXPECT_FALSE(stream_->wants_write());
  EXPECT_EQ(stream_->pending_bytes(), 0u);
}

TEST_F(SplicedPipeTest, DisconnectLeavesTheReaderItsBytes) {
  Frame f = make_frame(8, pattern(3 << 20, 8));
  const std::string wire = encode(f);
  const char* body = f.body.data();
  write_all_of(std::move(f));
  stream_->disconnect("test");
  stream_.reset();
  // The body is free for reuse at once, and rewriting it must not reach
  // the bytes that the pipe still holds.
  std::string reused = take_buffer(3 << 20);
  ASSERT_EQ(reused.data(), body);
  reused.assign(3 << 20, 'y');
  read_until(reader_, &got_, wire.size());
  EXPECT_TRUE(got_ == wire);
}

}  // namespace
}  // namespace spindle
