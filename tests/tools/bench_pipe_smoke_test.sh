#!/bin/sh
# Usage: bench_pipe_smoke_test.sh PATH/TO/shmports_bench
# Smoke test of the harness's user-API subjects (api-busy, api-default,
# api-blocking: Pipe::Send -> Pipe::Receive, peer launched through an
# Invitation) at a tiny size and duration, so they cannot rot. Speed is never
# asserted, only that they measure and that their checks can fail:
#  1. pipe-targets --quick at 64 B and 70000 B (a size above one ring frame
#     travels as fragments): every trial of every subject verified all its
#     messages, figures are positive, the table shows the user-API target
#     rows and only those;
#  2. a dropped message one way through api-default is reported as a
#     verification failure (exit status 1), as is a flipped byte on a round
#     trip through api-blocking.
set -eu
bench=$1
here=$(dirname "$0")
jc() { python3 "$here/json_check.py" "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }

subjects=api-busy,api-default,api-blocking,ring-busy,unix-stream,eventfd

# 1. The quick run.
status=0
"$bench" pipe-targets --quick --quiet --sizes 64,70000 -s "$subjects" \
  --json-file "$tmp/out.json" >"$tmp/table.txt" 2>"$tmp/err.txt" || status=$?
[ $status -eq 0 ] || { cat "$tmp/err.txt" "$tmp/table.txt"; fail "pipe-targets exited with $status"; }
jc "$tmp/out.json" 'd["ok"] is True and len(d["failures"]) == 0' ||
  fail "run reported failures: $(jc --print "$tmp/out.json" 'd["failures"]')"
for s in api-busy api-default api-blocking; do
  jc "$tmp/out.json" 'len(rows(s)) > 0 and all(
      r["repetitions_ok"] >= 3 and r["repetitions_failed"] == 0 and
      (r["p50_ns"]["min"] > 0 if r["pattern"] == "round-trip"
       else r["msgs_per_s"]["min"] > 0 and r["gb_per_s"]["min"] > 0)
      for r in rows(s))' s="$s" ||
    fail "subject $s has missing or insane figures:
$(jc --print "$tmp/out.json" 'rows(s)' s="$s")"
done
# Round trips in all three modes at both sizes, one way through api-default.
n=$(jc --print "$tmp/out.json" \
  'len([t for t in d["trials"] if t["subject"].startswith("api-")])')
[ "$n" -eq 24 ] || fail "expected 24 api trials (8 x 3 repetitions), got $n"
jc "$tmp/out.json" 'all(t["verified"] == t["messages"] and t["messages"] > 0
                        for t in d["trials"] if t["subject"].startswith("api-"))' ||
  fail "an api trial's messages were not all verified"
grep -q 'whole stack busy-poll 64 B round trip .* <= 5 ' "$tmp/table.txt" ||
  fail "table: no busy-poll target row"
grep -q 'whole stack blocking 64 B round trip' "$tmp/table.txt" ||
  fail "table: no blocking target row"
rows=$(sed -n '/^ratios /,/^$/p' "$tmp/table.txt" | grep -c '^  whole stack' || true)
others=$(sed -n '/^ratios /,/^$/p' "$tmp/table.txt" | grep -v -e '^ratios' -e '^  figure' -e '^  whole stack' -e '^$' | wc -l)
[ "$rows" -eq 5 ] && [ "$others" -eq 0 ] ||
  fail "pipe-targets table: $rows target rows and $others others, expected 5 and 0"
echo "ok: pipe subjects measured and verified"

# 2a. A dropped message is caught (one way).
status=0
"$bench" --quick --json --quiet --inject drop -s api-default \
  --patterns one-way --sizes 64 >"$tmp/drop.json" 2>/dev/null || status=$?
[ $status -eq 1 ] || fail "drop: exit status $status, expected 1"
jc "$tmp/drop.json" 'len(d["failures"]) == 3 and
                     all(re.search("out of order", f) for f in d["failures"])' ||
  fail "drop not reported: $(jc --print "$tmp/drop.json" 'd["failures"]')"
echo "ok: dropped message reported"

# 2b. A flipped byte is caught (round trip).
status=0
"$bench" --quick --json --quiet --inject corrupt -s api-blocking \
  --patterns round-trip --sizes 64 >"$tmp/corrupt.json" 2>/dev/null || status=$?
[ $status -eq 1 ] || fail "corrupt: exit status $status, expected 1"
jc "$tmp/corrupt.json" 'len(d["failures"]) == 3 and all(
      re.search("verification|bad bodies", f) for f in d["failures"])' ||
  fail "corrupt not reported: $(jc --print "$tmp/corrupt.json" 'd["failures"]')"
echo "ok: flipped payload byte reported"
