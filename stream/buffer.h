// Large message buffers.
//
// A 64 MiB body in fresh memory costs 16,384 page faults to touch, more
// than the copy itself on a small virtual machine. Buffers this large are
// allocated without being touched and advised to use transparent huge
// pages where the kernel offers them (one fault per 2 MiB), and the last
// one written out is kept for the next large message.
#ifndef SPINDLE_STREAM_BUFFER_H_
#define SPINDLE_STREAM_BUFFER_H_

#include <cstddef>
#include <string>

namespace spindle {

inline constexpr size_t kLargeBuffer = size_t{2} << 20;

// Makes s->capacity() at least `n` (keeping the contents); from
// kLargeBuffer up, the new memory is advised MADV_HUGEPAGE before use.
void reserve_large(std::string* s, size_t n);

// Any thread. An empty string with capacity for at least `n` bytes: the
// spare large buffer when it fits, else a new one from reserve_large().
std::string take_buffer(size_t n);

// Any thread. A string of exactly `n` bytes whose contents are unspecified
// (to be overwritten): from the spare buffer when it fits, which spares
// the zero-filling of a fresh one.
std::string take_filled_buffer(size_t n);

// Any thread. Keeps `s` as the spare buffer when it is large (one spare at
// most, the largest seen), so that a stream of large messages reuses memory
// that is already mapped instead of faulting in fresh pages each time.
void recycle_buffer(std::string&& s);

// Any thread. Frees the spare buffer.
void release_spare_buffer();

}  // namespace spindle

#endif  // SPINDLE_STREAM_BUFFER_H_
