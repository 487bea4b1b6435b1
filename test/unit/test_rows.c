/*
 * test_rows.c -- unit tests of the row and field scanners (common/rows.c).
 *
 * Inputs are written as the list of rows the scanner must return (the rows
 * concatenated are the input), so every expected row length is exact.  Each
 * input is scanned twice: whole (eof true), and grown one byte at a time
 * (eof false until the last byte, calling again from the same row start
 * whenever the scanner asks for more), which must give the same rows and the
 * same end or malformed reason.  Fields are given the same way, as pieces
 * of the row.  The last tests cut the real datasets of ../shared/data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rows.h"

#define MAX_ROWS 64

/* What a scan gave: row lengths, then 0 (end) or -1 (why). */
typedef struct scan_result
{
	size_t		n_rows;
	size_t		len[MAX_ROWS];
	long		last;
	const char *why;
	uint64_t	counted;		/* s.rows at the end */
} scan_result;

/* Scan in whole with eof true. */
static void
scan_whole(sp_rowfmt f, const uint8_t *in, size_t n, scan_result *r)
{
	sp_rowscan	s = {.fmt = f};
	size_t		pos = 0;
	long		got;

	memset(r, 0, sizeof(*r));
	while ((got = sp_row_next(&s, in + pos, n - pos, true)) > 0 && r->n_rows < MAX_ROWS)
	{
		r->len[r->n_rows++] = (size_t) got;
		pos += (size_t) got;
	}
	r->last = got;
	r->why = s.why;
	r->counted = s.rows;
}

/* Scan growing the window by step bytes whenever the scanner asks for more. */
static void
scan_stream(sp_rowfmt f, const uint8_t *in, size_t n, size_t step, scan_result *r)
{
	sp_rowscan	s = {.fmt = f};
	size_t		pos = 0,
				avail = step < n ? step : n;
	long		got;

	memset(r, 0, sizeof(*r));
	for (;;)
	{
		got = sp_row_next(&s, in + pos, avail - pos, avail == n);
		if (got == 0 && avail < n)
		{
			avail = avail + step < n ? avail + step : n;
			continue;
		}
		if (got <= 0 || r->n_rows == MAX_ROWS)
			break;
		r->len[r->n_rows++] = (size_t) got;
		pos += (size_t) got;
		if (avail < pos)
			avail = pos;
	}
	r->last = got;
	r->why = s.why;
	r->counted = s.rows;
}

/* Join a NULL-terminated list of pieces into a tracked buffer. */
static uint8_t *
join(const char *const *pieces, size_t *n)
{
	size_t		len = 0;
	uint8_t    *b;

	for (int i = 0; pieces[i] != NULL; i++)
		len += strlen(pieces[i]);
	b = t_track(malloc(len + 1));
	len = 0;
	for (int i = 0; pieces[i] != NULL; i++)
	{
		memcpy(b + len, pieces[i], strlen(pieces[i]));
		len += strlen(pieces[i]);
	}
	*n = len;
	return b;
}

/* Compare a scan with the expected rows and end; one failure per mismatch. */
static void
check_result(const char *file, int line, const char *how, const scan_result *r,
			 const char *const *rows, const char *why)
{
	size_t		k = 0;

	for (; rows[k] != NULL; k++)
		if (k >= r->n_rows || r->len[k] != strlen(rows[k]))
		{
			t_fail(file, line, "%s: row %zu has length %zu, expected %zu", how, k,
				   k < r->n_rows ? r->len[k] : 0, strlen(rows[k]));
			return;
		}
	if (r->n_rows != k || r->counted != k)
		t_fail(file, line, "%s: %zu rows (counted %llu), expected %zu", how,
			   r->n_rows, (unsigned long long) r->counted, k);
	if (why == NULL && (r->last != 0 || r->why != NULL))
		t_fail(file, line, "%s: ended with %ld (%s), expected the end", how,
			   r->last, r->why ? r->why : "no reason");
	if (why != NULL && (r->last != -1 || r->why == NULL || strcmp(r->why, why) != 0))
		t_fail(file, line, "%s: ended with %ld (%s), expected -1 (%s)", how,
			   r->last, r->why ? r->why : "no reason", why);
}

