/*
 * compress.c -- write a delta of a fine-tune against its base.
 *
 * How it works: both sides are opened as models (a file or a directory);
 * every base safetensors header is parsed and its tensors indexed by name.
 * The base files the delta will read are found first (a planning pass over
 * the fine-tune headers), hashed with SHA-256 and listed in the BASES record.
 * Then each fine-tune file is cut into segments that cover it exactly:
 * header and gaps (generic zstd chunks with the partner base file's bytes
 * around the same offset as prefix), paired tensors (tensor chunks against
 * the same-named base tensor; chunks equal to the base become COPY extents,
 * merged so an identical tensor costs one record), and unpaired tensors
 * (tensor chunks with no base).  Each file's SHA-256 is computed while it is
 * read and stored in FILE_END; the delta goes to a temporary file that is
 * fsynced and renamed into place only when complete.  Memory is a handful of
 * chunk-sized buffers, whatever the model size.
 */
#include <errno.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "codec.h"
#include "coderpool.h"
#include "container.h"
#include "model.h"

/* A run of output bytes equal to base bytes, not yet written. */
typedef struct copy_run
{
	bool		active;
	uint32_t	base;
	uint64_t	base_off;
	uint64_t	len;
	XXH3_state_t sum;
} copy_run;

/* A tensor chunk between its reading and its writing. */
typedef struct tslot
{
	sp_tjob		job;			/* its coding, unless it is a copy */
	sp_chunk_hdr h;
	bool		copy;			/* equal to its base bytes: extends the copy run */
	uint8_t    *fbuf,			/* its fine-tune bytes */
			   *bbuf,			/* its base bytes */
			   *cbuf,			/* base bytes converted to the fine-tune's dtype */
			   *pay;			/* record: header, then the coded payload */
	size_t		pay_cap;
} tslot;

/* State of one compression. */
typedef struct encoder
{
	sp_ctx	   *ctx;
	int			level;
	sp_model   *base;
	sp_model   *ft;
	uint32_t   *slot;			/* base file index -> BASES index or SP_NO_BASE */
	uint32_t	nslots;
	sp_codec	codec;
	uint8_t    *fbuf;			/* fine-tune bytes of a chunk */
	uint8_t    *bbuf;			/* base bytes of a chunk or prefix window */
	uint8_t    *cbuf;			/* base bytes converted to the fine-tune's dtype */
	uint8_t    *pay;			/* chunk record payload */
	size_t		pay_cap;
	sp_out	   *out;
	copy_run	copy;
	sp_sha256	sha;			/* SHA-256 of the fine-tune file being coded */
	uint64_t	chunks;			/* chunks of the current file */
	int			nchanged;		/* non-copy chunks of the current file */
	uint64_t	done,
				total;
	uint8_t		base_digest[SP_SHA256_LEN];
	sp_bases	bases;			/* the BASES record, sealed before END */
	sp_coderpool pool;			/* workers coding tensor chunks */
	tslot	   *ring;			/* tensor chunks in flight, in file order */
	int			nring,			/* pool threads + 1, or 1 without threads */
				head,			/* oldest chunk in flight */
				inflight;
	bool		ring_owns;		/* the ring's buffers are its own (with workers) */
} encoder;

/* ---- planning ------------------------------------------------------------ */

/* Mark base file idx as read by the delta. */
static void
use_base(encoder *e, long idx)
{
	if (idx >= 0 && e->slot[idx] == SP_NO_BASE)
		e->slot[idx] = e->nslots++;
}

/* Find every base file the delta will read. */
static sp_status
plan_bases(encoder *e)
{
	sp_ctx	   *ctx = e->ctx;

	for (size_t i = 0; i < e->ft->fs.n; i++)
	{
		sp_st_header h = {0};
		bool		st;

		if (sp_load_header(ctx, &e->ft->fs, i, &h, &st) != SP_OK)
			return ctx->err.code;
		use_base(e, sp_partner(e->base, &e->ft->fs, i, st ? &h : NULL));
		for (size_t j = 0; j < h.n; j++)
		{
			uint64_t	paired;
			const sp_tref *r = sp_pair_tensor(e->base, &h.t[j], &paired);

			if (r && paired > 0)
				use_base(e, r->file);
		}
		sp_st_free(ctx, &h);
		e->total += e->ft->fs.f[i].size;
	}
	return SP_OK;
}

