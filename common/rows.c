/*
 * rows.c -- row and field scanners for dataset files (see rows.h).
 *
 * How it works.  sp_row_next looks at most SP_ROW_MAX bytes ahead (one
 * more for json-array, whose rows end just before a byte that must be seen)
 * and decides from those bytes alone, so a call is O(row length) and
 * feeding a file in pieces (eof false until the last piece) gives the same
 * rows as feeding it whole:
 *
 *   lines, jsonl  memchr for '\n'.
 *   csv, tsv      memchr for '\n', then for '"' before it; a '"' toggles
 *                 the quoted state anywhere (RFC 4180's "" toggles twice)
 *                 and inside quotes only the next '"' matters.  CR is an
 *                 ordinary byte of the row.
 *   json-array    a phase per part of the file: the preamble (optional
 *                 BOM and whitespace, '[' and whitespace), one element per
 *                 call (a JSON value, whitespace, then ',' and whitespace up
 *                 to the next element, or the whitespace before ']'), then
 *                 the trailer (']' and everything after it, at eof).
 *
 * A JSON value is scanned, not validated: strings end at the first '"' not
 * preceded by an odd run of backslashes, containers at their matching
 * bracket (a bit stack of SP_JSON_DEPTH_MAX levels checks '{' pairs with
 * '}'), and numbers and literals are runs of bytes that are not whitespace
 * or one of ,:[]{}".  Invalid UTF-8 and bad escapes are fine: every byte
 * round-trips, the scanner only needs the boundaries.
 *
 * sp_row_fields cuts csv/tsv rows after each delimiter outside quotes, and
 * a row holding a JSON object (jsonl, json-array elements) into skeleton
 * text and member values that alternate, so that the values of two rows
 * can be compared one by one.
 *
 * Security: every scan is bounded by the bytes the caller passed (never
 * past p + n), by SP_ROW_MAX and by SP_JSON_DEPTH_MAX (a fixed stack of
 * bits, no recursion), and ends[] is written only below max.
 */
#include "rows.h"

#include <string.h>

/* Outcome of a JSON scan over the bytes at hand. */
typedef enum jv_result
{
	JV_OK,						/* the value ends inside the window */
	JV_MORE,					/* the window ended first */
	JV_BAD						/* not a value (why says why) */
} jv_result;

