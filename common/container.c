/*
 * container.c -- reading and writing records of the delta container.
 *
 * The reader never trusts a length: a record's payload length is checked
 * against SP_REC_MAX and against the bytes left in the delta before any
 * buffer is sized or any byte is read, and the checksum is verified before
 * the payload is handed to a decoder.  The writer can rewrite a record in
 * place: BASES is written first with zero digests and sealed with the real
 * ones (sp_bases_seal) once the helper thread that hashes the base while
 * the encoder codes has finished.
 */
#include "container.h"
#include "rows.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/* Name of a method code, as delta_info shows it. */
const char *
sp_method_name(int method)
{
	switch (method)
	{
		case SP_METHOD_TENSOR:
			return "tensor-delta";
		case SP_METHOD_ZSTD_REF:
			return "zstd-ref";
		case SP_METHOD_ZSTD:
			return "zstd";
		case SP_METHOD_COPY:
			return "copy";
		case SP_METHOD_ROWS_BASE + SP_ROWS_LINES:
			return "rows-lines";
		case SP_METHOD_ROWS_BASE + SP_ROWS_CSV:
			return "rows-csv";
		case SP_METHOD_ROWS_BASE + SP_ROWS_TSV:
			return "rows-tsv";
		case SP_METHOD_ROWS_BASE + SP_ROWS_JSONL:
			return "rows-jsonl";
		case SP_METHOD_ROWS_BASE + SP_ROWS_JSON_ARRAY:
			return "rows-json-array";
		case SP_METHOD_PARQUET:
			return "parquet-pages";
	}
	return NULL;
}

/* Serialize the fixed part of a chunk record. */
void
sp_chunk_hdr_put(uint8_t *p, const sp_chunk_hdr *h)
{
	p[0] = h->kind;
	p[1] = h->transform;
	p[2] = h->dtype;
	p[3] = h->base_dtype;
	sp_put32(p + 4, h->base);
	sp_put64(p + 8, h->out_len);
	sp_put64(p + 16, h->base_off);
	sp_put64(p + 24, h->base_len);
	sp_put64(p + 32, h->checksum);
}

/* Parse the fixed part of a chunk record. */
void
sp_chunk_hdr_get(const uint8_t *p, sp_chunk_hdr *h)
{
	h->kind = p[0];
	h->transform = p[1];
	h->dtype = p[2];
	h->base_dtype = p[3];
	h->base = sp_get32(p + 4);
	h->out_len = sp_get64(p + 8);
	h->base_off = sp_get64(p + 16);
	h->base_len = sp_get64(p + 24);
	h->checksum = sp_get64(p + 32);
}

/* Write the 16-byte container header. */
sp_status
sp_write_header(sp_ctx *ctx, sp_out *o, uint32_t flags)
{
	uint8_t		h[SP_HEADER_LEN] = {0};

	memcpy(h, SP_MAGIC, 8);
	sp_put16(h + 8, SP_FORMAT_VERSION);
	sp_put16(h + 10, 0);
	sp_put32(h + 12, flags);
	return sp_out_write(ctx, o, h, sizeof(h));
}

/* The header and checksum framing a record's payload. */
static void
record_frame(int type, const uint8_t *payload, size_t len, uint8_t h[SP_REC_HDR],
			 uint8_t sum[SP_REC_SUM])
{
	XXH3_state_t st;

	memset(h, 0, SP_REC_HDR);
	h[0] = (uint8_t) type;
	sp_put32(h + 4, (uint32_t) len);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, h, SP_REC_HDR);
	XXH3_64bits_update(&st, payload, len);
	sp_put64(sum, XXH3_64bits_digest(&st));
}

/* Write one record and its checksum. */
sp_status
sp_write_record(sp_ctx *ctx, sp_out *o, int type, const uint8_t *payload, size_t len)
{
	uint8_t		h[SP_REC_HDR];
	uint8_t		sum[SP_REC_SUM];

	if (len > SP_REC_MAX)
		return sp_fail(ctx, SP_ERR_INTERNAL, "record of %zu bytes is too large", len);
	record_frame(type, payload, len, h, sum);
	if (sp_out_write(ctx, o, h, sizeof(h)) != SP_OK ||
		sp_out_write(ctx, o, payload, len) != SP_OK ||
		sp_out_write(ctx, o, sum, sizeof(sum)) != SP_OK)
		return ctx->err.code;
	return SP_OK;
}

/*
 * Does the delta end with a well-formed END record?  Then a record that
 * claims more bytes than remain has a damaged length (corrupted), not a
 * missing tail (truncated), and the error can say which.
 */
