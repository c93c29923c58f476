#include "stream/stream.h"

#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "stream/buffer.h"
#include "absl/time/clock.h"

namespace spindle {
namespace {
// The read buffer starts small and doubles each time a read fills it, up
// to the maximum: most streams carry small messages only, and a buffer as
// large as the maximum comes from mmap(), whose munmap() on every stream's
// end costs a TLB shootdown in a threaded process.
constexpr size_t kReadBufferMin = 16 * 1024;
constexpr size_t kReadBufferMax = 256 * 1024;
// Bodies at least this large are read straight into their own buffer.
constexpr size_t kDirectRead = 64 * 1024;
constexpr int kMaxIov = 256;
// Direct writes closer together than this are coalesced (see send()).
constexpr int64_t kBurstWindowNs = 10'000;
// Bound one on_readable() call so that one busy peer cannot starve others.
constexpr size_t kReadBudget = 8 * 1024 * 1024;
// Bodies at least this large go into a pipe by reference (see stream.h).
constexpr size_t kSpliceMin = 256 * 1024;

// The whole pages inside `body`, as offsets [*begin, *end); empty for a
// body too small to splice.
void page_range(const std::string& body, size_t* begin, size_t* end) {
  *begin = *end = 0;
  if (body.size() < kSpliceMin) return;
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(body.data());
  *begin = ((start + page - 1) & ~(page - 1)) - start;
  *end = ((start + body.size()) & ~(page - 1)) - start;
}
}  // namespace

Stream::Stream(Memory memory, std::unique_ptr<Side> rx, std::unique_ptr<Side> tx, std::string name,
               Protocol* protocol, size_t max_frame, size_t max_pending)
    : memory_(memory),
      rx_(std::move(rx)),
      tx_(std::move(tx)),
      name_(std::move(name)),
      protocol_(protocol),
      max_frame_(max_frame),
      max_pending_(max_pending),
      rbuf_(new_read_buffer(kReadBufferMin)),
      rcap_(kReadBufferMin) {
}

std::unique_ptr<Stream> Stream::make_unforked(std::unique_ptr<Side> rx, std::unique_ptr<Side> tx, std::string name,
                                              Protocol* protocol, size_t max_frame) {
  void* place = allocate_unforked(sizeof(Stream));
  try {
    return std::unique_ptr<Stream>(new (place) Stream(Memory::kUnforked, std::move(rx), std::move(tx), std::move(name),
                                                      protocol, max_frame, kDefaultMaxPending));
  } catch (...) {
    free_unforked(place, sizeof(Stream));
    throw;
  }
}

void Stream::operator delete(Stream* stream, std::destroying_delete_t) {
  const Memory memory = stream->memory_;
  stream->~Stream();
  if (memory == Memory::kUnforked) {
    free_unforked(stream, sizeof(Stream));
  } else {
    ::operator delete(stream);
  }
}

void Stream::BufferDelete::operator()(char* buffer) const {
  if (memory == Memory::kUnforked) {
    free_unforked(buffer, size);
  } else {
    delete[] buffer;
  }
}

std::unique_ptr<char[], Stream::BufferDelete> Stream::new_read_buffer(size_t size) const {
  char* buffer = memory_ == Memory::kUnforked ? static_cast<char*>(allocate_unforked(size)) : new char[size];
  return std::unique_ptr<char[], BufferDelete>(buffer, BufferDelete{size, memory_});
}

Stream::~Stream() {
  std::lock_guard<AdaptiveMutex> lock(tx_mu_);
  drop_spliced_locked();
}

void Stream::disconnect(const std::string& reason) {
  if (disconnected_.exchange(true)) return;
  {
    std::lock_guard<AdaptiveMutex> lock(tx_mu_);
    drop_spliced_locked();
    queue_.clear();
    pending_bytes_ = 0;
  }
  protocol_->on_disconnect(*this, reason);
  // Closed after the protocol ran, so that it could still read the fds.
  std::lock_guard<AdaptiveMutex> lock(tx_mu_);
  rx_->close();
  if (tx_) tx_->close();
}

bool Stream::wants_write() const {
  std::lock_guard<AdaptiveMutex> lock(tx_mu_);
  return !queue_.empty() && !disconnected();
}

size_t Stream::pending_bytes() const {
  std::lock_guard<AdaptiveMutex> lock(tx_mu_);
  return pending_bytes_;
}

void Stream::on_readable() {
  if (has_in_pipe_.load(std::memory_order_relaxed)) {
    // The peer speaking usually means it has read what we spliced.
    std::lock_guard<AdaptiveMutex> lock(tx_mu_);
    release_spliced_locked();
  }
  // A read shorter than asked for emptied the descriptor. The pollers are
  // level-triggered and report it again when more arrives, so the read
  // after it, which would only say EAGAIN, is not made.
  size_t budget = kReadBudget;
  while (!disconnected_ && budget > 0) {
    IoResult r;
    if (state_ == ReadState::kBody && rstart_ == rend_ &&
        current_.body.size() - body_filled_ >= kDirectRead) {
      const size_t want = current_.body.size() - body_filled_;
      r = rx_->read(current_.body.data() + body_filled_, want);
      if (r.kind == IoResult::kDone) {
        body_filled_ += r.bytes;
        budget -= std::min(budget, r.bytes);
        if (body_filled_ == current_.body.size()) finish_body();
        if (r.bytes < want) return;
        continue;
      }
    } else {
      if (rstart_ == rend_) rstart_ = rend_ = 0;
      if (rend_ == rcap_) compact_read_buffer();
      const size_t want = rcap_ - rend_;
      r = rx_->read(rbuf_.get() + rend_, want);
      if (r.kind == IoResult::kDone) {
        rend_ += r.bytes;
        if (r.bytes == want && rcap_ < kReadBufferMax) grow_read_buffer();
        budget -= std::min(budget, r.bytes);
        if (!parse_buffered() || r.bytes < want) return;
        continue;
      }
    }
    if (r.kind == IoResult::kWouldBlock) return;
    disconnect(describe_disconnect(r));
  }
}

void Stream::on_already_read(std::string_view bytes) {
  while (!bytes.empty() && !disconnected_) {
    if (rstart_ == rend_) rstart_ = rend_ = 0;
    if (rend_ == rcap_) compact_read_buffer();  // what is left unparsed is under a header
    size_t n = std::min(bytes.size(), rcap_ - rend_);
    std::memcpy(rbuf_.get() + rend_, bytes.data(), n);
    rend_ += n;
    bytes.remove_prefix(n);
    if (!parse_buffered()) return;
  }
}

void Stream::compact_read_buffer() {
  std::memmove(rbuf_.get(), rbuf_.get() + rstart_, rend_ - rstart_);
  rend_ -= rstart_;
  rstart_ = 0;
}

void Stream::grow_read_buffer() {
  size_t cap = rcap_ * 2;
  auto bigger = new_read_buffer(cap);
  std::memcpy(bigger.get(), rbuf_.get() + rstart_, rend_ - rstart_);
  rend_ -= rstart_;
  rstart_ = 0;
  rbuf_ = std::move(bigger);
  rcap_ = cap;
}

bool Stream::parse_buffered() {
  while (!disconnected_) {
    size_t have = rend_ - rstart_;
    switch (state_) {
      case ReadState::kHeader: {
        if (have < kFrameHeaderSize) return true;
        uint32_t length;
        current_ = Frame{};
        if (!decode_frame_header(rbuf_.get() + rstart_, &current_, &length)) {
          disconnect(absl::StrCat("corrupt stream from ", name_, ": bad frame magic 0x",
                                  absl::Hex(static_cast<unsigned char>(rbuf_[rstart_])),
                                  absl::Hex(static_cast<unsigned char>(rbuf_[rstart_ + 1]))));
          return false;
        }
        rstart_ += kFrameHeaderSize;
        if (length > max_frame_) {
          skip_left_ = length;
          state_ = ReadState::kSkip;
          protocol_->on_oversized(*this, current_, length);
          break;
        }
        current_.body = take_filled_buffer(length);
        body_filled_ = 0;
        state_ = ReadState::kBody;
        if (length == 0) finish_body();
        break;
      }
      case ReadState::kBody: {
        size_t n = std::min(have, current_.body.size() - body_filled_);
        if (n == 0) return true;
        std::memcpy(current_.body.data() + body_filled_, rbuf_.get() + rstart_, n);
        rstart_ += n;
        body_filled_ += n;
        if (body_filled_ == current_.body.size()) finish_body();
        break;
      }
      case ReadState::kSkip: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(have, skip_left_));
        rstart_ += n;
        skip_left_ -= n;
        if (skip_left_ == 0) state_ = ReadState::kHeader;
        if (n == 0 && skip_left_ != 0) return true;
        break;
      }
    }
  }
  return false;
}

