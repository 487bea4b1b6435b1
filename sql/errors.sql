-- errors.sql -- every way a call can fail: the exact message, the detail or
-- hint where there is one, and the SQLSTATE (\echo :SQLSTATE after each
-- error) that sparse_raise() picks for the core's status.  Damaged deltas
-- are made from a good one with set_byte/overlay/substring and written to a
-- file with lo_export (superuser only, as these tests run).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- write bytes to a server file (lo_export is the core way to do that)
CREATE FUNCTION pg_temp.write_file(path text, data bytea) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  lo oid := lo_from_bytea(0, data);
BEGIN
  PERFORM lo_export(lo, path);
  PERFORM lo_unlink(lo);
END $$;

-- a good delta, as a file and as bytea
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                      '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                                      '/tmp/sparse_regress/out/err_gpt2.delta');
CREATE TEMP TABLE good AS
  SELECT pg_read_binary_file('/tmp/sparse_regress/data/gpt2/base.safetensors') AS base,
         pg_read_binary_file('/tmp/sparse_regress/data/gpt2/ft.safetensors') AS ft,
         pg_read_binary_file('/tmp/sparse_regress/out/err_gpt2.delta') AS delta;

-- ==== missing files (58P01) ====
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/nope.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/nope.safetensors',
                             '/tmp/sparse_regress/out/err_never.delta');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/no_such_dir/err.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/nope.delta',
                          '/tmp/sparse_regress/out/err_never.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                           '/tmp/sparse_regress/out/nope.delta');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/out/nope.delta');
\echo :SQLSTATE

-- ==== bad arguments (22023) ====
SELECT * FROM delta_estimate('', '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors', '');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/err_level.delta', 0);
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/err_level.delta', 20);
\echo :SQLSTATE
SELECT delta_compress(base, ft, -1) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, ft, 22) FROM good;
\echo :SQLSTATE
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors', 0);
\echo :SQLSTATE
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors', 1.5);
\echo :SQLSTATE
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors', 'NaN');
\echo :SQLSTATE
-- nothing was written by the refused calls
SELECT count(*) AS leftovers FROM pg_ls_dir('/tmp/sparse_regress/out') f WHERE f LIKE '%err_never%' OR f LIKE '%err_level%';

-- ==== outputs are never replaced (58P02) ====
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/err_gpt2.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/err_gpt2.delta',
                          '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT delta = pg_read_binary_file('/tmp/sparse_regress/out/err_gpt2.delta') AS delta_untouched FROM good;

-- ==== inputs that are not safetensors files (22P03) ====
-- (a file is parsed as safetensors when its name ends in .safetensors;
-- other files, like a model directory's JSON config, are delta-coded as bytes)
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/text.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/text.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/err_never.delta');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/truncated.safetensors',
                             '/tmp/sparse_regress/out/err_never.delta');
\echo :SQLSTATE
-- each header defect, through the bytea variant (no file needed)
SELECT delta_compress(base, '\x'::bytea) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\x0100000000000000'::bytea || convert_to('{', 'UTF8')) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\xffffffff00000000'::bytea || convert_to('{}', 'UTF8')) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\x0800000000000000'::bytea || convert_to('{"w":1}x', 'UTF8')) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\x3800000000000000'::bytea
       || convert_to('{"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}  ', 'UTF8')
       || '\x0000803f00000040'::bytea) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\x3800000000000000'::bytea
       || convert_to('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}  ', 'UTF8')
       || '\x0000803f00000040'::bytea) FROM good;
\echo :SQLSTATE
SELECT delta_compress(base, '\x3800000000000000'::bytea
       || convert_to('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}} ', 'UTF8')
       || '\x0000803f00000040'::bytea) FROM good;
\echo :SQLSTATE

