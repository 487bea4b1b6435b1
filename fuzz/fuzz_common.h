/*
 * fuzz_common.h -- shared by the libFuzzer targets in fuzz/ (header only,
 * every function static, so each target stays one translation unit that the
 * Makefile's build/fuzz/% rule compiles together with the core sources in common/).
 *
 * What it gives the targets:
 *   - fz_ctx_init: an sp_ctx whose hooks
 *       * abort on any allocation above FZ_ALLOC_CAP (256 MiB).  Inputs are
 *         at most a few hundred KiB and in-memory results are capped at
 *         64 MiB, so a larger request can only come from a size read from the
 *         input without a bound: aborting turns that into a reported crash
 *         with a stack trace instead of a silent SP_ERR_NOMEM;
 *       * can fail the Nth allocation and report "interrupted" from the Mth
 *         poll (fz_fault), so the error and cancel paths are fuzzed too:
 *         ASan then finds leaks, double frees and use-after-free in cleanup;
 *   - fz_check_error: after a failed call, the core's promise about ctx->err
 *     (same code, a non-empty one-line message) is asserted;
 *   - fz_base: the fixed, valid base model the delta targets rebuild against
 *     (F32, BF16 and I64 tensors plus __metadata__), built in code so the
 *     targets need no file;
 *   - fz_variant: fine-tunes of that base (perturbed, reordered, added and
 *     removed tensors, a dtype change) used to make seeds;
 *   - fz_fix_checksums: rewrites the XXH3-64 of every whole record of a delta
 *     so that mutated deltas reach the decoders instead of stopping at the
 *     record checksum (docs/FORMAT.md: u8 type, u8[3] 0, u32 len, payload,
 *     u64 XXH3-64 of header and payload, after a 16-byte file header).
 */
#ifndef SPARSE_FUZZ_COMMON_H
#define SPARSE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <xxhash.h>

#include "safetensors.h"
#include "sparse.h"

#define FZ_ALLOC_CAP ((size_t) 256 << 20)
#define FZ_MAX_OUT ((size_t) 64 << 20)
#define FZ_UNUSED __attribute__((unused))

/* Fault plan of the running call: 0 = never. Counters restart per call. */
typedef struct fz_fault
{
	unsigned long fail_alloc_at;	/* make the Nth allocation return NULL */
	unsigned long cancel_at;		/* report "interrupted" from the Nth poll on */
	unsigned long n_alloc;			/* allocations seen */
	unsigned long n_poll;			/* interrupt polls seen */
} fz_fault;

static fz_fault fz_plan;

/* Allocation hook: abort on unbounded sizes, fail where the plan says. */
static void *
fz_alloc(void *user, size_t size)
{
	(void) user;
	if (size > FZ_ALLOC_CAP)
	{
		fprintf(stderr, "fuzz: allocation of %zu bytes: a size taken from the input was not bounded\n",
				size);
		abort();
	}
	fz_plan.n_alloc++;
	if (fz_plan.fail_alloc_at != 0 && fz_plan.n_alloc == fz_plan.fail_alloc_at)
		return NULL;
	return malloc(size ? size : 1);
}

/* Free hook: plain free. */
static void
fz_free(void *user, void *p)
{
	(void) user;
	free(p);
}

/* Interrupt hook: cancel from the planned poll on. */
static int
fz_interrupted(void *user)
{
	(void) user;
	fz_plan.n_poll++;
	return fz_plan.cancel_at != 0 && fz_plan.n_poll >= fz_plan.cancel_at;
}

/* A context with the fuzzing hooks; faults as given (0 = none). */
static FZ_UNUSED void
fz_ctx_init(sp_ctx *ctx, unsigned long fail_alloc_at, unsigned long cancel_at)
{
	sp_ctx_init(ctx);
	ctx->hooks.alloc = fz_alloc;
	ctx->hooks.free = fz_free;
	ctx->hooks.interrupted = fz_interrupted;
	memset(&fz_plan, 0, sizeof(fz_plan));
	fz_plan.fail_alloc_at = fail_alloc_at;
	fz_plan.cancel_at = cancel_at;
}

