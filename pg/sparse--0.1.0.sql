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
'write the lossless delta of ft against base to the new file out, at zstd level 1..19';

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
'rebuild the fine-tune from base and delta into the new path out, checking every SHA-256';

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
'rebuild the fine-tune from base and delta in memory and check every SHA-256, writing nothing (out_path is NULL)';

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
'lossless delta of the safetensors bytes ft against base, at zstd level 1..19 (no file access)';

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
