/*
 * codec.c -- chunk coding.
 *
 * Tensor chunks.  Fine-tuned weights sit close to their base, so the bit
 * patterns are transformed against the base first:
 *   XOR  t = ft ^ base;
 *   SUB  t = zigzag(map(ft) - map(base)), where map makes float bit patterns
 *        order-preserving integers (negative: ~x, positive: x | sign), so a
 *        small change in value is a small integer (as FM-Delta does);
 *   NONE t = ft (a tensor with no partner);
 *   CM   the SUB difference coded by an adaptive context model along rows
 *        and columns (tensorcm.c), tried after the planes when the caller
 *        allows it and kept when smaller.
 * The w-byte words of t are split into w byte planes (low to high) and each
 * plane is stored as a constant, raw, or a zstd frame (zstd's Huffman/FSE
 * stages do the entropy coding; at the default level a noise-like plane,
 * such as the low bytes of a difference, skips zstd's match search).  The
 * transform is chosen per chunk: both are tried on a probe of up to 64 KiB
 * and the smaller wins (at level >= 10 on the whole chunk).  From level 10
 * on, a plane is fed to zstd 64 KiB at a time with a check for a cancel in
 * between (plane_polled), so a cancel waits for one zstd block, not a plane.  Payload: for
 * each plane, u8 mode then CONST: u8 value | RAW: n/w bytes | ZSTD: u32
 * length + frame.
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

#include "tensorcm.h"
#include "util.h"

#define PROBE_BYTES (64u << 10)
#define NOISE_MIN 4096			/* smaller planes: level as is */
#define NOISE_LEVEL (-20)			/* zstd level of noise-like planes (match search all but off) */
#define POLL_LEVEL 10				/* planes coded from this level on poll for a cancel */
#define POLL_STEP (64u << 10)		/* bytes fed to zstd between two polls */

/* Worst-case payload size of a chunk of n bytes. */
size_t
sp_codec_bound(size_t n)
{
	return ZSTD_compressBound(n) + 8 * (1 + 4 + 64) + 64;
}

/* Create the zstd contexts and probe buffer of a codec. */
sp_status
sp_codec_init(sp_ctx *ctx, sp_codec *c)
{
	ZSTD_customMem mem = {ctx->hooks.alloc, ctx->hooks.free, ctx->hooks.user};

	memset(c, 0, sizeof(*c));
	c->cctx = ZSTD_createCCtx_advanced(mem);
	c->dctx = ZSTD_createDCtx_advanced(mem);
	c->probe = sp_alloc(ctx, sp_codec_bound(PROBE_BYTES));
	if (!c->cctx || !c->dctx || !c->probe)
	{
		sp_codec_free(ctx, c);
		return sp_fail(ctx, SP_ERR_NOMEM, "out of memory creating the codec");
	}
	return SP_OK;
}

/* Free a codec. */
void
sp_codec_free(sp_ctx *ctx, sp_codec *c)
{
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	sp_free(ctx, c->planar);
	sp_free(ctx, c->probe);
	sp_cm_free(ctx, c->cm);
	memset(c, 0, sizeof(*c));
}

/* The geometry of a chunk starting elem elements into tensor t. */
sp_tgeom
sp_tgeom_for(const sp_tensor *t, uint64_t elem, bool cm)
{
	uint64_t	cols = t->ndim == 0 || t->shape[t->ndim - 1] == 0 ? 1 : t->shape[t->ndim - 1];
	sp_tgeom	g;

	if (cols > UINT32_MAX)
		cols = UINT32_MAX;		/* any row length decodes: it only shapes the model */
	g.cm = cm;
	g.cols = (uint32_t) cols;
	g.col0 = (uint32_t) (elem % cols);
	return g;
}

/* Does dtype dt hold floating-point bit patterns? */
static bool
dtype_is_float(sp_dtype dt)
{
	return dt == SP_DT_F16 || dt == SP_DT_BF16 || dt == SP_DT_F32 || dt == SP_DT_F64 ||
		dt == SP_DT_F8_E4M3 || dt == SP_DT_F8_E5M2;
}

