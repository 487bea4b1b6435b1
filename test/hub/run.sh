#!/usr/bin/env bash
# test/hub/run.sh -- the hub story on a real PostgreSQL cluster: the storage
# trigger, `sparse migrate`, three `sparse worker` processes draining 50 jobs
# while one of them is killed with SIGKILL in the middle of a compression,
# every delta verified, `sparse report`, and the failure paths.
#
# Usage (root, from the repository root):  make hub-test
#    or:  SPARSE_DATA=/path/to/shared/data bash test/hub/run.sh
#
# How it works: `make install` puts the extension in place, then the script
# re-runs itself (--inner) under `pg_virtualenv -t -v 15`, a throwaway
# cluster whose connection the PG* variables name.  Fixtures go to
# /tmp/sparse_hub (readable by the server, which runs the estimates of the
# trigger as the OS user postgres); the workers run as root and write the
# deltas under /tmp/sparse_hub/out (--out-root).  A ~0.3 GB BF16 pair from
# bench/mkpair.py makes one job long enough to kill its worker mid-write;
# its lease is 3 s, so a surviving worker takes it over; the same pair
# keeps a delta_compress at level 19 busy while pg_terminate_backend ends
# it.  Each assertion
# prints "ok N - desc" or "not ok N - desc"; the script ends with
# "N passed, N failed" and exits 1 if anything failed.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SPARSE=$ROOT/bin/sparse
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make hub-test does)}"
DATA=$(realpath "$SPARSE_DATA")
H=/tmp/sparse_hub

if [ "${1:-}" != --inner ]; then
  [ "$(id -u)" -eq 0 ] || { echo "not ok 1 - hub-test needs root (make install, pg_virtualenv)"; echo "0 passed, 1 failed"; exit 1; }
  exec 9>/tmp/sparse_regress.lock
  flock 9
  make -C "$ROOT" install >"$ROOT/build/hub-install.log" 2>&1 ||
    { echo "not ok 1 - make install (build/hub-install.log)"; echo "0 passed, 1 failed"; exit 1; }
  exec pg_virtualenv -t -v 15 bash "$0" --inner
fi

n=0
failed=0
CONN="dbname=$PGDATABASE"

# ok COND DESC: one assertion from a shell condition's status.
ok() {
  n=$((n + 1))
  if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "# failed: $1"; failed=$((failed + 1)); fi
}

# is GOT WANT DESC: one equality assertion.
is() {
  n=$((n + 1))
  if [ "$1" = "$2" ]; then echo "ok $n - $3"; else
    echo "not ok $n - $3"; echo "#   got: $1"; echo "#  want: $2"; failed=$((failed + 1)); fi
}

# q SQL: one value (unaligned, tuples only) from the cluster.
q() { psql -X -qAt -v ON_ERROR_STOP=1 -c "$1"; }

# finish: totals, exit status.
finish() {
  echo "$((n - failed)) passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# ---- fixtures ----------------------------------------------------------------
rm -rf "$H"
mkdir -p "$H"/{mlp,gpt2,ds,out,big}
cp "$DATA"/models/mlp-trained/{base,ft,ft_frozen}.bf16.safetensors "$H/mlp/"
cp "$DATA"/models/gpt2-lora-r8/{base,ft}.safetensors "$H/gpt2/"
bash "$ROOT/scripts/dataset-fixtures.sh" "$H/ds" >/dev/null
/usr/bin/python3 "$ROOT/bench/mkpair.py" "$H/big" --gb 0.3 --seed 5 >/dev/null ||
  { echo "not ok 1 - bench/mkpair.py could not write the big pair"; echo "0 passed, 1 failed"; exit 1; }
chmod -R a+rX "$H"

q "CREATE EXTENSION sparse" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE TABLE models (id text PRIMARY KEY, path text NOT NULL, base_path text);
CREATE TABLE datasets (id int PRIMARY KEY, path text NOT NULL, parent text);
CREATE TRIGGER models_storage AFTER INSERT OR UPDATE OF path, base_path ON models
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'path', 'base_path', 'model');
CREATE TRIGGER datasets_storage AFTER INSERT OR UPDATE OF path, parent ON datasets
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'path', 'parent', 'dataset');
-- rows from before the trigger: sparse migrate enqueues them
CREATE TABLE legacy (model_id bigint PRIMARY KEY, file text, base_file text);
INSERT INTO legacy SELECT 1000 + i, '$H/mlp/ft_frozen.bf16.safetensors', '$H/mlp/base.bf16.safetensors'
  FROM generate_series(1, 9) i;
