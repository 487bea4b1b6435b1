/*
 * dataset.c -- deltas of derived datasets against their parent.
 *
 * How it works: each derived file gets a row format from its name and first
 * bytes (rows.h) and is cut into rows in a first pass; a file the format
 * cannot cut is coded as bytes.  The parent files of the delta's row
 * format (the one whose derived files hold the most bytes, main_format)
 * form a row space (rowindex.h), indexed by row hash.  Each derived
 * row is then looked up: the parent row after the last one used is tried
 * first, so runs cost one lookup each.  Found rows become runs of parent
 * rows; the others become literals coded against a reference parent row
 * (the next one in order, or the last one used, whichever shares more
 * fields), field by field when both have the same number of fields.  Rows
 * are grouped into ROWS chunks of at most 4 MiB of output; each chunk's
 * control stream and literal data are compressed with zstd, the data with
 * the parent fields or rows it replaces as prefix (column by column for
 * short cells, in row order for text).  Rows whose changed cells are long
 * text are recorded three ways (whole, cell by cell, interleaved: each
 * reference row repeated before the rest of its row); the first two are
 * ranked at a fast level on two threads, and the winner is coded at the real
 * level beside the interleaved way, which only the high levels' optimal
 * parser can exploit (so no fast probe ranks it).  Chunks of short changed
 * cells are also coded in the numeric layout (numbers stored as differences
 * from the row above or the reference, rowindex.h) beside the column one,
 * on two threads, and the smaller kept.  The encoder decodes
 * every chunk it writes and compares it with the input
 * before writing it, and stores a chunk as plain zstd instead when that is
 * smaller (a translation, an unrelated file).  Files without rows get zstd
 * chunks with their same-named parent file as prefix; in Parquet files,
 * snappy and zstd pages that compress back byte-identically are expanded
 * and coded against the parent's pages (SNAPPY chunks, parquet.h).
 *
 * The estimator cuts sample_rows derived rows from a few windows spread over
 * the derived files, scans the parent once for rows with the same tags, and
 * codes the windows exactly as compress would, extrapolating by bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "container.h"
#include "parquet.h"
#include "rowindex.h"

#define DS_HEAD 65536				/* bytes read to guess a format */
#define DS_BUF (8u << 20)			/* derived scan buffer */
#define DS_WINDOWS 8				/* estimator sample windows */
#define DS_STANDALONE_SHARE 4		/* try plain zstd when shared < 1/4 */
#define DS_PROBE_LEVEL 6			/* zstd level that ranks the two variants */
#define DS_PQ_WINDOW (32u << 10)	/* prefix half-width for bytes between pages */			/* Parquet pages: most of the gain, a fraction of the time */
#define DS_TEXT_CELL 32			/* changed cells this long on average: whole row */
#define DS_ALIGN_SPAN 64			/* estimator: parent rows searched around a guess */
#define DS_THREAD_MIN (64u << 10)	/* streams coded on a second thread from this size */

/*
 * A chunk is recorded three ways at once, differing only for rows whose
 * changed cells are long text: stored whole (VAR_WHOLE; zstd sees the
 * unchanged cells they often quote), cell by cell (VAR_CELLS), or with the
 * reference row repeated before the row's rest from its first changed cell
 * (VAR_INTER; SP_LAYOUT_INTERLEAVED).  When some row is like that, the
 * ways are coded and the smallest is kept.
 */
enum
{
	VAR_WHOLE = 0, VAR_CELLS = 1, VAR_INTER = 2, VAR_NUM = 3, DS_NVAR = 4
};

/*
 * VAR_NUM is the cells variant in the numeric layout: the changed fields of
 * each literal are stored as they are, or as differences from the numbers
 * of the same fields of the reference row or of the row above, whichever
 * leaves the fewest digits (num_mode); rows with a changed field longer
 * than DS_NUM_CELL stay as they are.  When no field is a text rewrite, it
 * is coded beside the cells variant on a second thread and the smaller kept.
 */
#define DS_NUM_CELL 64

/* The control stream of one way of coding the chunk. */
typedef struct variant
{
	sp_buf		ctl;
	sp_buf		lits;				/* literals of the pending group */
	uint64_t	data_n;				/* literal data bytes */
	uint64_t	chg_fields;			/* changed fields in column-mode literals */
	uint64_t	shared;				/* bytes of unchanged cells */
} variant;

/* State of one dataset compression (or estimate). */
typedef struct dsenc
{
	sp_ctx	   *ctx;
	int			level;
	sp_fileset *base;
	sp_fileset *der;
	sp_out	   *out;				/* NULL when estimating */
	sp_rowfmt	fmt;				/* row format of the row space */
	uint8_t    *dfmt;				/* per derived file: its row format, or NONE */
	sp_rowspace rs;
	uint32_t   *slot;				/* base file -> BASES index, or SP_NO_BASE */
	uint32_t	nslots;
	sp_codec	codec;
	sp_codec	codec2;				/* the worker thread's */
	sp_rowslay	lay;
	sp_rowslay	lay2;				/* the second variant's layout */
	sp_rowslay	lay3;				/* the second, interleaved (rowindex.h) */
	uint8_t    *buf;				/* derived scan buffer */
	/* the chunk being built */
	uint8_t    *cbuf;
	size_t		clen;
	variant		v[DS_NVAR];			/* VAR_WHOLE, VAR_CELLS, VAR_INTER, VAR_NUM */
	uint64_t	num_cells;			/* VAR_NUM literals whose numbers are differences */
	size_t		row_off;			/* the last row's start in cbuf */
	size_t		above_off;			/* the row before it, when nrows > 1 */
	uint32_t   *afe;				/* field ends of that row */
	size_t		above_nf;			/* and their number, or SIZE_MAX before they are cut */
	uint64_t	text_lits;			/* literals where the variants differ */
	size_t		first_chg;			/* first changed field of the last put_cols */
	uint64_t	jumps;				/* scattered literal references (rowindex.h) */
	int64_t		last_ref;
	uint64_t	nrows;
	uint64_t	nlit;
	int64_t		prev;
	int64_t		prev0;
	uint64_t	copy_start;
	uint64_t	copy_n;
	int64_t		copy_prev;
	uint64_t	pbytes;
	uint64_t	shared;				/* bytes of copied rows */
	uint8_t    *ref;				/* scratch copies of two parent rows */
	uint8_t    *ref2;
	uint32_t   *dfe;				/* field ends of the derived row */
	uint32_t   *rfe;				/* field ends of a parent row */
	uint8_t    *pay;
	size_t		pay_cap;
	uint8_t    *pay2;				/* the other variant's payload */
	size_t		pay2_cap;
	uint8_t    *chk;				/* decode check */
	size_t		chk_cap;
	/* per file and totals */
	sp_sha256	sha;
	uint64_t	chunks;
	uint64_t	row_chunks;
	uint64_t	pq_chunks;			/* SNAPPY chunks of the current file */
	int			pq_zlevel;			/* zstd level its pages were found at, or 0 */
	bool		pq_zfail;			/* a zstd page of it did not compress back */
	uint8_t    *pq_scratch;			/* a compressed page */
	uint8_t    *pq_pre;				/* expanded parent pages */
	uint64_t	pq_window;			/* prefix half-width between pages, or 0 */
	size_t		cur_file;
	bool		saw_parquet;		/* some file had Parquet pages */
	uint64_t	nchanged;
	uint64_t	coded;				/* estimator: bytes the chunks took */
	bool		estimating;			/* collect the streams below instead of coding */
	sp_buf		est_ctl[DS_NVAR],
				est_data[DS_NVAR],
				est_prefix[DS_NVAR],
				est_raw;
	uint64_t	est_shared;
	bool		est_inter;			/* some window was collected interleaved */
	bool		est_num;			/* and some in the numeric layout */
	uint64_t	done,
				total;
	int64_t		rows_total,
				rows_shared;
	uint8_t		base_digest[SP_SHA256_LEN];
	sp_bases	bases;			/* the BASES record, sealed before END */
} dsenc;

/*
 * zstd level for literal rows and files without rows: they are what is left
 * once shared rows are gone, so the default (3) spends level 19 on them.
 * Parquet pages and the bytes between them use the level as given.
 */
static int
lit_level(int level)
{
	return level >= 3 ? SP_MAX(level, 19) : level * 6 + 1;
}

/* ---- classifying files ------------------------------------------------------ */

/* Row format of file i of fs, from its name and first bytes. */
static sp_status
guess_file(sp_ctx *ctx, sp_fileset *fs, size_t i, uint8_t *head, sp_rowfmt *fmt)
{
	size_t		n = (size_t) SP_MIN((uint64_t) DS_HEAD, fs->f[i].size);

	if (sp_fileset_read(ctx, fs, i, 0, head, n) != SP_OK)
		return ctx->err.code;
	*fmt = sp_rowfmt_guess(fs->f[i].rel, head, n);
	return SP_OK;
}

/* Does file i of fs cut into rows of fmt?  (A full pass over it.) */
static sp_status
cuts(sp_ctx *ctx, sp_fileset *fs, size_t i, sp_rowfmt fmt, uint8_t *buf, bool *ok)
{
	sp_rowspace rs;
	sp_status	rc;

	rc = sp_rowspace_build(ctx, &rs, fs, fmt, &i, 1, false, NULL, 0);
	*ok = rc == SP_OK && rs.nfiles == 1;
	sp_rowspace_free(ctx, &rs);
	return rc;
}

/*
 * The row format a set of derived files is coded with: the one whose files
 * hold the most bytes (one byte more per file, so empty files count; the
 * earliest file breaks a tie), skipping formats marked in tried.  A
 * README.md or .gitattributes beside CSV shards must not turn the shards
 * into bytes.  SP_ROWS_NONE when no format is left.
 */
static sp_rowfmt
main_format(dsenc *e, const bool *tried)
{
	uint64_t	score[SP_ROWS_COUNT] = {0};
	size_t		first[SP_ROWS_COUNT] = {0};
	sp_rowfmt	best = SP_ROWS_NONE;

	for (size_t i = e->der->n; i-- > 0;)
	{
		score[e->dfmt[i]] += e->der->f[i].size + 1;
		first[e->dfmt[i]] = i;
	}
	for (int f = SP_ROWS_NONE + 1; f < SP_ROWS_COUNT; f++)
		if (score[f] > 0 && !tried[f] &&
			(best == SP_ROWS_NONE || score[f] > score[best] ||
			 (score[f] == score[best] && first[f] < first[best])))
			best = (sp_rowfmt) f;
	return best;
}

/*
 * Guess each derived file's row format, pick the delta's (main_format), and
 * check that its files cut into rows (those up to check_max bytes; a file
 * that does not is coded as bytes).  When none of them cuts, the next
 * format is tried.  Files of the other formats are coded as bytes.
 */
static sp_status
classify(dsenc *e, uint64_t check_max)
{
	sp_ctx	   *ctx = e->ctx;
	bool		tried[SP_ROWS_COUNT] = {false};
	sp_rowfmt	f = SP_ROWS_NONE;

	for (size_t i = 0; i < e->der->n; i++)
	{
		if (guess_file(ctx, e->der, i, e->buf, &f) != SP_OK)
			return ctx->err.code;
		e->dfmt[i] = (uint8_t) f;
		e->total += e->der->f[i].size;
	}
	while (e->fmt == SP_ROWS_NONE && (f = main_format(e, tried)) != SP_ROWS_NONE)
	{
		tried[f] = true;
		for (size_t i = 0; i < e->der->n; i++)
		{
			bool		ok = true;

			if (e->dfmt[i] != f)
				continue;
			if (e->der->f[i].size <= check_max &&
				cuts(ctx, e->der, i, f, e->buf, &ok) != SP_OK)
				return ctx->err.code;
			if (ok)
				e->fmt = f;
			else
				e->dfmt[i] = SP_ROWS_NONE;
		}
	}
	for (size_t i = 0; i < e->der->n; i++)
		if (e->dfmt[i] != e->fmt)
			e->dfmt[i] = SP_ROWS_NONE;
	return SP_OK;
}

