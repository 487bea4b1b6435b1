/*
 * parquet.c -- the pages of a Parquet file, and snappy helpers.
 *
 * How it works: from byte 4 to the footer, each Thrift compact-protocol
 * struct is read from a window of the file (at most 1 MiB) and skipped
 * field by field; a struct with i32 fields 1 (page type 0..3), 2
 * (uncompressed size) and 3 (compressed size) is a PageHeader, whose
 * payload follows it; any other struct (a ColumnChunk some writers add) is
 * skipped.  Anything malformed ends the walk with no pages, and the caller
 * codes the file as plain bytes.  Snappy comes from libsnappy, zstd pages
 * (a frame's magic first) are expanded and compressed again by libzstd
 * through the caller's codec, whose contexts use the caller's allocator.
 */
#include <snappy-c.h>

#include "parquet.h"

#define TH_DEPTH 32					/* nesting the skipper follows */
#define PQ_FIRST_READ (64u << 10)

/* A bounded reader over a Thrift buffer. */
typedef struct thr
{
	const uint8_t *p;
	size_t		n,
				pos;
	bool		bad;
} thr;

/* Read a varint (at most 10 bytes). */
static uint64_t
th_varint(thr *t)
{
	uint64_t	r = 0;

	for (int s = 0; s < 64; s += 7)
	{
		uint8_t		c;

		if (t->pos >= t->n)
			break;
		c = t->p[t->pos++];
		r |= (uint64_t) (c & 0x7f) << s;
		if (!(c & 0x80))
			return r;
	}
	t->bad = true;
	return 0;
}

/* Zigzag-decoded varint. */
static int64_t
th_zz(thr *t)
{
	uint64_t	v = th_varint(t);

	return (int64_t) (v >> 1) ^ -(int64_t) (v & 1);
}

static void th_skip(thr *t, int type, int depth);

/* Skip a list, set or map element: booleans there are a byte, not part of a header. */
static void
th_skip_elem(thr *t, int type, int depth)
{
	if (type == 1 || type == 2)
		t->pos++;
	else
		th_skip(t, type, depth);
	if (t->pos > t->n)
		t->bad = true;
}

/* Skip a list or set: header byte (size << 4 | element type), maybe a varint size. */
static void
th_skip_list(thr *t, int depth)
{
	uint8_t		h;
	uint64_t	n;

	if (t->pos >= t->n)
	{
		t->bad = true;
		return;
	}
	h = t->p[t->pos++];
	n = h >> 4;
	if (n == 15)
		n = th_varint(t);
	/* every element takes at least a byte (booleans in lists do): bound the loop */
	if (n > t->n - t->pos)
	{
		t->bad = true;
		return;
	}
	for (uint64_t i = 0; i < n && !t->bad; i++)
		th_skip_elem(t, h & 15, depth + 1);
}

/* Skip a map: varint size, then key/value type byte, then pairs. */
static void
th_skip_map(thr *t, int depth)
{
	uint64_t	n = th_varint(t);
	uint8_t		kv;

	if (n == 0 || t->bad)
		return;
	if (t->pos >= t->n)
	{
		t->bad = true;
		return;
	}
	kv = t->p[t->pos++];
	if (n > (t->n - t->pos) / 2)
	{
		t->bad = true;
		return;
	}
	for (uint64_t i = 0; i < n && !t->bad; i++)
	{
		th_skip_elem(t, kv >> 4, depth + 1);
		th_skip_elem(t, kv & 15, depth + 1);
	}
}

/* Skip a struct; fields 1-3 that are i32 go to f[1..3] (set[k] true). */
static void
th_struct(thr *t, int depth, int64_t *f, bool *set)
{
	int64_t		fid = 0;

	if (depth > TH_DEPTH)
	{
		t->bad = true;
		return;
	}
	while (!t->bad)
	{
		uint8_t		h;
		int			type;

		if (t->pos >= t->n)
		{
			t->bad = true;
			return;
		}
		h = t->p[t->pos++];
		if (h == 0)
			return;
		type = h & 15;
		fid = (h >> 4) ? fid + (h >> 4) : th_zz(t);
		if (f && type == 5 && fid >= 1 && fid <= 3)
		{
			f[fid] = th_zz(t);
			set[fid] = true;
		}
		else
			th_skip(t, type, depth);
	}
}

