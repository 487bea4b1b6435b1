-- compress_apply.sql -- delta_compress then delta_apply on every real model
-- pair rebuilds the fine-tune byte for byte: the SHA-256 reported by both
-- functions and the SHA-256 of the rebuilt file equal the one sha256sum
-- printed for the original (hardcoded below).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

CREATE TEMP TABLE pairs (name text, base text, ft text, level int,
                         base_sha text, ft_sha text);
INSERT INTO pairs VALUES
  ('gpt2', '/tmp/sparse_regress/data/gpt2/base.safetensors',
   '/tmp/sparse_regress/data/gpt2/ft.safetensors', 3,
   '09e2fa83680da6a2291897022e6c3a96edd2d357686d1e900891037e28f64fd0',
   '6be17770dd43102f149b670e013736f678b7fcc5bd99580b084d92c3186951d0'),
  ('roberta', '/tmp/sparse_regress/data/roberta/base.safetensors',
   '/tmp/sparse_regress/data/roberta/ft.safetensors', 1,
   '7fa723cf0688e85eed7926b153312f3299ac7b90222f7ff5234301cb7d4896c8',
   'bede0aa5a5b114417c569ef2683d6bbb080df27787a9c6dd60a3fd458e073325'),
  ('mlp_f32', '/tmp/sparse_regress/data/mlp/base.f32.safetensors',
   '/tmp/sparse_regress/data/mlp/ft.f32.safetensors', 3,
   '9321feb6093db54a383696f31b03d3ec1c26a67bd30a944e3c03b4350a468488',
   'feecf3188ec80b72a4bbbcb8eb806f51e0d451f97a1ba99a357f4a9392bad405'),
  ('mlp_frozen_f32', '/tmp/sparse_regress/data/mlp/base.f32.safetensors',
   '/tmp/sparse_regress/data/mlp/ft_frozen.f32.safetensors', 19,
   '9321feb6093db54a383696f31b03d3ec1c26a67bd30a944e3c03b4350a468488',
   '59f767d211854d49025224175cf479d0d86cd412a9dacda3a0425abb66aa6631'),
  ('mlp_bf16', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
   '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', 9,
   '1144e374bdee43f991ebdfd7bdd4c5b20a25960c6702d1c8bbbf02cbda7390ca',
   'a2b8faafc943356f6e9ec2c16dbaa2f3a69f51ae276cbb8d95c6fa114fb3c8cb'),
  ('mlp_frozen_bf16', '/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
   '/tmp/sparse_regress/data/mlp/ft_frozen.bf16.safetensors', 3,
   '1144e374bdee43f991ebdfd7bdd4c5b20a25960c6702d1c8bbbf02cbda7390ca',
   'f6fcec4da18ef77cf6ee237b63841b08d74b0618c7b0e883d81ae812504fc402'),
  -- an F32 base and a fine-tune saved in BF16 (mixed-precision training)
  ('mlp_f32_to_bf16', '/tmp/sparse_regress/data/mlp/base.f32.safetensors',
   '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', 3,
   '9321feb6093db54a383696f31b03d3ec1c26a67bd30a944e3c03b4350a468488',
   'a2b8faafc943356f6e9ec2c16dbaa2f3a69f51ae276cbb8d95c6fa114fb3c8cb');

CREATE TEMP TABLE compressed AS
  SELECT p.name, c.*
  FROM pairs p,
       LATERAL delta_compress(p.base, p.ft, '/tmp/sparse_regress/out/' || p.name || '.delta',
                              p.level) c;

-- the delta: where it went, what it says about its inputs, and that it is smaller
SELECT c.name, c.delta_path, c.ft_bytes,
       c.ft_sha256 = p.ft_sha AS ft_sha_ok,
       c.base_sha256 = p.base_sha AS base_sha_ok,
       c.delta_bytes = (pg_stat_file(c.delta_path)).size AS size_ok,
       c.delta_bytes < c.ft_bytes AS smaller,
       abs(c.compression_ratio - c.ft_bytes::float8 / c.delta_bytes) < 1e-9 * c.compression_ratio AS ratio_ok,
       abs(c.savings_pct - 100 * (1 - c.delta_bytes::float8 / c.ft_bytes)) < 1e-9 AS savings_ok,
       c.elapsed_ms >= 0 AS timed
