/*
 * test_synthetic.c -- round trips of pairs that the real files lack but real
 * hub pairs have, built with the test writer (st_writer.c).
 *
 * Covered: tensors in another order, another sharding (one file against two
 * shards with an index), added and removed tensors, a resized embedding, a
 * dtype change, other files in a model directory (changed, identical, new,
 * in a subdirectory), empty tensors, every safetensors dtype, header padding
 * and "__metadata__", gaps between tensors, nested directories.  Inputs come
 * from the shared real files or from generated floats with small
 * perturbations (low mantissa bits changed, as fine-tuning does).  Each case
 * must round trip byte-identically (rt_roundtrip); where the core should
 * find the pairing, the delta size is also checked against the plain pair.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

/* Generated F32 weights, roughly N(0, 0.02), tracked. */
static float *
gen_f32(size_t n, uint64_t seed)
{
	float	   *x = t_track(malloc(n * sizeof(float) + 1));
	uint64_t	s = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++)
	{
		double		u = 0;

		for (int k = 0; k < 4; k++)
			u += (double) (fh_rand(&s) >> 11) / 9007199254740992.0 - 0.5;
		x[i] = (float) (u * 0.035);
	}
	return x;
}

/*
 * Copy of len bytes of elements of size esize, where about one element in
 * every `every` gets its low bits XORed with random bits (a small change).
 */
static void *
perturb(const void *src, size_t len, int esize, int every, uint64_t seed)
{
	uint8_t    *d = t_track(malloc(len + 1));
	uint64_t	s = seed + 0x9E3779B97F4A7C15ULL;

	memcpy(d, src, len);
	for (size_t i = 0; esize > 0 && i + esize <= len; i += esize)
		if (fh_rand(&s) % every == 0)
			d[i] ^= (uint8_t) (fh_rand(&s) & (esize == 1 ? 0x01 : 0x3F));
	return d;
}

/* Round-to-nearest-even BF16 of F32 values, tracked. */
static uint16_t *
to_bf16(const float *x, size_t n)
{
	uint16_t   *o = t_track(malloc(n * 2 + 1));

	for (size_t i = 0; i < n; i++)
	{
		uint32_t	u;

		memcpy(&u, &x[i], 4);
		u += 0x7FFF + ((u >> 16) & 1);
		o[i] = (uint16_t) (u >> 16);
	}
	return o;
}

/* An F32 tensor of generated data. */
static stw_tensor
f32_tensor(const char *name, uint64_t rows, uint64_t cols, const float *data)
{
	stw_tensor	t = {.name = name, .dtype = "F32", .ndim = 2,
	.shape = {rows, cols}, .data = data, .len = rows * cols * 4};

	return t;
}

/*
 * Round trip and compare the delta ratio with a reference ratio + slack;
 * returns the ratio (2.0 if the round trip failed).
 */
static double
roundtrip_near(const char *base, const char *ft, double ref, double slack,
			   const char *what)
{
	rt_result	r;
	double		ratio;

	if (!rt_roundtrip(base, ft, SP_LEVEL_DEFAULT, &r))
		return 2.0;
	ratio = (double) r.delta_bytes / (double) r.ft_bytes;
	printf("# %s: delta/ft = %.3f (reference %.3f)\n", what, ratio, ref);
	T_CHECK(ratio <= ref + slack, "%s: delta/ft %.3f, reference %.3f", what,
			ratio, ref);
	return ratio;
}

/* Delta ratio of a plain pair (compress only). */
static double
plain_ratio(const char *base, const char *ft)
{
	rt_result	r;

	if (!rt_roundtrip(base, ft, SP_LEVEL_DEFAULT, &r))
		return 1.0;
	return (double) r.delta_bytes / (double) r.ft_bytes;
}

/* The estimate counts total and unpaired tensors of ft as expected. */
static void
check_unpaired(const char *base, const char *ft, int64_t total, int64_t unpaired)
{
	sp_ctx		ctx;
	sp_estimate est;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_estimate(&ctx, base, ft, 0.5, &est));
	T_CHECK(est.tensors_total == total && est.tensors_unpaired == unpaired,
			"estimate: %lld tensors, %lld unpaired; expected %lld, %lld",
			(long long) est.tensors_total, (long long) est.tensors_unpaired,
			(long long) total, (long long) unpaired);
}

