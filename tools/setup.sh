#!/bin/sh
# Installs what Spindle needs to build and test (Debian 12 packages), then
# configures the build directory build/. Safe to run again.
set -eu
cd "$(dirname "$0")/.."
PACKAGES="g++ meson ninja-build pkg-config cmake libabsl-dev libmsgpack-cxx-dev libssh2-1-dev
  libssl-dev zlib1g-dev libgpg-error-dev libxxhash-dev libgtest-dev libgmock-dev openssh-client openssh-server sudo
  passwd procps python3 python3-mitogen"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized >/dev/null