/* Abort with a message: an invariant of the core does not hold. */
static FZ_UNUSED void
fz_die(const char *what, const sp_ctx *ctx)
{
	fprintf(stderr, "fuzz: invariant violated: %s (ctx.err: %s \"%s\")\n", what,
			sp_status_name(ctx->err.code), ctx->err.msg);
	abort();
}

/* After a failed call: ctx->err must hold the same code and a one-line message. */
static FZ_UNUSED void
fz_check_error(const sp_ctx *ctx, sp_status st)
{
	if (st == SP_OK)
		return;
	if (ctx->err.code != st)
		fz_die("returned status differs from ctx.err.code", ctx);
	if (ctx->err.msg[0] == '\0' || strchr(ctx->err.msg, '\n') != NULL)
		fz_die("error message is empty or not one line", ctx);
	if (st == SP_ERR_INTERNAL)
		fz_die("SP_ERR_INTERNAL (a \"cannot happen\" path) was reached", ctx);
}

/* Deterministic xorshift64 generator for the synthetic weights. */
static FZ_UNUSED uint64_t
fz_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One tensor to write: name, dtype string, shape, bytes. */
typedef struct fz_tensor
{
	const char *name;
	const char *dtype;
	int			ndim;
	uint64_t	shape[4];
	const uint8_t *data;
	size_t		len;
} fz_tensor;

/* Append printf output to a fixed buffer; returns the new length. */
static FZ_UNUSED size_t
fz_cat(char *buf, size_t cap, size_t len, const char *fmt, const char *s1,
	   const char *s2)
{
	int			n = snprintf(buf + len, cap - len, fmt, s1, s2);

	if (n < 0 || (size_t) n >= cap - len)
		abort();				/* seed models are tiny: cannot happen */
	return len + (size_t) n;
}

/* JSON header for the tensors laid out back to back, padded to 8 bytes. */
static FZ_UNUSED size_t
fz_header(char *buf, size_t cap, const fz_tensor *t, int n, const char *meta)
{
	size_t		len = 0,
				off = 0;
	char		tmp[160];

	len = fz_cat(buf, cap, len, "{\"__metadata__\":{%s%s}", meta, "");
	for (int i = 0; i < n; i++)
	{
		size_t		k = 0;

		k += (size_t) snprintf(tmp + k, sizeof(tmp) - k, "[");
		for (int d = 0; d < t[i].ndim; d++)
			k += (size_t) snprintf(tmp + k, sizeof(tmp) - k, "%s%llu", d ? "," : "",
								   (unsigned long long) t[i].shape[d]);
		snprintf(tmp + k, sizeof(tmp) - k, "],\"data_offsets\":[%zu,%zu]}", off,
				 off + t[i].len);
		len = fz_cat(buf, cap, len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":", t[i].name,
					 t[i].dtype);
		len = fz_cat(buf, cap, len, "%s%s", tmp, "");
		off += t[i].len;
	}
	len = fz_cat(buf, cap, len, "}%s%s", "", "");
	while (len % 8 != 0)
		len = fz_cat(buf, cap, len, " %s%s", "", "");
	return len;
}

/* A whole safetensors file (malloc'ed) from tensors and a metadata body. */
static FZ_UNUSED uint8_t *
fz_write_st(const fz_tensor *t, int n, const char *meta, size_t *out_len)
{
	char		hdr[4096];
	size_t		hlen = fz_header(hdr, sizeof(hdr), t, n, meta),
				total = 8 + hlen;
	uint8_t    *f,
			   *p;

	for (int i = 0; i < n; i++)
		total += t[i].len;
	if ((f = malloc(total)) == NULL)
		abort();
	for (int i = 0; i < 8; i++)
		f[i] = (uint8_t) ((uint64_t) hlen >> (8 * i));
	memcpy(f + 8, hdr, hlen);
	p = f + 8 + hlen;
	for (int i = 0; i < n; i++)
	{
		memcpy(p, t[i].data, t[i].len);
		p += t[i].len;
	}
	*out_len = total;
	return f;
}

