#!/bin/sh
# Runs spindle-bench, mitogen's anchor benchmark and this machine's floors
# (../shared/bench/limits.c and spindle-fork-floor) in one go, and prints
# each figure side by side with the ratio. RUNS=N repeats each benchmark N
# times and keeps the median.
# Usage: tools/bench_compare.sh   (after tools/setup.sh and a build)
set -eu
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
RUNS=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/limits" "$SHARED/bench/limits.c" -lpthread

i=0
while [ "$i" -lt "$RUNS" ]; do
  build/tools/spindle-bench >> "$tmp/spindle"
  /usr/bin/python3 "$SHARED/bench/mitogen_bench.py" >> "$tmp/mitogen"
  i=$((i + 1))
done
"$tmp/limits" > "$tmp/limits.out"

median() {  # median of the values of figure $1 in file $2
  awk -v n="$1" '$1 == n {print $2}' "$2" | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'
}
printf '%-22s %12s %12s %10s\n' figure spindle mitogen ratio
for name in latch_roundtrip_us fork_roundtrip_us fork_setup_ms local_setup_ms large_msg_MiBps \
            async_calls_per_s fanout16_call_ms; do
  s=$(median "$name" "$tmp/spindle")
  m=$(median "$name" "$tmp/mitogen")
  [ -n "$s" ] || continue
  printf '%-22s %12s %12s %10s\n' "$name" "$s" "${m:--}" \
    "$(awk -v s="$s" -v m="${m:-0}" 'BEGIN { if (m > 0) printf "%.3f", s / m; else print "-" }')"
done
echo "floor (limits.c):"
sed 's/^/  /' "$tmp/limits.out"
if [ -x build/tools/spindle-fork-floor ]; then
  echo "floor of fork_setup's cycle (spindle-fork-floor child-thread parent-spin: spindle's threads):"
  build/tools/spindle-fork-floor child-thread parent-spin | sed 's/^/  /'
fi