/*
 * Write the BASES record: name, size, SHA-256 and fingerprint of every base
 * file read, in slot order.  The digests are computed beside the coding and
 * written in by code_all (sp_bases_seal).
 */
static sp_status
write_bases(encoder *e)
{
	sp_ctx	   *ctx = e->ctx;
	size_t	   *idx = sp_calloc(ctx, e->nslots ? e->nslots : 1, sizeof(size_t));
	size_t		n = 0;
	sp_status	rc;

	if (idx == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t s = 0; s < e->nslots; s++)
		for (size_t i = 0; i < e->base->fs.n; i++)
			if (e->slot[i] == s)
				idx[n++] = i;
	rc = sp_bases_write(ctx, e->out, &e->base->fs, idx, n, "base model has too many files",
						&e->bases);
	sp_free(ctx, idx);
	return rc;
}

/* ---- chunks -------------------------------------------------------------- */

/* Write a chunk record from pay: fixed header, then the payload already at pay + HDR. */
static sp_status
emit_chunk_from(encoder *e, uint8_t *pay, const sp_chunk_hdr *h, size_t payload_len)
{
	sp_chunk_hdr_put(pay, h);
	e->chunks++;
	return sp_write_record(e->ctx, e->out, SP_REC_CHUNK, pay, SP_CHUNK_HDR + payload_len);
}

/* Write a chunk record whose payload is at e->pay + HDR. */
static sp_status
emit_chunk(encoder *e, const sp_chunk_hdr *h, size_t payload_len)
{
	return emit_chunk_from(e, e->pay, h, payload_len);
}

/* Write the pending copy run, if any. */
static sp_status
flush_copy(encoder *e)
{
	sp_chunk_hdr h = {0};

	if (!e->copy.active)
		return SP_OK;
	e->copy.active = false;
	h.kind = SP_CHUNK_COPY;
	h.base = e->copy.base;
	h.out_len = e->copy.len;
	h.base_off = e->copy.base_off;
	h.base_len = e->copy.len;
	h.checksum = XXH3_64bits_digest(&e->copy.sum);
	return emit_chunk(e, &h, 0);
}

/* Extend (or start) the copy run with n bytes at base offset off. */
static sp_status
add_copy(encoder *e, uint32_t slot, uint64_t off, const uint8_t *bytes, size_t n)
{
	copy_run   *c = &e->copy;

	if (c->active && (c->base != slot || c->base_off + c->len != off))
		if (flush_copy(e) != SP_OK)
			return e->ctx->err.code;
	if (!c->active)
	{
		c->active = true;
		c->base = slot;
		c->base_off = off;
		c->len = 0;
		XXH3_64bits_reset(&c->sum);
	}
	c->len += n;
	XXH3_64bits_update(&c->sum, bytes, n);
	return SP_OK;
}

/*
 * A base file the planning pass did not list: the fine-tune changed between
 * the two passes over its headers.  Fail rather than write a delta that
 * names no base.
 */
static sp_status
check_slot(encoder *e, size_t fi, long bfile)
{
	if (e->slot[bfile] != SP_NO_BASE)
		return SP_OK;
	sp_fail(e->ctx, SP_ERR_IO, "could not read \"%s\": file changed while being compressed",
			e->ft->fs.f[fi].path ? e->ft->fs.f[fi].path : e->ft->fs.f[fi].rel);
	e->ctx->err.sys_errno = EIO;
	return SP_ERR_IO;
}

/* Read n fine-tune bytes of file fi at off into buf, hashing them. */
static sp_status
read_ft(encoder *e, size_t fi, uint64_t off, uint8_t *buf, size_t n)
{
	if (sp_check_interrupt(e->ctx) != SP_OK ||
		sp_fileset_read(e->ctx, &e->ft->fs, fi, off, buf, n) != SP_OK)
		return e->ctx->err.code;
	sp_sha256_update(&e->sha, buf, n);
	e->done += n;
	sp_progress(e->ctx, e->done, e->total);
	return SP_OK;
}

