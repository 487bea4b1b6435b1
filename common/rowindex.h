/*
 * rowindex.h -- the parent side of dataset deltas (internal).
 *
 * A row space is a list of parent files cut into rows with one row format
 * (rows.h), numbered from 0 across the files in order.  Encoder and decoder
 * both build its row-start table (8 bytes per row); the encoder adds a hash
 * table of row tags to find derived rows in it (about 11 more bytes per
 * row).  Rows are read back through a small cache, since matches come in
 * runs.  The ROWS chunk (docs/FORMAT.md) is decoded here too, so the code
 * that lays out literal rows is shared by both sides.
 */
#ifndef SPARSE_ROWINDEX_H
#define SPARSE_ROWINDEX_H

#include "codec.h"
#include "files.h"
#include "rows.h"
#include "util.h"

#define SP_ROWS_CHUNK (4u << 20)	/* output bytes of one ROWS chunk, at most */
#define SP_ROWS_CTL_MAX (32u << 20) /* control bytes of one ROWS chunk, at most */
#define SP_ROWS_MAX_ROWS 0xFFFFFFF0u /* rows in one row space */
#define SP_ROWS_JUMPS 4096			/* scattered literal references per chunk (writer) */

/* Literal row selector bits (ctl stream). */
enum
{
	SP_REF_NONE = 0, SP_REF_NEXT = 1, SP_REF_SAME = 2, SP_REF_MASK = 3, SP_LIT_COLS = 4,
	SP_LIT_NUM_SHIFT = 3, SP_LIT_NUM = 3 << SP_LIT_NUM_SHIFT	/* numeric layout: SP_NUM_* */
};

/* One file of a row space. */
typedef struct sp_rsfile
{
	size_t		idx;			/* index in the file set */
	uint64_t	first_row;		/* its first row's number */
	uint64_t	vstart;			/* virtual offset of its first byte */
	uint64_t	size;
} sp_rsfile;

/* A parent row space. */
typedef struct sp_rowspace
{
	sp_rowfmt	fmt;
	sp_fileset *fs;
	sp_rsfile  *files;
	size_t		nfiles;
	uint64_t   *off;			/* nrows + 1 virtual row starts */
	size_t		off_cap;
	uint64_t	nrows;
	uint64_t	total;			/* bytes of the files being cut (sizes the arrays) */
	uint64_t	*slot;			/* hash table: tag << 32 | row, or empty (encoder only) */
	uint64_t	nslots;
	uint8_t    *cache;			/* cached virtual bytes [cache_v, cache_v + cache_n) */
	uint64_t	cache_v;
	size_t		cache_n;
	uint8_t    *big;			/* rows longer than the cache */
	size_t		big_cap;
} sp_rowspace;

/*
 * Build a row space over files idx[0..n) of fs (cut with fmt).  With index,
 * rows are hashed into the lookup table; with want (nwant tags, for
 * the estimator) only rows whose tag is wanted are.
 */
sp_status	sp_rowspace_build(sp_ctx *ctx, sp_rowspace *rs, sp_fileset *fs, sp_rowfmt fmt,
							  const size_t *idx, size_t n, bool index,
							  const uint32_t *want, size_t nwant);

/* Tag of a row hash (what the table stores). */
static inline uint32_t
sp_row_tag(uint64_t h)
{
	return (uint32_t) (h >> 32);
}

void		sp_rowspace_free(sp_ctx *ctx, sp_rowspace *rs);

/* Length of row r. */
static inline uint64_t
sp_row_len(const sp_rowspace *rs, uint64_t r)
{
	return rs->off[r + 1] - rs->off[r];
}

/* Bytes of row r (valid until the next call on rs). */
const uint8_t *sp_rowspace_row(sp_ctx *ctx, sp_rowspace *rs, uint64_t r);

/* Copy rows [r, r+n) into out (their total length). */
sp_status	sp_rowspace_copy(sp_ctx *ctx, sp_rowspace *rs, uint64_t r, uint64_t n, uint8_t *out);

/* Find a parent row equal to row (len bytes, hash h); -1 if none. */
int64_t		sp_rowspace_find(sp_ctx *ctx, sp_rowspace *rs, const uint8_t *row, size_t len,
							 uint64_t h);

/* Is parent row r equal to these bytes? */
bool		sp_rowspace_equal(sp_ctx *ctx, sp_rowspace *rs, uint64_t r, const uint8_t *row,
							  size_t len);

/* Growable byte buffer. */
typedef struct sp_buf
{
	uint8_t    *p;
	size_t		n;
	size_t		cap;
} sp_buf;

