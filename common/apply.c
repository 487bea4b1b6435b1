/*
 * apply.c -- rebuild a fine-tune from its base and a delta; verify; list.
 *
 * How it works: the reader walks the records in order.  BASES names the base
 * files the delta reads; each is found in the given base (by relative name,
 * or the only file when both sides are single files) and its size checked
 * at once, while its fingerprint (SHA-256 for older deltas) is computed
 * beside the decoding and compared before anything is renamed into place:
 * the decoder fingerprints the base bytes it reads while they run on in
 * order, and a helper thread (bghash.c) hashes the rest of each file from
 * there, or hashes the files from the start when the decoder cannot (see
 * start_base_hash).  So
 * a wrong base is an error, never a wrong file, and when decoding fails
 * on a base whose digest differs, the error says "wrong base" rather than
 * naming the chunk that first came out wrong.  Each FILE opens an output
 * (a temporary file, or a file inside a temporary directory), each CHUNK
 * is decoded (reading the base bytes it names, after bounds checks) and its
 * XXH3 checksum is compared (for a file decoded into the hash writer's
 * ring, on that writer's thread beside the SHA-256, sp_hw_expect; a
 * mismatch is reported at the next chunk, at FILE_END, or in place of a
 * later record's error, first_error), and FILE_END
 * compares the SHA-256 of
 * everything written.  The SHA-256 and the write of each decoded chunk run
 * on a second thread, and a file output is flushed every 16 MiB on a third
 * (hashwriter.c), while the next chunk is decoded into a second buffer; an
 * output of 64 MiB or more is decoded straight into the hash writer's ring
 * and written from there with O_DIRECT by that third thread instead
 * (hashwriter.h).
 * Only after END is the output fsynced and renamed into place.  Verify runs
 * the same path with no output.
 */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "bghash.h"
#include "codec.h"
#include "container.h"
#include "hashwriter.h"
#include "parquet.h"
#include "rowindex.h"

/* A base file the delta reads, resolved against the given base. */
typedef struct base_ref
{
	size_t		idx;			/* index in the base file set */
	uint64_t	size;
	uint8_t		sha[SP_SHA256_LEN];	/* the digest the delta was made against */
	uint8_t		fp[SP_FP_LEN];	/* its fingerprint, if the delta has them */
	uint64_t	fed;			/* the decoder fingerprinted bytes [0, fed) of it */
} base_ref;

#define FEED_MAX 256			/* base files the decoder fingerprints itself, at most */

/* State of one apply / verify / info run. */
typedef struct decoder
{
	sp_ctx	   *ctx;
	sp_reader	rd;
	sp_fileset *base;			/* NULL for info */
	base_ref   *bases;
	uint32_t	nbases;
	uint8_t    *seen;			/* base files already listed in BASES */
	bool		fps;			/* BASES has fingerprints (SP_FLAG_BASEFP) */
	sp_bghash	bh;				/* their fingerprints (else SHA-256), on a helper */
	bool		feeding;		/* the decoder fingerprints what it reads (start_base_hash) */
	sp_basehash *feed;			/* per BASES entry: fingerprint of [0, fed) */
	uint64_t   *hand_from;		/* handed to the helper: where each file goes on ... */
	sp_basehash *hand_states;	/* ... and from which state */
	sp_codec	codec;
	bool		have_codec;
	uint8_t    *dst;			/* where the chunk being decoded goes: obuf or the ring */
	uint8_t    *obuf;			/* decoded chunk */
	uint8_t    *obuf2;			/* the previous one, hashed and written meanwhile */
	size_t		ocap2;
	sp_hashwriter hw;			/* SHA-256 and write of the previous chunk */
	uint8_t    *ring;			/* its direct-I/O ring, unaligned allocation */
	bool		ring_on;		/* the current file is decoded into the ring */
	uint8_t    *bbuf;			/* base bytes of a chunk or prefix */
	uint8_t    *cbuf;			/* base bytes converted to the chunk's dtype */
	size_t		ocap,
				bcap,
				ccap;			/* sizes of the three buffers, grown on demand */
	/* dataset deltas: ROWSPACE records and the row space built from one */
	uint32_t   *rs_slots[SP_ROWS_COUNT];
	uint32_t	rs_n[SP_ROWS_COUNT];
	bool		rs_seen[SP_ROWS_COUNT];
	sp_rowspace rs;
	int			rs_fmt;			/* format rs was built for, or 0 */
	sp_rowslay	lay;
	/* Parquet pages: expanded parent pages, and the expanded page */
	uint8_t    *pq_pre;
	uint8_t    *pq_page;
	size_t		pq_pre_cap,
				pq_page_cap;
	/* current file */
	char	   *name;
	uint64_t	size;
	uint64_t	pos;
	uint64_t	chunks;
	uint64_t	file_start;		/* offset of its FILE record */
	sp_sha256	sha;
	bool		in_file;
	/* totals */
	uint64_t	bytes;
	uint64_t	nfiles;
	sp_sha256	manifest;
	uint8_t		last_digest[SP_SHA256_LEN];
	/* outputs */
	sp_out		out;
	bool		to_dir;
	char	   *tmp_dir;
	const char *final_path;
	sp_out_kind out_kind;
	size_t		mem_max;
} decoder;

/* Message helper: the delta is malformed. */
static sp_status
corrupt(decoder *d, const char *what)
{
	return sp_fail(d->ctx, SP_ERR_CORRUPT, "delta \"%s\" is corrupted: %s", d->rd.name, what);
}

/*
 * Find base file named rel (or the single base file) and check its size;
 * its digest is checked by settle_bases.  seen marks files already listed:
 * each may be listed once, else a tiny delta could make us hash a large
 * base over and over.
 */
static sp_status
check_base(decoder *d, const char *rel, uint64_t size, const uint8_t *sha, base_ref *ref,
		   uint8_t *seen)
{
	sp_ctx	   *ctx = d->ctx;
	long		idx = sp_fileset_find(d->base, rel);
	uint8_t		got[SP_SHA256_LEN];
	char		want_hex[65],
				got_hex[65];

	if (idx < 0 && !d->base->is_dir && d->nbases == 1)
		idx = 0;
	if (idx < 0)
		return sp_fail(ctx, SP_ERR_WRONG_BASE,
					   "wrong base: \"%s\" has no file \"%s\", which the delta was made against",
					   d->base->path, rel);
	if (seen[idx]++)
		return corrupt(d, "BASES lists a file twice");
	sp_hex(sha, SP_SHA256_LEN, want_hex);
	if (d->base->f[idx].size != size)
		return sp_fail(ctx, SP_ERR_WRONG_BASE,
					   "wrong base: \"%s\" has %llu bytes, the delta was made against %llu bytes (sha256 %s)",
					   d->base->f[idx].path ? d->base->f[idx].path : rel,
					   (unsigned long long) d->base->f[idx].size, (unsigned long long) size, want_hex);
	ref->idx = (size_t) idx;
	ref->size = size;
	memcpy(ref->sha, sha, SP_SHA256_LEN);
	if (d->base->f[idx].mem == NULL)
		return SP_OK;			/* hashed beside the decoding */
	/* a base in memory is hashed here: it is quick, and the name is the delta's */
	if (sp_fileset_sha256(ctx, d->base, (size_t) idx, got) != SP_OK)
		return ctx->err.code;
	sp_hex(got, SP_SHA256_LEN, got_hex);
	if (memcmp(got, sha, SP_SHA256_LEN) != 0)
		return sp_fail(ctx, SP_ERR_WRONG_BASE,
					   "wrong base: \"%s\" has sha256 %s, the delta was made against %s",
					   rel, got_hex, want_hex);
	return SP_OK;
}

