#!/usr/bin/env bash
# store.sh -- tests of hub storage decisions and jobs (store_sqlite.c) in the
# SQLite extension, sourced by test/sqlite/run.sh (its helpers: ok, not_ok,
# is, q, sha; $EXT, $T, $SPARSE_DATA).  Each check runs a fresh
# "sqlite3 -batch -bail DB" on a database under $T/store.
#
# Covered: sparse_install() creates sparse_storage, sparse_jobs and
# sparse_savings_report; sparse_watch's TEMP triggers decide inserted and
# updated rows (delta, full below the threshold or without a base, error
# with the message) and queue jobs; the thresholds, sparse.strict and
# sparse.delta_dir from sparse_settings, and bad setting values;
# sparse_run_jobs writes every delta, which rebuilds the original
# (sha256sum), clears a killed writer's temporary file, fails a job after
# three attempts when a non-delta file is in the way (left untouched);
# sparse.retry_delay: a failed job waits a minute, then two, before a run
# takes it again (and an older sparse_jobs table gets the column it needs);
# the report's arithmetic; DIRECTONLY (a trigger stored in the database
# cannot call sparse_decide); argument errors with their exact messages.

S=$T/store
mkdir -p "$S/out"
SM=$SPARSE_DATA/models
SDB=$S/hub.db

# st_sql SQL: run SQL on the hub database after loading the extension.
st_sql() {
	printf '.load %s\n%s\n' "$EXT" "$1" | sqlite3 -batch -bail "$SDB" 2>&1
}

# st_err SQL: the error message of SQL.
st_err() {
	st_sql "$1" | sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p' | tail -n 1
}

WATCH="SELECT sparse_watch('models', 'id', 'path', 'base_path', 'model');
SELECT sparse_watch('datasets', 'name', 'file', 'parent', 'dataset');"
MLP_BASE=$(q "$SM/mlp-trained/base.bf16.safetensors")
MLP_FT=$(q "$SM/mlp-trained/ft.bf16.safetensors")

st_sql "SELECT sparse_install();
CREATE TABLE models (id INTEGER PRIMARY KEY, path TEXT, base_path TEXT);
CREATE TABLE datasets (name TEXT PRIMARY KEY, file TEXT, parent TEXT);
INSERT INTO sparse_settings VALUES ('sparse.delta_dir', $(q "$S/out"));" > /dev/null
is "sparse_install() creates the storage tables and report" \
	"$(st_sql "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema WHERE type <> 'trigger' AND (name LIKE 'sparse_s%' OR name LIKE 'sparse_jobs%') ORDER BY name);")" \
	"sparse_jobs sparse_jobs_active sparse_savings_report sparse_settings sparse_storage"

