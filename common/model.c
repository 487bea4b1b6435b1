/*
 * model.c -- open a model (file, directory or buffer), parse every
 * safetensors header and index tensors by name for pairing.
 *
 * A file is treated as safetensors when its name ends in ".safetensors"; it
 * must then parse (a corrupt shard is an error, not silently stored as bytes).
 */
#include "model.h"

#include <stdlib.h>

#include "codec.h"
#include "util.h"

/* Is rel named like a safetensors file? */
bool
sp_is_safetensors_name(const char *rel)
{
	size_t		n = strlen(rel),
				s = strlen(".safetensors");

	return n >= s && strcmp(rel + n - s, ".safetensors") == 0;
}

/* Read and parse the header of safetensors file idx. */
sp_status
sp_read_st_header(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_st_header *h)
{
	const sp_file *f = &fs->f[idx];
	const char *shown = f->path ? f->path : f->rel;
	uint8_t		prefix[9] = {0};
	uint8_t    *buf;
	uint64_t	len;
	sp_status	rc;

	memset(h, 0, sizeof(*h));
	if (f->size < 10)
		return sp_st_parse(ctx, shown, prefix, 0, f->size, h);
	if (sp_fileset_read(ctx, fs, idx, 0, prefix, 9) != SP_OK)
		return ctx->err.code;
	len = sp_get64(prefix);
	/* checked against the file size and the limit before allocating */
	if (len > f->size - 8 || len > SP_ST_MAX_HEADER || prefix[8] != '{')
		return sp_st_parse(ctx, shown, prefix, 9, f->size, h);
	if ((buf = sp_alloc(ctx, (size_t) len + 8)) == NULL)
		return SP_ERR_NOMEM;
	rc = sp_fileset_read(ctx, fs, idx, 0, buf, (size_t) len + 8);
	if (rc == SP_OK)
		rc = sp_st_parse(ctx, shown, buf, (size_t) len + 8, f->size, h);
	sp_free(ctx, buf);
	return rc;
}

/* Parse file idx as safetensors when it is one (named or sniffed). */
sp_status
sp_load_header(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_st_header *h, bool *is_st)
{
	bool		named = sp_is_safetensors_name(fs->f[idx].rel);
	sp_status	rc = sp_read_st_header(ctx, fs, idx, h);

	*is_st = rc == SP_OK;
	if (rc == SP_OK || named || rc == SP_ERR_IO || rc == SP_ERR_NOMEM || rc == SP_ERR_CANCELLED)
		return rc;
	sp_clear_error(ctx);		/* not a safetensors file: coded as bytes */
	return SP_OK;
}

/* Order tensor references by name. */
static int
cmp_tref(const void *a, const void *b)
{
	return strcmp(((const sp_tref *) a)->name, ((const sp_tref *) b)->name);
}

/* Parse every safetensors header of m and build the name index. */
static sp_status
model_index(sp_ctx *ctx, sp_model *m)
{
	size_t		total = 0,
				k = 0;

	m->hdr = sp_calloc(ctx, m->fs.n ? m->fs.n : 1, sizeof(sp_st_header));
	if (m->hdr == NULL)
		return SP_ERR_NOMEM;
	for (size_t i = 0; i < m->fs.n; i++)
	{
		bool		is_st;

		if (sp_check_interrupt(ctx) != SP_OK ||
			sp_load_header(ctx, &m->fs, i, &m->hdr[i], &is_st) != SP_OK)
			return ctx->err.code;
		total += m->hdr[i].n;
	}
	if ((m->map = sp_calloc(ctx, total ? total : 1, sizeof(sp_tref))) == NULL)
		return SP_ERR_NOMEM;
	for (size_t i = 0; i < m->fs.n; i++)
		for (size_t j = 0; j < m->hdr[i].n; j++)
			m->map[k++] = (sp_tref)
		{
			m->hdr[i].t[j].name, (uint32_t) i, &m->hdr[i].t[j]
		};
	m->nmap = total;
	qsort(m->map, total, sizeof(sp_tref), cmp_tref);
	return SP_OK;
}

/* Open a model from a path, indexing its tensors if asked. */
sp_status
sp_model_open(sp_ctx *ctx, const char *path, bool index_tensors, sp_model *m)
{
	memset(m, 0, sizeof(*m));
	if (sp_fileset_open(ctx, path, &m->fs) != SP_OK)
		return ctx->err.code;
	if (index_tensors && model_index(ctx, m) != SP_OK)
	{
		sp_model_close(ctx, m);
		return ctx->err.code;
	}
	return SP_OK;
}

/* A one-file model over a buffer. */
sp_status
sp_model_mem(sp_ctx *ctx, const char *name, const void *buf, size_t len,
			 bool index_tensors, sp_model *m)
{
	memset(m, 0, sizeof(*m));
	if (sp_fileset_mem(ctx, name, buf, len, &m->fs) != SP_OK)
		return ctx->err.code;
	if (index_tensors && model_index(ctx, m) != SP_OK)
	{
		sp_model_close(ctx, m);
		return ctx->err.code;
	}
	return SP_OK;
}

/* Release a model. */
void
sp_model_close(sp_ctx *ctx, sp_model *m)
{
	if (m->hdr)
		for (size_t i = 0; i < m->fs.n; i++)
			sp_st_free(ctx, &m->hdr[i]);
	sp_free(ctx, m->hdr);
	sp_free(ctx, m->map);
	sp_fileset_close(ctx, &m->fs);
	memset(m, 0, sizeof(*m));
}

/* Find a tensor of the model by name. */
const sp_tref *
sp_model_lookup(const sp_model *m, const char *name)
{
	sp_tref		key = {name, 0, NULL};

	return m->nmap ? bsearch(&key, m->map, m->nmap, sizeof(sp_tref), cmp_tref) : NULL;
}

/* The base tensor t pairs with, and how many of its bytes pair. */
const sp_tref *
sp_pair_tensor(const sp_model *base, const sp_tensor *t, uint64_t *paired)
{
	const sp_tref *r = sp_model_lookup(base, t->name);
	uint64_t	w = (uint64_t) sp_dtype_size(t->dtype);

	*paired = 0;
	if (r == NULL || (r->t->dtype != t->dtype && !sp_convertible(r->t->dtype, t->dtype)))
		return NULL;
	*paired = SP_MIN((t->end - t->begin) / w,
					 (r->t->end - r->t->begin) / (uint64_t) sp_dtype_size(r->t->dtype)) * w;
	return r;
}

/* The base file a fine-tune file is coded against, or -1. */
long
sp_partner(const sp_model *base, const sp_fileset *ft, size_t idx, const sp_st_header *fh)
{
	long		same = sp_fileset_find(&base->fs, ft->f[idx].rel);
	long		best = -1;
	size_t	   *votes;

	if (!base->fs.is_dir && !ft->is_dir)
		return 0;
	if (same >= 0 || fh == NULL || fh->n == 0 || base->fs.n == 0)
		return same;
	/* a re-sharded file: the base shard holding most of its tensors */
	votes = calloc(base->fs.n, sizeof(size_t));
	if (votes == NULL)
		return -1;
	for (size_t j = 0; j < fh->n; j++)
	{
		const sp_tref *r = sp_model_lookup(base, fh->t[j].name);

		if (r && ++votes[r->file] > (best >= 0 ? votes[best] : 0))
			best = r->file;
	}
	free(votes);
	return best;
}
