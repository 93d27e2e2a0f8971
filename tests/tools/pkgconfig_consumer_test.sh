#!/bin/sh
# Usage: pkgconfig_consumer_test.sh BUILD_DIR CONSUMER_SOURCE COMPILER [ARGS...]
set -eu
build=$1; source=$2; shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >"$tmp/install.log" 2>&1 || {
  echo "FAIL: meson install"; cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name shmports.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: no shmports.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
# Only installed headers may be reachable: build outside the source tree.
"$@" -std=c++20 -o "$tmp/consumer" "$source" $(pkg-config --cflags --libs shmports)
libdir=$(dirname "$(find "$tmp/root" -name "libshmports.so*" | head -n 1)")
LD_LIBRARY_PATH="$libdir" "$tmp/consumer"
if find "$tmp/root" -path '*include/shmports/*' | grep -v -E '/shmports/(status|process|pipe|invitation)\.h$'; then
  echo "FAIL: an internal header was installed"; exit 1
fi
echo "ok: consumer built and ran against $pc"
