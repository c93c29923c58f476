#include "stream/unforked.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "stream/per_process.h"

namespace spindle {

#ifdef MADV_DONTFORK
namespace {

// Enough for the Streams of a few hundred contexts gone since. None under
// AddressSanitizer, which does not watch these blocks: unmapped at once, a
// Stream used after its deletion faults.
#ifdef __SANITIZE_ADDRESS__
constexpr size_t kKeepBytes = 0;
#else
constexpr size_t kKeepBytes = size_t{4} << 20;
#endif

struct Pool {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> kept;  // by size in pages
  size_t kept_bytes = 0;
};

// A child of fork() starts with an empty pool: it has none of the blocks.
Pool& pool() { return per_process<Pool>(); }

size_t whole_pages(size_t bytes) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) & ~(page - 1);
}

}  // namespace

void* allocate_unforked(size_t bytes) {
  const size_t size = whole_pages(bytes);
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.kept.find(size);
    if (it != p.kept.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      p.kept_bytes -= size;
      return block;
    }
  }
  void* block = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) throw std::bad_alloc();
  // Should it fail, the block is inherited: slower, never wrong.
  madvise(block, size, MADV_DONTFORK);
#ifdef __SANITIZE_ADDRESS__
  // LeakSanitizer looks for pointers in the heap, not in our mappings: a
  // Stream's name, sides and queue would look leaked.
  __lsan_register_root_region(block, size);
#endif
  return block;
}

void free_unforked(void* block, size_t bytes) {
  if (block == nullptr) return;
  const size_t size = whole_pages(bytes);
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    if (p.kept_bytes + size <= kKeepBytes) {
      p.kept[size].push_back(block);
      p.kept_bytes += size;
      return;
    }
  }
#ifdef __SANITIZE_ADDRESS__
  __lsan_unregister_root_region(block, size);
#endif
  munmap(block, size);
}

#else  // no MADV_DONTFORK: every child inherits everything anyway

void* allocate_unforked(size_t bytes) { return ::operator new(bytes); }
void free_unforked(void* block, size_t) { ::operator delete(block); }

#endif

}  // namespace spindle