/*
 * Forward and inverse transforms for one word width, fused with the split
 * into byte planes (and the join back), so each byte is touched once.  The
 * map is branchless: negative patterns flip entirely, positive ones flip the
 * sign bit only.  tr and fl are constants at every call site after inlining,
 * so the loops carry no branches and vectorize.
 */
#define SP_INLINE static inline __attribute__((always_inline))
#define DEFINE_TRANSFORMS(W, T) \
SP_INLINE T fmap##W(T x, bool fl) { const T s = (T) ((T) 1 << (W - 1)); \
	return fl ? (T) (x ^ ((T) (0 - (T) (x >> (W - 1))) | s)) : x; } \
SP_INLINE T funmap##W(T y, bool fl) { const T s = (T) ((T) 1 << (W - 1)); \
	return fl ? (T) (y ^ ((T) ((T) (y >> (W - 1)) - 1) | s)) : y; } \
SP_INLINE T fwd_word##W(int tr, bool fl, T x, T y) { T d; \
	if (tr == SP_TR_NONE) return x; \
	if (tr == SP_TR_XOR) return (T) (x ^ y); \
	d = (T) (fmap##W(x, fl) - fmap##W(y, fl)); \
	return (T) ((T) (d << 1) ^ (T) (0 - (T) (d >> (W - 1)))); } \
SP_INLINE T inv_word##W(int tr, bool fl, T d, T y) { \
	if (tr == SP_TR_NONE) return d; \
	if (tr == SP_TR_XOR) return (T) (d ^ y); \
	d = (T) ((T) (d >> 1) ^ (T) (0 - (T) (d & 1))); \
	return funmap##W((T) (d + fmap##W(y, fl)), fl); } \
SP_INLINE void fwd_loop##W(int tr, bool fl, const uint8_t *f, const uint8_t *b, uint8_t *p, size_t m) \
{ \
	for (size_t i = 0; i < m; i++) { \
		T x, y = 0, d; memcpy(&x, f + i * sizeof(T), sizeof(T)); \
		if (tr != SP_TR_NONE) memcpy(&y, b + i * sizeof(T), sizeof(T)); \
		d = fwd_word##W(tr, fl, x, y); \
		for (size_t k = 0; k < sizeof(T); k++) p[k * m + i] = (uint8_t) (d >> (8 * k)); } \
} \
SP_INLINE void inv_loop##W(int tr, bool fl, const uint8_t *p, const uint8_t *b, uint8_t *f, size_t m) \
{ \
	for (size_t i = 0; i < m; i++) { \
		T d = 0, y = 0, x; \
		for (size_t k = 0; k < sizeof(T); k++) d |= (T) ((T) p[k * m + i] << (8 * k)); \
		if (tr != SP_TR_NONE) memcpy(&y, b + i * sizeof(T), sizeof(T)); \
		x = inv_word##W(tr, fl, d, y); \
		memcpy(f + i * sizeof(T), &x, sizeof(T)); } \
} \
static void fwd##W(int tr, bool fl, const uint8_t *f, const uint8_t *b, uint8_t *p, size_t m) \
{ \
	if (tr == SP_TR_NONE) fwd_loop##W(SP_TR_NONE, false, f, b, p, m); \
	else if (tr == SP_TR_XOR) fwd_loop##W(SP_TR_XOR, false, f, b, p, m); \
	else if (fl) fwd_loop##W(SP_TR_SUB, true, f, b, p, m); \
	else fwd_loop##W(SP_TR_SUB, false, f, b, p, m); \
} \
static void inv##W(int tr, bool fl, const uint8_t *p, const uint8_t *b, uint8_t *f, size_t m) \
{ \
	if (tr == SP_TR_NONE) inv_loop##W(SP_TR_NONE, false, p, b, f, m); \
	else if (tr == SP_TR_XOR) inv_loop##W(SP_TR_XOR, false, p, b, f, m); \
	else if (fl) inv_loop##W(SP_TR_SUB, true, p, b, f, m); \
	else inv_loop##W(SP_TR_SUB, false, p, b, f, m); \
}

