/*
 * fuzz_parquet.c -- libFuzzer target for the Parquet page scanner.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_parquet fuzz/corpus/parquet
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a whole file, scanned by sp_parquet_pages from a one-file
 * set in memory.  On SP_OK every page must lie inside the file, after byte
 * 4 and before the footer, in increasing order without overlap; each small
 * page is then handed to the snappy and zstd page helpers (expand, find
 * the level that compresses it back), which must not read past it.
 * On failure ctx.err must match the returned status (fz_check_error).
 */
#include "fuzz_common.h"
#include "parquet.h"

/* Abort unless the pages keep the promises of parquet.h for this input. */
static void
check_pages(const sp_ctx *ctx, const uint8_t *data, size_t size, const sp_pq_page *p, size_t n)
{
	uint64_t	prev_end = 4;

	if (n > 0 && (size < 12 || memcmp(data, "PAR1", 4) != 0))
		fz_die("pages found in a file without the Parquet magic", ctx);
	for (size_t i = 0; i < n; i++)
	{
		if (p[i].off < prev_end || p[i].off > size || p[i].clen > size - p[i].off ||
			p[i].off + p[i].clen > size - 8)
			fz_die("page outside the file, overlapping, or in the footer", ctx);
		prev_end = p[i].off + p[i].clen;
	}
}

/* Expand and recompress each small page (the snappy and zstd wrappers under ASan). */
static void
touch_pages(sp_ctx *ctx, sp_codec *codec, const uint8_t *data, const sp_pq_page *p, size_t n)
{
	static uint8_t out[65536],
				scratch[80000];
	int			level;

	for (size_t i = 0; i < n; i++)
		if (p[i].ulen <= sizeof(out) && sp_pq_bound(p[i].ulen) <= sizeof(scratch))
		{
			(void) sp_snappy_roundtrips(data + p[i].off, p[i].clen, out, p[i].ulen, scratch,
										sizeof(scratch));
			if (sp_pq_zstd_level(ctx, codec, data + p[i].off, p[i].clen, out, p[i].ulen,
								 scratch, sizeof(scratch), 3, &level) != SP_OK || level < 0 ||
				level > 9)
				fz_die("sp_pq_zstd_level failed or gave a level outside 1..9", ctx);
		}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sp_ctx		ctx;
	sp_fileset	fs = {.fd = -1};
	sp_pq_page *pages = NULL;
	size_t		n = 0;
	sp_status	st;

	fz_ctx_init(&ctx, 0, 0);
	if (sp_fileset_mem(&ctx, "fuzz.parquet", data, size, &fs) != SP_OK)
		return 0;
	st = sp_parquet_pages(&ctx, &fs, 0, &pages, &n);
	if (st == SP_OK)
	{
		sp_codec	codec;

		check_pages(&ctx, data, size, pages, n);
		if (sp_codec_init(&ctx, &codec) == SP_OK)
		{
			touch_pages(&ctx, &codec, data, pages, n);
			sp_codec_free(&ctx, &codec);
		}
	}
	else
		fz_check_error(&ctx, st);
	sp_free(&ctx, pages);
	sp_fileset_close(&ctx, &fs);
	return 0;
}
