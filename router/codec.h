// msgpack helpers: packing into a std::string and unpacking without copies.
#ifndef SPINDLE_ROUTER_CODEC_H_
#define SPINDLE_ROUTER_CODEC_H_

#include <algorithm>
#include <string>
#include <string_view>

#include <msgpack.hpp>

#include "stream/buffer.h"

namespace spindle {

// A msgpack write buffer that appends to a std::string, so that a packed body
// can be moved into a Message without a copy.
class StringBuffer {
 public:
  explicit StringBuffer(std::string* out) : out_(out) {}
  void write(const char* data, size_t n) {
    if (out_->size() + n > out_->capacity()) {
      // A write that overflows is mostly a bulk field (a file's chunk); the
      // slack keeps the small fields after it from copying it again.
      size_t want = std::max(out_->size() + n + kSlack, 2 * out_->capacity());
      if (want >= kLargeBuffer) {
        std::string bigger = take_buffer(want);
        bigger.append(*out_);
        out_->swap(bigger);
      } else {
        out_->reserve(want);
      }
    }
    out_->append(data, n);
  }

 private:
  static constexpr size_t kSlack = 256;
  std::string* out_;
};

using Packer = msgpack::packer<StringBuffer>;

// Packs the arguments as one msgpack array.
template <typename... T>
std::string pack_array(const T&... values) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_array(sizeof...(T));
  (pk.pack(values), ...);
  return out;
}

// Unpacks `data`, letting strings and binaries point into it: `data` must
// outlive the returned handle's objects.
msgpack::object_handle unpack_view(std::string_view data);

}  // namespace spindle

#endif  // SPINDLE_ROUTER_CODEC_H_