void Stream::finish_body() {
  state_ = ReadState::kHeader;
  body_filled_ = 0;
  protocol_->on_frame(*this, std::move(current_));
  current_ = Frame{};
}

Stream::SendResult Stream::send(Frame&& frame, bool write_now) {
  std::lock_guard<AdaptiveMutex> lock(tx_mu_);
  if (disconnected()) return SendResult::kRejected;
  size_t bytes = kFrameHeaderSize + frame.body.size();
  if (pending_bytes_ + bytes > max_pending_ && !queue_.empty()) return SendResult::kRejected;
  bool was_empty = queue_.empty();
  Pending& p = queue_.emplace_back();
  encode_frame_header(frame, p.header);
  p.body = std::move(frame.body);
  pending_bytes_ += bytes;
  if (write_now && was_empty) {
    int64_t now = absl::GetCurrentTimeNanos();
    if (now - last_direct_write_ns_ >= kBurstWindowNs) {
      last_direct_write_ns_ = now;
      IoResult err;
      if (!write_locked(&err)) write_error_ = err;  // the broker disconnects
      if (queue_.empty()) return SendResult::kWritten;
    }
  }
  return was_empty ? SendResult::kNeedsFlush : SendResult::kQueued;
}

void Stream::on_writable() {
  IoResult err;
  bool ok;
  {
    std::lock_guard<AdaptiveMutex> lock(tx_mu_);
    ok = write_locked(&err);
    if (ok && write_error_.kind == IoResult::kDisconnected) {
      err = write_error_;
      ok = false;
    }
  }
  if (!ok && !disconnected()) disconnect(describe_disconnect(err));
}

