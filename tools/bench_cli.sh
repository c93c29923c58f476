#!/bin/bash
# The spindle tool against the tools people use, in one run, on the loopback
# sshd of ../shared/bench/sshd_up.sh (started here, with its ssh_config
# installed as ~/.ssh/config so that every tool sees the same hosts h1..h64).
#  - fan-out: `spindle run -w h[1-32] true` from a cold start (no connection
#    open) against pdsh, clush, parallel-ssh (../shared/bench/peers_fanout.sh)
#    and the bare `xargs -P 32 ssh` floor;
#  - copy: `spindle push` of a SIZE_MIB file to h[1-8] against 8 parallel
#    scp, pdcp and clush --copy, with spindle's peak memory; also both
#    sides with -o Ciphers=aes128-gcm@openssh.com (spindle --transport openssh).
# ROUNDS=N repeats everything N times (tools interleaved) and prints the
# median of each figure and the ratios the issue asks for.
# Usage: tools/bench_cli.sh   (after tools/setup.sh and a build; installs
# pdsh, clustershell and pssh when missing)
set -eu
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd ../shared && pwd)}
ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-256}
S=${SPINDLE:-$PWD/build/tools/spindle}
export DIR=${DIR:-/tmp/anchor-sshd}
for p in pdsh clustershell pssh; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
INSTALL_CONFIG=1 bash "$SHARED/bench/sshd_up.sh" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /tmp/bench-dest' EXIT
out=$tmp/figures
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }

# Warm-up: the agent is uploaded and cached once, as on any host used before.
"$S" run -w 'h[1-32]' -- true >/dev/null
head -c $((SIZE_MIB << 20)) /dev/urandom > "$tmp/file"
fresh() { rm -rf /tmp/bench-dest; mkdir -p /tmp/bench-dest; sync; }

for r in $(seq "$ROUNDS"); do
  bash "$SHARED/bench/peers_fanout.sh" 32 true >> "$out"
  echo "spindle_fanout32_ms $(ms "$S" run -w 'h[1-32]' -- true)" >> "$out"
  echo "spindle_openssh_fanout32_ms $(ms "$S" run --transport openssh -w 'h[1-32]' -- true)" >> "$out"

  fresh; echo "scp_push8_ms $(ms sh -c "for i in 1 2 3 4 5 6 7 8; do scp -q $tmp/file h\$i:/tmp/bench-dest/f\$i & done; wait")" >> "$out"
  fresh; echo "scp_gcm_push8_ms $(ms sh -c "for i in 1 2 3 4 5 6 7 8; do scp -q -c aes128-gcm@openssh.com $tmp/file h\$i:/tmp/bench-dest/f\$i & done; wait")" >> "$out"
  fresh; echo "pdcp_push8_ms $(PDSH_RCMD_TYPE=ssh ms pdcp -f 8 -w 'h[1-8]' "$tmp/file" /tmp/bench-dest/)" >> "$out"
  fresh; echo "clush_push8_ms $(ms clush -f 8 -w 'h[1-8]' --copy "$tmp/file" --dest /tmp/bench-dest/)" >> "$out"
  fresh
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$tmp/rss" "$S" push -w 'h[1-8]' "$tmp/file" /tmp/bench-dest/ >/dev/null 2>&1
  t1=$(date +%s%N)
  echo "spindle_push8_ms $(( (t1 - t0) / 1000000 ))" >> "$out"
  echo "spindle_push8_peak_rss_kib $(cat "$tmp/rss")" >> "$out"
  cmp -s "$tmp/file" /tmp/bench-dest/file || echo "spindle push: the copy differs" >&2
  fresh
  t0=$(date +%s%N)
  "$S" push --transport openssh -w 'h[1-8]' "$tmp/file" /tmp/bench-dest/ >/dev/null 2>&1
  t1=$(date +%s%N)
  echo "spindle_openssh_push8_ms $(( (t1 - t0) / 1000000 ))" >> "$out"
  fresh
  t0=$(date +%s%N)
  "$S" push --transport openssh -o Ciphers=aes128-gcm@openssh.com -w 'h[1-8]' "$tmp/file" /tmp/bench-dest/ >/dev/null 2>&1
  t1=$(date +%s%N)
  echo "spindle_openssh_gcm_push8_ms $(( (t1 - t0) / 1000000 ))" >> "$out"
done

median() { awk -v n="$1" '$1 == n {print $2}' "$out" | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
echo "# medians of $ROUNDS rounds (ms; peak RSS in KiB)"
for name in $(awk '{print $1}' "$out" | awk '!seen[$0]++'); do printf '%-36s %s\n' "$name" "$(median "$name")"; done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
best_peer=$(for n in pdsh_fanout32_ms clush_fanout32_ms pssh_fanout32_ms; do median $n; done | sort -g | head -1)
best_copy=$(for n in scp_push8_ms pdcp_push8_ms clush_push8_ms; do median $n; done | sort -g | head -1)
echo "# ratios"
echo "fanout32 spindle / fastest of pdsh, clush, pssh:  $(ratio "$(median spindle_fanout32_ms)" "$best_peer")  (target <= 0.8)"
echo "fanout32 spindle / xargs ssh curve25519 floor:    $(ratio "$(median spindle_fanout32_ms)" "$(median ssh_xargs_curve25519_fanout32_ms)")  (target <= 1.15)"
echo "push8 spindle / fastest of scp, pdcp, clush:      $(ratio "$(median spindle_push8_ms)" "$best_copy")  (target <= 1.0)"
echo "push8 spindle openssh / same:                     $(ratio "$(median spindle_openssh_push8_ms)" "$best_copy")"
best_gcm=$( (echo "$best_copy"; median scp_gcm_push8_ms) | sort -g | head -1)
echo "push8 spindle openssh aes128-gcm / fastest, scp with aes128-gcm too: $(ratio "$(median spindle_openssh_gcm_push8_ms)" "$best_gcm")"