INSERT INTO legacy VALUES (2000, '$H/mlp/base.bf16.safetensors', NULL);
SQL

# 36 model rows that save >= 60% (one of them the big pair), two kept full
psql -X -q -v ON_ERROR_STOP=1 <<SQL >/dev/null
INSERT INTO models SELECT format('m%s', i),
  '$H/mlp/' || CASE WHEN i % 2 = 0 THEN 'ft' ELSE 'ft_frozen' END || '.bf16.safetensors',
  '$H/mlp/base.bf16.safetensors' FROM generate_series(1, 35) i;
INSERT INTO models VALUES ('big', '$H/big/ft', '$H/big/base');
INSERT INTO models VALUES ('mlp-base', '$H/mlp/base.bf16.safetensors', NULL);
INSERT INTO models VALUES ('gpt2-lora', '$H/gpt2/ft.safetensors', '$H/gpt2/base.safetensors');
INSERT INTO datasets SELECT i, '$H/ds/csv/derived.csv', '$H/ds/csv/base.csv' FROM generate_series(1, 3) i;
INSERT INTO datasets VALUES (4, '$H/ds/shards/derived', '$H/ds/shards/base');
SQL
is "$(q "SELECT string_agg(kind || ':' || decision || ':' || n, ' ' ORDER BY kind, decision)
         FROM (SELECT kind, decision, count(*) n FROM sparse_storage GROUP BY 1, 2) x")" \
   "dataset:delta:4 model:delta:36 model:full:2" "the trigger decided every inserted row"
is "$(q "SELECT decision || ' ' || round(est_savings_pct) FROM sparse_storage WHERE object_id = 'gpt2-lora'")" \
   "full 31" "a LoRA pair saving 31% is kept in full (threshold 60)"

# ---- migrate ---------------------------------------------------------------------
out=$("$SPARSE" migrate --db "$CONN" --table public.legacy --id-col model_id --path-col file \
      --base-col base_file --kind model --batch-size 4 2>&1)
is "$out" "enqueued 10 models from public.legacy" "migrate enqueues the 10 legacy rows in batches of 4"
out=$("$SPARSE" migrate --db "$CONN" --table legacy --id-col model_id --path-col file \
      --base-col base_file --kind model 2>&1)
is "$out" "enqueued 0 models from legacy" "a second migrate enqueues nothing"
is "$(q "SELECT count(*) FROM sparse_jobs WHERE state = 'queued'")" "50" "50 jobs are queued"

# ---- three workers, one killed mid-job -----------------------------------------------
pids=()
t0=$(date +%s.%N)
for i in 1 2 3; do
  "$SPARSE" worker --db "$CONN" --once --out-root "$H/out" --lease 3 >"$H/worker$i.log" 2>&1 &
  pids+=($!)
done
holder=""
for _ in $(seq 600); do
  holder=$(q "SELECT lease_holder FROM sparse_jobs WHERE object_id = 'big' AND state = 'running'")
  [ -n "$holder" ] && break
  sleep 0.05
