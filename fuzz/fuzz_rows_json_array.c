/*
 * fuzz_rows_json_array.c -- libFuzzer target for the json-array row
 * scanner and the field cutter of its elements.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_rows_json_array fuzz/corpus/rows_json_array
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a whole file, cut whole and through growing windows
 * (fuzz_rows.h checks tiling, row lengths, fields and that both ways agree).
 * Then the array rules on a scan that reached the end: at least two rows;
 * row 0 holds the first '[' after an optional BOM and whitespace, and ends
 * just before a byte that is not whitespace; element rows start with a byte
 * that is not whitespace, ',' or ']'; the last row starts with ']'.  A
 * malformed scan must give one of the documented reasons.
 */
#include "fuzz_rows.h"

/* Is c JSON whitespace? */
static bool
is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Abort unless a malformed reason is one the scanner documents. */
static void
check_reason(const char *why)
{
	static const char *const known[] = {
		"no '[' at the start", "array not closed", "expected a value",
		"expected ',' or ']' after an element", "mismatched bracket",
		"nesting deeper than 512", "row longer than 4 MiB", NULL
	};

	for (int i = 0; known[i] != NULL; i++)
		if (strcmp(why, known[i]) == 0)
			return;
	fr_die("json-array: unknown reason \"%s\"", why);
}

/* Abort unless row 0 is BOM, whitespace, '[' and whitespace. */
static void
check_preamble(const uint8_t *data, size_t len)
{
	size_t		i = 0;

	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len && is_ws(data[i]))
		i++;
	if (i == len || data[i] != '[')
		fr_die("json-array row 0 has no '['");
	for (i++; i < len; i++)
		if (!is_ws(data[i]))
			fr_die("json-array row 0 holds more than '[' and whitespace");
}

/* Abort unless the rows of a complete scan keep the array rules. */
static void
check_array_rows(const uint8_t *data, size_t size, const fr_result *r)
{
	size_t		pos;

	if (r->last == -1)
	{
		check_reason(r->why);
		return;
	}
	if (r->n_rows < 2)
		fr_die("json-array ended after %zu rows", r->n_rows);
	check_preamble(data, r->len[0]);
	if (is_ws(data[r->len[0]]))
		fr_die("json-array row 0 ends before whitespace");
	pos = r->len[0];
	for (size_t i = 1; i + 1 < r->n_rows; i++)
	{
		uint8_t		c = data[pos];

		if (is_ws(c) || c == ',' || c == ']' || c == '}' || c == ':')
			fr_die("json-array element row %zu starts with '%c'", i, c);
		pos += r->len[i];
	}
	if (data[pos] != ']' || pos + r->len[r->n_rows - 1] != size)
		fr_die("json-array last row is not ']' to the end");
}

/* Cut the input as a JSON array; check the rows and fields. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fr_result	r = {0};

	fr_scan(SP_ROWS_JSON_ARRAY, data, size, &r);
	check_array_rows(data, size, &r);
	free(r.len);
	return 0;
}