/* The same tensors in another order in ft (reversed) round trip. */
static void
test_synth_reordered(void)
{
	const char *b = t_model("roberta-lora-r4-biasall/base.safetensors");
	const char *f = t_model("roberta-lora-r4-biasall/ft.safetensors");
	char	   *out = t_path("ft-reversed.safetensors");
	stw_model	m;
	stw_tensor *rev;
	stw_opts	o = {0};

	T_REQUIRE(stw_read(f, &m), "read ft");
	rev = t_track(calloc(m.n, sizeof(stw_tensor)));
	for (size_t i = 0; i < m.n; i++)
		rev[i] = m.t[m.n - 1 - i];
	o.metadata_json = m.metadata_json;
	T_REQUIRE(stw_write(out, rev, m.n, &o), "write");
	roundtrip_near(b, out, plain_ratio(b, f), 0.02, "reordered");
}

/* Write ft's tensors as two shards and an index into dir. */
static bool
write_shards(const char *dir, const stw_model *m)
{
	size_t		half = m->n / 2;
	stw_opts	o = {.metadata_json = m->metadata_json};
	char	   *s1 = "model-00001-of-00002.safetensors",
			   *s2 = "model-00002-of-00002.safetensors";
	uint64_t	total = 0;
	char	   *idx = t_fmt("{\n  \"metadata\": {\n    \"total_size\": TOTAL\n  },\n  \"weight_map\": {\n");

	for (size_t i = 0; i < m->n; i++)
	{
		total += m->t[i].len;
		idx = t_fmt("%s    \"%s\": \"%s\"%s\n", idx, m->t[i].name,
					i < half ? s1 : s2, i + 1 < m->n ? "," : "");
	}
	idx = t_fmt("%s  }\n}\n", idx);
	char	   *tot = strstr(idx, "TOTAL");
	char	   *final = t_fmt("%.*s%llu%s", (int) (tot - idx), idx,
							  (unsigned long long) total, tot + 5);

	return fh_mkdirs(dir) &&
		stw_write(t_fmt("%s/%s", dir, s1), m->t, half, &o) &&
		stw_write(t_fmt("%s/%s", dir, s2), m->t + half, m->n - half, &o) &&
		fh_write(t_fmt("%s/model.safetensors.index.json", dir), final, strlen(final));
}

/* base: one model.safetensors; ft: two shards plus an index. */
static void
test_synth_sharding(void)
{
	const char *b = t_model("roberta-lora-r4-biasall/base.safetensors");
	const char *f = t_model("roberta-lora-r4-biasall/ft.safetensors");
	char	   *bdir = t_path("base"),
			   *fdir = t_path("ft");
	stw_model	m;

	T_REQUIRE(fh_mkdirs(bdir) && fh_copy(b, t_fmt("%s/model.safetensors", bdir)),
			  "base dir");
	T_REQUIRE(stw_read(f, &m) && write_shards(fdir, &m), "ft dir");
	double		ratio = roundtrip_near(bdir, fdir, plain_ratio(b, f), 0.05, "sharded");
	sp_ctx		ctx;
	sp_estimate est;

	/* The estimate works on directories too. */
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_estimate(&ctx, bdir, fdir, 0.01, &est));
	T_CHECK(fabs(est.savings_pct - 100.0 * (1.0 - ratio)) <= 3.0,
			"sharded: estimated savings %.2f%%, real %.2f%%", est.savings_pct,
			100.0 * (1.0 - ratio));
	T_CHECK(est.tensors_unpaired == 0 && est.tensors_total == (int64_t) m.n,
			"sharded: %lld of %lld tensors unpaired (file has %zu)",
			(long long) est.tensors_unpaired, (long long) est.tensors_total, m.n);
	/* And the other way round: shards as the base, one file as ft. */
	roundtrip_near(fdir, bdir, plain_ratio(f, b), 0.05, "unsharded");
}