/* Code [off, off+n) of file fi with zstd, prefixed by partner bytes nearby. */
static sp_status
code_generic(encoder *e, size_t fi, long partner, uint64_t off, uint64_t n)
{
	while (n > 0)
	{
		size_t		len = (size_t) SP_MIN(n, (uint64_t) SP_ZSTD_CHUNK);
		sp_chunk_hdr h = {SP_CHUNK_ZSTD, 0, 0, 0, SP_NO_BASE, len, 0, 0, 0};
		size_t		used;

		if (read_ft(e, fi, off, e->fbuf, len) != SP_OK)
			return e->ctx->err.code;
		if (partner >= 0)
		{
			uint64_t	psize = e->base->fs.f[partner].size;

			if (check_slot(e, fi, partner) != SP_OK)
				return e->ctx->err.code;
			h.base = e->slot[partner];
			sp_prefix_window(off, psize, &h.base_off, &h.base_len);
			if (sp_fileset_read(e->ctx, &e->base->fs, partner, h.base_off, e->bbuf,
								(size_t) h.base_len) != SP_OK)
				return e->ctx->err.code;
			if (off + len <= psize &&
				memcmp(e->bbuf + (off - h.base_off), e->fbuf, len) == 0)
			{
				if (add_copy(e, h.base, off, e->fbuf, len) != SP_OK)
					return e->ctx->err.code;
				off += len, n -= len;
				continue;
			}
		}
		h.checksum = XXH3_64bits(e->fbuf, len);
		if (flush_copy(e) != SP_OK ||
			sp_codec_encode_zstd(e->ctx, &e->codec, e->level, e->fbuf, len, e->bbuf,
								 (size_t) h.base_len, e->pay + SP_CHUNK_HDR,
								 e->pay_cap - SP_CHUNK_HDR, &used) != SP_OK ||
			emit_chunk(e, &h, used) != SP_OK)
			return e->ctx->err.code;
		e->nchanged++;
		off += len, n -= len;
	}
	return SP_OK;
}

/*
 * Read the base bytes for a tensor chunk of n fine-tune bytes (dtype dt)
 * from base file bfile at boff, stored as bdt, into s->bbuf; returns them
 * in dt, converted into s->cbuf when the dtypes differ.
 */
static const uint8_t *
base_for_chunk(encoder *e, tslot *s, sp_dtype dt, sp_dtype bdt, long bfile, uint64_t boff,
			   size_t n, uint64_t *blen)
{
	size_t		elems = n / (size_t) sp_dtype_size(dt);

	*blen = (uint64_t) elems * (uint64_t) sp_dtype_size(bdt);
	if (sp_fileset_read(e->ctx, &e->base->fs, bfile, boff, s->bbuf, (size_t) *blen) != SP_OK)
		return NULL;
	if (bdt == dt)
		return s->bbuf;
	sp_convert(bdt, dt, s->bbuf, s->cbuf, elems);
	return s->cbuf;
}

/*
 * Read the next chunk of tensor t (n bytes at off; its base, if any, at boff
 * of bfile) into slot s, and hand it to the coders unless it equals its base.
 */
static sp_status
fill_slot(encoder *e, tslot *s, size_t fi, const sp_tensor *t, uint64_t off, size_t n,
		  long bfile, sp_dtype bdt, uint64_t boff)
{
	sp_dtype	dt = t->dtype;
	sp_chunk_hdr h = {SP_CHUNK_TENSOR, 0, (uint8_t) dt, 0, SP_NO_BASE, n, 0, 0, 0};
	const uint8_t *bp = NULL;

	if (read_ft(e, fi, off, s->fbuf, n) != SP_OK)
		return e->ctx->err.code;
	s->copy = false;
	if (bfile >= 0)
	{
		if (check_slot(e, fi, bfile) != SP_OK)
			return e->ctx->err.code;
		h.base = e->slot[bfile];
		h.base_off = boff;
		h.base_dtype = bdt == dt ? 0 : (uint8_t) (bdt + 1);
		if ((bp = base_for_chunk(e, s, dt, bdt, bfile, boff, n, &h.base_len)) == NULL)
			return e->ctx->err.code;
		s->copy = bdt == dt && memcmp(bp, s->fbuf, n) == 0;
	}
	s->h = h;
	if (s->copy)
		return SP_OK;
	memset(&s->job, 0, sizeof(s->job));
	s->job.level = e->level;
	s->job.dt = dt;
	s->job.ft = s->fbuf;
	s->job.base = bp;
	s->job.n = n;
	s->job.geom = sp_tgeom_for(t, (off - t->begin) / (uint64_t) sp_dtype_size(dt),
							   sp_cm_wanted(e->level, e->total));
	s->job.out = s->pay + SP_CHUNK_HDR;
	s->job.cap = s->pay_cap - SP_CHUNK_HDR;
	sp_pool_submit(e->ctx, &e->pool, &s->job);
	return SP_OK;
}

