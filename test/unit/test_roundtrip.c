/*
 * test_roundtrip.c -- round trips, size bars and estimates on the real
 * model pairs in $SPARSE_DATA/models.
 *
 * Every pair and every consecutive chain step is compressed to a file and
 * applied back (rt_roundtrip checks bytes, digests, verify and info).  The
 * size bars are requirements of the project: at the default level the delta
 * is at most 0.70 of an F32 LoRA fine-tune (issue 6), 0.75 of another F32
 * one, 0.30 of the trained BF16 one (issue 6) and 0.35 of another, and never
 * larger than what zstd -19 --patch-from achieves (ratios measured in
 * shared/data/README.md and models/mlp-trained/SOURCE.txt).  The estimate
 * from a 1% sample must be within 3 points of the real savings.  The
 * in-memory variants must round trip the same pairs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

/* One real pair and its bars (delta size / ft size at the default level). */
typedef struct pair
{
	const char *name;
	const char *base;
	const char *ft;
	double		bar;			/* project requirement */
	double		zstd19;			/* zstd -19 --patch-from reference */
} pair;

static const pair pairs[] = {
	{"gpt2", "gpt2-lora-r8/base.safetensors", "gpt2-lora-r8/ft.safetensors", 0.70, 0.933},
	{"roberta", "roberta-lora-r4-biasall/base.safetensors",
	"roberta-lora-r4-biasall/ft.safetensors", 0.70, 0.926},
	{"mlp_f32_ft", "mlp-trained/base.f32.safetensors", "mlp-trained/ft.f32.safetensors", 0.75, 0.620},
	{"mlp_f32_ft_frozen", "mlp-trained/base.f32.safetensors",
	"mlp-trained/ft_frozen.f32.safetensors", 0.75, 0.211},
	{"mlp_bf16_ft", "mlp-trained/base.bf16.safetensors", "mlp-trained/ft.bf16.safetensors", 0.30, 0.504},
	{"mlp_bf16_ft_frozen", "mlp-trained/base.bf16.safetensors",
	"mlp-trained/ft_frozen.bf16.safetensors", 0.35, 0.172},
};

#define N_PAIRS (sizeof(pairs) / sizeof(pairs[0]))

/* Round trip one pair and check both size bars. */
static void
check_pair(const pair *p)
{
	rt_result	r;
	double		ratio;

	if (!rt_roundtrip(t_model(p->base), t_model(p->ft), SP_LEVEL_DEFAULT, &r))
		return;
	ratio = (double) r.delta_bytes / (double) r.ft_bytes;
	printf("# %s: delta %llu / ft %llu = %.3f (bar %.2f, zstd -19 %.3f)\n",
		   p->name, (unsigned long long) r.delta_bytes,
		   (unsigned long long) r.ft_bytes, ratio, p->bar, p->zstd19);
	T_CHECK(ratio <= p->bar, "%s: delta/ft %.4f above the bar %.2f", p->name,
			ratio, p->bar);
	T_CHECK(ratio <= p->zstd19, "%s: delta/ft %.4f above zstd -19 --patch-from %.3f",
			p->name, ratio, p->zstd19);
	T_CHECK(fabs(r.cres.compression_ratio - 1.0 / ratio) < 1e-6 * (1.0 / ratio),
			"%s: compression_ratio %f, expected %f", p->name,
			r.cres.compression_ratio, 1.0 / ratio);
	T_CHECK(fabs(r.cres.savings_pct - 100.0 * (1.0 - ratio)) < 1e-6,
			"%s: savings_pct %f, expected %f", p->name, r.cres.savings_pct,
			100.0 * (1.0 - ratio));
}

/* Each real pair round trips and meets its size bars. */
static void
test_roundtrip_pairs(void)
{
	for (size_t i = 0; i < N_PAIRS; i++)
		check_pair(&pairs[i]);
}

