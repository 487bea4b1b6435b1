-- storage.sql -- hub storage decisions, the job queue and the savings report:
-- the sparse_decide_storage trigger on a hub's own tables (decisions,
-- thresholds, strict mode, re-decision when the base changes, misuse),
-- sparse_delta_path, sparse_run_jobs (deltas written, verified and recorded;
-- leftovers of a dead worker cleared; a file in the way fails the job at
-- once, a missing file after max_attempts), the queue functions with
-- their leases (claim, take-over, renew, complete, fail, release, expiry on
-- the last attempt, the wait before a failed job is retried:
-- sparse.retry_delay, a permanent failure), the report's arithmetic, every
-- argument error with its SQLSTATE, and the privileges.
-- Delta sizes depend on the zstd build, so they are checked against the
-- files rather than printed.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
DROP ROLE IF EXISTS regress_hub_app;
RESET client_min_messages;

CREATE FUNCTION pg_temp.file_sha(path text) RETURNS text
LANGUAGE sql AS $$ SELECT encode(sha256(pg_read_binary_file(path)), 'hex') $$;

-- ==== decisions on insert ====
CREATE TABLE hub_models (id bigint PRIMARY KEY, path text, base_path text);
CREATE TRIGGER hub_models_storage AFTER INSERT OR UPDATE OF path, base_path ON hub_models
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'path', 'base_path', 'model');
CREATE TABLE hub_datasets (name text PRIMARY KEY, file text, parent text);
CREATE TRIGGER hub_datasets_storage AFTER INSERT OR UPDATE ON hub_datasets
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('name', 'file', 'parent', 'dataset');

INSERT INTO hub_models VALUES
  (1, '/tmp/sparse_regress/data/mlp/base.bf16.safetensors', NULL),
  (2, '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors'),
  (3, '/tmp/sparse_regress/data/mlp/ft_frozen.bf16.safetensors', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors'),
  (4, '/tmp/sparse_regress/data/gpt2/ft.safetensors', '/tmp/sparse_regress/data/gpt2/base.safetensors'),
  (5, '/tmp/sparse_regress/data/missing.safetensors', '/tmp/sparse_regress/data/gpt2/base.safetensors'),
  (6, '/tmp/sparse_regress/data/text.safetensors', '/tmp/sparse_regress/data/gpt2/base.safetensors'),
  (7, NULL, NULL);  -- no path yet: nothing to decide
INSERT INTO hub_datasets VALUES
  ('csv', '/tmp/sparse_regress/data/ds/csv/derived.csv', '/tmp/sparse_regress/data/ds/csv/base.csv'),
  ('shards', '/tmp/sparse_regress/data/ds/shards/derived', '/tmp/sparse_regress/data/ds/shards/base');
-- a delta at or above 60% (models) / 70% (datasets), full below it or without a base;
-- a failed estimate is recorded as 'error' with its message and the insert goes on
SELECT object_id, kind, decision, round(est_savings_pct) AS est_pct, original_bytes,
       stored_bytes, base_object_id, error
FROM sparse_storage ORDER BY kind, object_id;
SELECT count(*) AS hub_rows FROM hub_models;
SELECT object_id, kind, state, attempts, max_attempts FROM sparse_jobs ORDER BY job_id;

-- an update that changes neither path nor base decides nothing again
UPDATE hub_models SET base_path = base_path WHERE id = 4;
SELECT decision, round(est_savings_pct) AS est_pct FROM sparse_storage WHERE object_id = '4';
-- a lower threshold, then a new base: decided again, now a delta with a job
SET sparse.model_min_savings_pct = 20;
UPDATE hub_models SET base_path = '/tmp/sparse_regress/data/gpt2/./base.safetensors' WHERE id = 4;
SELECT decision, round(est_savings_pct) AS est_pct, base_path FROM sparse_storage WHERE object_id = '4';
SELECT state FROM sparse_jobs WHERE object_id = '4';
RESET sparse.model_min_savings_pct;
-- settings are checked like any
SET sparse.model_min_savings_pct = 101;
\echo :SQLSTATE
SET sparse.storage_cost_per_gb_month = -1;
\echo :SQLSTATE

-- strict: a failed estimate fails the insert
SET sparse.strict = on;
INSERT INTO hub_models VALUES (8, '/tmp/sparse_regress/data/missing2.safetensors', '/tmp/sparse_regress/data/gpt2/base.safetensors');
\echo :SQLSTATE
SELECT count(*) AS row_8 FROM hub_models WHERE id = 8;
RESET sparse.strict;

-- misuse of the trigger
CREATE TABLE hub_bad (id int, p text);
CREATE TRIGGER hub_bad_args AFTER INSERT ON hub_bad
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'p');
INSERT INTO hub_bad VALUES (1, 'x');
\echo :SQLSTATE
DROP TRIGGER hub_bad_args ON hub_bad;
CREATE TRIGGER hub_bad_before BEFORE INSERT ON hub_bad
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'p', 'p', 'model');
INSERT INTO hub_bad VALUES (1, 'x');
\echo :SQLSTATE
DROP TRIGGER hub_bad_before ON hub_bad;
CREATE TRIGGER hub_bad_col AFTER INSERT ON hub_bad
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'p', 'base', 'model');
INSERT INTO hub_bad VALUES (1, 'x');
\echo :SQLSTATE
DROP TRIGGER hub_bad_col ON hub_bad;
CREATE TRIGGER hub_bad_kind AFTER INSERT ON hub_bad
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'p', 'p', 'weights');
INSERT INTO hub_bad VALUES (1, 'x');
\echo :SQLSTATE
DROP TABLE hub_bad;