/* Write the oldest chunk in flight: extend the copy run, or wait for its coding and emit it. */
static sp_status
retire_slot(encoder *e)
{
	tslot	   *s = &e->ring[e->head];
	sp_status	rc;

	e->head = (e->head + 1) % e->nring;
	e->inflight--;
	if (s->copy)
		return add_copy(e, s->h.base, s->h.base_off, s->fbuf, (size_t) s->h.out_len);
	if ((rc = sp_pool_wait(e->ctx, &e->pool, &s->job)) != SP_OK)
		return rc;
	s->h.checksum = s->job.checksum;
	s->h.transform = s->job.transform;
	if (flush_copy(e) != SP_OK || emit_chunk_from(e, s->pay, &s->h, s->job.used) != SP_OK)
		return e->ctx->err.code;
	e->nchanged++;
	return SP_OK;
}

/*
 * Code n bytes of a tensor at off against base tensor bytes (dtype bdt) at
 * boff, or none: chunks are read in order while up to nring of them are
 * being coded, and written in order; every chunk is written on return.
 */
static sp_status
code_tensor(encoder *e, size_t fi, const sp_tensor *t, uint64_t off, uint64_t n,
			long bfile, sp_dtype bdt, uint64_t boff)
{
	while (n > 0)
	{
		size_t		len = (size_t) SP_MIN(n, (uint64_t) SP_TENSOR_CHUNK);
		tslot	   *s;

		if (e->inflight == e->nring && retire_slot(e) != SP_OK)
			return e->ctx->err.code;
		s = &e->ring[(e->head + e->inflight) % e->nring];
		if (fill_slot(e, s, fi, t, off, len, bfile, bdt, boff) != SP_OK)
			return e->ctx->err.code;
		e->inflight++;
		off += len, boff += s->h.base_len, n -= len;
	}
	while (e->inflight > 0)
		if (retire_slot(e) != SP_OK)
			return e->ctx->err.code;
	return SP_OK;
}

/* Code one tensor: the part that pairs with a base tensor, then the rest. */
static sp_status
code_one_tensor(encoder *e, size_t fi, const sp_tensor *t)
{
	uint64_t	len = t->end - t->begin,
				paired;
	const sp_tref *r = sp_pair_tensor(e->base, t, &paired);

	if (paired && code_tensor(e, fi, t, t->begin, paired, r->file, r->t->dtype,
							  r->t->begin) != SP_OK)
		return e->ctx->err.code;
	return code_tensor(e, fi, t, t->begin + paired, len - paired, -1, t->dtype, 0);
}

/* Code a safetensors file: header and gaps generic, tensors as tensors. */
static sp_status
code_safetensors(encoder *e, size_t fi, const sp_st_header *h, long partner)
{
	uint64_t	pos = 0;

	for (size_t j = 0; j < h->n; j++)
	{
		const sp_tensor *t = &h->t[j];

		if (t->end == t->begin)
			continue;
		if (t->begin > pos && code_generic(e, fi, partner, pos, t->begin - pos) != SP_OK)
			return e->ctx->err.code;
		if (code_one_tensor(e, fi, t) != SP_OK)
			return e->ctx->err.code;
		pos = t->end;
	}
	return code_generic(e, fi, partner, pos, h->file_size - pos);
}

/* Write FILE record for file fi. */
static sp_status
write_file_record(encoder *e, size_t fi, long partner)
{
	const sp_file *f = &e->ft->fs.f[fi];
	size_t		nl = strlen(f->rel);
	uint8_t    *p = e->pay;

	sp_put64(p, f->size);
	sp_put32(p + 8, partner >= 0 ? e->slot[partner] : SP_NO_BASE);
	sp_put16(p + 12, (uint16_t) nl);
	memcpy(p + 14, f->rel, nl);
	return sp_write_record(e->ctx, e->out, SP_REC_FILE, p, 14 + nl);
}