/* Scan the concatenated rows whole and byte by byte; why NULL: must end. */
static void
check_rows_at(const char *file, int line, sp_rowfmt f, const char *const *rows,
			  const char *tail, const char *why)
{
	const char *all[MAX_ROWS + 2];
	size_t		k = 0,
				n;
	const uint8_t *in;
	scan_result r;

	for (; rows[k] != NULL; k++)
		all[k] = rows[k];
	all[k] = tail;
	all[k + 1] = NULL;
	in = join(all, &n);
	scan_whole(f, in, n, &r);
	check_result(file, line, "whole", &r, rows, why);
	scan_stream(f, in, n, 1, &r);
	check_result(file, line, "byte by byte", &r, rows, why);
	scan_stream(f, in, n, 7, &r);
	check_result(file, line, "7 bytes at a time", &r, rows, why);
}

/* The rows, then the end. */
#define CHECK_ROWS(f, ...) \
	check_rows_at(__FILE__, __LINE__, (f), (const char *const[]) {__VA_ARGS__, NULL}, "", NULL)

/* The rows, then tail makes the input malformed with reason why. */
#define CHECK_BAD(f, why, tail, ...) \
	check_rows_at(__FILE__, __LINE__, (f), (const char *const[]) {__VA_ARGS__, NULL}, (tail), (why))

/* Cut the joined pieces with max and compare the field ends to the pieces. */
static void
check_fields_at(const char *file, int line, sp_rowfmt f, size_t max,
				const char *const *fields)
{
	uint32_t	ends[16];
	size_t		n,
				want = 0,
				got,
				off = 0;
	const uint8_t *row = join(fields, &n);

	for (; fields[want] != NULL; want++)
		;
	memset(ends, 0xAB, sizeof(ends));
	got = sp_row_fields(f, row, n, ends, max);
	if (got != want)
	{
		t_fail(file, line, "%zu fields, expected %zu (first ends at %u)", got, want,
			   ends[0]);
		return;
	}
	for (size_t i = 0; i < want; i++)
	{
		off += strlen(fields[i]);
		if (ends[i] != off)
			t_fail(file, line, "field %zu ends at %u, expected %zu", i, ends[i], off);
	}
	for (size_t i = max; i < 16; i++)
		if (ends[i] != 0xABABABABu)
			t_fail(file, line, "wrote ends[%zu], past max %zu", i, max);
}

/* The row made of these fields cuts into exactly them (max 16). */
#define CHECK_FIELDS(f, ...) \
	check_fields_at(__FILE__, __LINE__, (f), 16, (const char *const[]) {__VA_ARGS__, NULL})

/* Same with a given max. */
#define CHECK_FIELDS_MAX(f, max, ...) \
	check_fields_at(__FILE__, __LINE__, (f), (max), (const char *const[]) {__VA_ARGS__, NULL})

/* lines: rows end after '\n'; CR stays in the row; the last may lack '\n'. */
static void
test_rows_lines(void)
{
	CHECK_ROWS(SP_ROWS_LINES, "a\n", "bb\n", "\n", "ccc");
	CHECK_ROWS(SP_ROWS_LINES, "x\r\n", "y\r\n");
	CHECK_ROWS(SP_ROWS_LINES, "\"quotes do not matter\n", "here\"\n");
	CHECK_ROWS(SP_ROWS_LINES, "bin\xff\x01\n", "\r");
	CHECK_FIELDS(SP_ROWS_LINES, "a,b\tc {\"k\": 1}\n");
	CHECK_FIELDS(SP_ROWS_NONE, "a,b\n");
}

/* Empty input: no rows, then the end (json-array: malformed). */
static void
test_rows_empty(void)
{
	const sp_rowfmt fmts[] = {SP_ROWS_LINES, SP_ROWS_CSV, SP_ROWS_TSV, SP_ROWS_JSONL};

	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
	{
		sp_rowscan	s = {.fmt = fmts[i]};

		T_CHECK(sp_row_next(&s, (const uint8_t *) "", 0, false) == 0,
				"%s: not at eof must wait", sp_rowfmt_name(fmts[i]));
		T_CHECK(sp_row_next(&s, (const uint8_t *) "", 0, true) == 0 && s.why == NULL &&
				s.rows == 0, "%s: empty file is 0 rows", sp_rowfmt_name(fmts[i]));
	}
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "no '[' at the start", "", NULL);
}