-- ==== where deltas go ====
SELECT sparse_delta_path('2', 'model', '/m/ft.safetensors') AS next_to_original,
       sparse_delta_path('2', 'dataset', '/d/shards/') AS directory;
SET sparse.delta_dir = '/tmp/sparse_regress/out/hub/';
SELECT sparse_delta_path('org/name v1.0', 'model', '/m/x') AS encoded,
       sparse_delta_path('../../etc', 'dataset', '/d/x') AS no_escape,
       length(sparse_delta_path(repeat('é', 200), 'model', '/m/x')) AS long_id_length;
SELECT sparse_delta_path('', 'model', '/m/x');
\echo :SQLSTATE
SELECT sparse_delta_path('2', 'weights', '/m/x');
\echo :SQLSTATE
SELECT sparse_delta_path(NULL, 'model', '/m/x');
\echo :SQLSTATE
SELECT sparse_setting('work_mem');
\echo :SQLSTATE

-- ==== running jobs in the database ====
SET sparse.retry_delay = 0;  -- failed jobs are retried at once (the wait has its own section)
-- leftovers of a worker killed while writing model 2's delta: its temporary
-- file, and for model 3 a finished delta it never recorded (here: another
-- model's delta, so only a fresh one verifies against model 3)
COPY (SELECT 'partial') TO '/tmp/sparse_regress/out/hub/.model-2.sdelta.sparse-tmp-abc123';
SELECT delta_bytes > 0 AS stale_written FROM delta_compress(
  '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
  '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/out/hub/model-3.sdelta');
-- and a file that is not a delta where dataset shards' delta goes
COPY (SELECT 'keep me') TO '/tmp/sparse_regress/out/hub/dataset-shards.sdelta';

SELECT sparse_run_jobs(1) AS first_run;
SELECT count(*) FILTER (WHERE state = 'done') AS done, count(*) FILTER (WHERE state = 'queued') AS queued
FROM sparse_jobs;
-- a job whose file is missing when it runs: an error that may pass (58P01),
-- so it is tried max_attempts times; the file in the way of the shards'
-- delta would stay (58P02), so that job fails at its first attempt
SELECT sparse_set_decision('gone', 'model', '/tmp/sparse_regress/data/gone.safetensors',
                           '/tmp/sparse_regress/data/mlp/base.bf16.safetensors', 95, 1000) AS gone;
SET client_min_messages = error;  -- the warnings of the failing attempts
SELECT sparse_run_jobs() AS second_run;
RESET client_min_messages;
SELECT object_id, kind, state, attempts, last_error FROM sparse_jobs ORDER BY job_id;
SELECT object_id, kind, decision, delta_path, error FROM sparse_storage
WHERE decision IN ('delta', 'error') ORDER BY kind, object_id;
-- every delta on disk: its recorded size, the original's SHA-256, and it rebuilds
SELECT s.object_id, s.stored_bytes = (pg_stat_file(s.delta_path)).size AS size_ok,
       s.ft_sha256 = pg_temp.file_sha(s.path) AS sha_ok, v.verified, v.sha256 = s.ft_sha256 AS rebuilt_ok,
       s.compressed_at >= s.decided_at AS timed
FROM sparse_storage s, LATERAL delta_verify(s.base_path, s.delta_path) v
WHERE s.compressed_at IS NOT NULL ORDER BY s.kind, s.object_id;
-- the temporary file is gone, the file in the way is untouched
SELECT f FROM pg_ls_dir('/tmp/sparse_regress/out/hub') f ORDER BY f;
SELECT pg_read_file('/tmp/sparse_regress/out/hub/dataset-shards.sdelta') AS untouched;
SELECT sparse_run_jobs() AS nothing_left, sparse_run_jobs(0) AS zero;
SELECT sparse_run_jobs(-1);
\echo :SQLSTATE

-- ==== the savings report ====
SELECT kind, objects, objects_delta, objects_open,
       original_bytes = (SELECT coalesce(sum(original_bytes), 0) FROM sparse_storage s
                          WHERE r.kind IN ('all', s.kind)) AS original_ok,
       stored_bytes = (SELECT sum(CASE WHEN compressed_at IS NOT NULL THEN stored_bytes
                                       ELSE coalesce(original_bytes, 0) END)
                         FROM sparse_storage s WHERE r.kind IN ('all', s.kind)) AS stored_ok,
       saved_bytes = original_bytes - stored_bytes AS saved_ok,
       abs(savings_pct - 100.0 * saved_bytes / original_bytes) < 1e-9 AS pct_ok,
       abs(saved_per_month - saved_bytes / 1073741824.0 * 0.023) < 1e-12 AS money_ok
FROM sparse_savings_report r;
SET sparse.storage_cost_per_gb_month = 1.5;
SELECT abs(saved_per_month - saved_bytes / 1073741824.0 * 1.5) < 1e-12 AS money_follows_setting
FROM sparse_savings_report WHERE kind = 'all';
RESET sparse.storage_cost_per_gb_month;

-- ==== the queue and its leases ====
SELECT sparse_set_decision('q1', 'model', '/q/1', '/q/base', 90, 1000) AS q1,
       sparse_set_decision('q2', 'model', '/q/2', '/q/base', 10, 1000) AS q2,
       sparse_set_decision('q3', 'dataset', '/q/3', NULL, NULL, 500) AS q3,
       sparse_set_decision('q4', 'dataset', '/q/4', '/q/base', NULL, NULL, 'boom') AS q4;
SELECT object_id, decision, stored_bytes, error FROM sparse_storage WHERE object_id LIKE 'q%' ORDER BY 1;
SELECT job_id AS q1_job FROM sparse_jobs WHERE object_id = 'q1' \gset
-- deciding again while the job is queued adds no second job
SELECT sparse_set_decision('q1', 'model', '/q/1', '/q/base', 91, 1000) AS again;
SELECT count(*) AS q1_jobs FROM sparse_jobs WHERE object_id = 'q1';
SELECT job_id = :q1_job AS same_job, object_id, kind, path, base_path, decision, attempts
FROM sparse_claim_job('w1', 1);
-- held: nobody else gets it while the lease runs
SELECT count(*) AS claimed_by_w2 FROM sparse_claim_job('w2', 60);
SELECT pg_sleep(1.2);
-- the lease ran out: w2 takes it over, w1 can no longer renew or complete it
SELECT attempts FROM sparse_claim_job('w2', 60);
SELECT lease_holder, attempts, last_error FROM sparse_jobs WHERE job_id = :q1_job;
SELECT sparse_renew_lease(:q1_job, 'w1') AS w1_renews, sparse_renew_lease(:q1_job, 'w2', 120) AS w2_renews;
SELECT sparse_complete_job(:q1_job, 'w1', '/q/1', '/q/base', '/q/1.sdelta', 1000, 100, 'ab') AS w1_completes;
SELECT sparse_fail_job(:q1_job, 'w1', 'late') AS w1_fails;
-- failures: queued again, then failed after max_attempts (3)
SELECT sparse_fail_job(:q1_job, 'w2', 'disk full') AS w2_fails;
SELECT attempts FROM sparse_claim_job('w3');
SELECT sparse_fail_job(:q1_job, 'w3', 'disk full again') AS w3_fails;
SELECT state, attempts, last_error, finished_at IS NOT NULL AS finished FROM sparse_jobs WHERE job_id = :q1_job;
SELECT decision, error FROM sparse_storage WHERE object_id = 'q1';
SELECT count(*) AS nothing_to_claim FROM sparse_claim_job('w4');

-- a successful completion records the delta; one whose object changed meanwhile is queued again
SELECT sparse_set_decision('q5', 'model', '/q/5', '/q/base', 95, 2000) AS q5,
       sparse_set_decision('q6', 'model', '/q/6', '/q/base', 95, 3000) AS q6;
SELECT object_id FROM sparse_claim_job('w1');
SELECT object_id FROM sparse_claim_job('w1');
SELECT sparse_complete_job(job_id, 'w1', '/q/5', '/q/base', '/q/5.sdelta', 2000, 200, 'cd') AS q5_done
FROM sparse_jobs WHERE object_id = 'q5';
SELECT decision, stored_bytes, delta_path, ft_sha256, compressed_at IS NOT NULL AS compressed
FROM sparse_storage WHERE object_id = 'q5';
SELECT sparse_set_decision('q6', 'model', '/q/6', '/q/new-base', 95, 3000) AS q6_rebased;
SELECT sparse_complete_job(job_id, 'w1', '/q/6', '/q/base', '/q/6.sdelta', 3000, 300, 'ef') AS q6_done
FROM sparse_jobs WHERE object_id = 'q6';
SELECT state, lease_holder, last_error FROM sparse_jobs WHERE object_id = 'q6';
-- release: back to the queue, the attempt not counted
SELECT attempts FROM sparse_claim_job('w1');
SELECT sparse_release_job(job_id, 'w1') AS released FROM sparse_jobs WHERE object_id = 'q6';
SELECT state, attempts, lease_holder FROM sparse_jobs WHERE object_id = 'q6';
-- a lease that expires on the last attempt fails the job at the next claim
UPDATE sparse_jobs SET max_attempts = 1 WHERE object_id = 'q6';  -- its attempts are 0
SELECT attempts FROM sparse_claim_job('w1', 1);
SELECT pg_sleep(1.2);
SELECT count(*) AS claimed FROM sparse_claim_job('w2');
SELECT state, last_error FROM sparse_jobs WHERE object_id = 'q6';
SELECT decision, error FROM sparse_storage WHERE object_id = 'q6';

-- ==== retries wait ====
-- by default a failed job waits a minute before it can be claimed again,
-- twice that after its second failure; the claim clears the wait
RESET sparse.retry_delay;
SHOW sparse.retry_delay;
SELECT sparse_set_decision('q7', 'model', '/q/7', '/q/base', 95, 1000) AS q7;
SELECT object_id, attempts FROM sparse_claim_job('w1');
SELECT sparse_fail_job(job_id, 'w1', 'disk full') AS first_failure FROM sparse_jobs WHERE object_id = 'q7';
SELECT extract(epoch FROM retry_at - clock_timestamp()) BETWEEN 50 AND 60 AS waits_a_minute
FROM sparse_jobs WHERE object_id = 'q7';
SELECT count(*) AS claimed_too_early FROM sparse_claim_job('w2');
UPDATE sparse_jobs SET retry_at = clock_timestamp() - interval '1 second' WHERE object_id = 'q7';  -- the minute passes
SELECT object_id, attempts FROM sparse_claim_job('w2');
SELECT retry_at IS NULL AS wait_cleared FROM sparse_jobs WHERE object_id = 'q7';
SELECT sparse_fail_job(job_id, 'w2', 'disk full again') AS second_failure FROM sparse_jobs WHERE object_id = 'q7';
SELECT extract(epoch FROM retry_at - clock_timestamp()) BETWEEN 110 AND 120 AS waits_two_minutes
FROM sparse_jobs WHERE object_id = 'q7';
-- the last attempt fails the job: no wait is left
UPDATE sparse_jobs SET retry_at = NULL WHERE object_id = 'q7';
SELECT attempts FROM sparse_claim_job('w3');
SELECT sparse_fail_job(job_id, 'w3', 'disk full for good') AS third_failure FROM sparse_jobs WHERE object_id = 'q7';
SELECT state, retry_at IS NULL AS no_wait FROM sparse_jobs WHERE object_id = 'q7';
-- a permanent failure (the error would recur) fails the job at once, with no wait
SELECT sparse_set_decision('q8', 'model', '/q/8', '/q/base', 95, 1000) AS q8;
SELECT object_id, attempts FROM sparse_claim_job('w1');
SELECT sparse_fail_job(job_id, 'w1', 'not a safetensors file', permanent => true) AS permanent_failure
FROM sparse_jobs WHERE object_id = 'q8';
SELECT state, attempts, retry_at IS NULL AS no_wait, finished_at IS NOT NULL AS finished
FROM sparse_jobs WHERE object_id = 'q8';
SELECT decision, error FROM sparse_storage WHERE object_id = 'q8';
-- the setting takes units and is bounded: 0 to a day
SET sparse.retry_delay = '5min';
SELECT sparse_setting('sparse.retry_delay') AS seconds;
SET sparse.retry_delay = -1;
\echo :SQLSTATE
SET sparse.retry_delay = '2d';
\echo :SQLSTATE
RESET sparse.retry_delay;

-- argument errors
SELECT * FROM sparse_claim_job(NULL);
\echo :SQLSTATE
SELECT * FROM sparse_claim_job('w', 0);
\echo :SQLSTATE
SELECT sparse_set_decision('q9', 'weights', '/q/9', NULL, NULL, NULL);
\echo :SQLSTATE
SELECT * FROM sparse_store_estimate('weights', NULL, '/tmp/sparse_regress/data/mlp/base.bf16.safetensors');
\echo :SQLSTATE
SELECT * FROM sparse_store_estimate('model', NULL, NULL);
\echo :SQLSTATE
SELECT original_bytes, est_delta_bytes, savings_pct
FROM sparse_store_estimate('dataset', NULL, '/tmp/sparse_regress/data/ds/shards/base');
SELECT * FROM sparse_store_run('model', NULL, '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/out/hub/x.sdelta');
\echo :SQLSTATE
SELECT * FROM sparse_store_run('model', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
  '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors');
\echo :SQLSTATE
SELECT * FROM sparse_store_run('model', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
  '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/out/hub/x.sdelta', 20);
\echo :SQLSTATE

-- ==== privileges ====
CREATE ROLE regress_hub_app;
GRANT SELECT, INSERT, UPDATE ON hub_models TO regress_hub_app;
GRANT SELECT, INSERT, UPDATE ON sparse_storage, sparse_jobs TO regress_hub_app;
GRANT USAGE ON SEQUENCE sparse_jobs_job_id_seq TO regress_hub_app;
SET ROLE regress_hub_app;
-- without EXECUTE on the estimate the decision is an error, the insert goes on
INSERT INTO hub_models VALUES (20, '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors',
                               '/tmp/sparse_regress/data/mlp/base.bf16.safetensors');
SELECT decision, error FROM sparse_storage WHERE object_id = '20';
SELECT * FROM sparse_store_run('model', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
  '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/out/hub/perm.sdelta');
\echo :SQLSTATE
RESET ROLE;
-- EXECUTE granted, but not pg_read_server_files: the C check refuses
GRANT EXECUTE ON FUNCTION sparse_store_estimate(text, text, text),
      sparse_store_run(text, text, text, text, int) TO regress_hub_app;
SET ROLE regress_hub_app;
UPDATE hub_models SET base_path = '/tmp/sparse_regress/data/mlp/./base.bf16.safetensors' WHERE id = 20;
SELECT decision, error FROM sparse_storage WHERE object_id = '20';
RESET ROLE;
-- with pg_read_server_files it decides; running the job also needs pg_write_server_files
GRANT pg_read_server_files TO regress_hub_app;
SET ROLE regress_hub_app;
UPDATE hub_models SET base_path = '/tmp/sparse_regress/data/mlp/base.bf16.safetensors' WHERE id = 20;
SELECT decision FROM sparse_storage WHERE object_id = '20';
SELECT * FROM sparse_store_run('model', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
  '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', '/tmp/sparse_regress/out/hub/perm.sdelta');
\echo :SQLSTATE
RESET ROLE;

-- ==== rows the hub deletes or renames ====
-- with OR DELETE on the trigger, a deleted row's object is forgotten (its
-- row and jobs; the delta file stays on disk), and so is the old id of a
-- row whose id changes; the savings report stops counting them
CREATE TRIGGER hub_models_forget AFTER UPDATE OF id OR DELETE ON hub_models
  FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'path', 'base_path', 'model');