/* Add "HEX  NAME\n" to a manifest digest (the format sha256sum prints). */
void
sp_manifest_add(sp_sha256 *man, const uint8_t digest[SP_SHA256_LEN], const char *rel)
{
	char		hex[65];

	sp_hex(digest, SP_SHA256_LEN, hex);
	sp_sha256_update(man, hex, 64);
	sp_sha256_update(man, "  ", 2);
	sp_sha256_update(man, rel, strlen(rel));
	sp_sha256_update(man, "\n", 1);
}

/* Code one fine-tune file: FILE, chunks, FILE_END; its digest goes to digest. */
static sp_status
code_file(encoder *e, size_t fi, uint8_t digest[SP_SHA256_LEN])
{
	sp_ctx	   *ctx = e->ctx;
	const sp_file *f = &e->ft->fs.f[fi];
	sp_st_header h = {0};
	bool		st;
	long		partner;
	uint8_t		end[48] = {0};
	sp_status	rc;

	if (sp_load_header(ctx, &e->ft->fs, fi, &h, &st) != SP_OK)
		return ctx->err.code;
	partner = sp_partner(e->base, &e->ft->fs, fi, st ? &h : NULL);
	e->chunks = 0;
	e->nchanged = 0;
	rc = sp_sha256_init(ctx, &e->sha);
	if (rc == SP_OK)
		rc = write_file_record(e, fi, partner);
	if (rc == SP_OK)
		rc = st ? code_safetensors(e, fi, &h, partner) : code_generic(e, fi, partner, 0, f->size);
	if (rc == SP_OK)
		rc = flush_copy(e);
	sp_st_free(ctx, &h);
	if (e->sha.md)
		sp_sha256_final(&e->sha, digest);
	sp_sha256_free(&e->sha);
	if (rc != SP_OK)
		return rc;
	end[0] = e->nchanged == 0 && f->size > 0 ? SP_METHOD_COPY
		: st ? SP_METHOD_TENSOR : partner >= 0 ? SP_METHOD_ZSTD_REF : SP_METHOD_ZSTD;
	sp_put64(end + 8, e->chunks);
	memcpy(end + 16, digest, SP_SHA256_LEN);
	return sp_write_record(ctx, e->out, SP_REC_FILE_END, end, sizeof(end));
}

/* Code every fine-tune file, then END (file count, bytes, ft and base digests). */
static sp_status
code_all(encoder *e, uint8_t ft_digest[SP_SHA256_LEN])
{
	sp_ctx	   *ctx = e->ctx;
	sp_sha256	man;
	uint8_t		end[80] = {0};
	sp_status	rc = SP_OK;

	if (sp_sha256_init(ctx, &man) != SP_OK)
		return ctx->err.code;
	for (size_t i = 0; i < e->ft->fs.n && rc == SP_OK; i++)
	{
		uint8_t		d[SP_SHA256_LEN];

		if ((rc = code_file(e, i, d)) == SP_OK)
		{
			sp_manifest_add(&man, d, e->ft->fs.f[i].rel);
			if (!e->ft->fs.is_dir)
				memcpy(ft_digest, d, SP_SHA256_LEN);
		}
	}
	if (e->ft->fs.is_dir)
		sp_sha256_final(&man, ft_digest);
	sp_sha256_free(&man);
	if (rc != SP_OK || (rc = sp_bases_seal(ctx, e->out, &e->bases, e->base_digest)) != SP_OK)
		return rc;
	sp_put32(end, (uint32_t) e->ft->fs.n);
	sp_put64(end + 8, e->total);
	memcpy(end + 16, ft_digest, SP_SHA256_LEN);
	memcpy(end + 48, e->base_digest, SP_SHA256_LEN);
	return sp_write_record(ctx, e->out, SP_REC_END, end, sizeof(end));
}

/*
 * Start the coding workers (sp_ctx.threads) and give each chunk in flight
 * its buffers; without workers the one slot uses the encoder's buffers.
 */
