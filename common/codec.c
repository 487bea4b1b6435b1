/*
 * codec.c -- chunk coding.
 *
 * Tensor chunks.  Fine-tuned weights sit close to their base, so the bit
 * patterns are transformed against the base first:
 *   XOR  t = ft ^ base;
 *   SUB  t = zigzag(map(ft) - map(base)), where map makes float bit patterns
 *        order-preserving integers (negative: ~x, positive: x | sign), so a
 *        small change in value is a small integer (as FM-Delta does);
 *   NONE t = ft (a tensor with no partner).
 * The w-byte words of t are split into w byte planes (low to high) and each
 * plane is stored as a constant, raw, or a zstd frame (zstd's Huffman/FSE
 * stages do the entropy coding).  The transform is chosen per chunk: both
 * are tried on a probe of up to 64 KiB and the smaller wins (at level >= 10
 * on the whole chunk).  Payload: for each plane, u8 mode then CONST: u8
 * value | RAW: n/w bytes | ZSTD: u32 length + frame.
 *
 * Generic chunks are one zstd frame, with a window of the partner base file
 * around the same offset as a reference prefix (zstd's patch-from mode).
 *
 * zstd allocates through the caller's hooks (ZSTD_customMem), so memory
 * accounting and failure behave like the rest of the core.
 */
#define ZSTD_STATIC_LINKING_ONLY
#include "codec.h"

#include <zstd_errors.h>

#include "util.h"

#define PROBE_BYTES (64u << 10)

size_t
sp_codec_bound(size_t n)
{
	return ZSTD_compressBound(n) + 8 * (1 + 4 + 64) + 64;
}

sp_status
sp_codec_init(sp_ctx *ctx, sp_codec *c)
{
	ZSTD_customMem mem = {ctx->hooks.alloc, ctx->hooks.free, ctx->hooks.user};

	memset(c, 0, sizeof(*c));
	c->cap = SP_CHUNK_MAX;
	c->cctx = ZSTD_createCCtx_advanced(mem);
	c->dctx = ZSTD_createDCtx_advanced(mem);
	c->trans = sp_alloc(ctx, c->cap);
	c->planar = sp_alloc(ctx, c->cap);
	c->probe = sp_alloc(ctx, sp_codec_bound(PROBE_BYTES));
	if (!c->cctx || !c->dctx || !c->trans || !c->planar || !c->probe)
	{
		sp_codec_free(ctx, c);
		return sp_fail(ctx, SP_ERR_NOMEM, "out of memory creating the codec");
	}
	return SP_OK;
}

void
sp_codec_free(sp_ctx *ctx, sp_codec *c)
{
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	sp_free(ctx, c->trans);
	sp_free(ctx, c->planar);
	sp_free(ctx, c->probe);
	memset(c, 0, sizeof(*c));
}

/* Does dtype dt hold floating-point bit patterns? */
static bool
dtype_is_float(sp_dtype dt)
{
	return dt == SP_DT_F16 || dt == SP_DT_BF16 || dt == SP_DT_F32 || dt == SP_DT_F64 ||
		dt == SP_DT_F8_E4M3 || dt == SP_DT_F8_E5M2;
}

/*
 * Forward and inverse transforms for one word width.  FMAP/FUNMAP make float
 * bit patterns order-preserving; ZZ/UNZZ fold the sign of a difference into
 * the low bit so small magnitudes leave the high planes zero.
 */
#define DEFINE_TRANSFORMS(W, T) \
static inline T fmap##W(T x, bool fl) { const T s = (T) ((T) 1 << (W - 1)); \
	return fl ? ((x & s) ? (T) ~x : (T) (x | s)) : x; } \
static inline T funmap##W(T y, bool fl) { const T s = (T) ((T) 1 << (W - 1)); \
	return fl ? ((y & s) ? (T) (y & (T) ~s) : (T) ~y) : y; } \
