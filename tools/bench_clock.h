// Timing helpers shared by the benchmark programs (spindle-bench and the
// floors): header-only, so that a floor links no library.
#ifndef SPINDLE_TOOLS_BENCH_CLOCK_H_
#define SPINDLE_TOOLS_BENCH_CLOCK_H_

#include <algorithm>
#include <chrono>
#include <vector>

// Seconds on a monotonic clock.
inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The median of `v` (its upper middle for an even count), or 0 when empty.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

#endif  // SPINDLE_TOOLS_BENCH_CLOCK_H_
