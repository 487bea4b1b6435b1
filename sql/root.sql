-- root.sql -- sparse.root confines every path, after symlinks and ".." are
-- resolved, to one directory; only a superuser may set it (permissions.sql).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- the setting exists once the module is loaded, empty by default
SELECT sparse_version() IS NOT NULL AS loaded;
SHOW sparse.root;
SET sparse.root = '/tmp/sparse_regress/data/gpt2';

-- inside the root
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
-- outside it: another directory, a ".." escape, a symlink escape, an output
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/roberta/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/../roberta/ft.safetensors');
\echo :SQLSTATE
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/escape.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE
SELECT * FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                             '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                             '/tmp/sparse_regress/out/root_never.delta');
\echo :SQLSTATE
SELECT * FROM delta_info('/tmp/sparse_regress/data/roberta/ft.safetensors');
\echo :SQLSTATE

-- a root that does not exist refuses everything
SET sparse.root = '/tmp/sparse_regress/no_such_root';
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                         '/tmp/sparse_regress/data/gpt2/ft.safetensors');
\echo :SQLSTATE

-- the root may be the output directory too
SET sparse.root = '/tmp/sparse_regress';
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                      '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                                      '/tmp/sparse_regress/out/root_ok.delta');
RESET sparse.root;
SELECT count(*) AS leftovers FROM pg_ls_dir('/tmp/sparse_regress/out') f WHERE f LIKE '%root_never%';
-- the bytea functions take no path: the root does not concern them
SET sparse.root = '/nonexistent';
SELECT length(delta_compress(pg_read_binary_file('/tmp/sparse_regress/data/gpt2/base.safetensors'),
                             pg_read_binary_file('/tmp/sparse_regress/data/gpt2/ft.safetensors'))) > 0 AS works;
RESET sparse.root;
