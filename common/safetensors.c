/*
 * safetensors.c -- validating parser for safetensors headers.
 *
 * Layout: u64 LE header length N, N bytes of JSON, then the data region.
 * The JSON is parsed with cJSON (bounded by SP_ST_MAX_HEADER and by the real
 * file size, both checked before anything is allocated).  Every number read
 * is checked: shapes must be non-negative integers whose product times the
 * dtype size does not overflow and equals the byte length; offsets must lie
 * inside the data region; no two non-empty tensors may overlap.  Tensors come
 * back sorted by offset with absolute file offsets.
 */
#include "safetensors.h"

#include <stdlib.h>

#include <cjson/cJSON.h>

#include "util.h"

static const struct
{
	const char *name;
	int			size;
}			dtype_table[SP_DT_COUNT] = {
	[SP_DT_BOOL] = {"BOOL", 1}, [SP_DT_U8] = {"U8", 1}, [SP_DT_I8] = {"I8", 1},
	[SP_DT_F8_E5M2] = {"F8_E5M2", 1}, [SP_DT_F8_E4M3] = {"F8_E4M3", 1},
	[SP_DT_I16] = {"I16", 2}, [SP_DT_U16] = {"U16", 2}, [SP_DT_F16] = {"F16", 2},
	[SP_DT_BF16] = {"BF16", 2}, [SP_DT_I32] = {"I32", 4}, [SP_DT_U32] = {"U32", 4},
	[SP_DT_F32] = {"F32", 4}, [SP_DT_I64] = {"I64", 8}, [SP_DT_U64] = {"U64", 8},
	[SP_DT_F64] = {"F64", 8},
};

/* Element size in bytes of a dtype. */
int
sp_dtype_size(sp_dtype dt)
{
	return (unsigned) dt < SP_DT_COUNT ? dtype_table[dt].size : 0;
}

/* Name of a dtype as safetensors writes it. */
const char *
sp_dtype_name(sp_dtype dt)
{
	return (unsigned) dt < SP_DT_COUNT ? dtype_table[dt].name : NULL;
}

/* Look up a dtype by its safetensors name; -1 if unknown. */
static int
dtype_from_name(const char *s)
{
	for (int i = 0; i < SP_DT_COUNT; i++)
		if (strcmp(dtype_table[i].name, s) == 0)
			return i;
	return -1;
}

/* Read a JSON number that must be a non-negative integer below 2^53. */
static bool
json_u64(const cJSON *item, uint64_t *out)
{
	double		v;

	if (!cJSON_IsNumber(item))
		return false;
	v = item->valuedouble;
	if (!(v >= 0) || v > 9007199254740992.0 || v != (double) (uint64_t) v)
		return false;
	*out = (uint64_t) v;
	return true;
}

/* Fill t from one header entry; offsets still relative to the data region. */
static sp_status
parse_entry(sp_ctx *ctx, const char *file, const cJSON *e, sp_tensor *t)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const cJSON *d;
	uint64_t	numel = 1,
				nbytes;
	int			code;

	if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
		!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
		return sp_fail(ctx, SP_ERR_BAD_JSON,
					   "invalid safetensors header in \"%s\": tensor \"%s\" needs dtype, shape and data_offsets",
					   file, e->string);
	code = dtype_from_name(dt->valuestring);
	if (code < 0)
		return sp_fail(ctx, SP_ERR_UNKNOWN_DTYPE,
					   "unknown dtype \"%.40s\" for tensor \"%s\" in \"%s\"",
					   dt->valuestring, e->string, file);
	t->dtype = (sp_dtype) code;
	t->ndim = 0;
	cJSON_ArrayForEach(d, shape)
	{
		uint64_t	dim;

		if (t->ndim >= SP_ST_MAX_DIMS || !json_u64(d, &dim))
			return sp_fail(ctx, SP_ERR_BAD_JSON,
						   "invalid shape for tensor \"%s\" in \"%s\"", e->string, file);
		t->shape[t->ndim++] = dim;
		if (__builtin_mul_overflow(numel, dim, &numel))
			return sp_fail(ctx, SP_ERR_SHAPE_MISMATCH,
						   "shape of tensor \"%s\" in \"%s\" is too large", e->string, file);
	}
	if (!json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) ||
		!json_u64(cJSON_GetArrayItem(offs, 1), &t->end))
		return sp_fail(ctx, SP_ERR_BAD_JSON,
					   "invalid data_offsets for tensor \"%s\" in \"%s\"", e->string, file);
	if (t->end < t->begin)
		return sp_fail(ctx, SP_ERR_BAD_OFFSETS,
					   "data_offsets of tensor \"%s\" in \"%s\" end before they begin",
					   e->string, file);
	if (__builtin_mul_overflow(numel, (uint64_t) sp_dtype_size(t->dtype), &nbytes) ||
		nbytes != t->end - t->begin)
		return sp_fail(ctx, SP_ERR_SHAPE_MISMATCH,
					   "tensor \"%s\" in \"%s\" has %llu bytes but its shape and dtype need %llu",
					   e->string, file, (unsigned long long) (t->end - t->begin),
					   (unsigned long long) numel * sp_dtype_size(t->dtype));
	return SP_OK;
}