/* csv: quoted newlines, "" escapes, CRLF, no final newline. */
static void
test_rows_csv(void)
{
	CHECK_ROWS(SP_ROWS_CSV, "a,b\n", "\"x\ny\",2\n", "\"he said \"\"hi\"\"\",3\r\n", "last");
	CHECK_ROWS(SP_ROWS_CSV, "\"\n\n\"\n", "\"a\"\"\n\"\"b\"\n", "q\"\n\"q\n");
	CHECK_ROWS(SP_ROWS_CSV, "\"\"\n", "\"\"\"\"\n", "\"\"\"\n\"\n");
	CHECK_ROWS(SP_ROWS_CSV, "\n", "\n", "x,\"y\"");
	CHECK_ROWS(SP_ROWS_TSV, "a\t\"b\nc\"\td\n", "e\tf\n");
	CHECK_BAD(SP_ROWS_CSV, "unbalanced quote", "a,\"b\nc\n", "ok\n");
	CHECK_BAD(SP_ROWS_CSV, "unbalanced quote", "\"", "1\n", "\"2\"\n");
	CHECK_BAD(SP_ROWS_TSV, "unbalanced quote", "\"\"\"\n", NULL);
}

/* csv/tsv fields end after the delimiter outside quotes. */
static void
test_rows_csv_fields(void)
{
	CHECK_FIELDS(SP_ROWS_CSV, "\"a,b\",", "c,", "\"d\"\"e\"\r\n");
	CHECK_FIELDS(SP_ROWS_CSV, "\"x\ny\",", "2\n");
	CHECK_FIELDS(SP_ROWS_CSV, ",", ",", "\n");
	CHECK_FIELDS(SP_ROWS_CSV, "a,", "b,");	/* a final delimiter ends the row */
	CHECK_FIELDS(SP_ROWS_CSV, "a\tb\n");
	CHECK_FIELDS(SP_ROWS_TSV, "a\t", "b,c\t", "\"q\tr\"\n");
	CHECK_FIELDS(SP_ROWS_TSV, "x");
	CHECK_FIELDS_MAX(SP_ROWS_CSV, 3, "a,", "b,", "c\n");
	CHECK_FIELDS_MAX(SP_ROWS_CSV, 2, "a,b,c\n");
	CHECK_FIELDS_MAX(SP_ROWS_CSV, 2, "a,", "b,");
	CHECK_FIELDS_MAX(SP_ROWS_CSV, 1, "a,b,\n");
}

/* jsonl rows are lines; an object row is cut into skeleton and values. */
static void
test_rows_jsonl(void)
{
	CHECK_ROWS(SP_ROWS_JSONL, "{\"a\": \"x\\ny\"}\n", "{\"a\": 2}\r\n", "{\"a\": 3}");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"question\": ", "\"What is 2+2?\"", ", \"answer\": ",
				 "\"4\"", "}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, " \t{ \"a\" :", "{\"b\": [1, \"]}\"]}", ",\"c\":",
				 "-1.5e3", ", \"d\": ", "null", ",\"e\": ", "\"x\\\"}\\\\\"", " } \r\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"k\\\"\":", "\"\xff\xfe\"", "}");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\":", "[[],{}]", "}trailing bytes\n");
	/* not cuttable: one field */
	CHECK_FIELDS(SP_ROWS_JSONL, "{}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{ }\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "[1, 2]\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "\"s\"\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": 1\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\" 1}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": 1,}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": 1 2}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{a: 1}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": }\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": [1}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "{\"a\": \"open}\n");
	CHECK_FIELDS(SP_ROWS_JSONL, "\n{\"a\": 1}\n");
	/* field count against max: 3 members need 7 fields */
	CHECK_FIELDS_MAX(SP_ROWS_JSONL, 6, "{\"a\":1,\"b\":2,\"c\":3}\n");
	CHECK_FIELDS_MAX(SP_ROWS_JSONL, 7, "{\"a\":", "1", ",\"b\":", "2", ",\"c\":", "3", "}\n");
}

