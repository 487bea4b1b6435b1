/*
 * rows.h -- row and field scanners for dataset files (internal).
 *
 * A row format cuts a file into rows that tile it exactly (every byte
 * belongs to one row, in order), and a row into fields that tile the row.
 * Nothing is unescaped or validated beyond what finding the boundaries
 * needs, so any bytes round-trip; input a format cannot cut (an unbalanced
 * CSV quote, a JSON array that does not close, a row over SP_ROW_MAX) is
 * reported as malformed and the caller codes that file another way.
 *
 *   lines       a row ends after '\n' (the last one may lack it)
 *   csv, tsv    as lines, but a '\n' inside double quotes (RFC 4180) does
 *               not end a row; fields end after each ',' or '\t' outside
 *               quotes
 *   jsonl       as lines; a row holding one JSON object is cut into
 *               fields: text between values ("{\"k\": ", ", \"k2\": ", "}\n")
 *               and the top-level member values
 *   json-array  row 0 is the text up to the first element; each element
 *               row runs from its first byte to the next element's first
 *               byte (so it holds its ",\n  "); the last row is "]" and what
 *               follows; elements that are objects are cut as for jsonl
 *
 * The decoder cuts parent files with the same code, so these rules are
 * part of the delta format (docs/FORMAT.md).
 */
#ifndef SPARSE_ROWS_H
#define SPARSE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_ROW_MAX (4u << 20)		/* longest row a format accepts */
#define SP_FIELDS_MAX 4096			/* rows with more fields count as one field */
#define SP_JSON_DEPTH_MAX 512		/* deepest JSON nesting a scanner follows */

typedef enum sp_rowfmt
{
	SP_ROWS_NONE = 0,			/* not a row format: coded as bytes */
	SP_ROWS_LINES = 1,
	SP_ROWS_CSV = 2,
	SP_ROWS_TSV = 3,
	SP_ROWS_JSONL = 4,
	SP_ROWS_JSON_ARRAY = 5,
	SP_ROWS_COUNT
} sp_rowfmt;

/* "lines", "csv", "tsv", "jsonl", "json-array", or "binary" for NONE. */
const char *sp_rowfmt_name(sp_rowfmt f);

/*
 * The row format of a file, from its name's extension and its first bytes
 * (head, n bytes; n may be less than the file).  Parquet and files with a
 * NUL byte in head are NONE.
 */
sp_rowfmt	sp_rowfmt_guess(const char *name, const uint8_t *head, size_t n);

/* Streaming row cutter; zero it, then set fmt. */
typedef struct sp_rowscan
{
	sp_rowfmt	fmt;
	int			phase;			/* json-array: 0 preamble, 1 elements, 2 trailer, 3 done */
	uint64_t	rows;			/* rows returned so far */
	const char *why;			/* set when malformed */
} sp_rowscan;

/*
 * Length of the row that starts at p (n bytes available).  Returns > 0: the
 * row's length; 0: no complete row yet (only when !eof; call again with
 * more bytes from the same p), or, when eof and n == 0, the end; -1: the
 * input is malformed for this format (s->why says why).  Rows longer than
 * SP_ROW_MAX are malformed.
 */
long		sp_row_next(sp_rowscan *s, const uint8_t *p, size_t n, bool eof);

/*
 * Cut a row into fields: ends[i] is the offset just past field i.  Returns
 * the field count (at least 1; a row with more than max fields, or one the
 * format cannot cut, is one field).
 */
size_t		sp_row_fields(sp_rowfmt f, const uint8_t *row, size_t n, uint32_t *ends, size_t max);

#endif							/* SPARSE_ROWS_H */
