/*
 * fuzz_rows.h -- what the row-scanner fuzz targets share (fuzz_rows_*.c).
 *
 * fr_scan cuts the input with sp_row_next twice and aborts (fr_die) if the
 * promises of common/rows.h do not hold:
 *
 *   - whole: the input in one window with eof true.  Each row is 1..
 *     SP_ROW_MAX bytes and fits in what is left; 0 comes only at the end
 *     (rows then tile the input exactly: their lengths sum to its size);
 *     -1 leaves a reason and stays -1 on the next call; s.rows counts rows;
 *   - streaming: the window grows by random steps (drawn from a generator
 *     seeded by the input, so a crash reproduces) with eof false until it
 *     holds the whole input; whenever the scanner returns 0 it is called
 *     again from the same row start.  Rows and the ending (end, or -1 and
 *     the same reason) must equal the whole scan's.  Each window is copied
 *     to the end of a buffer of exactly the input's size, so reading past
 *     p + n hits ASan's redzone.
 *
 * fr_check_fields cuts a row with sp_row_fields with max SP_FIELDS_MAX and
 * with a small max: 1 <= count <= max, ends strictly increasing, the last
 * equal to the row length, nothing written at or past max, and the format's
 * own rules (csv/tsv: fields end exactly after the delimiters outside
 * quotes, and the count is what they make when it fits in max, else 1;
 * JSON objects: an odd count, values start with a byte that can start one;
 * other formats: one field).
 */
#ifndef SPARSE_FUZZ_ROWS_H
#define SPARSE_FUZZ_ROWS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"

#define FR_UNUSED __attribute__((unused))
#define FR_GUARD 0xFEEDFACEu

/* How one scan ended: the row lengths, then 0 (end) or -1 (why). */
typedef struct fr_result
{
	size_t		n_rows;
	uint32_t   *len;			/* n_rows lengths (malloc'ed, input size + 1) */
	long		last;
	const char *why;
} fr_result;

/* Abort with a message: a promise of rows.h does not hold. */
static FR_UNUSED void
fr_die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "fuzz: invariant violated: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* xorshift64 step (state never 0). */
static FR_UNUSED uint64_t
fr_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* FNV-1a of the input: the seed of the split points. */
static FR_UNUSED uint64_t
fr_seed(const uint8_t *data, size_t size)
{
	uint64_t	h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h != 0 ? h : 1;
}

/* Count of '"' in [p, p + n). */
static FR_UNUSED size_t
fr_quotes(const uint8_t *p, size_t n)
{
	size_t		q = 0;

	for (size_t i = 0; i < n; i++)
		q += p[i] == '"';
	return q;
}

/*
 * Format rules of csv/tsv fields: each delimiter outside quotes ends a field
 * and nothing else does, so the count is known: that many fields when it is
 * at most max, else one.
 */
static FR_UNUSED void
fr_check_csv_fields(sp_rowfmt f, const uint8_t *row, size_t n, const uint32_t *ends,
					size_t k, size_t max)
{
	uint8_t		delim = f == SP_ROWS_CSV ? ',' : '\t';
	size_t		cuts = 0,
				last_cut = 0,
				need;
	bool		quoted = false;

	for (size_t j = 0; j < n; j++)
	{
		if (row[j] == '"')
			quoted = !quoted;
		else if (row[j] == delim && !quoted)
		{
			if (k > 1 && (cuts >= k || ends[cuts] != j + 1))
				fr_die("%s: field %zu does not end after the delimiter at %zu",
					   sp_rowfmt_name(f), cuts, j);
			cuts++;
			last_cut = j + 1;
		}
	}
	/* a row ending with a delimiter has no empty field after it */
	need = cuts > 0 && last_cut == n ? cuts : cuts + 1;
	if (k != (need <= max ? need : 1))
		fr_die("%s: %zu fields, expected %zu (max %zu)", sp_rowfmt_name(f), k,
			   need <= max ? need : 1, max);
}