/*
 * Hash the listed base files (those on disk) on a helper thread from byte
 * from[i] on, or from the start when from is NULL.
 */
static sp_status
start_helper(decoder *d, const uint64_t *from)
{
	size_t	   *idx = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, sizeof(size_t));
	size_t		n = 0;
	sp_status	rc;

	if (idx == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t i = 0; i < d->nbases; i++)
		if (d->base->f[d->bases[i].idx].mem == NULL)
		{
			if (from)
			{
				d->hand_from[n] = d->bases[i].fed;
				d->hand_states[n] = d->feed[i];	/* shares the state: fed no more */
			}
			idx[n++] = d->bases[i].idx;
		}
	if (n == 0)
		rc = SP_OK;
	else if (from)
		rc = sp_bghash_resume(d->ctx, &d->bh, d->base, idx, n, d->hand_from, d->hand_states);
	else
		rc = sp_bghash_start(d->ctx, &d->bh, d->base, idx, n, d->fps ? SP_BH_FP : SP_BH_SHA256,
							 true);
	sp_free(d->ctx, idx);
	return rc;
}

/*
 * Start checking the listed base files.  With fingerprints and a few files,
 * the decoder fingerprints the base bytes it reads itself while they run on
 * from where it got (feed_base), which on a pair of the same layout is the
 * whole base: read once instead of twice (on this project's VM the second
 * read cost apply of the 2 GB pair about 0.3 s of system time).  The rest
 * goes to the helper at the first gap or at the end (hand_over).  SHA-256
 * (deltas without fingerprints) is too slow for the decoder's thread: the
 * helper hashes those files from the start, beside the decoding.
 */
static sp_status
start_base_hash(decoder *d)
{
	if (!d->fps || d->nbases > FEED_MAX)
		return start_helper(d, NULL);
	if ((d->feed = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, sizeof(sp_basehash))) == NULL ||
		(d->hand_from = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, sizeof(uint64_t))) == NULL ||
		(d->hand_states = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, sizeof(sp_basehash))) == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t i = 0; i < d->nbases; i++)
		if (sp_basehash_init(d->ctx, &d->feed[i], SP_BH_FP) != SP_OK)
			return d->ctx->err.code;
	d->feeding = true;
	return SP_OK;
}

/* Hand the rest of every base file to the helper, from where the decoder's fingerprint ends. */
static sp_status
hand_over(decoder *d)
{
	if (!d->feeding)
		return SP_OK;
	d->feeding = false;
	return start_helper(d, d->hand_from);
}

/*
 * The decoder read bytes [off, off+n) of base slot into buf: fingerprint
 * those that continue what it fingerprinted of that file; a read past that
 * point leaves a gap only the helper can fill, so the rest goes to it.
 */
static sp_status
feed_base(decoder *d, uint32_t slot, uint64_t off, uint64_t n, const uint8_t *buf)
{
	base_ref   *ref = &d->bases[slot];

	if (!d->feeding || d->base->f[ref->idx].mem)
		return SP_OK;
	if (off > ref->fed)
		return hand_over(d);
	if (off + n > ref->fed)
	{
		sp_basehash_update(&d->feed[slot], buf + (ref->fed - off), (size_t) (off + n - ref->fed));
		ref->fed = off + n;
	}
	return SP_OK;
}

/*
 * The error for base ref whose fingerprint (or, without fingerprints,
 * SHA-256 got) differs.  A differing fingerprint is explained by the
 * SHA-256, computed here: only on this error path, so apply reads the base
 * twice only when it is about to fail anyway.
 */
static sp_status
base_mismatch(decoder *d, const base_ref *ref, const uint8_t *got)
{
	const sp_file *f = &d->base->f[ref->idx];
	uint8_t		sha[SP_SHA256_LEN];
	char		want_hex[65],
				got_hex[65];

	if (d->fps)
	{
		if (sp_fileset_sha256(d->ctx, d->base, ref->idx, sha) != SP_OK)
			return d->ctx->err.code;
		if (memcmp(sha, ref->sha, SP_SHA256_LEN) == 0)
			return corrupt(d, "a BASES fingerprint does not match its base file");
		got = sha;
	}
	sp_hex(ref->sha, SP_SHA256_LEN, want_hex);
	sp_hex(got, SP_SHA256_LEN, got_hex);
	return sp_fail(d->ctx, SP_ERR_WRONG_BASE,
				   "wrong base: \"%s\" has sha256 %s, the delta was made against %s",
				   f->path ? f->path : f->rel, got_hex, want_hex);
}

/*
 * After decoding ended with rc: wait for the base digests and compare them.
 * A differing digest is the error to report, even if decoding failed first
 * (a wrong base makes chunks come out wrong); otherwise decoding's own
 * error stands.  A cancel does not wait.
 */
static sp_status
settle_bases(decoder *d, sp_status rc)
{
	sp_ctx	   *ctx = d->ctx;
	sp_error	saved = ctx->err;
	sp_status	hrc;

	if (rc == SP_ERR_CANCELLED || rc == SP_ERR_NOMEM)
		return rc;
	sp_clear_error(ctx);		/* the first error recorded wins: make room */
	if ((hrc = hand_over(d)) != SP_OK)
		return hrc;
	if (d->bh.fs == NULL)
	{
		ctx->err = saved;
		return rc;
	}
	if ((hrc = sp_bghash_finish(ctx, &d->bh)) != SP_OK)
	{
		if (rc == SP_OK || hrc == SP_ERR_CANCELLED)
			return hrc;
		ctx->err = saved;
		return rc;
	}
	for (uint32_t i = 0, j = 0; i < d->nbases; i++)
	{
		const base_ref *ref = &d->bases[i];
		const uint8_t *got;

		if (d->base->f[ref->idx].mem)
			continue;			/* checked in check_base */
		got = d->fps ? d->bh.fps + (size_t) j * SP_FP_LEN : d->bh.digests + (size_t) j * SP_SHA256_LEN;
		j++;
		if (memcmp(got, d->fps ? ref->fp : ref->sha, d->fps ? SP_FP_LEN : SP_SHA256_LEN) != 0)
			return base_mismatch(d, ref, got);
	}
	ctx->err = saved;
	return rc;
}