/* A row "{"a": " + depth brackets + "}", cut with the given format. */
static size_t
deep_fields(sp_rowfmt f, int depth, uint32_t *ends)
{
	char	   *row = t_track(malloc(2 * (size_t) depth + 16));
	size_t		n = 0;

	n += (size_t) sprintf(row, "{\"a\": ");
	for (int i = 0; i < depth; i++)
		row[n++] = '[';
	for (int i = 0; i < depth; i++)
		row[n++] = ']';
	row[n++] = '}';
	return sp_row_fields(f, (const uint8_t *) row, n, ends, 16);
}

/* Values nested up to SP_JSON_DEPTH_MAX levels (the object counts) are cut. */
static void
test_rows_json_depth(void)
{
	uint32_t	ends[16];

	T_CHECK(deep_fields(SP_ROWS_JSONL, SP_JSON_DEPTH_MAX - 1, ends) == 3,
			"511 levels inside the object must cut");
	T_CHECK(deep_fields(SP_ROWS_JSONL, SP_JSON_DEPTH_MAX, ends) == 1,
			"512 levels inside the object is too deep");
	T_CHECK(deep_fields(SP_ROWS_JSON_ARRAY, SP_JSON_DEPTH_MAX - 1, ends) == 3 &&
			ends[0] == 6 && ends[1] == 6 + 2 * (SP_JSON_DEPTH_MAX - 1),
			"json-array element fields at depth 511");
}

/* The pretty-printed array of the brief, with its exact rows and fields. */
static void
test_rows_json_array_pretty(void)
{
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[\n  ",
			   "{\n    \"a\": 1,\n    \"b\": \"x,]\"\n  },\n  ",
			   "{\n    \"a\": 2\n  }\n",
			   "]\n");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "{\n    \"a\": ", "1", ",\n    \"b\": ", "\"x,]\"",
				 "\n  },\n  ");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "{\n    \"a\": ", "2", "\n  }\n");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "[\n  ");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "]\n");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "\"scalar\",\n  ");
}

/* Compact arrays, a BOM, nested values with brackets in strings, empty arrays. */
static void
test_rows_json_array_compact(void)
{
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "\xEF\xBB\xBF[", "1,", "\"a\",", "[2,[3]],",
			   "{\"k\":\"\\\"]\"}, ", "null", "]");
	CHECK_FIELDS(SP_ROWS_JSON_ARRAY, "{\"k\":", "\"\\\"]\"", "}, ");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, " \r\n\t[ ", "{\"a\": [\"]\", {\"}\": \"[\"}]}\n", "]");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[", "\"\\\\\",", "\"\\\\\\\"\"", "]");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[", "-1.5e+3 ", "] trailing [bytes\n");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[", "1", "]\n[2]");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "  [ \n ", "]  \n");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[", "]");
	CHECK_ROWS(SP_ROWS_JSON_ARRAY, "[", "{}", "]");
}

/* Malformed arrays, each with its exact reason. */
static void
test_rows_json_array_malformed(void)
{
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "no '[' at the start", "{\"a\": 1}", NULL);
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "no '[' at the start", " \n ", NULL);
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "no '[' at the start", "\xEF\xBB", NULL);
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "no '[' at the start", "\xEF\xBB\xBF\xEF\xBB\xBF[]", NULL);
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "[ \n", NULL);
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "2", "[", "1,");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "1, \n", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "1", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "\"abc]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "array not closed", "{\"a\": [1, 2]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected ',' or ']' after an element", "1 2]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected ',' or ']' after an element", "{}{}]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected ',' or ']' after an element", "1}", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected a value", "]", "[", "1,");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected a value", ",1]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "expected a value", ":]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "mismatched bracket", "{]}]", "[");
	CHECK_BAD(SP_ROWS_JSON_ARRAY, "mismatched bracket", "[{\"a\": [}]]", "[", "1, ");
}