/* Tensor data of the base: small normal-ish F32 weights, BF16, int ids. */
static uint8_t fz_w[16 * 16 * 4],
			fz_b[16 * 4],
			fz_e[32 * 16 * 2],
			fz_ids[8 * 8];

/* Fill the base tensors once (deterministic). */
static FZ_UNUSED void
fz_fill_base_data(void)
{
	uint64_t	s = 0x9E3779B97F4A7C15ull;

	for (size_t i = 0; i < sizeof(fz_w) / 4; i++)
	{
		float		v = ((float) (fz_rand(&s) >> 40) / 16777216.0f - 0.5f) * 0.08f;

		memcpy(fz_w + 4 * i, &v, 4);
	}
	for (size_t i = 0; i < sizeof(fz_b) / 4; i++)
	{
		float		v = ((float) (fz_rand(&s) >> 40) / 16777216.0f - 0.5f) * 0.01f;

		memcpy(fz_b + 4 * i, &v, 4);
	}
	for (size_t i = 0; i < sizeof(fz_e) / 2; i++)
	{
		float		v = ((float) (fz_rand(&s) >> 40) / 16777216.0f - 0.5f) * 0.2f;
		uint32_t	u;

		memcpy(&u, &v, 4);
		fz_e[2 * i] = (uint8_t) (u >> 16);	/* bf16 = top half, little end */
		fz_e[2 * i + 1] = (uint8_t) (u >> 24);
	}
	for (size_t i = 0; i < sizeof(fz_ids) / 8; i++)
		fz_ids[8 * i] = (uint8_t) i;
}

/* The fixed base model (malloc'ed once, kept for the process). */
static FZ_UNUSED const uint8_t *
fz_base(size_t *len)
{
	static uint8_t *base;
	static size_t base_len;

	if (base == NULL)
	{
		fz_tensor	t[] = {
			{"h.0.attn.weight", "F32", 2, {16, 16}, fz_w, sizeof(fz_w)},
			{"h.0.attn.bias", "F32", 1, {16}, fz_b, sizeof(fz_b)},
			{"wte", "BF16", 2, {32, 16}, fz_e, sizeof(fz_e)},
			{"position_ids", "I64", 1, {8}, fz_ids, sizeof(fz_ids)},
		};

		fz_fill_base_data();
		base = fz_write_st(t, 4, "\"format\":\"pt\"", &base_len);
	}
	*len = base_len;
	return base;
}

/* Copy src to dst changing the low bits of about one value in four. */
static FZ_UNUSED void
fz_perturb(uint8_t *dst, const uint8_t *src, size_t len, size_t elem, uint64_t seed)
{
	memcpy(dst, src, len);
	for (size_t i = 0; i + elem <= len; i += elem)
		if (fz_rand(&seed) % 4 == 0)
			dst[i] ^= (uint8_t) (1 + fz_rand(&seed) % 15);
}

/* Tensor data of the variants: perturbed weights, BF16 widened to F32. */
static uint8_t fz_w2[sizeof(fz_w)],
			fz_e2[sizeof(fz_e)],
			fz_wide[sizeof(fz_e) * 2];

/* Fill the variant tensors (after fz_base). */
static FZ_UNUSED void
fz_fill_variant_data(void)
{
	fz_perturb(fz_w2, fz_w, sizeof(fz_w), 4, 1);
	fz_perturb(fz_e2, fz_e, sizeof(fz_e), 2, 7);
	for (size_t i = 0; i < sizeof(fz_e) / 2; i++)
		memcpy(fz_wide + 4 * i + 2, fz_e + 2 * i, 2);
}

