/*
 * safetensors.h -- parser for the safetensors header (internal to common/).
 *
 * A safetensors file is: u64 little-endian N, N bytes of JSON header (an
 * object mapping tensor names to {dtype, shape, data_offsets}, plus an
 * optional "__metadata__" object of strings), then the data region.
 * sp_st_parse validates everything against the real file size before any
 * caller trusts an offset: header length, JSON shape, dtype, shape*size ==
 * byte length, offsets inside the data region, no two tensors overlapping.
 */
#ifndef SPARSE_SAFETENSORS_H
#define SPARSE_SAFETENSORS_H

#include "sparse.h"

/* Largest header accepted (the safetensors reference limit is 100 MB). */
#define SP_ST_MAX_HEADER (100u * 1000u * 1000u)
#define SP_ST_MAX_DIMS 16
/* Most JSON values a header may hold: bounds cJSON's memory (~64 bytes a value). */
#define SP_ST_MAX_VALUES 1000000

/* Every dtype the safetensors format defines. */
typedef enum sp_dtype
{
	SP_DT_BOOL, SP_DT_U8, SP_DT_I8, SP_DT_F8_E5M2, SP_DT_F8_E4M3,
	SP_DT_I16, SP_DT_U16, SP_DT_F16, SP_DT_BF16,
	SP_DT_I32, SP_DT_U32, SP_DT_F32,
	SP_DT_I64, SP_DT_U64, SP_DT_F64,
	SP_DT_COUNT
} sp_dtype;

/* One tensor, offsets already made absolute within the file. */
typedef struct sp_tensor
{
	char	   *name;
	sp_dtype	dtype;
	int			ndim;
	uint64_t	shape[SP_ST_MAX_DIMS];
	uint64_t	begin;			/* absolute file offset of the first byte */
	uint64_t	end;			/* absolute file offset one past the last byte */
} sp_tensor;

/* A parsed header; tensors sorted by begin offset. */
typedef struct sp_st_header
{
	uint64_t	header_len;		/* N */
	uint64_t	data_start;		/* 8 + N */
	uint64_t	file_size;
	size_t		n;
	sp_tensor  *t;
} sp_st_header;

/*
 * Parse a header.  buf holds at least the first min(file_size, 8 + N) bytes
 * of the file named name (used in messages); file_size is the real size.
 * On SP_ERR_TRUNCATED-like shortfalls (buf shorter than 8 + N but the file
 * is long enough) returns SP_ERR_INTERNAL: callers pass the whole header.
 */
sp_status	sp_st_parse(sp_ctx *ctx, const char *name, const uint8_t *buf,
						size_t buf_len, uint64_t file_size, sp_st_header *out);

/* Free a parsed header. */
void		sp_st_free(sp_ctx *ctx, sp_st_header *h);

/* Element size in bytes of a dtype (BOOL is 1). */
int			sp_dtype_size(sp_dtype dt);

/* Name of a dtype as safetensors writes it ("BF16"), or NULL. */
const char *sp_dtype_name(sp_dtype dt);

#endif							/* SPARSE_SAFETENSORS_H */
