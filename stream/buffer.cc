#include "stream/buffer.h"

#include <mutex>
#include <vector>

namespace spindle {
namespace {

struct Spares {
  std::mutex mu;
  std::vector<std::string> kept;  // each under kSpareBudget
  size_t kept_bytes = 0;          // their capacities, at most kSpareBudget
  std::string largest;            // kSpareBudget or more, or empty
};

Spares& spares() {
  static auto* s = new Spares();  // leaked on purpose: usable during exit
  return *s;
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
    if (cap > p.largest.capacity()) p.largest.swap(s);
    return;
  }
  if (p.kept_bytes + cap > kSpareBudget) return;
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
}

}  // namespace spindle
