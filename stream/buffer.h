// Large message buffers.
//
// A 64 MiB body in fresh memory costs 16,384 page faults to touch, more
// than the copy itself on a small virtual machine. So the buffers of large
// messages that a stream wrote out (or a child finished with) are kept as
// spares, and the next large message is built or read into one: memory
// already mapped. (Transparent huge pages were tried instead: faster on
// average, but the kernel's compaction stalled some faults for 200 ms.)
//
// Why a pool and not only the largest buffer: a push keeps dozens of
// half-mebibyte bodies in flight. Freed and allocated anew, they went back
// and forth between malloc and the kernel (glibc trims its heap once a
// mebibyte lies free at its top): the master of a push to 8 hosts took
// 25,000-78,000 page faults, 6,900 with the pool.
//
// What is kept: buffers under kSpareBudget, up to kSpareBudget bytes in
// all, for requests of any large size; and one larger buffer, the largest
// seen, for requests of kSpareBudget or more.
//
// Forks: spares are not inherited (MADV_DONTFORK while kept), so that a
// fork does not copy their page tables; a child of fork() starts with none.
// A buffer handed out is inherited like any memory.
#ifndef SPINDLE_STREAM_BUFFER_H_
#define SPINDLE_STREAM_BUFFER_H_

#include <cstddef>
#include <string>

namespace spindle {

// Buffers at least this large come from, and go back to, the spares.
inline constexpr size_t kLargeBuffer = size_t{256} << 10;
inline constexpr size_t kSpareBudget = size_t{16} << 20;

// Any thread. An empty string with capacity for at least `n` bytes: the
// smallest spare that fits, else a new one.
std::string take_buffer(size_t n);

// Any thread. A string of exactly `n` bytes whose contents are unspecified
// (to be overwritten): from the spares when one fits, which spares the
// zero-filling of a fresh one.
std::string take_filled_buffer(size_t n);

// Any thread. Keeps `s` as a spare when it is large and there is room (see
// above); otherwise leaves it to the caller to free.
void recycle_buffer(std::string&& s);

// Any thread. Frees every spare.
void release_spare_buffers();

}  // namespace spindle

#endif  // SPINDLE_STREAM_BUFFER_H_
