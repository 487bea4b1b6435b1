/*
 * fuzz_rows_jsonl.c -- libFuzzer target for the jsonl and lines row scanners
 * and the JSON object field cutter, plus sp_rowfmt_guess.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_rows_jsonl fuzz/corpus/rows_jsonl
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a whole file, cut as jsonl and as lines, each whole and
 * through growing windows (fuzz_rows.h checks tiling, row lengths, fields
 * and that both ways agree).  Then the line rules: both formats cut the
 * same rows, each ends with its only '\n' (the last may have none), and
 * neither is ever malformed (inputs stay far below SP_ROW_MAX).  Last,
 * sp_rowfmt_guess must name a known format for the input under a few names
 * and agree with the rules on content (a NUL byte or "PAR1" means binary).
 */
#include "fuzz_rows.h"

/* Abort unless the rows are lines: one '\n', at the end. */
static void
check_line_rows(const uint8_t *data, size_t size, const fr_result *r)
{
	size_t		pos = 0;

	if (r->last != 0)
		fr_die("lines malformed: %s", r->why);
	for (size_t i = 0; i < r->n_rows; i++)
	{
		const uint8_t *nl = memchr(data + pos, '\n', r->len[i]);

		if (nl != NULL ? nl != data + pos + r->len[i] - 1 : pos + r->len[i] != size)
			fr_die("line row %zu does not end at its first newline", i);
		pos += r->len[i];
	}
}

/* Abort unless sp_rowfmt_guess answers sanely for this head. */
static void
check_guess(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"a.csv", "b.TSV", "c.jsonl", "d.json",
	"e.parquet", "f.txt", "g", NULL};
	bool		binary = memchr(data, '\0', size) != NULL ||
		(size >= 4 && memcmp(data, "PAR1", 4) == 0);

	for (int i = 0; i < 8; i++)
	{
		sp_rowfmt	f = sp_rowfmt_guess(names[i], data, size);

		if ((unsigned) f >= SP_ROWS_COUNT || sp_rowfmt_name(f) == NULL)
			fr_die("guess(%s) out of range", names[i] ? names[i] : "NULL");
		if (binary != (f == SP_ROWS_NONE) && i != 4)
			fr_die("guess(%s) = %s for a head %s binary", names[i] ? names[i] : "NULL",
				   sp_rowfmt_name(f), binary ? "that is" : "that is not");
	}
}

/* Cut the input as jsonl and lines; check both and that they agree. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fr_result	jsonl = {0},
				lines = {0};

	fr_scan(SP_ROWS_JSONL, data, size, &jsonl);
	fr_scan(SP_ROWS_LINES, data, size, &lines);
	fr_same("jsonl vs lines", &jsonl, &lines);
	check_line_rows(data, size, &jsonl);
	check_guess(data, size);
	free(jsonl.len);
	free(lines.len);
	return 0;
}
