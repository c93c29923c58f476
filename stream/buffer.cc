#include "stream/buffer.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>

namespace spindle {

void reserve_large(std::string* s, size_t n) {
  if (n <= s->capacity()) return;
  s->reserve(n);
  if (n < kLargeBuffer) return;
#ifdef MADV_HUGEPAGE
  // Only whole pages inside the buffer; the kernel uses huge pages for the
  // 2 MiB-aligned stretches of it.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(s->data()) + page - 1) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(s->data()) + s->capacity()) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

namespace {
std::mutex g_spare_mu;
std::string* g_spare = nullptr;  // leaked on purpose: usable during exit
}  // namespace

// The spare buffer, if it can hold `n` bytes; else an empty string.
std::string take_spare(size_t n) {
  std::string out;
  if (n >= kLargeBuffer) {
    std::lock_guard<std::mutex> lock(g_spare_mu);
    if (g_spare && g_spare->capacity() >= n) out.swap(*g_spare);
  }
  return out;
}

std::string take_buffer(size_t n) {
  std::string out = take_spare(n);
  out.clear();
  reserve_large(&out, n);
  return out;
}

std::string take_filled_buffer(size_t n) {
  std::string out = take_spare(n);
  if (out.size() < n) reserve_large(&out, n);
  out.resize(n);  // shrinking writes nothing; only growth zero-fills
  return out;
}

void recycle_buffer(std::string&& s) {
  if (s.capacity() < kLargeBuffer) return;
  std::lock_guard<std::mutex> lock(g_spare_mu);
  if (!g_spare) g_spare = new std::string();
  if (s.capacity() > g_spare->capacity()) g_spare->swap(s);
}

void release_spare_buffer() {
  std::string old;
  std::lock_guard<std::mutex> lock(g_spare_mu);
  if (g_spare) g_spare->swap(old);
}


}  // namespace spindle
