#!/usr/bin/env bash
# pg-test.sh -- run the PostgreSQL extension's pg_regress tests in a
# throwaway cluster.
#
# Usage: bash scripts/pg-test.sh        (as root; `make pg-test` calls it)
#   SPARSE_DATA  real test data (default: ../shared/data beside the repo)
#   SPARSE_PG_KEEP=1  keep /tmp/sparse_regress after a successful run
#
# How it works:
#   1. takes a lock (/tmp/sparse_regress.lock) so concurrent runs do not
#      share the fixture directory;
#   2. `make install` (PGXS) installs sparse_pg.so and the install script;
#   3. `pg_virtualenv -t -v 15 make installcheck` creates a temporary
#      cluster (in a temporary directory, so it never collides with another
#      cluster); installcheck first lays out the fixtures (REGRESS_PREP runs
#      scripts/pg-fixtures.sh), then runs pg_regress on sql/*.sql against
#      expected/*.out and drops the cluster;
#   4. prints "ok NAME" or "not ok NAME" per test, the diffs of any failure
#      and a closing "pg_regress: N passed, N failed" line.
# Exits non-zero when anything failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${SPARSE_DATA:-$REPO/../shared/data}
MODELS=$DATA/models
REG=/tmp/sparse_regress
export SPARSE_DATA=$DATA
BUILD=$REPO/build
mkdir -p "$BUILD"

# die MESSAGE: report a setup failure the counting scripts can see.
die() {
  echo "not ok pg-test-setup: $*"
  echo "pg_regress: 0 passed, 1 failed"
  exit 1
}

# report LOG: print one line per test from pg_regress's output, then totals.
report() {
  local pass=0 fail=0 status name
  while read -r status name; do
    if [ "$status" = ok ]; then
      echo "ok $name"; pass=$((pass + 1))
    else
      echo "not ok $name"; fail=$((fail + 1))
    fi
  done < <(sed -nE 's/^(test )?[[:space:]]*([A-Za-z0-9_]+)[[:space:]]+\.\.\. (ok|FAILED|failed \(ignored\)).*/\3 \2/p' "$1")
  PASS=$pass FAIL=$fail
}

[ "$(id -u)" -eq 0 ] || die "run as root (make install and pg_virtualenv need it)"
command -v pg_virtualenv >/dev/null || die "pg_virtualenv missing: run 'make deps'"
[ -f "$MODELS/gpt2-lora-r8/base.safetensors" ] || die "test data not found under $MODELS"

exec 9>/tmp/sparse_regress.lock
flock 9

if ! make -C "$REPO" install >"$BUILD/pg-install.log" 2>&1; then
  tail -n 40 "$BUILD/pg-install.log"
  die "make install failed (log: build/pg-install.log)"
fi

rm -rf "$BUILD/regress"
pg_virtualenv -t -v 15 make -C "$REPO" installcheck >"$BUILD/pg-regress.log" 2>&1
rc=$?

PASS=0 FAIL=0
report "$BUILD/pg-regress.log"
if [ "$rc" -ne 0 ] || [ "$FAIL" -ne 0 ] || [ "$PASS" -eq 0 ]; then
  if [ -s "$BUILD/regress/regression.diffs" ]; then
    cat "$BUILD/regress/regression.diffs"
  else
    tail -n 60 "$BUILD/pg-regress.log"
  fi
  [ "$FAIL" -eq 0 ] && FAIL=1
  echo "pg_regress: $PASS passed, $FAIL failed"
  exit 1
fi
[ "${SPARSE_PG_KEEP:-0}" = 1 ] || rm -rf "$REG"
echo "pg_regress: $PASS passed, $FAIL failed"
