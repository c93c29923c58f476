#!/bin/sh
# The newcomer's first command: install, build, run the C++ API demo (calls
# in forked children, a grandchild and a fresh process, one remote error),
# then try the spindle tool on local contexts (no SSH needed).
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
ninja -C build -j"$(nproc)" >/dev/null
echo "\$ build/tools/spindle-demo"
build/tools/spindle-demo
S=build/tools/spindle
show() {
  echo
  echo "\$ spindle $*"
  "$S" "$@" || echo "(exit status $?)"
}
show ping --local 4
show run --local 4 -- 'echo "hello from $SPINDLE_HOST, pid $$"'
show run --local 4 --gather -- uname -sr
show run --local 2 --json -- 'echo out; echo err >&2; exit 3'
show run --local 2 --timeout 1 -- 'sleep 5'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 64M /dev/urandom > "$tmp/blob"
mkdir "$tmp/to" "$tmp/back"
show push --local 4 "$tmp/blob" "$tmp/to/"
show pull --local 2 "$tmp/to/blob" "$tmp/back"
ls -l "$tmp/back"
echo
echo "Over SSH: spindle run -w 'web[01-32]' -- uptime   (see spindle --help, man spindle)"
