#!/usr/bin/env bash
# bench/route_eval.sh -- routing quality of sparse on the RouteLLM labels.
#
# Usage (from the repository root):  make route-eval
#    or:  SPARSE_DATA=/path/to/shared/data bash bench/route_eval.sh
#
# Runs bench/route_eval.py (see its header for the method) with the system
# python3 (/usr/bin/python3: it has numpy and a sqlite3 module that can load
# extensions; a pyenv python3 on PATH may have neither) against ./sparse.so.
# Prints one markdown table per dataset (GSM8K, MMLU), a summary with APGR,
# CPT(50/80/95%) and the route_train time, then TAP lines; writes
# build/route-eval/results.md and build/route-eval/route_eval.svg.  Exit
# status 1 when a cross-check or an APGR bar fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make route-eval does)}"
PY=/usr/bin/python3

if [ ! -f ./sparse.so ]; then
	echo "route_eval: ./sparse.so is not built (run make sparse.so)" >&2
	exit 1
fi
if [ ! -d "$SPARSE_DATA/routing/routellm" ]; then
	echo "route_eval: $SPARSE_DATA/routing/routellm is missing" >&2
	exit 1
fi
if ! "$PY" -c 'import numpy, sqlite3; sqlite3.connect(":memory:").enable_load_extension' 2>/dev/null; then
	echo "route_eval: $PY needs numpy and a sqlite3 module with enable_load_extension" \
		"(apt-get install python3-numpy)" >&2
	exit 1
fi
start=$(date +%s)
rc=0
"$PY" bench/route_eval.py --data "$SPARSE_DATA" --ext ./sparse --out build/route-eval || rc=$?
echo "# route_eval took $(($(date +%s) - start)) s"
exit "$rc"
