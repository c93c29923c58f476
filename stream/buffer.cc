#include "stream/buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "stream/per_process.h"

namespace spindle {
namespace {

struct Spares {
  std::mutex mu;
  std::vector<std::string> kept;  // each under kSpareBudget
  size_t kept_bytes = 0;          // their capacities, at most kSpareBudget
  std::string largest;            // kSpareBudget or more, or empty
};

// A child of fork() starts with no spares: it did not inherit their pages.
Spares& spares() { return per_process<Spares>(); }

// Spares stay out of forked children: fork() copies the page table entries
// of every private page its caller has mapped, and one 64 MiB spare made
// each fork, and each child's exit, 2.3 ms slower. A buffer leaving the
// pool is inherited again first, so that whoever gets it, or malloc when
// it is freed, hands memory that forks normally. Only the whole pages
// inside the buffer are marked: the allocator's headers around it stay,
// and a string without a whole page (an empty one) is left alone.
void set_inherited(const std::string& s, bool inherited) {
#ifdef MADV_DONTFORK
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(s.data()) + page - 1) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(s.data()) + s.capacity()) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, inherited ? MADV_DOFORK : MADV_DONTFORK);
#else
  (void)s;
  (void)inherited;
#endif
}

// The smallest spare that can hold `n` bytes; else an empty string.
std::string take_spare(size_t n) {
  std::string out;
  if (n < kLargeBuffer) return out;
  Spares& s = spares();
  std::lock_guard<std::mutex> lock(s.mu);
  size_t best = s.kept.size();
  for (size_t i = 0; i < s.kept.size(); ++i) {
    size_t cap = s.kept[i].capacity();
    if (cap >= n && (best == s.kept.size() || cap < s.kept[best].capacity())) best = i;
  }
  if (best < s.kept.size()) {
    out.swap(s.kept[best]);
    s.kept_bytes -= out.capacity();
    s.kept[best].swap(s.kept.back());
    s.kept.pop_back();
  } else if (n >= kSpareBudget && s.largest.capacity() >= n) {
    out.swap(s.largest);
  }
  set_inherited(out, true);
  return out;
}

}  // namespace

std::string take_buffer(size_t n) {
  std::string out = take_spare(n);
  out.clear();
  out.reserve(n);
  return out;
}

std::string take_filled_buffer(size_t n) {
  std::string out = take_spare(n);
  out.resize(n);  // shrinking writes nothing; only growth zero-fills
  return out;
}

void recycle_buffer(std::string&& s) {
  size_t cap = s.capacity();
  if (cap < kLargeBuffer) return;
  Spares& p = spares();
  std::lock_guard<std::mutex> lock(p.mu);
  if (cap >= kSpareBudget) {
    if (cap <= p.largest.capacity()) return;
    set_inherited(s, false);
    p.largest.swap(s);
    set_inherited(s, true);  // the one replaced, freed by the caller
    return;
  }
  if (p.kept_bytes + cap > kSpareBudget) return;
  set_inherited(s, false);
  p.kept_bytes += cap;
  p.kept.push_back(std::move(s));
}

void release_spare_buffers() {
  std::vector<std::string> kept;
  std::string largest;
  {
    Spares& s = spares();
    std::lock_guard<std::mutex> lock(s.mu);
    kept.swap(s.kept);
    largest.swap(s.largest);
    s.kept_bytes = 0;
  }
  for (const std::string& k : kept) set_inherited(k, true);
  set_inherited(largest, true);
}

}  // namespace spindle