/* An array holding one element nested depth levels deep. */
static void
nested_array(int depth, const char *why)
{
	char	   *in = t_track(malloc(2 * (size_t) depth + 3));
	scan_result r;
	size_t		n = 0;

	in[n++] = '[';
	for (int i = 0; i < depth; i++)
		in[n++] = '[';
	for (int i = 0; i < depth; i++)
		in[n++] = ']';
	in[n++] = ']';
	scan_whole(SP_ROWS_JSON_ARRAY, (const uint8_t *) in, n, &r);
	if (why == NULL)
		T_CHECK(r.last == 0 && r.n_rows == 3 && r.len[1] == 2 * (size_t) depth,
				"depth %d: %zu rows, ended %ld (%s)", depth, r.n_rows, r.last,
				r.why ? r.why : "");
	else
		T_CHECK(r.last == -1 && r.n_rows == 1 && r.why != NULL && strcmp(r.why, why) == 0,
				"depth %d: %zu rows, ended %ld (%s), expected %s", depth, r.n_rows,
				r.last, r.why ? r.why : "", why);
}

/* Elements may nest SP_JSON_DEPTH_MAX levels, not more. */
static void
test_rows_json_array_depth(void)
{
	nested_array(SP_JSON_DEPTH_MAX, NULL);
	nested_array(SP_JSON_DEPTH_MAX + 1, "nesting deeper than 512");
	nested_array(100000, "nesting deeper than 512");
}

/* After -1 the scanner stays malformed; phase 3 refuses more bytes. */
static void
test_rows_sticky(void)
{
	sp_rowscan	s = {.fmt = SP_ROWS_CSV};
	sp_rowscan	a = {.fmt = SP_ROWS_JSON_ARRAY};
	sp_rowscan	none = {.fmt = SP_ROWS_NONE};
	const uint8_t *in = (const uint8_t *) "\"x\n";

	T_CHECK(sp_row_next(&s, in, 3, true) == -1, "unbalanced quote");
	T_CHECK(sp_row_next(&s, (const uint8_t *) "ok\n", 3, true) == -1 &&
			strcmp(s.why, "unbalanced quote") == 0, "malformed must stay malformed");
	a.phase = 3;
	T_CHECK(sp_row_next(&a, (const uint8_t *) "]", 1, true) == -1 &&
			strcmp(a.why, "data after the array") == 0, "phase 3 with bytes left");
	a = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY, .phase = 3};
	T_CHECK(sp_row_next(&a, in, 0, true) == 0, "phase 3 at eof is the end");
	T_CHECK(sp_row_next(&none, in, 3, true) == -1 &&
			strcmp(none.why, "not a row format") == 0, "NONE is not cut");
}

/* A buffer of len bytes of c (tracked). */
static uint8_t *
filled(size_t len, uint8_t c)
{
	uint8_t    *b = t_track(malloc(len));

	if (b != NULL)
		memset(b, c, len);
	return b;
}

/* Rows of exactly SP_ROW_MAX bytes pass; one byte more is malformed. */
static void
test_rows_max_lines(void)
{
	size_t		m = SP_ROW_MAX;
	uint8_t    *b = filled(m + 2, 'a');
	const sp_rowfmt fmts[] = {SP_ROWS_LINES, SP_ROWS_CSV, SP_ROWS_JSONL};

	T_REQUIRE(b != NULL, "out of memory");
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
	{
		sp_rowscan	s = {.fmt = fmts[i]};
		const char *name = sp_rowfmt_name(fmts[i]);

		b[m - 1] = '\n';
		T_CHECK(sp_row_next(&s, b, m + 2, false) == (long) m, "%s: row of SP_ROW_MAX", name);
		b[m - 1] = 'a';
		T_CHECK(sp_row_next(&s, b, m, false) == 0, "%s: SP_ROW_MAX bytes may still end", name);
		T_CHECK(sp_row_next(&s, b, m, true) == (long) m, "%s: last row of SP_ROW_MAX", name);
		T_CHECK(sp_row_next(&s, b, m + 1, true) == -1 &&
				strcmp(s.why, "row longer than 4 MiB") == 0, "%s: last row too long", name);
		s = (sp_rowscan) {.fmt = fmts[i]};
		b[m] = '\n';
		T_CHECK(sp_row_next(&s, b, m + 2, false) == -1 &&
				strcmp(s.why, "row longer than 4 MiB") == 0, "%s: row too long", name);
		b[m] = 'a';
	}
}