/* Parent files of the row format, in order (their indexes into idx). */
static sp_status
parent_files(dsenc *e, size_t *idx, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < e->base->n && e->fmt != SP_ROWS_NONE; i++)
	{
		sp_rowfmt	f = SP_ROWS_NONE;

		if (guess_file(e->ctx, e->base, i, e->buf, &f) != SP_OK)
			return e->ctx->err.code;
		if (f == e->fmt)
			idx[(*n)++] = i;
	}
	return SP_OK;
}

/* The parent file a derived file without rows is coded against, or -1. */
static long
partner_of(dsenc *e, size_t i)
{
	long		p = sp_fileset_find(e->base, e->der->f[i].rel);

	if (p < 0 && e->base->n == 1)
		p = 0;
	return p;
}

/* ---- the chunk being built ---------------------------------------------------- */

/* Write the pending group (copy run, then literals) to every variant. */
static sp_status
flush_group(dsenc *e)
{
	sp_ctx	   *ctx = e->ctx;

	if (e->copy_n == 0 && e->nlit == 0)
		return SP_OK;
	for (int i = 0; i < DS_NVAR; i++)
	{
		variant    *v = &e->v[i];

		if (sp_buf_varint(ctx, &v->ctl, e->copy_n) != SP_OK)
			return SP_ERR_NOMEM;
		if (e->copy_n)
		{
			int64_t		d = (int64_t) e->copy_start - (e->copy_prev + 1);
			uint64_t	zz = d < 0 ? ((uint64_t) (-(d + 1)) << 1) | 1 : (uint64_t) d << 1;

			if (sp_buf_varint(ctx, &v->ctl, zz) != SP_OK)
				return SP_ERR_NOMEM;
		}
		if (sp_buf_varint(ctx, &v->ctl, e->nlit) != SP_OK ||
			sp_buf_put(ctx, &v->ctl, v->lits.p, v->lits.n) != SP_OK)
			return SP_ERR_NOMEM;
		v->lits.n = 0;
	}
	e->copy_n = e->nlit = 0;
	return SP_OK;
}

/* Derived row is parent row m. */
static sp_status
add_copy(dsenc *e, uint64_t m, size_t len)
{
	if (e->nlit > 0 || (e->copy_n > 0 && m != e->copy_start + e->copy_n))
		if (flush_group(e) != SP_OK)
			return e->ctx->err.code;
	if (e->copy_n == 0)
	{
		e->copy_start = m;
		e->copy_prev = e->prev;
	}
	e->copy_n++;
	e->prev = (int64_t) m;
	e->shared += len;
	e->rows_shared++;
	return SP_OK;
}

/*
 * Bytes of the derived row's fields that differ from parent row ref (nd
 * fields, ends dfe); SIZE_MAX when the field counts differ.  *text says
 * whether the changed cells are long text.
 */
static size_t
changed_bytes(dsenc *e, const uint8_t *row, size_t nd, const uint8_t *ref, size_t rlen,
			  size_t *pchanged, bool *text)
{
	size_t		nchg = 0;
	size_t		nr = sp_row_fields(e->fmt, ref, rlen, e->rfe, SP_FIELDS_MAX),
				diff = 0,
				pdiff = 0;

	if (nr != nd || nd < 2)
		return SIZE_MAX;
	for (size_t k = 0; k < nd; k++)
	{
		size_t		ds = k ? e->dfe[k - 1] : 0,
					rs = k ? e->rfe[k - 1] : 0;
		size_t		dl = e->dfe[k] - ds,
					rl = e->rfe[k] - rs;

		if (dl != rl || memcmp(row + ds, ref + rs, dl) != 0)
			diff += dl, pdiff += rl, nchg++;
	}
	*pchanged = pdiff;
	*text = nchg > 0 && diff / nchg >= DS_TEXT_CELL;
	return diff;
}

/* Copy parent row r into dst (SP_ROW_MAX bytes); its length, or SIZE_MAX on error. */
static size_t
fetch_row(dsenc *e, int64_t r, uint8_t *dst)
{
	const uint8_t *p;
	size_t		len;

	if (r < 0 || (uint64_t) r >= e->rs.nrows)
		return SIZE_MAX;
	len = (size_t) sp_row_len(&e->rs, (uint64_t) r);
	if ((p = sp_rowspace_row(e->ctx, &e->rs, (uint64_t) r)) == NULL)
		return SIZE_MAX;
	memcpy(dst, p, len);
	return len;
}

/*
 * Digits of a changed cell (n <= DS_NUM_CELL bytes) left to code when it is
 * stored against ref: with numbers coded (diff), those after each run's
 * leading zeros or nines (a small difference either way); as is, those
 * that differ from ref's byte at the same place.
 */
static size_t
num_cost(const uint8_t *cell, size_t n, const uint8_t *ref, size_t rn, bool diff)
{
	uint8_t		t[DS_NUM_CELL];
	size_t		cost = 0;

	if (!diff)
	{
		for (size_t i = 0; i < n; i++)
			cost += cell[i] >= '0' && cell[i] <= '9' && (i >= rn || ref[i] != cell[i]);
		return cost;
	}
	memcpy(t, cell, n);
	sp_num_code(t, n, ref, rn, false);
	for (size_t i = 0; i < n;)
	{
		size_t		e = i,
					z = 0,
					nine = 0;

		while (e < n && t[e] >= '0' && t[e] <= '9')
			e++;
		while (i + z < e && t[i + z] == '0')
			z++;
		while (i + nine < e && t[i + nine] == '9')
			nine++;
		cost += e - i - SP_MAX(z, nine);
		i = e > i ? e : i + 1;
	}
	return cost;
}

/*
 * Field k of the chunk's row above the literal (needs nrows >= 2; cut once
 * per literal), empty when that row has fewer fields, as the reader sees it.
 */
static const uint8_t *
above_field(dsenc *e, size_t k, size_t *len)
{
	size_t		as;

	if (e->above_nf == SIZE_MAX)
		e->above_nf = sp_row_fields(e->fmt, e->cbuf + e->above_off, e->row_off - e->above_off,
									e->afe, SP_FIELDS_MAX);
	*len = 0;
	if (k >= e->above_nf)
		return e->cbuf;
	as = k ? e->afe[k - 1] : 0;
	*len = e->afe[k] - as;
	return e->cbuf + e->above_off + as;
}

/*
 * How VAR_NUM stores the changed fields of a column-mode literal against
 * reference row ref (fields in e->rfe): the coding that leaves the fewest
 * digits over them (num_cost).  A tie goes to the row above, then to the
 * reference, so that a run of new rows codes alike.  The chunk's first row
 * has no row above; rows with a long changed field stay as they are.
 */
static unsigned
num_mode(dsenc *e, const uint8_t *row, size_t nd, const uint8_t *ref)
{
	size_t		cost[SP_NUM_MODES] = {0};
	unsigned	best = SP_NUM_AS_IS;
	bool		above_ok = e->nrows >= 2;	/* the chunk's first row has none */

	e->above_nf = SIZE_MAX;
	for (size_t k = 0; k < nd; k++)
	{
		size_t		ds = k ? e->dfe[k - 1] : 0,
					rs = k ? e->rfe[k - 1] : 0,
					dl = e->dfe[k] - ds,
					rl = e->rfe[k] - rs,
					al = 0;
		const uint8_t *above;

		if (dl == rl && memcmp(row + ds, ref + rs, dl) == 0)
			continue;
		if (dl > DS_NUM_CELL)
			return SP_NUM_AS_IS;
		cost[SP_NUM_AS_IS] += num_cost(row + ds, dl, ref + rs, rl, false);
		cost[SP_NUM_REF] += num_cost(row + ds, dl, ref + rs, rl, true);
		if (above_ok)
		{
			above = above_field(e, k, &al);
			cost[SP_NUM_ABOVE] += num_cost(row + ds, dl, above, al, true);
		}
	}
	for (unsigned m = 1; m < SP_NUM_MODES; m++)
		if ((m != SP_NUM_ABOVE || above_ok) && cost[m] <= cost[best])
			best = m;
	e->num_cells += best != SP_NUM_AS_IS;
	return best;
}

/* Record a column-mode literal's mask and changed field lengths. */
static sp_status
put_cols(dsenc *e, variant *v, const uint8_t *row, size_t nd, const uint8_t *ref)
{
	uint8_t		mask[SP_FIELDS_MAX / 8] = {0};
	sp_buf		lens = {0};
	sp_status	rc = SP_OK;

	e->first_chg = nd - 1;		/* (a literal has a changed field; else its last) */
	for (size_t k = 0; k < nd && rc == SP_OK; k++)
	{
		size_t		ds = k ? e->dfe[k - 1] : 0,
					rs = k ? e->rfe[k - 1] : 0;
		size_t		dl = e->dfe[k] - ds;

		if (dl != e->rfe[k] - rs || memcmp(row + ds, ref + rs, dl) != 0)
		{
			mask[k / 8] |= (uint8_t) (1u << (k % 8));
			e->first_chg = SP_MIN(e->first_chg, k);
			rc = sp_buf_varint(e->ctx, &lens, dl);
			v->data_n += dl;
			v->chg_fields++;
		}
		else
			v->shared += dl;
	}
	if (rc == SP_OK)
		rc = sp_buf_put(e->ctx, &v->lits, mask, (nd + 7) / 8);
	if (rc == SP_OK)
		rc = sp_buf_put(e->ctx, &v->lits, lens.p, lens.n);
	sp_buf_free(e->ctx, &lens);
	return rc;
}

/* Record one literal in variant v: selector, then fields or a whole row. */
static sp_status
put_literal(dsenc *e, variant *v, uint8_t sel, const uint8_t *row, size_t len, size_t nd,
			size_t la, size_t lb)
{
	bool		next = (sel & SP_REF_MASK) == SP_REF_NEXT;
	const uint8_t *ref = next ? e->ref : e->ref2;

	if (sel & SP_LIT_COLS)
	{
		/* recompute the parent row's fields: changed_bytes left the last one's */
		sp_row_fields(e->fmt, ref, next ? la : lb, e->rfe, SP_FIELDS_MAX);
		if (v == &e->v[VAR_NUM])
			sel |= (uint8_t) (num_mode(e, row, nd, ref) << SP_LIT_NUM_SHIFT);
		return sp_buf_put(e->ctx, &v->lits, &sel, 1) == SP_OK ? put_cols(e, v, row, nd, ref)
			: SP_ERR_NOMEM;
	}
	if (sp_buf_put(e->ctx, &v->lits, &sel, 1) != SP_OK)
		return SP_ERR_NOMEM;
	v->data_n += len;
	/* row formats cut whole rows themselves; json-array rows need a length */
	return e->fmt == SP_ROWS_JSON_ARRAY ? sp_buf_varint(e->ctx, &v->lits, len) : SP_OK;
}

/*
 * Record one literal in the interleaved variant (rowindex.h): its reference
 * row goes to the data again, then the row from its first changed field on.
 * Runs after the cells variant recorded the same literal (sel), whose
 * put_cols found that field.
 */
static sp_status
put_inter(dsenc *e, variant *v, uint8_t sel, size_t len, size_t la, size_t lb)
{
	bool		next = (sel & SP_REF_MASK) == SP_REF_NEXT;
	size_t		rlen = (sel & SP_REF_MASK) == SP_REF_NONE ? 0 : next ? la : lb,
				from = 0;

	if (sp_buf_put(e->ctx, &v->lits, &sel, 1) != SP_OK)
		return SP_ERR_NOMEM;
	if (sel & SP_LIT_COLS)
	{
		from = e->first_chg ? e->dfe[e->first_chg - 1] : 0;
		if (sp_buf_varint(e->ctx, &v->lits, e->first_chg) != SP_OK)
			return SP_ERR_NOMEM;
	}
	v->data_n += rlen + len - from;
	return e->fmt == SP_ROWS_JSON_ARRAY ? sp_buf_varint(e->ctx, &v->lits, len - from) : SP_OK;
}

/*
 * Derived row not in the parent: pick a reference row (the next parent row
 * or the last one used, whichever leaves fewer changed bytes) and record it
 * in both variants.
 */
