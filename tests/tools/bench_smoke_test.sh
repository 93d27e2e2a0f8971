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
here=$(dirname "$0")
jc() { python3 "$here/json_check.py" "$@"; }
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
jc "$tmp/out.json" 'True' || fail "output is not JSON"
[ -z "$(leftovers $pid)" ] || fail "left in /dev/shm: $(leftovers $pid)"
jc "$tmp/out.json" 'd["ok"] is True and len(d["failures"]) == 0' ||
  fail "run reported failures: $(jc --print "$tmp/out.json" 'd["failures"]')"
jc "$tmp/out.json" '"pinned" in d["pinning"] and len(d["pinning"]["note"]) > 0' ||
  fail "no pinning statement"
for b in cacheline memcpy eventfd unix-stream pipe mq; do
  n=$(jc --print "$tmp/out.json" 'len(rows(b))' b="$b")
  [ "$n" -ge 1 ] || fail "baseline $b missing from the summary"
  jc "$tmp/out.json" 'all(
      r["baseline"] is True and r["repetitions_ok"] >= 3 and
      r["repetitions_failed"] == 0 and
      (r["p50_ns"]["min"] > 0 and r["p99_ns"]["median"] >= r["p50_ns"]["median"]
       and r["max_ns"]["median"] >= r["p99_9_ns"]["median"]
       if r["pattern"] == "round-trip"
       else r["msgs_per_s"]["min"] > 0 and r["gb_per_s"]["min"] > 0)
      for r in rows(b))' b="$b" ||
    fail "baseline $b has missing or insane figures:
$(jc --print "$tmp/out.json" 'rows(b)' b="$b")"
done
# The subjects too, where the catalog has them (the raw Ring now; the whole
# stack later): every trial succeeded (checked above), figures positive.
for s in $(jc --lines "$tmp/out.json" \
             '[x["name"] for x in d["subjects"] if x["baseline"] is False]'); do
  jc "$tmp/out.json" 'len(rows(s)) > 0 and all(
      r["repetitions_ok"] >= 3 and
      (r["p50_ns"]["min"] > 0 if r["pattern"] == "round-trip"
       else r["msgs_per_s"]["min"] > 0 and r["gb_per_s"]["min"] > 0)
      for r in rows(s))' s="$s" ||
    fail "subject $s has missing or insane figures"
done
# Every round trip trial carries a histogram whose counts add up.
jc "$tmp/out.json" 'all(
    sum(h[1] for h in t["latency_ns"]["histogram"]) == t["latency_ns"]["count"]
    for t in d["trials"] if t["pattern"] == "round-trip")' ||
  fail "histogram counts do not add up"
# Every peer trial's messages were verified by the receiving side.
jc "$tmp/out.json" 'all(t["verified"] == t["messages"] and t["messages"] > 0
                        for t in d["trials"] if t["subject"] != "memcpy")' ||
  fail "a trial's messages were not all verified"
jc "$tmp/out.json" 'len(d["ratios"]) > 0' || fail "no ratios"
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
$(jc --print "$tmp/sizes.json" 'd["failures"]' 2>/dev/null)"; }
jc "$tmp/sizes.json" 'd["ok"] is True and
                      sorted(set(t["size"] for t in d["trials"])) == [8, 1001]' ||
  fail "--sizes 8,1001 did not run as asked"
echo "ok: odd sizes"

# 2a. A flipped byte is caught, one way and round trip.
for pattern in one-way round-trip; do
  status=0
  "$bench" --quick --json --quiet --inject corrupt --subjects unix-stream \
    --patterns $pattern --sizes 64 >"$tmp/corrupt.json" 2>/dev/null || status=$?
  [ $status -eq 1 ] || fail "corrupt $pattern: exit status $status, expected 1"
  jc "$tmp/corrupt.json" 'd["ok"] is False and len(d["failures"]) == 3 and all(
        re.search("verification|bad bodies", f) for f in d["failures"])' ||
    fail "corrupt $pattern not reported: $(jc --print "$tmp/corrupt.json" 'd["failures"]')"
done
echo "ok: flipped payload byte reported"

# 2b. A dropped message is caught.
status=0
"$bench" --quick --json --quiet --inject drop --subjects pipe \
  --patterns one-way --sizes 64 >"$tmp/drop.json" 2>/dev/null || status=$?
[ $status -eq 1 ] || fail "drop: exit status $status, expected 1"
jc "$tmp/drop.json" 'len(d["failures"]) == 3 and
                     all(re.search("out of order", f) for f in d["failures"])' ||
  fail "drop not reported: $(jc --print "$tmp/drop.json" 'd["failures"]')"
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