/* Round trip every consecutive step of a chain of checkpoints. */
static void
check_chain(const char *dir, const int *steps, int n)
{
	for (int i = 0; i + 1 < n; i++)
	{
		rt_result	r;
		char	   *a = t_model(t_fmt("%s/chain/ckpt-%d.safetensors", dir, steps[i]));
		char	   *b = t_model(t_fmt("%s/chain/ckpt-%d.safetensors", dir, steps[i + 1]));

		if (rt_roundtrip(a, b, SP_LEVEL_DEFAULT, &r))
			printf("# %s %d -> %d: delta/ft = %.3f\n", dir, steps[i], steps[i + 1],
				   (double) r.delta_bytes / (double) r.ft_bytes);
	}
}

/* gpt2 chain 1000 -> 1500 -> ... -> 7500. */
static void
test_roundtrip_gpt2_chain(void)
{
	int			steps[14];

	for (int i = 0; i < 14; i++)
		steps[i] = 1000 + 500 * i;
	check_chain("gpt2-lora-r8", steps, 14);
}

/* roberta chain 500 -> 1000 -> 1200. */
static void
test_roundtrip_roberta_chain(void)
{
	static const int steps[] = {500, 1000, 1200};

	check_chain("roberta-lora-r4-biasall", steps, 3);
}

/* A higher level is still lossless and not larger than the default. */
static void
test_roundtrip_levels(void)
{
	rt_result	r1,
				r3,
				r19;
	char	   *b = t_model(pairs[4].base),
			   *f = t_model(pairs[4].ft);

	T_REQUIRE(rt_roundtrip(b, f, SP_LEVEL_MIN, &r1), "level 1");
	T_REQUIRE(rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r3), "level 3");
	T_REQUIRE(rt_roundtrip(b, f, SP_LEVEL_MAX, &r19), "level 19");
	T_CHECK(r19.delta_bytes <= r3.delta_bytes, "level 19 %llu > level 3 %llu",
			(unsigned long long) r19.delta_bytes, (unsigned long long) r3.delta_bytes);
}

/* The estimate from a 1% sample is within 3 points of the real savings. */
static void
check_estimate(const pair *p)
{
	sp_ctx		ctx;
	sp_estimate est;
	rt_result	r;
	stw_model	m;
	double		real;
	char	   *b = t_model(p->base),
			   *f = t_model(p->ft);

	if (!rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r) || !stw_read(f, &m))
		return;
	real = 100.0 * (1.0 - (double) r.delta_bytes / (double) r.ft_bytes);
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_estimate(&ctx, b, f, 0.01, &est));
	printf("# %s: estimated savings %.2f%%, real %.2f%%\n", p->name,
		   est.savings_pct, real);
	T_CHECK(fabs(est.savings_pct - real) <= 3.0, "%s: estimate %.2f%%, real %.2f%%",
			p->name, est.savings_pct, real);
	T_CHECK(est.ft_bytes == (uint64_t) fh_size(f) && est.base_bytes == (uint64_t) fh_size(b),
			"%s: estimate bytes base %llu ft %llu", p->name,
			(unsigned long long) est.base_bytes, (unsigned long long) est.ft_bytes);
	T_CHECK(est.tensors_total == (int64_t) m.n &&
			est.tensors_identical + est.tensors_changed + est.tensors_unpaired == est.tensors_total,
			"%s: tensors total %lld identical %lld changed %lld unpaired %lld (file has %zu)",
			p->name, (long long) est.tensors_total, (long long) est.tensors_identical,
			(long long) est.tensors_changed, (long long) est.tensors_unpaired, m.n);
	T_CHECK(est.tensors_unpaired == 0, "%s: %lld unpaired", p->name,
			(long long) est.tensors_unpaired);
	T_CHECK(est.est_delta_bytes > 0 &&
			fabs(est.est_compression - (double) est.ft_bytes / (double) est.est_delta_bytes) < 1e-3 * est.est_compression,
			"%s: est_compression %f, est_delta_bytes %llu", p->name,
			est.est_compression, (unsigned long long) est.est_delta_bytes);
}

