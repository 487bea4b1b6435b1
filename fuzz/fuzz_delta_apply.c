/*
 * fuzz_delta_apply.c -- libFuzzer target for the delta decoder.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_delta_apply fuzz/corpus/delta_apply
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a delta.  Each run:
 *   1. sp_delta_info_mem on it (rows are checked: name, method, digest);
 *   2. sp_delta_apply_mem against the fixed base of fuzz_common.h, result
 *      capped at 64 MiB;
 *   3. the same two on a copy whose record checksums were recomputed, so
 *      mutations inside records reach the chunk decoders;
 *   4. for one input in four (by hash), apply again with the Nth allocation
 *      failing, and again cancelled at the Mth interrupt poll (N, M picked
 *      from the input's hash among the allocations and polls step 3 made):
 *      the call must then fail with SP_ERR_NOMEM / SP_ERR_CANCELLED and
 *      leak nothing.
 * Any crash, leak, unbounded allocation (fz_alloc aborts above 256 MiB) or
 * broken error contract (fz_check_error) is a finding.
 *
 * Seeds: with SPARSE_FUZZ_SEEDS=DIR set, the binary writes the base's
 * fine-tune variants to DIR/roundtrip/ and the delta of every file in
 * DIR/roundtrip/ against the base to DIR/delta_apply/, then exits
 * (fuzz/make_seeds.py drives it).
 */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz_common.h"

/* Abort unless the info rows are well formed. */
static void
check_info(const sp_ctx *ctx, const sp_info *info)
{
	static const char *const methods[] = {"tensor-delta", "zstd-ref", "zstd", "copy"};

	if (info->n > 0 && info->rows == NULL)
		fz_die("info rows counted but no array", ctx);
	for (size_t i = 0; i < info->n; i++)
	{
		const sp_info_row *r = &info->rows[i];
		bool		known = false;

		if (r->name == NULL || r->method == NULL)
			fz_die("info row without name or method", ctx);
		for (size_t m = 0; m < 4; m++)
			known |= strcmp(r->method, methods[m]) == 0;
		if (!known)
			fz_die("info row with an unknown method", ctx);
		if (strlen(r->sha256) != 64 || strspn(r->sha256, "0123456789abcdef") != 64)
			fz_die("info row sha256 is not 64 lower-case hex digits", ctx);
	}
}

/* sp_delta_info_mem on the input; check rows or the error. */
static void
run_info(const uint8_t *data, size_t size)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	sp_status	st;

	fz_ctx_init(&ctx, 0, 0);
	st = sp_delta_info_mem(&ctx, data, size, &info);
	fz_check_error(&ctx, st);
	if (st == SP_OK)
	{
		check_info(&ctx, &info);
		sp_info_free(&ctx, &info);
	}
}

/* sp_delta_apply_mem against the base with a fault plan; returns the status. */
static sp_status
run_apply(const uint8_t *data, size_t size, unsigned long fail_at, unsigned long cancel_at)
{
	sp_ctx		ctx;
	size_t		base_len,
				out_len = 0;
	const uint8_t *base = fz_base(&base_len);
	void	   *out = NULL;
	sp_status	st;

	fz_ctx_init(&ctx, fail_at, cancel_at);
	st = sp_delta_apply_mem(&ctx, base, base_len, data, size, FZ_MAX_OUT, &out, &out_len);
	fz_check_error(&ctx, st);
	if (st == SP_OK)
	{
		if (out == NULL && out_len > 0)
			fz_die("SP_OK with a NULL result", &ctx);
		if (out_len > FZ_MAX_OUT)
			fz_die("result larger than max_out", &ctx);
		fz_free(NULL, out);
	}
	return st;
}

/* FNV-1a hash of the input: picks the faulted allocation and poll. */
static uint64_t
input_hash(const uint8_t *data, size_t size)
{
	uint64_t	h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h;
}

