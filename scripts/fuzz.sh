#!/usr/bin/env bash
# fuzz.sh -- build the libFuzzer targets and run each one for a fixed time.
#
# Usage: bash scripts/fuzz.sh [SECONDS]     (`make fuzz` calls it)
#   SECONDS      time per target (default: $FUZZ_SECONDS, else 20)
#   FUZZ_SEED    libFuzzer -seed (default 1, so a CI run is repeatable;
#                0 = a random seed for longer local campaigns)
#
# How it works: `make fuzz-build` compiles fuzz/fuzz_NAME.c with the core
# under ASan+UBSan+libFuzzer into build/fuzz/fuzz_NAME.  Each target runs on
# a scratch corpus, build/fuzz-work/NAME/corpus, seeded from fuzz/corpus/NAME
# (the repository is never written; new inputs found accumulate in build/
# between local runs).  Limits: -max_len per target (inputs stay small so
# each run is fast), -rss_limit_mb=2048, -timeout=20 s per input, and
# UBSan made fatal.  Prints "ok fuzz_NAME" or "not ok fuzz_NAME" with the
# crashing input's path and the tail of the log, then
# "fuzz: N passed, N failed".  Exits 1 if any target failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
SECS=${1:-${FUZZ_SECONDS:-20}}
SEED=${FUZZ_SEED:-1}
WORK=$REPO/build/fuzz-work
PASS=0
FAIL=0
mkdir -p "$WORK"

# max_len_for NAME: largest input libFuzzer may make for a target.
max_len_for() {
  case "$1" in
    safetensors) echo 65536 ;;   # room for a real header region (24 KiB)
    roundtrip) echo 16384 ;;     # compress+apply twice per input: keep small
    *) echo 32768 ;;
  esac
}

# dict_for NAME: dictionary option for targets whose input is safetensors
# or a dataset file cut into rows.
dict_for() {
  case "$1" in
    safetensors|roundtrip) echo "-dict=$REPO/fuzz/safetensors.dict" ;;
    rows_*) echo "-dict=$REPO/fuzz/rows.dict" ;;
  esac
}

# report_crash NAME LOG: show where the crashing input went and why.
report_crash() {
  local art first
  art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$2" | tail -n 1)
  echo "# fuzz_$1 failed; log: $2"
  [ -n "$art" ] && echo "# crashing input: $art (reproduce: build/fuzz/fuzz_$1 $art)"
  # from the first sanitizer / invariant report on, else the log's tail
  first=$(grep -nE 'runtime error:|ERROR: |fuzz: (invariant|allocation)' "$2" | head -n 1 | cut -d: -f1)
  if [ -n "$first" ]; then
    sed -n "${first},$((first + 30))p" "$2" | sed 's/^/#   /'
  else
    tail -n 40 "$2" | sed 's/^/#   /'
  fi
}

# run_target NAME: fuzz one target for SECS seconds; prints ok / not ok.
run_target() {
  local name=$1 dir=$WORK/$1 log rc runs
  log=$dir/fuzz.log
  mkdir -p "$dir/corpus" "$dir/artifacts"
  [ -d "fuzz/corpus/$name" ] && cp -R "fuzz/corpus/$name/." "$dir/corpus/"
  # shellcheck disable=SC2046  # dict_for prints zero or one word
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    timeout -k 10 $((SECS + 120)) "build/fuzz/fuzz_$name" \
    -max_total_time="$SECS" -max_len="$(max_len_for "$name")" \
    -rss_limit_mb=2048 -timeout=20 -seed="$SEED" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" $(dict_for "$name") \
    "$dir/corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    echo "ok fuzz_$name # ${runs:-?} inputs in ${SECS} s"
    PASS=$((PASS + 1))
  else
    echo "not ok fuzz_$name # exit $rc"
    report_crash "$name" "$log"
    FAIL=$((FAIL + 1))
  fi
}

# A change to the shared header must rebuild every target.
for bin in build/fuzz/fuzz_*; do
  [ -f "$bin" ] && [ fuzz/fuzz_common.h -nt "$bin" ] && rm -f "$bin"
done
if ! make --no-print-directory fuzz-build >"$WORK/build.log" 2>&1; then
  echo "not ok fuzz-build # make fuzz-build failed"
  tail -n 40 "$WORK/build.log" | sed 's/^/#   /'
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  run_target "${name#fuzz_}"
done
echo "fuzz: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