/* Estimates of every real pair. */
static void
test_estimate_pairs(void)
{
	for (size_t i = 0; i < N_PAIRS; i++)
		check_estimate(&pairs[i]);
}

/* Compress and apply one pair in memory; info_mem lists one row. */
static void
check_mem(const pair *p)
{
	sp_ctx		ctx;
	size_t		blen,
				flen,
				dlen = 0,
				olen = 0;
	uint8_t    *b = fh_read(t_model(p->base), &blen);
	uint8_t    *f = fh_read(t_model(p->ft), &flen);
	void	   *delta = NULL,
			   *out = NULL;
	sp_info		info = {0};
	char		hex[65];

	T_REQUIRE(b != NULL && f != NULL, "cannot read %s", p->name);
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_compress_mem(&ctx, b, blen, f, flen, SP_LEVEL_DEFAULT,
									 flen * 2, &delta, &dlen));
	t_track(delta);
	T_CHECK(dlen > 0 && dlen <= flen, "%s: in-memory delta %zu bytes", p->name, dlen);
	T_OK(&ctx, sp_delta_apply_mem(&ctx, b, blen, delta, dlen, flen, &out, &olen));
	t_track(out);
	T_CHECK(olen == flen && memcmp(out, f, flen) == 0, "%s: rebuilt %zu bytes differ",
			p->name, olen);
	T_OK(&ctx, sp_delta_info_mem(&ctx, delta, dlen, &info));
	fh_sha256_mem(f, flen, hex);
	T_CHECK(info.n == 1 && info.rows[0].bytes == flen &&
			strcmp(info.rows[0].sha256, hex) == 0,
			"%s: info_mem rows %zu bytes %llu sha %s", p->name, info.n,
			info.n ? (unsigned long long) info.rows[0].bytes : 0ULL,
			info.n ? info.rows[0].sha256 : "");
	sp_info_free(&ctx, &info);
}

/* In-memory variants on every real pair. */
static void
test_mem_pairs(void)
{
	for (size_t i = 0; i < N_PAIRS; i++)
		check_mem(&pairs[i]);
}

/* The in-memory delta is a valid delta file: apply it from disk. */
static void
test_mem_delta_applies_from_file(void)
{
	sp_ctx		ctx;
	size_t		blen,
				flen,
				dlen = 0;
	char	   *bp = t_model(pairs[0].base),
			   *fp = t_model(pairs[0].ft);
	uint8_t    *b = fh_read(bp, &blen);
	uint8_t    *f = fh_read(fp, &flen);
	void	   *delta = NULL;
	char	   *dpath = t_path("mem.delta"),
			   *out = t_path("out.safetensors");
	sp_apply_result ar;

	T_REQUIRE(b != NULL && f != NULL, "cannot read inputs");
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_compress_mem(&ctx, b, blen, f, flen, SP_LEVEL_DEFAULT,
									 flen * 2, &delta, &dlen));
	t_track(delta);
	T_REQUIRE(fh_write(dpath, delta, dlen), "write");
	T_OK(&ctx, sp_delta_apply(&ctx, bp, dpath, out, &ar));
	T_CHECK(fh_same(out, fp), "rebuilt file differs");
}

const t_case t_tests_roundtrip[] = {
	{"roundtrip_pairs", test_roundtrip_pairs},
	{"roundtrip_gpt2_chain", test_roundtrip_gpt2_chain},
	{"roundtrip_roberta_chain", test_roundtrip_roberta_chain},
	{"roundtrip_levels", test_roundtrip_levels},
	{"estimate_pairs", test_estimate_pairs},
	{"mem_pairs", test_mem_pairs},
	{"mem_delta_applies_from_file", test_mem_delta_applies_from_file},
	{NULL, NULL}
};