/* Parse the BASES record; check each base file unless listing only. */
static sp_status
read_bases(decoder *d)
{
	const uint8_t *p = d->rd.buf;
	size_t		len = d->rd.len,
				pos = 4,
				fixed = SP_BASE_ENTRY(d->rd.flags);

	if (d->rd.type != SP_REC_BASES || len < 4)
		return corrupt(d, "first record is not BASES");
	d->fps = (d->rd.flags & SP_FLAG_BASEFP) != 0;
	d->nbases = sp_get32(p);
	/* each entry needs at least `fixed` bytes: bound the count before allocating */
	if (d->nbases > (len - 4) / fixed)
		return corrupt(d, "BASES record is too short");
	d->bases = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, sizeof(base_ref));
	if (d->bases == NULL)
		return SP_ERR_NOMEM;
	if (d->base && (d->seen = sp_calloc(d->ctx, d->base->n ? d->base->n : 1, 1)) == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t i = 0; i < d->nbases; i++)
	{
		char		rel[SP_MAX_NAME + 1];
		size_t		nl;

		if (len - pos < fixed || (nl = sp_get16(p + pos + fixed - 2)) > len - pos - fixed ||
			nl > SP_MAX_NAME)
			return corrupt(d, "BASES record is too short");
		memcpy(rel, p + pos + fixed, nl);
		rel[nl] = '\0';
		d->bases[i].size = sp_get64(p + pos);
		if (d->fps)
			memcpy(d->bases[i].fp, p + pos + 40, SP_FP_LEN);
		if (d->base && check_base(d, rel, sp_get64(p + pos), p + pos + 8, &d->bases[i],
								  d->seen) != SP_OK)
			return d->ctx->err.code;
		pos += fixed + nl;
	}
	if (pos != len)
		return corrupt(d, "BASES record has trailing bytes");
	return d->base ? start_base_hash(d) : SP_OK;
}

/*
 * Write a large output with direct I/O (hashwriter.h): lend the hash
 * writer an aligned ring, allocated here once, with a chunk's worth of
 * slack past its end, and decode into it.  Where the file system refuses,
 * the file is written buffered as before.
 */
static sp_status
go_direct(decoder *d)
{
	if (d->ring == NULL &&
		(d->ring = sp_alloc(d->ctx, SP_HW_RING + SP_CHUNK_MAX + SP_DIRECT_ALIGN)) == NULL)
		return SP_ERR_NOMEM;
	d->ring_on = sp_hw_direct(&d->hw, d->out.fd, sp_align_up(d->ring, SP_DIRECT_ALIGN),
							  SP_CHUNK_MAX);
	return SP_OK;
}

/* Open the output for the file the FILE record names. */
static sp_status
open_output(decoder *d)
{
	sp_hw_new_file(&d->hw);
	d->ring_on = false;
	if (d->out_kind == SP_OUT_NULL)
	{
		memset(&d->out, 0, sizeof(d->out));
		d->out.fd = -1;
		return SP_OK;
	}
	if (d->out_kind == SP_OUT_MEM)
	{
		if (d->nfiles > 1)
			return corrupt(d, "an in-memory delta holds more than one file");
		sp_out_mem(&d->out, d->mem_max);
		return SP_OK;
	}
	if (d->to_dir)
	{
		if (sp_outdir_file(d->ctx, d->tmp_dir, d->name, &d->out) != SP_OK)
			return d->ctx->err.code;
	}
	else if (d->nfiles > 1)
		return corrupt(d, "a single-file delta holds more than one file");
	else if (sp_out_file(d->ctx, &d->out, d->final_path) != SP_OK)
		return d->ctx->err.code;
	return d->size >= SP_DIRECT_MIN ? go_direct(d) : SP_OK;
}

/* Handle a FILE record. */
static sp_status
begin_file(decoder *d)
{
	const uint8_t *p = d->rd.buf;
	size_t		nl;

	if (d->in_file || d->rd.len < 14 || (nl = sp_get16(p + 12)) != d->rd.len - 14)
		return corrupt(d, "bad FILE record");
	sp_free(d->ctx, d->name);
	if ((d->name = sp_alloc(d->ctx, nl + 1)) == NULL)
		return SP_ERR_NOMEM;
	memcpy(d->name, p + 14, nl);
	d->name[nl] = '\0';
	/* a hostile delta must not name "../x" or "/etc/x" */
	if (!sp_rel_name_ok(d->name))
		return sp_fail(d->ctx, SP_ERR_CORRUPT, "delta \"%s\" names an unsafe file \"%s\"",
					   d->rd.name, d->name);
	if (d->nfiles >= SP_MAX_FILES)
		return corrupt(d, "too many files");
	d->size = sp_get64(p);
	d->pos = 0;
	d->chunks = 0;
	d->in_file = true;
	d->nfiles++;
	d->file_start = d->rd.rec_start;
	if (sp_sha256_init(d->ctx, &d->sha) != SP_OK)
		return d->ctx->err.code;
	return open_output(d);
}

/* Read n bytes of base slot at off into buf, after checking the range. */
static sp_status
read_base(decoder *d, uint32_t slot, uint64_t off, uint64_t n, uint8_t *buf)
{
	if (slot >= d->nbases)
		return corrupt(d, "chunk names a base file that is not listed");
	if (off > d->bases[slot].size || n > d->bases[slot].size - off)
		return corrupt(d, "chunk reads past the end of its base file");
	if (sp_fileset_read(d->ctx, d->base, d->bases[slot].idx, off, buf, (size_t) n) != SP_OK)
		return d->ctx->err.code;
	return feed_base(d, slot, off, n, buf);
}

/* The error of a chunk whose decoded bytes do not match its checksum. */
static sp_status
bad_checksum(decoder *d, uint64_t chunk)
{
	return sp_fail(d->ctx, SP_ERR_CORRUPT,
				   "delta \"%s\" is corrupted: chunk %llu of \"%s\" does not match its checksum",
				   d->rd.name, (unsigned long long) chunk, d->name);
}

/*
 * Wait for the chunk in flight (drain: and for a flush of the file, which
 * is then ours to fsync or close); a write or flush error as a status.
 */
static sp_status
emit_wait(decoder *d, bool drain)
{
	int			err = drain ? sp_hw_drain(&d->hw) : sp_hw_wait(&d->hw);
	const char *path = d->out.tmp_path ? d->out.tmp_path : d->out.final_path;
	uint64_t	bad;

	if (err == 0 && sp_hw_bad_piece(&d->hw, &bad))
		return bad_checksum(d, bad);
	if (err == 0)
		return SP_OK;
	if (d->hw.err_flush)
		return sp_fail_io(d->ctx, err, "could not fsync \"%s\"", path);
	return sp_fail_io(d->ctx, err, "could not write \"%s\"", path);
}