FROM compressed c JOIN pairs p USING (name) ORDER BY c.name;

-- the frozen fine-tunes share half their layers with the base: large savings
SELECT name, savings_pct > 40 AS saves_over_40_pct
FROM compressed WHERE name LIKE 'mlp_frozen%' ORDER BY name;

CREATE TEMP TABLE applied AS
  SELECT p.name, a.*
  FROM pairs p,
       LATERAL delta_apply(p.base, '/tmp/sparse_regress/out/' || p.name || '.delta',
                           '/tmp/sparse_regress/out/' || p.name || '.rebuilt.safetensors') a;

-- the rebuilt file: same digest from apply, from compress, and from the bytes on disk
SELECT a.name, a.out_path, a.bytes, a.verified,
       a.sha256 = p.ft_sha AS sha_ok,
       a.sha256 = c.ft_sha256 AS matches_compress,
       encode(sha256(pg_read_binary_file(a.out_path)), 'hex') = p.ft_sha AS file_sha_ok,
       pg_read_binary_file(a.out_path) = pg_read_binary_file(p.ft) AS same_bytes
FROM applied a JOIN pairs p USING (name) JOIN compressed c USING (name)
ORDER BY a.name;

-- a model directory: every file comes back, the manifest digest matches
CREATE TEMP TABLE dircomp AS
  SELECT * FROM delta_compress('/tmp/sparse_regress/data/dirpair/base',
                               '/tmp/sparse_regress/data/dirpair/ft',
                               '/tmp/sparse_regress/out/dirpair.delta');
SELECT delta_path, ft_bytes, delta_bytes < ft_bytes AS smaller,
       ft_sha256 ~ '^[0-9a-f]{64}$' AS sha_is_hex
FROM dircomp;
SELECT a.out_path, a.bytes = d.ft_bytes AS bytes_ok, a.verified,
       a.sha256 = d.ft_sha256 AS matches_compress
FROM delta_apply('/tmp/sparse_regress/data/dirpair/base', '/tmp/sparse_regress/out/dirpair.delta',
                 '/tmp/sparse_regress/out/dirpair.rebuilt') a, dircomp d;
SELECT f AS file,
       pg_read_binary_file('/tmp/sparse_regress/out/dirpair.rebuilt/' || f)
         = pg_read_binary_file('/tmp/sparse_regress/data/dirpair/ft/' || f) AS same_bytes
FROM pg_ls_dir('/tmp/sparse_regress/out/dirpair.rebuilt') f ORDER BY f;

-- the default level and level 19 describe the same fine-tune; 19 is not larger
SELECT d3.delta_bytes >= d19.delta_bytes AS level19_not_larger,
       d3.ft_sha256 = d19.ft_sha256 AS same_ft
FROM delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                    '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                    '/tmp/sparse_regress/out/gpt2_default.delta') d3,
     delta_compress('/tmp/sparse_regress/data/gpt2/base.safetensors',
                    '/tmp/sparse_regress/data/gpt2/ft.safetensors',
                    '/tmp/sparse_regress/out/gpt2_19.delta', 19) d19;

-- sparse.threads: tensor chunks coded by 1 to 16 threads (0, the default:
-- one per core) give the same delta, byte for byte
SHOW sparse.threads;
SET sparse.threads = 1;
SELECT delta_bytes FROM delta_compress('/tmp/sparse_regress/data/mlp/base.f32.safetensors',
                                       '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors',
                                       '/tmp/sparse_regress/out/threads1.delta') \gset t1_
SET sparse.threads = 4;
SELECT delta_bytes = :t1_delta_bytes AS same_size
FROM delta_compress('/tmp/sparse_regress/data/mlp/base.f32.safetensors',
                    '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors',
                    '/tmp/sparse_regress/out/threads4.delta');
SELECT pg_read_binary_file('/tmp/sparse_regress/out/threads1.delta')
       = pg_read_binary_file('/tmp/sparse_regress/out/threads4.delta') AS same_bytes;
SET sparse.threads = 17;
SET sparse.threads = -1;
RESET sparse.threads;
