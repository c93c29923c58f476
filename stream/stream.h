// Stream: a framed, non-blocking byte channel to one peer.
//
// Owns a receive Side and a transmit Side (the same descriptor for a
// socket), the partial state of the frame being read, and a transmit queue
// of frames not yet written. Frames read are handed to a Protocol; nothing
// here knows about routing.
//
// Thread safety: the receive path (on_readable, disconnect) is broker thread
// only, once the stream is registered with a Broker. The transmit path
// (send, on_writable, wants_write, pending_bytes) may be used from any
// thread: it is guarded by a mutex, so that a thread sending a message can
// write it straight to the descriptor when nothing is queued ahead of it,
// instead of paying for a wake-up of the broker thread. The owner calls
// on_readable()/on_writable() when the poller says so, and asks
// wants_write() afterwards to decide whether to watch for writability.
//
// Large bodies through a pipe whose reader is ours (Side::allow_splice):
// the whole pages inside a body of at least kSpliceMin bytes go into the
// pipe by reference (Side::splice_pages), so the bytes are copied once, by
// the reader, instead of twice; a pipe's single lock otherwise serialises
// the writer's copy with the reader's. The pipe then holds our pages, so
// such a body is kept, unchanged, until the reader has read past it (the
// pipe's unread count says when) and only then recycled; a stream that
// disconnects first unmaps those pages from the body (the pipe keeps them)
// before the body is reused.
//
// Memory: make_unforked() puts a Stream and its read buffer where
// children forked later do not inherit them (stream/unforked.h). That is
// for a stream to a child: its pages are written on every send and read,
// after forks that would otherwise have shared them, and a child never
// uses its parent's streams. Other streams (a child's own stream to its
// parent, made once at its start) stay on the heap, which costs no
// mapping of its own.
//
// Errors: a wrong magic number, an EOF or an I/O error disconnects the
// stream; the Protocol hears why exactly once. A frame longer than the
// maximum is not buffered: its body is read and discarded, and the Protocol
// hears of it through on_oversized() so that the sender can be told.
#ifndef SPINDLE_STREAM_STREAM_H_
#define SPINDLE_STREAM_STREAM_H_

#include <cstdint>
#include <deque>
#include <new>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "latch/adaptive_mutex.h"
#include "stream/frame.h"
#include "stream/side.h"
#include "stream/unforked.h"

namespace spindle {

class Stream {
 public:
  static constexpr size_t kDefaultMaxPending = size_t{1} << 30;

  class Protocol {
   public:
    virtual ~Protocol() = default;
    virtual void on_frame(Stream& stream, Frame&& frame) = 0;
    // `header` carries the routing fields of a frame announcing `length`
    // bytes, more than the maximum; its body is being discarded.
    virtual void on_oversized(Stream& stream, const Frame& header, uint64_t length) = 0;
    // Called once, when the stream becomes unusable.
    virtual void on_disconnect(Stream& stream, const std::string& reason) = 0;
  };

  // `tx` may be null, meaning `rx` is used in both directions.
  // `max_frame` bounds a body's length; `max_pending` bounds the transmit
  // queue in bytes.
  Stream(std::unique_ptr<Side> rx, std::unique_ptr<Side> tx, std::string name, Protocol* protocol,
         size_t max_frame, size_t max_pending = kDefaultMaxPending)
      : Stream(Memory::kHeap, std::move(rx), std::move(tx), std::move(name), protocol, max_frame, max_pending) {}
  // The same, in memory that children forked later do not inherit.
  static std::unique_ptr<Stream> make_unforked(std::unique_ptr<Side> rx, std::unique_ptr<Side> tx, std::string name,
                                               Protocol* protocol, size_t max_frame);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  // Gives the memory back to where it came from (C++20 destroying delete).
  static void operator delete(Stream* stream, std::destroying_delete_t);

  const std::string& name() const { return name_; }
  int rx_fd() const { return rx_->fd(); }
  int tx_fd() const { return tx()->fd(); }
  bool disconnected() const { return disconnected_.load(std::memory_order_acquire); }

