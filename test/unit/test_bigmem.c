/*
 * test_bigmem.c -- memory stays bounded on a large pair.
 *
 * Generates a ~300 MB BF16 base (random weights, roughly N(0, 0.02)) and a
 * fine-tune that nudges about half of the values by a few units in the last
 * place, both written in streaming fashion (1 Mi elements at a time, so the
 * generator itself stays small).  Compress and apply then each run in a
 * forked child that reads its own ru_maxrss before and after the call; the
 * growth must stay under 256 MiB, and the rebuilt file must hash to the
 * fine-tune's SHA-256.
 *
 * Skipped when SPARSE_SKIP_BIG=1, and under AddressSanitizer (its shadow
 * memory and quarantine make RSS meaningless, and it is slow).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

#if defined(__SANITIZE_ADDRESS__)
#define BIG_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BIG_UNDER_ASAN 1
#endif
#endif
#ifndef BIG_UNDER_ASAN
#define BIG_UNDER_ASAN 0
#endif

#define BIG_TENSORS 10
#define BIG_ELEMS (15u * 1024u * 1024u)	/* per tensor: 30 MiB of BF16 */
#define BIG_STEP (1u << 20)				/* elements generated at a time */
#define BIG_LIMIT_KB (256L * 1024L)		/* allowed RSS growth */

/* One BF16 weight near N(0, 0.02). */
static uint16_t
big_weight(uint64_t *s)
{
	uint64_t	r = fh_rand(s);
	double		u = ((double) (r & 0xFFFFF) + (double) ((r >> 20) & 0xFFFFF) +
					 (double) ((r >> 40) & 0xFFFFF)) / 1048576.0 - 1.5;
	float		f = (float) (u * 0.04);
	uint32_t	bits;

	memcpy(&bits, &f, 4);
	bits += 0x7FFF + ((bits >> 16) & 1);
	return (uint16_t) (bits >> 16);
}

/* Generate the next block of base and fine-tune values. */
static void
big_block(uint16_t *b, uint16_t *f, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
	{
		uint64_t	r = fh_rand(s);

		b[i] = big_weight(s);
		/* About half the values move by -2..+2 units in the last place. */
		f[i] = (r & 1) ? (uint16_t) (b[i] + (int) ((r >> 8) % 5) - 2) : b[i];
	}
}

/* Write the header of one file of the big pair. */
static bool
big_header(FILE *fp, const stw_tensor *t)
{
	size_t		hlen;
	char	   *hdr = stw_header(t, BIG_TENSORS, NULL, &hlen);
	uint8_t		len[8];

	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t) ((uint64_t) hlen >> (8 * i));
	return hdr != NULL && fwrite(len, 1, 8, fp) == 8 && fwrite(hdr, 1, hlen, fp) == hlen;
}

/* Generate the pair into base and ft, streaming. */
static bool
big_generate(const char *base, const char *ft)
{
	stw_tensor	t[BIG_TENSORS];
	FILE	   *fb = fopen(base, "wb"),
			   *ff = fopen(ft, "wb");
	uint16_t   *bb = t_track(malloc(BIG_STEP * 2)),
			   *fbuf = t_track(malloc(BIG_STEP * 2));
	uint64_t	s = 12345;
	bool		ok = fb != NULL && ff != NULL && bb != NULL && fbuf != NULL;

	for (int i = 0; i < BIG_TENSORS; i++)
		t[i] = (stw_tensor) {.name = t_fmt("model.layers.%d.weight", i), .dtype = "BF16",
		.ndim = 2, .shape = {BIG_ELEMS / 4096, 4096}, .data = NULL, .len = BIG_ELEMS * 2};
	ok = ok && big_header(fb, t) && big_header(ff, t);
	for (size_t done = 0; ok && done < (size_t) BIG_TENSORS * BIG_ELEMS; done += BIG_STEP)
	{
		big_block(bb, fbuf, BIG_STEP, &s);
		ok = fwrite(bb, 2, BIG_STEP, fb) == BIG_STEP && fwrite(fbuf, 2, BIG_STEP, ff) == BIG_STEP;
	}
	if (fb != NULL && fclose(fb) != 0)
		ok = false;
	if (ff != NULL && fclose(ff) != 0)
		ok = false;
	return ok;
}

/* What a child reports back. */
typedef struct big_report
{
	sp_status	st;
	long		before_kb;
	long		after_kb;
	char		msg[512];
	char		sha[65];
	uint64_t	delta_bytes;
} big_report;

/* In the child: run the call, measure ru_maxrss around it. */
static void
big_child(int fd, const char *base, const char *ft, const char *delta,
		  const char *out, bool apply)
{
	struct rusage ru;
	big_report	r;
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;

	memset(&r, 0, sizeof(r));
	rt_ctx(&ctx);
	getrusage(RUSAGE_SELF, &ru);
	r.before_kb = ru.ru_maxrss;
	r.st = apply ? sp_delta_apply(&ctx, base, delta, out, &ar)
		: sp_delta_compress(&ctx, base, ft, delta, SP_LEVEL_DEFAULT, &cr);
	getrusage(RUSAGE_SELF, &ru);
	r.after_kb = ru.ru_maxrss;
	snprintf(r.msg, sizeof(r.msg), "%s", ctx.err.msg);
	snprintf(r.sha, sizeof(r.sha), "%s", apply ? ar.sha256 : cr.ft_sha256);
	r.delta_bytes = apply ? 0 : cr.delta_bytes;
	if (write(fd, &r, sizeof(r)) != (ssize_t) sizeof(r))
		_exit(3);
	_exit(0);
}