static sp_status
ring_init(encoder *e, size_t fcap, size_t bcap)
{
	sp_ctx	   *ctx = e->ctx;
	size_t		tcap = SP_MIN(fcap, (size_t) SP_TENSOR_CHUNK);

	sp_pool_start(&e->pool, sp_pool_threads(ctx->threads), &e->codec);
	e->nring = e->pool.nthreads > 0 ? e->pool.nthreads + 1 : 1;
	if ((e->ring = sp_calloc(ctx, (size_t) e->nring, sizeof(tslot))) == NULL)
		return SP_ERR_NOMEM;
	if (e->pool.nthreads == 0)
	{
		e->ring[0] = (tslot) {.fbuf = e->fbuf, .bbuf = e->bbuf, .cbuf = e->cbuf, .pay = e->pay,
		.pay_cap = e->pay_cap};
		return SP_OK;
	}
	/* a base chunk is at most 4 times its fine-tune chunk (F64 against BF16) */
	bcap = SP_MIN(bcap, 4 * tcap);
	e->ring_owns = true;
	for (int k = 0; k < e->nring; k++)
	{
		tslot	   *s = &e->ring[k];

		s->pay_cap = SP_CHUNK_HDR + sp_codec_bound(tcap);
		s->fbuf = sp_alloc(ctx, tcap);
		s->cbuf = sp_alloc(ctx, tcap);
		s->bbuf = sp_alloc(ctx, bcap);
		s->pay = sp_alloc(ctx, s->pay_cap);
		if (!s->fbuf || !s->cbuf || !s->bbuf || !s->pay)
			return SP_ERR_NOMEM;
	}
	return SP_OK;
}

/* Free the ring's own buffers (after the workers stopped). */
static void
ring_free(encoder *e)
{
	if (e->ring == NULL)
		return;
	for (int k = 0; k < e->nring && e->ring_owns; k++)
	{
		sp_free(e->ctx, e->ring[k].fbuf);
		sp_free(e->ctx, e->ring[k].cbuf);
		sp_free(e->ctx, e->ring[k].bbuf);
		sp_free(e->ctx, e->ring[k].pay);
	}
	sp_free(e->ctx, e->ring);
	e->ring = NULL;
}

/* Allocate the encoder's buffers and codec. */
static sp_status
encoder_init(sp_ctx *ctx, encoder *e, sp_model *base, sp_model *ft, sp_out *out, int level)
{
	size_t		fcap,
				bcap;

	memset(e, 0, sizeof(*e));
	e->ctx = ctx;
	e->level = level;
	e->base = base;
	e->ft = ft;
	e->out = out;
	/* buffers sized to the inputs, so a small model costs little memory */
	fcap = (size_t) SP_MIN((uint64_t) SP_CHUNK_MAX, sp_fileset_max_size(&ft->fs));
	bcap = (size_t) SP_MIN((uint64_t) SP_PREFIX_MAX, sp_fileset_max_size(&base->fs));
	e->pay_cap = SP_CHUNK_HDR + sp_codec_bound(fcap) + 14 + SP_MAX_NAME;
	e->slot = sp_alloc(ctx, (base->fs.n ? base->fs.n : 1) * sizeof(uint32_t));
	e->fbuf = sp_alloc(ctx, fcap);
	e->bbuf = sp_alloc(ctx, bcap);
	e->cbuf = sp_alloc(ctx, fcap);
	e->pay = sp_alloc(ctx, e->pay_cap);
	if (!e->slot || !e->fbuf || !e->bbuf || !e->cbuf || !e->pay)
		return SP_ERR_NOMEM;
	for (size_t i = 0; i < base->fs.n; i++)
		e->slot[i] = SP_NO_BASE;
	if (sp_codec_init(ctx, &e->codec) != SP_OK)
		return ctx->err.code;
	return ring_init(e, fcap, bcap);
}

/* Free what encoder_init allocated (the workers are stopped first). */
static void
encoder_free(encoder *e)
{
	if (e->ctx == NULL)
		return;
	sp_pool_stop(&e->pool);
	sp_bases_free(e->ctx, &e->bases);
	ring_free(e);
	sp_codec_free(e->ctx, &e->codec);
	sp_free(e->ctx, e->slot);
	sp_free(e->ctx, e->fbuf);
	sp_free(e->ctx, e->bbuf);
	sp_free(e->ctx, e->cbuf);
	sp_free(e->ctx, e->pay);
}