DEFINE_TRANSFORMS(8, uint8_t)
DEFINE_TRANSFORMS(16, uint16_t)
DEFINE_TRANSFORMS(32, uint32_t)
DEFINE_TRANSFORMS(64, uint64_t)

/* Transform n bytes of ft against base with tr and split into planes. */
static void
transform_forward(int tr, sp_dtype dt, const uint8_t *f, const uint8_t *b, uint8_t *planes, size_t n)
{
	bool		fl = dtype_is_float(dt);
	int			w = sp_dtype_size(dt);

	if (w == 1)
		fwd8(tr, fl, f, b, planes, n);
	else if (w == 2)
		fwd16(tr, fl, f, b, planes, n / 2);
	else if (w == 4)
		fwd32(tr, fl, f, b, planes, n / 4);
	else
		fwd64(tr, fl, f, b, planes, n / 8);
}

/* Join planes and undo transform tr against base into ft. */
static void
transform_inverse(int tr, sp_dtype dt, const uint8_t *planes, const uint8_t *b, uint8_t *f, size_t n)
{
	bool		fl = dtype_is_float(dt);
	int			w = sp_dtype_size(dt);

	if (w == 1)
		inv8(tr, fl, planes, b, f, n);
	else if (w == 2)
		inv16(tr, fl, planes, b, f, n / 2);
	else if (w == 4)
		inv32(tr, fl, planes, b, f, n / 4);
	else
		inv64(tr, fl, planes, b, f, n / 8);
}

/*
 * Dtype conversion, so a fine-tune saved in another float type than its base
 * (an F32 base published as BF16, say) is still coded against it: the base
 * is converted to the fine-tune's dtype first, the same way on both sides.
 * Only exact, integer-defined conversions are used (BF16 <-> F32 by bit
 * arithmetic with round-to-nearest-even, F32 <-> F64 by IEEE casts), so the
 * result does not depend on the platform.
 */
bool
sp_convertible(sp_dtype from, sp_dtype to)
{
	return from != to &&
		(from == SP_DT_F32 || from == SP_DT_BF16 || from == SP_DT_F64) &&
		(to == SP_DT_F32 || to == SP_DT_BF16 || to == SP_DT_F64);
}

/* Read element i of a float tensor as a float (F64 narrowed by the caller). */
static double
load_float(sp_dtype dt, const uint8_t *p, size_t i)
{
	uint32_t	u;
	float		f;
	double		d;

	if (dt == SP_DT_F64)
	{
		memcpy(&d, p + 8 * i, 8);
		return d;
	}
	if (dt == SP_DT_BF16)
		u = (uint32_t) sp_get16(p + 2 * i) << 16;
	else
		memcpy(&u, p + 4 * i, 4);
	memcpy(&f, &u, 4);
	return f;
}

/* BF16 bits of a float: round to nearest even, NaN kept quiet. */
static uint16_t
bf16_of(float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((u >> 16) | 0x40);
	return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Convert n elements between float dtypes, the same way on every platform. */
void
sp_convert(sp_dtype from, sp_dtype to, const uint8_t *src, uint8_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		double		v = load_float(from, src, i);
		float		f = (float) v;

		if (to == SP_DT_F64)
			memcpy(dst + 8 * i, &v, 8);
		else if (to == SP_DT_F32)
			memcpy(dst + 4 * i, &f, 4);
		else
			sp_put16(dst + 2 * i, bf16_of(f));
	}
}

/*
 * Is plane p of m bytes noise-like?  On a sample of every 16th byte: no
 * value holds 2/5 of it (Huffman codes cannot go below a bit per byte), and
 * a byte equals the next one no more often than chance (the sum of the
 * squared value shares) says, with a margin: no runs for matches to take.
 * The low bytes of weight differences are like that.
 */