static sp_status
add_literal(dsenc *e, const uint8_t *row, size_t len)
{
	size_t		nd = sp_row_fields(e->fmt, row, len, e->dfe, SP_FIELDS_MAX);
	size_t		la = fetch_row(e, e->prev + 1, e->ref),
				lb = e->prev + 1 > 0 ? fetch_row(e, e->prev, e->ref2) : SIZE_MAX;
	size_t		pa = 0,
				pb = 0;
	bool		ta = false,
				tb = false;
	size_t		ca = la != SIZE_MAX ? changed_bytes(e, row, nd, e->ref, la, &pa, &ta) : SIZE_MAX;
	size_t		cb = lb != SIZE_MAX ? changed_bytes(e, row, nd, e->ref2, lb, &pb, &tb) : SIZE_MAX;
	uint64_t	room = SP_PREFIX_MAX - e->pbytes;
	uint8_t		sel,
				whole;

	if (ca != SIZE_MAX && la > room)
		ca = SIZE_MAX;
	if (cb != SIZE_MAX && lb > room)
		cb = SIZE_MAX;
	e->nlit++;
	if (ca != SIZE_MAX && ca <= cb && ca < len)
		sel = SP_REF_NEXT | SP_LIT_COLS;
	else if (cb != SIZE_MAX && cb < len && !tb)
		sel = SP_REF_SAME | SP_LIT_COLS;
	else
		sel = la != SIZE_MAX && la <= room ? SP_REF_NEXT : SP_REF_NONE;
	/* long text against the next row: the whole-row variant differs */
	whole = sel == (SP_REF_NEXT | SP_LIT_COLS) && ta ? SP_REF_NEXT : sel;
	e->text_lits += whole != sel;
	e->pbytes += (sel & SP_REF_MASK) == SP_REF_NEXT ? la : (sel & SP_REF_MASK) ? lb : 0;
	if (put_literal(e, &e->v[VAR_WHOLE], whole, row, len, nd, la, lb) != SP_OK ||
		put_literal(e, &e->v[VAR_CELLS], sel, row, len, nd, la, lb) != SP_OK ||
		put_inter(e, &e->v[VAR_INTER], sel, len, la, lb) != SP_OK ||
		put_literal(e, &e->v[VAR_NUM], sel, row, len, nd, la, lb) != SP_OK)
		return e->ctx->err.code;
	if (sel & SP_REF_MASK)
	{
		int64_t		ref = (sel & SP_REF_MASK) == SP_REF_NEXT ? e->prev + 1 : e->prev;

		e->jumps += ref != e->last_ref && ref != e->last_ref + 1;
		e->last_ref = ref;
	}
	if ((sel & SP_REF_MASK) == SP_REF_NEXT)
		e->prev++;
	return SP_OK;
}

/* Make the payload buffer hold a chunk of ctl_n + data_n bytes of streams. */
static sp_status
reserve_payload(dsenc *e, size_t need)
{
	if (need <= e->pay_cap)
		return SP_OK;
	sp_free(e->ctx, e->pay);
	e->pay_cap = 0;
	if ((e->pay = sp_alloc(e->ctx, need)) == NULL)
		return SP_ERR_NOMEM;
	e->pay_cap = need;
	return SP_OK;
}

/*
 * Layout of a variant: short changed cells (recomputed numbers) column by
 * column, so each old cell sits at a regular distance; long text cells and
 * whole rows in row order beside whole reference rows.
 */
static int
choose_layout(const variant *v)
{
	if (v->chg_fields == 0 || v->data_n / v->chg_fields >= DS_TEXT_CELL)
		return SP_LAYOUT_ROWS;
	return SP_LAYOUT_COLUMNS;
}

/* Lay out variant vi's literal data and prefix (in lay), from the chunk's rows. */
static sp_status
lay_variant(dsenc *e, sp_rowslay *lay, const sp_rows_chunk *c)
{
	sp_ctx	   *ctx = e->ctx;

	if (sp_rows_walk(ctx, &e->rs, lay, SP_WALK_SIZES, c, NULL, 0) != SP_OK)
		return ctx->err.code;
	if (lay->ptotal > SP_PREFIX_MAX || lay->dtotal > e->clen + lay->ptotal)
		return sp_fail(ctx, SP_ERR_INTERNAL, "row chunk layout is out of bounds");
	if (sp_reserve(ctx, &lay->prefix.p, &lay->prefix.cap, (size_t) lay->ptotal + 1) != SP_OK ||
		sp_reserve(ctx, &lay->data.p, &lay->data.cap, (size_t) lay->dtotal + 1) != SP_OK)
		return SP_ERR_NOMEM;
	if (sp_rows_walk(ctx, &e->rs, lay, SP_WALK_PREFIX, c, NULL, 0) != SP_OK ||
		sp_rows_walk(ctx, &e->rs, lay, SP_WALK_FILL, c, e->cbuf, e->clen) != SP_OK)
		return ctx->err.code;
	return SP_OK;
}

/* Worst-case payload of a laid-out variant. */
static size_t
payload_bound(const sp_rowslay *lay, const sp_rows_chunk *c)
{
	return SP_CHUNK_HDR + 16 + sp_codec_bound(c->ctl_n) + sp_codec_bound((size_t) lay->dtotal);
}

/* Append "u32 raw length, u32 frame length, frame" of src to pay at *pos. */
static sp_status
put_stream(sp_ctx *ctx, sp_codec *codec, const uint8_t *src, size_t n, const uint8_t *prefix,
		   size_t plen, uint8_t *pay, size_t *pos, int level)
{
	size_t		used = 0;

	if (n > 0 &&
		sp_codec_encode_zstd(ctx, codec, level, src, n, prefix, plen, pay + *pos + 8,
							 sp_codec_bound(n), &used) != SP_OK)
		return ctx->err.code;
	sp_put32(pay + *pos, (uint32_t) n);
	sp_put32(pay + *pos + 4, (uint32_t) used);
	*pos += 8 + used;
	return SP_OK;
}

/*
 * Compress a laid-out variant's two streams into pay (payload_bound bytes);
 * pure computation, so a worker thread may run it.
 */
static sp_status
compress_variant(sp_ctx *ctx, sp_codec *codec, const sp_rowslay *lay, const sp_rows_chunk *c,
				 int level, uint8_t *pay, size_t *plen)
{
	size_t		pos = SP_CHUNK_HDR;

	if (put_stream(ctx, codec, c->ctl, c->ctl_n, NULL, 0, pay, &pos, 19) != SP_OK ||
		put_stream(ctx, codec, lay->data.p, (size_t) lay->dtotal, lay->prefix.p,
				   (size_t) lay->ptotal, pay, &pos, level) != SP_OK)
		return ctx->err.code;
	*plen = pos - SP_CHUNK_HDR;
	return SP_OK;
}

/* The estimator codes all its windows' streams at once (see code_collected). */
static sp_status
collect_variant(dsenc *e, int vi, const sp_rowslay *lay, const sp_rows_chunk *c)
{
	sp_ctx	   *ctx = e->ctx;

	return sp_buf_put(ctx, &e->est_ctl[vi], c->ctl, c->ctl_n) == SP_OK &&
		sp_buf_put(ctx, &e->est_data[vi], lay->data.p, (size_t) lay->dtotal) == SP_OK &&
		sp_buf_put(ctx, &e->est_prefix[vi], lay->prefix.p, (size_t) lay->ptotal) == SP_OK
		? SP_OK : SP_ERR_NOMEM;
}

/* Exchange the two payload buffers (the kept one is always e->pay). */
static void
swap_pay(dsenc *e)
{
	uint8_t    *t = e->pay;
	size_t		tc = e->pay_cap;

	e->pay = e->pay2, e->pay_cap = e->pay2_cap;
	e->pay2 = t, e->pay2_cap = tc;
}

/* Decode the payload just built and compare it with the input. */
static sp_status
check_payload(dsenc *e, const sp_rows_chunk *c, size_t plen)
{
	sp_ctx	   *ctx = e->ctx;
	sp_rows_chunk dc = {NULL, 0, c->nrows, c->prev0, c->layout, 0};

	if (sp_reserve(ctx, &e->chk, &e->chk_cap, e->clen) != SP_OK)
		return SP_ERR_NOMEM;
	if (sp_rows_decode(ctx, &e->codec, &e->rs, &e->lay2, e->pay + SP_CHUNK_HDR, plen, &dc,
					   e->chk, e->clen) != SP_OK)
		return sp_fail(ctx, SP_ERR_INTERNAL, "a row chunk does not decode: %s", ctx->err.msg);
	if (memcmp(e->chk, e->cbuf, e->clen) != 0)
		return sp_fail(ctx, SP_ERR_INTERNAL, "a row chunk decodes to different bytes");
	return SP_OK;
}

/* Write a chunk record (or only count its size when estimating). */
static sp_status
emit_chunk(dsenc *e, const sp_chunk_hdr *h, size_t plen)
{
	sp_chunk_hdr_put(e->pay, h);
	e->chunks++;
	e->coded += SP_REC_HDR + SP_CHUNK_HDR + plen + SP_REC_SUM;
	if (h->kind != SP_CHUNK_COPY)
		e->nchanged++;
	if (e->out == NULL)
		return SP_OK;
	return sp_write_record(e->ctx, e->out, SP_REC_CHUNK, e->pay, SP_CHUNK_HDR + plen);
}

/*
 * Plain zstd of n bytes, in pay, if smaller than limit; *used 0 if not.  A
 * fast probe first: most chunks are far from it, so the full level is
 * spent only when it could win.
 */
static sp_status
standalone_size(dsenc *e, const uint8_t *src, size_t n, size_t limit, size_t *used)
{
	size_t		cap = sp_codec_bound(n);

	*used = 0;
	if (reserve_payload(e, SP_CHUNK_HDR + cap) != SP_OK)
		return SP_ERR_NOMEM;
	if (sp_codec_encode_zstd(e->ctx, &e->codec, 3, src, n, NULL, 0, e->pay + SP_CHUNK_HDR, cap,
							 used) != SP_OK)
		return e->ctx->err.code;
	if (*used > limit + limit / 4 ||
		(lit_level(e->level) > 3 &&
		 sp_codec_encode_zstd(e->ctx, &e->codec, lit_level(e->level), src, n, NULL, 0,
							  e->pay + SP_CHUNK_HDR, cap, used) != SP_OK))
		return *used > limit + limit / 4 ? (*used = 0, SP_OK) : e->ctx->err.code;
	if (*used >= limit)
		*used = 0;
	return SP_OK;
}

/* Plain zstd of the chunk's bytes into pay, if smaller than plen; *used 0 if not. */
static sp_status
try_standalone(dsenc *e, size_t plen, size_t *used)
{
	uint8_t    *keep = e->pay;
	size_t		keep_cap = e->pay_cap;
	sp_status	rc;

	/* code into the spare buffer, so the rows payload survives a loss */
	e->pay = e->pay2, e->pay_cap = e->pay2_cap;
	rc = standalone_size(e, e->cbuf, e->clen, plen, used);
	e->pay2 = e->pay, e->pay2_cap = e->pay_cap;
	e->pay = keep, e->pay_cap = keep_cap;
	if (rc == SP_OK && *used > 0)
		swap_pay(e);
	return rc;
}

/* The control stream and sizes of variant vi as a chunk description. */
static sp_rows_chunk
describe(const dsenc *e, int vi)
{
	const variant *v = &e->v[vi];

	return (sp_rows_chunk) {v->ctl.p, v->ctl.n, e->nrows, e->prev0,
		vi == VAR_INTER ? SP_LAYOUT_INTERLEAVED : vi == VAR_NUM ? SP_LAYOUT_NUMERIC
		: choose_layout(v), v->data_n};
}

/* A variant compressed on a worker thread: its own context and codec. */
typedef struct job
{
	sp_ctx		ctx;			/* no caller hooks: the worker may not call them */
	sp_codec   *codec;
	const sp_rowslay *lay;
	const sp_rows_chunk *c;
	int			level;
	uint8_t    *pay;
	size_t		plen;
	sp_status	rc;
	atomic_int	cancel;			/* set by the caller's thread on interrupt */
	pthread_mutex_t mu;			/* guards done; cv signals it */
	pthread_cond_t cv;
	bool		done;
} job;