/* Order tensors by offset (then end) for the overlap check and the encoder. */
static int
cmp_offset(const void *a, const void *b)
{
	const sp_tensor *x = a,
			   *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

/* Order tensor pointers by name. */
static int
cmp_name(const void *a, const void *b)
{
	return strcmp((*(sp_tensor *const *) a)->name, (*(sp_tensor *const *) b)->name);
}

/* A name may appear once: pairing by name would otherwise be ambiguous. */
static sp_status
check_unique(sp_ctx *ctx, const char *file, sp_st_header *h)
{
	sp_tensor **byname;
	sp_status	rc = SP_OK;

	if (h->n < 2)
		return SP_OK;
	if ((byname = sp_alloc(ctx, h->n * sizeof(sp_tensor *))) == NULL)
		return SP_ERR_NOMEM;
	for (size_t i = 0; i < h->n; i++)
		byname[i] = &h->t[i];
	qsort(byname, h->n, sizeof(sp_tensor *), cmp_name);
	for (size_t i = 1; i < h->n && rc == SP_OK; i++)
		if (strcmp(byname[i - 1]->name, byname[i]->name) == 0)
			rc = sp_fail(ctx, SP_ERR_BAD_JSON,
						 "invalid safetensors header in \"%s\": tensor \"%s\" appears twice",
						 file, byname[i]->name);
	sp_free(ctx, byname);
	return rc;
}

/* Check data offsets against the data region and each other; make them absolute. */
static sp_status
check_offsets(sp_ctx *ctx, const char *file, sp_st_header *h)
{
	uint64_t	region = h->file_size - h->data_start;
	uint64_t	max_end = 0;

	qsort(h->t, h->n, sizeof(sp_tensor), cmp_offset);
	for (size_t i = 0; i < h->n; i++)
	{
		sp_tensor  *t = &h->t[i];

		if (t->end > region)
			return sp_fail(ctx, SP_ERR_BAD_OFFSETS,
						   "data_offsets of tensor \"%s\" in \"%s\" point past the end of the file",
						   t->name, file);
		if (t->end > t->begin && t->begin < max_end)
			return sp_fail(ctx, SP_ERR_BAD_OFFSETS,
						   "tensor \"%s\" in \"%s\" overlaps another tensor", t->name, file);
		if (t->end > t->begin)
			max_end = SP_MAX(max_end, t->end);
		t->begin += h->data_start;
		t->end += h->data_start;
	}
	return SP_OK;
}

/* Copy every entry of the JSON object into h->t. */
static sp_status
collect_tensors(sp_ctx *ctx, const char *file, const cJSON *root, sp_st_header *h)
{
	const cJSON *e;
	size_t		count = 0;

	cJSON_ArrayForEach(e, root)
		if (strcmp(e->string, "__metadata__") != 0)
		count++;
	h->t = sp_calloc(ctx, count ? count : 1, sizeof(sp_tensor));
	if (h->t == NULL)
		return SP_ERR_NOMEM;
	cJSON_ArrayForEach(e, root)
	{
		sp_tensor  *t;

		if (strcmp(e->string, "__metadata__") == 0)
		{
			if (!cJSON_IsObject(e))
				return sp_fail(ctx, SP_ERR_BAD_JSON,
							   "invalid safetensors header in \"%s\": __metadata__ is not an object", file);
			continue;
		}
		if (h->n % 4096 == 4095 && sp_check_interrupt(ctx) != SP_OK)
			return ctx->err.code;
		t = &h->t[h->n];
		if ((t->name = sp_strdup(ctx, e->string)) == NULL)
			return SP_ERR_NOMEM;
		h->n++;
		if (parse_entry(ctx, file, e, t) != SP_OK)
			return ctx->err.code;
	}
	return SP_OK;
}

/* Check the 8-byte length prefix against the file size and the limit. */
static sp_status
check_prefix(sp_ctx *ctx, const char *file, const uint8_t *buf, size_t buf_len,
			 uint64_t file_size, sp_st_header *out)
{
	if (file_size < 10 || buf_len < 9)
		return sp_fail(ctx, SP_ERR_NOT_SAFETENSORS,
					   "\"%s\" is not a safetensors file: it is too short", file);
	out->header_len = sp_get64(buf);
	if (out->header_len > file_size - 8)
		return sp_fail(ctx, SP_ERR_HEADER_TOO_LARGE,
					   "safetensors header length %llu in \"%s\" is larger than the file (%llu bytes)",
					   (unsigned long long) out->header_len, file, (unsigned long long) file_size);
	if (out->header_len > SP_ST_MAX_HEADER)
		return sp_fail(ctx, SP_ERR_HEADER_TOO_LARGE,
					   "safetensors header length %llu in \"%s\" exceeds the limit of %u bytes",
					   (unsigned long long) out->header_len, file, SP_ST_MAX_HEADER);
	if (buf[8] != '{')
		return sp_fail(ctx, SP_ERR_NOT_SAFETENSORS,
					   "\"%s\" is not a safetensors file: its header does not start with '{'", file);
	if (buf_len < 8 + out->header_len)
		return sp_fail(ctx, SP_ERR_INTERNAL, "header of \"%s\" was not read in full", file);
	out->data_start = 8 + out->header_len;
	out->file_size = file_size;
	return SP_OK;
}

/* Parse and validate a safetensors header. */
/*
 * Bound the JSON values in a header before cJSON builds its tree (which
 * takes ~64 bytes a value, outside the caller's allocator): every value but
 * the root follows a ':', '[' or ',', so counting those bounds the nodes.
 */
static sp_status
check_value_count(sp_ctx *ctx, const char *file, const uint8_t *json, uint64_t len)
{
	uint64_t	count = 0;

	for (uint64_t i = 0; i < len; i++)
		count += json[i] == ':' || json[i] == '[' || json[i] == ',';
	if (count > SP_ST_MAX_VALUES)
		return sp_fail(ctx, SP_ERR_HEADER_TOO_LARGE,
					   "safetensors header of \"%s\" has more than %d JSON values",
					   file, SP_ST_MAX_VALUES);
	return SP_OK;
}

/* Parse and validate a safetensors header. */
sp_status
sp_st_parse(sp_ctx *ctx, const char *file, const uint8_t *buf, size_t buf_len,
			uint64_t file_size, sp_st_header *out)
{
	cJSON	   *root;
	sp_status	st;

	memset(out, 0, sizeof(*out));
	if (check_prefix(ctx, file, buf, buf_len, file_size, out) != SP_OK ||
		check_value_count(ctx, file, buf + 8, out->header_len) != SP_OK)
		return ctx->err.code;
	root = cJSON_ParseWithLength((const char *) buf + 8, out->header_len);
	if (root == NULL || !cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return sp_fail(ctx, SP_ERR_BAD_JSON,
					   "invalid safetensors header in \"%s\": not a JSON object", file);
	}
	st = collect_tensors(ctx, file, root, out);
	cJSON_Delete(root);
	if (st == SP_OK)
		st = check_unique(ctx, file, out);
	if (st == SP_OK)
		st = check_offsets(ctx, file, out);
	if (st != SP_OK)
		sp_st_free(ctx, out);
	return st;
}

/* Free a parsed header. */
void
sp_st_free(sp_ctx *ctx, sp_st_header *h)
{
	for (size_t i = 0; i < h->n; i++)
		sp_free(ctx, h->t[i].name);
	sp_free(ctx, h->t);
	h->t = NULL;
	h->n = 0;
}