/* Bytes a JSON scan must look at inside containers. */
static const uint8_t json_special[256] = {
	['"'] = 1, ['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1,
};

/* Bytes that end a number or literal (JSON whitespace and structure). */
static const uint8_t json_delim[256] = {
	[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [','] = 1, [':'] = 1,
	['"'] = 1, ['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1,
};

/* Names of the formats, by sp_rowfmt value (what delta_info and estimate show). */
static const char *const rowfmt_names[SP_ROWS_COUNT] = {
	"binary", "lines", "csv", "tsv", "jsonl", "json-array",
};

/* "lines", "csv", "tsv", "jsonl", "json-array", or "binary". */
const char *
sp_rowfmt_name(sp_rowfmt f)
{
	if ((unsigned) f >= SP_ROWS_COUNT)
		return "binary";
	return rowfmt_names[f];
}

/* ---- format guess ------------------------------------------------------- */

/* Does name end with extension ext (".csv"), ignoring case? */
static bool
has_ext(const char *name, size_t len, const char *ext)
{
	size_t		e = strlen(ext);

	if (len < e)
		return false;
	for (size_t i = 0; i < e; i++)
	{
		char		c = name[len - e + i];

		if (c >= 'A' && c <= 'Z')
			c = (char) (c - 'A' + 'a');
		if (c != ext[i])
			return false;
	}
	return true;
}

/* Is the first byte after an optional BOM and whitespace a '['? */
static bool
head_is_array(const uint8_t *head, size_t n)
{
	size_t		i = 0;

	if (n >= 3 && head[0] == 0xEF && head[1] == 0xBB && head[2] == 0xBF)
		i = 3;
	while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' ||
					 head[i] == '\r'))
		i++;
	return i < n && head[i] == '[';
}

/* Row format of a file from its name and first n bytes. */
sp_rowfmt
sp_rowfmt_guess(const char *name, const uint8_t *head, size_t n)
{
	size_t		len = name != NULL ? strlen(name) : 0;

	if (head == NULL)
		n = 0;
	/* content first: Parquet and binary files are never cut into rows */
	if ((n >= 4 && memcmp(head, "PAR1", 4) == 0) ||
		(n > 0 && memchr(head, '\0', n) != NULL) || has_ext(name, len, ".parquet"))
		return SP_ROWS_NONE;
	if (has_ext(name, len, ".csv"))
		return SP_ROWS_CSV;
	if (has_ext(name, len, ".tsv") || has_ext(name, len, ".tab"))
		return SP_ROWS_TSV;
	if (has_ext(name, len, ".jsonl") || has_ext(name, len, ".ndjson"))
		return SP_ROWS_JSONL;
	if (has_ext(name, len, ".json") && head_is_array(head, n))
		return SP_ROWS_JSON_ARRAY;
	return SP_ROWS_LINES;
}

/* ---- JSON scanning ------------------------------------------------------ */

/* Index after JSON whitespace from i (at most lim). */
static size_t
skip_ws(const uint8_t *p, size_t lim, size_t i)
{
	while (i < lim && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/* End of the string whose opening '"' is at *pos (set *pos past it). */
static jv_result
json_string_end(const uint8_t *p, size_t lim, size_t *pos)
{
	size_t		i = *pos + 1;

	while (i < lim)
	{
		const uint8_t *q = memchr(p + i, '"', lim - i);
		size_t		j,
					bs = 0;

		if (q == NULL)
			return JV_MORE;
		j = (size_t) (q - p);
		/* an odd run of backslashes escapes the quote; runs never overlap */
		while (j - bs > *pos + 1 && p[j - bs - 1] == '\\')
			bs++;
		i = j + 1;
		if (bs % 2 == 0)
		{
			*pos = i;
			return JV_OK;
		}
	}
	return JV_MORE;
}

/* End of the object or array at *pos; depth levels are open around it. */
static jv_result
json_container_end(const uint8_t *p, size_t lim, size_t *pos, int depth,
				   const char **why)
{
	uint64_t	is_obj[SP_JSON_DEPTH_MAX / 64];	/* bit d: level d is '{' */
	int			d = 0;
	size_t		i = *pos;

	while (i < lim)
	{
		uint8_t		c = p[i];

		if (!json_special[c])
			i++;
		else if (c == '"')
		{
			if (json_string_end(p, lim, &i) != JV_OK)
				return JV_MORE;
		}
		else if (c == '{' || c == '[')
		{
			if (depth + d >= SP_JSON_DEPTH_MAX)
			{
				*why = "nesting deeper than 512";
				return JV_BAD;
			}
			if (c == '{')
				is_obj[d / 64] |= (uint64_t) 1 << (d % 64);
			else
				is_obj[d / 64] &= ~((uint64_t) 1 << (d % 64));
			d++;
			i++;
		}
		else
		{
			d--;
			if (((is_obj[d / 64] >> (d % 64)) & 1) != (c == '}'))
			{
				*why = "mismatched bracket";
				return JV_BAD;
			}
			i++;
			if (d == 0)
			{
				*pos = i;
				return JV_OK;
			}
		}
	}
	return JV_MORE;
}

/* End of the JSON value starting at *pos (set *pos past it). */
static jv_result
json_value_end(const uint8_t *p, size_t lim, size_t *pos, int depth,
			   const char **why)
{
	size_t		i = *pos;

	if (i >= lim)
		return JV_MORE;
	if (p[i] == '"')
		return json_string_end(p, lim, pos);
	if (p[i] == '{' || p[i] == '[')
		return json_container_end(p, lim, pos, depth, why);
	while (i < lim && !json_delim[p[i]])
		i++;
	if (i == *pos)
	{
		*why = "expected a value";
		return JV_BAD;
	}
	if (i == lim)
		return JV_MORE;			/* a number may go on in the next bytes */
	*pos = i;
	return JV_OK;
}

/* ---- rows --------------------------------------------------------------- */

/* Record a row of len bytes. */
static long
row_found(sp_rowscan *s, size_t len)
{
	s->rows++;
	return (long) len;
}

/* Mark the input malformed. */
static long
row_malformed(sp_rowscan *s, const char *why)
{
	s->why = why;
	return -1;
}

/*
 * No row end among the bytes at hand: too long once more than SP_ROW_MAX
 * bytes were there, else wait for more, else (eof) the rest is the last row.
 */
static long
row_tail(sp_rowscan *s, size_t n, bool eof, bool quoted)
{
	if (n > SP_ROW_MAX)
		return row_malformed(s, "row longer than 4 MiB");
	if (!eof)
		return 0;
	if (quoted)
		return row_malformed(s, "unbalanced quote");
	return row_found(s, n);
}

/* A lines or jsonl row: up to and including '\n'. */
static long
line_row(sp_rowscan *s, const uint8_t *p, size_t n, bool eof)
{
	size_t		lim = n < SP_ROW_MAX ? n : SP_ROW_MAX;
	const uint8_t *nl = memchr(p, '\n', lim);

	if (nl != NULL)
		return row_found(s, (size_t) (nl - p) + 1);
	return row_tail(s, n, eof, false);
}

/* A csv or tsv row: up to and including the first '\n' outside quotes. */
static long
csv_row(sp_rowscan *s, const uint8_t *p, size_t n, bool eof)
{
	size_t		lim = n < SP_ROW_MAX ? n : SP_ROW_MAX,
				i = 0;
	const uint8_t *end = p + lim,
			   *nl = NULL,
			   *q;
	bool		quoted = false;

	while (i < lim)
	{
		if (quoted)
		{
			if ((q = memchr(p + i, '"', lim - i)) == NULL)
				break;
			quoted = false;
		}
		else
		{
			/* the '\n' found last time stays valid unless it was quoted */
			if (nl == NULL || nl < p + i)
			{
				nl = memchr(p + i, '\n', lim - i);
				if (nl == NULL)
					nl = end;
			}
			if ((q = memchr(p + i, '"', (size_t) (nl - (p + i)))) == NULL)
			{
				if (nl < end)
					return row_found(s, (size_t) (nl - p) + 1);
				break;
			}
			quoted = true;
		}
		i = (size_t) (q - p) + 1;
	}
	return row_tail(s, n, eof, quoted);
}

/* JSON whitespace ran to the end of the window: why depends on the phase. */
static long
array_more(sp_rowscan *s, size_t n, bool eof, const char *why_at_eof)
{
	if (n > SP_ROW_MAX)
		return row_malformed(s, "row longer than 4 MiB");
	if (eof)
		return row_malformed(s, why_at_eof);
	return 0;
}

/* json-array row 0: BOM, whitespace, '[' and whitespace. */
static long
array_preamble(sp_rowscan *s, const uint8_t *p, size_t n, size_t lim, bool eof)
{
	static const uint8_t bom[3] = {0xEF, 0xBB, 0xBF};
	size_t		i = 0;

	if (memcmp(p, bom, lim < 3 ? lim : 3) == 0)
	{
		if (lim < 3)
			return array_more(s, n, eof, "no '[' at the start");
		i = 3;
	}
	i = skip_ws(p, lim, i);
	if (i == lim)
		return array_more(s, n, eof, "no '[' at the start");
	if (p[i] != '[')
		return row_malformed(s, "no '[' at the start");
	i = skip_ws(p, lim, i + 1);
	if (i == lim)
		return array_more(s, n, eof, "array not closed");
	s->phase = p[i] == ']' ? 2 : 1;
	return row_found(s, i);
}

/* json-array element row: the value, then ",ws" or the ws before ']'. */
static long
array_element(sp_rowscan *s, const uint8_t *p, size_t n, size_t lim, bool eof)
{
	const char *why = NULL;
	size_t		i = 0;

	switch (json_value_end(p, lim, &i, 0, &why))
	{
		case JV_BAD:
			return row_malformed(s, why);
		case JV_MORE:
			return array_more(s, n, eof, "array not closed");
		case JV_OK:
			break;
	}
	i = skip_ws(p, lim, i);
	if (i == lim)
		return array_more(s, n, eof, "array not closed");
	if (p[i] == ']')
	{
		s->phase = 2;
		return row_found(s, i);
	}
	if (p[i] != ',')
		return row_malformed(s, "expected ',' or ']' after an element");
	i = skip_ws(p, lim, i + 1);
	if (i == lim)
		return array_more(s, n, eof, "array not closed");
	return row_found(s, i);
}

/* A json-array row for the current phase. */
static long
array_row(sp_rowscan *s, const uint8_t *p, size_t n, bool eof)
{
	/* one byte more than a row: an element row ends before a byte we see */
	size_t		lim = n <= SP_ROW_MAX ? n : (size_t) SP_ROW_MAX + 1;

	switch (s->phase)
	{
		case 0:
			return array_preamble(s, p, n, lim, eof);
		case 1:
			return array_element(s, p, n, lim, eof);
		case 2:
			/* ']' and whatever follows it, unchecked, to the end */
			if (n > SP_ROW_MAX)
				return row_malformed(s, "row longer than 4 MiB");
			if (!eof)
				return 0;
			s->phase = 3;
			return row_found(s, n);
		default:
			return row_malformed(s, "data after the array");
	}
}

/* Length of the next row at p: > 0, 0 (more bytes, or the end), -1 malformed. */
long
sp_row_next(sp_rowscan *s, const uint8_t *p, size_t n, bool eof)
{
	if (s->why != NULL)
		return -1;				/* malformed stays malformed */
	if (n == 0)
	{
		if (eof && s->fmt == SP_ROWS_JSON_ARRAY && s->phase < 3)
			return row_malformed(s, s->phase == 0 ? "no '[' at the start"
								 : "array not closed");
		return 0;
	}
	switch (s->fmt)
	{
		case SP_ROWS_LINES:
		case SP_ROWS_JSONL:
			return line_row(s, p, n, eof);
		case SP_ROWS_CSV:
		case SP_ROWS_TSV:
			return csv_row(s, p, n, eof);
		case SP_ROWS_JSON_ARRAY:
			return array_row(s, p, n, eof);
		default:
			return row_malformed(s, "not a row format");
	}
}

/* ---- fields ------------------------------------------------------------- */

/* Field ends of a row without quotes: after each delimiter; k of them, or 0. */
static size_t
plain_fields(const uint8_t *row, size_t n, uint8_t delim, uint32_t *ends, size_t max)
{
	const uint8_t *p = row,
			   *end = row + n;
	size_t		k = 0;

	while ((p = memchr(p, delim, (size_t) (end - p))) != NULL)
	{
		if (k == max)
			return SIZE_MAX;
		p++;
		ends[k++] = (uint32_t) (p - row);
	}
	return k;
}

/* Fields of a csv/tsv row (ends after each delimiter outside quotes), or 0. */
static size_t
csv_fields(const uint8_t *row, size_t n, uint8_t delim, uint32_t *ends, size_t max)
{
	size_t		k = 0;
	bool		quoted = false;

	if (memchr(row, '"', n) == NULL)
	{
		if ((k = plain_fields(row, n, delim, ends, max)) == SIZE_MAX)
			return 0;
	}
	else
		for (size_t i = 0; i < n; i++)
		{
			if (row[i] == '"')
				quoted = !quoted;
			else if (row[i] == delim && !quoted)
			{
				if (k == max)
					return 0;
				ends[k++] = (uint32_t) (i + 1);
			}
		}
	/* the last field runs to the row end, unless the row ends with a delimiter */
	if (k > 0 && ends[k - 1] == n)
		return k;
	if (k == max)
		return 0;
	ends[k++] = (uint32_t) n;
	return k;
}

/*
 * Fields of a row holding one JSON object: skeleton, value, skeleton, ...,
 * final skeleton.  0 when the row is not such an object, the object is
 * empty, or more than max fields would be needed.
 */
static size_t
json_fields(const uint8_t *row, size_t n, uint32_t *ends, size_t max)
{
	const char *why = NULL;
	size_t		i = 0,
				k = 0;

	while (i < n && (row[i] == ' ' || row[i] == '\t'))
		i++;
	if (i == n || row[i] != '{')
		return 0;
	i = skip_ws(row, n, i + 1);
	if (i == n || row[i] == '}')
		return 0;
	for (;;)
	{
		if (row[i] != '"' || json_string_end(row, n, &i) != JV_OK)
			return 0;
		i = skip_ws(row, n, i);
		if (i == n || row[i] != ':')
			return 0;
		i = skip_ws(row, n, i + 1);
		if (k + 3 > max)		/* this skeleton and value, the last skeleton */
			return 0;
		ends[k++] = (uint32_t) i;
		if (json_value_end(row, n, &i, 1, &why) != JV_OK)
			return 0;
		ends[k++] = (uint32_t) i;
		i = skip_ws(row, n, i);
		if (i == n || (row[i] != ',' && row[i] != '}'))
			return 0;
		if (row[i] == '}')
			break;
		i = skip_ws(row, n, i + 1);
		if (i == n)
			return 0;
	}
	ends[k++] = (uint32_t) n;
	return k;
}

/* Cut a row into fields; ends[i] is the offset past field i. */
size_t
sp_row_fields(sp_rowfmt f, const uint8_t *row, size_t n, uint32_t *ends, size_t max)
{
	size_t		k = 0;

	if (max == 0)
		return 1;				/* nowhere to write: one field, unrecorded */
	if (n <= SP_ROW_MAX)
	{
		if (f == SP_ROWS_CSV)
			k = csv_fields(row, n, ',', ends, max);
		else if (f == SP_ROWS_TSV)
			k = csv_fields(row, n, '\t', ends, max);
		else if (f == SP_ROWS_JSONL || f == SP_ROWS_JSON_ARRAY)
			k = json_fields(row, n, ends, max);
	}
	if (k == 0)
	{
		ends[0] = (uint32_t) n;
		k = 1;
	}
	return k;
}