/* Interrupt hook of a worker: the flag the caller's thread sets. */
static int
job_cancelled(void *user)
{
	return atomic_load(&((job *) user)->cancel);
}

/* Worker thread body. */
static void *
job_run(void *arg)
{
	job		   *j = arg;

	j->rc = compress_variant(&j->ctx, j->codec, j->lay, j->c, j->level, j->pay, &j->plen);
	pthread_mutex_lock(&j->mu);
	j->done = true;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/*
 * Wait for a worker, polling the caller's interrupt hook every 5 ms on this
 * thread and passing a cancel on, so a cancel stops the worker quickly; the
 * wait ends as soon as the worker signals that it is done.
 */
static void
job_wait(dsenc *e, pthread_t t, job *j, bool failed)
{
	if (failed)
		atomic_store(&j->cancel, 1);
	pthread_mutex_lock(&j->mu);
	while (!j->done)
	{
		struct timespec ts = sp_deadline_ms(5);

		if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0 || j->done)
			continue;
		pthread_mutex_unlock(&j->mu);
		if (e->ctx->hooks.interrupted && e->ctx->hooks.interrupted(e->ctx->hooks.user))
			atomic_store(&j->cancel, 1);
		pthread_mutex_lock(&j->mu);
	}
	pthread_mutex_unlock(&j->mu);
	pthread_join(t, NULL);
}

/*
 * Compress both variants at once, the second on a worker thread (zstd
 * only: no caller hook and no database call happens there).
 */
static sp_status
compress_both(dsenc *e, int level, const sp_rowslay *l0, const sp_rows_chunk *c0,
			  const sp_rowslay *l1, const sp_rows_chunk *c1, size_t *p0, size_t *p1)
{
	job			j = {.codec = &e->codec2, .lay = l1, .c = c1, .level = level, .pay = e->pay2};
	pthread_t	t;
	bool		threaded;
	sp_status	rc;

	sp_ctx_init(&j.ctx);
	j.ctx.hooks.interrupted = job_cancelled;
	j.ctx.hooks.user = &j;
	pthread_mutex_init(&j.mu, NULL);
	pthread_cond_init(&j.cv, NULL);
	/* small streams code faster here than a thread starts */
	threaded = l1->dtotal + c1->ctl_n >= DS_THREAD_MIN && sp_spawn_blocked(&t, job_run, &j);
	rc = compress_variant(e->ctx, &e->codec, l0, c0, level, e->pay, p0);
	if (threaded)
		job_wait(e, t, &j, rc != SP_OK);
	else
		job_run(&j);
	pthread_mutex_destroy(&j.mu);
	pthread_cond_destroy(&j.cv);
	if (rc != SP_OK)
		return rc;
	if (j.rc != SP_OK)
	{
		/* a cancel seen by the worker is this call's cancel */
		if (j.rc == SP_ERR_CANCELLED)
			return sp_check_interrupt(e->ctx) != SP_OK ? e->ctx->err.code
				: sp_fail(e->ctx, SP_ERR_CANCELLED, "cancelled");
		e->ctx->err = j.ctx.err;
		return j.rc;
	}
	*p1 = j.plen;
	return SP_OK;
}

/*
 * The interleaved variant, when the cells variant is laid out in row order
 * (long text cells); false otherwise.
 */
static bool
interleave(dsenc *e, const sp_rows_chunk *c1, sp_rows_chunk *c3)
{
	if (c1->layout != SP_LAYOUT_ROWS)
		return false;
	*c3 = describe(e, VAR_INTER);
	return true;
}

/*
 * Code the probe's winner (in pay, laid out in lay) and the interleaved
 * cells variant c3 at the real level on two threads, and keep the smaller:
 * only the optimal parsers of the high levels turn the repeated reference
 * rows into cheap matches, so a fast probe cannot rank the two.
 */
static sp_status
final_pair(dsenc *e, const sp_rowslay *lay, sp_rows_chunk *c, const sp_rows_chunk *c3,
		   size_t *plen)
{
	size_t		p3 = 0;

	if (lay_variant(e, &e->lay3, c3) != SP_OK ||
		sp_reserve(e->ctx, &e->pay2, &e->pay2_cap, payload_bound(&e->lay3, c3)) != SP_OK)
		return e->ctx->err.code;
	if (compress_both(e, lit_level(e->level), lay, c, &e->lay3, c3, plen, &p3) != SP_OK)
		return e->ctx->err.code;
	if (p3 < *plen)
	{
		swap_pay(e);
		*c = *c3;
		*plen = p3;
	}
	return SP_OK;
}

/*
 * The estimator keeps every way of coding the chunk (see code_collected):
 * a chunk that compress would not code interleaved or numeric contributes
 * its cells or whole variant there instead.
 */
static sp_status
collect_all(dsenc *e, const sp_rows_chunk *c, const sp_rows_chunk *c1)
{
	sp_rows_chunk c3,
				cn = describe(e, VAR_NUM);
	bool		inter = interleave(e, c1, &c3),
				num = !inter && e->text_lits == 0 && e->num_cells > 0 &&
		c->layout == SP_LAYOUT_COLUMNS;

	if ((inter && lay_variant(e, &e->lay3, &c3) != SP_OK) ||
		(num && lay_variant(e, &e->lay3, &cn) != SP_OK))
		return e->ctx->err.code;
	e->est_inter |= inter;
	e->est_num |= num;
	return collect_variant(e, VAR_WHOLE, &e->lay, c) == SP_OK &&
		collect_variant(e, VAR_CELLS, &e->lay2, c1) == SP_OK &&
		collect_variant(e, VAR_INTER, inter ? &e->lay3 : &e->lay2, inter ? &c3 : c1) == SP_OK &&
		collect_variant(e, VAR_NUM, num ? &e->lay3 : &e->lay, num ? &cn : c) == SP_OK
		? SP_OK : SP_ERR_NOMEM;
}

/*
 * Code the cells variant (laid out in e->lay as c) and the numeric one at
 * the real level on two threads, and keep the smaller.
 */
static sp_status
numeric_pair(dsenc *e, sp_rows_chunk *c, size_t *plen)
{
	sp_rows_chunk cn = describe(e, VAR_NUM);
	size_t		pn = 0;

	if (lay_variant(e, &e->lay2, &cn) != SP_OK ||
		sp_reserve(e->ctx, &e->pay2, &e->pay2_cap, payload_bound(&e->lay2, &cn)) != SP_OK)
		return e->ctx->err.code;
	if (compress_both(e, lit_level(e->level), &e->lay, c, &e->lay2, &cn, plen, &pn) != SP_OK)
		return e->ctx->err.code;
	if (pn < *plen)
	{
		swap_pay(e);
		*c = cn;
		*plen = pn;
	}
	return SP_OK;
}

/* Keep the smallest way of coding the chunk in pay (c and plen describe it). */
static sp_status
best_variant(dsenc *e, sp_rows_chunk *c, size_t *plen)
{
	sp_rows_chunk c1 = describe(e, VAR_CELLS),
				c3;
	size_t		p1 = 0;
	bool		both = e->text_lits > 0 || e->estimating,
				cells;

	*c = describe(e, VAR_WHOLE);
	if (lay_variant(e, &e->lay, c) != SP_OK || (both && lay_variant(e, &e->lay2, &c1) != SP_OK))
		return e->ctx->err.code;
	if (e->estimating)
		return collect_all(e, c, &c1);
	if (reserve_payload(e, payload_bound(&e->lay, c)) != SP_OK ||
		(both && sp_reserve(e->ctx, &e->pay2, &e->pay2_cap, payload_bound(&e->lay2, &c1)) != SP_OK))
		return SP_ERR_NOMEM;
	if (!both && e->num_cells > 0 && c->layout == SP_LAYOUT_COLUMNS)
		return numeric_pair(e, c, plen);
	if (!both)
		return compress_variant(e->ctx, &e->codec, &e->lay, c, lit_level(e->level), e->pay, plen);
	/* rank the two at a fast level (on two threads), then code the winner */
	if (compress_both(e, DS_PROBE_LEVEL, &e->lay, c, &e->lay2, &c1, plen, &p1) != SP_OK)
		return e->ctx->err.code;
	cells = p1 < *plen;
	if (cells)
	{
		swap_pay(e);
		*c = c1;
		*plen = p1;
	}
	if (lit_level(e->level) <= DS_PROBE_LEVEL)
		return SP_OK;
	if (interleave(e, &c1, &c3))
		return final_pair(e, cells ? &e->lay2 : &e->lay, c, &c3, plen);
	return compress_variant(e->ctx, &e->codec, cells ? &e->lay2 : &e->lay, c,
							lit_level(e->level), e->pay, plen);
}

/* Forget the chunk just coded. */
static void
reset_chunk(dsenc *e)
{
	e->clen = 0;
	e->nrows = 0;
	e->prev0 = e->prev;
	e->pbytes = e->shared = e->text_lits = e->jumps = e->num_cells = 0;
	e->row_off = e->above_off = 0;
	e->last_ref = -2;
	for (int i = 0; i < DS_NVAR; i++)
	{
		e->v[i].ctl.n = e->v[i].lits.n = 0;
		e->v[i].data_n = e->v[i].chg_fields = e->v[i].shared = 0;
	}
}

/* Code the rows gathered so far as one chunk. */
static sp_status
flush_chunk(dsenc *e, sp_rowfmt fmt)
{
	sp_rows_chunk c;
	sp_chunk_hdr h;
	size_t		plen = 0,
				alt = 0;
	uint64_t	shared;
	sp_status	rc;

	if (e->nrows == 0)
		return SP_OK;
	shared = e->shared + e->v[VAR_CELLS].shared;
	if (flush_group(e) != SP_OK || best_variant(e, &c, &plen) != SP_OK)
		return e->ctx->err.code;
	if (e->estimating)
	{
		e->est_shared += shared;
		rc = sp_buf_put(e->ctx, &e->est_raw, e->cbuf, e->clen);
		reset_chunk(e);
		return rc;
	}
	h = (sp_chunk_hdr) {SP_CHUNK_ROWS, (uint8_t) fmt, (uint8_t) c.layout, 0, SP_NO_BASE, e->clen,
	e->nrows, (uint64_t) (e->prev0 + 1), XXH3_64bits(e->cbuf, e->clen)};
	if (check_payload(e, &c, plen) != SP_OK)
		return e->ctx->err.code;
	if (shared * DS_STANDALONE_SHARE < e->clen && try_standalone(e, plen, &alt) != SP_OK)
		return e->ctx->err.code;
	if (alt > 0)
	{
		h = (sp_chunk_hdr) {SP_CHUNK_ZSTD, 0, 0, 0, SP_NO_BASE, e->clen, 0, 0, h.checksum};
		plen = alt;
	}
	else
		e->row_chunks++;
	rc = emit_chunk(e, &h, plen);
	reset_chunk(e);
	return rc;
}

/* Add one derived row to the chunk. */
static sp_status
add_row(dsenc *e, sp_rowfmt fmt, const uint8_t *row, size_t len)
{
	int64_t		m = -1;

	if ((e->clen + len > SP_ROWS_CHUNK || e->jumps >= SP_ROWS_JUMPS ||
		 e->v[VAR_CELLS].ctl.n + e->v[VAR_CELLS].lits.n > SP_ROWS_CTL_MAX / 2) &&
		flush_chunk(e, fmt) != SP_OK)
		return e->ctx->err.code;
	e->above_off = e->row_off;
	e->row_off = e->clen;
	memcpy(e->cbuf + e->clen, row, len);
	e->clen += len;
	e->nrows++;
	e->rows_total++;
	if (sp_rowspace_equal(e->ctx, &e->rs, (uint64_t) (e->prev + 1), row, len))
		m = e->prev + 1;
	else
		m = sp_rowspace_find(e->ctx, &e->rs, row, len, XXH3_64bits(row, len));
	if (e->ctx->err.code != SP_OK)
		return e->ctx->err.code;
	return m >= 0 ? add_copy(e, (uint64_t) m, len) : add_literal(e, row, len);
}

/* ---- files ------------------------------------------------------------------------ */

