#include "stream/buffer.h"

#include <mutex>

namespace spindle {
namespace {

std::mutex g_spare_mu;
std::string* g_spare = nullptr;  // leaked on purpose: usable during exit

// The spare buffer, if it can hold `n` bytes; else an empty string.
std::string take_spare(size_t n) {
  std::string out;
  if (n >= kLargeBuffer) {
    std::lock_guard<std::mutex> lock(g_spare_mu);
    if (g_spare && g_spare->capacity() >= n) out.swap(*g_spare);
  }
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
  if (s.capacity() < kLargeBuffer) return;
  std::lock_guard<std::mutex> lock(g_spare_mu);
  if (!g_spare) g_spare = new std::string();
  if (s.capacity() > g_spare->capacity()) g_spare->swap(s);
}

}  // namespace spindle
