// Memory that a child of fork() does not inherit, for objects that only
// the process that made them ever touches: a Stream to a child and its
// read buffer (Stream::make_unforked).
//
// Why: fork() shares every private page between parent and child, read
// only, and the first write to such a page afterwards copies it (a
// copy-on-write fault, ~2 µs here). A Stream is written on every send and
// every read. So after the master forks sixteen children, its first call
// to each of them faulted on pages of that child's Stream and read buffer,
// which the later forks had shared: ~20 faults in a fan-out of sixteen
// calls, on the sending thread. A child never uses its parent's Streams
// (it closes their descriptors and starts a fresh Router), so their pages
// need not be shared at all: they are mapped MADV_DONTFORK.
//
// Blocks freed are kept for reuse (up to a bound), so that a fork
// context's cycle of create, call and shutdown makes no system call for
// them. A child of fork() starts with an empty pool: the blocks its
// parent kept are not mapped in it.
//
// Where MADV_DONTFORK does not exist, this is plain operator new/delete.
#ifndef SPINDLE_STREAM_UNFORKED_H_
#define SPINDLE_STREAM_UNFORKED_H_

#include <cstddef>

namespace spindle {

// Any thread. At least `bytes` of memory, not inherited by children
// forked later. Throws std::bad_alloc when out of memory, as
// operator new does.
void* allocate_unforked(size_t bytes);

// Any thread. Gives back what allocate_unforked(bytes) returned, with the
// same `bytes`.
void free_unforked(void* p, size_t bytes);

}  // namespace spindle

#endif  // SPINDLE_STREAM_UNFORKED_H_