sp_status	sp_buf_put(sp_ctx *ctx, sp_buf *b, const void *p, size_t n);
sp_status	sp_buf_varint(sp_ctx *ctx, sp_buf *b, uint64_t v);
void		sp_buf_free(sp_ctx *ctx, sp_buf *b);

/* Read a varint at *pos of p[0..n); false if malformed. */
bool		sp_get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v);

/* Passes of the walk over a ROWS chunk's control stream (rowindex.c). */
typedef enum sp_walk_pass
{
	SP_WALK_SIZES,				/* sum data and prefix bytes per column */
	SP_WALK_PREFIX,				/* lay out the prefix from parent rows */
	SP_WALK_FILL,				/* encoder: lay out the data from derived bytes */
	SP_WALK_EMIT				/* decoder: rebuild derived bytes from the data */
} sp_walk_pass;

#define SP_COL_RAW SP_FIELDS_MAX	/* column of whole (raw) literal rows */
#define SP_NCOLS (SP_FIELDS_MAX + 1)

/* Column layout of a chunk's literal rows (data and prefix, column-major). */
typedef struct sp_rowslay
{
	uint64_t   *dlen,
			   *plen,
			   *dcur,
			   *pcur;			/* SP_NCOLS each */
	uint64_t	dtotal,
				ptotal;
	uint32_t   *fends;			/* SP_FIELDS_MAX field ends of a parent row */
	uint32_t   *afends;			/* and of the derived row above (numeric layout) */
	sp_buf		data;
	sp_buf		prefix;
} sp_rowslay;

sp_status	sp_rowslay_init(sp_ctx *ctx, sp_rowslay *lay);
void		sp_rowslay_free(sp_ctx *ctx, sp_rowslay *lay);

/* Layouts of a ROWS chunk's literal data (the chunk header's dtype byte). */
enum
{
	SP_LAYOUT_COLUMNS = 0,		/* changed fields column by column, prefix the fields they replace */
	SP_LAYOUT_ROWS = 1,			/* changed fields in row order, prefix the whole reference rows */
	SP_LAYOUT_INTERLEAVED = 2,	/* as ROWS, each literal's reference row repeated before it */
	SP_LAYOUT_NUMERIC = 3		/* as COLUMNS, changed fields' numbers coded as differences */
};

/*
 * How the changed fields of a column-mode literal are stored in the numeric
 * layout (selector bits SP_LIT_NUM): as they are, or with their digit runs
 * coded against those of the same field of the reference row or of the row
 * above (the chunk's previous row).
 */
enum
{
	SP_NUM_AS_IS = 0, SP_NUM_REF = 1, SP_NUM_ABOVE = 2, SP_NUM_MODES = 3
};

/* Longest digit run coded as a difference (10^18 < 2^63). */
#define SP_NUM_DIGITS 18

/*
 * Code the digit runs of cell (n bytes) against those of ref (rn bytes), in
 * place: the i-th run of cell, x of d <= SP_NUM_DIGITS digits, becomes
 * (x - y) mod 10^d written with d digits (decode: (x + y) mod 10^d), where
 * y is ref's i-th run mod 10^d, or 0 when ref has fewer runs; longer runs
 * stay as they are.  Digits stay digits, so both sides find the runs at the
 * same places, lengths never change, and decoding restores any cell exactly.
 */
void		sp_num_code(uint8_t *cell, size_t n, const uint8_t *ref, size_t rn, bool decode);

/* What a pass over a ROWS chunk needs besides the parent. */
typedef struct sp_rows_chunk
{
	const uint8_t *ctl;			/* control stream */
	size_t		ctl_n;
	uint64_t	nrows;			/* derived rows in the chunk */
	int64_t		prev0;			/* parent row before the first, or -1 */
	int			layout;
	uint64_t	data_n;			/* bytes of literal data */
} sp_rows_chunk;

/*
 * One pass over a chunk's control stream.  bytes is the chunk's derived
 * bytes (FILL reads them, EMIT writes them); SIZES must run first, then
 * PREFIX, then FILL or EMIT.
 */
sp_status	sp_rows_walk(sp_ctx *ctx, sp_rowspace *rs, sp_rowslay *lay, sp_walk_pass pass,
						 const sp_rows_chunk *c, uint8_t *bytes, size_t nbytes);

/*
 * Decode a ROWS chunk payload into out (out_len bytes); c gives nrows,
 * prev0 and layout, and receives the rest.
 */
sp_status	sp_rows_decode(sp_ctx *ctx, sp_codec *codec, sp_rowspace *rs, sp_rowslay *lay,
						   const uint8_t *payload, size_t plen, sp_rows_chunk *c,
						   uint8_t *out, size_t out_len);

#endif							/* SPARSE_ROWINDEX_H */
