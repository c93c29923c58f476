#include "stream/buffer.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

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

void resize_large(std::string* s, size_t n) {
  reserve_large(s, n);
  s->resize(n);
}

}  // namespace spindle
