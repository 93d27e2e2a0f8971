#!/bin/sh
# Runs a libFuzzer binary for a bounded number of executions from a scratch
# copy of its seed corpus, and prints how many ran. A crash prints its report
# and reproducer and fails the test.
# Usage: run_fuzzer.sh FUZZER CORPUS_DIR RUNS
set -u
fuzzer=$1; corpus=$2; runs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp -r "$corpus/." "$work/corpus/"
"$fuzzer" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1
rc=$?
grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work/log"
if [ $rc -ne 0 ]; then
  tail -n 60 "$work/log"
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -f "$f" ] && echo "reproducer ($(basename "$f")): $(od -An -tx1 -v "$f" | tr -d ' \n' | cut -c1-400)"
  done
  exit $rc
fi