/* Read [off, off+n) of derived file fi into dst, hashing it, with progress. */
static sp_status
read_derived(dsenc *e, size_t fi, uint64_t off, uint8_t *dst, size_t n)
{
	if (sp_check_interrupt(e->ctx) != SP_OK ||
		sp_fileset_read(e->ctx, e->der, fi, off, dst, n) != SP_OK)
		return e->ctx->err.code;
	if (e->sha.md)
		sp_sha256_update(&e->sha, dst, n);
	e->done += n;
	sp_progress(e->ctx, e->done, e->total);
	return SP_OK;
}

/* Code derived file fi row by row. */
static sp_status
code_rows(dsenc *e, size_t fi)
{
	sp_rowfmt	fmt = (sp_rowfmt) e->dfmt[fi];
	sp_rowscan	sc = {.fmt = fmt};
	uint64_t	size = e->der->f[fi].size,
				bstart = 0;
	size_t		blen = 0,
				cur = 0;

	for (;;)
	{
		long		L = sp_row_next(&sc, e->buf + cur, blen - cur, bstart + blen == size);

		if (L > 0)
		{
			if (add_row(e, fmt, e->buf + cur, (size_t) L) != SP_OK)
				return e->ctx->err.code;
			cur += (size_t) L;
			continue;
		}
		if (L < 0)
			return sp_fail(e->ctx, SP_ERR_IO, "\"%s\" changed while it was read", e->der->f[fi].rel);
		if (bstart + blen == size)
			break;
		memmove(e->buf, e->buf + cur, blen - cur);
		bstart += cur;
		blen -= cur;
		cur = 0;
		{
			size_t		n = (size_t) SP_MIN((uint64_t) (DS_BUF - blen), size - bstart - blen);

			if (read_derived(e, fi, bstart + blen, e->buf + blen, n) != SP_OK)
				return e->ctx->err.code;
			blen += n;
		}
	}
	return flush_chunk(e, fmt);
}

/*
 * Code the len derived bytes at e->buf (file offset off) as one zstd chunk,
 * with the partner's bytes around the same offset as prefix.
 */
static sp_status
code_buffer(dsenc *e, long partner, uint64_t off, size_t len, uint64_t small)
{
	sp_ctx	   *ctx = e->ctx;
	sp_chunk_hdr h = {SP_CHUNK_ZSTD, 0, 0, 0, SP_NO_BASE, len, 0, 0, XXH3_64bits(e->buf, len)};
	uint8_t    *pre = e->buf + SP_ZSTD_CHUNK;
	size_t		used;

	if (partner >= 0)
	{
		h.base = e->slot[partner];
		sp_prefix_window(off, e->base->f[partner].size, &h.base_off, &h.base_len);
		if (small)
		{
			/*
			 * Parquet page headers: a small window at the same share of the
			 * partner, since a large prefix costs more to load than they weigh
			 */
			uint64_t	psize = e->base->f[partner].size,
						at = (uint64_t) ((double) off / (double) e->der->f[e->cur_file].size * (double) psize);

			h.base_off = at > small ? at - small : 0;
			h.base_len = SP_MIN(2 * small, psize - h.base_off);
		}
		if (h.base_len > DS_BUF - SP_ZSTD_CHUNK)
			h.base_len = DS_BUF - SP_ZSTD_CHUNK;
		if (sp_fileset_read(ctx, e->base, (size_t) partner, h.base_off, pre,
							(size_t) h.base_len) != SP_OK)
			return ctx->err.code;
	}
	if (reserve_payload(e, SP_CHUNK_HDR + sp_codec_bound(len)) != SP_OK ||
		sp_codec_encode_zstd(ctx, &e->codec,
							 small ? e->level : lit_level(e->level),
							 e->buf, len, pre, (size_t) h.base_len, e->pay + SP_CHUNK_HDR,
							 sp_codec_bound(len), &used) != SP_OK)
		return ctx->err.code;
	return emit_chunk(e, &h, used);
}

/* Code [off, off+n) of derived file fi as zstd chunks. */
static sp_status
code_range(dsenc *e, size_t fi, long partner, uint64_t off, uint64_t n)
{
	for (uint64_t end = off + n; off < end;)
	{
		size_t		len = (size_t) SP_MIN(end - off, (uint64_t) SP_ZSTD_CHUNK);

		if (read_derived(e, fi, off, e->buf, len) != SP_OK ||
			code_buffer(e, partner, off, len, e->pq_window) != SP_OK)
			return e->ctx->err.code;
		off += len;
	}
	return SP_OK;
}

/* ---- Parquet ------------------------------------------------------------------------ */

/* Scratch buffers for Parquet pages (allocated on first use). */
static sp_status
pq_buffers(dsenc *e)
{
	if (e->pq_scratch)
		return SP_OK;
	e->pq_scratch = sp_alloc(e->ctx, sp_pq_bound(SP_PQ_PAGE_MAX));
	e->pq_pre = sp_alloc(e->ctx, SP_PREFIX_MAX);
	return e->pq_scratch && e->pq_pre ? SP_OK : SP_ERR_NOMEM;
}

/*
 * Expand the partner's pages around page k (those that expand with codec)
 * into the prefix, listing them in the payload at *pos; *plen the prefix
 * length.  A page that does not expand is left out; a read error is an error.
 */
static sp_status
pq_prefix(dsenc *e, int codec, long partner, const sp_pq_page *bp, size_t nb, size_t k,
		  size_t *pos, size_t *plen_out)
{
	size_t		plen = 0,
				count_at = (*pos)++;
	uint8_t		count = 0;

	for (size_t i = k > 0 ? k - 1 : 0; partner >= 0 && i < SP_MIN(nb, k + 2); i++)
	{
		const sp_pq_page *b = &bp[i];

		if (b->clen > SP_PQ_PAGE_MAX || b->ulen > SP_PQ_PAGE_MAX ||
			plen + b->ulen > SP_PREFIX_MAX)
			continue;
		if (sp_fileset_read(e->ctx, e->base, (size_t) partner, b->off, e->pq_scratch,
							b->clen) != SP_OK)
			return e->ctx->err.code;
		if (!sp_pq_expand(&e->codec, codec, e->pq_scratch, b->clen, e->pq_pre + plen, b->ulen))
			continue;
		sp_put64(e->pay + *pos, b->off);
		sp_put32(e->pay + *pos + 8, b->clen);
		sp_put32(e->pay + *pos + 12, b->ulen);
		*pos += 16;
		plen += b->ulen;
		count++;
	}
	e->pay[count_at] = count;
	*plen_out = plen;
	return SP_OK;
}

/*
 * How the page in e->buf was compressed, expanded into e->cbuf: snappy, or
 * zstd at *level (the file's level tried first); *codec -1 when neither
 * compresses the expansion back to the stored bytes.  A file whose first
 * zstd page does not is not tried again (each try recompresses the page).
 */
static sp_status
pq_codec(dsenc *e, const sp_pq_page *pg, int *codec, int *level)
{
	*codec = SP_PQ_SNAPPY;
	*level = 0;
	if (sp_snappy_roundtrips(e->buf, pg->clen, e->cbuf, pg->ulen, e->pq_scratch,
							 sp_snappy_bound(SP_PQ_PAGE_MAX)))
		return SP_OK;
	*codec = -1;
	if (e->pq_zfail || !sp_pq_is_zstd(e->buf, pg->clen))
		return SP_OK;
	if (sp_pq_zstd_level(e->ctx, &e->codec, e->buf, pg->clen, e->cbuf, pg->ulen, e->pq_scratch,
						 sp_pq_bound(SP_PQ_PAGE_MAX), e->pq_zlevel, level) != SP_OK)
		return e->ctx->err.code;
	e->pq_zfail = *level == 0;
	e->pq_zlevel = *level;
	*codec = *level > 0 ? SP_PQ_ZSTD : -1;
	return SP_OK;
}

/*
 * A snappy or zstd page (already read into e->buf) whose expansion
 * compresses back to the same bytes: a SNAPPY chunk, the expanded page
 * coded against the partner's expanded pages around the same index.  *done
 * false if not.
 */
static sp_status
pq_page(dsenc *e, long partner, const sp_pq_page *pg, const sp_pq_page *bp, size_t nb,
		size_t k, bool *done)
{
	sp_chunk_hdr h = {SP_CHUNK_SNAPPY, 0, 0, 0, partner >= 0 ? e->slot[partner] : SP_NO_BASE,
	pg->clen, 0, 0, XXH3_64bits(e->buf, pg->clen)};
	size_t		pos = SP_CHUNK_HDR + 4,
				plen = 0,
				used;
	int			codec,
				level;

	*done = false;
	if (pq_codec(e, pg, &codec, &level) != SP_OK)
		return e->ctx->err.code;
	if (codec < 0)
		return SP_OK;
	h.transform = (uint8_t) codec;
	h.dtype = (uint8_t) level;
	if (reserve_payload(e, SP_CHUNK_HDR + 5 + 3 * 16 + sp_codec_bound(pg->ulen)) != SP_OK)
		return SP_ERR_NOMEM;
	sp_put32(e->pay + SP_CHUNK_HDR, pg->ulen);
	if (pq_prefix(e, codec, partner, bp, nb, k, &pos, &plen) != SP_OK)
		return e->ctx->err.code;
	/* pages are bulk data, like tensors: coded at the caller's level itself */
	if (sp_codec_encode_zstd(e->ctx, &e->codec, e->level, e->cbuf, pg->ulen, e->pq_pre, plen,
							 e->pay + pos, sp_codec_bound(pg->ulen), &used) != SP_OK)
		return e->ctx->err.code;
	*done = true;
	e->pq_chunks++;
	return emit_chunk(e, &h, pos + used - SP_CHUNK_HDR);
}

/* Code a Parquet file: bytes between pages as zstd, snappy and zstd pages expanded. */
static sp_status
code_parquet(dsenc *e, size_t fi, long partner, const sp_pq_page *dp, size_t nd)
{
	sp_pq_page *bp = NULL;
	size_t		nb = 0;
	uint64_t	pos = 0;
	sp_status	rc = SP_OK;

	if (partner >= 0 && (rc = sp_parquet_pages(e->ctx, e->base, (size_t) partner, &bp, &nb)) != SP_OK)
		return rc;
	if ((rc = pq_buffers(e)) != SP_OK)
		nd = 0;
	for (size_t k = 0; k < nd && rc == SP_OK; k++)
	{
		bool		done = false;

		if (dp[k].off > pos)
			rc = code_range(e, fi, partner, pos, dp[k].off - pos);
		pos = dp[k].off;
		if (rc != SP_OK || dp[k].clen > SP_PQ_PAGE_MAX || dp[k].ulen > SP_PQ_PAGE_MAX ||
			dp[k].clen == 0)
			continue;
		rc = read_derived(e, fi, pos, e->buf, dp[k].clen);
		if (rc == SP_OK)
			rc = pq_page(e, partner, &dp[k], bp, nb, k, &done);
		if (rc == SP_OK && !done)
			rc = code_buffer(e, partner, pos, dp[k].clen, e->pq_window);	/* stays as bytes */
		pos += dp[k].clen;
	}
	if (rc == SP_OK)
		rc = code_range(e, fi, partner, pos, e->der->f[fi].size - pos);
	sp_free(e->ctx, bp);
	return rc;
}

/* Code derived file fi as bytes (Parquet pages expanded when that round-trips). */
static sp_status
code_bytes(dsenc *e, size_t fi, long partner)
{
	sp_pq_page *dp = NULL;
	size_t		nd = 0;
	sp_status	rc;

	if ((rc = sp_parquet_pages(e->ctx, e->der, fi, &dp, &nd)) != SP_OK)
		return rc;
	e->cur_file = fi;
	e->pq_window = nd > 0 ? DS_PQ_WINDOW : 0;
	e->pq_zlevel = 0;
	e->pq_zfail = false;
	e->saw_parquet |= nd > 0;
	rc = nd > 0 ? code_parquet(e, fi, partner, dp, nd)
		: code_range(e, fi, partner, 0, e->der->f[fi].size);
	e->pq_window = 0;
	sp_free(e->ctx, dp);
	return rc;
}