/* ft drops one tensor and adds a new head. */
static void
test_synth_added_removed(void)
{
	const char *b = t_model("gpt2-lora-r8/base.safetensors");
	const char *f = t_model("gpt2-lora-r8/ft.safetensors");
	char	   *out = t_path("ft.safetensors");
	stw_model	m;
	stw_tensor *t;
	stw_opts	o = {0};

	T_REQUIRE(stw_read(f, &m), "read ft");
	t = t_track(calloc(m.n + 1, sizeof(stw_tensor)));
	memcpy(t, m.t + 1, (m.n - 1) * sizeof(stw_tensor));		/* drop the first */
	t[m.n - 1] = f32_tensor("classifier.head.weight", 16, 768, gen_f32(16 * 768, 7));
	o.metadata_json = m.metadata_json;
	T_REQUIRE(stw_write(out, t, m.n, &o), "write");
	rt_result	r;

	rt_roundtrip(b, out, SP_LEVEL_DEFAULT, &r);
	check_unpaired(b, out, (int64_t) m.n, 1);
}

/* An embedding [V, D] grows to [V + 8, D]; other tensors perturbed. */
static void
test_synth_resized_embedding(void)
{
	const size_t V = 2000,
				D = 64;
	float	   *emb = gen_f32((V + 8) * D, 1);
	float	   *w = gen_f32(64 * 64, 2);
	stw_tensor	bt[2] = {f32_tensor("embed.weight", V, D, emb),
	f32_tensor("layer.weight", 64, 64, w)};
	stw_tensor	ft[2] = {f32_tensor("embed.weight", V + 8, D,
									perturb(emb, (V + 8) * D * 4, 4, 3, 3)),
	f32_tensor("layer.weight", 64, 64, perturb(w, 64 * 64 * 4, 4, 3, 4))};
	char	   *b = t_path("base.safetensors"),
			   *f = t_path("ft.safetensors");

	T_REQUIRE(stw_write(b, bt, 2, NULL) && stw_write(f, ft, 2, NULL), "write");
	/* Pairing the resized rows must keep the delta well below the file. */
	roundtrip_near(b, f, 0.75, 0.0, "resized embedding");
}

/* A tensor is F32 in base and BF16 (same name) in ft. */
static void
test_synth_dtype_change(void)
{
	const size_t n = 128 * 128;
	float	   *x = gen_f32(n, 5);
	float	   *y = gen_f32(n, 6);
	stw_tensor	bt[2] = {f32_tensor("a.weight", 128, 128, x),
	f32_tensor("b.weight", 128, 128, y)};
	stw_tensor	ft[2] = {f32_tensor("a.weight", 128, 128, x),
	f32_tensor("b.weight", 128, 128, y)};
	char	   *b = t_path("base.safetensors"),
			   *f = t_path("ft.safetensors");

	ft[1].dtype = "BF16";
	ft[1].data = to_bf16(y, n);
	ft[1].len = n * 2;
	T_REQUIRE(stw_write(b, bt, 2, NULL) && stw_write(f, ft, 2, NULL), "write");
	/*
	 * The core pairs convertible dtypes: the BF16 tensor is the rounded F32
	 * base tensor, so it costs next to nothing and counts as paired.
	 */
	roundtrip_near(b, f, 0.05, 0.0, "dtype change F32 -> BF16");
	check_unpaired(b, f, 2, 0);
}

/* Special float values next to each other, so conversions meet them. */
static void
add_specials(float *x, size_t n)
{
	static const uint32_t sp[] = {0x7FC00000u, 0xFFC00001u, 0x7F800000u, 0xFF800000u,
		0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F7FFFFFu, 0x7F7FFFFFu, 0x3F80FFFFu,
	0x7FBFFFFFu};

	for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]) && i < n; i++)
		memcpy(&x[i * 7], &sp[i], 4);
}

