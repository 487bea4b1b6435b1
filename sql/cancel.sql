-- cancel.sql -- a long call honours statement_timeout: the core sees the
-- pending cancel through the interrupted hook, removes its temporary output
-- and returns; the binding then raises the usual 57014 error.  The timing
-- check compares with the same call run to completion, so it holds on a
-- slower machine too.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- the reference: the work run to completion (level 19 is slow on purpose)
SELECT clock_timestamp() AS t0 \gset
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/roberta/base.safetensors',
                                      '/tmp/sparse_regress/data/roberta/ft.safetensors',
                                      '/tmp/sparse_regress/out/cancel_full.delta', 19);
SELECT clock_timestamp() - :'t0'::timestamptz AS full_run \gset

-- the same work, cancelled by statement_timeout: the error a client sees
SET statement_timeout = '20ms';
SELECT clock_timestamp() AS t0 \gset
SELECT * FROM delta_compress('/tmp/sparse_regress/data/roberta/base.safetensors',
                             '/tmp/sparse_regress/data/roberta/ft.safetensors',
                             '/tmp/sparse_regress/out/cancel/roberta.delta', 19);
\echo :SQLSTATE
RESET statement_timeout;
-- it stopped well before the end of its work
SELECT clock_timestamp() - :'t0'::timestamptz < :'full_run'::interval / 2 AS stopped_early;
-- no output and no temporary file left in the output directory
SELECT count(*) AS files_left FROM pg_ls_dir('/tmp/sparse_regress/out/cancel');

-- verify and the in-memory functions stop too
SET statement_timeout = '1ms';
SELECT verified FROM delta_verify('/tmp/sparse_regress/data/roberta/base.safetensors',
                                  '/tmp/sparse_regress/out/cancel_full.delta');
\echo :SQLSTATE
SET statement_timeout = '20ms';
SELECT length(delta_compress(pg_read_binary_file('/tmp/sparse_regress/data/mlp/base.bf16.safetensors'),
                             pg_read_binary_file('/tmp/sparse_regress/data/mlp/ft.bf16.safetensors'), 19));
\echo :SQLSTATE
RESET statement_timeout;

-- the session goes on normally
SELECT verified FROM delta_verify('/tmp/sparse_regress/data/roberta/base.safetensors',
                                  '/tmp/sparse_regress/out/cancel_full.delta');
