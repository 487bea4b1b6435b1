/*
 * fuzz_roundtrip.c -- libFuzzer target: compress then apply must give back
 * the same bytes.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_roundtrip fuzz/corpus/roundtrip
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a safetensors file; inputs that sp_st_parse rejects are
 * skipped.  For a valid one, in both directions
 *   (base = the fixed base of fuzz_common.h, ft = input) and
 *   (base = input, ft = a perturbed fine-tune of the fixed base),
 * sp_delta_compress_mem must succeed, sp_delta_apply_mem must rebuild ft
 * byte for byte, and sp_delta_info_mem must list one file of ft's size and
 * SHA-256.  For one input in four, compress then runs once more with the
 * Nth allocation failing (N from the input's hash) and must fail with
 * SP_ERR_NOMEM, leaking nothing.  Any difference aborts.
 */
#include <openssl/evp.h>

#include "fuzz_common.h"

/* Lower-case hex SHA-256 of p into out (65 bytes). */
static void
sha256_hex(const void *p, size_t len, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_Digest(p, len, d, &n, EVP_sha256(), NULL) != 1 || n != 32)
		abort();
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The delta must describe one file: ft's size and digest. */
static void
check_info(const void *delta, size_t delta_len, const uint8_t *ft, size_t ft_len)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	char		hex[65];

	fz_ctx_init(&ctx, 0, 0);
	if (sp_delta_info_mem(&ctx, delta, delta_len, &info) != SP_OK)
		fz_die("sp_delta_info_mem rejects a delta sp_delta_compress_mem wrote", &ctx);
	sha256_hex(ft, ft_len, hex);
	if (info.n != 1 || info.rows[0].bytes != ft_len || strcmp(info.rows[0].sha256, hex) != 0)
		fz_die("sp_delta_info_mem: not one row with the fine-tune's size and sha256", &ctx);
	sp_info_free(&ctx, &info);
}

/* Apply delta to base and abort unless the result is exactly ft. */
static void
check_apply(const uint8_t *base, size_t base_len, const void *delta, size_t delta_len,
			const uint8_t *ft, size_t ft_len)
{
	sp_ctx		ctx;
	void	   *out = NULL;
	size_t		out_len = 0;

	fz_ctx_init(&ctx, 0, 0);
	if (sp_delta_apply_mem(&ctx, base, base_len, delta, delta_len, FZ_MAX_OUT,
						   &out, &out_len) != SP_OK)
		fz_die("sp_delta_apply_mem rejects a delta sp_delta_compress_mem wrote", &ctx);
	if (out_len != ft_len || memcmp(out, ft, ft_len) != 0)
		fz_die("rebuilt fine-tune differs from the original", &ctx);
	fz_free(NULL, out);
}

/* Compress ft against base, apply back, then once more with a failing allocation. */
static void
roundtrip(const uint8_t *base, size_t base_len, const uint8_t *ft, size_t ft_len,
		  int level, uint64_t hash)
{
	sp_ctx		ctx;
	void	   *delta = NULL;
	size_t		delta_len = 0;
	unsigned long n_alloc;
	sp_status	st;

	fz_ctx_init(&ctx, 0, 0);
	st = sp_delta_compress_mem(&ctx, base, base_len, ft, ft_len, level, FZ_MAX_OUT,
							   &delta, &delta_len);
	fz_check_error(&ctx, st);
	if (st != SP_OK)
		fz_die("sp_delta_compress_mem fails on a file sp_st_parse accepts", &ctx);
	n_alloc = fz_plan.n_alloc;
	check_apply(base, base_len, delta, delta_len, ft, ft_len);
	check_info(delta, delta_len, ft, ft_len);
	fz_free(NULL, delta);
	if (n_alloc == 0 || hash % 4 != 0)
		return;					/* faults on one input in four: keep runs fast */
	fz_ctx_init(&ctx, 1 + hash % n_alloc, 0);
	delta = NULL;
	st = sp_delta_compress_mem(&ctx, base, base_len, ft, ft_len, level, FZ_MAX_OUT,
							   &delta, &delta_len);
	fz_check_error(&ctx, st);
	if (st != SP_ERR_NOMEM)
		fz_die("a failed allocation did not make compress fail with SP_ERR_NOMEM", &ctx);
}

/* FNV-1a hash of the input: picks the failing allocation. */
static uint64_t
input_hash(const uint8_t *data, size_t size)
{
	uint64_t	h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h;
}

/* Round-trip a fuzzed safetensors file in both roles. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sp_ctx		ctx;
	sp_st_header h;
	size_t		base_len;
	const uint8_t *base = fz_base(&base_len);
	static uint8_t *ft;			/* made once, kept for the process */
	static size_t ft_len;
	uint64_t	hash = input_hash(data, size);

	fz_ctx_init(&ctx, 0, 0);
	if (sp_st_parse(&ctx, "fuzz", data, size, size, &h) != SP_OK)
		return 0;
	sp_st_free(&ctx, &h);
	if (ft == NULL)
		ft = fz_variant(1, &ft_len);
	roundtrip(base, base_len, data, size, 1 + (int) (hash % 3), hash);
	roundtrip(data, size, ft, ft_len, 1, hash >> 16);
	return 0;
}