/* FILE_END method of a file. */
static int
file_method(dsenc *e, size_t fi, long partner)
{
	if (e->row_chunks > 0)
		return SP_METHOD_ROWS_BASE + e->dfmt[fi];
	if (e->pq_chunks > 0)
		return SP_METHOD_PARQUET;
	if (e->der->f[fi].size == 0 || partner < 0 || e->dfmt[fi] != SP_ROWS_NONE)
		return SP_METHOD_ZSTD;
	return SP_METHOD_ZSTD_REF;
}

/* Code one derived file: FILE, chunks, FILE_END. */
static sp_status
code_file(dsenc *e, size_t fi, uint8_t digest[SP_SHA256_LEN])
{
	sp_ctx	   *ctx = e->ctx;
	const sp_file *f = &e->der->f[fi];
	long		partner = e->dfmt[fi] == SP_ROWS_NONE ? partner_of(e, fi) : -1;
	uint8_t		rec[14 + SP_MAX_NAME];
	size_t		nl = strlen(f->rel);
	uint8_t		end[48] = {0};
	sp_status	rc;

	e->chunks = e->row_chunks = e->pq_chunks = e->nchanged = 0;
	e->prev = e->prev0 = -1;
	sp_put64(rec, f->size);
	sp_put32(rec + 8, partner >= 0 ? e->slot[partner] : SP_NO_BASE);
	sp_put16(rec + 12, (uint16_t) nl);
	memcpy(rec + 14, f->rel, nl);
	if ((rc = sp_sha256_init(ctx, &e->sha)) == SP_OK)
		rc = sp_write_record(ctx, e->out, SP_REC_FILE, rec, 14 + nl);
	if (rc == SP_OK)
		rc = e->dfmt[fi] != SP_ROWS_NONE ? code_rows(e, fi) : code_bytes(e, fi, partner);
	if (e->sha.md)
		sp_sha256_final(&e->sha, digest);
	sp_sha256_free(&e->sha);
	if (rc != SP_OK)
		return rc;
	end[0] = (uint8_t) file_method(e, fi, partner);
	sp_put64(end + 8, e->chunks);
	memcpy(end + 16, digest, SP_SHA256_LEN);
	return sp_write_record(ctx, e->out, SP_REC_FILE_END, end, sizeof(end));
}

/* ---- BASES, ROWSPACE, END ------------------------------------------------------- */

/* Give BASES indexes to the row space's files and the partners. */
static void
plan_bases(dsenc *e)
{
	for (size_t i = 0; i < e->base->n; i++)
		e->slot[i] = SP_NO_BASE;
	for (size_t i = 0; i < e->rs.nfiles; i++)
		e->slot[e->rs.files[i].idx] = 0;
	for (size_t i = 0; i < e->der->n; i++)
	{
		long		p = e->dfmt[i] == SP_ROWS_NONE ? partner_of(e, i) : -1;

		if (p >= 0)
			e->slot[p] = 0;
	}
	e->nslots = 0;
	for (size_t i = 0; i < e->base->n; i++)
		if (e->slot[i] == 0)
			e->slot[i] = e->nslots++;
}

/*
 * Write BASES (name, size, SHA-256 and fingerprint of each parent file
 * read); the digests are computed beside the coding and written in before
 * END (sp_bases_seal).
 */
static sp_status
write_bases(dsenc *e)
{
	sp_ctx	   *ctx = e->ctx;
	size_t	   *idx = sp_calloc(ctx, e->base->n ? e->base->n : 1, sizeof(size_t));
	size_t		n = 0;
	sp_status	rc;

	if (idx == NULL)
		return SP_ERR_NOMEM;
	for (size_t i = 0; i < e->base->n; i++)
		if (e->slot[i] != SP_NO_BASE)
			idx[n++] = i;
	rc = sp_bases_write(ctx, e->out, e->base, idx, n, "parent dataset has too many files",
						&e->bases);
	sp_free(ctx, idx);
	return rc;
}

/* Write ROWSPACE: the row format and the BASES indexes of its files, in order. */
static sp_status
write_rowspace(dsenc *e)
{
	sp_buf		b = {0};
	uint8_t		t[8] = {(uint8_t) e->fmt};
	sp_status	rc;

	if (e->fmt == SP_ROWS_NONE)
		return SP_OK;
	sp_put32(t + 4, (uint32_t) e->rs.nfiles);
	rc = sp_buf_put(e->ctx, &b, t, 8);
	for (size_t i = 0; i < e->rs.nfiles && rc == SP_OK; i++)
	{
		sp_put32(t, e->slot[e->rs.files[i].idx]);
		rc = sp_buf_put(e->ctx, &b, t, 4);
	}
	if (rc == SP_OK)
		rc = sp_write_record(e->ctx, e->out, SP_REC_ROWSPACE, b.p, b.n);
	sp_buf_free(e->ctx, &b);
	return rc;
}

/* Code every derived file, then END. */
static sp_status
code_all(dsenc *e, uint8_t digest[SP_SHA256_LEN])
{
	sp_ctx	   *ctx = e->ctx;
	sp_sha256	man;
	uint8_t		end[80] = {0};
	sp_status	rc;

	if ((rc = sp_sha256_init(ctx, &man)) != SP_OK)
		return rc;
	for (size_t i = 0; i < e->der->n && rc == SP_OK; i++)
	{
		uint8_t		d[SP_SHA256_LEN];

		if ((rc = code_file(e, i, d)) == SP_OK)
		{
			sp_manifest_add(&man, d, e->der->f[i].rel);
			if (!e->der->is_dir)
				memcpy(digest, d, SP_SHA256_LEN);
		}
	}
	if (e->der->is_dir)
		sp_sha256_final(&man, digest);
	sp_sha256_free(&man);
	if (rc != SP_OK || (rc = sp_bases_seal(ctx, e->out, &e->bases, e->base_digest)) != SP_OK)
		return rc;
	sp_put32(end, (uint32_t) e->der->n);
	sp_put64(end + 8, e->total);
	memcpy(end + 16, digest, SP_SHA256_LEN);
	memcpy(end + 48, e->base_digest, SP_SHA256_LEN);
	return sp_write_record(ctx, e->out, SP_REC_END, end, sizeof(end));
}

/* ---- setup ------------------------------------------------------------------------- */

/*
 * The worker thread's codec allocates with malloc, not with the caller's
 * hooks: a caller's allocator (PostgreSQL's palloc) may only run on the
 * caller's thread, and zstd sizes its workspace on first use, which is in
 * the worker.
 */
static sp_status
worker_codec_init(sp_ctx *ctx, sp_codec *c)
{
	sp_ctx		plain;

	sp_ctx_init(&plain);
	if (sp_codec_init(&plain, c) != SP_OK)
		return sp_fail(ctx, SP_ERR_NOMEM, "%s", plain.err.msg);
	return SP_OK;
}

/* Free what worker_codec_init made. */
static void
worker_codec_free(sp_codec *c)
{
	sp_ctx		plain;

	sp_ctx_init(&plain);
	sp_codec_free(&plain, c);
}

/* Allocate an encoder's buffers. */
static sp_status
dsenc_init(sp_ctx *ctx, dsenc *e, sp_fileset *base, sp_fileset *der, int level)
{
	memset(e, 0, sizeof(*e));
	e->ctx = ctx;
	e->level = level;
	e->base = base;
	e->der = der;
	e->prev = e->prev0 = -1;
	e->last_ref = -2;
	e->dfmt = sp_calloc(ctx, der->n ? der->n : 1, 1);
	e->slot = sp_alloc(ctx, (base->n ? base->n : 1) * sizeof(uint32_t));
	e->buf = sp_alloc(ctx, DS_BUF);
	e->cbuf = sp_alloc(ctx, SP_ROWS_CHUNK);
	e->ref = sp_alloc(ctx, SP_ROW_MAX);
	e->ref2 = sp_alloc(ctx, SP_ROW_MAX);
	e->dfe = sp_alloc(ctx, SP_FIELDS_MAX * sizeof(uint32_t));
	e->rfe = sp_alloc(ctx, SP_FIELDS_MAX * sizeof(uint32_t));
	e->afe = sp_alloc(ctx, SP_FIELDS_MAX * sizeof(uint32_t));
	if (!e->dfmt || !e->slot || !e->buf || !e->cbuf || !e->ref || !e->ref2 || !e->dfe || !e->rfe ||
		!e->afe)
		return SP_ERR_NOMEM;
	if (sp_rowslay_init(ctx, &e->lay) != SP_OK || sp_rowslay_init(ctx, &e->lay2) != SP_OK ||
		sp_rowslay_init(ctx, &e->lay3) != SP_OK)
		return SP_ERR_NOMEM;
	if (sp_codec_init(ctx, &e->codec) != SP_OK)
		return ctx->err.code;
	return worker_codec_init(ctx, &e->codec2);
}

/* Free what dsenc_init and the run allocated. */
static void
dsenc_free(dsenc *e)
{
	sp_ctx	   *ctx = e->ctx;

	if (ctx == NULL)
		return;
	sp_bases_free(ctx, &e->bases);
	sp_codec_free(ctx, &e->codec);
	worker_codec_free(&e->codec2);
	sp_rowslay_free(ctx, &e->lay);
	sp_rowslay_free(ctx, &e->lay2);
	sp_rowslay_free(ctx, &e->lay3);
	sp_rowspace_free(ctx, &e->rs);
	for (int i = 0; i < DS_NVAR; i++)
	{
		sp_buf_free(ctx, &e->v[i].ctl);
		sp_buf_free(ctx, &e->v[i].lits);
		sp_buf_free(ctx, &e->est_ctl[i]);
		sp_buf_free(ctx, &e->est_data[i]);
		sp_buf_free(ctx, &e->est_prefix[i]);
	}
	sp_buf_free(ctx, &e->est_raw);
	sp_free(ctx, e->pay2);
	sp_free(ctx, e->pq_scratch);
	sp_free(ctx, e->pq_pre);
	sp_sha256_free(&e->sha);
	sp_free(ctx, e->dfmt);
	sp_free(ctx, e->slot);
	sp_free(ctx, e->buf);
	sp_free(ctx, e->cbuf);
	sp_free(ctx, e->ref);
	sp_free(ctx, e->ref2);
	sp_free(ctx, e->dfe);
	sp_free(ctx, e->rfe);
	sp_free(ctx, e->afe);
	sp_free(ctx, e->pay);
	sp_free(ctx, e->chk);
}

/* Classify, index the parent, and write the whole delta. */
static sp_status
compress_dataset(dsenc *e, sp_out *out, sp_compress_result *res)
{
	sp_ctx	   *ctx = e->ctx;
	size_t	   *idx;
	size_t		n;
	uint8_t		digest[SP_SHA256_LEN];
	sp_status	rc;

	e->out = out;
	if ((idx = sp_alloc(ctx, (e->base->n ? e->base->n : 1) * sizeof(size_t))) == NULL)
		return SP_ERR_NOMEM;
	rc = classify(e, UINT64_MAX);
	if (rc == SP_OK && e->total >= SP_DIRECT_MIN)
		rc = sp_out_direct(ctx, out);	/* large: past the page cache (files.h) */
	if (rc == SP_OK)
		rc = parent_files(e, idx, &n);
	if (rc == SP_OK)
		rc = sp_rowspace_build(ctx, &e->rs, e->base, e->fmt, idx, e->fmt ? n : 0, true, NULL, 0);
	sp_free(ctx, idx);
	if (rc == SP_OK)
	{
		plan_bases(e);
		rc = sp_write_header(ctx, out, (e->der->is_dir ? SP_FLAG_DIR : 0) | SP_FLAG_BASEFP);
	}
	if (rc == SP_OK && (rc = write_bases(e)) == SP_OK && (rc = write_rowspace(e)) == SP_OK)
		rc = code_all(e, digest);
	if (rc == SP_OK)
	{
		res->ft_bytes = e->total;
		res->rows_total = e->rows_total;
		res->rows_shared = e->rows_shared;
		sp_hex(digest, SP_SHA256_LEN, res->ft_sha256);
		sp_hex(e->base_digest, SP_SHA256_LEN, res->base_sha256);
	}
	return rc;
}

