#!/bin/sh
# The newcomer's first command: install, build, and run the demo.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
ninja -C build -j"$(nproc)" >/dev/null
exec build/tools/spindle-demo