/* A quoted csv row and json-array rows over SP_ROW_MAX are malformed. */
static void
test_rows_max_quoted(void)
{
	size_t		m = SP_ROW_MAX;
	uint8_t    *b = filled(m + 8, ' ');
	sp_rowscan	s = {.fmt = SP_ROWS_CSV};

	T_REQUIRE(b != NULL, "out of memory");
	b[0] = '"';
	T_CHECK(sp_row_next(&s, b, m, false) == 0, "csv: open quote, may still end");
	T_CHECK(sp_row_next(&s, b, m + 8, false) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "csv: quoted row too long");
	/* preamble of SP_ROW_MAX bytes ("[" + spaces) passes, one more does not */
	b[0] = '[';
	b[m] = '1';
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY};
	T_CHECK(sp_row_next(&s, b, m + 8, false) == (long) m, "json-array: preamble of SP_ROW_MAX");
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY};
	b[m] = ' ';
	T_CHECK(sp_row_next(&s, b, m + 8, false) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "json-array: long preamble");
	/* a preamble of SP_ROW_MAX + 1 bytes, though its end is in sight */
	b[m + 1] = '1';
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY};
	T_CHECK(sp_row_next(&s, b, m + 8, true) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "json-array: preamble + 1");
	/* element rows "\"xx...\"," of SP_ROW_MAX bytes and of one more */
	memset(b, 'x', m + 8);
	b[0] = '"';
	b[m - 2] = '"';
	b[m - 1] = ',';
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY, .phase = 1};
	T_CHECK(sp_row_next(&s, b, m + 8, false) == (long) m, "json-array: element of SP_ROW_MAX");
	b[m - 2] = 'x';
	b[m - 1] = '"';
	b[m] = ',';
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY, .phase = 1};
	T_CHECK(sp_row_next(&s, b, m + 8, false) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "json-array: element + 1");
	/* a string element longer than SP_ROW_MAX */
	memset(b, 'x', m + 8);
	b[0] = '"';
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY, .phase = 1};
	T_CHECK(sp_row_next(&s, b, m + 8, true) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "json-array: long element");
	s = (sp_rowscan) {.fmt = SP_ROWS_JSON_ARRAY, .phase = 2};
	b[0] = ']';
	T_CHECK(sp_row_next(&s, b, m + 8, true) == -1 &&
			strcmp(s.why, "row longer than 4 MiB") == 0, "json-array: long trailer");
}

/* xorshift64 for the random inputs. */
static uint64_t
rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Do two scans agree, row for row and in how they ended? */
static bool
same_scan(const scan_result *a, const scan_result *b)
{
	if (a->n_rows != b->n_rows || a->last != b->last || (a->why == NULL) != (b->why == NULL) ||
		(a->why != NULL && strcmp(a->why, b->why) != 0))
		return false;
	return memcmp(a->len, b->len, a->n_rows * sizeof(a->len[0])) == 0;
}

/* Random inputs of format syntax: streaming in any step equals whole. */
static void
test_rows_stream_random(void)
{
	static const char alphabet[] = "\"\"\n\n,,\t\r \\[]{}:ab1\xEF\xBB\xBF";
	const sp_rowfmt fmts[] = {SP_ROWS_LINES, SP_ROWS_CSV, SP_ROWS_TSV, SP_ROWS_JSONL,
	SP_ROWS_JSON_ARRAY};
	uint64_t	x = 0x2545F4914F6CDD1Dull;
	uint8_t		in[48];
	int			bad = 0;

	for (int iter = 0; iter < 4000 && bad < 5; iter++)
	{
		size_t		n = rnd(&x) % sizeof(in);
		sp_rowfmt	f = fmts[iter % 5];
		scan_result whole,
					part;

		for (size_t i = 0; i < n; i++)
			in[i] = (uint8_t) alphabet[rnd(&x) % (sizeof(alphabet) - 1)];
		if (f == SP_ROWS_JSON_ARRAY && n > 0 && iter % 2 == 0)
			in[0] = '[';
		scan_whole(f, in, n, &whole);
		for (size_t step = 1; step <= n; step += 1 + step / 3)
		{
			scan_stream(f, in, n, step, &part);
			if (!same_scan(&whole, &part))
			{
				t_fail(__FILE__, __LINE__, "%s input %d, step %zu: stream differs",
					   sp_rowfmt_name(f), iter, step);
				bad++;
				break;
			}
		}
	}
}