static bool
plane_is_noise(const uint8_t *p, size_t m)
{
	uint32_t	hist[256] = {0},
				top = 0,
				n = 0,
				same = 0;
	uint64_t	sq = 0;

	if (m < NOISE_MIN)
		return false;
	for (size_t i = 0; i + 1 < m; i += 16, n++)
	{
		hist[p[i]]++;
		same += p[i] == p[i + 1];
	}
	for (int v = 0; v < 256; v++)
	{
		top = SP_MAX(top, hist[v]);
		sq += (uint64_t) hist[v] * hist[v];
	}
	/* same / n <= 1.25 * sq / n^2 */
	return (uint64_t) top * 5 < (uint64_t) n * 2 && (uint64_t) same * n * 4 <= sq * 5;
}

/*
 * zstd frame of a plane.  At plane level 1 a noise-like plane is coded as
 * literals only (zstd's fastest match search, which finds next to nothing
 * there, with Huffman coding of the literals forced on): about 1.6 times
 * faster than level 1 on such planes and no larger.  Any other plane, or a
 * zstd without that parameter, gets the level as is.  The frame is plain
 * zstd either way, so decoding does not change.
 */
static size_t
zstd_plane(sp_codec *c, int level, const uint8_t *p, size_t m, uint8_t *out, size_t cap)
{
	size_t		z;

	if (level != 1 || !plane_is_noise(p, m))
		return ZSTD_compressCCtx(c->cctx, out, cap, p, m, level);
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, NOISE_LEVEL)) ||
		ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_literalCompressionMode,
											ZSTD_ps_enable)))
		z = ZSTD_compressCCtx(c->cctx, out, cap, p, m, level);
	else
		z = ZSTD_compress2(c->cctx, out, cap, p, m);
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	return z;
}

/*
 * Feed zstd POLL_STEP bytes at a time and poll for interrupts in between,
 * so even a level-19 chunk with an 8 MiB prefix stops within about one
 * block's work.  Returns 0 on success, 1 with the error recorded.
 */
static int
compress_polled(sp_ctx *ctx, sp_codec *c, const uint8_t *src, size_t n,
				uint8_t *out, size_t cap, size_t *out_len)
{
	ZSTD_outBuffer ob = {out, cap, 0};
	size_t		fed = 0,
				r;

	for (;;)
	{
		size_t		step = SP_MIN(n - fed, (size_t) POLL_STEP);
		ZSTD_inBuffer ib = {src + fed, step, 0};
		ZSTD_EndDirective mode = fed + step == n ? ZSTD_e_end : ZSTD_e_continue;

		if (sp_check_interrupt(ctx) != SP_OK)
			return 1;
		do
			r = ZSTD_compressStream2(c->cctx, &ob, &ib, mode);
		while (!ZSTD_isError(r) && (ib.pos < ib.size || (mode == ZSTD_e_end && r != 0)) &&
			   ob.pos < ob.size);
		if (ZSTD_isError(r))
		{
			sp_fail(ctx, ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
					? SP_ERR_NOMEM : SP_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(r));
			return 1;
		}
		if (ib.pos < ib.size || (mode == ZSTD_e_end && r != 0))
		{
			sp_fail(ctx, SP_ERR_INTERNAL, "zstd: output buffer too small");
			return 1;
		}
		fed += step;
		if (mode == ZSTD_e_end)
			break;
	}
	*out_len = ob.pos;
	return 0;
}

/*
 * zstd frame of a plane at a high level, fed POLL_STEP bytes at a time with
 * a poll for a cancel in between: level 19 codes about 1 MB/s here, so a
 * plane in one call would hold a cancel for up to half a second (zstd works
 * in blocks of 128 KiB, so a cancel now waits for about one).  The frame
 * decodes like any other.  0 on success, 1 with the error recorded.
 */
static int
plane_polled(sp_ctx *ctx, sp_codec *c, int level, const uint8_t *p, size_t m, uint8_t *out,
			 size_t cap, size_t *z)
{
	int			rc;

	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)) ||
		ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c->cctx, m)))
	{
		sp_fail(ctx, SP_ERR_NOMEM, "could not set up zstd");
		return 1;
	}
	rc = compress_polled(ctx, c, p, m, out, cap, z);
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	return rc;
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
	if (level >= POLL_LEVEL && m > POLL_STEP)
	{
		if (plane_polled(ctx, c, level, p, m, out + 5, cap - 5, &z) != 0)
			return 0;
	}
	else
		z = zstd_plane(c, level, p, m, out + 5, cap - 5);
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

	transform_forward(tr, dt, ft, base, c->planar, n);
	for (int k = 0; k < w; k++)
	{
		size_t		u;

		if (sp_check_interrupt(ctx) != SP_OK)
			return 0;
		u = encode_plane(ctx, c, level, c->planar + (size_t) k * m, m, out + used, cap - used);
		if (u == 0)
			return 0;
		used += u;
	}
	return used;
}

