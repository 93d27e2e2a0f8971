#!/bin/sh
# Proves the clang thread-safety analysis is live: a correctly locked access
# compiles, an unguarded one is rejected with a thread-safety diagnostic.
# Usage: thread_safety_check.sh SOURCE_ROOT COMPILER [ARGS...]
set -u
src=$1; shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
flags="-std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety -I$src"
if ! "$@" $flags "$src/tests/core/base/tsa_ok.cc" 2>"$tmp/ok.log"; then
  echo "FAIL: the correctly locked program was rejected:"; cat "$tmp/ok.log"; exit 1
fi
if "$@" $flags "$src/tests/core/base/tsa_unguarded.cc" 2>"$tmp/bad.log"; then
  echo "FAIL: an unguarded write to a GUARDED_BY field compiled"; exit 1
fi
if ! grep -q 'thread-safety' "$tmp/bad.log"; then
  echo "FAIL: rejected, but not by the thread-safety analysis:"; cat "$tmp/bad.log"; exit 1
fi
echo "ok: unguarded access rejected:"; grep -m1 'error:' "$tmp/bad.log"
