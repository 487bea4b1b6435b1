/*
 * rowindex.c -- parent row spaces and the ROWS chunk layout.
 *
 * How it works: a row space streams its files through two 8 MiB buffers
 * (a helper thread reads the next megabyte into one while rows are cut in
 * the other), cutting rows with rows.c and recording each row's virtual
 * start (files laid end to end).  With an index, each row's 32-bit tag (the high half of
 * its XXH3-64) goes into an open-addressing table sized 1.33 slots per row;
 * a row whose tag is already there is not inserted (it is, almost surely, a
 * duplicate; if not, a match is merely missed), and a lookup verifies the
 * bytes, so a tag collision never produces a wrong reference.
 *
 * A ROWS chunk's control stream is a list of groups: a run of parent rows
 * to copy, then literal rows, each coded against a reference parent row.  A
 * literal in column mode stores only the fields that differ from the
 * reference's fields (a bitmask, then their lengths); otherwise it is stored
 * whole.  The changed fields go to a data stream laid out column by column,
 * and the reference fields they replace to a prefix laid out the same way,
 * so zstd finds each old cell at a short, regular distance.  The numeric
 * layout may store a literal's changed fields with their numbers as
 * differences from those of the row above or of the reference
 * (sp_num_code), which zstd cannot compute: a daily row of running totals
 * then costs its day's increments.  sp_rows_walk does the four passes both
 * sides need over that stream; every count, length and row number read
 * from it is checked before use.
 */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "rowindex.h"

#include <math.h>
#include <pthread.h>

#define RS_BUF (8u << 20)			/* scan buffer: holds any row (SP_ROW_MAX) */
#define RS_READ (256u << 10)		/* bytes read at a time while scanning */
#define RS_PAGE 4096u				/* alignment of reads (file offset and buffer) */
#define RS_AHEAD (1u << 20)			/* room before a read-ahead for the unfinished row */
#define RS_AHEAD_READ (1u << 20)	/* bytes a read-ahead asks for */
#define RS_CACHE (1u << 20)			/* row cache */
#define RS_WINDOW (64u << 10)		/* bytes read into it at a time (or the row) */
#define EMPTY_SLOT UINT64_MAX

/* ---- growable buffers and varints ----------------------------------------- */

