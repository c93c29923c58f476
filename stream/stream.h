// Stream: a framed, non-blocking byte channel to one peer.
//
// Owns a receive Side and a transmit Side (the same descriptor for a
// socket), the partial state of the frame being read, and a transmit queue
// of frames not yet written. Frames read are handed to a Protocol; nothing
// here knows about routing.
//
// Thread safety: broker thread only, once the stream is registered with a
// Broker. The owner calls on_readable()/on_writable() when the poller says
// so, and asks wants_write() after each call to decide whether to watch the
// transmit descriptor for writability.
//
// Errors: a wrong magic number, an EOF or an I/O error disconnects the
// stream; the Protocol hears why exactly once. A frame longer than the
// maximum is not buffered: its body is read and discarded, and the Protocol
// hears of it through on_oversized() so that the sender can be told.
#ifndef SPINDLE_STREAM_STREAM_H_
#define SPINDLE_STREAM_STREAM_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "stream/frame.h"
#include "stream/side.h"

namespace spindle {

class Stream {
 public:
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
         size_t max_frame, size_t max_pending = size_t{1} << 30);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  const std::string& name() const { return name_; }
  int rx_fd() const { return rx_->fd(); }
  int tx_fd() const { return tx()->fd(); }
  bool disconnected() const { return disconnected_; }

  // Reads what is available and delivers every complete frame.
  void on_readable();
  // Writes as much of the transmit queue as the descriptor accepts.
  void on_writable();
  // Queues `frame`; it is written by the next on_writable(), so that frames
  // sent in one burst leave in one writev(). Returns false (and drops the
  // frame) when disconnected or when the queue would exceed max_pending.
  bool send(Frame&& frame);
  bool wants_write() const { return !queue_.empty() && !disconnected_; }
  size_t pending_bytes() const { return pending_bytes_; }

  // Closes both sides and tells the Protocol `reason` (once).
  void disconnect(const std::string& reason);

 private:
  struct Pending {
    char header[kFrameHeaderSize];
    std::string body;
  };
  enum class ReadState { kHeader, kBody, kSkip };

  Side* tx() const { return tx_ ? tx_.get() : rx_.get(); }
  // Consumes buffered bytes; returns false once disconnected.
  bool parse_buffered();
  void finish_body();

  std::unique_ptr<Side> rx_;
  std::unique_ptr<Side> tx_;
  std::string name_;
  Protocol* protocol_;
  size_t max_frame_;
  size_t max_pending_;
  bool disconnected_ = false;

  std::string rbuf_;
  size_t rstart_ = 0;
  size_t rend_ = 0;
  ReadState state_ = ReadState::kHeader;
  Frame current_;
  size_t body_filled_ = 0;
  uint64_t skip_left_ = 0;

  std::deque<Pending> queue_;
  size_t front_offset_ = 0;  // bytes of queue_.front() already written
  size_t pending_bytes_ = 0;
};

}  // namespace spindle

#endif  // SPINDLE_STREAM_STREAM_H_