/* Write the delta of a derived dataset against its parent to out. */
sp_status
sp_dataset_compress(sp_ctx *ctx, const char *base, const char *derived, const char *out,
					int level, sp_compress_result *res)
{
	double		t0 = sp_now_ms();
	sp_fileset	bfs = {.fd = -1},
				dfs = {.fd = -1};
	sp_out		o = {.fd = -1};
	char	   *out_path = NULL;
	dsenc		e = {0};
	sp_status	rc;

	sp_clear_error(ctx);
	memset(res, 0, sizeof(*res));
	if (level < SP_LEVEL_MIN || level > SP_LEVEL_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "compression level %d is out of range (%d to %d)",
					   level, SP_LEVEL_MIN, SP_LEVEL_MAX);
	if ((rc = sp_path_output(ctx, out, &out_path)) == SP_OK &&
		(rc = sp_fileset_open(ctx, base, &bfs)) == SP_OK &&
		(rc = sp_fileset_open(ctx, derived, &dfs)) == SP_OK &&
		(rc = dsenc_init(ctx, &e, &bfs, &dfs, level)) == SP_OK &&
		(rc = sp_out_file(ctx, &o, out_path)) == SP_OK &&
		(rc = compress_dataset(&e, &o, res)) == SP_OK)
	{
		uint64_t	written = o.written;

		if ((rc = sp_out_commit(ctx, &o)) == SP_OK)
		{
			snprintf(res->delta_path, sizeof(res->delta_path), "%s", out_path);
			res->delta_bytes = written;
			res->compression_ratio = written ? (double) res->ft_bytes / (double) written : 0;
			res->savings_pct = res->ft_bytes
				? 100.0 * (1.0 - (double) written / (double) res->ft_bytes) : 0;
			res->elapsed_ms = sp_now_ms() - t0;
		}
	}
	sp_out_abort(ctx, &o);
	dsenc_free(&e);
	sp_fileset_close(ctx, &dfs);
	sp_fileset_close(ctx, &bfs);
	sp_free(ctx, out_path);
	return rc;
}

/* ---- estimate ------------------------------------------------------------------ */

#define EST_EXACT_FILE DS_BUF	/* row files this small are cut from their start */
#define EST_EXACT_BYTES (16u << 20)	/* files without rows this small are coded whole */
#define EST_CHECK_MAX (64u << 20)	/* row files this small are checked to cut, as compress does */
#define EST_PQ_PAGES 24				/* pages sampled from a larger Parquet file */
#define EST_BYTE_WINDOW (512u << 10)
#define EST_WINDOW_BYTES (64u << 10)	/* rows sampled per window, at most (but one row) */

/* Rows sampled from the derived side: one buffer per window. */
typedef struct sample
{
	sp_buf		win[DS_WINDOWS];
	sp_buf		lens[DS_WINDOWS];	/* u32 length of each row in win */
	double		frac[DS_WINDOWS];	/* where the window starts, as a share of row bytes */
	uint64_t	bytes;				/* row-file bytes */
	uint64_t	nrows;
} sample;

/* Cut up to want rows starting in [off, end) of file fi into b. */
static sp_status
sample_window(dsenc *e, size_t fi, uint64_t off, uint64_t end, uint64_t want, sp_buf *b,
			  sp_buf *lens, uint64_t *got)
{
	sp_ctx	   *ctx = e->ctx;
	uint64_t	size = e->der->f[fi].size;
	uint64_t	start = size <= EST_EXACT_FILE ? 0 : off;
	sp_rowscan	sc = {.fmt = (sp_rowfmt) e->dfmt[fi]};
	size_t		n = (size_t) SP_MIN((uint64_t) DS_BUF, size - start),
				cur = 0;

	*got = 0;
	if (sp_fileset_read(ctx, e->der, fi, start, e->buf, n) != SP_OK)
		return ctx->err.code;
	if (start > 0)
	{
		/* a guess at a row start: after the next newline */
		const uint8_t *nl = memchr(e->buf, '\n', n);

		cur = nl ? (size_t) (nl - e->buf) + 1 : n;
		sc.phase = 1;
	}
	while (*got < want && b->n < EST_WINDOW_BYTES)
	{
		long		L = sp_row_next(&sc, e->buf + cur, n - cur, start + n == size);

		if (L <= 0 || start + cur >= end)
			break;
		if (start + cur >= off)
		{
			if (*got > 0 && b->n + (size_t) L > EST_WINDOW_BYTES)
				break;
			uint32_t	l32 = (uint32_t) L;

			if (sp_buf_put(ctx, b, e->buf + cur, (size_t) L) != SP_OK ||
				sp_buf_put(ctx, lens, &l32, sizeof(l32)) != SP_OK)
				return SP_ERR_NOMEM;
			(*got)++;
		}
		cur += (size_t) L;
	}
	return SP_OK;
}

/* Sample sample_rows rows from DS_WINDOWS windows spread over the row files. */
static sp_status
take_sample(dsenc *e, int sample_rows, sample *sm)
{
	int			nw = SP_MIN(sample_rows, DS_WINDOWS);

	for (size_t i = 0; i < e->der->n; i++)
		if (e->dfmt[i] != SP_ROWS_NONE)
			sm->bytes += e->der->f[i].size;
	for (int w = 0; w < nw && sm->bytes > 0; w++)
	{
		uint64_t	at = sm->bytes / (uint64_t) nw * (uint64_t) w,
					want = (uint64_t) (sample_rows / nw + (w < sample_rows % nw)),
					got;
		size_t		fi = 0;

		sm->frac[w] = (double) at / (double) sm->bytes;
		for (; fi < e->der->n; fi++)
		{
			if (e->dfmt[fi] == SP_ROWS_NONE)
				continue;
			if (at < e->der->f[fi].size)
				break;
			at -= e->der->f[fi].size;
		}
		if (fi == e->der->n)
			break;
		/* windows do not overlap: each ends where the next begins */
		if (sample_window(e, fi, at, at + sm->bytes / (uint64_t) nw, want, &sm->win[w],
						  &sm->lens[w], &got) != SP_OK)
			return e->ctx->err.code;
		sm->nrows += got;
	}
	return SP_OK;
}

/* Sorted tags of every sampled row (the parent scan keeps only those). */
static sp_status
sample_tags(dsenc *e, sample *sm, uint32_t **tags, size_t *n)
{
	*n = 0;
	if ((*tags = sp_alloc(e->ctx, (size_t) (sm->nrows ? sm->nrows : 1) * sizeof(uint32_t))) == NULL)
		return SP_ERR_NOMEM;
	for (int w = 0; w < DS_WINDOWS; w++)
	{
		const uint32_t *len = (const uint32_t *) sm->lens[w].p;
		size_t		cur = 0;

		for (size_t r = 0; r < sm->lens[w].n / sizeof(uint32_t) && *n < sm->nrows; r++)
		{
			(*tags)[(*n)++] = sp_row_tag(XXH3_64bits(sm->win[w].p + cur, len[r]));
			cur += len[r];
		}
	}
	for (size_t i = 1; i < *n; i++)		/* insertion sort: at most sample_rows tags */
		for (size_t j = i; j > 0 && (*tags)[j - 1] > (*tags)[j]; j--)
		{
			uint32_t	t = (*tags)[j];

			(*tags)[j] = (*tags)[j - 1];
			(*tags)[j - 1] = t;
		}
	return SP_OK;
}

/*
 * The parent row within DS_ALIGN_SPAN rows of guess that leaves the fewest
 * changed bytes in derived row (row, len), or guess: when every row of a
 * window was edited, the row at the same share of the bytes can be a few
 * rows off, and each literal would then be coded against the wrong row.
 */
static int64_t
nearest_ref(dsenc *e, const uint8_t *row, size_t len, int64_t guess)
{
	size_t		nd = sp_row_fields(e->fmt, row, len, e->dfe, SP_FIELDS_MAX),
				best_c = len;
	int64_t		best = guess,
				hi = SP_MIN(guess + DS_ALIGN_SPAN, (int64_t) e->rs.nrows - 1);

	for (int64_t r = SP_MAX(guess - DS_ALIGN_SPAN, (int64_t) 0); r <= hi; r++)
	{
		size_t		rl = fetch_row(e, r, e->ref),
					pc = 0,
					c;
		bool		text = false;

		if (rl == SIZE_MAX)
			continue;
		c = changed_bytes(e, row, nd, e->ref, rl, &pc, &text);
		if (c < best_c)
			best_c = c, best = r;
	}
	return best;
}

/*
 * The parent row before a window's first row, as compress would have it:
 * from the first window row found in the parent, else the row nearest the
 * one at the same share of the bytes.
 */
static int64_t
align_window(dsenc *e, sample *sm, int w)
{
	const uint32_t *len = (const uint32_t *) sm->lens[w].p;
	size_t		cur = 0,
				lo = 0,
				hi;
	uint64_t	target;

	for (size_t r = 0; r < sm->lens[w].n / sizeof(uint32_t); r++)
	{
		int64_t		m = sp_rowspace_find(e->ctx, &e->rs, sm->win[w].p + cur, len[r],
										 XXH3_64bits(sm->win[w].p + cur, len[r]));

		if (m >= 0)
			return SP_MAX(m - (int64_t) r - 1, (int64_t) -1);
		cur += len[r];
	}
	if (e->rs.nrows == 0)
		return -1;
	target = (uint64_t) (sm->frac[w] * (double) e->rs.off[e->rs.nrows]);
	hi = (size_t) e->rs.nrows;
	while (hi - lo > 1)
	{
		size_t		mid = (lo + hi) / 2;

		if (e->rs.off[mid] <= target)
			lo = mid;
		else
			hi = mid;
	}
	if (sm->lens[w].n == 0)
		return (int64_t) lo - 1;
	return nearest_ref(e, sm->win[w].p, len[0], (int64_t) lo) - 1;
}

/* The collected numeric variant at the real level, if smaller than *best. */
static sp_status
estimate_numeric(dsenc *e, const sp_rowslay *l, const sp_rows_chunk *c, size_t *best)
{
	size_t		pn = 0;

	if (reserve_payload(e, payload_bound(l, c)) != SP_OK)
		return SP_ERR_NOMEM;
	if (compress_variant(e->ctx, &e->codec, l, c, lit_level(e->level), e->pay, &pn) != SP_OK)
		return e->ctx->err.code;
	*best = SP_MIN(*best, pn);
	return SP_OK;
}

/*
 * Code the windows' streams together, as one chunk of the real delta holds
 * many rows: coding each window alone would overstate what text costs.
 */
static sp_status
code_collected(dsenc *e)
{
	sp_rowslay	l[DS_NVAR] = {{0}};
	sp_rows_chunk c[DS_NVAR] = {{0}};
	size_t		p[DS_NVAR] = {0},
				r = 0,
				best;
	int			w;

	for (int i = 0; i < DS_NVAR; i++)
	{
		/* the collected streams, seen as one laid-out chunk per variant */
		l[i].data = e->est_data[i];
		l[i].dtotal = e->est_data[i].n;
		l[i].prefix = e->est_prefix[i];
		l[i].ptotal = e->est_prefix[i].n;
		c[i].ctl = e->est_ctl[i].p;
		c[i].ctl_n = e->est_ctl[i].n;
	}
	if (reserve_payload(e, payload_bound(&l[0], &c[0])) != SP_OK ||
		sp_reserve(e->ctx, &e->pay2, &e->pay2_cap, payload_bound(&l[1], &c[1])) != SP_OK)
		return SP_ERR_NOMEM;
	if (compress_both(e, DS_PROBE_LEVEL, &l[0], &c[0], &l[1], &c[1], &p[0], &p[1]) != SP_OK)
		return e->ctx->err.code;
	/* as compress: the probe's winner (and the interleaved variant) at the real level */
	w = p[1] < p[0];
	if (w == 1)
		swap_pay(e);			/* e->pay is the buffer sized for variant w */
	best = p[w];
	if (lit_level(e->level) > DS_PROBE_LEVEL && !e->est_inter &&
		compress_variant(e->ctx, &e->codec, &l[w], &c[w], lit_level(e->level), e->pay,
						 &best) != SP_OK)
		return e->ctx->err.code;
	if (lit_level(e->level) > DS_PROBE_LEVEL && e->est_inter)
	{
		if (sp_reserve(e->ctx, &e->pay2, &e->pay2_cap, payload_bound(&l[2], &c[2])) != SP_OK)
			return SP_ERR_NOMEM;
		if (compress_both(e, lit_level(e->level), &l[w], &c[w], &l[2], &c[2], &p[w], &p[2]) != SP_OK)
			return e->ctx->err.code;
		best = SP_MIN(p[w], p[2]);
	}
	if (e->est_num && estimate_numeric(e, &l[VAR_NUM], &c[VAR_NUM], &best) != SP_OK)
		return e->ctx->err.code;
	if (e->est_shared * DS_STANDALONE_SHARE < e->est_raw.n &&
		standalone_size(e, e->est_raw.p, e->est_raw.n, best, &r) != SP_OK)
		return e->ctx->err.code;
	e->coded += r > 0 ? r : best;
	return SP_OK;
}

