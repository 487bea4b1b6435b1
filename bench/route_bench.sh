#!/usr/bin/env bash
# bench/route_bench.sh -- how fast routing is: the C core, then PostgreSQL.
#
# Usage (from the repository root):  make bench-route
#    or:  make build/route_bench sparse.so bin/sparse && SPARSE_DATA=... bash bench/route_bench.sh
# Environment: ROUTE_BENCH_ARGS  extra arguments of build/route_bench
#              (e.g. "--calls 50000"; see bench/route_bench.c)
#
# How it works: runs build/route_bench (microseconds per call of
# sp_route_featurize, sp_route_classify and sp_route_decide over a trained
# 20-model catalog, and sp_route_train rows per second; its header says how),
# then bench/route_pgbench.sh (route_decision under pgbench against SELECT 1,
# written with the PostgreSQL binding) when it exists, and prints both as one
# report, also saved to build/route-bench/report.txt.  The machine is shared:
# rerun when the numbers look noisy (the load average is printed first).
# Exit status 1 if a part fails or misses its bar.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=build/route-bench
mkdir -p "$OUT"
REPORT="$OUT/report.txt"
status=0

{
	echo "# sparse routing benchmark -- $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"\
		"load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "## C core (build/route_bench ${ROUTE_BENCH_ARGS:-})"
	echo
} | tee "$REPORT"

if [ ! -x build/route_bench ]; then
	echo "not ok - build/route_bench is not built (make build/route_bench)" | tee -a "$REPORT"
	exit 1
fi
# shellcheck disable=SC2086 # ROUTE_BENCH_ARGS is a list of words on purpose
./build/route_bench ${ROUTE_BENCH_ARGS:-} 2>&1 | tee -a "$REPORT"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

{
	echo
	echo "## PostgreSQL (bench/route_pgbench.sh)"
	echo
} | tee -a "$REPORT"
if [ -f bench/route_pgbench.sh ]; then
	bash bench/route_pgbench.sh 2>&1 | tee -a "$REPORT"
	[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
	echo "# SKIP bench/route_pgbench.sh is not there (the PostgreSQL binding adds it)" | tee -a "$REPORT"
fi

echo | tee -a "$REPORT"
echo "# report saved to $REPORT; exit status $status" | tee -a "$REPORT"
exit "$status"