/* Format rules of JSON object fields: skeleton/value alternate. */
static FR_UNUSED void
fr_check_json_fields(const uint8_t *row, size_t n, const uint32_t *ends, size_t k)
{
	size_t		i = 0;

	if (k == 1)
		return;
	if (k % 2 == 0 || k < 3)
		fr_die("json object cut into %zu fields (must be odd, >= 3)", k);
	while (row[i] == ' ' || row[i] == '\t')
		i++;
	if (row[i] != '{')
		fr_die("json row cut into fields does not start with '{'");
	for (size_t v = 1; v < k; v += 2)
	{
		uint8_t		c = row[ends[v - 1]];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ':' ||
			c == '}' || c == ']')
			fr_die("json value field %zu starts with '%c'", v, c);
		if (row[ends[v - 1] - 1] == '\\')
			fr_die("json value field %zu starts after a backslash", v);
	}
	(void) n;
}

/* Cut a row into fields with max and check every promise. */
static FR_UNUSED void
fr_check_fields_max(sp_rowfmt f, const uint8_t *row, size_t n, size_t max)
{
	static uint32_t ends[SP_FIELDS_MAX + 4];
	size_t		k;

	for (size_t i = max; i < max + 4; i++)
		ends[i] = FR_GUARD;
	k = sp_row_fields(f, row, n, ends, max);
	if (k < 1 || k > max)
		fr_die("%s: %zu fields with max %zu", sp_rowfmt_name(f), k, max);
	for (size_t i = max; i < max + 4; i++)
		if (ends[i] != FR_GUARD)
			fr_die("%s: ends[%zu] written with max %zu", sp_rowfmt_name(f), i, max);
	for (size_t i = 0; i < k; i++)
		if (ends[i] == 0 || (i > 0 && ends[i] <= ends[i - 1]))
			fr_die("%s: field ends not strictly increasing at %zu", sp_rowfmt_name(f), i);
	if (ends[k - 1] != n)
		fr_die("%s: last field ends at %u, row is %zu bytes", sp_rowfmt_name(f),
			   ends[k - 1], n);
	if (f == SP_ROWS_CSV || f == SP_ROWS_TSV)
		fr_check_csv_fields(f, row, n, ends, k, max);
	else if (f == SP_ROWS_JSONL || f == SP_ROWS_JSON_ARRAY)
		fr_check_json_fields(row, n, ends, k);
	else if (k != 1)
		fr_die("%s row cut into %zu fields", sp_rowfmt_name(f), k);
}

/* Fields with the largest max and with a small one picked by the row. */
static FR_UNUSED void
fr_check_fields(sp_rowfmt f, const uint8_t *row, size_t n)
{
	fr_check_fields_max(f, row, n, SP_FIELDS_MAX);
	fr_check_fields_max(f, row, n, 1 + row[n / 2] % 8);
}

/* Note a row of the scan, checking its length against what is left. */
static FR_UNUSED void
fr_add_row(fr_result *r, const sp_rowscan *s, long got, size_t left)
{
	if (got > (long) SP_ROW_MAX || (size_t) got > left)
		fr_die("%s row of %ld bytes (%zu left)", sp_rowfmt_name(s->fmt), got, left);
	r->len[r->n_rows++] = (uint32_t) got;
	if (s->rows != r->n_rows)
		fr_die("%s: s.rows %llu after %zu rows", sp_rowfmt_name(s->fmt),
			   (unsigned long long) s->rows, r->n_rows);
}

/* Check how a scan ended; pos is where its last row ended. */
static FR_UNUSED void
fr_end(fr_result *r, sp_rowscan *s, long got, size_t pos, size_t size)
{
	r->last = got;
	r->why = s->why;
	if (got == 0 && (pos != size || s->why != NULL))
		fr_die("%s: end at %zu of %zu bytes", sp_rowfmt_name(s->fmt), pos, size);
	if (got == -1 && (s->why == NULL || s->why[0] == '\0'))
		fr_die("%s: malformed without a reason", sp_rowfmt_name(s->fmt));
	if (got == -1 && sp_row_next(s, (const uint8_t *) "\n", 1, true) != -1)
		fr_die("%s: malformed did not stay malformed", sp_rowfmt_name(s->fmt));
	if (got < -1)
		fr_die("%s: returned %ld", sp_rowfmt_name(s->fmt), got);
}

