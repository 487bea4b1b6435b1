-- dataset.sql -- dataset_delta_estimate and dataset_delta_compress on the
-- small synthetic pairs of scripts/dataset-fixtures.sh (laid out under
-- /tmp/sparse_regress/data/ds): the estimate, the delta, its listing, the
-- round trip through delta_apply / delta_verify (the SHA-256 of the rebuilt
-- file, read back with pg_read_binary_file, equals that of the derived file),
-- a real JSONL pair rebuilt and its compression cancelled by statement_timeout,
-- every argument error with its exact message and SQLSTATE, and NULLs.
-- Privileges are in permissions.sql.  Sizes that depend on the coder are
-- only checked as ranges; row counts follow from the fixtures.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- SHA-256 of a server file, as sha256sum prints it
CREATE FUNCTION pg_temp.file_sha(path text) RETURNS text
LANGUAGE sql AS $$ SELECT encode(sha256(pg_read_binary_file(path)), 'hex') $$;

CREATE TEMP TABLE pairs (name text, base text, derived text);
INSERT INTO pairs VALUES
  ('csv', '/tmp/sparse_regress/data/ds/csv/base.csv',
   '/tmp/sparse_regress/data/ds/csv/derived.csv'),
  ('jsonl', '/tmp/sparse_regress/data/ds/jsonl/base.jsonl',
   '/tmp/sparse_regress/data/ds/jsonl/derived.jsonl'),
  ('shards', '/tmp/sparse_regress/data/ds/shards/base',
   '/tmp/sparse_regress/data/ds/shards/derived'),
  ('malformed', '/tmp/sparse_regress/data/ds/malformed/base.csv',
   '/tmp/sparse_regress/data/ds/malformed/derived.csv');

-- ==== estimate ====
CREATE TEMP TABLE estimated AS
  SELECT p.name, e.*
  FROM pairs p, LATERAL dataset_delta_estimate(p.base, p.derived) e;
SELECT name, base_bytes, derived_bytes, rows_sampled > 0 AS sampled, -- none for the CSV that does not cut
       rows_shared_pct BETWEEN 0 AND 100 AS pct_ok, est_delta_bytes > 0 AS positive,
       abs(savings_pct - 100 * (1 - est_delta_bytes::float8 / derived_bytes)) < 1e-9 AS savings_ok,
       elapsed_ms >= 0 AS timed
FROM estimated ORDER BY name;
-- the row format found, and the rows shared with the parent make the delta small
SELECT name, format, rows_shared_pct > 80 AS mostly_shared, savings_pct > 50 AS saves_over_50_pct
FROM estimated WHERE name <> 'malformed' ORDER BY name;
-- a smaller sample looks at fewer rows
SELECT s.rows_sampled BETWEEN 1 AND d.rows_sampled - 1 AS fewer
FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                            '/tmp/sparse_regress/data/ds/csv/derived.csv', 10) s,
     estimated d
WHERE d.name = 'csv';
-- a file against itself: every row shared
SELECT rows_shared_pct, savings_pct > 90 AS saves_over_90_pct
FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/jsonl/derived.jsonl',
                            '/tmp/sparse_regress/data/ds/jsonl/derived.jsonl');

-- ==== compress ====
CREATE TEMP TABLE compressed AS
  SELECT p.name, c.*
  FROM pairs p,
       LATERAL dataset_delta_compress(p.base, p.derived,
                                      '/tmp/sparse_regress/out/ds_' || p.name || '.delta') c;
SELECT c.name, c.delta_path, c.ft_bytes, c.rows_total, c.rows_shared,
       c.delta_bytes = (pg_stat_file(c.delta_path)).size AS size_ok,
       abs(c.compression_ratio - c.ft_bytes::float8 / c.delta_bytes) < 1e-9 * c.compression_ratio AS ratio_ok,
       abs(c.savings_pct - 100 * (1 - c.delta_bytes::float8 / c.ft_bytes)) < 1e-9 AS savings_ok,
       c.ft_sha256 ~ '^[0-9a-f]{64}$' AND c.base_sha256 ~ '^[0-9a-f]{64}$' AS sha_is_hex,
       c.elapsed_ms >= 0 AS timed
