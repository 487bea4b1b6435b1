/*
 * codec.h -- encoding of one chunk (internal): tensor chunks coded against
 * the matching base bytes, and generic chunks coded by zstd with a window of
 * the base file as its prefix.  Chunks are independent of each other, so a
 * chunk can be encoded, decoded, sampled or skipped on its own.
 */
#ifndef SPARSE_CODEC_H
#define SPARSE_CODEC_H

#include <zstd.h>

#include "safetensors.h"

#define SP_TENSOR_CHUNK (1u << 20)	/* bytes of tensor data per chunk */
#define SP_ZSTD_CHUNK (4u << 20)	/* bytes of other data per chunk */
#define SP_CHUNK_MAX SP_ZSTD_CHUNK	/* largest decoded chunk accepted */
#define SP_PREFIX_BEFORE (2u << 20) /* base window before a generic chunk */
#define SP_PREFIX_AFTER (6u << 20)	/* base window from a generic chunk on */
#define SP_PREFIX_MAX (SP_PREFIX_BEFORE + SP_PREFIX_AFTER)

/*
 * The window of a partner base file (psize bytes) used as the zstd prefix
 * for a generic chunk at offset off: from SP_PREFIX_BEFORE before it, at
 * most SP_PREFIX_MAX bytes, clipped to the file.
 */
static inline void
sp_prefix_window(uint64_t off, uint64_t psize, uint64_t *boff, uint64_t *blen)
{
	*boff = off > SP_PREFIX_BEFORE ? off - SP_PREFIX_BEFORE : 0;
	if (*boff > psize)
		*boff = psize;
	*blen = psize - *boff < SP_PREFIX_MAX ? psize - *boff : SP_PREFIX_MAX;
}

/* Transforms of a tensor chunk against its base. */
enum
{
	SP_TR_NONE = 0,				/* byte planes of the values themselves */
	SP_TR_XOR = 1,				/* byte planes of ft XOR base */
	SP_TR_SUB = 2,				/* zigzag of order-preserving integer difference */
	SP_TR_CM = 3,				/* that difference context-modelled (tensorcm.h) */
	SP_TR_COUNT
};

/* How one byte plane is stored. */
enum
{
	SP_PLANE_ZSTD = 0, SP_PLANE_RAW = 1, SP_PLANE_CONST = 2
};

/*
 * When the CM transform is tried: it codes and decodes about 30-50 MB/s per
 * core (apply decodes a chunk's two halves on two threads) where byte
 * planes code about 1 GB/s, for 6-30% smaller deltas on the
 * shared pairs, so it is used on every float chunk from level SP_CM_LEVEL
 * on, and from level 3 on for fine-tunes of at most SP_CM_SMALL bytes
 * (adapters and small models, where it costs seconds at most).
 */
#define SP_CM_LEVEL 10
#define SP_CM_SMALL (256ull << 20)
static inline bool
sp_cm_wanted(int level, uint64_t ft_bytes)
{
	return level >= SP_CM_LEVEL || (level >= 3 && ft_bytes <= SP_CM_SMALL);
}

/* Where a tensor chunk sits in its tensor, for the CM transform. */
typedef struct sp_tgeom
{
	bool		cm;				/* try the CM transform */
	uint32_t	cols;			/* elements per row (the last dimension) */
	uint32_t	col0;			/* column of the chunk's first element */
} sp_tgeom;

/* The geometry of a chunk starting elem elements into tensor t. */
sp_tgeom	sp_tgeom_for(const sp_tensor *t, uint64_t elem, bool cm);

struct sp_cm;

/* Scratch state for coding chunks; one per thread. */
typedef struct sp_codec
{
	ZSTD_CCtx  *cctx;
	ZSTD_DCtx  *dctx;
	uint8_t    *planar;			/* transformed words split into byte planes */
	uint8_t    *probe;			/* encoded probe output */
	size_t		cap;			/* size of planar (grown on demand) */
	struct sp_cm *cm;			/* CM transform state (on first use) */
} sp_codec;

/* Worst-case payload size of a chunk of n bytes. */
size_t		sp_codec_bound(size_t n);

sp_status	sp_codec_init(sp_ctx *ctx, sp_codec *c);
void		sp_codec_free(sp_ctx *ctx, sp_codec *c);

/*
 * Encode n bytes of a tensor (dtype dt) against base (NULL: no base).  The
 * transform is chosen per chunk (the CM transform as well when g says so;
 * g may be NULL); the payload goes to out (cap >= bound).
 */
sp_status	sp_codec_encode_tensor(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt,
								   const uint8_t *ft, const uint8_t *base, size_t n,
								   const sp_tgeom *g, uint8_t *out, size_t cap,
								   size_t *out_len, uint8_t *transform);

/*
 * Encode with a given transform (the estimator reuses one choice per
 * tensor); SP_TR_CM needs g and falls back to SP_TR_SUB where it would not
 * be smaller (*used_transform says which was used).
 */
sp_status	sp_codec_encode_tensor_as(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt,
									  int transform, const uint8_t *ft, const uint8_t *base,
									  size_t n, const sp_tgeom *g, uint8_t *out, size_t cap,
									  size_t *out_len, uint8_t *used_transform);

/* Can base tensors of dtype from be converted to dtype to for pairing? */
bool		sp_convertible(sp_dtype from, sp_dtype to);

/* Convert n elements from one float dtype to another (round to nearest even). */
void		sp_convert(sp_dtype from, sp_dtype to, const uint8_t *src, uint8_t *dst, size_t n);

/* Decode a tensor chunk payload into ft (n bytes). */
sp_status	sp_codec_decode_tensor(sp_ctx *ctx, sp_codec *c, sp_dtype dt,
								   uint8_t transform, const uint8_t *base,
								   const uint8_t *payload, size_t plen,
								   uint8_t *ft, size_t n);

/* Compress n bytes with zstd, using prefix (may be empty) as reference. */
sp_status	sp_codec_encode_zstd(sp_ctx *ctx, sp_codec *c, int level,
								 const uint8_t *src, size_t n,
								 const uint8_t *prefix, size_t plen,
								 uint8_t *out, size_t cap, size_t *out_len);

/* Decompress exactly n bytes, using the same prefix. */
sp_status	sp_codec_decode_zstd(sp_ctx *ctx, sp_codec *c,
								 const uint8_t *prefix, size_t plen,
								 const uint8_t *payload, size_t plen_payload,
								 uint8_t *dst, size_t n);

#endif							/* SPARSE_CODEC_H */