/* sp_rowfmt_guess by extension and head; sp_rowfmt_name. */
static void
test_rows_guess(void)
{
	const uint8_t *txt = (const uint8_t *) "a,b\n1,2\n";

#define GUESS(name, head, n, want) \
	T_CHECK(sp_rowfmt_guess((name), (const uint8_t *) (head), (n)) == (want), \
			"guess(%s) = %s, expected %s", (name) ? (name) : "NULL", \
			sp_rowfmt_name(sp_rowfmt_guess((name), (const uint8_t *) (head), (n))), \
			sp_rowfmt_name(want))
	GUESS("data.csv", txt, 8, SP_ROWS_CSV);
	GUESS("/x/DATA.CSV", txt, 8, SP_ROWS_CSV);
	GUESS("data.tsv", txt, 8, SP_ROWS_TSV);
	GUESS("data.Tab", txt, 8, SP_ROWS_TSV);
	GUESS("data.jsonl", "{}\n", 3, SP_ROWS_JSONL);
	GUESS("data.NDJSON", "{}\n", 3, SP_ROWS_JSONL);
	GUESS("data.json", " \r\n\t[{}]", 8, SP_ROWS_JSON_ARRAY);
	GUESS("data.json", "\xEF\xBB\xBF[]", 5, SP_ROWS_JSON_ARRAY);
	GUESS("data.JSON", "[", 1, SP_ROWS_JSON_ARRAY);
	GUESS("data.json", "{\"data\": []}", 12, SP_ROWS_LINES);
	GUESS("data.json", "  ", 2, SP_ROWS_LINES);
	GUESS("data.json", "", 0, SP_ROWS_LINES);
	GUESS("data.json", NULL, 0, SP_ROWS_LINES);
	GUESS("data.parquet", "PAR1", 4, SP_ROWS_NONE);
	GUESS("data.PARQUET", txt, 8, SP_ROWS_NONE);
	GUESS("data.csv", "PAR1\x15\x04", 6, SP_ROWS_NONE);
	GUESS("noext", "PAR1", 4, SP_ROWS_NONE);
	GUESS("data.csv", "a,b\0", 4, SP_ROWS_NONE);
	GUESS("model.bin", "\x01\x00\x02", 3, SP_ROWS_NONE);
	GUESS("notes.txt", txt, 8, SP_ROWS_LINES);
	GUESS("README.md", "# t\n", 4, SP_ROWS_LINES);
	GUESS("noext", txt, 8, SP_ROWS_LINES);
	GUESS("dir.csv/file", txt, 8, SP_ROWS_LINES);
	GUESS("x.jsonl.gz", "\x1f\x8b", 2, SP_ROWS_LINES);
	GUESS(".csv", txt, 8, SP_ROWS_CSV);
	GUESS(NULL, txt, 8, SP_ROWS_LINES);
	GUESS("PAR", "PAR", 3, SP_ROWS_LINES);
#undef GUESS
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_NONE), "binary") == 0, "NONE");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_LINES), "lines") == 0, "LINES");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_CSV), "csv") == 0, "CSV");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_TSV), "tsv") == 0, "TSV");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_JSONL), "jsonl") == 0, "JSONL");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_JSON_ARRAY), "json-array") == 0, "JSON_ARRAY");
	T_CHECK(strcmp(sp_rowfmt_name(SP_ROWS_COUNT), "binary") == 0, "out of range");
	T_CHECK(strcmp(sp_rowfmt_name((sp_rowfmt) - 1), "binary") == 0, "negative");
}