/* Skip one value of a compact-protocol type. */
static void
th_skip(thr *t, int type, int depth)
{
	uint64_t	n;

	if (depth > TH_DEPTH)
		t->bad = true;
	else if (type == 1 || type == 2)
		return;					/* booleans live in the field header */
	else if (type == 3)
		t->pos++;
	else if (type >= 4 && type <= 6)
		(void) th_varint(t);
	else if (type == 7)
		t->pos += 8;
	else if (type == 8)
	{
		n = th_varint(t);
		if (n > t->n - SP_MIN(t->pos, t->n))
			t->bad = true;
		else
			t->pos += (size_t) n;
	}
	else if (type == 9 || type == 10)
		th_skip_list(t, depth);
	else if (type == 11)
		th_skip_map(t, depth);
	else if (type == 12)
		th_struct(t, depth + 1, NULL, NULL);
	else
		t->bad = true;
	if (t->pos > t->n)
		t->bad = true;
}

/* Append a page to a growing array. */
static sp_status
add_page(sp_ctx *ctx, sp_pq_page **pages, size_t *n, size_t *cap, const sp_pq_page *pg)
{
	if (*n == *cap)
	{
		size_t		nc = *cap ? *cap * 2 : 64;
		sp_pq_page *np = sp_alloc(ctx, nc * sizeof(sp_pq_page));

		if (np == NULL)
			return SP_ERR_NOMEM;
		if (*n)
			memcpy(np, *pages, *n * sizeof(sp_pq_page));
		sp_free(ctx, *pages);
		*pages = np;
		*cap = nc;
	}
	(*pages)[(*n)++] = *pg;
	return SP_OK;
}

/* Where the footer starts, or 0 when the file is not Parquet. */
static sp_status
footer_start(sp_ctx *ctx, sp_fileset *fs, size_t idx, uint64_t *end)
{
	uint64_t	size = fs->f[idx].size;
	uint8_t		head[4],
				tail[8];

	*end = 0;
	if (size < 12)
		return SP_OK;
	if (sp_fileset_read(ctx, fs, idx, 0, head, 4) != SP_OK ||
		sp_fileset_read(ctx, fs, idx, size - 8, tail, 8) != SP_OK)
		return ctx->err.code;
	if (memcmp(head, "PAR1", 4) != 0 || memcmp(tail + 4, "PAR1", 4) != 0 ||
		sp_get32(tail) > size - 12)
		return SP_OK;
	*end = size - 8 - sp_get32(tail);
	return SP_OK;
}

/* The pages of file idx of fs. */
sp_status
sp_parquet_pages(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_pq_page **pages, size_t *n)
{
	uint64_t	end,
				pos = 4;
	size_t		cap = 0,
				structs = 0;
	uint8_t    *win = NULL;
	sp_status	rc;

	*pages = NULL;
	*n = 0;
	if ((rc = footer_start(ctx, fs, idx, &end)) != SP_OK || end == 0)
		return rc;
	if ((win = sp_alloc(ctx, SP_PQ_HEADER_MAX)) == NULL)
		return SP_ERR_NOMEM;
	while (pos < end && rc == SP_OK)
	{
		thr			t;
		int64_t		f[4] = {0};
		bool		set[4] = {false};

		/* a large file has thousands of headers, each a read: a cancel is checked every 64 */
		if (++structs % 64 == 0 && (rc = sp_check_interrupt(ctx)) != SP_OK)
			break;

		/* most headers are small: read 64 KiB, and 1 MiB only if that was not enough */
		for (size_t want = PQ_FIRST_READ;; want = SP_PQ_HEADER_MAX)
		{
			t = (thr) {win, (size_t) SP_MIN(end - pos, (uint64_t) want), 0, false};
			if ((rc = sp_fileset_read(ctx, fs, idx, pos, win, t.n)) != SP_OK)
				break;
			th_struct(&t, 0, f, set);
			if (!t.bad || want == SP_PQ_HEADER_MAX || t.n < want)
				break;
			memset(f, 0, sizeof(f));
			memset(set, 0, sizeof(set));
		}
		if (rc != SP_OK || t.bad)
			break;
		pos += t.pos;
		if (set[1] && set[2] && set[3] && f[1] >= 0 && f[1] <= 3 && f[2] >= 0 && f[3] >= 0 &&
			f[2] <= UINT32_MAX && (uint64_t) f[3] <= end - pos)
		{
			sp_pq_page	pg = {pos, (uint32_t) f[3], (uint32_t) f[2]};

			if (*n >= SP_PQ_MAX_PAGES)
				break;
			rc = add_page(ctx, pages, n, &cap, &pg);
			pos += (uint64_t) f[3];
		}
	}
	sp_free(ctx, win);
	if (rc != SP_OK || pos != end)
	{
		/* not walkable to the footer: no pages (the file is coded as bytes) */
		sp_free(ctx, *pages);
		*pages = NULL;
		*n = 0;
	}
	return rc;
}