done
sleep 0.4
victim=${holder##*:}
ok "[ -n '$victim' ] && printf '%s\n' ${pids[*]} | grep -qx '$victim'" "the big job is running in one of the three workers"
kill -9 "$victim" 2>/dev/null
sleep 0.1
ok "ls $H/out/.model-big.sdelta.sparse-tmp-* >/dev/null 2>&1" "the killed worker left a temporary file"
ok "[ ! -e $H/out/model-big.sdelta ]" "and no delta at the final path"
rcs=""
for p in "${pids[@]}"; do
  [ "$p" = "$victim" ] && continue
  timeout 300 tail --pid="$p" -f /dev/null
  wait "$p"; rcs="$rcs$?"
done
is "$rcs" "00" "the two other workers drained the queue and exited 0"
echo "# 50 jobs drained in $(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s (one worker killed, a 3 s lease to expire)"

is "$(q "SELECT count(*) FILTER (WHERE state = 'done') || '/' || count(*) FROM sparse_jobs")" "50/50" "every job is done"
is "$(q "SELECT count(*) FROM (SELECT 1 FROM sparse_jobs GROUP BY object_id, kind HAVING count(*) <> 1) x")" \
   "0" "one job per object"
is "$(q "SELECT attempts || ' ' || (last_error LIKE 'taken over from %:$victim after its lease expired') FROM sparse_jobs WHERE object_id = 'big'")" \
   "2 true" "the big job was taken over after the killed worker's lease expired"
is "$(q "SELECT string_agg(decision || ':' || n, ' ' ORDER BY decision)
         FROM (SELECT decision, count(*) n FROM sparse_storage GROUP BY 1) x")" \
   "delta:49 full:3" "legacy rows were decided by the workers (one without a base kept full)"
is "$(q "SELECT count(*) || ' ' || bool_and(delta_path = '$H/out/model-big.sdelta' AND compressed_at IS NOT NULL
                              AND stored_bytes = (pg_stat_file(delta_path)).size AND error IS NULL)
         FROM sparse_storage WHERE object_id = 'big'")" "1 true" "the big object has one consistent row: its delta, its size"
is "$(q "SELECT count(*) FROM sparse_storage WHERE decision = 'delta' AND compressed_at IS NULL")" "0" \
   "every delta decision has its delta"
is "$(ls "$H"/out/*.sdelta | wc -l)" "49" "exactly one delta file per delta object"
is "$(find "$H/out" -name '.*sparse-tmp-*' | wc -l)" "0" "no temporary file is left"
is "$(cat "$H"/worker*.log | grep -c 'could go$')" "49" "the workers name the 49 originals that could go"

# every delta rebuilds the original: digest recorded = digest rebuilt = sha256sum
bad=0
while IFS='|' read -r kind path base delta sha; do
  got=$("$SPARSE" --json verify "$base" "$delta" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["sha256"] if d["verified"] else "unverified")')
  if [ -f "$path" ]; then real=$(sha256sum "$path" | cut -d' ' -f1); else real=$sha; fi
  [ "$got" = "$sha" ] && [ "$real" = "$sha" ] || { bad=$((bad + 1)); echo "# $kind $path: $got $sha $real"; }
done < <(q "SELECT kind, path, base_path, delta_path, ft_sha256 FROM sparse_storage WHERE decision = 'delta'")
is "$bad" "0" "every delta verifies and rebuilds the SHA-256 of its original"
ok "$SPARSE --quiet apply $H/big/base $H/out/model-big.sdelta -o $H/big.rebuilt && diff -r $H/big.rebuilt $H/big/ft" \
   "the big model directory rebuilds byte for byte"

# ---- report -------------------------------------------------------------------------
json=$("$SPARSE" --json report --db "$CONN")
is "$(echo "$json" | /usr/bin/python3 -c 'import json,sys; r={x["kind"]: x for x in json.load(sys.stdin)}; a=r["all"]; print(a["objects"], a["objects_delta"], a["saved_bytes"] == a["original_bytes"] - a["stored_bytes"], r["model"]["objects"] + r["dataset"]["objects"] == a["objects"])')" \
   "52 49 True True" "sparse report --json: counts and saved bytes add up"
is "$(echo "$json" | /usr/bin/python3 -c 'import json,sys; print(int([x for x in json.load(sys.stdin) if x["kind"] == "all"][0]["stored_bytes"]))')" \
   "$(q "SELECT sum(CASE WHEN compressed_at IS NOT NULL THEN stored_bytes ELSE original_bytes END) FROM sparse_storage")" \
   "stored bytes are the deltas' sizes plus the full objects' sizes"
text=$("$SPARSE" report --db "$CONN")
has_table=$(echo "$text" | grep -c -e '^all ' -e 'saved \$/month')
has_bar=$(echo "$text" | grep -c '█')
is "$has_table $has_bar" "2 0" "sparse report prints the table, and no bars when stdout is not a terminal"
# (blocks in a UTF-8 locale, '#' otherwise; the groups repeat a block whole in any locale)
tty=$(script -qec "$SPARSE report --db '$CONN'" /dev/null | tr -d '\r')
is "$(echo "$tty" | grep -Ec '^(all|model|dataset) +((█)+(░)*|#+\.*) +[0-9.]+% saved \(.* stored of .*\)$')" "3" \
   "on a terminal, a bar per row"

# ---- a backend terminated in the middle of a compression ------------------------------
# pg_terminate_backend while delta_compress codes the 0.3 GB pair at level 19
# (minutes of work): the backend is gone within a second, its client was told
# why, and neither the delta nor its temporary file is left
mkdir -p "$H/term" && chmod 1777 "$H/term"  # the server writes there as postgres
psql -X -q -c "SELECT * FROM delta_compress('$H/big/base', '$H/big/ft', '$H/term/term.delta', 19)" \
  >"$H/term.log" 2>&1 &
bg=$!
pid=
for _ in $(seq 1 100); do
  pid=$(q "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%term.delta%' AND pid <> pg_backend_pid()")
  [ -n "$pid" ] && break
  sleep 0.1
done
sleep 1
term=$(q "WITH t AS (SELECT clock_timestamp() AS t0, pg_terminate_backend(${pid:-0}, 5000) AS gone)
          SELECT gone, round(1000 * extract(epoch FROM clock_timestamp() - t0)) FROM t")
echo "# pg_terminate_backend returned after ${term#*|} ms"
is "$(echo "$term" | awk -F'|' '{ print $1, ($2 < 1000) }')" "t 1" \
   "pg_terminate_backend ends a running delta_compress within a second"
wait "$bg"
ok "grep -q 'terminating connection due to administrator command' '$H/term.log'" \
   "the terminated client is told why"
is "$(find "$H/term" -type f | wc -l)" "0" "a terminated compression leaves no file"

# ---- concurrency, failures, usage ------------------------------------------------------
q "INSERT INTO models SELECT format('c%s', i), '$H/mlp/ft.bf16.safetensors', '$H/mlp/base.bf16.safetensors' FROM generate_series(1, 4) i" >/dev/null
"$SPARSE" worker --db "$CONN" --once --concurrency 2 --out-root "$H/out" >"$H/conc.log" 2>&1
rc=$?
is "$rc $(q "SELECT count(*) FROM sparse_jobs WHERE state <> 'done'")" "0 0" "--concurrency 2 drains 4 new jobs"

# a fine-tune removed after its insert (an error that may pass): the failed
# attempt waits sparse.retry_delay (60 s) before the job can be claimed again ...
cp "$H/mlp/ft.bf16.safetensors" "$H/flaky.safetensors"
q "INSERT INTO models VALUES ('flaky', '$H/flaky.safetensors', '$H/mlp/base.bf16.safetensors')" >/dev/null
rm "$H/flaky.safetensors"
"$SPARSE" worker --db "$CONN" --once --out-root "$H/out" >"$H/wait.log" 2>&1
rc=$?
is "$rc $(q "SELECT state || ' ' || attempts || ' ' || (retry_at > now() + interval '50 seconds') FROM sparse_jobs WHERE object_id = 'flaky'")" \
   "1 queued 1 true" "a failed job waits sparse.retry_delay before its next attempt"
# ... and, once that has passed, with no wait (the worker's session sets it):
# three attempts, then 'failed'
q "UPDATE sparse_jobs SET retry_at = now() WHERE object_id = 'flaky'" >/dev/null
"$SPARSE" worker --db "$CONN options='-csparse.retry_delay=0'" --once --out-root "$H/out" >"$H/fail.log" 2>&1
rc=$?
is "$rc $(q "SELECT state || ' ' || attempts FROM sparse_jobs WHERE object_id = 'flaky'")" "1 failed 3" \
   "a job that keeps failing stops after max_attempts"
is "$(q "SELECT decision || ': ' || error FROM sparse_storage WHERE object_id = 'flaky'")" \
   "error: job $(q "SELECT job_id FROM sparse_jobs WHERE object_id = 'flaky'") failed 3 times; last: could not open \"$H/flaky.safetensors\": No such file or directory" \
   "the object says why"
# a non-delta file where the delta would go would stay there: the job fails
# at its first attempt, without a wait
echo "not a delta" >"$H/out/model-blocked.sdelta"
q "INSERT INTO models VALUES ('blocked', '$H/mlp/ft.bf16.safetensors', '$H/mlp/base.bf16.safetensors')" >/dev/null
"$SPARSE" worker --db "$CONN" --once --out-root "$H/out" >"$H/blocked.log" 2>&1
rc=$?
is "$rc $(q "SELECT state || ' ' || attempts || ' ' || (retry_at IS NULL) FROM sparse_jobs WHERE object_id = 'blocked'")" \
   "1 failed 1 true" "a failure that would recur fails the job at once"
is "$(q "SELECT decision || ': ' || error FROM sparse_storage WHERE object_id = 'blocked'")" \
   "error: job $(q "SELECT job_id FROM sparse_jobs WHERE object_id = 'blocked'") failed and was not retried: \"$H/out/model-blocked.sdelta\" exists and is not a sparse delta; not removing it" \
   "the object says why it was not retried"
ok "grep -q 'failed (not retried): ' \"$H/blocked.log\"" "the worker says it was not retried"
is "$(cat "$H/out/model-blocked.sdelta")" "not a delta" "the file that was in the way is untouched"

out=$("$SPARSE" worker --db "dbname=no_such_db_here" --once 2>&1); rc=$?
ok "[ $rc -eq 1 ] && echo \"\$out\" | grep -q '^sparse: worker: could not connect: .*no_such_db_here'" "worker: a bad --db fails with the server's message"
out=$("$SPARSE" migrate --db "$CONN" --table nope --id-col a --path-col b --base-col c --kind model 2>&1); rc=$?
is "$rc $out" '1 sparse: migrate: enqueuing: relation "nope" does not exist' "migrate: a missing table is the server's error"
out=$("$SPARSE" migrate --db "$CONN" --table legacy --id-col model_id --path-col file --base-col base_file --kind weights 2>&1); rc=$?
is "$rc $out" "2 sparse: migrate: --kind must be model or dataset, not \"weights\" (see 'sparse migrate --help')" "migrate: a bad --kind is a usage error"
out=$("$SPARSE" migrate --db "$CONN" --table "$(printf 'x%.0s' $(seq 300))" --id-col a --path-col b --base-col c --kind model 2>&1); rc=$?
is "$rc $out" "2 sparse: migrate: a table or column name is too long (see 'sparse migrate --help')" "migrate: a name too long is refused, not cut"
out=$("$SPARSE" worker --db "$CONN" --concurrency 0 2>&1); rc=$?
is "$rc" "2" "worker: --concurrency 0 is a usage error"
out=$("$SPARSE" report 2>&1); rc=$?
is "$rc $out" "2 sparse: report: --db CONNSTR is required (see 'sparse report --help')" "report: --db is required"

rm -rf "$H/big" "$H/big.rebuilt"
finish
