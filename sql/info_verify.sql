-- info_verify.sql -- delta_info lists what a delta rebuilds (file and
-- directory deltas) and delta_verify rebuilds in memory, writes nothing and
-- reports the fine-tune's SHA-256.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/roberta/base.safetensors',
                                      '/tmp/sparse_regress/data/roberta/ft.safetensors',
                                      '/tmp/sparse_regress/out/info_roberta.delta');
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/dirpair/base',
                                      '/tmp/sparse_regress/data/dirpair/ft',
                                      '/tmp/sparse_regress/out/info_dir.delta');

-- one row for a single file: its size, digest and how it was stored
SELECT name, bytes, sha256, method, delta_bytes > 0 AS has_bytes,
       delta_bytes <= (pg_stat_file('/tmp/sparse_regress/out/info_roberta.delta')).size AS within_file
FROM delta_info('/tmp/sparse_regress/out/info_roberta.delta');

-- one row per file of a directory, sorted by name
SELECT name, bytes, method, delta_bytes > 0 AS has_bytes,
       sha256 = encode(sha256(pg_read_binary_file('/tmp/sparse_regress/data/dirpair/ft/' || name)), 'hex') AS sha_ok
FROM delta_info('/tmp/sparse_regress/out/info_dir.delta') ORDER BY name;
SELECT sum(bytes) = (SELECT ft_bytes FROM delta_estimate('/tmp/sparse_regress/data/dirpair/base',
                                                        '/tmp/sparse_regress/data/dirpair/ft')) AS sizes_add_up
FROM delta_info('/tmp/sparse_regress/out/info_dir.delta');

-- verify: the fine-tune's digest, no output path, nothing written
SELECT out_path, bytes, sha256, verified, elapsed_ms >= 0 AS timed
FROM delta_verify('/tmp/sparse_regress/data/roberta/base.safetensors',
                  '/tmp/sparse_regress/out/info_roberta.delta');
SELECT out_path IS NULL AS no_path, verified
FROM delta_verify('/tmp/sparse_regress/data/dirpair/base', '/tmp/sparse_regress/out/info_dir.delta');
SELECT count(*) AS files_in_out FROM pg_ls_dir('/tmp/sparse_regress/out') f WHERE f LIKE 'info%';