/* Every kind of dtype change: convertible ones pair, others do not. */
static void
test_synth_dtype_changes_all(void)
{
	const size_t n = 64 * 64;
	float	   *x = gen_f32(n, 11);
	double	   *x64 = t_track(malloc(n * sizeof(double)));
	uint16_t   *xb;
	float	   *up = t_track(malloc(n * sizeof(float)));
	stw_tensor	bt[4],
				ft[4];
	char	   *b = t_path("base.safetensors"),
			   *f = t_path("ft.safetensors");
	rt_result	r;

	add_specials(x, n);
	xb = to_bf16(x, n);
	for (size_t i = 0; i < n; i++)
	{
		uint32_t	u = (uint32_t) xb[i] << 16;

		memcpy(&up[i], &u, 4);
		x64[i] = (double) x[i];
	}
	/* F32 -> BF16, BF16 -> F32, F64 -> F32, F32 -> F16 (not convertible). */
	bt[0] = f32_tensor("a", 64, 64, x);
	ft[0] = (stw_tensor) {.name = "a", .dtype = "BF16", .ndim = 2, .shape = {64, 64}, .data = xb, .len = n * 2};
	bt[1] = (stw_tensor) {.name = "b", .dtype = "BF16", .ndim = 2, .shape = {64, 64}, .data = xb, .len = n * 2};
	ft[1] = f32_tensor("b", 64, 64, up);
	bt[2] = (stw_tensor) {.name = "c", .dtype = "F64", .ndim = 2, .shape = {64, 64}, .data = x64, .len = n * 8};
	ft[2] = f32_tensor("c", 64, 64, x);
	bt[3] = f32_tensor("d", 64, 64, x);
	ft[3] = (stw_tensor) {.name = "d", .dtype = "F16", .ndim = 2, .shape = {64, 64}, .data = xb, .len = n * 2};
	T_REQUIRE(stw_write(b, bt, 4, NULL) && stw_write(f, ft, 4, NULL), "write");
	rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	check_unpaired(b, f, 4, 1);
	/* And back: the narrower file as base. */
	rt_roundtrip(f, b, SP_LEVEL_DEFAULT, &r);
}

/* Write a model directory with a model file and some side files. */
static bool
write_model_dir(const char *dir, const char *model_src, const char *config,
				bool extra)
{
	static const char tok[] = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1}}}\n";

	if (!fh_mkdirs(t_fmt("%s/tokenizer", dir)) ||
		!fh_copy(model_src, t_fmt("%s/model.safetensors", dir)) ||
		!fh_write(t_fmt("%s/config.json", dir), config, strlen(config)) ||
		!fh_write(t_fmt("%s/tokenizer.json", dir), tok, strlen(tok)) ||
		!fh_write(t_fmt("%s/tokenizer/vocab.txt", dir), "a\nb\nc\n", 6))
		return false;
	if (extra)
		return fh_write(t_fmt("%s/generation_config.json", dir), "{\"top_k\": 5}\n", 13) &&
			fh_write(t_fmt("%s/empty.txt", dir), "", 0);
	return fh_write(t_fmt("%s/only_in_base.txt", dir), "old\n", 4);
}

/* The info row of file name in delta must have the given method. */
static void
check_method(const char *delta, const char *name, const char *method)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	bool		found = false;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_info(&ctx, delta, &info));
	for (size_t i = 0; i < info.n; i++)
		if (strcmp(info.rows[i].name, name) == 0)
		{
			found = true;
			T_CHECK(strcmp(info.rows[i].method, method) == 0, "\"%s\" stored as %s, expected %s",
					name, info.rows[i].method, method);
		}
	T_CHECK(found, "no info row for \"%s\"", name);
	sp_info_free(&ctx, &info);
}

/* Model directories with changed, identical and new non-model files. */
static void
test_synth_model_dir_files(void)
{
	char	   *bdir = t_path("base"),
			   *fdir = t_path("ft");
	const char *cfg_b = "{\n  \"hidden_size\": 768,\n  \"num_labels\": 4,\n  \"torch_dtype\": \"float32\"\n}\n";
	const char *cfg_f = "{\n  \"hidden_size\": 768,\n  \"num_labels\": 5,\n  \"torch_dtype\": \"float32\"\n}\n";
	rt_result	r;

	T_REQUIRE(write_model_dir(bdir, t_model("gpt2-lora-r8/base.safetensors"), cfg_b, false),
			  "base dir");
	T_REQUIRE(write_model_dir(fdir, t_model("gpt2-lora-r8/ft.safetensors"), cfg_f, true),
			  "ft dir");
	rt_roundtrip(bdir, fdir, SP_LEVEL_DEFAULT, &r);
	T_REQUIRE(fh_exists(r.delta), "no delta");
	T_CHECK(!fh_exists(t_fmt("%s/only_in_base.txt", r.out)), "base-only file rebuilt");
	/* Files identical in base are stored as copies; the model as a delta. */
	check_method(r.delta, "tokenizer.json", "copy");
	check_method(r.delta, "tokenizer/vocab.txt", "copy");
	check_method(r.delta, "model.safetensors", "tensor-delta");
}

