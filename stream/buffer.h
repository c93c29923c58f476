// Large message buffers.
//
// A 64 MiB body in fresh memory costs 16,384 page faults to touch, more
// than the copy itself on a small virtual machine. Buffers this large are
// allocated without being touched and advised to use transparent huge
// pages where the kernel offers them (one fault per 2 MiB).
#ifndef SPINDLE_STREAM_BUFFER_H_
#define SPINDLE_STREAM_BUFFER_H_

#include <cstddef>
#include <string>

namespace spindle {

inline constexpr size_t kLargeBuffer = size_t{2} << 20;

// Makes s->capacity() at least `n` (keeping the contents); from
// kLargeBuffer up, the new memory is advised MADV_HUGEPAGE before use.
void reserve_large(std::string* s, size_t n);

// Grows `s` to `n` bytes through reserve_large(); new bytes are zero.
void resize_large(std::string* s, size_t n);

}  // namespace spindle

#endif  // SPINDLE_STREAM_BUFFER_H_