/*
 * Point dst at room for the next n decoded bytes (at most SP_CHUNK_MAX):
 * the hash writer's ring for a direct-I/O file, so they go to the device
 * from where they were decoded, else obuf.
 */
static sp_status
out_space(decoder *d, size_t n)
{
	if (!d->ring_on)
	{
		if (sp_reserve(d->ctx, &d->obuf, &d->ocap, n) != SP_OK)
			return d->ctx->err.code;
		d->dst = d->obuf;
		return SP_OK;
	}
	if ((d->dst = sp_hw_space(&d->hw, n)) != NULL)
		return SP_OK;
	/* NULL only after a write error, which emit_wait reports */
	return emit_wait(d, false) != SP_OK ? d->ctx->err.code :
		sp_fail(d->ctx, SP_ERR_INTERNAL, "the output ring refused a chunk");
}

/*
 * Hand d->dst[0..n) to the hash writer (SHA-256, and the write of a file
 * output, on its thread) and swap in the other buffer to decode the next
 * chunk into; an in-memory output is copied here, on the caller's thread,
 * since it allocates.
 */
static sp_status
emit(decoder *d, size_t n)
{
	uint8_t    *p = d->dst;
	size_t		cap = d->ocap;

	if (emit_wait(d, false) != SP_OK)
		return d->ctx->err.code;
	d->pos += n;
	d->bytes += n;
	if (d->out_kind == SP_OUT_MEM && sp_out_write(d->ctx, &d->out, p, n) != SP_OK)
		return d->ctx->err.code;
	if (d->out_kind == SP_OUT_FILE)
		d->out.written += n;
	sp_hw_submit(&d->hw, &d->sha, d->out_kind == SP_OUT_FILE ? d->out.fd : -1, p, n);
	if (d->ring_on)
		return SP_OK;			/* the ring moves on by itself */
	d->obuf = d->obuf2;
	d->ocap = d->ocap2;
	d->obuf2 = p;
	d->ocap2 = cap;
	return SP_OK;
}

/* Stream a COPY chunk from the base, checking its checksum. */
static sp_status
apply_copy(decoder *d, const sp_chunk_hdr *h)
{
	XXH3_state_t st;
	uint64_t	done = 0;

	if (h->base_len != h->out_len || d->rd.len != SP_CHUNK_HDR || h->dtype || h->transform ||
		h->base_dtype)
		return corrupt(d, "bad COPY chunk");
	XXH3_64bits_reset(&st);
	while (done < h->out_len)
	{
		size_t		n = (size_t) SP_MIN(h->out_len - done, (uint64_t) SP_CHUNK_MAX);

		if (sp_check_interrupt(d->ctx) != SP_OK || out_space(d, n) != SP_OK ||
			read_base(d, h->base, h->base_off + done, n, d->dst) != SP_OK)
			return d->ctx->err.code;
		XXH3_64bits_update(&st, d->dst, n);
		if (emit(d, n) != SP_OK)
			return d->ctx->err.code;
		done += n;
	}
	if (XXH3_64bits_digest(&st) != h->checksum)
		return corrupt(d, "copied base bytes do not match their checksum");
	return SP_OK;
}

/* Decode a ZSTD chunk into dst. */
static sp_status
decode_zstd_chunk(decoder *d, const sp_chunk_hdr *h)
{
	const uint8_t *bp = NULL;

	if (h->base_len > SP_PREFIX_MAX || h->dtype || h->transform || h->base_dtype)
		return corrupt(d, "bad ZSTD chunk");
	if (h->base != SP_NO_BASE)
	{
		if (sp_reserve(d->ctx, &d->bbuf, &d->bcap, (size_t) h->base_len) != SP_OK ||
			read_base(d, h->base, h->base_off, h->base_len, d->bbuf) != SP_OK)
			return d->ctx->err.code;
		bp = d->bbuf;
	}
	else if (h->base_len != 0)
		return corrupt(d, "chunk has a base range but no base file");
	return sp_codec_decode_zstd(d->ctx, &d->codec, bp, (size_t) h->base_len,
								d->rd.buf + SP_CHUNK_HDR, d->rd.len - SP_CHUNK_HDR,
								d->dst, (size_t) h->out_len);
}

/* Decode a TENSOR chunk into dst, converting its base's dtype if needed. */
static sp_status
decode_tensor_chunk(decoder *d, const sp_chunk_hdr *h)
{
	sp_dtype	dt = (sp_dtype) h->dtype;
	sp_dtype	bdt = h->base_dtype ? (sp_dtype) (h->base_dtype - 1) : dt;
	const uint8_t *bp = NULL;
	uint64_t	elems;

	if (h->dtype >= SP_DT_COUNT || h->out_len % (uint64_t) sp_dtype_size(dt) != 0 ||
		(h->base_dtype && (h->base_dtype > SP_DT_COUNT || !sp_convertible(bdt, dt))))
		return corrupt(d, "bad TENSOR chunk");
	elems = h->out_len / (uint64_t) sp_dtype_size(dt);
	if (h->base != SP_NO_BASE)
	{
		if (h->base_len != elems * (uint64_t) sp_dtype_size(bdt) || h->base_len > SP_PREFIX_MAX)
			return corrupt(d, "bad TENSOR chunk");
		if (sp_reserve(d->ctx, &d->bbuf, &d->bcap, (size_t) h->base_len) != SP_OK ||
			read_base(d, h->base, h->base_off, h->base_len, d->bbuf) != SP_OK)
			return d->ctx->err.code;
		bp = d->bbuf;
		if (bdt != dt)
		{
			if (sp_reserve(d->ctx, &d->cbuf, &d->ccap, (size_t) h->out_len) != SP_OK)
				return d->ctx->err.code;
			sp_convert(bdt, dt, d->bbuf, d->cbuf, (size_t) elems);
			bp = d->cbuf;
		}
	}
	else if (h->base_len != 0 || h->base_dtype)
		return corrupt(d, "chunk has a base range but no base file");
	return sp_codec_decode_tensor(d->ctx, &d->codec, dt, h->transform, bp,
								  d->rd.buf + SP_CHUNK_HDR, d->rd.len - SP_CHUNK_HDR,
								  d->dst, (size_t) h->out_len);
}

