/*
 * test_threads.c -- model compression with coding worker threads.
 *
 * A synthetic pair whose tensors span several 1 MiB chunks (equal chunks
 * that merge into copy runs, changed chunks, equal and changed chunks
 * alternating, a base stored in F32 for a BF16 fine-tune, a tensor only the
 * fine-tune has) is compressed with sp_ctx.threads 1 (no worker: the
 * reference), 2, 3 and 5.  Every delta must be the same bytes, rebuild the
 * fine-tune, and come from hooks called only on the caller's thread.
 * Cancelling at every poll must fail with the cancel error, free every
 * block and leave no file behind, whatever chunks were being coded (the
 * number of polls varies: waiting for a worker polls every 20 ms).  With
 * threads 1 the process must have no thread but the caller's at any poll
 * (the base is then hashed on the caller's thread too).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

#define MIB (1u << 20)

/* A context with rt_util's counting hooks, cancel_at, and threads coding threads. */
static void
th_ctx(sp_ctx *ctx, ds_hooks *h, int threads, long cancel_at)
{
	dh_ctx(ctx, h, -1, cancel_at);
	ctx->threads = threads;
}

/* Deterministic pseudo-random BF16 weights (tracked). */
static uint16_t *
bf16_noise(size_t n, uint64_t seed)
{
	uint16_t   *w = t_track(malloc(n * 2));

	if (w == NULL)
		exit(2);
	for (size_t i = 0; i < n; i++)
		w[i] = (uint16_t) (0x3c00 + (fh_rand(&seed) % 0x0800));	/* small positive floats */
	return w;
}

/* ft = base with the low bits of every k-th element changed. */
static uint16_t *
bf16_tweak(const uint16_t *base, size_t n, size_t every, uint64_t seed)
{
	uint16_t   *w = t_track(malloc(n * 2));

	if (w == NULL)
		exit(2);
	memcpy(w, base, n * 2);
	for (size_t i = 0; i < n; i += every)
		w[i] ^= (uint16_t) (1 + fh_rand(&seed) % 7);
	return w;
}

/* Write the pair described in the file comment; false on a write error. */
static bool
write_pair(const char *bpath, const char *fpath)
{
	size_t		ns = 3 * MIB / 2,	/* "same": 3 MiB */
				nc = 5 * MIB / 2 + 500, /* "changed": 5 MiB and a bit */
				nm = 4 * MIB / 2,	/* "mixed": chunks 1 and 3 equal */
				nv = MIB;			/* "conv": 2 MiB of BF16 */
	uint16_t   *same = bf16_noise(ns, 1),
			   *chb = bf16_noise(nc, 2),
			   *chf = bf16_tweak(chb, nc, 3, 3),
			   *mxb = bf16_noise(nm, 4),
			   *mxf = bf16_tweak(mxb, nm, 5, 5),
			   *cvf = bf16_noise(nv, 6);
	float	   *cvb = t_track(malloc(nv * 4)),
			   *nw = t_track(malloc(MIB * 3 / 2));

	if (cvb == NULL || nw == NULL)
		exit(2);
	memcpy(mxf + MIB / 2, mxb + MIB / 2, MIB);	/* chunk 1 equal */
	memcpy(mxf + 3 * MIB / 2, mxb + 3 * MIB / 2, MIB);	/* chunk 3 equal */
	for (size_t i = 0; i < nv; i++)
	{
		uint32_t	u = (uint32_t) cvf[i] << 16 | (uint32_t) (i * 2654435761u >> 20);

		memcpy(&cvb[i], &u, 4);	/* rounds to near cvf[i] */
	}
	memset(nw, 0x3f, MIB * 3 / 2);
	{
		stw_tensor	b[4] = {
			{"same", "BF16", 1, {ns}, same, ns * 2},
			{"changed", "BF16", 1, {nc}, chb, nc * 2},
			{"mixed", "BF16", 1, {nm}, mxb, nm * 2},
			{"conv", "F32", 1, {nv}, cvb, nv * 4},
		};
		stw_tensor	f[5] = {
			{"conv", "BF16", 1, {nv}, cvf, nv * 2},
			{"same", "BF16", 1, {ns}, same, ns * 2},
			{"changed", "BF16", 1, {nc}, chf, nc * 2},
			{"mixed", "BF16", 1, {nm}, mxf, nm * 2},
			{"new", "F32", 1, {MIB * 3 / 8}, nw, MIB * 3 / 2},
		};

		return stw_write(bpath, b, 4, NULL) && stw_write(fpath, f, 5, NULL);
	}
}

