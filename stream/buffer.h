// Large message buffers.
//
// A 64 MiB body in fresh memory costs 16,384 page faults to touch, more
// than the copy itself on a small virtual machine. So the last large buffer
// a stream wrote out (or a child finished with) is kept as a spare, and the
// next large message is built or read into it: memory already mapped.
// (Transparent huge pages were tried instead: faster on average, but the
// kernel's compaction stalled some faults for 200 ms.)
#ifndef SPINDLE_STREAM_BUFFER_H_
#define SPINDLE_STREAM_BUFFER_H_

#include <cstddef>
#include <string>

namespace spindle {

inline constexpr size_t kLargeBuffer = size_t{2} << 20;

// Any thread. An empty string with capacity for at least `n` bytes: the
// spare buffer when it fits, else a new one.
std::string take_buffer(size_t n);

// Any thread. A string of exactly `n` bytes whose contents are unspecified
// (to be overwritten): from the spare buffer when it fits, which spares
// the zero-filling of a fresh one.
std::string take_filled_buffer(size_t n);

// Any thread. Keeps `s` as the spare buffer when it is large (one spare at
// most, the largest seen).
void recycle_buffer(std::string&& s);

}  // namespace spindle

#endif  // SPINDLE_STREAM_BUFFER_H_
