#!/usr/bin/env bash
# test-all.sh -- build everything, run every test layer, print one total.
#
# Usage: bash scripts/test-all.sh      (`make test-all`; `make test` first
#                                       installs missing packages)
#   FUZZ_SECONDS  time per fuzz target (default 20: nine targets, and the whole
#                 run must stay under 20 minutes; longer campaigns by hand)
#
# How it works: layers run one after the other, each as `make LAYER` with
# its full output saved to build/logs/LAYER.log:
#   build      `make -j2` (sparse_pg.so, sparse.so, bin/sparse; -Werror)
#   unit       C unit tests of common/            (test/unit)
#   unit-san   the same under ASan+UBSan
#   unit-tsan  the same under ThreadSanitizer (any report fails it)
#   pg-test    pg_regress in a throwaway cluster  (scripts/pg-test.sh)
#   hub-test   trigger, migrate, 3 workers with one killed, report, in a
#              throwaway cluster                  (test/hub/run.sh)
#   sqlite-test, cli-test                         (test/sqlite, test/cli)
#   demo-test  the README's first command, make demo (test/demo/run.sh)
#   route-eval the routing bars on real labels     (bench/route_eval.sh)
#   fuzz       every libFuzzer target for FUZZ_SECONDS (scripts/fuzz.sh)
# Every line of a log that starts with "ok" or "not ok" is one result ("ok
# ... # SKIP" is a skip).  A layer that exits non-zero without a "not ok"
# line (failed build, crash, timeout), or that reports no result at all,
# counts as one failure under its own name.  The script prints the failing
# lines, then for each failing layer those lines with their "#" diagnostics
# and the tail of its log, a table per layer, and last, alone on its line,
# "N passed, N failed" (", N skipped" if any).
# Exits 1 if anything failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
LOGS=$REPO/build/logs
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
mkdir -p "$LOGS"

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
SUMMARY=()
FAILED_LAYERS=()

# layer_cmd NAME: the command that runs one layer.
layer_cmd() {
  case "$1" in
    build) echo "make --no-print-directory -j2" ;;
    fuzz) echo "make --no-print-directory -j2 fuzz FUZZ_SECONDS=$FUZZ_SECONDS" ;;
    *) echo "make --no-print-directory -j2 $1" ;;
  esac
}

# layer_limit NAME: seconds after which a hung layer is killed.
layer_limit() {
  case "$1" in
    fuzz) echo $((FUZZ_SECONDS * 4 + 600)) ;;
    unit-san|unit-tsan|pg-test) echo 1200 ;;
    *) echo 900 ;;
  esac
}

# run_layer NAME: run one layer, count its results, remember the summary.
run_layer() {
  local name=$1 log=$LOGS/$1.log start rc pass fail skip secs races
  start=$(date +%s)
  echo "== $name: $(layer_cmd "$name")"
  # shellcheck disable=SC2046  # the command is split into words on purpose
  timeout -k 30 "$(layer_limit "$name")" $(layer_cmd "$name") </dev/null >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  skip=$(grep -cE '^ok\b.*#[[:space:]]*SKIP' "$log")
  pass=$(($(grep -cE '^ok\b' "$log") - skip))
  fail=$(grep -cE '^not ok\b' "$log")
  grep -E '^not ok\b' "$log"
  # a sanitizer report between "ok" lines fails the layer even if every test passed
  races=$(grep -c 'WARNING: ThreadSanitizer' "$log")
  if [ "$races" -gt 0 ]; then
    echo "not ok $name # ThreadSanitizer: $races reports (the WARNING lines in its log)"
    fail=$((fail + 1))
  fi
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    [ "$rc" -eq 124 ] && echo "not ok $name # killed after $(layer_limit "$name") s" \
      || echo "not ok $name # exit $rc without a failing test line"
    fail=1
  elif [ "$rc" -eq 0 ] && [ $((pass + fail + skip)) -eq 0 ] && [ "$name" != build ]; then
    echo "not ok $name # ran no test"
    fail=1
  fi
  [ "$name" = build ] && [ "$rc" -eq 0 ] && { echo "ok build"; pass=1; }
  TOTAL_PASS=$((TOTAL_PASS + pass))
  TOTAL_FAIL=$((TOTAL_FAIL + fail))
  TOTAL_SKIP=$((TOTAL_SKIP + skip))
  SUMMARY+=("$(printf '  %-12s %4d ok  %3d not ok  %3d skipped  %5d s' "$name" "$pass" "$fail" "$skip" "$secs")")
  [ "$fail" -gt 0 ] && FAILED_LAYERS+=("$name")
}

# show_failures: each failing layer's "not ok" lines with the "#" lines
# that explain them, then the tail of its log.
show_failures() {
  local name
  for name in "${FAILED_LAYERS[@]}"; do
    echo
    echo "== failures in build/logs/$name.log"
    awk '/^not ok/ { n = 15; print; next }
         n > 0 && /^#/ { print; n--; next }
         { n = 0 }' "$LOGS/$name.log" | head -n 150
    grep -m 1 -A 40 'WARNING: ThreadSanitizer' "$LOGS/$name.log"
    echo "== tail of build/logs/$name.log"
    tail -n 40 "$LOGS/$name.log"
  done
}

for layer in build unit unit-san unit-tsan pg-test hub-test sqlite-test cli-test demo-test route-eval fuzz; do
  run_layer "$layer"
done
show_failures
echo
echo "== per layer (logs in build/logs/)"
printf '%s\n' "${SUMMARY[@]}"
if [ "$TOTAL_SKIP" -gt 0 ]; then
  echo "$TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
else
  echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
fi
[ "$TOTAL_FAIL" -eq 0 ]
