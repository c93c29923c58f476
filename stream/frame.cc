#include "stream/frame.h"

namespace spindle {
namespace {

void put16(char* p, uint16_t v) {
  p[0] = static_cast<char>(v >> 8);
  p[1] = static_cast<char>(v);
}
void put32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}
uint16_t get16(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] << 8 | u[1]);
}
uint32_t get32(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} << 24 | uint32_t{u[1]} << 16 | uint32_t{u[2]} << 8 | u[3];
}

}  // namespace

void encode_frame_header(const Frame& f, char out[kFrameHeaderSize]) {
  put16(out, kFrameMagic);
  put32(out + 2, f.dst_id);
  put32(out + 6, f.src_id);
  put32(out + 10, f.auth_id);
  put32(out + 14, f.handle);
  put32(out + 18, f.reply_to);
  put32(out + 22, static_cast<uint32_t>(f.body.size()));
}

bool decode_frame_header(const char in[kFrameHeaderSize], Frame* f, uint32_t* length) {
  if (get16(in) != kFrameMagic) return false;
  f->dst_id = get32(in + 2);
  f->src_id = get32(in + 6);
  f->auth_id = get32(in + 10);
  f->handle = get32(in + 14);
  f->reply_to = get32(in + 18);
  *length = get32(in + 22);
  return true;
}

}  // namespace spindle