/* Empty tensors of shape [0] and [0, 4] next to a normal one. */
static void
test_synth_empty_tensors(void)
{
	float	   *x = gen_f32(256, 9);
	stw_tensor	bt[3] = {
		{.name = "empty1", .dtype = "F32", .ndim = 1, .shape = {0}, .data = x, .len = 0},
		f32_tensor("w", 16, 16, x),
		{.name = "empty2", .dtype = "BF16", .ndim = 2, .shape = {0, 4}, .data = x, .len = 0},
	};
	stw_tensor	ft[4];
	char	   *b = t_path("base.safetensors"),
			   *f = t_path("ft.safetensors");
	rt_result	r;

	memcpy(ft, bt, sizeof(bt));
	ft[1].data = perturb(x, 1024, 4, 2, 1);
	ft[3] = (stw_tensor) {.name = "empty3", .dtype = "I64", .ndim = 3,
	.shape = {2, 0, 3}, .data = x, .len = 0};
	T_REQUIRE(stw_write(b, bt, 3, NULL) && stw_write(f, ft, 4, NULL), "write");
	rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	/* A file whose only tensor is empty, against itself and the other. */
	T_REQUIRE(stw_write(f, bt, 1, NULL), "write");
	rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	rt_roundtrip(f, b, SP_LEVEL_DEFAULT, &r);
}