/* Handle a ROWSPACE record: a row format and the BASES files it cuts. */
static sp_status
read_rowspace(decoder *d)
{
	const uint8_t *p = d->rd.buf;
	uint8_t    *used;
	uint32_t	n;
	int			fmt;

	if (d->nfiles > 0 || d->rd.len < 8 || p[1] || p[2] || p[3])
		return corrupt(d, "bad ROWSPACE record");
	fmt = p[0];
	n = sp_get32(p + 4);
	if (fmt <= SP_ROWS_NONE || fmt >= SP_ROWS_COUNT || d->rs_seen[fmt] || n > d->nbases ||
		d->rd.len != 8 + (size_t) n * 4)
		return corrupt(d, "bad ROWSPACE record");
	d->rs_seen[fmt] = true;
	d->rs_n[fmt] = n;
	if ((d->rs_slots[fmt] = sp_alloc(d->ctx, (n ? n : 1) * sizeof(uint32_t))) == NULL ||
		(used = sp_calloc(d->ctx, d->nbases ? d->nbases : 1, 1)) == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t i = 0; i < n; i++)
	{
		uint32_t	s = sp_get32(p + 8 + 4 * i);

		/* each file once: a repeated file would make us cut it again and again */
		if (s >= d->nbases || used[s]++)
		{
			sp_free(d->ctx, used);
			return corrupt(d, "ROWSPACE names a base file twice or one that is not listed");
		}
		d->rs_slots[fmt][i] = s;
	}
	sp_free(d->ctx, used);
	return SP_OK;
}

/* Build the row space for format fmt (once). */
static sp_status
need_rowspace(decoder *d, int fmt)
{
	size_t	   *idx;
	sp_status	rc;

	if (fmt <= SP_ROWS_NONE || fmt >= SP_ROWS_COUNT || !d->rs_seen[fmt])
		return corrupt(d, "row chunk without a ROWSPACE record for its format");
	if (d->rs_fmt == fmt)
		return SP_OK;
	/* one row format per delta: a second would make us cut the whole parent again */
	if (d->rs_fmt != 0)
		return corrupt(d, "row chunks of two formats");
	sp_rowspace_free(d->ctx, &d->rs);
	d->rs_fmt = 0;
	if (d->lay.dlen == NULL && sp_rowslay_init(d->ctx, &d->lay) != SP_OK)
		return SP_ERR_NOMEM;
	if ((idx = sp_alloc(d->ctx, (d->rs_n[fmt] ? d->rs_n[fmt] : 1) * sizeof(size_t))) == NULL)
		return SP_ERR_NOMEM;
	for (uint32_t i = 0; i < d->rs_n[fmt]; i++)
		idx[i] = d->bases[d->rs_slots[fmt][i]].idx;
	/* the parent is cut past the decoder's reads: the helper hashes it meanwhile */
	rc = hand_over(d);
	if (rc == SP_OK)
		rc = sp_rowspace_build(d->ctx, &d->rs, d->base, (sp_rowfmt) fmt, idx, d->rs_n[fmt],
						   false, NULL, 0);
	sp_free(d->ctx, idx);
	if (rc != SP_OK)
		return rc;
	if (d->rs.nfiles != d->rs_n[fmt])
		return corrupt(d, "a parent file does not cut into rows");
	d->rs_fmt = fmt;
	return SP_OK;
}

/* Decode a ROWS chunk into dst: parent row runs and literal rows. */
static sp_status
decode_rows_chunk(decoder *d, const sp_chunk_hdr *h)
{
	sp_rows_chunk c = {0};

	if (h->base_dtype || h->base != SP_NO_BASE || h->base_off > h->out_len)
		return corrupt(d, "bad ROWS chunk");
	if (need_rowspace(d, h->transform) != SP_OK)
		return d->ctx->err.code;
	if (h->base_len > d->rs.nrows)
		return corrupt(d, "bad ROWS chunk");
	c.nrows = h->base_off;
	c.prev0 = (int64_t) h->base_len - 1;
	c.layout = h->dtype;
	return sp_rows_decode(d->ctx, &d->codec, &d->rs, &d->lay, d->rd.buf + SP_CHUNK_HDR,
						  d->rd.len - SP_CHUNK_HDR, &c, d->dst, (size_t) h->out_len);
}

/*
 * Expand the parent pages a SNAPPY chunk lists (u8 count, then per page
 * u64 offset, u32 stored bytes, u32 expanded bytes) into d->pq_pre, with
 * the chunk's page codec (its transform byte).
 */
static sp_status
snappy_prefix(decoder *d, const sp_chunk_hdr *h, const uint8_t *p, size_t n, size_t *pos,
			  size_t *plen)
{
	uint8_t		count;

	*plen = 0;
	if (*pos >= n || (count = p[(*pos)++]) > 3 || (size_t) count * 16 > n - *pos ||
		(count && h->base == SP_NO_BASE))
		return corrupt(d, "bad SNAPPY chunk");
	if (sp_reserve(d->ctx, &d->pq_pre, &d->pq_pre_cap, SP_PREFIX_MAX) != SP_OK ||
		sp_reserve(d->ctx, &d->bbuf, &d->bcap, SP_PQ_PAGE_MAX) != SP_OK)
		return SP_ERR_NOMEM;
	for (uint8_t i = 0; i < count; i++, *pos += 16)
	{
		uint64_t	off = sp_get64(p + *pos);
		uint32_t	clen = sp_get32(p + *pos + 8),
					ulen = sp_get32(p + *pos + 12);

		if (clen > SP_PQ_PAGE_MAX || ulen > SP_PQ_PAGE_MAX || ulen > SP_PREFIX_MAX - *plen)
			return corrupt(d, "bad SNAPPY chunk");
		if (read_base(d, h->base, off, clen, d->bbuf) != SP_OK)
			return d->ctx->err.code;
		/* the base was checked by SHA-256: a page that does not expand is the delta's fault */
		if (!sp_pq_expand(&d->codec, h->transform, d->bbuf, clen, d->pq_pre + *plen, ulen))
			return corrupt(d, "a parent page named by a SNAPPY chunk does not expand");
		*plen += ulen;
	}
	return SP_OK;
}

/*
 * Decode a SNAPPY chunk into dst: the expanded page is a zstd frame
 * against expanded parent pages; its page codec (transform: snappy, or
 * zstd at the level in dtype) compresses it back to the stored page, which
 * the chunk checksum then checks.
 */