/*
 * Code a chunk against its base: SUB and XOR are both tried on a probe (the
 * whole chunk when it is small or the level is high) and the smaller wins.
 * When the probe was the whole chunk its result is kept, not redone.
 */
static size_t
encode_against(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt, const uint8_t *ft,
			   const uint8_t *base, size_t n, uint8_t *out, size_t cap, int *tr)
{
	size_t		w = (size_t) sp_dtype_size(dt);
	size_t		pn = level >= 10 ? n : SP_MIN(n, PROBE_BYTES / w * w);
	size_t		pcap = sp_codec_bound(pn);
	uint8_t    *buf = pn > PROBE_BYTES ? sp_alloc(ctx, pcap) : c->probe;
	size_t		sub,
				xr;

	if (buf == NULL)
		return 0;
	sub = encode_with(ctx, c, level, dt, SP_TR_SUB, ft, base, pn, out, cap);
	xr = sub ? encode_with(ctx, c, level, dt, SP_TR_XOR, ft, base, pn, buf, pcap) : 0;
	*tr = xr < sub ? SP_TR_XOR : SP_TR_SUB;
	if (xr && xr < sub && pn == n)
		memcpy(out, buf, xr);
	if (buf != c->probe)
		sp_free(ctx, buf);
	if (sub == 0 || xr == 0)
		return 0;
	if (pn == n)
		return *tr == SP_TR_XOR ? xr : sub;
	return encode_with(ctx, c, level, dt, *tr, ft, base, n, out, cap);
}

/* The zstd level used for byte planes: level 1 codes them as well as 3, faster. */
static int
plane_level_for(int level)
{
	return level <= 3 ? 1 : level;
}

/* May chunk (dt, n, base, g) be coded by the CM transform? */
static bool
cm_allowed(const sp_tgeom *g, sp_dtype dt, const uint8_t *base, size_t n)
{
	return g != NULL && g->cm && base != NULL && sp_cm_supports(dt) && n <= SP_TENSOR_CHUNK;
}

/*
 * Try the CM transform on a chunk whose planes took used bytes of out; when
 * it is smaller, it replaces them (sp_cm_encode writes out only then).
 * Returns the bytes of out now used.
 */
static size_t
try_cm(sp_ctx *ctx, sp_codec *c, sp_dtype dt, const uint8_t *ft, const uint8_t *base,
	   size_t n, const sp_tgeom *g, uint8_t *out, size_t used, int *tr)
{
	size_t		len;

	if (!cm_allowed(g, dt, base, n) || used < 2)
		return used;
	if (sp_check_interrupt(ctx) != SP_OK ||
		sp_cm_encode(ctx, &c->cm, dt, g->cols, g->col0, ft, base, n, out, used - 1,
					 &len) != SP_OK)
		return 0;
	if (len == 0)
		return used;
	*tr = SP_TR_CM;
	return len;
}

/* Check a chunk to encode and make room for its planes. */
static sp_status
encode_begin(sp_ctx *ctx, sp_codec *c, sp_dtype dt, size_t n, size_t cap)
{
	if (n > SP_CHUNK_MAX || n % (size_t) sp_dtype_size(dt) != 0 || cap < sp_codec_bound(n))
		return sp_fail(ctx, SP_ERR_INTERNAL, "bad tensor chunk of %zu bytes", n);
	return sp_reserve(ctx, &c->planar, &c->cap, n);
}