/* Every safetensors dtype, with small perturbations. */
static void
test_synth_every_dtype(void)
{
	static const char *const dts[] = {"F64", "F32", "F16", "BF16", "F8_E4M3",
		"F8_E5M2", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL"};
	enum {ND = sizeof(dts) / sizeof(dts[0]), NEL = 3000};
	stw_tensor	bt[ND],
				ft[ND];
	char	   *b = t_path("base.safetensors"),
			   *f = t_path("ft.safetensors");
	rt_result	r;

	for (int i = 0; i < ND; i++)
	{
		int			es = stw_dtype_size(dts[i]);
		uint8_t    *d = t_track(malloc((size_t) NEL * es));
		uint64_t	s = (uint64_t) i + 100;

		for (size_t k = 0; k < (size_t) NEL * es; k++)
			d[k] = (uint8_t) fh_rand(&s);
		if (strcmp(dts[i], "BOOL") == 0)
			for (size_t k = 0; k < NEL; k++)
				d[k] &= 1;
		bt[i] = (stw_tensor) {.name = t_fmt("t.%s", dts[i]), .dtype = dts[i],
		.ndim = 2, .shape = {NEL / 3, 3}, .data = d, .len = (size_t) NEL * es};
		ft[i] = bt[i];
		ft[i].data = perturb(d, bt[i].len, es, 5, (uint64_t) i);
	}
	T_REQUIRE(stw_write(b, bt, ND, NULL) && stw_write(f, ft, ND, NULL), "write");
	rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	/* Identical files of every dtype must cost almost nothing. */
	T_REQUIRE(rt_roundtrip(b, b, SP_LEVEL_DEFAULT, &r), "identity");
	T_CHECK(r.delta_bytes * 20 < r.ft_bytes, "identical pair costs %llu of %llu bytes",
			(unsigned long long) r.delta_bytes, (unsigned long long) r.ft_bytes);
}

/* Unusual header padding and "__metadata__" come back byte for byte. */
static void
test_synth_padding_metadata(void)
{
	const char *src = t_model("mlp-trained/ft.bf16.safetensors");
	const char *b = t_model("mlp-trained/base.bf16.safetensors");
	stw_model	m;
	static const stw_opts opts[] = {
		{.align = 1},
		{.align = 1, .extra_spaces = 3, .metadata_json = "{\"format\":\"pt\"}"},
		{.extra_spaces = 13, .metadata_json = "{\"format\":\"pt\",\"note\":\"fine-tuned \\u00e9\",\"step\":\"300\"}"},
		{.align = 64, .metadata_json = "{}", .metadata_last = true},
	};

	T_REQUIRE(stw_read(src, &m), "read");
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
	{
		char	   *f = rt_unique("ft", ".safetensors");
		rt_result	r;

		T_REQUIRE(stw_write(f, m.t, m.n, &opts[i]), "write");
		rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	}
}

/* Gaps of filler bytes between tensors (the data region is not dense). */
static void
test_synth_gaps(void)
{
	const char *b = t_model("mlp-trained/base.f32.safetensors");
	const char *src = t_model("mlp-trained/ft.f32.safetensors");
	char	   *f = t_path("ft-gaps.safetensors");
	stw_model	m;
	stw_opts	o = {.gap = 24, .gap_byte = 0x5A};
	rt_result	r;

	T_REQUIRE(stw_read(src, &m), "read");
	o.metadata_json = m.metadata_json;
	T_REQUIRE(stw_write(f, m.t, m.n, &o), "write");
	rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	/* Bytes after the last tensor that no tensor claims. */
	{
		size_t		n;
		uint8_t    *bytes = fh_read(f, &n);
		uint8_t    *more = t_track(malloc(n + 40));

		T_REQUIRE(bytes != NULL && more != NULL, "read");
		memcpy(more, bytes, n);
		memset(more + n, 0xC3, 40);
		f = t_path("ft-tail.safetensors");
		T_REQUIRE(fh_write(f, more, n + 40), "write");
		rt_roundtrip(b, f, SP_LEVEL_DEFAULT, &r);
	}
}

/* A file that is not safetensors at all inside directories still works. */
static void
test_synth_dir_without_model(void)
{
	char	   *bdir = t_path("b"),
			   *fdir = t_path("f");
	rt_result	r;

	T_REQUIRE(fh_mkdirs(bdir) && fh_mkdirs(t_fmt("%s/sub/deeper", fdir)), "mkdir");
	T_REQUIRE(fh_write(t_fmt("%s/notes.txt", bdir), "hello world\n", 12) &&
			  fh_write(t_fmt("%s/notes.txt", fdir), "hello there world\n", 18) &&
			  fh_write(t_fmt("%s/sub/deeper/x.bin", fdir), "\0\1\2\3", 4), "write");
	rt_roundtrip(bdir, fdir, SP_LEVEL_DEFAULT, &r);
}

/* A single-file base with a directory fine-tune, and the other way round. */
static void
test_synth_file_vs_dir(void)
{
	const char *b = t_model("gpt2-lora-r8/base.safetensors");
	const char *f = t_model("gpt2-lora-r8/ft.safetensors");
	char	   *bdir = t_path("base"),
			   *fdir = t_path("ft");
	rt_result	r;

	T_REQUIRE(fh_mkdirs(bdir) && fh_copy(b, t_fmt("%s/model.safetensors", bdir)) &&
			  fh_mkdirs(fdir) && fh_copy(f, t_fmt("%s/model.safetensors", fdir)) &&
			  fh_write(t_fmt("%s/config.json", fdir), "{}\n", 3), "setup");
	rt_roundtrip(b, fdir, SP_LEVEL_DEFAULT, &r);
	roundtrip_near(bdir, f, plain_ratio(b, f), 0.01, "directory base, file ft");
}

const t_case t_tests_synthetic[] = {
	{"synth_reordered", test_synth_reordered},
	{"synth_sharding", test_synth_sharding},
	{"synth_added_removed", test_synth_added_removed},
	{"synth_resized_embedding", test_synth_resized_embedding},
	{"synth_dtype_change", test_synth_dtype_change},
	{"synth_dtype_changes_all", test_synth_dtype_changes_all},
	{"synth_model_dir_files", test_synth_model_dir_files},
	{"synth_empty_tensors", test_synth_empty_tensors},
	{"synth_every_dtype", test_synth_every_dtype},
	{"synth_padding_metadata", test_synth_padding_metadata},
	{"synth_gaps", test_synth_gaps},
	{"synth_dir_without_model", test_synth_dir_without_model},
	{"synth_file_vs_dir", test_synth_file_vs_dir},
	{NULL, NULL}
};