/* Run a whole compression into out (already opened). */
static sp_status
compress_models(sp_ctx *ctx, sp_model *base, sp_model *ft, sp_out *out, int level,
				sp_compress_result *res)
{
	encoder		e;
	uint8_t		ftd[SP_SHA256_LEN];
	sp_status	rc;

	rc = encoder_init(ctx, &e, base, ft, out, level);
	if (rc == SP_OK)
		rc = plan_bases(&e);	/* also sums e.total */
	if (rc == SP_OK && e.total >= SP_DIRECT_MIN)
		rc = sp_out_direct(ctx, out);	/* large: past the page cache (files.h) */
	if (rc == SP_OK)
		rc = sp_write_header(ctx, out, (ft->fs.is_dir ? SP_FLAG_DIR : 0) | SP_FLAG_BASEFP);
	if (rc == SP_OK)
		rc = write_bases(&e);
	if (rc == SP_OK)
		rc = code_all(&e, ftd);
	if (rc == SP_OK)
	{
		res->ft_bytes = e.total;
		sp_hex(ftd, SP_SHA256_LEN, res->ft_sha256);
		sp_hex(e.base_digest, SP_SHA256_LEN, res->base_sha256);
	}
	encoder_free(&e);
	return rc;
}

/* Fill the size ratios of a result. */
static void
finish_result(sp_compress_result *res, uint64_t delta_bytes, double t0)
{
	res->delta_bytes = delta_bytes;
	res->compression_ratio = delta_bytes ? (double) res->ft_bytes / (double) delta_bytes : 0;
	res->savings_pct = res->ft_bytes ? 100.0 * (1.0 - (double) delta_bytes / (double) res->ft_bytes) : 0;
	res->elapsed_ms = sp_now_ms() - t0;
}

/* Validate a compression level. */
static sp_status
check_level(sp_ctx *ctx, int level)
{
	if (level < SP_LEVEL_MIN || level > SP_LEVEL_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "compression level %d is out of range (%d to %d)",
					   level, SP_LEVEL_MIN, SP_LEVEL_MAX);
	return SP_OK;
}

/* Write the delta of ft against base to out. */
sp_status
sp_delta_compress(sp_ctx *ctx, const char *base, const char *ft, const char *out,
				  int level, sp_compress_result *res)
{
	double		t0 = sp_now_ms();
	sp_model	bm = {.fs.fd = -1},
				fm = {.fs.fd = -1};
	sp_out		o = {.fd = -1};
	char	   *out_path = NULL;
	sp_status	rc;

	sp_clear_error(ctx);
	memset(res, 0, sizeof(*res));
	if ((rc = check_level(ctx, level)) == SP_OK &&
		(rc = sp_path_output(ctx, out, &out_path)) == SP_OK &&
		(rc = sp_model_open(ctx, base, true, &bm)) == SP_OK &&
		(rc = sp_model_open(ctx, ft, false, &fm)) == SP_OK &&
		(rc = sp_out_file(ctx, &o, out_path)) == SP_OK &&
		(rc = compress_models(ctx, &bm, &fm, &o, level, res)) == SP_OK)
	{
		uint64_t	written = o.written;

		if ((rc = sp_out_commit(ctx, &o)) == SP_OK)
		{
			snprintf(res->delta_path, sizeof(res->delta_path), "%s", out_path);
			finish_result(res, written, t0);
		}
	}
	sp_out_abort(ctx, &o);
	sp_model_close(ctx, &fm);
	sp_model_close(ctx, &bm);
	sp_free(ctx, out_path);
	return rc;
}

/* Delta of one safetensors buffer against another, in memory. */
sp_status
sp_delta_compress_mem(sp_ctx *ctx, const void *base, size_t base_len,
					  const void *ft, size_t ft_len, int level, size_t max_out,
					  void **out, size_t *out_len)
{
	sp_model	bm = {.fs.fd = -1},
				fm = {.fs.fd = -1};
	sp_out		o;
	sp_compress_result res;
	sp_status	rc;

	sp_clear_error(ctx);
	*out = NULL;
	*out_len = 0;
	sp_out_mem(&o, max_out);
	if ((rc = check_level(ctx, level)) == SP_OK &&
		(rc = sp_model_mem(ctx, "base.safetensors", base, base_len, true, &bm)) == SP_OK &&
		(rc = sp_model_mem(ctx, "model.safetensors", ft, ft_len, false, &fm)) == SP_OK &&
		(rc = compress_models(ctx, &bm, &fm, &o, level, &res)) == SP_OK)
	{
		*out = o.mem;
		*out_len = o.mem_len;
		o.mem = NULL;
	}
	sp_out_abort(ctx, &o);
	sp_model_close(ctx, &fm);
	sp_model_close(ctx, &bm);
	return rc;
}