/* The same delta whatever the thread count, rebuilt exactly, hooks on the caller's thread. */
static void
test_compress_threads_same_bytes(void)
{
	static const int counts[] = {1, 2, 3, 5};
	const char *b = t_path("tb.safetensors"),
			   *f = t_path("tf.safetensors");
	uint8_t    *ref = NULL;
	size_t		ref_len = 0;
	char		want[65];

	T_REQUIRE(write_pair(b, f) && fh_sha256(f, want), "write the pair");
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
	{
		sp_ctx		ctx;
		ds_hooks	h;
		sp_compress_result cr;
		sp_apply_result ar;
		const char *d = t_fmt("%s/t%d.delta", t_path("."), counts[i]),
				   *o = t_fmt("%s/t%d.out", t_path("."), counts[i]);
		uint8_t    *got;
		size_t		len;

		th_ctx(&ctx, &h, counts[i], -1);
		T_OK(&ctx, sp_delta_compress(&ctx, b, f, d, 3, &cr));
		T_CHECK(h.foreign == 0, "%d threads: %ld hook calls off the caller's thread",
				counts[i], h.foreign);
		T_CHECK(h.live == 0, "%d threads: %ld blocks not freed", counts[i], h.live);
		T_REQUIRE((got = fh_read(d, &len)) != NULL, "read %s", d);
		if (ref == NULL)
		{
			ref = got, ref_len = len;
			T_CHECK(cr.savings_pct > 40 && cr.savings_pct < 90, "savings %.1f%%", cr.savings_pct);
		}
		else
			T_CHECK(len == ref_len && memcmp(got, ref, len) == 0,
					"%d threads: delta of %zu bytes differs from the one-thread delta (%zu bytes)",
					counts[i], len, ref_len);
		th_ctx(&ctx, &h, counts[i], -1);
		T_OK(&ctx, sp_delta_apply(&ctx, b, d, o, &ar));
		T_CHECK(strcmp(ar.sha256, want) == 0, "%d threads: rebuilt %s, want %s", counts[i],
				ar.sha256, want);
	}
}

/* Cancel at every poll with three coding threads: the cancel error, nothing left. */
static void
test_compress_threads_cancel(void)
{
	const char *b = t_path("cb.safetensors"),
			   *f = t_path("cf.safetensors"),
			   *dir = t_path("cout");
	sp_ctx		ctx;
	ds_hooks	h;
	sp_compress_result cr;
	long		polls;

	T_REQUIRE(write_pair(b, f) && fh_mkdirs(dir), "write the pair");
	th_ctx(&ctx, &h, 3, -1);
	T_OK(&ctx, sp_delta_compress(&ctx, b, f, t_fmt("%s/x.delta", dir), 3, &cr));
	polls = h.polls;
	T_REQUIRE(polls > 10 && unlink(t_fmt("%s/x.delta", dir)) == 0, "%ld polls", polls);
	for (long k = 1; k <= polls; k++)
	{
		sp_status	st;

		th_ctx(&ctx, &h, 3, k);
		st = sp_delta_compress(&ctx, b, f, t_fmt("%s/x.delta", dir), 3, &cr);
		/* waits poll every 20 ms, so a run may end before its k-th poll */
		if (st == SP_OK && h.polls < k && h.live == 0 && h.foreign == 0)
		{
			T_REQUIRE(unlink(t_fmt("%s/x.delta", dir)) == 0, "unlink");
			continue;
		}
		if (st != SP_ERR_CANCELLED ||
			strcmp(ctx.err.msg, "canceling statement due to user request") != 0 ||
			h.live != 0 || h.foreign != 0 || rt_entries(dir) != 0)
		{
			t_fail(__FILE__, __LINE__, "cancel at poll %ld of %ld: status %d \"%s\", %ld blocks"
				   " live, %ld foreign hook calls, %d files left", k, polls, st, ctx.err.msg,
				   h.live, h.foreign, rt_entries(dir));
			return;
		}
	}
}

/* Interrupt hook that records the most threads the process had at any poll. */
static int
max_tasks_hook(void *user)
{
	int		   *most = user;
	int			n = rt_entries("/proc/self/task");

	if (n > *most)
		*most = n;
	return 0;
}

/*
 * threads = 1 (sparse.threads = 1, --threads 1): compress runs on the
 * caller's thread alone, base hashing included (no helper beside it), and
 * the delta is the same bytes as with helpers.
 */
static void
test_compress_one_thread_alone(void)
{
	const char *b = t_path("ob.safetensors"),
			   *f = t_path("of.safetensors");
	sp_ctx		ctx;
	sp_compress_result cr;
	int			most = 0,
				before;
	uint8_t    *one,
			   *many;
	size_t		n1,
				n2;

	T_REQUIRE(write_pair(b, f), "write the pair");
	/* 1, or 2 under ThreadSanitizer, which runs a thread of its own */
	before = rt_entries("/proc/self/task");
	sp_ctx_init(&ctx);
	ctx.threads = 1;
	ctx.hooks.interrupted = max_tasks_hook;
	ctx.hooks.user = &most;
	T_OK(&ctx, sp_delta_compress(&ctx, b, f, t_path("one.delta"), 3, &cr));
	T_CHECK(most == before, "threads = 1: the process had %d threads during compress, %d before",
			most, before);
	sp_ctx_init(&ctx);
	T_OK(&ctx, sp_delta_compress(&ctx, b, f, t_path("many.delta"), 3, &cr));
	T_REQUIRE((one = fh_read(t_path("one.delta"), &n1)) && (many = fh_read(t_path("many.delta"), &n2)),
			  "read");
	T_CHECK(n1 == n2 && memcmp(one, many, n1) == 0, "the deltas differ (%zu and %zu bytes)", n1, n2);
}

const t_case t_tests_threads[] = {
	{"compress_threads_same_bytes", test_compress_threads_same_bytes},
	{"compress_threads_cancel", test_compress_threads_cancel},
	{"compress_one_thread_alone", test_compress_one_thread_alone},
	{NULL, NULL}
};