FROM compressed c ORDER BY c.name;
-- for a single file, ft_sha256 and base_sha256 are the files' own SHA-256
SELECT c.name, c.ft_sha256 = pg_temp.file_sha(p.derived) AS ft_sha_ok,
       c.base_sha256 = pg_temp.file_sha(p.base) AS base_sha_ok
FROM compressed c JOIN pairs p USING (name) WHERE p.name <> 'shards' ORDER BY c.name;
-- the shared rows make the delta much smaller than the derived data
SELECT name, savings_pct > 50 AS saves_over_50_pct
FROM compressed WHERE name <> 'malformed' ORDER BY name;
-- and the estimate was within a factor of 2 of the real size
SELECT c.name, e.est_delta_bytes BETWEEN c.delta_bytes / 2 AND c.delta_bytes * 2 AS estimate_close
FROM compressed c JOIN estimated e USING (name) WHERE c.name <> 'malformed' ORDER BY c.name;

-- ==== what the delta holds: one row per derived file, and how it was coded ====
SELECT c.name, i.name AS file, i.bytes, i.method, i.delta_bytes > 0 AS spent
FROM compressed c, LATERAL delta_info(c.delta_path) i ORDER BY c.name, i.name;
-- the SHA-256 it records is that of the derived file
SELECT c.name, i.sha256 = pg_temp.file_sha(p.derived) AS sha_ok
FROM compressed c JOIN pairs p USING (name), LATERAL delta_info(c.delta_path) i
WHERE p.name <> 'shards' ORDER BY c.name;
SELECT i.name AS file, i.sha256 = pg_temp.file_sha('/tmp/sparse_regress/data/ds/shards/derived/' || i.name) AS sha_ok
FROM delta_info('/tmp/sparse_regress/out/ds_shards.delta') i ORDER BY i.name;

-- ==== round trip: delta_apply rebuilds the derived data byte for byte ====
CREATE TEMP TABLE applied AS
  SELECT p.name, a.*
  FROM pairs p,
       LATERAL delta_apply(p.base, '/tmp/sparse_regress/out/ds_' || p.name || '.delta',
                           '/tmp/sparse_regress/out/ds_' || p.name || '.rebuilt') a;
SELECT a.name, a.out_path, a.bytes = c.ft_bytes AS bytes_ok, a.verified,
       a.sha256 = c.ft_sha256 AS matches_compress
FROM applied a JOIN compressed c USING (name) ORDER BY a.name;
SELECT a.name, pg_temp.file_sha(a.out_path) = pg_temp.file_sha(p.derived) AS same_sha256
FROM applied a JOIN pairs p USING (name) WHERE p.name <> 'shards' ORDER BY a.name;
SELECT f AS file,
       pg_temp.file_sha('/tmp/sparse_regress/out/ds_shards.rebuilt/' || f)
         = pg_temp.file_sha('/tmp/sparse_regress/data/ds/shards/derived/' || f) AS same_sha256
FROM pg_ls_dir('/tmp/sparse_regress/out/ds_shards.rebuilt') f ORDER BY f;
-- delta_verify does the same in memory
SELECT p.name, v.out_path IS NULL AS wrote_nothing, v.verified, v.sha256 = c.ft_sha256 AS matches_compress
FROM pairs p JOIN compressed c USING (name),
     LATERAL delta_verify(p.base, c.delta_path) v ORDER BY p.name;

-- level 19 describes the same derived file as the default level
SELECT d3.ft_sha256 = d19.ft_sha256 AS same_derived, d3.rows_total = d19.rows_total AS same_rows,
       d19.delta_bytes <= d3.delta_bytes * 1.05 AS level19_not_larger
FROM compressed d3,
     dataset_delta_compress('/tmp/sparse_regress/data/ds/jsonl/base.jsonl',
                            '/tmp/sparse_regress/data/ds/jsonl/derived.jsonl',
                            '/tmp/sparse_regress/out/ds_jsonl_19.delta', 19) d19
WHERE d3.name = 'jsonl';

-- ==== a real pair (gsm8k, JSONL), and cancelling it ====
-- the reference: the work run to completion (level 19 is slow on purpose)
SELECT clock_timestamp() AS t0 \gset
SELECT rows_total, savings_pct > 50 AS saves_over_50_pct,
       ft_sha256 = pg_temp.file_sha('/tmp/sparse_regress/data/ds/gsm8k/derived.jsonl') AS ft_sha_ok
FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/gsm8k/base.jsonl',
                            '/tmp/sparse_regress/data/ds/gsm8k/derived.jsonl',
                            '/tmp/sparse_regress/out/ds_gsm8k.delta', 19);
SELECT clock_timestamp() - :'t0'::timestamptz AS full_run \gset
SELECT verified, pg_temp.file_sha(out_path)
                 = pg_temp.file_sha('/tmp/sparse_regress/data/ds/gsm8k/derived.jsonl') AS same_sha256
FROM delta_apply('/tmp/sparse_regress/data/ds/gsm8k/base.jsonl', '/tmp/sparse_regress/out/ds_gsm8k.delta',
                 '/tmp/sparse_regress/out/ds_gsm8k.rebuilt.jsonl');
-- the same work, cancelled by statement_timeout: 57014, stopped early, nothing left
SET statement_timeout = '20ms';
SELECT clock_timestamp() AS t0 \gset
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/gsm8k/base.jsonl',
                                     '/tmp/sparse_regress/data/ds/gsm8k/derived.jsonl',
                                     '/tmp/sparse_regress/out/cancel/ds_gsm8k.delta', 19);
\echo :SQLSTATE
RESET statement_timeout;
SELECT clock_timestamp() - :'t0'::timestamptz < :'full_run'::interval / 2 AS stopped_early;
SELECT count(*) AS files_left FROM pg_ls_dir('/tmp/sparse_regress/out/cancel');

-- ==== errors ====
-- sample_rows outside 1..10000000, level outside 1..19 (22023)
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv', 0);
\echo :SQLSTATE
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv', -5);
\echo :SQLSTATE
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv', 10000001);
\echo :SQLSTATE
-- the bounds themselves are accepted
SELECT rows_sampled > 0 AS accepted
FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                            '/tmp/sparse_regress/data/ds/csv/derived.csv', 10000000);
SELECT rows_sampled > 0 AS accepted
FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                            '/tmp/sparse_regress/data/ds/csv/derived.csv', 1);
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/ds_never.delta', 0);
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/ds_never.delta', 20);
\echo :SQLSTATE
-- an empty path (22023)
SELECT * FROM dataset_delta_estimate('', '/tmp/sparse_regress/data/ds/csv/derived.csv');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv', '');
\echo :SQLSTATE
-- a missing input or output directory (58P01)
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/nope.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/nope.csv',
                                     '/tmp/sparse_regress/out/ds_never.delta');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/no_such_dir/ds.delta');
\echo :SQLSTATE
-- the output exists (58P02): it is left as it was
CREATE TEMP TABLE csv_delta AS
  SELECT pg_read_binary_file('/tmp/sparse_regress/out/ds_csv.delta') AS bytes;
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/ds_csv.delta');
\echo :SQLSTATE
SELECT pg_read_binary_file('/tmp/sparse_regress/out/ds_csv.delta') = bytes AS untouched
FROM csv_delta;
-- a dataset delta applied to another parent (22000)
SELECT * FROM delta_apply('/tmp/sparse_regress/data/ds/jsonl/base.jsonl',
                          '/tmp/sparse_regress/out/ds_csv.delta',
                          '/tmp/sparse_regress/out/ds_never.csv');
\echo :SQLSTATE
-- outside sparse.root (42501)
SET sparse.root = '/tmp/sparse_regress/data/ds/csv';
SELECT rows_sampled > 0 AS inside_works
FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                            '/tmp/sparse_regress/data/ds/csv/derived.csv');
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/jsonl/derived.jsonl');
\echo :SQLSTATE
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/../jsonl/base.jsonl',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/ds_never.delta');
\echo :SQLSTATE
RESET sparse.root;
-- nothing was written by the refused calls
SELECT count(*) AS leftovers FROM pg_ls_dir('/tmp/sparse_regress/out') f WHERE f LIKE '%ds_never%';

-- ==== NULL in, NULL out (STRICT) ====
SELECT count(*) AS calls, count(format) AS non_null
FROM dataset_delta_estimate(NULL, '/tmp/sparse_regress/data/ds/csv/derived.csv');
SELECT count(*) AS calls, count(delta_path) AS non_null
FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                            '/tmp/sparse_regress/data/ds/csv/derived.csv',
                            '/tmp/sparse_regress/out/ds_never.delta', NULL);
SELECT dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv', NULL, 10) IS NULL AS is_null;
