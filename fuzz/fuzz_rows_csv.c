/*
 * fuzz_rows_csv.c -- libFuzzer target for the csv and tsv row scanners.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_rows_csv fuzz/corpus/rows_csv
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a whole file, cut as csv and as tsv, each whole and through
 * growing windows (fuzz_rows.h checks tiling, row lengths, fields and that
 * both ways agree).  Then the csv rules: the two formats cut the same rows
 * (quotes alone decide where a row ends); every row holds an even number
 * of '"' and ends with '\n' except the last; the scan is malformed only for
 * an open quote at the end, with the reason "unbalanced quote".
 */
#include "fuzz_rows.h"

/* Abort unless the csv rows keep the quote and newline rules. */
static void
check_csv_rows(const uint8_t *data, size_t size, const fr_result *r)
{
	size_t		pos = 0;

	for (size_t i = 0; i < r->n_rows; i++)
	{
		size_t		len = r->len[i];

		if (fr_quotes(data + pos, len) % 2 != 0)
			fr_die("csv row %zu holds an odd number of quotes", i);
		if (data[pos + len - 1] != '\n' && pos + len != size)
			fr_die("csv row %zu does not end with a newline", i);
		pos += len;
	}
	if (r->last == -1 && strcmp(r->why, "unbalanced quote") != 0)
		fr_die("csv malformed for another reason than a quote: %s", r->why);
	if (r->last == -1 && fr_quotes(data + pos, size - pos) % 2 == 0)
		fr_die("csv malformed with balanced quotes left");
}

/* Cut the input as csv and tsv; check both and that they agree. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fr_result	csv = {0},
				tsv = {0};

	fr_scan(SP_ROWS_CSV, data, size, &csv);
	fr_scan(SP_ROWS_TSV, data, size, &tsv);
	fr_same("csv vs tsv", &csv, &tsv);
	check_csv_rows(data, size, &csv);
	free(csv.len);
	free(tsv.len);
	return 0;
}
