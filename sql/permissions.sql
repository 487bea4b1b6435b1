-- permissions.sql -- who may call what.  The file functions are revoked
-- from PUBLIC; when EXECUTE is granted anyway, the C check still demands
-- pg_read_server_files (and pg_write_server_files to create files).  The
-- bytea functions stay open to every role.  Only superusers set sparse.root.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
DROP ROLE IF EXISTS regress_sparse_user;
RESET client_min_messages;

CREATE ROLE regress_sparse_user;
CREATE TEMP TABLE tiny AS
  SELECT '\x3800000000000000'::bytea
         || convert_to('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ', 'UTF8')
         || '\x0000803f00000040'::bytea AS base,
         '\x3800000000000000'::bytea
         || convert_to('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ', 'UTF8')
         || '\x0000803f01000040'::bytea AS ft;
GRANT SELECT ON tiny TO regress_sparse_user;

-- which functions PUBLIC may execute
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_sparse_user', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'sparse'
ORDER BY p.oid::regprocedure::text;

-- every object of the extension has a comment
SELECT count(*) AS uncommented
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'sparse'
WHERE d.deptype = 'e' AND obj_description(d.objid, d.classid::regclass::name) IS NULL;

-- an ordinary role: no EXECUTE on the file functions
SET ROLE regress_sparse_user;
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                           '/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/perm.delta',
                          '/tmp/sparse_regress/out/perm.safetensors');
\echo :SQLSTATE
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/perm_ds.delta');
\echo :SQLSTATE
-- but the in-memory functions work
SELECT delta_apply(base, delta_compress(base, ft)) = ft AS round_trip, sparse_version() <> '' AS has_version
FROM tiny;
-- and it cannot move the confinement
SET sparse.root = '/';
\echo :SQLSTATE
RESET ROLE;

-- EXECUTE granted too freely: the C check still refuses
GRANT EXECUTE ON FUNCTION delta_estimate(text, text, float8), delta_info(text),
      delta_verify(text, text), delta_compress(text, text, text, int),
      delta_apply(text, text, text), dataset_delta_estimate(text, text, int),
      dataset_delta_compress(text, text, text, int) TO regress_sparse_user;
SET ROLE regress_sparse_user;
SELECT * FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
-- reading is checked first, so compress and apply name the read privilege
SELECT * FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                           '/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/perm.delta',
                          '/tmp/sparse_regress/out/perm.safetensors');
\echo :SQLSTATE
SELECT * FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv');
\echo :SQLSTATE
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/perm_ds.delta');
\echo :SQLSTATE
RESET ROLE;

-- pg_read_server_files: reading works, creating files does not
GRANT pg_read_server_files TO regress_sparse_user;
SET ROLE regress_sparse_user;
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/perm.delta');
\echo :SQLSTATE
SELECT * FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                          '/tmp/sparse_regress/out/perm.delta',
                          '/tmp/sparse_regress/out/perm.safetensors');
\echo :SQLSTATE
SELECT format FROM dataset_delta_estimate('/tmp/sparse_regress/data/ds/csv/base.csv',
                                          '/tmp/sparse_regress/data/ds/csv/derived.csv');
SELECT * FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                     '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                     '/tmp/sparse_regress/out/perm_ds.delta');
\echo :SQLSTATE
RESET ROLE;

-- pg_write_server_files as well: everything works (the refused calls above
-- wrote nothing, or creating perm.delta here would fail: it would exist)
GRANT pg_write_server_files TO regress_sparse_user;
SET ROLE regress_sparse_user;
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                      '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                                      '/tmp/sparse_regress/out/perm.delta');
SELECT name, method FROM delta_info('/tmp/sparse_regress/out/perm.delta');
SELECT verified FROM delta_verify('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                  '/tmp/sparse_regress/out/perm.delta');
SELECT out_path, verified FROM delta_apply('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                           '/tmp/sparse_regress/out/perm.delta',
                                           '/tmp/sparse_regress/out/perm.safetensors');
SELECT delta_path, rows_total FROM dataset_delta_compress('/tmp/sparse_regress/data/ds/csv/base.csv',
                                                          '/tmp/sparse_regress/data/ds/csv/derived.csv',
                                                          '/tmp/sparse_regress/out/perm_ds.delta');
RESET ROLE;

-- a member of a role that has the privileges inherits them
REVOKE pg_read_server_files, pg_write_server_files FROM regress_sparse_user;
CREATE ROLE regress_sparse_readers IN ROLE pg_read_server_files;
GRANT regress_sparse_readers TO regress_sparse_user;
SET ROLE regress_sparse_user;
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
RESET ROLE;

DROP OWNED BY regress_sparse_user;
DROP ROLE regress_sparse_user;
DROP ROLE regress_sparse_readers;