static sp_status
probe_end(sp_ctx *ctx, sp_reader *r)
{
	uint8_t		tail[SP_REC_HDR + 80 + SP_REC_SUM];

	r->complete = false;
	if (r->size < SP_HEADER_LEN + sizeof(tail))
		return SP_OK;
	if (sp_fileset_read(ctx, r->src, 0, r->size - sizeof(tail), tail, sizeof(tail)) != SP_OK)
		return ctx->err.code;
	r->complete = tail[0] == SP_REC_END && !tail[1] && !tail[2] && !tail[3] &&
		sp_get32(tail + 4) == 80 &&
		XXH3_64bits(tail, SP_REC_HDR + 80) == sp_get64(tail + SP_REC_HDR + 80);
	return SP_OK;
}

/* Check a delta's magic, version and flags. */
sp_status
sp_reader_open(sp_ctx *ctx, sp_reader *r, sp_fileset *src)
{
	uint8_t		h[SP_HEADER_LEN];
	unsigned	version;

	memset(r, 0, sizeof(*r));
	r->src = src;
	r->name = src->f[0].path ? src->f[0].path : src->f[0].rel;
	r->size = src->f[0].size;
	if (r->size < SP_HEADER_LEN)
		return sp_fail(ctx, SP_ERR_NOT_DELTA, "\"%s\" is not a sparse delta: it is too short", r->name);
	if (sp_fileset_read(ctx, src, 0, 0, h, sizeof(h)) != SP_OK)
		return ctx->err.code;
	if (memcmp(h, SP_MAGIC, 8) != 0)
		return sp_fail(ctx, SP_ERR_NOT_DELTA, "\"%s\" is not a sparse delta: bad magic", r->name);
	version = sp_get16(h + 8);
	if (version != SP_FORMAT_VERSION)
		return sp_fail(ctx, SP_ERR_UNSUPPORTED_VERSION,
					   "delta \"%s\" has format version %u; this build reads version %d",
					   r->name, version, SP_FORMAT_VERSION);
	r->flags = sp_get32(h + 12);
	if ((r->flags & ~SP_FLAGS_KNOWN) != 0 || sp_get16(h + 10) != 0)
		return sp_fail(ctx, SP_ERR_UNSUPPORTED_VERSION,
					   "delta \"%s\" uses flags this build does not know", r->name);
	r->pos = SP_HEADER_LEN;
	return probe_end(ctx, r);
}

/* Make r->buf hold at least n bytes. */
static sp_status
reader_reserve(sp_ctx *ctx, sp_reader *r, size_t n)
{
	if (n <= r->cap)
		return SP_OK;
	sp_free(ctx, r->buf);
	r->cap = 0;
	r->buf = sp_alloc(ctx, n);
	if (r->buf == NULL)
		return SP_ERR_NOMEM;
	r->cap = n;
	return SP_OK;
}

/* Read and check the next record of a delta. */
sp_status
sp_reader_next(sp_ctx *ctx, sp_reader *r, bool skip_chunks)
{
	uint8_t		h[SP_REC_HDR],
				sum[SP_REC_SUM];
	size_t		len,
				want;

	if (r->size - r->pos < SP_REC_HDR)
		return sp_fail(ctx, SP_ERR_TRUNCATED, "delta \"%s\" is truncated at byte %llu",
					   r->name, (unsigned long long) r->size);
	if (sp_fileset_read(ctx, r->src, 0, r->pos, h, sizeof(h)) != SP_OK)
		return ctx->err.code;
	len = sp_get32(h + 4);
	if (h[0] < SP_REC_BASES || h[0] > SP_REC_ROWSPACE || h[1] || h[2] || h[3] || len > SP_REC_MAX)
		return sp_fail(ctx, SP_ERR_CORRUPT, "delta \"%s\" is corrupted: bad record at byte %llu",
					   r->name, (unsigned long long) r->pos);
	if (r->size - r->pos - SP_REC_HDR < (uint64_t) len + SP_REC_SUM)
		return r->complete
			? sp_fail(ctx, SP_ERR_CORRUPT,
					  "delta \"%s\" is corrupted: record at byte %llu claims more bytes than remain",
					  r->name, (unsigned long long) r->pos)
			: sp_fail(ctx, SP_ERR_TRUNCATED, "delta \"%s\" is truncated at byte %llu",
					  r->name, (unsigned long long) r->size);
	r->rec_start = r->pos;
	r->type = h[0];
	r->len = len;
	want = (skip_chunks && h[0] == SP_REC_CHUNK) ? SP_MIN(len, (size_t) SP_CHUNK_HDR) : len;
	if (reader_reserve(ctx, r, want) != SP_OK ||
		sp_fileset_read(ctx, r->src, 0, r->pos + SP_REC_HDR, r->buf, want) != SP_OK ||
		sp_fileset_read(ctx, r->src, 0, r->pos + SP_REC_HDR + len, sum, sizeof(sum)) != SP_OK)
		return ctx->err.code;
	if (want == len)
	{
		XXH3_state_t st;

		XXH3_64bits_reset(&st);
		XXH3_64bits_update(&st, h, sizeof(h));
		XXH3_64bits_update(&st, r->buf, len);
		if (XXH3_64bits_digest(&st) != sp_get64(sum))
			return sp_fail(ctx, SP_ERR_CORRUPT,
						   "delta \"%s\" is corrupted: checksum mismatch in record at byte %llu",
						   r->name, (unsigned long long) r->pos);
	}
	r->pos += SP_REC_HDR + len + SP_REC_SUM;
	return SP_OK;
}

