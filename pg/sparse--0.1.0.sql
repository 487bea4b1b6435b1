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