/* Append n bytes to b. */
sp_status
sp_buf_put(sp_ctx *ctx, sp_buf *b, const void *p, size_t n)
{
	if (n > b->cap - b->n)
	{
		size_t		cap = SP_MAX(b->cap * 2, b->n + n + 256);
		uint8_t    *q = sp_alloc(ctx, cap);

		if (q == NULL)
			return SP_ERR_NOMEM;
		if (b->n)
			memcpy(q, b->p, b->n);
		sp_free(ctx, b->p);
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
	return SP_OK;
}

/* Append an unsigned LEB128 varint. */
sp_status
sp_buf_varint(sp_ctx *ctx, sp_buf *b, uint64_t v)
{
	uint8_t		t[10];
	size_t		n = 0;

	do
	{
		t[n++] = (uint8_t) ((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return sp_buf_put(ctx, b, t, n);
}

/* Release a buffer. */
void
sp_buf_free(sp_ctx *ctx, sp_buf *b)
{
	sp_free(ctx, b->p);
	memset(b, 0, sizeof(*b));
}

/* Read a varint (at most 10 bytes, no overflow). */
bool
sp_get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v)
{
	uint64_t	r = 0;

	for (int shift = 0; shift < 64 && *pos < n; shift += 7)
	{
		uint8_t		c = p[(*pos)++];

		if (shift == 63 && c > 1)
			return false;
		r |= (uint64_t) (c & 0x7f) << shift;
		if (!(c & 0x80))
		{
			*v = r;
			return true;
		}
	}
	return false;
}

/* ---- building a row space ------------------------------------------------- */

/*
 * Next capacity of a row array now holding cap: the rows the whole space
 * should hold at the bytes per row seen so far (from the first ~1000 rows
 * on, plus 1/16) but at most 4x, or 1.25x when that is not more.  Growing
 * by 1.25x alone copied the arrays about five times over in a 1 GB parent;
 * the 4x bound keeps a bad guess (short rows first) from reserving far
 * more than the rows seen.
 */
static size_t
next_cap(const sp_rowspace *rs, size_t cap, uint64_t v)
{
	size_t		grow = SP_MAX((size_t) 1024, cap + cap / 4);

	if (rs->nrows >= 1000 && v > 0 && rs->total > v)
	{
		double		est = (double) rs->nrows * ((double) rs->total / (double) v);

		est = fmin(est + est / 16 + 1024, 4.0 * (double) cap);
		if (est > (double) grow)
			grow = (size_t) est;
	}
	return grow;
}

/*
 * The wanted tags as an open-addressing set: a quarter full at most, so a
 * lookup (once per parent row) is one cache-resident probe and a
 * predictable branch; a binary search over the sorted tags took a third of
 * a 1 GB estimate in mispredicted branches.
 */
typedef struct tagset
{
	uint64_t   *slot;			/* (1 << 32) | tag, or 0 when empty */
	uint64_t	mask;
} tagset;

/* Fill set with the nwant tags of want. */
static sp_status
tagset_build(sp_ctx *ctx, tagset *set, const uint32_t *want, size_t nwant)
{
	uint64_t	n = 64;

	while (n < 4 * (uint64_t) nwant)
		n *= 2;
	if ((set->slot = sp_calloc(ctx, (size_t) n, sizeof(uint64_t))) == NULL)
		return SP_ERR_NOMEM;
	set->mask = n - 1;
	for (size_t k = 0; k < nwant; k++)
	{
		uint64_t	i = want[k] & set->mask;

		while (set->slot[i] != 0 && (uint32_t) set->slot[i] != want[k])
			i = (i + 1) & set->mask;
		set->slot[i] = (1ULL << 32) | want[k];
	}
	return SP_OK;
}

/* Is tag in the set? (tags are hash bits: their low bits index it) */
static inline bool
tagset_has(const tagset *set, uint32_t tag)
{
	uint64_t	i = tag & set->mask;

	while (set->slot[i] != 0)
	{
		if ((uint32_t) set->slot[i] == tag)
			return true;
		i = (i + 1) & set->mask;
	}
	return false;
}

/*
 * What a scan keeps of the rows' tags: every tag (tags, for the encoder's
 * table), or only the rows whose tag is wanted (hits: row << 32 | tag, for
 * the estimator, which then needs no per-row tag array).
 */
typedef struct scan_tags
{
	uint32_t   *tags;
	size_t		tcap;
	const tagset *want;
	uint64_t   *hits;
	size_t		nhits,
				hcap;
} scan_tags;

/*
 * A new array of cap elements (elem bytes each) holding the used ones of
 * arr, which is freed; NULL (arr kept) when out of memory.
 */
static void *
grow_array(sp_ctx *ctx, void *arr, size_t used, size_t cap, size_t elem)
{
	void	   *p = sp_alloc(ctx, cap * elem);

	if (p == NULL)
		return NULL;
	if (used)
		memcpy(p, arr, used * elem);
	sp_free(ctx, arr);
	return p;
}

/* Keep row r's tag as st asks. */
static sp_status
keep_tag(sp_ctx *ctx, sp_rowspace *rs, scan_tags *st, uint64_t v, uint32_t tag)
{
	if (st->want)
	{
		if (!tagset_has(st->want, tag))
			return SP_OK;
		if (st->nhits == st->hcap)
		{
			size_t		cap = SP_MAX((size_t) 256, st->hcap * 2);
			uint64_t   *h = grow_array(ctx, st->hits, st->nhits, cap, sizeof(uint64_t));

			if (h == NULL)
				return SP_ERR_NOMEM;
			st->hits = h;
			st->hcap = cap;
		}
		st->hits[st->nhits++] = (rs->nrows << 32) | tag;
		return SP_OK;
	}
	if (rs->nrows + 1 > st->tcap)
	{
		size_t		cap = next_cap(rs, st->tcap, v);
		uint32_t   *t = grow_array(ctx, st->tags, (size_t) rs->nrows, cap, sizeof(uint32_t));

		if (t == NULL)
			return SP_ERR_NOMEM;
		st->tags = t;
		st->tcap = cap;
	}
	st->tags[rs->nrows] = tag;
	return SP_OK;
}

/* Append row start v (and its tag, when st is given) to the space. */
static sp_status
push_row(sp_ctx *ctx, sp_rowspace *rs, scan_tags *st, uint64_t v, uint32_t tag)
{
	if (rs->nrows + 2 > rs->off_cap)
	{
		size_t		cap = next_cap(rs, rs->off_cap, v);
		uint64_t   *o = grow_array(ctx, rs->off, (size_t) rs->nrows, cap, sizeof(uint64_t));

		if (o == NULL)
			return SP_ERR_NOMEM;
		rs->off = o;
		rs->off_cap = cap;
	}
	if (rs->nrows >= SP_ROWS_MAX_ROWS)
		return sp_fail(ctx, SP_ERR_TOO_LARGE, "parent has more than %u rows", SP_ROWS_MAX_ROWS);
	if (st && keep_tag(ctx, rs, st, v, tag) != SP_OK)
		return SP_ERR_NOMEM;
	rs->off[rs->nrows++] = v;
	return SP_OK;
}

/*
 * Keep the unfinished row buf[*lo..*hi) (moved to end at the next page
 * boundary) and read the next bytes of f behind it: RS_READ, or as many as
 * the row already has so a long row costs linear time.  *rpos is set past
 * the end of f when the row cannot grow in RS_BUF.
 */
static sp_status
scan_refill(sp_ctx *ctx, sp_rowspace *rs, sp_rsfile *f, uint8_t *buf, size_t *lo, size_t *hi,
			uint64_t *rpos)
{
	size_t		rem = *hi - *lo;
	size_t		at = (rem + RS_PAGE - 1) / RS_PAGE * RS_PAGE;
	size_t		n;

	if (at >= RS_BUF)
	{
		*rpos = f->size + 1;
		return SP_OK;
	}
	memmove(buf + at - rem, buf + *lo, rem);
	n = (size_t) SP_MIN((uint64_t) SP_MIN(SP_MAX((size_t) RS_READ, at), RS_BUF - at),
						f->size - *rpos);
	if (sp_fileset_read(ctx, rs->fs, f->idx, *rpos, buf + at, n) != SP_OK)
		return ctx->err.code;
	*lo = at - rem;
	*hi = at + n;
	*rpos += n;
	return SP_OK;
}

/* ---- read-ahead ------------------------------------------------------------ */

/*
 * A helper thread reads the next bytes of the file being cut into the spare
 * scan buffer while this thread cuts and hashes rows in the current one, so
 * the kernel's page-cache copy (a fifth of a warm scan) overlaps the work.
 * The thread only reads (sp_fileset_read with its own context, no hooks:
 * no allocation, no interrupt or progress call, no database call); the
 * file is opened on the caller's thread before any request, and the caller
 * never touches the file set while a request is pending.  Without a thread
 * (pthread_create failed) requests are served inline.
 */
enum
{
	RD_IDLE, RD_WORK, RD_DONE, RD_QUIT
};

typedef struct rs_reader
{
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t	t;
	bool		running;		/* the thread exists */
	int			state;
	sp_ctx		ctx;			/* the thread's: no hooks */
	sp_fileset *fs;
	size_t		idx;
	uint64_t	off;
	size_t		len;
	uint8_t    *dst;
	sp_status	rc;
} rs_reader;

/* Serve one request (on the helper thread, or inline without one). */
static void
reader_serve(rs_reader *r)
{
	r->rc = sp_fileset_read(&r->ctx, r->fs, r->idx, r->off, r->dst, r->len);
}

/* The helper thread: serve requests until told to quit. */
static void *
reader_main(void *arg)
{
	rs_reader  *r = arg;

	pthread_mutex_lock(&r->mu);
	while (r->state != RD_QUIT)
	{
		if (r->state != RD_WORK)
		{
			pthread_cond_wait(&r->cv, &r->mu);
			continue;
		}
		pthread_mutex_unlock(&r->mu);
		reader_serve(r);
		pthread_mutex_lock(&r->mu);
		r->state = RD_DONE;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Start the helper (every signal blocked in it: handlers run on the caller's thread). */
static void
reader_start(rs_reader *r)
{
	memset(r, 0, sizeof(*r));
	sp_ctx_init(&r->ctx);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->running = sp_spawn_blocked(&r->t, reader_main, r);
}

/* Ask for len bytes of file idx at off into dst. */
static void
reader_request(rs_reader *r, sp_fileset *fs, size_t idx, uint64_t off, size_t len, uint8_t *dst)
{
	pthread_mutex_lock(&r->mu);
	r->fs = fs, r->idx = idx, r->off = off, r->len = len, r->dst = dst;
	r->state = RD_WORK;
	if (r->running)
		pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (!r->running)
		reader_serve(r);
}

/* Wait for the pending request; its error goes to ctx. */
static sp_status
reader_wait(sp_ctx *ctx, rs_reader *r)
{
	pthread_mutex_lock(&r->mu);
	while (r->running && r->state == RD_WORK)
		pthread_cond_wait(&r->cv, &r->mu);
	r->state = RD_IDLE;
	pthread_mutex_unlock(&r->mu);
	if (r->rc != SP_OK)
		ctx->err = r->ctx.err;
	return r->rc;
}

/* Stop and join the helper. */
static void
reader_stop(rs_reader *r)
{
	if (r->running)
	{
		pthread_mutex_lock(&r->mu);
		r->state = RD_QUIT;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->t, NULL);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

/* ---- cutting a file into rows ------------------------------------------- */

/* Where the scan of one file is. */
typedef struct scan_state
{
	uint8_t    *bufs[2];		/* page-aligned, RS_BUF bytes each */
	uint8_t    *buf;			/* the one being cut */
	size_t		lo,
				hi;				/* unscanned bytes: buf[lo..hi) */
	uint64_t	rpos;			/* file offset of buf[hi]: the next read */
	size_t		ahead;			/* bytes being read ahead into the spare buffer, or 0 */
} scan_state;

/* Start reading the bytes after rpos into the spare buffer, past RS_AHEAD. */
static void
read_ahead(rs_reader *rd, sp_rowspace *rs, sp_rsfile *f, scan_state *s)
{
	size_t		n = (size_t) SP_MIN((uint64_t) RS_AHEAD_READ, f->size - s->rpos);

	s->ahead = n;
	if (n > 0)
		reader_request(rd, rs->fs, f->idx, s->rpos, n, s->bufs[s->buf == s->bufs[0]] + RS_AHEAD);
}

/*
 * Make more of the file scannable: switch to the spare buffer, the
 * unfinished row copied just before what was read into it; or, for an
 * unfinished row longer than RS_AHEAD, grow it in place (scan_refill).
 * Then read ahead again.
 */
static sp_status
next_buffer(sp_ctx *ctx, sp_rowspace *rs, sp_rsfile *f, scan_state *s, rs_reader *rd)
{
	size_t		rem = s->hi - s->lo,
				n = s->ahead;

	if (n > 0)
	{
		s->ahead = 0;
		if (reader_wait(ctx, rd) != SP_OK)
			return ctx->err.code;
		if (rem <= RS_AHEAD)
		{
			uint8_t    *spare = s->bufs[s->buf == s->bufs[0]];

			memcpy(spare + RS_AHEAD - rem, s->buf + s->lo, rem);
			s->buf = spare;
			s->lo = RS_AHEAD - rem;
			s->hi = RS_AHEAD + n;
			s->rpos += n;
			read_ahead(rd, rs, f, s);
			return SP_OK;
		}
	}
	if (scan_refill(ctx, rs, f, s->buf, &s->lo, &s->hi, &s->rpos) != SP_OK)
		return ctx->err.code;
	if (s->rpos <= f->size)
		read_ahead(rd, rs, f, s);
	return SP_OK;
}

/*
 * Cut file f into rows (see scan_file).  Reads start at page-aligned file
 * offsets (every read but the last is a multiple of RS_PAGE) and land at
 * page-aligned places in the buffers, the unfinished row moved just before
 * them: on this project's AMD machine the kernel copies a page-cache page
 * to a misaligned buffer about three times slower (1 GB: 0.65 s against
 * 0.21 s).
 */
static sp_status
scan_rows(sp_ctx *ctx, sp_rowspace *rs, sp_rsfile *f, scan_state *s, rs_reader *rd,
		  scan_tags *st, bool *ok)
{
	sp_rowscan	sc = {.fmt = rs->fmt};
	uint64_t	fpos = 0;		/* file offset of buf[lo] */

	/* open the file here, so the helper never changes the file set */
	if (sp_fileset_read(ctx, rs->fs, f->idx, 0, s->buf, 0) != SP_OK)
		return ctx->err.code;
	read_ahead(rd, rs, f, s);
	for (;;)
	{
		bool		eof = s->rpos == f->size && s->ahead == 0;
		long		L = sp_row_next(&sc, s->buf + s->lo, s->hi - s->lo, eof);

		if (L < 0)
			return SP_OK;
		if (L > 0)
		{
			uint32_t	tag = st ? sp_row_tag(XXH3_64bits(s->buf + s->lo, (size_t) L)) : 0;

			if (push_row(ctx, rs, st, f->vstart + fpos, tag) != SP_OK)
				return ctx->err.code;
			s->lo += (size_t) L;
			fpos += (uint64_t) L;
			if ((rs->nrows & 0xffff) == 0 && sp_check_interrupt(ctx) != SP_OK)
				return ctx->err.code;
			continue;
		}
		if (eof)
			break;
		if (next_buffer(ctx, rs, f, s, rd) != SP_OK)
			return ctx->err.code;
		if (s->hi - s->lo == 0 || s->rpos == f->size + 1)
			return SP_OK;		/* a row that does not fit: cannot happen below SP_ROW_MAX */
	}
	*ok = fpos == f->size;
	return SP_OK;
}

/*
 * Cut file f of the space into rows.  Returns SP_OK with *ok false when the
 * file is malformed for the format (its rows are then dropped).  A read
 * still pending when the cut ends (an error, a malformed file) is waited
 * for, so the helper is idle again.
 */
static sp_status
scan_file(sp_ctx *ctx, sp_rowspace *rs, sp_rsfile *f, uint8_t **bufs, rs_reader *rd,
		  scan_tags *st, bool *ok)
{
	scan_state	s = {{bufs[0], bufs[1]}, bufs[0], 0, 0, 0, 0};
	sp_status	rc;

	*ok = false;
	rc = scan_rows(ctx, rs, f, &s, rd, st, ok);
	if (s.ahead > 0)
	{
		sp_error	saved = ctx->err;

		if (reader_wait(ctx, rd) != SP_OK && rc == SP_OK)
			rc = ctx->err.code;
		else if (rc != SP_OK)
			ctx->err = saved;
	}
	return rc;
}

/* Put row r of tag into the lookup table (the first row of a tag wins). */
static void
table_put(sp_rowspace *rs, uint64_t r, uint32_t tag)
{
	uint64_t	i = ((uint64_t) tag * rs->nslots) >> 32;

	while (rs->slot[i] != EMPTY_SLOT && (uint32_t) (rs->slot[i] >> 32) != tag)
		i = i + 1 == rs->nslots ? 0 : i + 1;
	if (rs->slot[i] == EMPTY_SLOT)
		rs->slot[i] = ((uint64_t) tag << 32) | r;
}

/* Insert the kept tags (all rows', or the wanted hits) into a table of 1.33 slots each. */
static sp_status
build_table(sp_ctx *ctx, sp_rowspace *rs, const scan_tags *st)
{
	uint64_t	n = st->want ? st->nhits : rs->nrows;

	rs->nslots = SP_MAX((uint64_t) 1024, n + n / 3 + 1);
	if ((rs->slot = sp_alloc(ctx, (size_t) rs->nslots * sizeof(uint64_t))) == NULL)
		return SP_ERR_NOMEM;
	memset(rs->slot, 0xff, (size_t) rs->nslots * sizeof(uint64_t));
	if (st->want)
		for (size_t k = 0; k < st->nhits; k++)
			table_put(rs, st->hits[k] >> 32, (uint32_t) st->hits[k]);
	else
		for (uint64_t r = 0; r < rs->nrows; r++)
			table_put(rs, r, st->tags[r]);
	return SP_OK;
}

/* Build a row space over files idx[0..n) of fs. */
sp_status
sp_rowspace_build(sp_ctx *ctx, sp_rowspace *rs, sp_fileset *fs, sp_rowfmt fmt,
				  const size_t *idx, size_t n, bool index, const uint32_t *want, size_t nwant)
{
	uint8_t    *raw[2],
			   *bufs[2];
	rs_reader	rd;
	tagset		set = {0};
	scan_tags	st = {0};
	uint64_t	v = 0;
	sp_status	rc = SP_OK;

	memset(rs, 0, sizeof(*rs));
	rs->fmt = fmt;
	rs->fs = fs;
	for (size_t i = 0; i < n; i++)
		rs->total += fs->f[idx[i]].size;
	rs->files = sp_calloc(ctx, n ? n : 1, sizeof(sp_rsfile));
	for (int k = 0; k < 2; k++)
	{
		raw[k] = sp_alloc(ctx, RS_BUF + RS_PAGE);
		bufs[k] = raw[k] ? (uint8_t *) (((uintptr_t) raw[k] + RS_PAGE - 1) &
										~(uintptr_t) (RS_PAGE - 1)) : NULL;
	}
	rs->cache = sp_alloc(ctx, RS_CACHE);
	if (!rs->files || !bufs[0] || !bufs[1] || !rs->cache ||
		(index && want && tagset_build(ctx, &set, want, nwant) != SP_OK))
		rc = SP_ERR_NOMEM;
	st.want = want ? &set : NULL;
	reader_start(&rd);
	for (size_t i = 0; i < n && rc == SP_OK; i++)
	{
		sp_rsfile  *f = &rs->files[rs->nfiles];
		bool		ok;

		f->idx = idx[i];
		f->size = fs->f[idx[i]].size;
		f->vstart = v;
		f->first_row = rs->nrows;
		rc = scan_file(ctx, rs, f, bufs, &rd, index ? &st : NULL, &ok);
		if (rc == SP_OK && ok)
		{
			rs->nfiles++;
			v += f->size;
			continue;
		}
		rs->nrows = f->first_row;	/* malformed: not part of the space */
		while (st.nhits && (st.hits[st.nhits - 1] >> 32) >= f->first_row)
			st.nhits--;
	}
	reader_stop(&rd);
	if (rc == SP_OK)
		rc = push_row(ctx, rs, NULL, v, 0);	/* sentinel: end of the last row */
	if (rc == SP_OK)
		rs->nrows--;
	if (rc == SP_OK && index)
		rc = build_table(ctx, rs, &st);
	rs->cache_n = 0;
	sp_free(ctx, st.tags);
	sp_free(ctx, st.hits);
	sp_free(ctx, set.slot);
	sp_free(ctx, raw[0]);
	sp_free(ctx, raw[1]);
	return rc;
}

/* Release a row space. */
void
sp_rowspace_free(sp_ctx *ctx, sp_rowspace *rs)
{
	sp_free(ctx, rs->files);
	sp_free(ctx, rs->off);
	sp_free(ctx, rs->slot);
	sp_free(ctx, rs->cache);
	sp_free(ctx, rs->big);
	memset(rs, 0, sizeof(*rs));
}

/* ---- reading rows ----------------------------------------------------------- */

/* The file holding row r (binary search on first rows). */
static const sp_rsfile *
file_of_row(const sp_rowspace *rs, uint64_t r)
{
	size_t		lo = 0,
				hi = rs->nfiles;

	while (hi - lo > 1)
	{
		size_t		mid = (lo + hi) / 2;

		if (rs->files[mid].first_row <= r)
			lo = mid;
		else
			hi = mid;
	}
	return &rs->files[lo];
}

/* Bytes of row r through the cache (NULL on a read error). */
const uint8_t *
sp_rowspace_row(sp_ctx *ctx, sp_rowspace *rs, uint64_t r)
{
	uint64_t	v = rs->off[r],
				len = sp_row_len(rs, r);
	const sp_rsfile *f;
	size_t		n;

	if (v >= rs->cache_v && v + len <= rs->cache_v + rs->cache_n)
		return rs->cache + (v - rs->cache_v);
	f = file_of_row(rs, r);
	if (len > RS_CACHE)
	{
		if (sp_reserve(ctx, &rs->big, &rs->big_cap, (size_t) len) != SP_OK ||
			sp_fileset_read(ctx, rs->fs, f->idx, v - f->vstart, rs->big, (size_t) len) != SP_OK)
			return NULL;
		return rs->big;
	}
	/* a window, not the whole cache: a jump to another part of the parent costs 64 KiB */
	n = (size_t) SP_MIN((uint64_t) SP_MAX(len, RS_WINDOW), f->vstart + f->size - v);
	rs->cache_n = 0;
	if (sp_fileset_read(ctx, rs->fs, f->idx, v - f->vstart, rs->cache, n) != SP_OK)
		return NULL;
	rs->cache_v = v;
	rs->cache_n = n;
	return rs->cache;
}

/* Copy rows [r, r+n) into out, file by file. */
sp_status
sp_rowspace_copy(sp_ctx *ctx, sp_rowspace *rs, uint64_t r, uint64_t n, uint8_t *out)
{
	while (n > 0)
	{
		const sp_rsfile *f = file_of_row(rs, r);
		uint64_t	last = SP_MIN(r + n, f + 1 < rs->files + rs->nfiles ? f[1].first_row : rs->nrows);
		uint64_t	len = rs->off[last] - rs->off[r];

		if (sp_fileset_read(ctx, rs->fs, f->idx, rs->off[r] - f->vstart, out, (size_t) len) != SP_OK)
			return ctx->err.code;
		out += len;
		n -= last - r;
		r = last;
	}
	return SP_OK;
}

/* Is parent row r equal to row? */
bool
sp_rowspace_equal(sp_ctx *ctx, sp_rowspace *rs, uint64_t r, const uint8_t *row, size_t len)
{
	const uint8_t *p;

	if (r >= rs->nrows || sp_row_len(rs, r) != len)
		return false;
	p = sp_rowspace_row(ctx, rs, r);
	return p != NULL && memcmp(p, row, len) == 0;
}

/* Find a parent row equal to row; -1 if none. */
int64_t
sp_rowspace_find(sp_ctx *ctx, sp_rowspace *rs, const uint8_t *row, size_t len, uint64_t h)
{
	uint32_t	tag = sp_row_tag(h);
	uint64_t	i;

	if (rs->nslots == 0)
		return -1;
	i = ((uint64_t) tag * rs->nslots) >> 32;
	while (rs->slot[i] != EMPTY_SLOT)
	{
		if ((uint32_t) (rs->slot[i] >> 32) == tag)
		{
			uint64_t	r = rs->slot[i] & 0xffffffffu;

			return sp_rowspace_equal(ctx, rs, r, row, len) ? (int64_t) r : -1;
		}
		i = i + 1 == rs->nslots ? 0 : i + 1;
	}
	return -1;
}

/* ---- numbers as differences ------------------------------------------------ */

/* Is c an ASCII digit? */
static inline bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* End of the digit run starting at p[i] (i itself when p[i] is no digit). */
static size_t
run_end(const uint8_t *p, size_t n, size_t i)
{
	while (i < n && is_digit(p[i]))
		i++;
	return i;
}

/* Value mod m of the digits p[0..n). */
static uint64_t
digits_mod(const uint8_t *p, size_t n, uint64_t m)
{
	uint64_t	v = 0;

	for (size_t i = 0; i < n; i++)
		v = (v * 10 + (uint64_t) (p[i] - '0')) % m;
	return v;
}

/* Code one run of d digits against the reference run ref (rn digits, maybe none). */
static void
code_run(uint8_t *run, size_t d, const uint8_t *ref, size_t rn, bool decode)
{
	uint64_t	m = 1,
				x,
				y;

	if (d > SP_NUM_DIGITS)
		return;					/* stored as it is */
	for (size_t k = 0; k < d; k++)
		m *= 10;
	x = digits_mod(run, d, m);
	y = digits_mod(ref, rn, m);
	x = decode ? (x + y) % m : (x + m - y) % m;
	for (size_t k = d; k > 0; k--, x /= 10)
		run[k - 1] = (uint8_t) ('0' + x % 10);
}

/* Code the digit runs of cell against those of ref (see rowindex.h). */
void
sp_num_code(uint8_t *cell, size_t n, const uint8_t *ref, size_t rn, bool decode)
{
	size_t		r = 0;

	for (size_t i = 0; i < n;)
	{
		size_t		e = run_end(cell, n, i),
					re;

		if (e == i)
		{
			i++;
			continue;
		}
		while (r < rn && !is_digit(ref[r]))
			r++;
		re = run_end(ref, rn, r);
		code_run(cell + i, e - i, ref + r, re - r, decode);
		r = re;
		i = e;
	}
}

/* ---- the ROWS chunk layout ---------------------------------------------------- */

/* Allocate the per-column arrays. */
sp_status
sp_rowslay_init(sp_ctx *ctx, sp_rowslay *lay)
{
	memset(lay, 0, sizeof(*lay));
	lay->dlen = sp_alloc(ctx, 4 * SP_NCOLS * sizeof(uint64_t));
	lay->fends = sp_alloc(ctx, 2 * SP_FIELDS_MAX * sizeof(uint32_t));
	if (!lay->dlen || !lay->fends)
	{
		sp_rowslay_free(ctx, lay);
		return SP_ERR_NOMEM;
	}
	lay->afends = lay->fends + SP_FIELDS_MAX;
	lay->plen = lay->dlen + SP_NCOLS;
	lay->dcur = lay->plen + SP_NCOLS;
	lay->pcur = lay->dcur + SP_NCOLS;
	return SP_OK;
}

/* Free the layout arrays and buffers. */
void
sp_rowslay_free(sp_ctx *ctx, sp_rowslay *lay)
{
	sp_free(ctx, lay->dlen);
	sp_free(ctx, lay->fends);
	sp_buf_free(ctx, &lay->data);
	sp_buf_free(ctx, &lay->prefix);
	memset(lay, 0, sizeof(*lay));
}

/* State of one walk. */
typedef struct walk
{
	sp_ctx	   *ctx;
	sp_rowspace *rs;
	sp_rowslay *lay;
	sp_walk_pass pass;
	const uint8_t *ctl;
	size_t		n,
				pos;
	int64_t		prev;
	uint8_t    *bytes;			/* derived bytes of the chunk */
	size_t		nbytes,
				at;				/* position in bytes */
	int			layout;			/* SP_LAYOUT_COLUMNS, _ROWS or _INTERLEAVED */
	bool		implicit;		/* whole rows carry no length: the format cuts them */
	size_t		imp_col;		/* the column whole rows go to */
	uint64_t	nimplicit;		/* whole rows seen without a length */
	uint64_t	refbytes;		/* reference row bytes used so far */
	int64_t		last_ref;
	uint64_t	jumps;			/* references not next to the previous one */
	uint64_t	rows;			/* rows of the chunk walked so far */
	size_t		above,
				above_len;		/* the last of them, in bytes (FILL and EMIT) */
	size_t		above_nf;		/* its fields (in lay->afends), once cut */
	bool		above_cut;
} walk;

/* Are changed fields laid out column by column (layouts 0 and 3)? */
static inline bool
columnar(int layout)
{
	return layout == SP_LAYOUT_COLUMNS || layout == SP_LAYOUT_NUMERIC;
}

/* Error: the control stream is malformed. */
static sp_status
bad(walk *w, const char *what)
{
	return sp_fail(w->ctx, SP_ERR_CORRUPT, "row chunk is malformed: %s", what);
}

/* Move n derived bytes between bytes[at] and src/dst (or skip them). */
static sp_status
derived(walk *w, const uint8_t *src, uint8_t *dst, size_t n)
{
	if (n > w->nbytes - w->at)
		return bad(w, "rows overrun the chunk");
	if (w->pass == SP_WALK_EMIT && src)
		memcpy(w->bytes + w->at, src, n);
	else if (w->pass == SP_WALK_FILL && dst)
		memcpy(dst, w->bytes + w->at, n);
	w->at += n;
	return SP_OK;
}

/* A run of ncopy parent rows starting at start. */
static sp_status
walk_copy(walk *w, uint64_t start, uint64_t ncopy)
{
	uint64_t	len = w->rs->off[start + ncopy] - w->rs->off[start];

	if (w->pass == SP_WALK_SIZES || w->pass == SP_WALK_PREFIX)
		return SP_OK;
	if (len > w->nbytes - w->at)
		return bad(w, "copied rows overrun the chunk");
	if (w->pass == SP_WALK_EMIT &&
		sp_rowspace_copy(w->ctx, w->rs, start, ncopy, w->bytes + w->at) != SP_OK)
		return w->ctx->err.code;
	w->at += (size_t) len;
	return SP_OK;
}

/* Add rlen reference bytes to the prefix of column k. */
static void
walk_prefix(walk *w, size_t k, const uint8_t *ref, size_t rlen)
{
	sp_rowslay *lay = w->lay;

	if (w->pass == SP_WALK_SIZES)
		lay->plen[k] += rlen;
	else if (w->pass == SP_WALK_PREFIX)
	{
		if (rlen)
			memcpy(lay->prefix.p + lay->pcur[k], ref, rlen);
		lay->pcur[k] += rlen;
	}
}

/* One changed field (or whole row) of L data bytes in column k. */
static sp_status
walk_cell(walk *w, size_t k, uint64_t L)
{
	sp_rowslay *lay = w->lay;
	uint8_t    *d;

	if (!columnar(w->layout))
		k = 0;
	if (w->pass == SP_WALK_SIZES)
	{
		if (L > SP_ROW_MAX)
			return bad(w, "field longer than a row");
		lay->dlen[k] += L;
		return SP_OK;
	}
	if (w->pass == SP_WALK_PREFIX)
		return SP_OK;
	if (L > lay->dlen[k] - lay->dcur[k])
		return bad(w, "field data overruns its column");
	d = lay->data.p + lay->dcur[k];
	lay->dcur[k] += L;
	return derived(w, d, d, (size_t) L);
}

/*
 * Interleaved layout: the reference row, repeated in the data just before
 * the literal, so zstd finds what the literal edits a few bytes back (at a
 * cheap offset) instead of far back in the prefix.  The decoder skips it.
 */
static sp_status
walk_remind(walk *w, const uint8_t *ref, size_t rlen)
{
	sp_rowslay *lay = w->lay;

	if (w->pass == SP_WALK_SIZES)
	{
		lay->dlen[0] += rlen;
		return SP_OK;
	}
	if (w->pass == SP_WALK_PREFIX)
		return SP_OK;
	if (rlen > lay->dlen[0] - lay->dcur[0])
		return bad(w, "reference row overruns the data");
	if (w->pass == SP_WALK_FILL)
		memcpy(lay->data.p + lay->dcur[0], ref, rlen);
	lay->dcur[0] += rlen;
	return SP_OK;
}

/* Length of a whole row stored without one: cut it from where it is. */
static sp_status
implicit_len(walk *w, uint64_t *L)
{
	sp_rowslay *lay = w->lay;
	sp_rowscan	sc = {.fmt = w->rs->fmt};
	long		n = 0;

	w->nimplicit++;
	*L = 0;
	if (w->pass == SP_WALK_FILL)
		n = sp_row_next(&sc, w->bytes + w->at, w->nbytes - w->at, true);
	else if (w->pass == SP_WALK_EMIT)
		n = sp_row_next(&sc, lay->data.p + lay->dcur[w->imp_col],
						(size_t) (lay->dlen[w->imp_col] - lay->dcur[w->imp_col]), true);
	else
		return SP_OK;			/* sized from the data length once placed */
	if (n <= 0)
		return bad(w, "a whole row does not cut");
	*L = (uint64_t) n;
	return SP_OK;
}

/* Field k of the row above (empty when it has fewer fields). */
static const uint8_t *
above_field(walk *w, size_t k, size_t *len)
{
	const uint8_t *row = w->bytes + w->above;
	uint32_t   *fe = w->lay->afends;

	if (!w->above_cut)
	{
		w->above_nf = sp_row_fields(w->rs->fmt, row, w->above_len, fe, SP_FIELDS_MAX);
		w->above_cut = true;
	}
	if (k >= w->above_nf)
	{
		*len = 0;
		return row;
	}
	*len = fe[k] - (k ? fe[k - 1] : 0);
	return row + (k ? fe[k - 1] : 0);
}

/*
 * A changed field stored as numbers against the field above or the
 * reference field (rcell): moved like any field, then coded in the data
 * (FILL) or decoded in the output (EMIT).
 */
static sp_status
walk_number(walk *w, size_t k, uint64_t L, unsigned mode, const uint8_t *rcell, size_t rlen)
{
	sp_rowslay *lay = w->lay;
	uint64_t	dpos = lay->dcur[k];	/* (the numeric layout is columnar) */
	size_t		at = w->at;

	if (walk_cell(w, k, L) != SP_OK)
		return w->ctx->err.code;
	if (w->pass != SP_WALK_FILL && w->pass != SP_WALK_EMIT)
		return SP_OK;
	if (mode == SP_NUM_ABOVE)
		rcell = above_field(w, k, &rlen);
	if (w->pass == SP_WALK_FILL)
		sp_num_code(lay->data.p + dpos, (size_t) L, rcell, rlen, false);
	else
		sp_num_code(w->bytes + at, (size_t) L, rcell, rlen, true);
	return SP_OK;
}

/* A literal in column mode against parent row bytes ref (len bytes); mode: SP_NUM_*. */
static sp_status
walk_cols(walk *w, const uint8_t *ref, size_t len, unsigned mode)
{
	uint32_t   *fe = w->lay->fends;
	size_t		nf = sp_row_fields(w->rs->fmt, ref, len, fe, SP_FIELDS_MAX);
	size_t		mb = (nf + 7) / 8;
	const uint8_t *mask;

	if (mb > w->n - w->pos)
		return bad(w, "truncated field mask");
	mask = w->ctl + w->pos;
	w->pos += mb;
	if (nf % 8 && (mask[mb - 1] >> (nf % 8)))
		return bad(w, "field mask names a field the reference row lacks");
	for (size_t k = 0; k < nf; k++)
	{
		size_t		s = k ? fe[k - 1] : 0;
		sp_status	rc = SP_OK;

		if (mask[k / 8] & (1u << (k % 8)))
		{
			uint64_t	L;

			if (!sp_get_varint(w->ctl, w->n, &w->pos, &L))
				return bad(w, "truncated field length");
			if (columnar(w->layout))
				walk_prefix(w, k, ref + s, fe[k] - s);
			rc = mode == SP_NUM_AS_IS ? walk_cell(w, k, L)
				: walk_number(w, k, L, mode, ref + s, fe[k] - s);
		}
		else if (w->pass == SP_WALK_FILL || w->pass == SP_WALK_EMIT)
			rc = derived(w, ref + s, NULL, fe[k] - s);
		if (rc != SP_OK)
			return rc;
	}
	return SP_OK;
}

/*
 * A literal in the interleaved layout against parent row bytes ref (len
 * bytes): the reference's fields before the first changed one, then the
 * rest of the row from the data, where it follows the reference row (so
 * the row's unchanged end and the next reference row read as one stretch
 * of the parent).
 */
static sp_status
walk_suffix(walk *w, const uint8_t *ref, size_t len)
{
	uint32_t   *fe = w->lay->fends;
	size_t		nf = sp_row_fields(w->rs->fmt, ref, len, fe, SP_FIELDS_MAX);
	uint64_t	first,
				L;

	if (!sp_get_varint(w->ctl, w->n, &w->pos, &first))
		return bad(w, "truncated first changed field");
	if (first >= nf)
		return bad(w, "first changed field is past the reference row");
	if ((w->pass == SP_WALK_FILL || w->pass == SP_WALK_EMIT) &&
		derived(w, ref, NULL, first ? fe[first - 1] : 0) != SP_OK)
		return w->ctx->err.code;
	if (w->implicit ? implicit_len(w, &L) != SP_OK : !sp_get_varint(w->ctl, w->n, &w->pos, &L))
		return w->implicit ? w->ctx->err.code : bad(w, "truncated row length");
	if (w->implicit && w->pass == SP_WALK_SIZES)
		return SP_OK;
	return walk_cell(w, 0, L);
}

/* Parse a literal's selector and resolve its reference row (-1: none). */
static sp_status
literal_ref(walk *w, uint8_t *sel, int64_t *ref)
{
	if (w->pos >= w->n)
		return bad(w, "truncated literal");
	*sel = w->ctl[w->pos++];
	*ref = -1;
	if (*sel & ~(SP_REF_MASK | SP_LIT_COLS | (w->layout == SP_LAYOUT_NUMERIC ? SP_LIT_NUM : 0)) ||
		(*sel & SP_REF_MASK) == SP_REF_MASK)
		return bad(w, "unknown literal selector");
	if ((*sel & SP_LIT_NUM) && !(*sel & SP_LIT_COLS))
		return bad(w, "numbers coded in a whole row");
	if ((*sel & SP_LIT_NUM) >> SP_LIT_NUM_SHIFT >= SP_NUM_MODES)
		return bad(w, "unknown number coding");
	if ((*sel & SP_LIT_NUM) >> SP_LIT_NUM_SHIFT == SP_NUM_ABOVE && w->rows == 0)
		return bad(w, "the chunk's first row has no row above");
	if ((*sel & SP_REF_MASK) == SP_REF_NEXT)
		*ref = w->prev + 1;
	else if ((*sel & SP_REF_MASK) == SP_REF_SAME)
		*ref = w->prev;
	if ((*sel & SP_REF_MASK) != SP_REF_NONE && (*ref < 0 || (uint64_t) *ref >= w->rs->nrows))
		return bad(w, "literal refers to a row the parent lacks");
	if ((*sel & SP_REF_MASK) == SP_REF_NEXT)
		w->prev = *ref;
	if ((*sel & SP_LIT_COLS) && *ref < 0)
		return bad(w, "column literal without a reference row");
	return SP_OK;
}

/* One literal row: selector, reference, then its fields or its whole bytes. */
static sp_status
literal_body(walk *w)
{
	uint8_t		sel = 0;
	int64_t		ref = -1;
	const uint8_t *rp = NULL;
	size_t		rlen = 0;
	uint64_t	L;

	if (literal_ref(w, &sel, &ref) != SP_OK)
		return w->ctx->err.code;
	if (ref >= 0)
	{
		/*
		 * Bound the work a hostile chunk can ask for: the writer keeps the
		 * reference rows of a chunk under the prefix limit and starts a new
		 * chunk after SP_ROWS_JUMPS scattered references.
		 */
		rlen = (size_t) sp_row_len(w->rs, (uint64_t) ref);
		w->refbytes += rlen;
		w->jumps += ref != w->last_ref && ref != w->last_ref + 1;
		w->last_ref = ref;
		if (w->refbytes > SP_PREFIX_MAX || w->jumps > 2 * SP_ROWS_JUMPS)
			return bad(w, "literals refer to too much of the parent");
		if ((rp = sp_rowspace_row(w->ctx, w->rs, (uint64_t) ref)) == NULL)
			return w->ctx->err.code;
	}
	/* rows layouts: the whole reference row is the prefix, in row order */
	if (!columnar(w->layout) || !(sel & SP_LIT_COLS))
		walk_prefix(w, !columnar(w->layout) ? 0 : SP_COL_RAW, rp, rlen);
	if (w->layout == SP_LAYOUT_INTERLEAVED && walk_remind(w, rp, rlen) != SP_OK)
		return w->ctx->err.code;
	if (sel & SP_LIT_COLS)
		return w->layout == SP_LAYOUT_INTERLEAVED ? walk_suffix(w, rp, rlen)
			: walk_cols(w, rp, rlen, (sel & SP_LIT_NUM) >> SP_LIT_NUM_SHIFT);
	if (w->implicit ? implicit_len(w, &L) != SP_OK : !sp_get_varint(w->ctl, w->n, &w->pos, &L))
		return w->implicit ? w->ctx->err.code : bad(w, "truncated row length");
	if (w->implicit && w->pass == SP_WALK_SIZES)
		return SP_OK;
	return walk_cell(w, SP_COL_RAW, L);
}

/* The row above the next one is the bytes [start, w->at). */
static void
row_done(walk *w, size_t start)
{
	w->rows++;
	w->above = start;
	w->above_len = w->at - start;
	w->above_cut = false;
}

/* One literal row, which becomes the row above the next. */
static sp_status
walk_literal(walk *w)
{
	size_t		start = w->at;

	if (literal_body(w) != SP_OK)
		return w->ctx->err.code;
	row_done(w, start);
	return SP_OK;
}

/*
 * Place each column's region (data and prefix are column-major); whole
 * rows without lengths take what the data length leaves.
 */
static sp_status
place_columns(walk *w, uint64_t data_n)
{
	sp_rowslay *lay = w->lay;
	uint64_t	d = 0,
				p = 0;

	for (size_t k = 0; k < SP_NCOLS; k++)
		d += lay->dlen[k];
	if (d > data_n || (d < data_n && w->nimplicit == 0))
		return bad(w, "column sizes disagree with the data length");
	lay->dlen[w->imp_col] += data_n - d;
	d = 0;
	for (size_t k = 0; k < SP_NCOLS; k++)
	{
		lay->dcur[k] = d;
		lay->pcur[k] = p;
		d += lay->dlen[k];
		p += lay->plen[k];
	}
	lay->dtotal = d;
	lay->ptotal = p;
	/* dlen[k] becomes the end of column k, so bounds are checked against it */
	for (size_t k = 0; k < SP_NCOLS; k++)
		lay->dlen[k] += lay->dcur[k];
	return SP_OK;
}

/* Reset the cursors a pass starts from. */
static void
walk_start(walk *w)
{
	sp_rowslay *lay = w->lay;

	if (w->pass == SP_WALK_SIZES)
	{
		memset(lay->dlen, 0, 2 * SP_NCOLS * sizeof(uint64_t));
		lay->dtotal = lay->ptotal = 0;
	}
	if (w->pass == SP_WALK_FILL || w->pass == SP_WALK_EMIT)
		for (size_t k = 0; k < SP_NCOLS; k++)
			lay->dcur[k] = k ? lay->dlen[k - 1] : 0;
	if (w->pass == SP_WALK_PREFIX)
		for (size_t k = 0, p = 0; k < SP_NCOLS; k++)
			lay->pcur[k] = p, p += lay->plen[k];
}

/* One group: a run of parent rows, then literals. */
static sp_status
walk_group(walk *w, uint64_t left, uint64_t *rows)
{
	uint64_t	ncopy,
				nlit,
				zz;

	if (!sp_get_varint(w->ctl, w->n, &w->pos, &ncopy) || ncopy > left)
		return bad(w, "bad copy count");
	if (ncopy)
	{
		int64_t		start;

		if (!sp_get_varint(w->ctl, w->n, &w->pos, &zz))
			return bad(w, "truncated copy start");
		start = w->prev + 1 + ((zz & 1) ? -(int64_t) (zz >> 1) - 1 : (int64_t) (zz >> 1));
		if (start < 0 || (uint64_t) start > w->rs->nrows ||
			ncopy > w->rs->nrows - (uint64_t) start)
			return bad(w, "copy refers to rows the parent lacks");
		if (walk_copy(w, (uint64_t) start, ncopy) != SP_OK)
			return w->ctx->err.code;
		w->prev = start + (int64_t) ncopy - 1;
		/* the last copied row is the row above the next (its bytes: FILL and EMIT) */
		w->rows += ncopy - 1;
		row_done(w, w->at - (w->pass == SP_WALK_FILL || w->pass == SP_WALK_EMIT
							 ? (size_t) sp_row_len(w->rs, (uint64_t) w->prev) : 0));
	}
	if (!sp_get_varint(w->ctl, w->n, &w->pos, &nlit) || nlit > left - ncopy ||
		(nlit == 0 && ncopy == 0))
		return bad(w, "bad literal count");
	for (uint64_t i = 0; i < nlit; i++)
		if (walk_literal(w) != SP_OK)
			return w->ctx->err.code;
	*rows = ncopy + nlit;
	return SP_OK;
}

/* One pass over the control stream. */
sp_status
sp_rows_walk(sp_ctx *ctx, sp_rowspace *rs, sp_rowslay *lay, sp_walk_pass pass,
			 const sp_rows_chunk *c, uint8_t *bytes, size_t nbytes)
{
	walk		w = {ctx, rs, lay, pass, c->ctl, c->ctl_n, 0, c->prev0, bytes, nbytes, 0,
	c->layout, rs->fmt != SP_ROWS_JSON_ARRAY, !columnar(c->layout) ? 0 : SP_COL_RAW, 0, 0,
	-2, 0, 0, 0, 0, 0, false};
	uint64_t	done = 0,
				groups = 0;

	if (c->layout != SP_LAYOUT_COLUMNS && c->layout != SP_LAYOUT_ROWS &&
		c->layout != SP_LAYOUT_INTERLEAVED && c->layout != SP_LAYOUT_NUMERIC)
		return bad(&w, "unknown layout");
	walk_start(&w);
	while (done < c->nrows)
	{
		uint64_t	rows = 0;

		if (walk_group(&w, c->nrows - done, &rows) != SP_OK)
			return ctx->err.code;
		done += rows;
		if ((++groups & 0xff) == 0 && sp_check_interrupt(ctx) != SP_OK)
			return ctx->err.code;
	}
	if (w.pos != c->ctl_n)
		return bad(&w, "control stream has trailing bytes");
	if (pass == SP_WALK_SIZES)
		return place_columns(&w, c->data_n);
	if ((pass == SP_WALK_FILL || pass == SP_WALK_EMIT) && w.at != nbytes)
		return bad(&w, "rows do not fill the chunk");
	for (size_t k = 0; (pass == SP_WALK_FILL || pass == SP_WALK_EMIT) && k < SP_NCOLS; k++)
		if (lay->dcur[k] != lay->dlen[k])
			return bad(&w, "column data left over");
	return SP_OK;
}

/* Read "u32 raw length, u32 frame length, frame" at *pos. */
static sp_status
get_stream(sp_ctx *ctx, const uint8_t *p, size_t n, size_t *pos, uint64_t *raw,
		   const uint8_t **frame, size_t *flen)
{
	if (n - *pos < 8)
		return sp_fail(ctx, SP_ERR_CORRUPT, "row chunk is malformed: truncated stream header");
	*raw = sp_get32(p + *pos);
	*flen = sp_get32(p + *pos + 4);
	*pos += 8;
	if (*flen > n - *pos || (*raw == 0) != (*flen == 0))
		return sp_fail(ctx, SP_ERR_CORRUPT, "row chunk is malformed: bad stream length");
	*frame = p + *pos;
	*pos += *flen;
	return SP_OK;
}

/* Decode a ROWS chunk payload into out. */
sp_status
sp_rows_decode(sp_ctx *ctx, sp_codec *codec, sp_rowspace *rs, sp_rowslay *lay,
			   const uint8_t *payload, size_t plen, sp_rows_chunk *c,
			   uint8_t *out, size_t out_len)
{
	size_t		pos = 0,
				cf_len = 0,
				df_len = 0;
	const uint8_t *cf = NULL,
			   *df = NULL;
	uint64_t	ctl_n = 0;
	uint8_t    *ctl = NULL;
	sp_status	rc;

	if (get_stream(ctx, payload, plen, &pos, &ctl_n, &cf, &cf_len) != SP_OK ||
		get_stream(ctx, payload, plen, &pos, &c->data_n, &df, &df_len) != SP_OK)
		return ctx->err.code;
	/* the data holds the chunk's literal bytes, and in the interleaved layout its prefix again */
	if (pos != plen || ctl_n > SP_ROWS_CTL_MAX || c->nrows > out_len ||
		c->data_n > (uint64_t) out_len +
		(c->layout == SP_LAYOUT_INTERLEAVED ? SP_PREFIX_MAX : 0))
		return sp_fail(ctx, SP_ERR_CORRUPT, "row chunk is malformed: bad lengths");
	if ((ctl = sp_alloc(ctx, (size_t) ctl_n + 1)) == NULL)
		return SP_ERR_NOMEM;
	c->ctl = ctl;
	c->ctl_n = (size_t) ctl_n;
	rc = sp_codec_decode_zstd(ctx, codec, NULL, 0, cf, cf_len, ctl, (size_t) ctl_n);
	if (rc == SP_OK)
		rc = sp_rows_walk(ctx, rs, lay, SP_WALK_SIZES, c, NULL, 0);
	if (rc == SP_OK && lay->ptotal > SP_PREFIX_MAX)
		rc = sp_fail(ctx, SP_ERR_CORRUPT, "row chunk is malformed: prefix too large");
	if (rc == SP_OK)
		rc = sp_reserve(ctx, &lay->prefix.p, &lay->prefix.cap, (size_t) lay->ptotal + 1) == SP_OK &&
			sp_reserve(ctx, &lay->data.p, &lay->data.cap, (size_t) c->data_n + 1) == SP_OK
			? SP_OK : SP_ERR_NOMEM;
	if (rc == SP_OK)
		rc = sp_rows_walk(ctx, rs, lay, SP_WALK_PREFIX, c, NULL, 0);
	if (rc == SP_OK && c->data_n)
		rc = sp_codec_decode_zstd(ctx, codec, lay->prefix.p, (size_t) lay->ptotal, df, df_len,
								  lay->data.p, (size_t) c->data_n);
	if (rc == SP_OK)
		rc = sp_rows_walk(ctx, rs, lay, SP_WALK_EMIT, c, out, out_len);
	c->ctl = NULL;
	sp_free(ctx, ctl);
	return rc;
}