  // Reads what is available and delivers every complete frame.
  void on_readable();
  // Broker thread only, before the first on_readable(). Takes bytes of the
  // stream that were read before it existed (the bootstrap reads past the
  // agent's marker into its first frames) and delivers their frames.
  void on_already_read(std::string_view bytes);
  // Broker thread only. Writes as much of the transmit queue as the
  // descriptor accepts; a write error (here or in an earlier send())
  // disconnects the stream.
  void on_writable();

  enum class SendResult {
    kWritten,     // all of it went to the descriptor
    kNeedsFlush,  // it waits in the queue, which was empty before: the
                  // caller must see that on_writable() runs
    kQueued,      // it waits behind frames whose flush is arranged
    kRejected,    // disconnected, or the queue would exceed max_pending;
                  // `frame` is left untouched
  };
  // Any thread. Queues `frame`. With `write_now` and nothing queued ahead
  // it is written at once, unless another frame was written that way in
  // the last few microseconds: then a burst is under way, and the frames
  // wait to leave together in one writev() of the next on_writable().
  SendResult send(Frame&& frame, bool write_now = false);
  bool wants_write() const;
  size_t pending_bytes() const;

  // Broker thread only. Closes both sides and tells the Protocol `reason`
  // (once).
  void disconnect(const std::string& reason);

 private:
  enum class Memory { kHeap, kUnforked };
  // Frees a read buffer of `size` bytes from where `memory` says.
  struct BufferDelete {
    size_t size;
    Memory memory;
    void operator()(char* buffer) const;
  };
  Stream(Memory memory, std::unique_ptr<Side> rx, std::unique_ptr<Side> tx, std::string name, Protocol* protocol,
         size_t max_frame, size_t max_pending);
  std::unique_ptr<char[], BufferDelete> new_read_buffer(size_t size) const;

  struct Pending {
    char header[kFrameHeaderSize];
    std::string body;
    bool spliced = false;  // some of body's pages went into the pipe
  };
  // A written body whose pages the pipe may still hold, and the count of
  // bytes written to tx at its end.
  struct InPipe {
    uint64_t end;
    std::string body;
  };
  enum class ReadState { kHeader, kBody, kSkip };

  Side* tx() const { return tx_ ? tx_.get() : rx_.get(); }
  // Caller holds tx_mu_. Returns false on a write error, with `error` set.
  bool write_locked(IoResult* error);
  // Caller holds tx_mu_. Recycles the spliced bodies the reader is done with.
  void release_spliced_locked();
  // Caller holds tx_mu_. Forgets every spliced body, leaving the pipe its pages.
  void drop_spliced_locked();
  // Consumes buffered bytes; returns false once disconnected.
  bool parse_buffered();
  void finish_body();
  // Moves the bytes not yet parsed to the front of the read buffer.
  void compact_read_buffer();
  // Doubles the read buffer, keeping the bytes not yet parsed.
  void grow_read_buffer();

  const Memory memory_;
  std::unique_ptr<Side> rx_;
  std::unique_ptr<Side> tx_;
  std::string name_;
  Protocol* protocol_;
  size_t max_frame_;
  size_t max_pending_;
  std::atomic<bool> disconnected_{false};

  // Not zero-filled: what a stream never reads into, it never touches
  // (which matters most right after fork()). Grows with the traffic.
  std::unique_ptr<char[], BufferDelete> rbuf_;
  size_t rcap_;
  size_t rstart_ = 0;
  size_t rend_ = 0;
  ReadState state_ = ReadState::kHeader;
  Frame current_;
  size_t body_filled_ = 0;
  uint64_t skip_left_ = 0;

  mutable AdaptiveMutex tx_mu_;
  std::deque<Pending> queue_;    // guarded by tx_mu_
  size_t front_offset_ = 0;      // bytes of queue_.front() already written
  size_t pending_bytes_ = 0;     // guarded by tx_mu_
  uint64_t tx_bytes_ = 0;        // written to tx in all, guarded by tx_mu_
  std::deque<InPipe> in_pipe_;   // guarded by tx_mu_
  std::atomic<bool> has_in_pipe_{false};  // !in_pipe_.empty(), for a lock-free look
  IoResult write_error_{};       // a write error seen off the broker thread
  int64_t last_direct_write_ns_ = 0;
};

}  // namespace spindle

#endif  // SPINDLE_STREAM_STREAM_H_