/* Code each window as compress would; the bytes they took go to e->coded. */
static sp_status
code_windows(dsenc *e, sample *sm)
{
	for (int w = 0; w < DS_WINDOWS; w++)
	{
		const uint32_t *len = (const uint32_t *) sm->lens[w].p;
		size_t		cur = 0;

		if (sm->win[w].n == 0)
			continue;
		e->prev = e->prev0 = align_window(e, sm, w);
		for (size_t r = 0; r < sm->lens[w].n / sizeof(uint32_t); r++)
		{
			if (add_row(e, e->fmt, sm->win[w].p + cur, len[r]) != SP_OK)
				return e->ctx->err.code;
			cur += len[r];
		}
		if (flush_chunk(e, e->fmt) != SP_OK)
			return e->ctx->err.code;
	}
	return code_collected(e);
}

/*
 * A large Parquet file (pages dp[0..nd)): EST_PQ_PAGES pages spread over it,
 * each coded as compress codes it (expanded against the parent's pages
 * when it round-trips, else as bytes), extrapolated by stored page bytes;
 * the bytes between pages (headers, footer) count as they are.
 */
static sp_status
estimate_parquet(dsenc *e, size_t fi, long partner, const sp_pq_page *dp, size_t nd,
				 double *coded)
{
	sp_pq_page *bp = NULL;
	size_t		nb = 0,
				last = SIZE_MAX;
	uint64_t	pages = 0,
				sampled = 0,
				before = e->coded;
	sp_status	rc = SP_OK;

	if (partner >= 0 && (rc = sp_parquet_pages(e->ctx, e->base, (size_t) partner, &bp, &nb)) != SP_OK)
		return rc;
	e->cur_file = fi;
	e->pq_zlevel = 0;
	e->pq_zfail = false;
	for (size_t k = 0; k < nd; k++)
		pages += dp[k].clen;
	for (size_t s = 0; s < EST_PQ_PAGES && rc == SP_OK && (rc = pq_buffers(e)) == SP_OK; s++)
	{
		size_t		k = nd * s / EST_PQ_PAGES;
		bool		done = false;

		if (k == last || dp[k].clen == 0 || dp[k].clen > SP_PQ_PAGE_MAX ||
			dp[k].ulen > SP_PQ_PAGE_MAX)
			continue;
		last = k;
		if ((rc = read_derived(e, fi, dp[k].off, e->buf, dp[k].clen)) == SP_OK &&
			(rc = pq_page(e, partner, &dp[k], bp, nb, k, &done)) == SP_OK && !done)
			rc = code_buffer(e, partner, dp[k].off, dp[k].clen, DS_PQ_WINDOW);
		sampled += dp[k].clen;
	}
	sp_free(e->ctx, bp);
	*coded = sampled ? (double) (e->coded - before) * (double) pages / (double) sampled : 0;
	*coded += (double) (e->der->f[fi].size - pages);
	return rc;
}

/* Code a file without rows: whole when small, else sampled pages or windows; returns bytes. */
static sp_status
estimate_bytes(dsenc *e, size_t fi, double *coded)
{
	uint64_t	size = e->der->f[fi].size,
				before = e->coded;
	long		partner = partner_of(e, fi);
	sp_pq_page *dp = NULL;
	size_t		nd = 0;
	sp_status	rc;

	if (size <= EST_EXACT_BYTES)
	{
		if (code_bytes(e, fi, partner) != SP_OK)
			return e->ctx->err.code;
		*coded = (double) (e->coded - before);
		return SP_OK;
	}
	if ((rc = sp_parquet_pages(e->ctx, e->der, fi, &dp, &nd)) != SP_OK)
		return rc;
	e->saw_parquet |= nd > 0;
	rc = nd > 0 ? estimate_parquet(e, fi, partner, dp, nd, coded) : SP_OK;
	sp_free(e->ctx, dp);
	if (rc != SP_OK || nd > 0)
		return rc;
	/* sampled: windows of the same chunk coder, at spread offsets */
	for (int w = 0; w < DS_WINDOWS; w++)
	{
		uint64_t	off = size / DS_WINDOWS * (uint64_t) w;
		sp_chunk_hdr h = {SP_CHUNK_ZSTD, 0, 0, 0, SP_NO_BASE, EST_BYTE_WINDOW, 0, 0, 0};
		size_t		used;
		uint8_t    *pre = e->buf + SP_ZSTD_CHUNK;

		if (sp_fileset_read(e->ctx, e->der, fi, off, e->buf, EST_BYTE_WINDOW) != SP_OK)
			return e->ctx->err.code;
		if (partner >= 0)
		{
			sp_prefix_window(off, e->base->f[partner].size, &h.base_off, &h.base_len);
			h.base_len = SP_MIN(h.base_len, (uint64_t) (DS_BUF - SP_ZSTD_CHUNK));
			if (sp_fileset_read(e->ctx, e->base, (size_t) partner, h.base_off, pre,
								(size_t) h.base_len) != SP_OK)
				return e->ctx->err.code;
		}
		if (reserve_payload(e, SP_CHUNK_HDR + sp_codec_bound(EST_BYTE_WINDOW)) != SP_OK ||
			sp_codec_encode_zstd(e->ctx, &e->codec, lit_level(e->level), e->buf,
								 EST_BYTE_WINDOW, pre, (size_t) h.base_len,
								 e->pay + SP_CHUNK_HDR, sp_codec_bound(EST_BYTE_WINDOW),
								 &used) != SP_OK)
			return e->ctx->err.code;
		e->coded += SP_REC_HDR + SP_CHUNK_HDR + used + SP_REC_SUM;
	}
	*coded = (double) (e->coded - before) * (double) size / (double) (DS_WINDOWS * EST_BYTE_WINDOW);
	return SP_OK;
}

/* Bytes of the records around the chunks: header, BASES, FILEs, FILE_ENDs, END. */
static uint64_t
fixed_overhead(dsenc *e)
{
	uint64_t	n = SP_HEADER_LEN + 4 + 2 * (SP_REC_HDR + SP_REC_SUM) + 80 + 8 + 4 * e->rs.nfiles;

	for (size_t i = 0; i < e->base->n; i++)
		if (e->slot[i] != SP_NO_BASE)
			n += SP_BASE_ENTRY(SP_FLAG_BASEFP) + strlen(e->base->f[i].rel);
	for (size_t i = 0; i < e->der->n; i++)
		n += 2 * (SP_REC_HDR + SP_REC_SUM) + 14 + strlen(e->der->f[i].rel) + 48;
	return n;
}

/* Name of the derived side's format. */
static void
format_name(dsenc *e, char *out, size_t cap)
{
	size_t		rows = 0;

	for (size_t i = 0; i < e->der->n; i++)
		rows += e->dfmt[i] != SP_ROWS_NONE;
	snprintf(out, cap, "%s", rows == e->der->n && rows > 0 ? sp_rowfmt_name(e->fmt)
			 : rows > 0 ? "mixed" : e->saw_parquet ? "parquet" : "binary");
}

/* Sample, index what the sample needs, code it, extrapolate. */
static sp_status
estimate_dataset(dsenc *e, int sample_rows, sp_dataset_est *out)
{
	sp_ctx	   *ctx = e->ctx;
	sample		sm = {0};
	uint32_t   *tags = NULL;
	size_t		ntags = 0,
			   *idx = NULL,
				n = 0;
	double		rows_est = 0,
				bytes_est = 0;
	sp_status	rc;

	for (size_t i = 0; i < e->base->n; i++)
		e->slot[i] = SP_NO_BASE;
	rc = classify(e, EST_CHECK_MAX);
	if (rc == SP_OK)
		rc = take_sample(e, sample_rows, &sm);
	if (rc == SP_OK)
		rc = sample_tags(e, &sm, &tags, &ntags);
	if (rc == SP_OK && (idx = sp_alloc(ctx, (e->base->n ? e->base->n : 1) * sizeof(size_t))) == NULL)
		rc = SP_ERR_NOMEM;
	if (rc == SP_OK)
		rc = parent_files(e, idx, &n);
	if (rc == SP_OK)
		rc = sp_rowspace_build(ctx, &e->rs, e->base, e->fmt, idx, e->fmt ? n : 0, true, tags, ntags);
	if (rc == SP_OK)
	{
		plan_bases(e);
		e->estimating = true;
		rc = code_windows(e, &sm);
		e->estimating = false;
	}
	if (rc == SP_OK && sm.nrows > 0)
	{
		uint64_t	sampled = 0;

		for (int w = 0; w < DS_WINDOWS; w++)
			sampled += sm.win[w].n;
		rows_est = (double) e->coded * (double) sm.bytes / (double) SP_MAX(sampled, (uint64_t) 1);
	}
	for (size_t i = 0; i < e->der->n && rc == SP_OK; i++)
	{
		double		c = 0;

		if (e->dfmt[i] == SP_ROWS_NONE && (rc = estimate_bytes(e, i, &c)) == SP_OK)
			bytes_est += c;
	}
	if (rc == SP_OK)
	{
		out->base_bytes = 0;
		for (size_t i = 0; i < e->base->n; i++)
			out->base_bytes += e->base->f[i].size;
		out->derived_bytes = e->total;
		out->rows_sampled = e->rows_total;
		out->rows_shared_pct = e->rows_total ? 100.0 * (double) e->rows_shared / (double) e->rows_total : 0;
		out->est_delta_bytes = (uint64_t) (rows_est + bytes_est) + fixed_overhead(e);
		out->savings_pct = e->total ? 100.0 * (1.0 - (double) out->est_delta_bytes / (double) e->total) : 0;
		format_name(e, out->format, sizeof(out->format));
	}
	for (int w = 0; w < DS_WINDOWS; w++)
	{
		sp_buf_free(ctx, &sm.win[w]);
		sp_buf_free(ctx, &sm.lens[w]);
	}
	sp_free(ctx, tags);
	sp_free(ctx, idx);
	return rc;
}

/* Estimate the delta of a derived dataset against its parent. */
sp_status
sp_dataset_estimate(sp_ctx *ctx, const char *base, const char *derived, int sample_rows,
					sp_dataset_est *out)
{
	double		t0 = sp_now_ms();
	sp_fileset	bfs = {.fd = -1},
				dfs = {.fd = -1};
	dsenc		e = {0};
	sp_status	rc;

	sp_clear_error(ctx);
	memset(out, 0, sizeof(*out));
	if (sample_rows < 1 || sample_rows > 10000000)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "sample_rows %d is out of range (1 to 10000000)",
					   sample_rows);
	if ((rc = sp_fileset_open(ctx, base, &bfs)) == SP_OK &&
		(rc = sp_fileset_open(ctx, derived, &dfs)) == SP_OK &&
		(rc = dsenc_init(ctx, &e, &bfs, &dfs, SP_LEVEL_DEFAULT)) == SP_OK)
		rc = estimate_dataset(&e, sample_rows, out);
	out->elapsed_ms = sp_now_ms() - t0;
	dsenc_free(&e);
	sp_fileset_close(ctx, &dfs);
	sp_fileset_close(ctx, &bfs);
	return rc;
}
