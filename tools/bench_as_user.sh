#!/bin/sh
# Runs a benchmark command as the user spindle-bench (created here, with
# Debian's stock dot files) against its own loopback sshd of
# ../shared/bench/sshd_up.sh, port 2223, hosts h1..h64.
#
# Why another user: every ssh login runs the account's shell start-up files,
# and root's ~/.bashrc on the development machines runs `pyenv init`
# (0.6 s alone; 16 at once took 22 s of wall time and 43 s of CPU here, and
# some waited 60 s for pyenv's rehash lock). A fan-out of 32 logins then
# measures pyenv, not the tools, whichever tool runs it.
#
# Usage (as root, after tools/setup.sh and a build):
#   tools/bench_as_user.sh tools/bench_cli.sh
#   tools/bench_as_user.sh build/tools/spindle-bench ssh_fanout32_ms
#   tools/bench_as_user.sh /usr/bin/python3 ../shared/bench/mitogen_ssh_bench.py 32
set -eu
[ "$(id -u)" = 0 ] || { echo "bench_as_user.sh: run as root (it creates the user)" >&2; exit 2; }
cd "$(dirname "$0")/.."
USER_NAME=spindle-bench
DIR=/tmp/spindle-bench-sshd
id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/bash "$USER_NAME"
for p in pdsh clustershell pssh; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
mkdir -p /run/sshd
exec sudo -u "$USER_NAME" -H env ${ROUNDS:+ROUNDS=$ROUNDS} ${RUNS:+RUNS=$RUNS} ${SIZE_MIB:+SIZE_MIB=$SIZE_MIB} PORT=2223 DIR="$DIR" INSTALL_CONFIG=1 \
  SPINDLE_SSH_CONFIG="$DIR/ssh_config" SHARED="$(cd ../shared && pwd)" \
  sh -c 'bash "$SHARED/bench/sshd_up.sh" >/dev/null && exec "$@"' sh "$@"
