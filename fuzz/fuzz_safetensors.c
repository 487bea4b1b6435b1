/*
 * fuzz_safetensors.c -- libFuzzer target for the safetensors header parser.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_safetensors fuzz/corpus/safetensors
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a whole file.  sp_st_parse gets it twice: with file_size equal
 * to the input length, and with a larger file_size (as when only the header
 * region of a big file was read), so a parser that trusted file_size over
 * buf_len would read out of bounds under ASan.  On SP_OK every promise of
 * safetensors.h is checked and a violation aborts: tensors sorted by begin,
 * non-empty tensors not overlapping, all inside [data_start, file_size],
 * end - begin == product(shape) * sp_dtype_size, known dtype, sane ndim.  On
 * failure ctx.err must match the returned status (fz_check_error).
 */
#include "fuzz_common.h"

/* Abort unless h keeps every promise of sp_st_parse for this input. */
static void
check_header(const sp_ctx *ctx, const uint8_t *data, size_t size,
			 uint64_t file_size, const sp_st_header *h)
{
	uint64_t	n = 0;

	for (int i = 0; i < 8; i++)
		n |= (uint64_t) data[i] << (8 * i);
	if (h->header_len != n || h->data_start != 8 + n || h->file_size != file_size ||
		h->data_start > file_size || h->data_start > size)
		fz_die("header_len/data_start/file_size disagree with the input", ctx);
	if (h->n > 0 && h->t == NULL)
		fz_die("tensors counted but no array", ctx);
	for (size_t i = 0; i < h->n; i++)
	{
		const sp_tensor *t = &h->t[i];
		uint64_t	bytes = (uint64_t) sp_dtype_size(t->dtype);

		if (t->name == NULL || (unsigned) t->dtype >= SP_DT_COUNT ||
			t->ndim < 0 || t->ndim > SP_ST_MAX_DIMS)
			fz_die("tensor without name, with unknown dtype or bad ndim", ctx);
		if (t->begin < h->data_start || t->begin > t->end || t->end > file_size)
			fz_die("tensor outside [data_start, file_size]", ctx);
		for (int d = 0; d < t->ndim; d++)
			if (__builtin_mul_overflow(bytes, t->shape[d], &bytes))
				fz_die("shape product overflows but was accepted", ctx);
		if (bytes != t->end - t->begin)
			fz_die("end - begin != product(shape) * dtype size", ctx);
		if (i > 0 && h->t[i - 1].begin > t->begin)
			fz_die("tensors not sorted by begin", ctx);
	}
	for (size_t i = 0, max_end = 0; i < h->n; i++)
	{
		/* non-empty tensors must not overlap; empty ones may sit anywhere */
		if (h->t[i].end == h->t[i].begin)
			continue;
		if (h->t[i].begin < max_end)
			fz_die("two non-empty tensors overlap", ctx);
		max_end = h->t[i].end;
	}
}

/* Parse with the given file size; check invariants or the error. */
static void
parse_once(const uint8_t *data, size_t size, uint64_t file_size)
{
	sp_ctx		ctx;
	sp_st_header h;
	sp_status	st;

	fz_ctx_init(&ctx, 0, 0);
	st = sp_st_parse(&ctx, "fuzz", data, size, file_size, &h);
	if (st == SP_OK)
	{
		check_header(&ctx, data, size, file_size, &h);
		sp_st_free(&ctx, &h);
		return;
	}
	if (st == SP_ERR_INTERNAL && file_size > size)
		return;					/* documented: header not in buf when the file is larger */
	fz_check_error(&ctx, st);
}

/* Parse a safetensors file from the fuzzer, then again as a longer file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_once(data, size, size);
	if (size > 0)
		parse_once(data, size, (uint64_t) size + 4096u * data[size - 1]);
	return 0;
}
