// The frame codec: how one message travels as bytes.
//
// Every frame is a fixed 26-byte big-endian header followed by `length`
// bytes of body:
//   magic(2) dst_id(4) src_id(4) auth_id(4) handle(4) reply_to(4) length(4)
// The magic lets a receiver notice at once that a stream has lost framing
// (corruption, or some program writing stray text onto it) instead of
// interpreting garbage as a length. The length is checked against the
// receiver's maximum before any body byte is buffered, so a hostile or
// broken peer cannot make us allocate what it claims.
#ifndef SPINDLE_STREAM_FRAME_H_
#define SPINDLE_STREAM_FRAME_H_

#include <cstdint>
#include <string>

namespace spindle {

inline constexpr uint16_t kFrameMagic = 0x5370;  // "Sp"
inline constexpr size_t kFrameHeaderSize = 26;

// One message: routing header plus body. The router's Message extends it.
struct Frame {
  uint32_t dst_id = 0;
  uint32_t src_id = 0;
  uint32_t auth_id = 0;
  uint32_t handle = 0;
  uint32_t reply_to = 0;
  std::string body;
};

// Writes the header for `f` (with length = f.body.size()) into `out`.
void encode_frame_header(const Frame& f, char out[kFrameHeaderSize]);

// Parses a header. Returns false when the magic is wrong; on success fills
// the routing fields of `f` (leaving its body alone) and `length`.
bool decode_frame_header(const char in[kFrameHeaderSize], Frame* f, uint32_t* length);

}  // namespace spindle

#endif  // SPINDLE_STREAM_FRAME_H_
