#!/usr/bin/env bash
# test/demo/run.sh -- runs the README's first command (make demo, i.e.
# scripts/demo.sh) and checks what it must show: every stored object
# rebuilt byte for byte, the decisions, the savings report and the routing
# report.  Prints "ok N - desc" / "not ok N - desc" and "N passed, N failed".
#
# Usage (from the repository root):  make demo-test
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make demo-test does)}"
n=0
failed=0

# check DESC PATTERN: the demo's output has a line matching the extended regex.
check() {
  n=$((n + 1))
  if grep -Eq -- "$2" "$LOG"; then echo "ok $n - $1"; else
    echo "not ok $n - $1"; echo "#   no line matches: $2"; failed=$((failed + 1)); fi
}

mkdir -p build
LOG=$ROOT/build/demo.log
bash scripts/demo.sh >"$LOG" 2>&1
rc=$?
n=$((n + 1))
if [ "$rc" -eq 0 ]; then echo "ok $n - make demo exits 0"; else
  echo "not ok $n - make demo exits 0 (it exited $rc; log: build/demo.log)"; tail -n 20 "$LOG" | sed 's/^/# /'; failed=$((failed + 1)); fi
check "the triggers decided the models (3 deltas of 10)" '^│ mlp-ft_frozen\.bf16 +│ model +│ delta '
check "a LoRA pair below the threshold stays full" '^│ gpt2-lora-r8 +│ model +│ full '
check "every derived dataset became a delta" '^│ xquad_en_de +│ dataset +│ delta '
check "the jobs ran" '^11 jobs done$'
check "no object failed its SHA-256 check" '^demo: 11 objects stored as deltas, every one rebuilt byte for byte'
check "the savings report has its total row" '^│ all +│ 26 +│ 11 '
check "the routing report was printed" '^│ all +│ 673 +│ [0-9]+ +│'
[ "$(grep -c '│ NO ' "$LOG")" -eq 0 ] && { n=$((n + 1)); echo "ok $n - no row says NO"; } ||
  { n=$((n + 1)); echo "not ok $n - no row says NO"; failed=$((failed + 1)); }
echo "$((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