static sp_status
decode_snappy_chunk(decoder *d, const sp_chunk_hdr *h)
{
	const uint8_t *p = d->rd.buf + SP_CHUNK_HDR;
	size_t		n = d->rd.len - SP_CHUNK_HDR,
				pos = 4,
				plen,
				got;
	uint32_t	ulen;

	if (h->transform > SP_PQ_ZSTD || (h->transform == SP_PQ_SNAPPY) != (h->dtype == 0) ||
		h->dtype > SP_PQ_ZSTD_LEVEL_MAX || h->base_dtype || h->base_off || h->base_len || n < 5 ||
		(ulen = sp_get32(p)) > SP_PQ_PAGE_MAX)
		return corrupt(d, "bad SNAPPY chunk");
	if (snappy_prefix(d, h, p, n, &pos, &plen) != SP_OK)
		return d->ctx->err.code;
	if (sp_reserve(d->ctx, &d->pq_page, &d->pq_page_cap, (size_t) ulen + 1) != SP_OK ||
		sp_reserve(d->ctx, &d->cbuf, &d->ccap, sp_pq_bound(ulen)) != SP_OK)
		return SP_ERR_NOMEM;
	if (sp_codec_decode_zstd(d->ctx, &d->codec, d->pq_pre, plen, p + pos, n - pos, d->pq_page,
							 ulen) != SP_OK)
		return d->ctx->err.code;
	got = sp_pq_compress(&d->codec, h->transform, h->dtype, d->pq_page, ulen, d->cbuf,
						 sp_pq_bound(ulen));
	if (got != h->out_len)
		return sp_fail(d->ctx, SP_ERR_CORRUPT,
					   "delta \"%s\" is corrupted: a Parquet page of \"%s\" does not compress back "
					   "to its size (or this %s differs from the writer's)", d->rd.name, d->name,
					   h->transform == SP_PQ_ZSTD ? "libzstd" : "libsnappy");
	memcpy(d->dst, d->cbuf, got);
	return SP_OK;
}

/* Decode a ZSTD, TENSOR, ROWS or SNAPPY chunk into dst. */
static sp_status
decode_chunk(decoder *d, const sp_chunk_hdr *h)
{
	if (h->out_len > SP_CHUNK_MAX)
		return corrupt(d, "chunk is larger than allowed");
	if (out_space(d, (size_t) h->out_len) != SP_OK)
		return d->ctx->err.code;
	if (h->kind == SP_CHUNK_ROWS)
		return decode_rows_chunk(d, h);
	if (h->kind == SP_CHUNK_SNAPPY)
		return decode_snappy_chunk(d, h);
	return h->kind == SP_CHUNK_ZSTD ? decode_zstd_chunk(d, h) : decode_tensor_chunk(d, h);
}

/* Handle a CHUNK record. */
static sp_status
apply_chunk(decoder *d)
{
	sp_chunk_hdr h;

	if (!d->in_file || d->rd.len < SP_CHUNK_HDR)
		return corrupt(d, "chunk outside a file");
	sp_chunk_hdr_get(d->rd.buf, &h);
	d->chunks++;
	if (h.out_len == 0)
		return corrupt(d, "empty chunk");
	if (h.out_len > d->size - d->pos)
		return corrupt(d, "chunk runs past the end of its file");
	if (sp_check_interrupt(d->ctx) != SP_OK)
		return d->ctx->err.code;
	if (h.kind == SP_CHUNK_COPY)
		return apply_copy(d, &h);
	if (h.kind != SP_CHUNK_ZSTD && h.kind != SP_CHUNK_TENSOR && h.kind != SP_CHUNK_ROWS &&
		h.kind != SP_CHUNK_SNAPPY)
		return corrupt(d, "unknown chunk kind");
	if (decode_chunk(d, &h) != SP_OK)
		return d->ctx->err.code;
	/* into the ring: checked beside its SHA-256, on the hash writer's thread */
	if (d->ring_on)
		sp_hw_expect(&d->hw, h.checksum, d->chunks);
	else if (XXH3_64bits(d->dst, (size_t) h.out_len) != h.checksum)
		return bad_checksum(d, d->chunks);
	return emit(d, (size_t) h.out_len);
}

/* Handle FILE_END: sizes, chunk count and SHA-256 must match. */
static sp_status
end_file(decoder *d)
{
	const uint8_t *p = d->rd.buf;
	char		want[65],
				got[65];

	if (!d->in_file || d->rd.len != 48 || sp_method_name(p[0]) == NULL)
		return corrupt(d, "bad FILE_END record");
	if (d->pos != d->size || sp_get64(p + 8) != d->chunks)
		return corrupt(d, "file is incomplete");
	if (emit_wait(d, true) != SP_OK)
		return d->ctx->err.code;
	sp_sha256_final(&d->sha, d->last_digest);
	sp_sha256_free(&d->sha);
	d->in_file = false;
	sp_hex(p + 16, SP_SHA256_LEN, want);
	sp_hex(d->last_digest, SP_SHA256_LEN, got);
	if (memcmp(p + 16, d->last_digest, SP_SHA256_LEN) != 0)
		return sp_fail(d->ctx, SP_ERR_VERIFY_FAILED,
					   "rebuilt \"%s\" has sha256 %s, expected %s", d->name, got, want);
	sp_manifest_add(&d->manifest, d->last_digest, d->name);
	if (d->out_kind == SP_OUT_FILE && d->to_dir)
	{
		sp_status	rc = sp_out_commit(d->ctx, &d->out);

		sp_out_abort(d->ctx, &d->out);
		return rc;
	}
	return SP_OK;
}

/* Handle END: totals and the whole-model digest. */
static sp_status
end_all(decoder *d, uint8_t digest[SP_SHA256_LEN])
{
	const uint8_t *p = d->rd.buf;

	if (d->in_file || d->rd.len != 80 || sp_get32(p) != d->nfiles || sp_get64(p + 8) != d->bytes)
		return corrupt(d, "bad END record");
	if (d->rd.pos != d->rd.size)
		return corrupt(d, "bytes after the END record");
	if (!(d->rd.flags & SP_FLAG_DIR) && d->nfiles != 1)
		return corrupt(d, "a single-file delta must hold exactly one file");
	sp_sha256_final(&d->manifest, digest);
	if (!(d->rd.flags & SP_FLAG_DIR))
		memcpy(digest, d->last_digest, SP_SHA256_LEN);
	if (memcmp(digest, p + 16, SP_SHA256_LEN) != 0)
		return sp_fail(d->ctx, SP_ERR_VERIFY_FAILED, "rebuilt model does not match the delta's digest");
	return SP_OK;
}

/*
 * A record failed with rc.  For a file decoded into the ring, an earlier
 * chunk may still be being checked on the hash writer's thread: wait for
 * it (at most a ring's worth of hashing), and if one failed, its error is
 * the one to report, as a check on this thread would have reported it
 * first.  A cancel or any other failure is reported as is.
 */
static sp_status
first_error(decoder *d, sp_status rc)
{
	uint64_t	bad;

	if (!d->ring_on || rc != SP_ERR_CORRUPT)
		return rc;
	sp_hw_drain(&d->hw);
	if (!sp_hw_bad_piece(&d->hw, &bad))
		return rc;
	sp_clear_error(d->ctx);		/* the first error recorded wins: replace rc's */
	return bad_checksum(d, bad);
}