/* Number of fine-tune variants fz_variant makes. */
#define FZ_N_VARIANTS 5

/*
 * Fine-tune variant k of the base (malloc'ed): 0 identical, 1 perturbed,
 * 2 reordered with an added LoRA tensor and new metadata, 3 a tensor removed
 * and "wte" stored as F32, 4 unrelated to the base (no shared names).
 */
static FZ_UNUSED uint8_t *
fz_variant(int k, size_t *len)
{
	size_t		blen;
	const uint8_t *b = fz_base(&blen);
	const fz_tensor v1[] = {
		{"h.0.attn.weight", "F32", 2, {16, 16}, fz_w2, sizeof(fz_w2)},
		{"h.0.attn.bias", "F32", 1, {16}, fz_b, sizeof(fz_b)},
		{"wte", "BF16", 2, {32, 16}, fz_e2, sizeof(fz_e2)},
		{"position_ids", "I64", 1, {8}, fz_ids, sizeof(fz_ids)},
	}, v2[] = {
		{"wte", "BF16", 2, {32, 16}, fz_e2, sizeof(fz_e2)},
		{"lora_A", "F32", 2, {4, 16}, fz_w, 4 * 16 * 4},
		{"h.0.attn.weight", "F32", 2, {16, 16}, fz_w2, sizeof(fz_w2)},
		{"h.0.attn.bias", "F32", 1, {16}, fz_b, sizeof(fz_b)},
	}, v3[] = {
		{"h.0.attn.weight", "F32", 2, {16, 16}, fz_w2, sizeof(fz_w2)},
		{"wte", "F32", 2, {32, 16}, fz_wide, sizeof(fz_wide)},
	}, v4[] = {
		{"classifier.weight", "F32", 2, {8, 16}, fz_w2, 8 * 16 * 4},
		{"flags", "BOOL", 1, {8}, fz_ids, 8},
		{"scalar", "F64", 0, {0}, fz_ids, 8},
	};
	uint8_t    *out;

	fz_fill_variant_data();
	switch (k)
	{
		case 0:
			if ((out = malloc(blen)) == NULL)
				abort();
			memcpy(out, b, blen);
			*len = blen;
			return out;
		case 1:
			return fz_write_st(v1, 4, "\"format\":\"pt\"", len);
		case 2:
			return fz_write_st(v2, 4, "\"format\":\"pt\",\"step\":\"1500\"", len);
		case 3:
			return fz_write_st(v3, 2, "", len);
		default:
			return fz_write_st(v4, 3, "\"note\":\"unrelated\"", len);
	}
}

/* Seed mode: $SPARSE_FUZZ_SEEDS, with subdirectory sub made in it; NULL when not seeding. */
static FZ_UNUSED const char *
fz_seed_dir(const char *sub)
{
	const char *dir = getenv("SPARSE_FUZZ_SEEDS");
	char		path[4096];

	if (dir == NULL || dir[0] == '\0')
		return NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	return dir;
}

/* Recompute the checksum of every record that fits; returns records fixed. */
static FZ_UNUSED int
fz_fix_checksums(uint8_t *d, size_t len)
{
	size_t		pos = 16;
	int			n = 0;

	while (pos + 8 <= len)
	{
		uint64_t	plen = (uint64_t) d[pos + 4] | ((uint64_t) d[pos + 5] << 8) |
			((uint64_t) d[pos + 6] << 16) | ((uint64_t) d[pos + 7] << 24);
		uint64_t	sum;

		if (plen > len - pos - 8 || len - pos - 8 - plen < 8)
			break;
		sum = XXH3_64bits(d + pos, (size_t) (8 + plen));
		for (int i = 0; i < 8; i++)
			d[pos + 8 + plen + (size_t) i] = (uint8_t) (sum >> (8 * i));
		pos += 8 + (size_t) plen + 8;
		n++;
	}
	return n;
}

#endif							/* SPARSE_FUZZ_COMMON_H */
