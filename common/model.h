/*
 * model.h -- a model as the encoder sees it (internal): its files, the parsed
 * header of each safetensors file, and a by-name index of every tensor across
 * all shards, so tensors pair by name whatever their order, offset or shard.
 */
#ifndef SPARSE_MODEL_H
#define SPARSE_MODEL_H

#include "files.h"
#include "safetensors.h"

/* A tensor of the model: which file, which header entry. */
typedef struct sp_tref
{
	const char *name;
	uint32_t	file;
	const sp_tensor *t;
} sp_tref;

typedef struct sp_model
{
	sp_fileset	fs;
	sp_st_header *hdr;			/* per file; n == 0 for other files */
	sp_tref    *map;			/* every tensor, sorted by name */
	size_t		nmap;
} sp_model;

/* Is rel the name of a safetensors file? */
bool		sp_is_safetensors_name(const char *rel);

/* Read and parse the header of safetensors file idx of fs. */
sp_status	sp_read_st_header(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_st_header *h);

/*
 * Parse file idx as safetensors if it is one.  A file named *.safetensors
 * must parse (its error is returned); any other file is sniffed: it is
 * treated as safetensors when its header parses, else *is_st is false and
 * SP_OK is returned.
 */
sp_status	sp_load_header(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_st_header *h,
						   bool *is_st);

/* Open a model from a path and index its tensors (index_tensors: base side). */
sp_status	sp_model_open(sp_ctx *ctx, const char *path, bool index_tensors, sp_model *m);

/* A one-file model over a buffer. */
sp_status	sp_model_mem(sp_ctx *ctx, const char *name, const void *buf, size_t len,
						 bool index_tensors, sp_model *m);

void		sp_model_close(sp_ctx *ctx, sp_model *m);

/* Find a tensor by name; NULL if absent. */
const sp_tref *sp_model_lookup(const sp_model *m, const char *name);

/*
 * The base tensor fine-tune tensor t pairs with (same name, same dtype or a
 * convertible float dtype), or NULL; *paired gets the bytes of t that pair
 * (the common prefix, in whole elements).
 */
const sp_tref *sp_pair_tensor(const sp_model *base, const sp_tensor *t, uint64_t *paired);

/* The base file a fine-tune file is coded against, or -1. */
long		sp_partner(const sp_model *base, const sp_fileset *ft, size_t idx,
					   const sp_st_header *fh);

#endif							/* SPARSE_MODEL_H */