/* Scan the whole input at eof; check rows and fields. */
static FR_UNUSED void
fr_scan_whole(sp_rowfmt f, const uint8_t *data, size_t size, fr_result *r)
{
	sp_rowscan	s = {.fmt = f};
	size_t		pos = 0;
	long		got;

	while ((got = sp_row_next(&s, data + pos, size - pos, true)) > 0)
	{
		fr_add_row(r, &s, got, size - pos);
		fr_check_fields(f, data + pos, (size_t) got);
		pos += (size_t) got;
	}
	if (got == 0 && pos < size)
		fr_die("%s: 0 at eof with %zu bytes left", sp_rowfmt_name(f), size - pos);
	fr_end(r, &s, got, pos, size);
}

/* Next window end: a step of 1 byte up to a few KiB, at most size. */
static FR_UNUSED size_t
fr_next_avail(uint64_t *rng, size_t avail, size_t size)
{
	uint64_t	x = fr_rand(rng);
	size_t		step = 1 + (size_t) ((x >> 8) % ((uint64_t) 1 << (x % 13)));

	return step < size - avail ? avail + step : size;
}

/* Scan the input through growing windows, each at the end of buf. */
static FR_UNUSED void
fr_scan_stream(sp_rowfmt f, const uint8_t *data, size_t size, uint8_t *buf,
			   fr_result *r)
{
	sp_rowscan	s = {.fmt = f};
	uint64_t	rng = fr_seed(data, size);
	size_t		pos = 0,
				avail = fr_next_avail(&rng, 0, size);
	long		got;

	for (;;)
	{
		size_t		w = avail - pos;

		memcpy(buf + size - w, data + pos, w);
		got = sp_row_next(&s, buf + size - w, w, avail == size);
		if (got == 0 && avail < size)
		{
			avail = fr_next_avail(&rng, avail, size);
			continue;
		}
		if (got <= 0)
			break;
		if ((size_t) got > w)
			fr_die("%s: row of %ld bytes in a window of %zu", sp_rowfmt_name(f), got, w);
		fr_add_row(r, &s, got, size - pos);
		pos += (size_t) got;
	}
	fr_end(r, &s, got, pos, size);
}

/* Abort unless two scans gave the same rows and ending. */
static FR_UNUSED void
fr_same(const char *what, const fr_result *a, const fr_result *b)
{
	if (a->n_rows != b->n_rows || a->last != b->last ||
		memcmp(a->len, b->len, a->n_rows * sizeof(a->len[0])) != 0)
		fr_die("%s: %zu rows ending %ld vs %zu rows ending %ld", what, a->n_rows,
			   a->last, b->n_rows, b->last);
	if ((a->why == NULL) != (b->why == NULL) ||
		(a->why != NULL && strcmp(a->why, b->why) != 0))
		fr_die("%s: reasons differ: %s vs %s", what, a->why ? a->why : "none",
			   b->why ? b->why : "none");
}

/* Scan whole and streaming, check both and that they agree; fill whole. */
static FR_UNUSED void
fr_scan(sp_rowfmt f, const uint8_t *data, size_t size, fr_result *whole)
{
	fr_result	stream = {0};
	uint8_t    *buf = malloc(size ? size : 1);

	whole->len = malloc((size + 1) * sizeof(uint32_t));
	stream.len = malloc((size + 1) * sizeof(uint32_t));
	whole->n_rows = 0;
	if (buf == NULL || whole->len == NULL || stream.len == NULL)
		abort();
	fr_scan_whole(f, data, size, whole);
	fr_scan_stream(f, data, size, buf, &stream);
	fr_same(sp_rowfmt_name(f), whole, &stream);
	free(stream.len);
	free(buf);
}

#endif							/* SPARSE_FUZZ_ROWS_H */
