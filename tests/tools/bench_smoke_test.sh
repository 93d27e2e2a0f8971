#!/bin/sh
# Usage: bench_smoke_test.sh PATH/TO/shmports_bench
# Smoke test of the cross-process benchmark harness (speed is never
# asserted, only that it measures):
#  1. a --quick --json run succeeds, reports every baseline with positive
#     figures over at least three repetitions, states its pinning, and
#     leaves nothing in /dev/shm;
#  2. each of the harness's checks can fail: a flipped payload byte and a
#     dropped message are reported as verification failures, and a peer
#     that stops answering is killed by the watchdog (exit status 3) with
#     its message_queue names removed from /dev/shm.
set -eu
bench=$1
command -v jq >/dev/null 2>&1 || { echo "SKIP: jq not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }

leftovers() {  # leftovers PID: /dev/shm names that run created
  ls /dev/shm 2>/dev/null | grep "^shmports_bench_$1_" || true
}

# 1. The full quick run.
status=0
"$bench" --quick --quiet --json-file "$tmp/out.json" >"$tmp/table.txt" 2>"$tmp/err.txt" &
pid=$!
wait $pid || status=$?
[ $status -eq 0 ] || { cat "$tmp/err.txt"; fail "quick run exited with $status"; }
jq -e . "$tmp/out.json" >/dev/null || fail "output is not JSON"
[ -z "$(leftovers $pid)" ] || fail "left in /dev/shm: $(leftovers $pid)"
jq -e '.ok == true and (.failures | length == 0)' "$tmp/out.json" >/dev/null ||
  fail "run reported failures: $(jq -c .failures "$tmp/out.json")"
jq -e '.pinning | has("pinned") and (.note | length > 0)' "$tmp/out.json" \
  >/dev/null || fail "no pinning statement"
for b in cacheline memcpy eventfd unix-stream pipe mq; do
  n=$(jq --arg b "$b" '[.summary[] | select(.subject == $b)] | length' "$tmp/out.json")
  [ "$n" -ge 1 ] || fail "baseline $b missing from the summary"
  jq -e --arg b "$b" '
    [.summary[] | select(.subject == $b)] | all(
      .baseline == true and .repetitions_ok >= 3 and .repetitions_failed == 0 and
      (if .pattern == "round-trip"
       then .p50_ns.min > 0 and .p99_ns.median >= .p50_ns.median and
            .max_ns.median >= .p99_9_ns.median
       else .msgs_per_s.min > 0 and .gb_per_s.min > 0 end))' \
    "$tmp/out.json" >/dev/null || fail "baseline $b has missing or insane figures:
$(jq -c --arg b "$b" '[.summary[] | select(.subject == $b)]' "$tmp/out.json")"
done
# The subjects too, where the catalog has them (the raw Ring now; the whole
# stack later): every trial succeeded (checked above), figures positive.
for s in $(jq -r '.subjects[] | select(.baseline == false) | .name' "$tmp/out.json"); do
  jq -e --arg s "$s" '
    [.summary[] | select(.subject == $s)] | length > 0 and all(
      .repetitions_ok >= 3 and
      (if .pattern == "round-trip" then .p50_ns.min > 0
       else .msgs_per_s.min > 0 and .gb_per_s.min > 0 end))' \
    "$tmp/out.json" >/dev/null || fail "subject $s has missing or insane figures"
done
# Every round trip trial carries a histogram whose counts add up.
jq -e '[.trials[] | select(.pattern == "round-trip") |
        (.latency_ns.histogram | map(.[1]) | add) == .latency_ns.count] | all' \
  "$tmp/out.json" >/dev/null || fail "histogram counts do not add up"
# Every peer trial's messages were verified by the receiving side.
jq -e '[.trials[] | select(.subject != "memcpy") | .verified == .messages and .messages > 0] | all' \
  "$tmp/out.json" >/dev/null || fail "a trial's messages were not all verified"
jq -e '.ratios | length > 0' "$tmp/out.json" >/dev/null || fail "no ratios"
# The table on stdout states the pinning and has the ratio table with the
# ARCHITECTURE.md targets.
grep -q '^pinning: ' "$tmp/table.txt" || fail "table: no pinning line"
grep -q '^ratios ' "$tmp/table.txt" || fail "table: no ratio table"
grep -q 'raw Ring busy-poll 64 B round trip .* <= 2 ' "$tmp/table.txt" ||
  fail "table: no ring round-trip target row"
echo "ok: quick run with every baseline"

# 1b. Odd sizes (the smallest payload, a size that is not a multiple of 8)
# through every subject and pattern.
status=0
"$bench" --quick --json --quiet --sizes 8,1001 >"$tmp/sizes.json" 2>"$tmp/err.txt" || status=$?
[ $status -eq 0 ] || { cat "$tmp/err.txt"; fail "--sizes 8,1001 exited with $status:
$(jq -c .failures "$tmp/sizes.json" 2>/dev/null)"; }
jq -e '.ok == true and ([.trials[] | .size] | unique == [8, 1001])' "$tmp/sizes.json" \
  >/dev/null || fail "--sizes 8,1001 did not run as asked"
echo "ok: odd sizes"

# 2a. A flipped byte is caught, one way and round trip.
for pattern in one-way round-trip; do
  status=0
  "$bench" --quick --json --quiet --inject corrupt --subjects unix-stream \
    --patterns $pattern --sizes 64 >"$tmp/corrupt.json" 2>/dev/null || status=$?
  [ $status -eq 1 ] || fail "corrupt $pattern: exit status $status, expected 1"
  jq -e '.ok == false and (.failures | length == 3) and
         (.failures | all(test("verification|bad bodies")))' \
    "$tmp/corrupt.json" >/dev/null ||
    fail "corrupt $pattern not reported: $(jq -c .failures "$tmp/corrupt.json")"
done
echo "ok: flipped payload byte reported"

# 2b. A dropped message is caught.
status=0
"$bench" --quick --json --quiet --inject drop --subjects pipe \
  --patterns one-way --sizes 64 >"$tmp/drop.json" 2>/dev/null || status=$?
[ $status -eq 1 ] || fail "drop: exit status $status, expected 1"
jq -e '.failures | length == 3 and all(test("out of order"))' "$tmp/drop.json" \
  >/dev/null || fail "drop not reported: $(jq -c .failures "$tmp/drop.json")"
echo "ok: dropped message reported"

# 2c. A stalled peer is killed by the watchdog; names are removed.
status=0
"$bench" --quick --quiet --inject stall --subjects mq --patterns round-trip \
  --sizes 64 --trial-timeout 1 >/dev/null 2>"$tmp/stall.txt" &
pid=$!
wait $pid || status=$?
[ $status -eq 3 ] || { cat "$tmp/stall.txt"; fail "stall: exit status $status, expected 3"; }
grep -q "trial deadline passed" "$tmp/stall.txt" || fail "stall: no watchdog message"
[ -z "$(leftovers $pid)" ] || fail "stall left in /dev/shm: $(leftovers $pid)"
echo "ok: stalled peer killed by the watchdog, /dev/shm clean"

# 3. Bad arguments are refused with a message, not run.
for args in "--repetitions 2" "--sizes 4" "--subjects nosuch" "--patterns sideways"; do
  status=0
  # shellcheck disable=SC2086
  "$bench" --quick $args >/dev/null 2>"$tmp/bad.txt" || status=$?
  [ $status -ne 0 ] && [ $status -lt 128 ] && [ -s "$tmp/bad.txt" ] ||
    fail "'$args' was not refused cleanly (status $status)"
done
echo "ok: bad arguments refused"