/* Run compress (or apply) in a child; false if the child failed to report. */
static bool
big_run(const char *base, const char *ft, const char *delta, const char *out,
		bool apply, big_report *r)
{
	int			p[2];
	pid_t		pid;
	int			status = 0;
	bool		got;

	fflush(stdout);
	if (pipe(p) != 0 || (pid = fork()) < 0)
	{
		t_fail(__FILE__, __LINE__, "pipe/fork: %s", strerror(errno));
		return false;
	}
	if (pid == 0)
	{
		close(p[0]);
		big_child(p[1], base, ft, delta, out, apply);
	}
	close(p[1]);
	got = read(p[0], r, sizeof(*r)) == (ssize_t) sizeof(*r);
	close(p[0]);
	waitpid(pid, &status, 0);
	if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
	{
		t_fail(__FILE__, __LINE__, "%s child died (status %d)", apply ? "apply" : "compress",
			   status);
		return false;
	}
	return true;
}

/* No file in the test directory may start with prefix (temporary outputs start with "."). */
static bool
big_no_file(const char *prefix)
{
	size_t		n;
	char	  **names = fh_list(t_dir(), &n);

	for (size_t i = 0; i < n; i++)
		if (strncmp(names[i], prefix, strlen(prefix)) == 0 || names[i][0] == '.')
			return false;
	return true;
}

/*
 * Cancel an apply (output written with direct I/O, base hashed on a helper)
 * and a compress (base hashed beside the coding) halfway, by poll count:
 * each reports the cancel, leaves no output or temporary file, frees
 * everything and calls no hook from another thread.
 */
static void
big_cancel_midway(const char *base, const char *ft, const char *delta)
{
	for (int apply = 1; apply >= 0; apply--)
	{
		ds_hooks	h;
		sp_ctx		ctx;
		sp_apply_result ar;
		sp_compress_result cr;
		char	   *out = t_path(apply ? "cancelled.safetensors" : "cancelled.delta");
		long		polls;
		sp_status	st;

		char	   *full = t_path(apply ? "counted.safetensors" : "counted.delta");

		dh_ctx(&ctx, &h, -1, -1);
		st = apply ? sp_delta_apply(&ctx, base, delta, full, &ar)
			: sp_delta_compress(&ctx, base, ft, full, SP_LEVEL_DEFAULT, &cr);
		T_REQUIRE(st == SP_OK && unlink(full) == 0, "counting run: %s", ctx.err.msg);
		polls = h.polls;
		dh_ctx(&ctx, &h, -1, polls / 2);
		st = apply ? sp_delta_apply(&ctx, base, delta, out, &ar)
			: sp_delta_compress(&ctx, base, ft, out, SP_LEVEL_DEFAULT, &cr);
		T_CHECK(st == SP_ERR_CANCELLED, "%s cancelled at poll %ld of about %ld: %s",
				apply ? "apply" : "compress", polls / 2, polls, sp_status_name(st));
		T_CHECK(big_no_file("cancelled"), "%s left a file behind", apply ? "apply" : "compress");
		T_CHECK(h.live == 0, "%ld allocations not freed", h.live);
		T_CHECK(h.foreign == 0, "%ld hook calls from another thread", h.foreign);
	}
}

/* Compress and apply a ~300 MB pair with bounded memory. */
static void
test_big_bounded_memory(void)
{
	const char *skip = getenv("SPARSE_SKIP_BIG");
	char	   *base = t_path("base.safetensors"),
			   *ft = t_path("ft.safetensors"),
			   *delta = t_path("d.delta"),
			   *out = t_path("out.safetensors");
	big_report	c,
				a;
	char		sha[65];

	if (BIG_UNDER_ASAN)
	{
		t_skip("under AddressSanitizer");
		return;
	}
	if (skip != NULL && strcmp(skip, "1") == 0)
	{
		t_skip("SPARSE_SKIP_BIG=1");
		return;
	}
	T_REQUIRE(big_generate(base, ft), "cannot generate the big pair in %s", t_dir());
	T_REQUIRE(fh_sha256(ft, sha), "sha");
	T_REQUIRE(big_run(base, ft, delta, out, false, &c), "compress child");
	T_REQUIRE(c.st == SP_OK, "compress: %s: %s", sp_status_name(c.st), c.msg);
	printf("# compress: ft %lld bytes, delta %llu (%.3f), maxrss %ld -> %ld KiB\n",
		   (long long) fh_size(ft), (unsigned long long) c.delta_bytes,
		   (double) c.delta_bytes / (double) fh_size(ft), c.before_kb, c.after_kb);
	T_CHECK(c.after_kb - c.before_kb < BIG_LIMIT_KB, "compress grew RSS by %ld KiB",
			c.after_kb - c.before_kb);
	T_CHECK(strcmp(c.sha, sha) == 0, "compress ft_sha256 %s, file %s", c.sha, sha);
	T_REQUIRE(big_run(base, ft, delta, out, true, &a), "apply child");
	T_REQUIRE(a.st == SP_OK, "apply: %s: %s", sp_status_name(a.st), a.msg);
	printf("# apply: maxrss %ld -> %ld KiB\n", a.before_kb, a.after_kb);
	T_CHECK(a.after_kb - a.before_kb < BIG_LIMIT_KB, "apply grew RSS by %ld KiB",
			a.after_kb - a.before_kb);
	T_CHECK(strcmp(a.sha, sha) == 0, "apply sha256 %s, ft %s", a.sha, sha);
	T_CHECK(fh_sha256(out, sha) && strcmp(a.sha, sha) == 0, "rebuilt file hashes to %s", sha);
	big_cancel_midway(base, ft, delta);
}

const t_case t_tests_bigmem[] = {
	{"big_bounded_memory", test_big_bounded_memory},
	{NULL, NULL}
};