/* Read a whole file (tracked), or NULL. */
static uint8_t *
slurp(const char *path, size_t *n)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *b = NULL;
	long		len;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
		b = t_track(malloc((size_t) len + 1));
	if (b != NULL && fread(b, 1, (size_t) len, f) == (size_t) len)
		*n = (size_t) len;
	else
		b = NULL;
	fclose(f);
	return b;
}

/* One real file: guessed format, rows tile it, fields tile the rows. */
static void
check_real_file(const char *rel, sp_rowfmt want, uint64_t min_rows, size_t min_fields)
{
	const char *d = t_data() != NULL ? t_data() : "../shared/data";
	size_t		n = 0,
				pos = 0,
				fields = 0,
				max_fields = 0;
	uint8_t    *b = slurp(t_fmt("%s/datasets/%s", d, rel), &n);
	sp_rowscan	s;
	uint32_t   *ends = t_track(malloc(SP_FIELDS_MAX * sizeof(uint32_t)));
	long		got;

	T_REQUIRE(b != NULL && ends != NULL, "cannot read %s under %s/datasets", rel, d);
	s = (sp_rowscan) {.fmt = sp_rowfmt_guess(rel, b, n < 4096 ? n : 4096)};
	T_REQUIRE(s.fmt == want, "%s guessed %s", rel, sp_rowfmt_name(s.fmt));
	if (want == SP_ROWS_NONE)
		return;
	/* 1 MiB windows, as a reader of a big file would feed it */
	for (;;)
	{
		size_t		avail = n - pos < (1 << 20) ? n - pos : (1 << 20);

		if ((got = sp_row_next(&s, b + pos, avail, pos + avail == n)) == 0)
			break;				/* the end, or a row longer than the window */
		T_REQUIRE(got > 0, "%s: malformed at %zu: %s", rel, pos, s.why);
		fields = sp_row_fields(s.fmt, b + pos, (size_t) got, ends, SP_FIELDS_MAX);
		T_REQUIRE(fields >= 1 && ends[fields - 1] == (uint32_t) got, "%s: fields do not tile", rel);
		if (fields > max_fields)
			max_fields = fields;
		pos += (size_t) got;
	}
	T_CHECK(pos == n && s.rows >= min_rows, "%s: %llu rows over %zu of %zu bytes", rel,
			(unsigned long long) s.rows, pos, n);
	T_CHECK(max_fields >= min_fields, "%s: at most %zu fields per row, expected %zu",
			rel, max_fields, min_fields);
}

/* The real datasets cut as their formats say. */
static void
test_rows_real_data(void)
{
	check_real_file("covid_countries_1day/base.csv", SP_ROWS_CSV, 100000, 5);
	check_real_file("owid_co2_update/derived.csv", SP_ROWS_CSV, 10000, 20);
	check_real_file("gsm8k_socratic/base.jsonl", SP_ROWS_JSONL, 1000, 5);
	check_real_file("alpaca_eval_outputs_regen/base.json", SP_ROWS_JSON_ARRAY, 500, 9);
	check_real_file("toolformer_simfilter/derived.json", SP_ROWS_JSON_ARRAY, 500, 5);
	check_real_file("xquad_en_de/base.json", SP_ROWS_LINES, 100, 1);
	check_real_file("ranked_dash_parquet/base.parquet", SP_ROWS_NONE, 0, 0);
}

const t_case t_tests_rows[] = {
	{"rows_lines", test_rows_lines},
	{"rows_empty", test_rows_empty},
	{"rows_csv", test_rows_csv},
	{"rows_csv_fields", test_rows_csv_fields},
	{"rows_jsonl", test_rows_jsonl},
	{"rows_json_depth", test_rows_json_depth},
	{"rows_json_array_pretty", test_rows_json_array_pretty},
	{"rows_json_array_compact", test_rows_json_array_compact},
	{"rows_json_array_malformed", test_rows_json_array_malformed},
	{"rows_json_array_depth", test_rows_json_array_depth},
	{"rows_sticky", test_rows_sticky},
	{"rows_max_lines", test_rows_max_lines},
	{"rows_max_quoted", test_rows_max_quoted},
	{"rows_stream_random", test_rows_stream_random},
	{"rows_guess", test_rows_guess},
	{"rows_real_data", test_rows_real_data},
	{NULL, NULL}
};