/* Free a reader's buffer. */
void
sp_reader_close(sp_ctx *ctx, sp_reader *r)
{
	sp_free(ctx, r->buf);
	r->buf = NULL;
	r->cap = 0;
}

/* ---- BASES with digests computed beside the coding ---------------------- */

/* Bytes of an entry before its name: size, SHA-256, fingerprint, name length. */
#define BASE_FIXED SP_BASE_ENTRY(SP_FLAG_BASEFP)

/*
 * Write BASES for files idx[0..n) of fs (size, zero digest and fingerprint,
 * name each) and start hashing them; too_many is the error when the record
 * would be too large.
 */
sp_status
sp_bases_write(sp_ctx *ctx, sp_out *o, sp_fileset *fs, const size_t *idx, size_t n,
			   const char *too_many, sp_bases *b)
{
	size_t		len = 4;
	uint8_t    *q;

	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < n; i++)
		len += BASE_FIXED + strlen(fs->f[idx[i]].rel);
	if (len > SP_REC_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "%s", too_many);
	if ((b->rec = sp_calloc(ctx, len, 1)) == NULL)
		return SP_ERR_NOMEM;
	b->len = len;
	b->fs = fs;
	b->n = n;
	sp_put32(b->rec, (uint32_t) n);
	q = b->rec + 4;
	for (size_t i = 0; i < n; i++)
	{
		const sp_file *f = &fs->f[idx[i]];
		size_t		nl = strlen(f->rel);

		sp_put64(q, f->size);
		sp_put16(q + BASE_FIXED - 2, (uint16_t) nl);
		memcpy(q + BASE_FIXED, f->rel, nl);
		q += BASE_FIXED + nl;
	}
	b->off = o->written;
	if (sp_write_record(ctx, o, SP_REC_BASES, b->rec, b->len) != SP_OK)
		return ctx->err.code;
	/* sparse.threads = 1 / --threads 1: no thread beside the caller's */
	return sp_bghash_start(ctx, &b->bh, fs, idx, n, SP_BH_SHA256 | SP_BH_FP, ctx->threads != 1);
}

/*
 * Wait for the base digests and fingerprints, put them into the record,
 * write it again at its place, and give the base's digest (the one
 * file's, or the manifest of a directory).
 */
sp_status
sp_bases_seal(sp_ctx *ctx, sp_out *o, sp_bases *b, uint8_t digest[SP_SHA256_LEN])
{
	uint8_t		h[SP_REC_HDR],
				sum[SP_REC_SUM];
	uint8_t    *q = b->rec + 4;
	sp_sha256	man;

	if (sp_bghash_finish(ctx, &b->bh) != SP_OK || sp_sha256_init(ctx, &man) != SP_OK)
		return ctx->err.code;
	for (size_t i = 0; i < b->n; i++)
	{
		const uint8_t *d = b->bh.digests + i * SP_SHA256_LEN;

		memcpy(q + 8, d, SP_SHA256_LEN);
		memcpy(q + 40, b->bh.fps + i * SP_FP_LEN, SP_FP_LEN);
		sp_manifest_add(&man, d, b->fs->f[b->bh.idx[i]].rel);
		if (!b->fs->is_dir)
			memcpy(digest, d, SP_SHA256_LEN);
		q += BASE_FIXED + sp_get16(q + BASE_FIXED - 2);
	}
	if (b->fs->is_dir)
		sp_sha256_final(&man, digest);
	sp_sha256_free(&man);
	record_frame(SP_REC_BASES, b->rec, b->len, h, sum);
	if (sp_out_pwrite(ctx, o, b->off, h, SP_REC_HDR) != SP_OK ||
		sp_out_pwrite(ctx, o, b->off + SP_REC_HDR, b->rec, b->len) != SP_OK ||
		sp_out_pwrite(ctx, o, b->off + SP_REC_HDR + b->len, sum, SP_REC_SUM) != SP_OK)
		return ctx->err.code;
	return SP_OK;
}

/* Stop the hashing and release the record. */
void
sp_bases_free(sp_ctx *ctx, sp_bases *b)
{
	sp_bghash_free(ctx, &b->bh);
	sp_free(ctx, b->rec);
	b->rec = NULL;
}