/* Re-run the apply with one failing allocation and with a cancel. */
static void
run_faults(const uint8_t *data, size_t size, sp_status clean)
{
	unsigned long n_alloc = fz_plan.n_alloc,
				n_poll = fz_plan.n_poll;
	uint64_t	h = input_hash(data, size);
	sp_status	st;
	sp_ctx		dummy;

	sp_ctx_init(&dummy);
	if (h % 4 != 0)
		return;					/* one input in four: each apply costs ~16 MiB of buffers */
	if (n_alloc > 0)
	{
		st = run_apply(data, size, 1 + h % n_alloc, 0);
		if (clean == SP_OK ? st != SP_ERR_NOMEM : st == SP_OK)
			fz_die("a failed allocation did not make the apply fail with SP_ERR_NOMEM", &dummy);
	}
	if (n_poll > 0)
	{
		st = run_apply(data, size, 0, 1 + (h >> 32) % n_poll);
		if (clean == SP_OK ? st != SP_ERR_CANCELLED : st == SP_OK)
			fz_die("an interrupt did not make the apply fail with SP_ERR_CANCELLED", &dummy);
	}
}

/* Write len bytes to path; abort on failure (seed mode only). */
static void
write_file(const char *path, const void *p, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* Read a whole small file (malloc'ed); NULL if unreadable or too big. */
static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *p = f ? malloc(1 << 20) : NULL;

	*len = p ? fread(p, 1, 1 << 20, f) : 0;
	if (f)
		fclose(f);
	return p;
}

/* Compress every file of DIR/roundtrip against the base into DIR/delta_apply. */
static void
write_delta_seeds(const char *dir)
{
	char		in_dir[4096],
				path[8192];
	size_t		base_len;
	const uint8_t *base = fz_base(&base_len);
	DIR		   *d;
	struct dirent *e;

	snprintf(in_dir, sizeof(in_dir), "%s/roundtrip", dir);
	if ((d = opendir(in_dir)) == NULL)
	{
		perror(in_dir);
		exit(1);
	}
	while ((e = readdir(d)) != NULL)
	{
		sp_ctx		ctx;
		size_t		ft_len,
					out_len;
		void	   *out;
		uint8_t    *ft;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", in_dir, e->d_name);
		if ((ft = read_file(path, &ft_len)) == NULL)
			continue;
		sp_ctx_init(&ctx);
		if (sp_delta_compress_mem(&ctx, base, base_len, ft, ft_len, 3, FZ_MAX_OUT,
								  &out, &out_len) == SP_OK)
		{
			snprintf(path, sizeof(path), "%s/delta_apply/%s.delta", dir, e->d_name);
			write_file(path, out, out_len);
			ctx.hooks.free(ctx.hooks.user, out);
		}
		else
			fprintf(stderr, "seed %s: %s\n", e->d_name, ctx.err.msg);
		free(ft);
	}
	closedir(d);
}

/* Seed mode: write variants and their deltas under $SPARSE_FUZZ_SEEDS, exit. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("SPARSE_FUZZ_SEEDS");
	char		path[4096];

	(void) argc;
	(void) argv;
	if (dir == NULL || dir[0] == '\0')
		return 0;
	snprintf(path, sizeof(path), "%s/roundtrip", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/delta_apply", dir);
	mkdir(path, 0755);
	for (int k = 0; k < FZ_N_VARIANTS; k++)
	{
		size_t		len;
		uint8_t    *v = fz_variant(k, &len);

		snprintf(path, sizeof(path), "%s/roundtrip/variant_%d.safetensors", dir, k);
		write_file(path, v, len);
		free(v);
	}
	write_delta_seeds(dir);
	exit(0);
}

/* Decode a delta from the fuzzer, as is and with its checksums fixed. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *fixed;
	sp_status	st;

	run_info(data, size);
	if ((fixed = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(fixed, data, size);
	if (fz_fix_checksums(fixed, size) > 0 && memcmp(fixed, data, size) != 0)
	{
		run_apply(data, size, 0, 0);
		run_info(fixed, size);
	}
	st = run_apply(fixed, size, 0, 0);
	run_faults(fixed, size, st);
	free(fixed);
	return 0;
}