bool Stream::write_locked(IoResult* error) {
  const bool can_splice = tx()->can_splice();
  while (!queue_.empty() && !disconnected()) {
    iovec iov[kMaxIov];
    int n = 0;
    bool pages = false;  // iov[0] is whole pages to splice, alone
    bool full = false;
    size_t skip = front_offset_;
    for (auto it = queue_.begin(); it != queue_.end() && n + 4 <= kMaxIov && !full; ++it) {
      // A frame in up to four pieces: the header, the body up to its whole
      // pages, those pages (spliced, never in one writev with the rest),
      // the body after them.
      size_t begin = 0, end = 0;
      if (can_splice) page_range(it->body, &begin, &end);
      const struct {
        const char* data;
        size_t size;
        bool pages;
      } pieces[] = {{it->header, kFrameHeaderSize, false},
                    {it->body.data(), begin, false},
                    {it->body.data() + begin, end - begin, true},
                    {it->body.data() + end, it->body.size() - end, false}};
      for (const auto& piece : pieces) {
        if (skip >= piece.size) {
          skip -= piece.size;
          continue;
        }
        if (piece.pages) {
          full = true;
          if (n > 0) break;
          pages = true;
        }
        iov[n++] = {const_cast<char*>(piece.data) + skip, piece.size - skip};
        skip = 0;
        if (pages) break;
      }
    }
    IoResult r = pages ? tx()->splice_pages(iov[0].iov_base, iov[0].iov_len) : tx()->writev(iov, n);
    if (r.kind == IoResult::kWouldBlock) break;
    if (r.kind == IoResult::kDisconnected) {
      *error = r;
      return false;
    }
    if (pages) queue_.front().spliced = true;
    size_t written = r.bytes;
    pending_bytes_ -= written;
    while (written > 0) {
      Pending& front = queue_.front();
      size_t front_left = kFrameHeaderSize + front.body.size() - front_offset_;
      if (written < front_left) {
        front_offset_ += written;
        tx_bytes_ += written;
        break;
      }
      written -= front_left;
      tx_bytes_ += front_left;
      if (front.spliced) {
        in_pipe_.push_back({tx_bytes_, std::move(front.body)});
        has_in_pipe_.store(true, std::memory_order_relaxed);
      } else {
        recycle_buffer(std::move(front.body));
      }
      queue_.pop_front();
      front_offset_ = 0;
    }
  }
  release_spliced_locked();
  return true;
}

void Stream::release_spliced_locked() {
  if (in_pipe_.empty()) return;
  ssize_t unread = tx()->unread_bytes();
  if (unread < 0) return;
  const uint64_t read_so_far = tx_bytes_ - static_cast<uint64_t>(unread);
  while (!in_pipe_.empty() && in_pipe_.front().end <= read_so_far) {
    recycle_buffer(std::move(in_pipe_.front().body));
    in_pipe_.pop_front();
  }
  has_in_pipe_.store(!in_pipe_.empty(), std::memory_order_relaxed);
}

void Stream::drop_spliced_locked() {
  // The pipe keeps its references to the pages; our mapping gets fresh
  // ones, so freeing and reusing the body cannot change what the reader of
  // the pipe is still to read. Where the kernel refuses (memory locked by
  // mlockall), the body is never reused: it is leaked on purpose.
  auto release = [](std::string& body) {
    size_t begin, end;
    page_range(body, &begin, &end);
    if (end > begin && madvise(body.data() + begin, end - begin, MADV_DONTNEED) != 0) {
      new std::string(std::move(body));
      return;
    }
    recycle_buffer(std::move(body));
  };
  for (Pending& p : queue_) {
    if (p.spliced) release(p.body);
  }
  for (InPipe& b : in_pipe_) release(b.body);
  in_pipe_.clear();
  has_in_pipe_.store(false, std::memory_order_relaxed);
}

}  // namespace spindle