-- ==== the wrong base (22000) ====
SELECT * FROM delta_apply('/tmp/sparse_regress/data/roberta/base.safetensors',
                          '/tmp/sparse_regress/out/err_gpt2.delta',
                          '/tmp/sparse_regress/out/err_never.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/ft.safetensors',
                           '/tmp/sparse_regress/out/err_gpt2.delta');
\echo :SQLSTATE
SELECT delta_apply(ft, delta) FROM good;
\echo :SQLSTATE

-- ==== damaged deltas (XX001), unknown versions (0A000) ====
-- Damage at fixed offsets in the first record (its content does not depend
-- on the codec) shows the exact message.  Damage in the middle of the data
-- is reported at a record offset that changes whenever the encoder does, so
-- error_of() shows those messages with the offset masked.
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'at byte [0-9]+', 'at byte N');
END $$;
SELECT pg_temp.write_file('/tmp/sparse_regress/out/err_flipped.delta',
                          set_byte(delta, 30, get_byte(delta, 30) # 255))
FROM good;
SELECT pg_temp.write_file('/tmp/sparse_regress/out/err_truncated.delta',
                          substring(delta FROM 1 FOR 40))
FROM good;
SELECT pg_temp.write_file('/tmp/sparse_regress/out/err_magic.delta',
                          overlay(delta PLACING '\x00000000'::bytea FROM 1))
FROM good;
SELECT pg_temp.write_file('/tmp/sparse_regress/out/err_version.delta', set_byte(delta, 8, 2))
FROM good;
SELECT pg_temp.write_file('/tmp/sparse_regress/out/err_middle.delta',
                          set_byte(delta, length(delta) / 2, get_byte(delta, length(delta) / 2) # 255))
FROM good;
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/err_flipped.delta',
                          '/tmp/sparse_regress/out/err_never.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                           '/tmp/sparse_regress/out/err_flipped.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/err_truncated.delta',
                          '/tmp/sparse_regress/out/err_never.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/out/err_truncated.delta');
\echo :SQLSTATE
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                           '/tmp/sparse_regress/out/err_magic.delta');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/data/gpt2/base.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/out/err_version.delta');
\echo :SQLSTATE
SELECT pg_temp.error_of($$SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                                    '/tmp/sparse_regress/out/err_middle.delta',
                                                    '/tmp/sparse_regress/out/err_never.safetensors')$$);
SELECT pg_temp.error_of($$SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                                     '/tmp/sparse_regress/out/err_middle.delta')$$);
-- a failed apply leaves no output behind, not even a temporary file
SELECT count(*) AS leftovers FROM pg_ls_dir('/tmp/sparse_regress/out') f WHERE f LIKE '%err_never%';

-- the same damage, in memory
SELECT delta_apply(base, set_byte(delta, 30, get_byte(delta, 30) # 255)) FROM good;
\echo :SQLSTATE
SELECT delta_apply(base, substring(delta FROM 1 FOR 20)) FROM good;
\echo :SQLSTATE
SELECT delta_apply(base, overlay(delta PLACING '\x00000000'::bytea FROM 1)) FROM good;
\echo :SQLSTATE
SELECT delta_apply(base, '\x'::bytea) FROM good;
\echo :SQLSTATE
SELECT delta_apply(base, set_byte(delta, 8, 2)) FROM good;
\echo :SQLSTATE
SELECT * FROM delta_info(set_byte((SELECT delta FROM good), 12, 128));
\echo :SQLSTATE
SELECT pg_temp.error_of($$SELECT delta_apply(base, set_byte(delta, length(delta) / 2,
                                             get_byte(delta, length(delta) / 2) # 255)) FROM good$$);
SELECT pg_temp.error_of($$SELECT delta_apply(base, substring(delta FROM 1 FOR length(delta) - 1)) FROM good$$);
SELECT pg_temp.error_of($$SELECT delta_apply(base, delta || '\x00'::bytea) FROM good$$);
SELECT pg_temp.error_of($$SELECT delta_apply(base, delta) = ft FROM good$$);