SELECT objects FROM sparse_savings_report WHERE kind = 'model';
SELECT sparse_set_decision('21', 'model', '/q/21', '/q/base', 95, 1000) AS q21;
INSERT INTO hub_models VALUES (21, NULL, NULL);  -- as if inserted while the trigger was off
DELETE FROM hub_models WHERE id = 2;
SELECT count(*) AS model_2_rows FROM sparse_storage WHERE object_id = '2';
SELECT count(*) AS model_2_jobs FROM sparse_jobs WHERE object_id = '2';
SELECT (pg_stat_file('/tmp/sparse_regress/out/hub/model-2.sdelta')).size > 0 AS delta_kept;
UPDATE hub_models SET id = 22 WHERE id = 21;
SELECT object_id, decision FROM sparse_storage WHERE object_id IN ('21', '22') ORDER BY object_id;
SELECT objects FROM sparse_savings_report WHERE kind = 'model';
-- a dataset of the same id is another object: it stays
SELECT sparse_set_decision('3', 'dataset', '/d/3', '/d/base', 95, 10) AS dataset_3;
DELETE FROM hub_models WHERE id = 3;
SELECT object_id, kind FROM sparse_storage WHERE object_id = '3';

DROP TABLE hub_models, hub_datasets;
DELETE FROM sparse_storage;
DROP OWNED BY regress_hub_app;
DROP ROLE regress_hub_app;