/* Largest snappy output for n input bytes. */
size_t
sp_snappy_bound(size_t n)
{
	return snappy_max_compressed_length(n);
}

/* Snappy-compress src into dst. */
size_t
sp_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
	size_t		len = cap;

	if (snappy_compress((const char *) src, n, (char *) dst, &len) != SNAPPY_OK)
		return 0;
	return len;
}

/* Expand snappy data into exactly ulen bytes. */
bool
sp_snappy_expand(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen)
{
	size_t		len;

	if (snappy_uncompressed_length((const char *) src, clen, &len) != SNAPPY_OK || len != ulen)
		return false;
	return snappy_uncompress((const char *) src, clen, (char *) dst, &len) == SNAPPY_OK &&
		len == ulen;
}

/* Expand a page and check that compressing it again gives the same bytes. */
bool
sp_snappy_roundtrips(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen,
					 uint8_t *scratch, size_t scratch_cap)
{
	size_t		n;

	if (!sp_snappy_expand(src, clen, dst, ulen))
		return false;
	n = sp_snappy_compress(dst, ulen, scratch, scratch_cap);
	return n == clen && memcmp(scratch, src, clen) == 0;
}

/* Largest compressed page, either codec, for n input bytes. */
size_t
sp_pq_bound(size_t n)
{
	return SP_MAX(snappy_max_compressed_length(n), ZSTD_compressBound(n));
}

/* Does the page start with a zstd frame's magic number? */
bool
sp_pq_is_zstd(const uint8_t *src, size_t clen)
{
	return clen >= 4 && sp_get32(src) == ZSTD_MAGICNUMBER;
}

/* Expand a page of codec into exactly ulen bytes. */
bool
sp_pq_expand(sp_codec *c, int codec, const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen)
{
	size_t		got;

	if (codec == SP_PQ_SNAPPY)
		return sp_snappy_expand(src, clen, dst, ulen);
	if (codec != SP_PQ_ZSTD || !sp_pq_is_zstd(src, clen))
		return false;
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_and_parameters);
	got = ZSTD_decompressDCtx(c->dctx, dst, ulen, src, clen);
	return !ZSTD_isError(got) && got == ulen;
}

/* Compress a page with codec (zstd: as ZSTD_compress at level). */
size_t
sp_pq_compress(sp_codec *c, int codec, int level, const uint8_t *src, size_t n, uint8_t *dst,
			   size_t cap)
{
	size_t		got;

	if (codec == SP_PQ_SNAPPY)
		return sp_snappy_compress(src, n, dst, cap);
	if (codec != SP_PQ_ZSTD || level < 1 || level > SP_PQ_ZSTD_LEVEL_MAX)
		return 0;
	/* ZSTD_compressCCtx ignores advanced parameters: the bytes of ZSTD_compress */
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	got = ZSTD_compressCCtx(c->cctx, dst, cap, src, n, level);
	return ZSTD_isError(got) ? 0 : got;
}

/* The level at which a zstd page compresses back to its own bytes (*level 0: none). */
sp_status
sp_pq_zstd_level(sp_ctx *ctx, sp_codec *c, const uint8_t *src, size_t clen, uint8_t *dst,
				 size_t ulen, uint8_t *scratch, size_t scratch_cap, int hint, int *level)
{
	/* 3: zstd's default (DuckDB, Polars); 1: Arrow's; then the rest of the fast ones */
	static const int levels[] = {3, 1, 2, 4, 5, 6, 7, 8, 9};

	*level = 0;
	if (!sp_pq_expand(c, SP_PQ_ZSTD, src, clen, dst, ulen))
		return SP_OK;
	for (int i = -1; i < (int) (sizeof(levels) / sizeof(levels[0])); i++)
	{
		int			try = i < 0 ? hint : levels[i];

		if (try < 1 || (i >= 0 && try == hint))
			continue;
		if (sp_check_interrupt(ctx) != SP_OK)
			return ctx->err.code;
		if (sp_pq_compress(c, SP_PQ_ZSTD, try, dst, ulen, scratch, scratch_cap) == clen &&
			memcmp(scratch, src, clen) == 0)
		{
			*level = try;
			return SP_OK;
		}
	}
	return SP_OK;
}
