/*
 * sparse--0.1.0.sql -- install script of the PostgreSQL extension "sparse".
 *
 * Creates the SQL functions over pg/sparse_pg.c.  Functions that touch
 * server files lose EXECUTE for PUBLIC here, and additionally check in C
 * that the caller has the privileges of pg_read_server_files (and of
 * pg_write_server_files to create files), as pg_read_binary_file and
 * COPY ... TO do.  The bytea functions touch no file and stay public.
 *
 * Volatility: the file functions are VOLATILE because files change under
 * them.  delta_apply(bytea, bytea) is IMMUTABLE: its result is by definition
 * the exact fine-tune the delta was made from, checked by SHA-256, for any
 * build.  delta_compress(bytea, bytea, int) is only STABLE: the same inputs
 * always give a valid delta, but its exact bytes may change with the zstd
 * library version, so it must not be trusted inside an index expression.
 *
 * The routing objects at the end (tables, report view, route_* functions,
 * cache-invalidation triggers) follow docs/ROUTING.md.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sparse" to load this file. \quit

CREATE FUNCTION sparse_version()
RETURNS text
AS 'MODULE_PATHNAME', 'sparse_version'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION sparse_version() IS
'version of the sparse core library linked into the extension';

CREATE FUNCTION delta_estimate(
    base text,
    ft text,
    sample_fraction float8 DEFAULT 0.01,
    OUT base_bytes bigint,
    OUT ft_bytes bigint,
    OUT est_delta_bytes bigint,
    OUT est_compression float8,
    OUT savings_pct float8,
    OUT tensors_total bigint,
    OUT tensors_identical bigint,
    OUT tensors_changed bigint,
    OUT tensors_unpaired bigint,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_delta_estimate'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION delta_estimate(text, text, float8) IS
'estimate the size of the delta of ft against base (files or model directories) by encoding a sample of sample_fraction of the tensor bytes';

CREATE FUNCTION delta_compress(
    base text,
    ft text,
    "out" text,
    level int DEFAULT 3,
    OUT delta_path text,
    OUT ft_bytes bigint,
    OUT delta_bytes bigint,
    OUT compression_ratio float8,
    OUT savings_pct float8,
    OUT ft_sha256 text,
    OUT base_sha256 text,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_delta_compress'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE COST 100000;

COMMENT ON FUNCTION delta_compress(text, text, text, int) IS
'write the lossless delta of ft against base to the new file out, at level 1..19 (zstd''s level for byte planes; float tensors are context-modelled from level 3 for fine-tunes up to 256 MiB, from level 10 for any size)';

CREATE FUNCTION delta_apply(
    base text,
    delta text,
    "out" text,
    OUT out_path text,
    OUT bytes bigint,
    OUT sha256 text,
    OUT verified bool,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_delta_apply'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE COST 100000;

COMMENT ON FUNCTION delta_apply(text, text, text) IS
'rebuild the fine-tune from base and delta into the new path out, checking the base (its fingerprint; SHA-256 for deltas from before fingerprints) and every rebuilt file''s SHA-256';

CREATE FUNCTION delta_verify(
    base text,
    delta text,
    OUT out_path text,
    OUT bytes bigint,
    OUT sha256 text,
    OUT verified bool,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_delta_verify'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 100000;

COMMENT ON FUNCTION delta_verify(text, text) IS
'rebuild the fine-tune from base and delta in memory, checking the base (its fingerprint; SHA-256 for deltas from before fingerprints) and every rebuilt file''s SHA-256, writing nothing (out_path is NULL)';

CREATE FUNCTION delta_info(
    delta text,
    OUT name text,
    OUT bytes bigint,
    OUT delta_bytes bigint,
    OUT sha256 text,
    OUT method text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sparse_delta_info'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 1000 ROWS 10;

COMMENT ON FUNCTION delta_info(text) IS
'list the files a delta file rebuilds: name, size, delta bytes spent, SHA-256, method';

CREATE FUNCTION delta_info(
    delta bytea,
    OUT name text,
    OUT bytes bigint,
    OUT delta_bytes bigint,
    OUT sha256 text,
    OUT method text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sparse_delta_info_bytea'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 1000 ROWS 1;

COMMENT ON FUNCTION delta_info(bytea) IS
'list the file a delta held as bytea rebuilds (same columns as delta_info(text))';

CREATE FUNCTION dataset_delta_estimate(
    base text,
    derived text,
    sample_rows int DEFAULT 1000,
    OUT base_bytes bigint,
    OUT derived_bytes bigint,
    OUT rows_sampled bigint,
    OUT rows_shared_pct float8,
    OUT est_delta_bytes bigint,
    OUT savings_pct float8,
    OUT format text,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_dataset_delta_estimate'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION dataset_delta_estimate(text, text, int) IS
'estimate the size of the delta of the derived dataset against base (files or directories of shards) by coding sample_rows derived rows';

CREATE FUNCTION dataset_delta_compress(
    base text,
    derived text,
    "out" text,
    level int DEFAULT 3,
    OUT delta_path text,
    OUT ft_bytes bigint,
    OUT delta_bytes bigint,
    OUT compression_ratio float8,
    OUT savings_pct float8,
    OUT ft_sha256 text,
    OUT base_sha256 text,
    OUT elapsed_ms float8,
    OUT rows_total bigint,
    OUT rows_shared bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_dataset_delta_compress'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE COST 100000;

COMMENT ON FUNCTION dataset_delta_compress(text, text, text, int) IS
'write the lossless row-level delta of the derived dataset against base to the new file out; level 1..19 (the default 3 codes new rows at zstd 19, Parquet pages at the level given); delta_apply rebuilds it';

CREATE FUNCTION delta_compress(base bytea, ft bytea, level int DEFAULT 3)
RETURNS bytea
AS 'MODULE_PATHNAME', 'sparse_delta_compress_bytea'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 100000;

COMMENT ON FUNCTION delta_compress(bytea, bytea, int) IS
'lossless delta of the safetensors bytes ft against base, at level 1..19 as delta_compress (no file access)';

CREATE FUNCTION delta_apply(base bytea, delta bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'sparse_delta_apply_bytea'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 100000;

COMMENT ON FUNCTION delta_apply(bytea, bytea) IS
'rebuild the safetensors bytes of the fine-tune from base and a bytea delta, checking its SHA-256 (no file access)';

-- Security: the file functions read and create files as the server's OS
-- user.  Nobody but superusers may call them until an administrator grants
-- EXECUTE; the C code then still demands pg_read_server_files (and
-- pg_write_server_files for the three that create files).
REVOKE EXECUTE ON FUNCTION delta_estimate(text, text, float8) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION delta_compress(text, text, text, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION delta_apply(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION delta_verify(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION delta_info(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dataset_delta_estimate(text, text, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dataset_delta_compress(text, text, text, int) FROM PUBLIC;

-- ==== smart routing (docs/ROUTING.md, pg/route_pg.c) =======================
--
-- Four tables, one report view, five functions and two statement triggers.
-- The tables are configuration and history the user owns, so
-- pg_extension_config_dump makes pg_dump keep their rows (and the sequences'
-- positions).  Only the extension owner can read or write them until an
-- administrator grants access: route_decision needs SELECT on
-- sparse_route_catalog and sparse_route_model (and INSERT on sparse_route_log
-- with sparse.route_log on); route_train needs SELECT on the feedback and the
-- log and DELETE and INSERT on sparse_route_model.  The functions run with
-- the caller's rights (no SECURITY DEFINER), so those grants are the gate.

CREATE TABLE sparse_route_catalog (
    model_id            text PRIMARY KEY,
    family              text,
    hardware            text,
    cost_per_1m_tokens  float8 NOT NULL CHECK (cost_per_1m_tokens >= 0),
    context_window      int    NOT NULL CHECK (context_window > 0),
    quality_simple      float8 NOT NULL CHECK (quality_simple   BETWEEN 0 AND 1),
    quality_moderate    float8 NOT NULL CHECK (quality_moderate BETWEEN 0 AND 1),
    quality_complex     float8 NOT NULL CHECK (quality_complex  BETWEEN 0 AND 1),
    enabled             bool   NOT NULL DEFAULT true);

COMMENT ON TABLE sparse_route_catalog IS
'models that may serve requests: price per million tokens, context window, prior quality per complexity; route_decision reads it (cached per connection)';

CREATE TABLE sparse_route_feedback (
    id        bigserial PRIMARY KEY,
    prompt    text   NOT NULL,
    model_id  text   NOT NULL,
    quality   float8 NOT NULL CHECK (quality BETWEEN 0 AND 1),
    at        timestamptz NOT NULL DEFAULT now());

COMMENT ON TABLE sparse_route_feedback IS
'quality (0-1) observed for a prompt on a model; route_train learns the predictors from it';

CREATE TABLE sparse_route_log (
    id                              bigserial PRIMARY KEY,
    at                              timestamptz NOT NULL DEFAULT now(),
    request_id                      text,
    prompt_hash                     bigint NOT NULL,
    prompt                          text,
    features                        int4[] NOT NULL,
    requested_model                 text NOT NULL,
    recommended_model               text NOT NULL,
    served_model                    text NOT NULL,
    routed                          bool NOT NULL,
    complexity                      text NOT NULL,
    est_tokens                      bigint NOT NULL,
    requested_cost_per_1m_tokens    float8,
    recommended_cost_per_1m_tokens  float8,
    served_cost_per_1m_tokens       float8,
    predicted_quality               float8,
    observed_quality                float8 CHECK (observed_quality BETWEEN 0 AND 1));

COMMENT ON TABLE sparse_route_log IS
'one row per route_decision call while sparse.route_log is on; the application fills observed_quality, which route_train also learns from';
COMMENT ON COLUMN sparse_route_log.prompt_hash IS 'route_hash(prompt)';
COMMENT ON COLUMN sparse_route_log.prompt IS 'the raw prompt, only with sparse.route_log_prompts on';
COMMENT ON COLUMN sparse_route_log.features IS 'hashed feature slots of the prompt (common/route.h)';
COMMENT ON COLUMN sparse_route_log.est_tokens IS 'estimated tokens of the whole prompt (every message of a chat transcript) plus max_tokens';
COMMENT ON COLUMN sparse_route_log.predicted_quality IS 'predicted quality of the served model';
COMMENT ON COLUMN sparse_route_log.observed_quality IS 'quality observed by the application (0-1), filled later';

CREATE TABLE sparse_route_model (
    model_id         text PRIMARY KEY,
    feature_version  int    NOT NULL,
    rows             bigint NOT NULL,
    epochs           int    NOT NULL,
    train_loss       float8 NOT NULL,
    trained_at       timestamptz NOT NULL DEFAULT now(),
    weights          bytea  NOT NULL);

COMMENT ON TABLE sparse_route_model IS
'learned quality predictors, one per catalog model with feedback; route_train replaces the whole content';
COMMENT ON COLUMN sparse_route_model.weights IS
'"SPRW", feature version, dimension bits, bias and 4096 float32 weights (2^12 hashed feature slots), little-endian (common/route.h)';

COMMENT ON SEQUENCE sparse_route_feedback_id_seq IS 'ids of sparse_route_feedback rows';
COMMENT ON SEQUENCE sparse_route_log_id_seq IS 'ids of sparse_route_log rows';

SELECT pg_catalog.pg_extension_config_dump('sparse_route_catalog', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_route_feedback', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_route_feedback_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_route_log', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_route_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_route_model', '');

-- Every backend caches the catalog and the predictors; a change to either
-- table queues a relcache invalidation that makes each backend reload.
CREATE FUNCTION sparse_route_invalidate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'sparse_route_invalidate'
LANGUAGE C;

COMMENT ON FUNCTION sparse_route_invalidate() IS
'statement trigger: make every connection reload its cached routing catalog and predictors';

CREATE TRIGGER sparse_route_catalog_invalidate
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sparse_route_catalog
FOR EACH STATEMENT EXECUTE FUNCTION sparse_route_invalidate();

COMMENT ON TRIGGER sparse_route_catalog_invalidate ON sparse_route_catalog IS
'a catalog change makes every connection reload its routing cache';

CREATE TRIGGER sparse_route_model_invalidate
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sparse_route_model
FOR EACH STATEMENT EXECUTE FUNCTION sparse_route_invalidate();

COMMENT ON TRIGGER sparse_route_model_invalidate ON sparse_route_model IS
'new predictors make every connection reload its routing cache';

-- Pure: same text, same answer, in any session or build of this version.
CREATE FUNCTION route_classify(
    prompt text,
    max_tokens int DEFAULT 100,
    OUT complexity text,
    OUT score float8,
    OUT est_prompt_tokens int,
    OUT signals text)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_route_classify'
LANGUAGE C IMMUTABLE PARALLEL SAFE COST 10;

COMMENT ON FUNCTION route_classify(text, int) IS
'complexity (simple, moderate, complex) of a prompt asking for up to max_tokens tokens, with its score (0-1), estimated prompt tokens and the signals seen; of a JSON chat transcript only the last user message counts';

-- VOLATILE: with sparse.route_log on it inserts into sparse_route_log.
-- The row of route_decision, as a named type rather than OUT parameters:
-- the executor then takes its descriptor from the type cache instead of
-- rebuilding it from pg_proc on every execution (about 6% of the backend's
-- time per decision under pgbench).
CREATE TYPE route_decision_result AS (
    complexity text,
    complexity_score float8,
    requested_model text,
    recommended_model text,
    recommended_hardware text,
    estimated_cost_per_1m_tokens float8,
    requested_cost_per_1m_tokens float8,
    cost_savings_pct float8,
    predicted_quality float8,
    requested_predicted_quality float8,
    routed bool,
    reason text);

COMMENT ON TYPE route_decision_result IS
'the row route_decision returns';

CREATE FUNCTION route_decision(
    requested_model text,
    prompt text,
    max_tokens int DEFAULT 100,
    quality_threshold float8 DEFAULT 0.85,
    cost_priority bool DEFAULT true,
    request_id text DEFAULT NULL)
RETURNS route_decision_result
AS 'MODULE_PATHNAME', 'sparse_route_decision'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 10;

COMMENT ON FUNCTION route_decision(text, text, int, float8, bool, text) IS
'which model should serve a request: the cheapest enabled model whose context fits and whose predicted quality is at least quality_threshold times the requested model''s (cost_priority false: the best among cheaper ones); sparse.routing_percentage of the requests (by request_id, else prompt) are routed';

-- STABLE: reads the cached catalog; PARALLEL RESTRICTED: loading the cache
-- takes a fresh snapshot, which a parallel worker cannot.
CREATE FUNCTION route_predict(prompt text, model_id text)
RETURNS float8
AS 'MODULE_PATHNAME', 'sparse_route_predict'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED COST 10;

COMMENT ON FUNCTION route_predict(text, text) IS
'predicted quality (0-1) of a catalog model on a prompt, as route_decision uses it with the default max_tokens: the learned predictor, else the prior for the prompt''s complexity; NULL for a model not in the catalog';

CREATE FUNCTION route_train(
    OUT rows bigint,
    OUT models int,
    OUT epochs int,
    OUT train_loss float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_route_train'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 100000;

COMMENT ON FUNCTION route_train() IS
'learn one quality predictor per catalog model from sparse_route_feedback and the logged requests with an observed quality, and replace sparse_route_model with them; the same rows give bit-identical weights';

CREATE FUNCTION route_hash(text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'sparse_route_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION route_hash(text) IS
'XXH3-64 (seed 0) of the UTF-8 bytes as a signed bigint, the hash route_decision uses for the rollout and route_train for ordering';

-- Costs in catalog money (price per million tokens times est_tokens / 1e6).
-- Requests whose model is not in the catalog have no prices: they count in
-- requests but add nothing to the costs.  A savings column is NULL without
-- any priced request, and 0 when the requested cost is 0.
CREATE VIEW sparse_routing_report AS
WITH costs AS (
    SELECT requested_model, routed, observed_quality,
           est_tokens * requested_cost_per_1m_tokens / 1e6::float8 AS requested_cost,
           est_tokens * recommended_cost_per_1m_tokens / 1e6::float8 AS recommended_cost,
           est_tokens * served_cost_per_1m_tokens / 1e6::float8 AS served_cost
      FROM sparse_route_log),
sums AS (
    SELECT requested_model,
           count(*) AS requests,
           count(*) FILTER (WHERE routed) AS routed,
           sum(requested_cost) AS requested_cost,
           sum(recommended_cost) AS recommended_cost,
           sum(served_cost) AS served_cost,
           avg(observed_quality) FILTER (WHERE routed) AS quality_routed,
           avg(observed_quality) FILTER (WHERE NOT routed) AS quality_not_routed,
           count(observed_quality) FILTER (WHERE routed) AS observed_routed,
           count(observed_quality) FILTER (WHERE NOT routed) AS observed_not_routed
      FROM costs
     GROUP BY GROUPING SETS ((requested_model), ()))
SELECT requested_model,
       requests,
       routed,
       CASE WHEN requests > 0 THEN 100.0::float8 * routed / requests END AS routed_pct,
       requested_cost,
       recommended_cost,
       served_cost,
       CASE WHEN requested_cost > 0 THEN 100.0::float8 * (1 - served_cost / requested_cost)
            WHEN requested_cost = 0 THEN 0::float8 END AS savings_pct,
       CASE WHEN requested_cost > 0 THEN 100.0::float8 * (1 - recommended_cost / requested_cost)
            WHEN requested_cost = 0 THEN 0::float8 END AS potential_savings_pct,
       quality_routed,
       quality_not_routed,
       observed_routed,
       observed_not_routed
  FROM sums
 ORDER BY requested_model NULLS LAST;

COMMENT ON VIEW sparse_routing_report IS
'routing economics from sparse_route_log: per requested model plus a total row (requested_model NULL): requests, routed share, costs at the requested, recommended and served prices, savings, mean observed quality of routed and not routed requests';

-- ==== hub storage: decisions, jobs, report (pg/store_pg.c, docs/STORAGE.md) ===
--
-- The hub keeps its own tables; a trigger it attaches (sparse_decide_storage)
-- records one sparse_storage row per object and queues a sparse_jobs row for
-- each 'delta' decision.  Workers (sparse_run_jobs in here, or `sparse
-- worker` processes on other machines) claim jobs with FOR UPDATE SKIP
-- LOCKED and a lease, write the delta with sparse_store_run and record the
-- result in the transaction that completes the job.  Everything runs with
-- the caller's rights: the inserting role needs pg_read_server_files (the
-- estimate reads the files) and the worker's role pg_write_server_files as
-- well, plus the table grants below, as for the routing tables.

CREATE TABLE sparse_storage (
    object_id        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('model', 'dataset')),
    path             text NOT NULL,
    base_object_id   text,
    base_path        text,
    decision         text NOT NULL CHECK (decision IN ('delta', 'full', 'pending', 'error')),
    est_savings_pct  float8,
    original_bytes   bigint CHECK (original_bytes >= 0),
    stored_bytes     bigint CHECK (stored_bytes >= 0),
    delta_path       text,
    ft_sha256        text,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    compressed_at    timestamptz,
    error            text,
    PRIMARY KEY (object_id, kind),
    CHECK (compressed_at IS NULL OR (decision = 'delta' AND delta_path IS NOT NULL
                                     AND stored_bytes IS NOT NULL AND ft_sha256 IS NOT NULL)));

COMMENT ON TABLE sparse_storage IS
'one row per hub object (model or dataset): how it is stored (delta, full, pending, error), the estimate behind the decision, and once a job ran the delta''s path, size and the original''s SHA-256';
COMMENT ON COLUMN sparse_storage.base_object_id IS 'the object whose path is base_path, when the hub registered it too';
COMMENT ON COLUMN sparse_storage.stored_bytes IS 'bytes stored: the delta once compressed, the original for full';
COMMENT ON COLUMN sparse_storage.ft_sha256 IS 'SHA-256 of the original (for a directory, of its manifest), checked by rebuilding the delta';
COMMENT ON COLUMN sparse_storage.compressed_at IS 'when a job wrote and verified the delta; NULL while the delta is only decided';

CREATE TABLE sparse_jobs (
    job_id         bigserial PRIMARY KEY,
    object_id      text NOT NULL,
    kind           text NOT NULL,
    state          text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts       int  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts   int  NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    lease_holder   text,
    lease_expires  timestamptz,
    last_error     text,
    retry_at       timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    FOREIGN KEY (object_id, kind) REFERENCES sparse_storage ON DELETE CASCADE);

COMMENT ON TABLE sparse_jobs IS
'the migration queue: one job per object to bring to its decided storage; claimed with FOR UPDATE SKIP LOCKED and a lease (sparse_claim_job), taken over when the lease expires, claimed again sparse.retry_delay after a failure (retry_at), failed after max_attempts';

-- at most one queued or running job per object
CREATE UNIQUE INDEX sparse_jobs_active ON sparse_jobs (object_id, kind)
    WHERE state IN ('queued', 'running');
CREATE INDEX sparse_jobs_open ON sparse_jobs (job_id) WHERE state IN ('queued', 'running');

COMMENT ON COLUMN sparse_jobs.retry_at IS
'after a failed attempt, the job is not claimed before this time (sparse.retry_delay, doubled at each further failure)';

COMMENT ON SEQUENCE sparse_jobs_job_id_seq IS 'ids of sparse_jobs rows';

SELECT pg_catalog.pg_extension_config_dump('sparse_storage', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('sparse_jobs_job_id_seq', '');

CREATE FUNCTION sparse_setting(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'sparse_setting'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION sparse_setting(text) IS
'current value of a sparse.* setting, as current_setting gives it, but defined even before the extension''s library is loaded in this session';

CREATE FUNCTION sparse_store_estimate(
    kind text,
    base text,
    path text,
    OUT original_bytes bigint,
    OUT est_delta_bytes bigint,
    OUT savings_pct float8,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_store_estimate'
LANGUAGE C VOLATILE PARALLEL SAFE COST 10000;

COMMENT ON FUNCTION sparse_store_estimate(text, text, text) IS
'the estimate a storage decision rests on: delta_estimate for a model, dataset_delta_estimate for a dataset; with base NULL the size alone and no savings';

CREATE FUNCTION sparse_delta_path(object_id text, kind text, path text)
RETURNS text
AS 'MODULE_PATHNAME', 'sparse_delta_path'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION sparse_delta_path(text, text, text) IS
'where a job writes the delta of an object: sparse.delta_dir/KIND-ID.sdelta (the id percent-encoded), or PATH.sdelta when sparse.delta_dir is empty';

CREATE FUNCTION sparse_store_run(
    kind text,
    base text,
    path text,
    "out" text,
    level int DEFAULT 3,
    OUT delta_path text,
    OUT original_bytes bigint,
    OUT delta_bytes bigint,
    OUT ft_sha256 text,
    OUT elapsed_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'sparse_store_run'
LANGUAGE C VOLATILE PARALLEL UNSAFE COST 100000;

COMMENT ON FUNCTION sparse_store_run(text, text, text, text, int) IS
'carry out a delta decision: remove what an interrupted attempt left at out (its temporary files, a sparse delta never recorded), write the delta there and rebuild it to check the SHA-256';

REVOKE EXECUTE ON FUNCTION sparse_store_estimate(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION sparse_store_run(text, text, text, text, int) FROM PUBLIC;

-- Record the decision for an object from an estimate (or its error), and
-- queue a job for a 'delta' unless one is already queued or running.
CREATE FUNCTION sparse_set_decision(
    object_id text, kind text, path text, base_path text,
    est_savings_pct float8, original_bytes bigint, error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    dec      text;
    min_pct  float8;
BEGIN
    IF kind IS NULL OR kind NOT IN ('model', 'dataset') THEN
        RAISE EXCEPTION 'kind must be ''model'' or ''dataset'', not %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    min_pct := CASE kind WHEN 'model' THEN sparse_setting('sparse.model_min_savings_pct')
                         ELSE sparse_setting('sparse.dataset_min_savings_pct') END::float8;
    dec := CASE WHEN error IS NOT NULL THEN 'error'
                WHEN base_path IS NULL THEN 'full'
                WHEN est_savings_pct >= min_pct THEN 'delta'
                ELSE 'full' END;
    INSERT INTO sparse_storage AS s
           (object_id, kind, path, base_object_id, base_path, decision, est_savings_pct,
            original_bytes, stored_bytes, error)
    VALUES ($1, $2, $3,
            (SELECT b.object_id FROM sparse_storage b
              WHERE b.kind = $2 AND b.path = $4 ORDER BY b.object_id LIMIT 1),
            $4, dec, $5, $6, CASE WHEN dec = 'full' THEN $6 END, $7)
    ON CONFLICT ON CONSTRAINT sparse_storage_pkey DO UPDATE
       SET path = EXCLUDED.path, base_object_id = EXCLUDED.base_object_id,
           base_path = EXCLUDED.base_path, decision = EXCLUDED.decision,
           est_savings_pct = EXCLUDED.est_savings_pct, original_bytes = EXCLUDED.original_bytes,
           stored_bytes = EXCLUDED.stored_bytes, delta_path = NULL, ft_sha256 = NULL,
           decided_at = now(), compressed_at = NULL, error = EXCLUDED.error;
    IF dec = 'delta' THEN
        INSERT INTO sparse_jobs (object_id, kind) VALUES ($1, $2)
        ON CONFLICT (object_id, kind) WHERE state IN ('queued', 'running') DO NOTHING;
    END IF;
    RETURN dec;
END $$;

COMMENT ON FUNCTION sparse_set_decision(text, text, text, text, float8, bigint, text) IS
'record the storage decision of an object from its estimate (error given: ''error''; no base: ''full''; else ''delta'' at or above sparse.model_min_savings_pct / sparse.dataset_min_savings_pct) and queue a job for a delta';

-- Estimate and decide.  A failed estimate is recorded as 'error' (the
-- insert that triggered it goes on) unless sparse.strict is on.  WHEN
-- OTHERS does not catch a query cancel: a cancelled insert stays cancelled.
CREATE FUNCTION sparse_decide(object_id text, kind text, path text, base_path text)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    pct    float8;
    bytes  bigint;
    err    text;
BEGIN
    BEGIN
        SELECT e.savings_pct, e.original_bytes FROM sparse_store_estimate($2, $4, $3) e INTO pct, bytes;
    EXCEPTION WHEN OTHERS THEN
        IF sparse_setting('sparse.strict')::bool THEN
            RAISE;
        END IF;
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
    END;
    RETURN sparse_set_decision($1, $2, $3, $4, pct, bytes, err);
END $$;

COMMENT ON FUNCTION sparse_decide(text, text, text, text) IS
'estimate an object against its base and record the decision (sparse_set_decision); a failed estimate is recorded as ''error'' unless sparse.strict is on';

-- The trigger a hub attaches to its own table, naming its columns:
--   CREATE TRIGGER models_storage AFTER INSERT OR UPDATE OF id, path, base_path OR DELETE ON models
--     FOR EACH ROW EXECUTE FUNCTION sparse_decide_storage('id', 'path', 'base_path', 'model');
-- A deleted row (or the old id of a row whose id changed) is forgotten: its
-- sparse_storage row and jobs go, so the savings report no longer counts
-- it; a delta file already written stays on disk (sparse never deletes a
-- file it did not just write).
CREATE FUNCTION sparse_decide_storage()
RETURNS trigger
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_row  jsonb;
    old_row  jsonb;
    col      text;
BEGIN
    -- AFTER only: as a BEFORE trigger its NULL result would drop the row
    IF TG_NARGS <> 4 OR TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER' THEN
        RAISE EXCEPTION 'sparse_decide_storage must be an AFTER row trigger on INSERT, UPDATE or DELETE with 4 arguments: id column, path column, base path column, kind'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
    END IF;
    new_row := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) ELSE old_row END;
    FOREACH col IN ARRAY TG_ARGV[0:2] LOOP
        IF NOT new_row ? col THEN
            RAISE EXCEPTION 'sparse_decide_storage: table %.% has no column "%"',
                TG_TABLE_SCHEMA, TG_TABLE_NAME, col USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND old_row -> TG_ARGV[0] <> new_row -> TG_ARGV[0]) THEN
        DELETE FROM sparse_storage s
         WHERE s.object_id = old_row ->> TG_ARGV[0] AND s.kind = TG_ARGV[3];
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF old_row -> TG_ARGV[1] = new_row -> TG_ARGV[1] AND
           old_row -> TG_ARGV[2] = new_row -> TG_ARGV[2] AND
           old_row -> TG_ARGV[0] = new_row -> TG_ARGV[0] THEN
            RETURN NULL;
        END IF;
    END IF;
    IF new_row ->> TG_ARGV[0] IS NULL OR new_row ->> TG_ARGV[1] IS NULL THEN
        RETURN NULL;  -- nothing stored yet
    END IF;
    PERFORM sparse_decide(new_row ->> TG_ARGV[0], TG_ARGV[3], new_row ->> TG_ARGV[1],
                          new_row ->> TG_ARGV[2]);
    RETURN NULL;
END $$;

COMMENT ON FUNCTION sparse_decide_storage() IS
'AFTER row trigger for a hub table: sparse_decide_storage(id column, path column, base path column, ''model'' | ''dataset'') decides the storage of each inserted row (and of a row whose path or base changes) and queues a job for a delta; on DELETE (and for the old id of a row whose id changes) it forgets the object (its sparse_storage row and jobs; a delta file stays on disk)';

-- Claim the oldest open job for worker, for lease_seconds.  A queued job
-- waits for its retry_at.  A job whose lease expired is taken over (another
-- attempt); one whose lease expired on its last attempt becomes 'failed'.
-- SKIP LOCKED: concurrent workers never wait on each other or take the same
-- job.
CREATE FUNCTION sparse_claim_job(worker text, lease_seconds int DEFAULT 600)
RETURNS TABLE (job_id bigint, object_id text, kind text, path text, base_path text,
               decision text, attempts int)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF worker IS NULL OR lease_seconds IS NULL OR lease_seconds < 1 THEN
        RAISE EXCEPTION 'sparse_claim_job needs a worker name and lease_seconds >= 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH dead AS (
        SELECT j.job_id FROM sparse_jobs j
         WHERE j.state = 'running' AND j.lease_expires < clock_timestamp()
           AND j.attempts >= j.max_attempts
         FOR UPDATE SKIP LOCKED),
    failed AS (
        UPDATE sparse_jobs j
           SET state = 'failed', finished_at = clock_timestamp(),
               last_error = format('the lease of %s expired on attempt %s of %s', j.lease_holder,
                                   j.attempts, j.max_attempts)
          FROM dead WHERE j.job_id = dead.job_id
        RETURNING j.object_id, j.kind, j.last_error)
    UPDATE sparse_storage s SET decision = 'error', error = f.last_error
      FROM failed f WHERE s.object_id = f.object_id AND s.kind = f.kind;

    RETURN QUERY
    WITH next AS (
        SELECT j.job_id FROM sparse_jobs j
         WHERE j.state IN ('queued', 'running') AND j.attempts < j.max_attempts
           AND (j.state = 'queued' AND (j.retry_at IS NULL OR j.retry_at <= clock_timestamp())
                OR j.state = 'running' AND j.lease_expires < clock_timestamp())
         ORDER BY j.job_id
         LIMIT 1
         FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE sparse_jobs j
           SET state = 'running', attempts = j.attempts + 1, lease_holder = worker,
               lease_expires = clock_timestamp() + make_interval(secs => lease_seconds),
               started_at = clock_timestamp(), retry_at = NULL,
               last_error = CASE WHEN j.state = 'running'
                                 THEN format('taken over from %s after its lease expired', j.lease_holder)
                                 ELSE j.last_error END
          FROM next WHERE j.job_id = next.job_id
        RETURNING j.job_id, j.object_id, j.kind, j.attempts)
    SELECT c.job_id, c.object_id, c.kind, s.path, s.base_path, s.decision, c.attempts
      FROM claimed c JOIN sparse_storage s ON s.object_id = c.object_id AND s.kind = c.kind;
END $$;

COMMENT ON FUNCTION sparse_claim_job(text, int) IS
'claim the oldest queued job whose retry time has come (or one whose lease expired) for worker for lease_seconds; no row when there is none';

CREATE FUNCTION sparse_renew_lease(job_id bigint, worker text, lease_seconds int DEFAULT 600)
RETURNS bool
LANGUAGE sql VOLATILE AS $$
    UPDATE sparse_jobs j SET lease_expires = clock_timestamp() + make_interval(secs => $3)
     WHERE j.job_id = $1 AND j.state = 'running' AND j.lease_holder = $2
    RETURNING true;
$$;

COMMENT ON FUNCTION sparse_renew_lease(bigint, text, int) IS
'extend a running job''s lease; NULL when worker no longer holds it';

-- Finish a job: record its result in sparse_storage in this transaction.
-- False when worker no longer holds the job (its lease expired and another
-- worker took it over): the caller's work is then not recorded.  When the
-- object's path or base changed while the job ran, the job is queued again.
CREATE FUNCTION sparse_complete_job(
    job_id bigint, worker text, path text, base_path text,
    delta_path text DEFAULT NULL, original_bytes bigint DEFAULT NULL,
    stored_bytes bigint DEFAULT NULL, ft_sha256 text DEFAULT NULL)
RETURNS bool
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    j  record;
BEGIN
    SELECT * INTO j FROM sparse_jobs x
     WHERE x.job_id = $1 AND x.state = 'running' AND x.lease_holder = $2
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE sparse_storage s
       SET decision = CASE WHEN $5 IS NOT NULL THEN 'delta' ELSE s.decision END,
           delta_path = $5,
           original_bytes = coalesce($6, s.original_bytes),
           stored_bytes = CASE WHEN $5 IS NOT NULL THEN $7 ELSE s.stored_bytes END,
           ft_sha256 = $8,
           compressed_at = CASE WHEN $5 IS NOT NULL THEN clock_timestamp() END,
           error = NULL
     WHERE s.object_id = j.object_id AND s.kind = j.kind
       AND s.path = $3 AND s.base_path IS NOT DISTINCT FROM $4;
    IF NOT FOUND THEN
        -- not a failure of the attempt: it does not count
        UPDATE sparse_jobs x SET state = 'queued', attempts = greatest(x.attempts - 1, 0),
               lease_holder = NULL, lease_expires = NULL,
               last_error = 'the object''s path or base changed while the job ran'
         WHERE x.job_id = $1;
        RETURN false;
    END IF;
    UPDATE sparse_jobs x SET state = 'done', finished_at = clock_timestamp(), lease_expires = NULL
     WHERE x.job_id = $1;
    RETURN true;
END $$;

COMMENT ON FUNCTION sparse_complete_job(bigint, text, text, text, text, bigint, bigint, text) IS
'mark a job done and record its delta (path, sizes, SHA-256) in sparse_storage, in the caller''s transaction; false if worker lost the job';

-- A failed attempt: queued again, not to be claimed before sparse.retry_delay
-- seconds doubled once per earlier attempt (at most a day), or 'failed' (and
-- the object 'error') after max_attempts, or at once when permanent (the
-- same attempt would fail the same way: bad input, a path outside
-- sparse.root, a file in the way).  Returns the job's new state, NULL if
-- worker lost it.
CREATE FUNCTION sparse_fail_job(job_id bigint, worker text, error text,
                                permanent bool DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    j      record;
    delay  float8 := sparse_setting('sparse.retry_delay')::float8;
    perm   bool := coalesce($4, false);  -- NULL: an ordinary failure
BEGIN
    UPDATE sparse_jobs x
       SET state = CASE WHEN x.attempts >= x.max_attempts OR perm THEN 'failed' ELSE 'queued' END,
           last_error = $3, lease_holder = NULL, lease_expires = NULL,
           retry_at = CASE WHEN x.attempts < x.max_attempts AND NOT perm AND delay > 0
                           THEN clock_timestamp() + make_interval(
                                    secs => least(delay * 2 ^ greatest(x.attempts - 1, 0), 86400))
                      END,
           finished_at = CASE WHEN x.attempts >= x.max_attempts OR perm THEN clock_timestamp() END
     WHERE x.job_id = $1 AND x.state = 'running' AND x.lease_holder = $2
    RETURNING x.state, x.object_id, x.kind, x.attempts INTO j;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF j.state = 'failed' THEN
        UPDATE sparse_storage s
           SET decision = 'error',
               error = CASE WHEN perm THEN format('job %s failed and was not retried: %s', $1, $3)
                            ELSE format('job %s failed %s times; last: %s', $1, j.attempts, $3) END
         WHERE s.object_id = j.object_id AND s.kind = j.kind;
    END IF;
    RETURN j.state;
END $$;

COMMENT ON FUNCTION sparse_fail_job(bigint, text, text, bool) IS
'record a failed attempt: the job is queued again (claimed no sooner than sparse.retry_delay seconds later, doubled per earlier attempt), or failed (and its object''s decision ''error'') after max_attempts, or at once when permanent is true (an error that would recur: bad input, a path outside sparse.root, a file in the way)';

CREATE FUNCTION sparse_release_job(job_id bigint, worker text)
RETURNS bool
LANGUAGE sql VOLATILE AS $$
    UPDATE sparse_jobs j
       SET state = 'queued', attempts = greatest(j.attempts - 1, 0), lease_holder = NULL,
           lease_expires = NULL
     WHERE j.job_id = $1 AND j.state = 'running' AND j.lease_holder = $2
    RETURNING true;
$$;

COMMENT ON FUNCTION sparse_release_job(bigint, text) IS
'hand a running job back to the queue without counting the attempt (a worker told to stop); NULL when worker does not hold it';

-- Work one claimed job inside the database.
CREATE FUNCTION sparse_work_job(job_id bigint, worker text, object_id text, kind text,
                                path text, base_path text, decision text)
RETURNS bool
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    dec  text := $7;
    r    record;
BEGIN
    IF dec = 'pending' THEN
        dec := sparse_decide($3, $4, $5, $6);
    END IF;
    IF dec <> 'delta' THEN
        RETURN sparse_complete_job($1, $2, $5, $6);
    END IF;
    SELECT * INTO r FROM sparse_store_run($4, $6, $5, sparse_delta_path($3, $4, $5));
    RETURN sparse_complete_job($1, $2, $5, $6, r.delta_path, r.original_bytes,
                               r.delta_bytes, r.ft_sha256);
END $$;

COMMENT ON FUNCTION sparse_work_job(bigint, text, text, text, text, text, text) IS
'carry out one claimed job: decide a pending object, write and verify a delta, complete the job';

-- Run up to max_jobs jobs (NULL: until none is left) in this backend, for
-- small deployments; each failed attempt is recorded and the loop goes on (a
-- failed job waits for its retry time, so with sparse.retry_delay above 0 it
-- is tried again by a later run, not this one; a failure that would recur
-- fails its job at once).
CREATE FUNCTION sparse_run_jobs(max_jobs int DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    worker  text := format('backend %s on %s', pg_backend_pid(), coalesce(inet_server_addr()::text, 'local'));
    j       record;
    tried   int := 0;
    done    int := 0;
    err     text;
    code    text;
BEGIN
    IF max_jobs < 0 THEN
        RAISE EXCEPTION 'max_jobs must be at least 0, not %', max_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        EXIT WHEN max_jobs IS NOT NULL AND tried >= max_jobs;
        SELECT * INTO j FROM sparse_claim_job(worker, 86400);
        EXIT WHEN NOT FOUND;
        tried := tried + 1;
        BEGIN
            IF sparse_work_job(j.job_id, worker, j.object_id, j.kind, j.path, j.base_path, j.decision) THEN
                done := done + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, code = RETURNED_SQLSTATE;
            RAISE WARNING 'sparse job % (% %) failed: %', j.job_id, j.kind, j.object_id, err;
            -- the SQLSTATEs of the core's permanent errors (sp_error_permanent):
            -- invalid parameter, invalid safetensors, a file in the way, outside
            -- sparse.root or no permission, unsupported version, too large
            PERFORM sparse_fail_job(j.job_id, worker, err,
                                    code IN ('22023', '22P03', '58P02', '42501', '0A000', '54000'));
        END;
    END LOOP;
    RETURN done;
END $$;

COMMENT ON FUNCTION sparse_run_jobs(int) IS
'run up to max_jobs storage jobs (NULL: every one that can be claimed; a failed job waiting for its retry_at is left) in this session; returns how many completed; failures are recorded in sparse_jobs and sparse_storage, and one whose SQLSTATE says it would recur (bad input, a file in the way, outside sparse.root or no permission) fails its job without retries';

-- Bytes in GiB at sparse.storage_cost_per_gb_month.  An object counts as
-- stored in its delta only once a job wrote and verified it; until then,
-- and for 'full', 'pending' and 'error', it costs its original bytes.
CREATE VIEW sparse_savings_report AS
WITH o AS (
    SELECT kind, decision, coalesce(original_bytes, 0) AS original_bytes,
           CASE WHEN compressed_at IS NOT NULL THEN stored_bytes
                ELSE coalesce(original_bytes, 0) END AS stored_bytes,
           compressed_at IS NOT NULL AS is_delta
      FROM sparse_storage),
sums AS (
    SELECT kind, count(*) AS objects, count(*) FILTER (WHERE is_delta) AS objects_delta,
           count(*) FILTER (WHERE decision IN ('pending', 'error') OR (decision = 'delta' AND NOT is_delta)) AS objects_open,
           coalesce(sum(original_bytes), 0)::bigint AS original_bytes,
           coalesce(sum(stored_bytes), 0)::bigint AS stored_bytes
      FROM o GROUP BY GROUPING SETS ((kind), ()))
SELECT coalesce(kind, 'all') AS kind, objects, objects_delta, objects_open,
       original_bytes, stored_bytes, original_bytes - stored_bytes AS saved_bytes,
       CASE WHEN original_bytes > 0 THEN 100.0::float8 * (original_bytes - stored_bytes) / original_bytes END AS savings_pct,
       (original_bytes - stored_bytes) / 1073741824.0::float8
           * sparse_setting('sparse.storage_cost_per_gb_month')::float8 AS saved_per_month
  FROM sums
 ORDER BY kind IS NULL, kind;

COMMENT ON VIEW sparse_savings_report IS
'storage savings per kind and overall (kind ''all''): objects, objects stored as a verified delta, objects still open (pending, error, delta not yet written), original and stored bytes, saved bytes and percent, money saved per month at sparse.storage_cost_per_gb_month per GiB';