/* Encode a tensor chunk with a transform chosen by the caller. */
sp_status
sp_codec_encode_tensor_as(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt, int transform,
						  const uint8_t *ft, const uint8_t *base, size_t n, const sp_tgeom *g,
						  uint8_t *out, size_t cap, size_t *out_len, uint8_t *used_transform)
{
	int			tr = transform == SP_TR_CM ? SP_TR_SUB : transform;

	if (transform < 0 || transform >= SP_TR_COUNT || (transform != SP_TR_NONE && base == NULL))
		return sp_fail(ctx, SP_ERR_INTERNAL, "bad tensor transform %d", transform);
	if (encode_begin(ctx, c, dt, n, cap) != SP_OK)
		return ctx->err.code;
	*out_len = encode_with(ctx, c, plane_level_for(level), dt, tr, ft, base, n, out, cap);
	if (*out_len && transform == SP_TR_CM)
		*out_len = try_cm(ctx, c, dt, ft, base, n, g, out, *out_len, &tr);
	*used_transform = (uint8_t) tr;
	return *out_len ? SP_OK : ctx->err.code;
}

/*
 * Encode a tensor chunk, choosing the transform.  The byte planes are coded
 * first and the CM transform replaces them when smaller.  From level 10 on,
 * where planes code at zstd's slow levels (about 1 MB/s at 19), the planes
 * are first coded at the default's fast level: CM usually beats them, and
 * only a chunk where it does not pays for the slow planes.
 */
sp_status
sp_codec_encode_tensor(sp_ctx *ctx, sp_codec *c, int level, sp_dtype dt,
					   const uint8_t *ft, const uint8_t *base, size_t n, const sp_tgeom *g,
					   uint8_t *out, size_t cap, size_t *out_len, uint8_t *transform)
{
	int			tr = SP_TR_NONE;
	int			plane_level = plane_level_for(level);
	bool		cm = cm_allowed(g, dt, base, n);
	size_t		used;

	if (encode_begin(ctx, c, dt, n, cap) != SP_OK)
		return ctx->err.code;
	if (base == NULL)
		used = encode_with(ctx, c, plane_level, dt, SP_TR_NONE, ft, NULL, n, out, cap);
	else
		used = encode_against(ctx, c, cm ? plane_level_for(SP_LEVEL_DEFAULT) : plane_level, dt,
							  ft, base, n, out, cap, &tr);
	if (used && cm)
		used = try_cm(ctx, c, dt, ft, base, n, g, out, used, &tr);
	if (used && cm && tr != SP_TR_CM && plane_level != plane_level_for(SP_LEVEL_DEFAULT))
		used = encode_against(ctx, c, plane_level, dt, ft, base, n, out, cap, &tr);
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

/* Decode a tensor chunk payload into ft. */
sp_status
sp_codec_decode_tensor(sp_ctx *ctx, sp_codec *c, sp_dtype dt, uint8_t transform,
					   const uint8_t *base, const uint8_t *payload, size_t plen,
					   uint8_t *ft, size_t n)
{
	int			w = sp_dtype_size(dt);
	size_t		m,
				pos = 0;

	if (w == 0 || transform >= SP_TR_COUNT || n > SP_CHUNK_MAX || n % (size_t) w != 0 ||
		(transform != SP_TR_NONE && base == NULL))
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	if (transform == SP_TR_CM)
		return sp_cm_decode(ctx, &c->cm, dt, base, payload, plen, ft, n);
	if (sp_reserve(ctx, &c->planar, &c->cap, n) != SP_OK)
		return ctx->err.code;
	m = n / (size_t) w;
	for (int k = 0; k < w; k++)
		if (decode_plane(ctx, c, payload, plen, &pos, c->planar + (size_t) k * m, m) != SP_OK)
			return ctx->err.code;
	if (pos != plen)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload has trailing bytes");
	transform_inverse(transform, dt, c->planar, base, ft, n);
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


/* Compress a generic chunk with zstd against a prefix window. */
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
	ZSTD_CCtx_setPledgedSrcSize(c->cctx, n);
	z = compress_polled(ctx, c, src, n, out, cap, out_len);
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	return z == 0 ? SP_OK : ctx->err.code;
}

/* Decompress a generic chunk with the same prefix window. */
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
