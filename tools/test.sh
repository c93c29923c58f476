#!/bin/sh
# The whole suite: install, build, run every test; then the suite again
# under AddressSanitizer + UndefinedBehaviorSanitizer, and the threaded
# tests (latch, broker, router) under ThreadSanitizer.
# SANITIZERS=0 skips the sanitizer builds.
set -eu
# The transport tests create users, a sudo rule and sshd servers: root.
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"
cd "$(dirname "$0")/.."
tools/setup.sh
JOBS=$(nproc)
PASSED=0

# Runs meson test in build dir $1 (more args passed on) and adds the
# GoogleTest cases that passed to PASSED.
run_suite() {
  dir=$1; shift
  meson test -C "$dir" --print-errorlogs --num-processes 1 "$@"
  n=$(grep -ho '\[  PASSED  \] [0-9]* test' "$dir/meson-logs/testlog.txt" | awk '{s+=$4} END {print s+0}')
  PASSED=$((PASSED + n))
}

echo "== build (debugoptimized)"
ninja -C build -j"$JOBS" >/dev/null
run_suite build

if [ "${SANITIZERS:-1}" = 1 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
  [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
      -Db_lundef=false --buildtype=debug >/dev/null
  ninja -C build-asan -j"$JOBS" >/dev/null
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-asan

  echo "== ThreadSanitizer (threaded suite)"
  [ -f build-tsan/build.ninja ] || meson setup build-tsan -Db_sanitize=thread -Db_lundef=false \
      --buildtype=debug >/dev/null
  ninja -C build-tsan -j"$JOBS" >/dev/null
  TSAN_OPTIONS=halt_on_error=1 run_suite build-tsan --suite threaded
fi
echo "tests: $PASSED passed, 0 failed"