static void fwd##W(int tr, bool fl, const uint8_t *f, const uint8_t *b, uint8_t *t, size_t n) \
{ \
	const T *F = (const T *) f, *B = (const T *) b; T *O = (T *) t; \
	for (size_t i = 0; i < n; i++) { \
		T x, y, d; memcpy(&x, F + i, sizeof(T)); \
		if (tr == SP_TR_NONE) { memcpy(O + i, &x, sizeof(T)); continue; } \
		memcpy(&y, B + i, sizeof(T)); \
		if (tr == SP_TR_XOR) d = (T) (x ^ y); \
		else { d = (T) (fmap##W(x, fl) - fmap##W(y, fl)); \
			d = (T) ((T) (d << 1) ^ (T) (0 - (T) (d >> (W - 1)))); } \
		memcpy(O + i, &d, sizeof(T)); } \
} \
static void inv##W(int tr, bool fl, const uint8_t *t, const uint8_t *b, uint8_t *f, size_t n) \
{ \
	const T *I = (const T *) t, *B = (const T *) b; T *F = (T *) f; \
	for (size_t i = 0; i < n; i++) { \
		T d, y, x; memcpy(&d, I + i, sizeof(T)); \
		if (tr == SP_TR_NONE) { memcpy(F + i, &d, sizeof(T)); continue; } \
		memcpy(&y, B + i, sizeof(T)); \
		if (tr == SP_TR_XOR) x = (T) (d ^ y); \
		else { d = (T) ((T) (d >> 1) ^ (T) (0 - (T) (d & 1))); \
			x = funmap##W((T) (d + fmap##W(y, fl)), fl); } \
		memcpy(F + i, &x, sizeof(T)); } \
}

DEFINE_TRANSFORMS(8, uint8_t)
DEFINE_TRANSFORMS(16, uint16_t)
DEFINE_TRANSFORMS(32, uint32_t)
DEFINE_TRANSFORMS(64, uint64_t)

/* Apply transform tr to n bytes (words of width w). */
static void
transform_forward(int tr, sp_dtype dt, const uint8_t *f, const uint8_t *b, uint8_t *t, size_t n)
{
	bool		fl = dtype_is_float(dt);
	int			w = sp_dtype_size(dt);

	if (w == 1)
		fwd8(tr, fl, f, b, t, n);
	else if (w == 2)
		fwd16(tr, fl, f, b, t, n / 2);
	else if (w == 4)
		fwd32(tr, fl, f, b, t, n / 4);
	else
		fwd64(tr, fl, f, b, t, n / 8);
}

/* Undo transform tr. */
static void
transform_inverse(int tr, sp_dtype dt, const uint8_t *t, const uint8_t *b, uint8_t *f, size_t n)
{
	bool		fl = dtype_is_float(dt);
	int			w = sp_dtype_size(dt);

	if (w == 1)
		inv8(tr, fl, t, b, f, n);
	else if (w == 2)
		inv16(tr, fl, t, b, f, n / 2);
	else if (w == 4)
		inv32(tr, fl, t, b, f, n / 4);
	else
		inv64(tr, fl, t, b, f, n / 8);
}

/* Split words of width w into w planes (plane k = byte k of each word). */
static void
split_planes(const uint8_t *t, uint8_t *p, size_t n, int w)
{
	size_t		m = n / (size_t) w;

	if (w == 1)
	{
		memcpy(p, t, n);
		return;
	}
	for (size_t i = 0; i < m; i++)
		for (int k = 0; k < w; k++)
			p[(size_t) k * m + i] = t[i * (size_t) w + (size_t) k];
}

/* Interleave w planes back into words. */
static void
join_planes(const uint8_t *p, uint8_t *t, size_t n, int w)
{
	size_t		m = n / (size_t) w;

	if (w == 1)
	{
		memcpy(t, p, n);
		return;
	}
	for (size_t i = 0; i < m; i++)
		for (int k = 0; k < w; k++)
			t[i * (size_t) w + (size_t) k] = p[(size_t) k * m + i];
}

/* Store one plane of m bytes at out; returns bytes used or 0 on error. */
static size_t
encode_plane(sp_ctx *ctx, sp_codec *c, int level, const uint8_t *p, size_t m,
			 uint8_t *out, size_t cap)
{
	size_t		i = 1,
				z;

	while (i < m && p[i] == p[0])
		i++;
	if (m > 0 && i == m)
	{
		out[0] = SP_PLANE_CONST;
		out[1] = p[0];
		return 2;
	}
	z = ZSTD_compressCCtx(c->cctx, out + 5, cap - 5, p, m, level);
	if (ZSTD_isError(z))
	{
		sp_fail(ctx, ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation
				? SP_ERR_NOMEM : SP_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(z));
		return 0;
	}
	if (z >= m)
	{
		out[0] = SP_PLANE_RAW;
		memcpy(out + 1, p, m);
		return m + 1;
	}
	out[0] = SP_PLANE_ZSTD;
	sp_put32(out + 1, (uint32_t) z);
	return z + 5;
}

/* Transform with tr, split and store every plane; 0 on error. */
static size_t
encode_with(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt, int tr,
			const uint8_t *ft, const uint8_t *base, size_t n, uint8_t *out, size_t cap)
{
	int			w = sp_dtype_size(dt);
	size_t		m = n / (size_t) w,
				used = 0;

	transform_forward(tr, dt, ft, base, c->trans, n);
	split_planes(c->trans, c->planar, n, w);
	for (int k = 0; k < w; k++)
	{
		size_t		u = encode_plane(ctx, c, level, c->planar + (size_t) k * m, m,
									 out + used, cap - used);

		if (u == 0)
			return 0;
		used += u;
	}
	return used;
}

/* Pick the transform for a chunk by coding a probe (or all) both ways. */
static int
choose_transform(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt,
				 const uint8_t *ft, const uint8_t *base, size_t n)
{
	size_t		w = (size_t) sp_dtype_size(dt);
	size_t		pn = level >= 10 ? n : SP_MIN(n, PROBE_BYTES / w * w);
	size_t		cap = sp_codec_bound(pn);
	uint8_t    *buf = pn > PROBE_BYTES ? sp_alloc(ctx, cap) : c->probe;
	size_t		sub,
				xr;

	if (buf == NULL)
		return -1;
	sub = encode_with(ctx, c, level, dt, SP_TR_SUB, ft, base, pn, buf, cap);
	xr = encode_with(ctx, c, level, dt, SP_TR_XOR, ft, base, pn, buf, cap);
	if (buf != c->probe)
		sp_free(ctx, buf);
	if (sub == 0 || xr == 0)
		return -1;
	return xr < sub ? SP_TR_XOR : SP_TR_SUB;
}

sp_status
sp_codec_encode_tensor(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt,
					   const uint8_t *ft, const uint8_t *base, size_t n,
					   uint8_t *out, size_t cap, size_t *out_len, uint8_t *transform)
{
	int			tr = SP_TR_NONE;
	size_t		used;

	if (n > c->cap || n % (size_t) sp_dtype_size(dt) != 0 || cap < sp_codec_bound(n))
		return sp_fail(ctx, SP_ERR_INTERNAL, "bad tensor chunk of %zu bytes", n);
	if (base != NULL && (tr = choose_transform(ctx, c, level, dt, ft, base, n)) < 0)
		return ctx->err.code;
	used = encode_with(ctx, c, level, dt, tr, ft, base, n, out, cap);
	if (used == 0)
		return ctx->err.code;
	*out_len = used;
	*transform = (uint8_t) tr;
	return SP_OK;
}

/* Decode one plane of m bytes from payload at *pos into dst. */
static sp_status
decode_plane(sp_ctx *ctx, sp_codec *c, const uint8_t *payload, size_t plen,
			 size_t *pos, uint8_t *dst, size_t m)
{
	size_t		z,
				got;

	if (*pos >= plen)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short");
	switch (payload[(*pos)++])
	{
		case SP_PLANE_CONST:
			if (*pos >= plen)
				return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short");
			memset(dst, payload[(*pos)++], m);
			return SP_OK;
		case SP_PLANE_RAW:
			if (plen - *pos < m)
				return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short");
			memcpy(dst, payload + *pos, m);
			*pos += m;
			return SP_OK;
		case SP_PLANE_ZSTD:
			if (plen - *pos < 4 || (z = sp_get32(payload + *pos)) > plen - *pos - 4)
				return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short");
			got = ZSTD_decompressDCtx(c->dctx, dst, m, payload + *pos + 4, z);
			if (ZSTD_isError(got) && ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation)
				return sp_fail(ctx, SP_ERR_NOMEM, "out of memory decoding a chunk");
			if (ZSTD_isError(got) || got != m)
				return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk plane does not decode: %s",
							   ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
			*pos += 4 + z;
			return SP_OK;
		default:
			return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has an unknown plane mode");
	}
}

sp_status
sp_codec_decode_tensor(sp_ctx *ctx, sp_codec *c, sp_dtype dt, uint8_t transform,
					   const uint8_t *base, const uint8_t *payload, size_t plen,
					   uint8_t *ft, size_t n)
{
	int			w = sp_dtype_size(dt);
	size_t		m,
				pos = 0;

	if (w == 0 || transform >= SP_TR_COUNT || n > c->cap || n % (size_t) w != 0 ||
		(transform != SP_TR_NONE && base == NULL))
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	m = n / (size_t) w;
	for (int k = 0; k < w; k++)
		if (decode_plane(ctx, c, payload, plen, &pos, c->planar + (size_t) k * m, m) != SP_OK)
			return ctx->err.code;
	if (pos != plen)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload has trailing bytes");
	join_planes(c->planar, c->trans, n, w);
	transform_inverse(transform, dt, c->trans, base, ft, n);
	return SP_OK;
}

/* Smallest window log covering n bytes (zstd's minimum is 10). */
static int
window_log_for(size_t n)
{
	int			lg = 10;

	while (lg < 30 && ((size_t) 1 << lg) < n)
		lg++;
	return lg;
}

sp_status
sp_codec_encode_zstd(sp_ctx *ctx, sp_codec *c, int level, const uint8_t *src, size_t n,
					 const uint8_t *prefix, size_t plen, uint8_t *out, size_t cap,
					 size_t *out_len)
{
	size_t		z;

	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)) ||
		(plen && ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_windowLog,
													 window_log_for(plen + n)))) ||
		(plen && ZSTD_isError(ZSTD_CCtx_refPrefix(c->cctx, prefix, plen))))
		return sp_fail(ctx, SP_ERR_NOMEM, "could not set up zstd");
	z = ZSTD_compress2(c->cctx, out, cap, src, n);
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(z))
		return sp_fail(ctx, ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation
					   ? SP_ERR_NOMEM : SP_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(z));
	*out_len = z;
	return SP_OK;
}

sp_status
sp_codec_decode_zstd(sp_ctx *ctx, sp_codec *c, const uint8_t *prefix, size_t plen,
					 const uint8_t *payload, size_t plen_payload, uint8_t *dst, size_t n)
{
	size_t		got;

	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_and_parameters);
	if (plen && ZSTD_isError(ZSTD_DCtx_refPrefix(c->dctx, prefix, plen)))
		return sp_fail(ctx, SP_ERR_NOMEM, "could not set up zstd");
	got = ZSTD_decompressDCtx(c->dctx, dst, n, payload, plen_payload);
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(got) && ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation)
		return sp_fail(ctx, SP_ERR_NOMEM, "out of memory decoding a chunk");
	if (ZSTD_isError(got) || got != n)
		return sp_fail(ctx, SP_ERR_CORRUPT, "chunk does not decode: %s",
					   ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
	return SP_OK;
}