/* Walk every record after BASES, rebuilding; digest receives the model digest. */
static sp_status
decode_records(decoder *d, uint8_t digest[SP_SHA256_LEN])
{
	sp_status	rc = SP_OK;

	for (;;)
	{
		if ((rc = sp_reader_next(d->ctx, &d->rd, false)) != SP_OK)
			return rc;
		sp_progress(d->ctx, d->rd.pos, d->rd.size);
		switch (d->rd.type)
		{
			case SP_REC_FILE:
				rc = begin_file(d);
				break;
			case SP_REC_ROWSPACE:
				rc = read_rowspace(d);
				break;
			case SP_REC_CHUNK:
				rc = first_error(d, apply_chunk(d));
				break;
			case SP_REC_FILE_END:
				rc = end_file(d);
				break;
			case SP_REC_END:
				return end_all(d, digest);
			default:
				rc = corrupt(d, "unexpected record");
		}
		if (rc != SP_OK)
			return rc;
	}
}

/* Decode every record, then settle the base digests (before any commit). */
static sp_status
decode_all(decoder *d, uint8_t digest[SP_SHA256_LEN])
{
	return settle_bases(d, decode_records(d, digest));
}

/* Set up a decoder over a delta file set and a base file set. */
static sp_status
decoder_init(sp_ctx *ctx, decoder *d, sp_fileset *delta, sp_fileset *base)
{
	memset(d, 0, sizeof(*d));
	sp_hw_init(&d->hw);
	d->ctx = ctx;
	d->base = base;
	d->out.fd = -1;
	if (sp_reader_open(ctx, &d->rd, delta) != SP_OK ||
		sp_reader_next(ctx, &d->rd, false) != SP_OK)
		return ctx->err.code;
	if (sp_sha256_init(ctx, &d->manifest) != SP_OK)
		return ctx->err.code;
	if (sp_codec_init(ctx, &d->codec) != SP_OK)
		return ctx->err.code;
	d->have_codec = true;
	return read_bases(d);
}

/* Release a decoder, removing any partial output. */
static void
decoder_free(decoder *d)
{
	sp_ctx	   *ctx = d->ctx;

	if (ctx == NULL)
		return;
	/* the worker may still read obuf2 and write to the output: end it first */
	sp_hw_stop(&d->hw);
	sp_bghash_free(ctx, &d->bh);	/* first: the helper may read the handed states */
	for (uint32_t i = 0; d->feed && i < d->nbases; i++)
		sp_basehash_free(ctx, &d->feed[i]);
	sp_free(ctx, d->feed);
	sp_free(ctx, d->hand_from);
	sp_free(ctx, d->hand_states);
	sp_out_abort(ctx, &d->out);
	if (d->tmp_dir)
		sp_outdir_abort(ctx, d->tmp_dir);
	sp_free(ctx, d->tmp_dir);
	if (d->have_codec)
		sp_codec_free(ctx, &d->codec);
	sp_sha256_free(&d->sha);
	sp_sha256_free(&d->manifest);
	sp_reader_close(ctx, &d->rd);
	sp_free(ctx, d->bases);
	sp_free(ctx, d->seen);
	for (int i = 0; i < SP_ROWS_COUNT; i++)
		sp_free(ctx, d->rs_slots[i]);
	sp_rowspace_free(ctx, &d->rs);
	sp_rowslay_free(ctx, &d->lay);
	sp_free(ctx, d->pq_pre);
	sp_free(ctx, d->pq_page);
	sp_free(ctx, d->obuf);
	sp_free(ctx, d->obuf2);
	sp_free(ctx, d->ring);
	sp_free(ctx, d->bbuf);
	sp_free(ctx, d->cbuf);
	sp_free(ctx, d->name);
}

/* Apply or verify from paths; out == NULL verifies. */
static sp_status
apply_paths(sp_ctx *ctx, const char *base, const char *delta, const char *out,
			sp_apply_result *res)
{
	double		t0 = sp_now_ms();
	sp_fileset	bfs = {.fd = -1},
				dfs = {.fd = -1};
	decoder		d = {.out.fd = -1};
	char	   *out_path = NULL;
	uint8_t		digest[SP_SHA256_LEN];
	sp_status	rc;

	memset(res, 0, sizeof(*res));
	bfs.fd = dfs.fd = -1;
	if ((out == NULL || (rc = sp_path_output(ctx, out, &out_path)) == SP_OK) &&
		(rc = sp_fileset_open(ctx, delta, &dfs)) == SP_OK &&
		(rc = dfs.is_dir ? sp_fail(ctx, SP_ERR_NOT_DELTA, "\"%s\" is a directory, not a sparse delta", delta) : SP_OK) == SP_OK &&
		(rc = sp_fileset_open(ctx, base, &bfs)) == SP_OK &&
		(rc = decoder_init(ctx, &d, &dfs, &bfs)) == SP_OK)
	{
		d.out_kind = out ? SP_OUT_FILE : SP_OUT_NULL;
		d.final_path = out_path;
		d.to_dir = out && (d.rd.flags & SP_FLAG_DIR);
		if (d.to_dir)
			rc = sp_outdir_begin(ctx, out_path, &d.tmp_dir);
		if (rc == SP_OK)
			rc = decode_all(&d, digest);
		if (rc == SP_OK && out && !d.to_dir)
			rc = sp_out_commit(ctx, &d.out);
		if (rc == SP_OK && d.to_dir && (rc = sp_outdir_commit(ctx, d.tmp_dir, out_path)) == SP_OK)
		{
			sp_free(ctx, d.tmp_dir);
			d.tmp_dir = NULL;
		}
	}
	if (rc == SP_OK)
	{
		if (out_path)
			snprintf(res->out_path, sizeof(res->out_path), "%s", out_path);
		res->bytes = d.bytes;
		sp_hex(digest, SP_SHA256_LEN, res->sha256);
		res->verified = true;
		res->elapsed_ms = sp_now_ms() - t0;
	}
	decoder_free(&d);
	sp_fileset_close(ctx, &bfs);
	sp_fileset_close(ctx, &dfs);
	sp_free(ctx, out_path);
	return rc;
}

/* Rebuild a fine-tune from base and delta into out. */
sp_status
sp_delta_apply(sp_ctx *ctx, const char *base, const char *delta, const char *out,
			   sp_apply_result *res)
{
	sp_clear_error(ctx);
	if (out == NULL)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "output path must not be empty");
	return apply_paths(ctx, base, delta, out, res);
}

/* Rebuild in memory and check every digest, writing nothing. */
sp_status
sp_delta_verify(sp_ctx *ctx, const char *base, const char *delta, sp_apply_result *res)
{
	sp_clear_error(ctx);
	return apply_paths(ctx, base, delta, NULL, res);
}

