-- estimate.sql -- delta_estimate on real base/fine-tune pairs: sizes, tensor
-- counts and derived columns agree, and identical inputs estimate as tiny.
-- Files are laid out by scripts/pg-test.sh under /tmp/sparse_regress.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

-- the checks every estimate row must pass, with noisy columns reduced to booleans
CREATE FUNCTION pg_temp.estimate_checks(base text, ft text, fraction float8)
RETURNS TABLE (base_bytes bigint, ft_bytes bigint, tensors_total bigint,
               tensors_identical bigint, tensors_changed bigint,
               tensors_unpaired bigint, counts_add_up bool, smaller bool,
               ratio_ok bool, savings_ok bool, timed bool)
LANGUAGE sql AS $$
  SELECT e.base_bytes, e.ft_bytes, e.tensors_total, e.tensors_identical,
         e.tensors_changed, e.tensors_unpaired,
         e.tensors_identical + e.tensors_changed + e.tensors_unpaired = e.tensors_total,
         e.est_delta_bytes > 0 AND e.est_delta_bytes < e.ft_bytes,
         abs(e.est_compression - e.ft_bytes::float8 / e.est_delta_bytes) < 1e-9 * e.est_compression,
         abs(e.savings_pct - 100 * (1 - e.est_delta_bytes::float8 / e.ft_bytes)) < 1e-9,
         e.elapsed_ms >= 0
  FROM delta_estimate(base, ft, fraction) e
$$;

-- F32 LoRA adapters: every tensor changed between the two checkpoints
SELECT * FROM pg_temp.estimate_checks('/tmp/sparse_regress/data/gpt2/base.safetensors',
                                      '/tmp/sparse_regress/data/gpt2/ft.safetensors', 0.01);
SELECT * FROM pg_temp.estimate_checks('/tmp/sparse_regress/data/roberta/base.safetensors',
                                      '/tmp/sparse_regress/data/roberta/ft.safetensors', 0.05);
-- BF16 MLP with the first layers frozen: some tensors identical
SELECT * FROM pg_temp.estimate_checks('/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
                                      '/tmp/sparse_regress/data/mlp/ft_frozen.bf16.safetensors', 1.0);

-- an F32 base against a BF16 fine-tune: tensors pair across the dtype change
SELECT * FROM pg_temp.estimate_checks('/tmp/sparse_regress/data/mlp/base.f32.safetensors',
                                      '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', 0.1);

-- the default sample_fraction, one column at a time
SELECT savings_pct > 0 AS saves FROM delta_estimate('/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
                                                    '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors');
SELECT tensors_total FROM delta_estimate('/tmp/sparse_regress/data/mlp/base.f32.safetensors',
                                         '/tmp/sparse_regress/data/mlp/ft.f32.safetensors');

-- a file against itself: every tensor identical, almost nothing to store
SELECT tensors_identical = tensors_total AS all_identical, tensors_changed,
       savings_pct > 99 AS saves_over_99_pct
FROM delta_estimate('/tmp/sparse_regress/data/roberta/ft.safetensors',
                    '/tmp/sparse_regress/data/roberta/ft.safetensors', 0.01);

-- a model directory pair (weights plus adapter_config.json)
SELECT base_bytes > 1182680 AS counts_all_files, tensors_total, tensors_unpaired
FROM delta_estimate('/tmp/sparse_regress/data/dirpair/base', '/tmp/sparse_regress/data/dirpair/ft');

-- the estimate at sample_fraction 1 is close to the real delta size
SELECT e.est_delta_bytes BETWEEN c.delta_bytes * 0.8 AND c.delta_bytes * 1.25 AS within_20_pct
FROM delta_estimate('/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
                    '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors', 1.0) e,
     delta_compress('/tmp/sparse_regress/data/mlp/base.bf16.safetensors',
                    '/tmp/sparse_regress/data/mlp/ft.bf16.safetensors',
                    '/tmp/sparse_regress/out/estimate_mlp.delta') c;
