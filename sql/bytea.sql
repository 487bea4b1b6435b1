-- bytea.sql -- the in-memory functions: delta_compress(bytea, bytea) and
-- delta_apply(bytea, bytea) round-trip real model files read with
-- pg_read_binary_file, interoperate with file deltas, and work for a role
-- without any file privilege (see permissions.sql).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- the linked core is the version the extension was installed as
SELECT sparse_version() = extversion AS same_version FROM pg_extension WHERE extname = 'sparse';

CREATE TEMP TABLE models AS
  SELECT name,
         pg_read_binary_file('/tmp/sparse_regress/data/' || base) AS base,
         pg_read_binary_file('/tmp/sparse_regress/data/' || ft) AS ft,
         ft_sha
  FROM (VALUES
    ('gpt2', 'gpt2/base.safetensors', 'gpt2/ft.safetensors',
     '6be17770dd43102f149b670e013736f678b7fcc5bd99580b084d92c3186951d0'),
    ('roberta', 'roberta/base.safetensors', 'roberta/ft.safetensors',
     'bede0aa5a5b114417c569ef2683d6bbb080df27787a9c6dd60a3fd458e073325'),
    ('mlp_bf16', 'mlp/base.bf16.safetensors', 'mlp/ft.bf16.safetensors',
     'a2b8faafc943356f6e9ec2c16dbaa2f3a69f51ae276cbb8d95c6fa114fb3c8cb'),
    ('mlp_frozen_f32', 'mlp/base.f32.safetensors', 'mlp/ft_frozen.f32.safetensors',
     '59f767d211854d49025224175cf479d0d86cd412a9dacda3a0425abb66aa6631')
  ) v(name, base, ft, ft_sha);

CREATE TEMP TABLE deltas AS
  SELECT name, delta_compress(base, ft) AS d3, delta_compress(base, ft, 9) AS d9
  FROM models;

-- round trip at the default level and at 9: the exact fine-tune comes back
SELECT m.name, length(d.d3) < length(m.ft) AS smaller,
       length(d.d9) < length(m.ft) AS smaller_9,
       encode(sha256(delta_apply(m.base, d.d3)), 'hex') = m.ft_sha AS sha_ok_3,
       delta_apply(m.base, d.d9) = m.ft AS same_bytes_9
FROM models m JOIN deltas d USING (name) ORDER BY m.name;

-- the listing of an in-memory delta: one file, the fine-tune's digest
SELECT m.name, i.bytes = length(m.ft) AS bytes_ok, i.sha256 = m.ft_sha AS sha_ok,
       i.method, i.delta_bytes <= length(d.d3) AS within_delta
FROM models m JOIN deltas d USING (name), LATERAL delta_info(d.d3) i ORDER BY m.name;

-- a delta file written by delta_compress(text, ...) applies in memory, and back
SELECT delta_path FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                      '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                                      '/tmp/sparse_regress/out/bytea_gpt2.delta');
SELECT delta_apply(m.base, pg_read_binary_file('/tmp/sparse_regress/out/bytea_gpt2.delta')) = m.ft AS file_delta_in_memory
FROM models m WHERE name = 'gpt2';
SELECT i.sha256 = m.ft_sha AS info_of_file_bytes
FROM models m, delta_info(pg_read_binary_file('/tmp/sparse_regress/out/bytea_gpt2.delta')) i
WHERE m.name = 'gpt2';

-- a tiny safetensors file built in SQL: one F32 tensor of 2 elements
CREATE TEMP TABLE tiny AS
  SELECT '\x3800000000000000'::bytea
         || convert_to('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ', 'UTF8')
         || '\x0000803f00000040'::bytea AS base,
         '\x3800000000000000'::bytea
         || convert_to('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ', 'UTF8')
         || '\x0000803f01000040'::bytea AS ft;
SELECT length(base) AS tiny_bytes, delta_apply(base, delta_compress(base, ft)) = ft AS tiny_round_trip,
       delta_apply(base, delta_compress(base, base)) = base AS identical_round_trip
FROM tiny;

-- NULL in, NULL out (STRICT)
SELECT delta_compress(NULL::bytea, ft) IS NULL AS null_base, delta_apply(base, NULL) IS NULL AS null_delta
FROM tiny;