/* Rebuild a one-file fine-tune in memory from base and delta bytes. */
sp_status
sp_delta_apply_mem(sp_ctx *ctx, const void *base, size_t base_len,
				   const void *delta, size_t delta_len, size_t max_out,
				   void **out, size_t *out_len)
{
	sp_fileset	bfs = {.fd = -1},
				dfs = {.fd = -1};
	decoder		d = {.out.fd = -1};
	uint8_t		digest[SP_SHA256_LEN];
	sp_status	rc;

	sp_clear_error(ctx);
	*out = NULL;
	*out_len = 0;
	bfs.fd = dfs.fd = -1;
	if ((rc = sp_fileset_mem(ctx, "delta", delta, delta_len, &dfs)) == SP_OK &&
		(rc = sp_fileset_mem(ctx, "base", base, base_len, &bfs)) == SP_OK &&
		(rc = decoder_init(ctx, &d, &dfs, &bfs)) == SP_OK)
	{
		d.out_kind = SP_OUT_MEM;
		d.mem_max = max_out;
		if (d.rd.flags & SP_FLAG_DIR)
			rc = sp_fail(ctx, SP_ERR_INVALID_ARG, "a delta of a model directory cannot be applied in memory");
		if (rc == SP_OK)
			rc = decode_all(&d, digest);
		if (rc == SP_OK && d.nfiles != 1)
			rc = corrupt(&d, "an in-memory delta must hold exactly one file");
		if (rc == SP_OK)
		{
			*out = d.out.mem ? d.out.mem : sp_alloc(ctx, 1);
			*out_len = d.out.mem_len;
			d.out.mem = NULL;
			if (*out == NULL)
				rc = SP_ERR_NOMEM;
		}
	}
	decoder_free(&d);
	sp_fileset_close(ctx, &bfs);
	sp_fileset_close(ctx, &dfs);
	return rc;
}

/* ---- info ---------------------------------------------------------------- */

/* Append a row for the file that just ended. */
static sp_status
info_add(decoder *d, sp_info *info, size_t *cap)
{
	sp_info_row *r;

	if (info->n == *cap)
	{
		size_t		ncap = *cap ? *cap * 2 : 8;
		sp_info_row *nr = sp_calloc(d->ctx, ncap, sizeof(sp_info_row));

		if (nr == NULL)
			return SP_ERR_NOMEM;
		if (info->n)
			memcpy(nr, info->rows, info->n * sizeof(sp_info_row));
		sp_free(d->ctx, info->rows);
		info->rows = nr;
		*cap = ncap;
	}
	r = &info->rows[info->n++];
	r->name = d->name;
	d->name = NULL;
	r->bytes = d->size;
	r->delta_bytes = d->rd.pos - d->file_start;
	sp_hex(d->rd.buf + 16, SP_SHA256_LEN, r->sha256);
	r->method = sp_method_name(d->rd.buf[0]);
	return SP_OK;
}

/* Walk the records of a delta without decoding chunks. */
static sp_status
info_walk(decoder *d, sp_info *info)
{
	size_t		cap = 0;
	sp_chunk_hdr h;

	for (;;)
	{
		if (sp_check_interrupt(d->ctx) != SP_OK ||
			sp_reader_next(d->ctx, &d->rd, true) != SP_OK)
			return d->ctx->err.code;
		if (d->rd.type == SP_REC_END)
			return d->in_file || d->rd.pos != d->rd.size ? corrupt(d, "bad END record") : SP_OK;
		if (d->rd.type == SP_REC_FILE)
		{
			if (begin_file(d) != SP_OK)
				return d->ctx->err.code;
			sp_sha256_free(&d->sha);
		}
		else if (d->rd.type == SP_REC_ROWSPACE)
		{
			if (read_rowspace(d) != SP_OK)
				return d->ctx->err.code;
		}
		else if (d->rd.type == SP_REC_CHUNK && d->in_file && d->rd.len >= SP_CHUNK_HDR)
		{
			sp_chunk_hdr_get(d->rd.buf, &h);
			if (h.out_len > d->size - d->pos)
				return corrupt(d, "chunk runs past the end of its file");
			d->pos += h.out_len;
		}
		else if (d->rd.type == SP_REC_FILE_END && d->in_file && d->rd.len == 48 &&
				 sp_method_name(d->rd.buf[0]) && d->pos == d->size)
		{
			d->in_file = false;
			if (info_add(d, info, &cap) != SP_OK)
				return d->ctx->err.code;
		}
		else
			return corrupt(d, "unexpected record");
	}
}

/* List the files of a delta in dfs. */
static sp_status
info_fileset(sp_ctx *ctx, sp_fileset *dfs, sp_info *out)
{
	decoder		d = {.out.fd = -1};
	sp_status	rc;

	memset(out, 0, sizeof(*out));
	d.ctx = ctx;
	d.out.fd = -1;
	d.out_kind = SP_OUT_NULL;
	if ((rc = sp_reader_open(ctx, &d.rd, dfs)) == SP_OK &&
		(rc = sp_reader_next(ctx, &d.rd, false)) == SP_OK &&
		(rc = read_bases(&d)) == SP_OK)
		rc = info_walk(&d, out);
	if (rc != SP_OK)
		sp_info_free(ctx, out);
	decoder_free(&d);
	return rc;
}

/* List the files a delta on disk rebuilds. */
sp_status
sp_delta_info(sp_ctx *ctx, const char *delta, sp_info *out)
{
	sp_fileset	dfs = {.fd = -1};
	sp_status	rc;

	sp_clear_error(ctx);
	memset(out, 0, sizeof(*out));
	dfs.fd = -1;
	if ((rc = sp_fileset_open(ctx, delta, &dfs)) == SP_OK)
		rc = dfs.is_dir ? sp_fail(ctx, SP_ERR_NOT_DELTA, "\"%s\" is a directory, not a sparse delta", delta)
			: info_fileset(ctx, &dfs, out);
	sp_fileset_close(ctx, &dfs);
	return rc;
}

/* List the files a delta in memory rebuilds. */
sp_status
sp_delta_info_mem(sp_ctx *ctx, const void *delta, size_t delta_len, sp_info *out)
{
	sp_fileset	dfs = {.fd = -1};
	sp_status	rc;

	sp_clear_error(ctx);
	memset(out, 0, sizeof(*out));
	dfs.fd = -1;
	if ((rc = sp_fileset_mem(ctx, "delta", delta, delta_len, &dfs)) == SP_OK)
		rc = info_fileset(ctx, &dfs, out);
	sp_fileset_close(ctx, &dfs);
	return rc;
}

/* Free the rows sp_delta_info returned. */
void
sp_info_free(sp_ctx *ctx, sp_info *info)
{
	for (size_t i = 0; i < info->n; i++)
		sp_free(ctx, info->rows[i].name);
	sp_free(ctx, info->rows);
	info->rows = NULL;
	info->n = 0;
}