out=$(st_sql "$WATCH
INSERT INTO models VALUES
 (1, $MLP_FT, $MLP_BASE),
 (2, $(q "$SM/mlp-trained/ft_frozen.bf16.safetensors"), $MLP_BASE),
 (3, $(q "$SM/gpt2-lora-r8/ft.safetensors"), $(q "$SM/gpt2-lora-r8/base.safetensors")),
 (4, $MLP_BASE, NULL),
 (5, '/nonexistent/ft.safetensors', $MLP_BASE),
 (6, NULL, NULL);
INSERT INTO datasets VALUES ('csv', $(q "$SPARSE_DATA/datasets/covid_countries_1day/derived.csv"),
                                    $(q "$SPARSE_DATA/datasets/covid_countries_1day/base.csv"));
SELECT object_id || ' ' || kind || ' ' || decision || ' ' || coalesce(round(est_savings_pct), '-')
       || ' ' || coalesce(stored_bytes, '-') || ' ' || coalesce(base_object_id, '-') || ' ' || coalesce(error, '-')
FROM sparse_storage ORDER BY kind, object_id;")
is "sparse_watch's triggers decide every inserted row (base_object_id: a base registered before)" "$out" "3
3
csv dataset delta 100.0 - - -
1 model delta 77.0 - - -
2 model delta 92.0 - - -
3 model full 31.0 1182680 - -
4 model full 0.0 989736 - -
5 model error - - 4 could not open \"/nonexistent/ft.safetensors\": No such file or directory"
is "a job is queued per delta decision" \
	"$(st_sql "SELECT group_concat(object_id || ':' || state, ' ') FROM (SELECT * FROM sparse_jobs ORDER BY job_id);")" \
	"1:queued 2:queued csv:queued"

# thresholds and re-decisions on update (the triggers are the connection's: set them up again)
is "a row whose base changes is decided again, at the threshold in sparse_settings" \
	"$(st_sql "$WATCH INSERT INTO sparse_settings VALUES ('sparse.model_min_savings_pct', 20);
UPDATE models SET base_path = $(q "$SM/gpt2-lora-r8/./base.safetensors") WHERE id = 3;
UPDATE models SET path = path WHERE id = 1;
SELECT decision FROM sparse_storage WHERE object_id = '3';
SELECT count(*) FROM sparse_jobs;
DELETE FROM sparse_settings WHERE name = 'sparse.model_min_savings_pct';" | tail -n 2)" "delta
4"
is "sparse.strict: a failed estimate fails the insert" \
	"$(st_err "$WATCH INSERT INTO sparse_settings VALUES ('sparse.strict', 'on');
INSERT INTO models VALUES (7, '/nonexistent/x.safetensors', $MLP_BASE);")" \
	'could not open "/nonexistent/x.safetensors": No such file or directory (14)'
is "and the row is not inserted" "$(st_sql "SELECT count(*) FROM models WHERE id = 7; DELETE FROM sparse_settings WHERE name = 'sparse.strict';")" "0"
is "a bad threshold in sparse_settings is an error naming it" \
	"$(st_err "$WATCH INSERT INTO sparse_settings VALUES ('sparse.dataset_min_savings_pct', 'lots');
INSERT INTO datasets VALUES ('x', '/x', '/y');")" \
	"invalid value for setting \"sparse.dataset_min_savings_pct\" in sparse_settings: 'lots' (a number from 0 to 100)"
is "a bad sparse.strict is an error naming it" \
	"$(st_err "DELETE FROM sparse_settings WHERE name = 'sparse.dataset_min_savings_pct';
INSERT INTO sparse_settings VALUES ('sparse.strict', 'maybe'); SELECT sparse_run_jobs();")" \
	"invalid value for setting \"sparse.strict\" in sparse_settings: 'maybe' (on or off)"
st_sql "DELETE FROM sparse_settings WHERE name IN ('sparse.strict', 'sparse.dataset_min_savings_pct');" > /dev/null

# ---- running the jobs --------------------------------------------------------------
# a writer killed mid-delta left a temporary file for model 1; a non-delta file sits where model 2's goes
echo partial > "$S/out/.model-1.sdelta.sparse-tmp-abc123"
echo "keep me" > "$S/out/model-2.sdelta"
# failed jobs are retried at once here (the wait has its own section below)
st_sql "INSERT INTO sparse_settings VALUES ('sparse.retry_delay', 0);" > /dev/null
is "sparse_run_jobs(1) runs one job" "$(st_sql "SELECT sparse_run_jobs(1);")" "1"
is "sparse_run_jobs() runs the rest; the blocked one fails at once (the file in its way would stay)" \
	"$(st_sql "SELECT sparse_run_jobs();
SELECT group_concat(object_id || ':' || state || ':' || attempts, ' ') FROM (SELECT * FROM sparse_jobs ORDER BY job_id);")" \
	"2
1:done:1 2:failed:1 csv:done:1 3:done:1"
is "the failed job's object says why" "$(st_sql "SELECT decision || ': ' || error FROM sparse_storage WHERE object_id = '2';")" \
	"error: job 2 failed and was not retried: \"$S/out/model-2.sdelta\" exists and is not a sparse delta; not removing it"
is "the file in the way is untouched" "$(cat "$S/out/model-2.sdelta")" "keep me"
is "the temporary file is gone" "$(find "$S/out" -name '.*sparse-tmp-*' | wc -l)" "0"
bad=0
while IFS='|' read -r path base delta shasum stored; do
	rebuilt=$S/rebuilt.$RANDOM
	got=$(st_sql "SELECT sha256 FROM delta_apply($(q "$base"), $(q "$delta"), $(q "$rebuilt"));")
	[ "$got" = "$shasum" ] && [ "$(sha "$path")" = "$shasum" ] && cmp -s "$path" "$rebuilt" &&
		[ "$(stat -c %s "$delta")" = "$stored" ] || { bad=$((bad + 1)); echo "# $path: $got $shasum"; }
	rm -f "$rebuilt"
done < <(st_sql "SELECT path, base_path, delta_path, ft_sha256, stored_bytes FROM sparse_storage WHERE compressed_at IS NOT NULL;")
is "every delta rebuilds its original (3 deltas, sha256sum, cmp, size)" \
	"$bad $(st_sql "SELECT count(*) FROM sparse_storage WHERE compressed_at IS NOT NULL;")" "0 3"
is "sparse_delta_path names where they went" \
	"$(st_sql "SELECT sparse_delta_path('a/b', 'dataset', '/x') = $(q "$S/out/dataset-a%2Fb.sdelta"), sparse_delta_path('1', 'model', '/m/ft') = delta_path FROM sparse_storage WHERE object_id = '1';")" "1|1"

# ---- report ----------------------------------------------------------------------
is "the savings report adds up" \
	"$(st_sql "SELECT kind, objects, objects_delta, objects_open,
  original_bytes = (SELECT sum(coalesce(original_bytes, 0)) FROM sparse_storage s WHERE r.kind IN ('all', s.kind)),
  stored_bytes = (SELECT sum(CASE WHEN compressed_at IS NOT NULL THEN stored_bytes ELSE coalesce(original_bytes, 0) END)
                  FROM sparse_storage s WHERE r.kind IN ('all', s.kind)),
  saved_bytes = original_bytes - stored_bytes,
  abs(savings_pct - 100.0 * saved_bytes / original_bytes) < 1e-9,
  abs(saved_per_month - saved_bytes / 1073741824.0 * 0.023) < 1e-15
FROM sparse_savings_report r;")" "dataset|1|1|0|1|1|1|1|1
model|5|2|2|1|1|1|1|1
all|6|3|2|1|1|1|1|1"
is "the report's price follows sparse.storage_cost_per_gb_month" \
	"$(st_sql "INSERT INTO sparse_settings VALUES ('sparse.storage_cost_per_gb_month', 2.5);
SELECT abs(saved_per_month - saved_bytes / 1073741824.0 * 2.5) < 1e-15 FROM sparse_savings_report WHERE kind = 'all';")" "1"

# ---- security and errors -----------------------------------------------------------
is "a trigger stored in the database cannot call sparse_decide (DIRECTONLY)" \
	"$(st_err "CREATE TRIGGER evil AFTER INSERT ON models BEGIN SELECT sparse_decide('model', NEW.id, NEW.path, NEW.base_path); END;
INSERT INTO models VALUES (9, '/etc/passwd', NULL);")" "unsafe use of sparse_decide()"
is "nor a view sparse_run_jobs" \
	"$(st_err "CREATE VIEW evil_v AS SELECT sparse_run_jobs(); SELECT * FROM evil_v;")" "unsafe use of sparse_run_jobs()"
is "sparse_watch: a missing column is named" \
	"$(st_err "SELECT sparse_watch('models', 'id', 'file', 'base_path', 'model');")" \
	"sparse_watch: table main.\"models\" has no column \"file\""
is "sparse_watch: a bad kind" \
	"$(st_err "SELECT sparse_watch('models', 'id', 'path', 'base_path', 'weights');")" \
	"kind must be 'model' or 'dataset', not 'weights'"
is "sparse_watch: NULL arguments" \
	"$(st_err "SELECT sparse_watch('models', NULL, 'path', 'base_path', 'model');")" \
	"sparse_watch(table, id_col, path_col, base_col, kind): no argument may be NULL"
is "sparse_run_jobs: a negative max_jobs" "$(st_err "SELECT sparse_run_jobs(-1);")" "max_jobs must be at least 0, not -1"
is "sparse_decide before sparse_install() says to run it" \
	"$(printf '.load %s\nSELECT sparse_decide(%s, %s, %s, NULL);\n' "$EXT" "'model'" "'1'" "'/x'" | sqlite3 -batch -bail 2>&1 | sed -n 's/^Runtime error near line [0-9]*: //p')" \
	"reading sparse_settings: no such table: main.sparse_settings (run SELECT sparse_install() first)"
is "sparse_decide with no path decides nothing" "$(st_sql "SELECT coalesce(sparse_decide('model', '1', NULL, NULL), 'null');")" "null"

# ---- retries wait -----------------------------------------------------------------
# model 2's job queued again, the file in its way gone but its own file now
# missing (an error that may pass): with the default delay its failure makes
# it wait a minute, in which no run takes it; once the minute is over, the
# next failure waits two minutes
rm -f "$S/out/model-2.sdelta"
st_sql "DELETE FROM sparse_settings WHERE name = 'sparse.retry_delay';
UPDATE sparse_jobs SET state = 'queued', attempts = 0, finished_at = NULL WHERE object_id = '2';
UPDATE sparse_storage SET decision = 'delta', error = NULL, path = $(q "$S/gone.safetensors") WHERE object_id = '2';" > /dev/null
is "a failed attempt waits a minute" \
	"$(st_sql "SELECT sparse_run_jobs();
SELECT state, attempts, (julianday(retry_at) - julianday('now')) * 86400 BETWEEN 50 AND 60 FROM sparse_jobs WHERE object_id = '2';")" \
	"0
queued|1|1"
is "a run in that minute leaves it" \
	"$(st_sql "SELECT sparse_run_jobs(); SELECT attempts FROM sparse_jobs WHERE object_id = '2';")" "0
1"
is "after it, the next failure waits two minutes" \
	"$(st_sql "UPDATE sparse_jobs SET retry_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 seconds') WHERE object_id = '2';
SELECT sparse_run_jobs();
SELECT state, attempts, (julianday(retry_at) - julianday('now')) * 86400 BETWEEN 110 AND 120 FROM sparse_jobs WHERE object_id = '2';")" \
	"0
queued|2|1"
is "a bad sparse.retry_delay is an error naming it" \
	"$(st_err "INSERT INTO sparse_settings VALUES ('sparse.retry_delay', '-5'); SELECT sparse_run_jobs();")" \
	"invalid value for setting \"sparse.retry_delay\" in sparse_settings: '-5' (a number from 0 to 86400)"
# a hub made before retry_at existed: sparse_install() adds the column
OLD=$S/old.db
printf '.load %s\nSELECT sparse_install();\n' "$EXT" | sqlite3 -batch -bail "$OLD" > /dev/null 2>&1
sqlite3 -batch "$OLD" "ALTER TABLE sparse_jobs DROP COLUMN retry_at;" 2>/dev/null
is "sparse_install() adds retry_at to an older sparse_jobs" \
	"$(printf '.load %s\nSELECT count(*) FROM pragma_table_info(%s) WHERE name = %s;\nSELECT sparse_install();\nSELECT count(*) FROM pragma_table_info(%s) WHERE name = %s;\n' \
		"$EXT" "'sparse_jobs'" "'retry_at'" "'sparse_jobs'" "'retry_at'" | sqlite3 -batch -bail "$OLD" 2>&1)" \
	"0
sparse $(printf '.load %s\nSELECT sparse_version();\n' "$EXT" | sqlite3 -batch 2>/dev/null) installed
1"

# ---- rows the hub deletes or renames ----------------------------------------------
# the watch triggers forget a deleted row's object (its row and jobs; a delta
# file stays on disk) and the old id of a row whose id changes; a dataset of
# the same id is another object
st_sql "DELETE FROM sparse_settings WHERE name = 'sparse.retry_delay';" > /dev/null
is "sparse_watch creates three triggers per table" "$(st_sql "$WATCH" | tr '\n' ' ')" "3 3 "
is "a deleted row's object and jobs are forgotten, its delta file stays" \
	"$(st_sql "$WATCH
INSERT INTO sparse_storage (object_id, kind, path, decision) VALUES ('1', 'dataset', '/d/1', 'full');
DELETE FROM models WHERE id IN (1, 2);
SELECT count(*) FROM sparse_storage WHERE kind = 'model' AND object_id IN ('1', '2');
SELECT count(*) FROM sparse_jobs WHERE kind = 'model' AND object_id IN ('1', '2');
SELECT count(*) FROM sparse_storage WHERE kind = 'dataset' AND object_id = '1';" | tail -n 3 | tr '\n' ' ')$(test -s "$S/out/model-1.sdelta" && echo kept)" \
	"0 0 1 kept"
is "a renamed row: the old id is forgotten, the new one decided" \
	"$(st_sql "$WATCH
UPDATE models SET id = 30 WHERE id = 3;
SELECT group_concat(object_id, ' ') FROM (SELECT object_id FROM sparse_storage WHERE kind = 'model' AND object_id IN ('3', '30') ORDER BY object_id);" | tail -n 1)" \
	"30"
