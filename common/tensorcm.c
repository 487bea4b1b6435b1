/*
 * tensorcm.c -- context-modelled coding of a float tensor chunk against its
 * base (the CM transform).
 *
 * Why: a fine-tune's change to a weight is a small integer difference of the
 * order-preserving bit patterns (the SUB transform), and its size follows
 * the tensor's layout: LoRA updates and trained layers vary in scale per row
 * and per column.  Byte planes coded by zstd see none of that; an adaptive
 * model that predicts each difference's size from its neighbours does
 * (bench/entropy.py measures the gap: 0.727 against 0.696 of gpt2-lora-r8;
 * this coder stores 0.693 of it).
 *
 * How: for each element, with b the base word and e its exponent field,
 *   d  = map(ft) - map(b) as a signed w-bit integer, a = |d|, nb = bitlen(a);
 *   nb is coded against a prediction: equal or not, above or below, then
 *   the distance in unary, each decision in the context of
 *      pr = the rounded mean of nb + e over the row so far (the previous
 *           row's mean for a row's first element), minus e;
 *      pc = the same mean down the column over the rows above (or "none");
 *      the column position (0, 1, or later);
 *   and the prediction is the mean of pr and pc (pr alone without pc); most
 *   lengths land within one of it, so this takes about 3 decisions where a
 *   6-level binary tree would take 6, and codes smaller;
 *   the sign of d given the previous sign along the row, the base's sign
 *   and min(nb, 7); the bit below the leading one given nb and the sign;
 *   the nb - 2 bits below stored raw.
 * Probabilities are 16-bit, updated at rate 1/(n + 1.6) where n counts the
 * context's uses up to CM_LIMIT (so a new context learns fast, an old one
 * slowly), and drive a carry-less binary arithmetic coder.  All arithmetic
 * is integer, so every build decodes what any other encoded.  The model is
 * reset for each chunk: chunks stay independent.
 *
 * Segments: a chunk of CM_SEG_MIN elements or more is coded as two halves,
 * each with a model, row and column statistics of its own, so apply decodes
 * them on two threads (about 1.7x faster on two cores, for about 0.4% more
 * bytes on 1 MiB F32 chunks).  The decoder's helpers get their models from
 * the caller's thread, touch only their half of the output and poll a stop
 * flag of the caller's; the caller polls the interrupt hook, sets the flag
 * on a cancel and joins them before returning.  With threads = 1, or when
 * a thread does not start, the caller decodes every segment itself.
 *
 * Payload: u32 cols, u32 col0 (the chunk's first column), u32 nseg (1 to
 * CM_SEG_MAX), then per segment u32 count (elements), u32 alen, u32 rlen;
 * then per segment alen bytes of arithmetic-coded stream and rlen bytes of
 * raw bits (LSB first).  The decoder trusts none of it: cols and col0 are
 * checked, the counts must cover the chunk and the lengths the payload
 * exactly, a bit length can only decode within 0..w, and each segment's
 * stream and raw bits must be used exactly; the chunk's XXH3 checksum
 * (checked by the caller) catches any other damage.
 */
#include "tensorcm.h"

#include "codec.h"
#include "coderpool.h"
#include "util.h"

#define CM_OFF 6				/* predicted bit lengths kept down to -CM_OFF */
#define CM_PR 44				/* row contexts: CM_OFF + predicted bit length, clamped */
#define CM_PC 45				/* column contexts: the same, plus CM_PC - 1 for none */
#define CM_POS 3				/* column position: 0, 1, later */
#define CM_LEN 62				/* bit-length decisions: equal, above, 2 x 30 distances */
#define CM_LIMIT 255			/* uses after which a context adapts at its slowest */
#define CM_NB 33				/* bit lengths 0..32 */
#define CM_POLL 65536			/* elements between two checks for a cancel (a few ms) */
#define CM_ELEM_MAX 64			/* most coded bytes one element can add (35 decisions of at most 11 bits) */
#define CM_SEG_MAX 8			/* segments of one chunk, at most */
#define CM_SEG_MIN 65536		/* chunks of this many elements or more are coded in two halves */
#define CM_HDR(nseg) (12 + 12 * (size_t) (nseg))	/* payload header: see tensorcm.h */

/* One adaptive binary context: P(1) in 16 bits and its use count. */
typedef struct cm_prob
{
	uint16_t	p;
	uint16_t	n;
} cm_prob;

/*
 * The model of one chunk, and scratch that outlives it.  The bit-length
 * contexts (1.5 MB) are reset lazily: a block of CM_LEN is reset when a
 * chunk first uses it (its stamp differs from the chunk's generation), so
 * a small tensor does not pay for the contexts it never touches.
 */
struct sp_cm
{
	cm_prob		sign[2][2][8];
	cm_prob		bit2[CM_NB][2];
	cm_prob		len[CM_PR][CM_PC][CM_POS][CM_LEN];
	uint32_t	stamp[CM_PR][CM_PC][CM_POS];
	uint32_t	gen;			/* the current chunk's generation (never 0) */
	uint32_t	rate[CM_LIMIT + 1];
	uint8_t    *colbuf;			/* per column (u32): sum of nb + e so far */
	size_t		colcap;
	uint8_t    *ac;				/* the coded stream, before it joins the payload */
	size_t		accap;
	uint8_t    *raw;			/* the raw bits, likewise */
	size_t		rawcap;
	struct sp_cm *helper[CM_SEG_MAX - 1];	/* models of the decoder's helper threads */
};

/* Word layout of a dtype: width in bits, exponent shift and mask. */
typedef struct cm_word
{
	int			w,
				es;
	uint32_t	em,
				mask;
} cm_word;

/* Running statistics along rows and columns. */
typedef struct cm_pos
{
	uint32_t	cols,
				col0,
				c;				/* current column */
	uint32_t	wraps;			/* rows begun after the first */
	bool		colstats;		/* columns repeat within the chunk */
	uint32_t	rsum,
				rcnt,
				prev_mean;
	int			psign;
} cm_pos;

/* Carry-less binary arithmetic coder state (either direction). */
typedef struct cm_coder
{
	uint32_t	x1,
				x2,
				x;
	uint8_t    *p;				/* encoder output */
	const uint8_t *in,			/* decoder input */
			   *end;
} cm_coder;

/* One segment of a chunk: its elements, and its streams (read, or written in scratch). */
typedef struct cm_seg
{
	size_t		start,			/* first element */
				count;			/* elements */
	uint32_t	col0;			/* column of its first element */
	size_t		alen,			/* bytes of arithmetic-coded stream */
				rlen;			/* bytes of raw bits, after it */
	const uint8_t *ac;			/* decoder: the stream, then the raw bits */
	uint8_t    *wac,			/* encoder: where its stream ... */
			   *wraw;			/* ... and raw bits are built */
} cm_seg;

/* How a decoding job ended: the worst of several wins. */
enum
{
	CM_DONE, CM_TRAILING, CM_STOPPED
};

/* Segments first, first + step, ... of a chunk, decoded by one thread with one model. */
typedef struct cm_job
{
	struct sp_cm *cm;
	cm_word		k;
	uint32_t	cols;
	const uint8_t *base;
	uint8_t    *ft;
	const cm_seg *segs;
	int			nseg,
				first,
				step;
	sp_ctx	   *ctx;			/* polled for a cancel: the caller's, or a helper's own */
	int		   *stop;			/* set by the caller: helpers stop at their next poll */
	int			result;			/* CM_DONE, ... */
	size_t		maxcount;		/* its longest segment */
} cm_job;

/* Bit packer (LSB first) for the raw bits, either direction. */
typedef struct cm_bits
{
	uint8_t    *p;
	const uint8_t *in,
			   *end;
	uint64_t	acc;
	int			nb;
} cm_bits;

/* Can chunks of dtype dt be coded this way? */
bool
sp_cm_supports(sp_dtype dt)
{
	return dt == SP_DT_F32 || dt == SP_DT_BF16 || dt == SP_DT_F16;
}

/* Word layout of a supported dtype. */
static cm_word
word_of(sp_dtype dt)
{
	cm_word		k = {32, 23, 0xFF, 0xFFFFFFFFu};

	if (dt == SP_DT_BF16)
		k = (cm_word) {16, 7, 0xFF, 0xFFFF};
	else if (dt == SP_DT_F16)
		k = (cm_word) {16, 10, 0x1F, 0xFFFF};
	return k;
}

/* Load word i. */
static inline uint32_t
load_word(const cm_word *k, const uint8_t *p, size_t i)
{
	return k->w == 32 ? sp_get32(p + 4 * i) : sp_get16(p + 2 * i);
}

/* Store word i. */
static inline void
store_word(const cm_word *k, uint8_t *p, size_t i, uint32_t v)
{
	if (k->w == 32)
		sp_put32(p + 4 * i, v);
	else
		sp_put16(p + 2 * i, (uint16_t) v);
}

/* Order-preserving map of a float bit pattern (negative: all bits flip; else the sign bit). */
static inline uint32_t
fmap(const cm_word *k, uint32_t x)
{
	return x ^ (((0u - (x >> (k->w - 1))) & k->mask) | (1u << (k->w - 1)));
}

/* Inverse of fmap. */
static inline uint32_t
funmap(const cm_word *k, uint32_t y)
{
	return y ^ ((((y >> (k->w - 1)) - 1u) & k->mask) | (1u << (k->w - 1)));
}

/* Bit length of a (0 for 0). */
static inline int
bitlen(uint32_t a)
{
	return a ? 32 - __builtin_clz(a) : 0;
}

/* Allocate the state and fill its constant tables. */
static sp_cm *
cm_new(sp_ctx *ctx)
{
	sp_cm	   *cm = sp_calloc(ctx, 1, sizeof(sp_cm));

	if (cm == NULL)
		return NULL;
	for (uint32_t n = 0; n <= CM_LIMIT; n++)
		cm->rate[n] = 655360u / (10u * n + 16u);
	return cm;
}

/*
 * Get the state (allocating it on first use) with room for the column
 * statistics of segments of up to m elements in rows of cols (the caller's
 * thread: it allocates through ctx).
 */
static sp_cm *
cm_ready(sp_ctx *ctx, sp_cm **cmp, size_t m, uint32_t cols)
{
	sp_cm	   *cm = *cmp;

	if (cm == NULL && (cm = *cmp = cm_new(ctx)) == NULL)
		return NULL;
	if (cols <= m && sp_reserve(ctx, &cm->colbuf, &cm->colcap, (size_t) cols * 4) != SP_OK)
		return NULL;
	return cm;
}

/* Reset the model for a segment of m elements (any thread; cm_ready made room). */
static void
cm_reset(sp_cm *cm, size_t m, uint32_t cols)
{
	cm_prob    *all = &cm->sign[0][0][0];

	for (size_t i = 0; i < offsetof(sp_cm, len) / sizeof(cm_prob); i++)
		all[i] = (cm_prob) {32768, 0};
	if (++cm->gen == 0)
	{
		memset(cm->stamp, 0, sizeof(cm->stamp));
		cm->gen = 1;
	}
	if (cols <= m)
		memset(cm->colbuf, 0, (size_t) cols * 4);
}

/* Start position tracking for a chunk of m elements. */
static cm_pos
pos_begin(uint32_t cols, uint32_t col0, size_t m)
{
	cm_pos		s = {0};

	s.cols = cols;
	s.col0 = col0;
	s.c = col0;
	s.colstats = cols <= m;
	return s;
}

/* The per-column sums (colbuf comes from the allocator, aligned for any type). */
static inline uint32_t *
colsum(sp_cm *cm)
{
	return (uint32_t *) (void *) cm->colbuf;
}

/* Clamp v to lo..hi. */
static inline int
clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The rounded mean of n > 0 values summing to sum, in integers. */
static inline uint32_t
mean_of(uint32_t sum, uint32_t n)
{
	return (2 * sum + n) / (2 * n);
}

/* The contexts of the current element's bit length, and the length they predict. */
typedef struct cm_len
{
	cm_prob    *t;				/* [0] equal, [1] above, then the steps away (tensorcm.c) */
	int			pred;
} cm_len;

/* The bit-length contexts of the current element, whose base exponent is e. */
static inline cm_len
len_for(sp_cm *cm, const cm_pos *s, int e, int w)
{
	uint32_t	rmean = s->rcnt ? mean_of(s->rsum, s->rcnt) : s->prev_mean;
	int			pr = clampi((int) rmean - e + CM_OFF, 0, CM_PR - 1),
				pc = CM_PC - 1,
				pos = s->c < 2 ? (int) s->c : 2;
	cm_len		l;

	if (s->colstats)
	{
		uint32_t	seen = s->wraps - (s->c < s->col0);

		if (seen > 0)
			pc = clampi((int) mean_of(colsum(cm)[s->c], seen) - e + CM_OFF, 0, CM_PC - 2);
	}
	l.t = cm->len[pr][pc][pos];
	if (cm->stamp[pr][pc][pos] != cm->gen)
	{
		for (int i = 0; i < CM_LEN; i++)
			l.t[i] = (cm_prob) {32768, 0};
		cm->stamp[pr][pc][pos] = cm->gen;
	}
	l.pred = clampi((pc == CM_PC - 1 ? pr : (pr + pc + 1) / 2) - CM_OFF, 0, w);
	return l;
}

/* Account the element just coded (magnitude v = nb + e) and move to the next column. */
static inline void
pos_next(sp_cm *cm, cm_pos *s, uint32_t v)
{
	s->rsum += v;
	s->rcnt++;
	if (s->colstats)
		colsum(cm)[s->c] += v;
	if (++s->c == s->cols)
	{
		s->c = 0;
		s->wraps++;
		s->prev_mean = mean_of(s->rsum, s->rcnt);
		s->rsum = s->rcnt = 0;
		s->psign = 0;
	}
}

/* Probability of a 1, kept away from 0 and 1. */
static inline uint32_t
prob_of(const cm_prob *q)
{
	return clampi(q->p, 32, 65504);
}

/* Learn one bit in context q. */
static inline void
learn(const sp_cm *cm, cm_prob *q, int bit)
{
	int32_t		target = bit ? 65535 : 0;

	q->p = (uint16_t) (q->p + (int32_t) (((int64_t) (target - q->p) * cm->rate[q->n]) >> 16));
	if (q->n < CM_LIMIT)
		q->n++;
}

/* Split point of the coder's range for P(1) = p. */
static inline uint32_t
split(const cm_coder *r, uint32_t p)
{
	return r->x1 + (uint32_t) (((uint64_t) (r->x2 - r->x1) * p) >> 16);
}

/* Keep the part of the range that bit names: a 1 the lower, a 0 the upper. */
static inline void
narrow(cm_coder *r, uint32_t xm, int bit)
{
	if (bit)
		r->x2 = xm;
	else
		r->x1 = xm + 1;
}

/* Encode one bit in context q. */
static inline void
enc_bit(const sp_cm *cm, cm_coder *r, cm_prob *q, int bit)
{
	narrow(r, split(r, prob_of(q)), bit);
	while (((r->x1 ^ r->x2) & 0xFF000000u) == 0)
	{
		*r->p++ = (uint8_t) (r->x2 >> 24);
		r->x1 <<= 8;
		r->x2 = (r->x2 << 8) | 0xFF;
	}
	learn(cm, q, bit);
}

/* Decode one bit in context q (past the end of the stream, 0xFF bytes). */
static inline int
dec_bit(const sp_cm *cm, cm_coder *r, cm_prob *q)
{
	uint32_t	xm = split(r, prob_of(q));
	int			bit = r->x <= xm;

	narrow(r, xm, bit);
	while (((r->x1 ^ r->x2) & 0xFF000000u) == 0)
	{
		r->x1 <<= 8;
		r->x2 = (r->x2 << 8) | 0xFF;
		r->x = (r->x << 8) | (r->in < r->end ? *r->in++ : 0xFF);
	}
	learn(cm, q, bit);
	return bit;
}

/* Append the n low bits of v to the raw bits. */
static inline void
put_bits(cm_bits *b, uint32_t v, int n)
{
	b->acc |= (uint64_t) v << b->nb;
	b->nb += n;
	while (b->nb >= 8)
	{
		*b->p++ = (uint8_t) b->acc;
		b->acc >>= 8;
		b->nb -= 8;
	}
}

/* Take n raw bits (zeros past the end). */
static inline uint32_t
get_bits(cm_bits *b, int n)
{
	uint32_t	v;

	while (b->nb < n)
	{
		b->acc |= (uint64_t) (b->in < b->end ? *b->in++ : 0) << b->nb;
		b->nb += 8;
	}
	v = (uint32_t) (b->acc & ((1ull << n) - 1));
	b->acc >>= n;
	b->nb -= n;
	return v;
}

/*
 * Code bit length nb (0..w) in contexts l: equal to the prediction or not,
 * then above or below it (unless only one side is possible), then the
 * distance in unary, each step "stop here?" until the last possible one.
 */
static inline void
enc_len(sp_cm *cm, cm_coder *r, cm_len l, int w, int nb)
{
	int			up = nb > l.pred,
				dist = up ? nb - l.pred : l.pred - nb,
				dmax;

	enc_bit(cm, r, &l.t[0], dist == 0);
	if (dist == 0)
		return;
	if (l.pred > 0 && l.pred < w)
		enc_bit(cm, r, &l.t[1], up);
	dmax = up ? w - l.pred : l.pred;
	for (int j = 1; j < dmax; j++)
	{
		enc_bit(cm, r, &l.t[2 + up * 30 + (j < 29 ? j : 29)], dist == j);
		if (dist == j)
			return;
	}
}

/* Decode a bit length coded by enc_len (always within 0..w). */
static inline int
dec_len(sp_cm *cm, cm_coder *r, cm_len l, int w)
{
	int			up,
				dmax;

	if (dec_bit(cm, r, &l.t[0]))
		return l.pred;
	up = l.pred == 0 ? 1 : l.pred == w ? 0 : dec_bit(cm, r, &l.t[1]);
	dmax = up ? w - l.pred : l.pred;
	for (int j = 1; j < dmax; j++)
		if (dec_bit(cm, r, &l.t[2 + up * 30 + (j < 29 ? j : 29)]))
			return up ? l.pred + j : l.pred - j;
	return up ? l.pred + dmax : l.pred - dmax;
}

/* Code element i of a chunk. */
static inline void
enc_elem(sp_cm *cm, const cm_word *k, cm_pos *s, cm_coder *r, cm_bits *raw,
		 uint32_t f, uint32_t b)
{
	int			e = (int) ((b >> k->es) & k->em),
				bs = (int) (b >> (k->w - 1));
	uint32_t	d = (fmap(k, f) - fmap(k, b)) & k->mask;
	int			neg = (int) (d >> (k->w - 1));
	uint32_t	a = neg ? (0u - d) & k->mask : d;
	int			nb = bitlen(a);

	enc_len(cm, r, len_for(cm, s, e, k->w), k->w, nb);
	if (nb > 0)
	{
		enc_bit(cm, r, &cm->sign[s->psign][bs][nb < 7 ? nb : 7], neg);
		s->psign = neg;
	}
	if (nb >= 2)
		enc_bit(cm, r, &cm->bit2[nb][neg], (int) (a >> (nb - 2)) & 1);
	if (nb >= 3)
		put_bits(raw, a & ((1u << (nb - 2)) - 1), nb - 2);
	pos_next(cm, s, (uint32_t) (nb + e));
}

/* Decode element i of a chunk. */
static inline void
dec_elem(sp_cm *cm, const cm_word *k, cm_pos *s, cm_coder *r, cm_bits *raw,
		 uint32_t b, uint32_t *f)
{
	int			e = (int) ((b >> k->es) & k->em),
				bs = (int) (b >> (k->w - 1));
	int			nb = dec_len(cm, r, len_for(cm, s, e, k->w), k->w),
				neg = 0;
	uint32_t	a;

	if (nb > 0)
	{
		neg = dec_bit(cm, r, &cm->sign[s->psign][bs][nb < 7 ? nb : 7]);
		s->psign = neg;
	}
	a = nb ? 1u << (nb - 1) : 0;
	if (nb >= 2)
		a |= (uint32_t) dec_bit(cm, r, &cm->bit2[nb][neg]) << (nb - 2);
	if (nb >= 3)
		a |= get_bits(raw, nb - 2);
	*f = funmap(k, (fmap(k, b) + (neg ? 0u - a : a)) & k->mask);
	pos_next(cm, s, (uint32_t) (nb + e));
}

/* Where a chunk's segments start (elements) and their columns; the counts must be set. */
static void
seg_layout(cm_seg *sg, int nseg, uint32_t cols, uint32_t col0)
{
	size_t		start = 0;

	for (int j = 0; j < nseg; j++)
	{
		sg[j].start = start;
		sg[j].col0 = (uint32_t) ((col0 + start % cols) % cols);
		start += sg[j].count;
	}
}

/*
 * Encode segment sg into the scratch streams (the arithmetic-coded stream
 * at ac, the raw bits at raw); *fits is false once the streams of this and
 * the earlier segments (ac_base on) pass cap.
 */
static sp_status
enc_seg(sp_ctx *ctx, sp_cm *cm, const cm_word *k, uint32_t cols, cm_seg *sg,
		const uint8_t *ft, const uint8_t *base, const uint8_t *ac_base, size_t cap,
		bool *fits)
{
	cm_pos		s = pos_begin(cols, sg->col0, sg->count);
	cm_coder	r = {0, 0xFFFFFFFFu, 0, sg->wac, NULL, NULL};
	cm_bits		raw = {sg->wraw, NULL, NULL, 0, 0};

	cm_reset(cm, sg->count, cols);
	*fits = false;
	for (size_t i = sg->start; i < sg->start + sg->count; i++)
	{
		if ((size_t) (r.p - ac_base) > cap)
			return SP_OK;		/* larger than the caller's other coding */
		if (i % CM_POLL == CM_POLL - 1 && sp_check_interrupt(ctx) != SP_OK)
			return ctx->err.code;
		enc_elem(cm, k, &s, &r, &raw, load_word(k, ft, i), load_word(k, base, i));
	}
	*r.p++ = (uint8_t) (r.x1 >> 24);
	put_bits(&raw, 0, 7);
	sg->alen = (size_t) (r.p - sg->wac);
	sg->rlen = (size_t) (raw.p - sg->wraw);
	*fits = true;
	return SP_OK;
}

/* Copy the header and segments (each: stream, then raw bits) to out; false if cap is short. */
static bool
enc_assemble(const cm_seg *sg, int nseg, uint32_t cols, uint32_t col0, uint8_t *out,
			 size_t cap, size_t *len)
{
	size_t		pos = CM_HDR(nseg);

	for (int j = 0; j < nseg; j++)
	{
		if (sg[j].alen + sg[j].rlen > cap || pos > cap - sg[j].alen - sg[j].rlen)
			return false;
		pos += sg[j].alen + sg[j].rlen;
	}
	sp_put32(out, cols);
	sp_put32(out + 4, col0);
	sp_put32(out + 8, (uint32_t) nseg);
	pos = CM_HDR(nseg);
	for (int j = 0; j < nseg; j++)
	{
		sp_put32(out + 12 + 12 * j, (uint32_t) sg[j].count);
		sp_put32(out + 16 + 12 * j, (uint32_t) sg[j].alen);
		sp_put32(out + 20 + 12 * j, (uint32_t) sg[j].rlen);
		memcpy(out + pos, sg[j].wac, sg[j].alen);
		memcpy(out + pos + sg[j].alen, sg[j].wraw, sg[j].rlen);
		pos += sg[j].alen + sg[j].rlen;
	}
	*len = pos;
	return true;
}

/* Encode a chunk (see tensorcm.h): one segment, or two halves from CM_SEG_MIN elements on. */
sp_status
sp_cm_encode(sp_ctx *ctx, sp_cm **cmp, sp_dtype dt, uint32_t cols, uint32_t col0,
			 const uint8_t *ft, const uint8_t *base, size_t n, uint8_t *out, size_t cap,
			 size_t *len)
{
	cm_word		k = word_of(dt);
	size_t		m = n / (size_t) (k.w / 8);
	int			nseg = m >= CM_SEG_MIN ? 2 : 1;
	cm_seg		sg[2] = {{.count = nseg == 2 ? m / 2 : m}, {.count = m - m / 2}};
	sp_cm	   *cm;

	*len = 0;
	if (!sp_cm_supports(dt) || n > SP_TENSOR_CHUNK || n % (size_t) (k.w / 8) != 0 ||
		cols == 0 || col0 >= cols)
		return sp_fail(ctx, SP_ERR_INTERNAL, "bad CM chunk of %zu bytes", n);
	if (cap <= CM_HDR(nseg))
		return SP_OK;			/* no room: the caller's other coding is smaller */
	/* the streams go to scratch with room for one element past cap, so no check per bit */
	if ((cm = cm_ready(ctx, cmp, sg[nseg - 1].count, cols)) == NULL ||	/* the longer half */
		sp_reserve(ctx, &cm->ac, &cm->accap, cap + CM_ELEM_MAX + 8) != SP_OK ||
		sp_reserve(ctx, &cm->raw, &cm->rawcap, n + 16) != SP_OK)
		return ctx->err.code;
	seg_layout(sg, nseg, cols, col0);
	sg[0].wac = cm->ac;
	sg[0].wraw = cm->raw;
	for (int j = 0; j < nseg; j++)
	{
		bool		fits;

		if (j > 0)
		{
			sg[j].wac = sg[j - 1].wac + sg[j - 1].alen;
			sg[j].wraw = sg[j - 1].wraw + sg[j - 1].rlen;
		}
		if (enc_seg(ctx, cm, &k, cols, &sg[j], ft, base, cm->ac, cap, &fits) != SP_OK)
			return ctx->err.code;
		if (!fits)
			return SP_OK;
	}
	if (!enc_assemble(sg, nseg, cols, col0, out, cap, len))
		*len = 0;
	return SP_OK;
}

/*
 * Decode the segments job j owns (first, first + step, ...) into ft; any
 * thread: it touches only its model, the segments' bytes and their
 * elements of ft, and polls the interrupt hook of its own ctx.
 */
static int
dec_segs(cm_job *j)
{
	for (int g = j->first; g < j->nseg; g += j->step)
	{
		const cm_seg *sg = &j->segs[g];
		cm_pos		s = pos_begin(j->cols, sg->col0, sg->count);
		cm_coder	r = {0, 0xFFFFFFFFu, 0, NULL, sg->ac, sg->ac + sg->alen};
		cm_bits		raw = {NULL, sg->ac + sg->alen, sg->ac + sg->alen + sg->rlen, 0, 0};

		cm_reset(j->cm, sg->count, j->cols);
		for (int b = 0; b < 4; b++)
			r.x = (r.x << 8) | (r.in < r.end ? *r.in++ : 0xFF);
		for (size_t i = sg->start; i < sg->start + sg->count; i++)
		{
			uint32_t	f;

			if (i % CM_POLL == CM_POLL - 1 && sp_check_interrupt(j->ctx) != SP_OK)
				return CM_STOPPED;
			dec_elem(j->cm, &j->k, &s, &r, &raw, load_word(&j->k, j->base, i), &f);
			store_word(&j->k, j->ft, i, f);
		}
		if (r.in != r.end || raw.in != raw.end)
			return CM_TRAILING;
	}
	return CM_DONE;
}

/* A helper's interrupted hook: the caller asked it to stop (one flag, nothing else). */
static int
cm_stopped(void *user)
{
	return __atomic_load_n((const int *) user, __ATOMIC_RELAXED);
}

/* A helper thread: decode its segments under a ctx of its own. */
static void *
cm_helper(void *arg)
{
	cm_job	   *j = arg;
	sp_ctx		plain;

	/* an interrupt check of the caller's stop flag: never the caller's hooks */
	sp_ctx_init(&plain);
	plain.hooks.interrupted = cm_stopped;
	plain.hooks.user = j->stop;
	j->ctx = &plain;
	j->result = dec_segs(j);
	j->ctx = NULL;
	return NULL;
}

/*
 * Read and check the header: cols, col0, the segment count and each
 * segment's element count and lengths, which must cover the m elements and
 * the payload exactly.  Returns the segment count, 0 when damaged.
 */
static int
dec_header(sp_ctx *ctx, const uint8_t *payload, size_t plen, size_t m, cm_seg *sg,
		   uint32_t *cols)
{
	uint32_t	col0,
				nseg;
	uint64_t	count = 0,
				pos;

	if (plen < 12)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short"), 0;
	if ((nseg = sp_get32(payload + 8)) == 0 || nseg > CM_SEG_MAX)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has an invalid segment count %u", nseg), 0;
	if (plen < CM_HDR(nseg))
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload is too short"), 0;
	*cols = sp_get32(payload);
	col0 = sp_get32(payload + 4);
	if (*cols == 0 || col0 >= *cols)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has an invalid row length %u (first column %u)",
					   *cols, col0), 0;
	pos = CM_HDR(nseg);
	for (uint32_t g = 0; g < nseg; g++)
	{
		sg[g].count = sp_get32(payload + 12 + 12 * g);
		sg[g].alen = sp_get32(payload + 16 + 12 * g);
		sg[g].rlen = sp_get32(payload + 20 + 12 * g);
		sg[g].ac = payload + SP_MIN(pos, (uint64_t) plen);
		count += sg[g].count;
		pos += (uint64_t) sg[g].alen + sg[g].rlen;
		if (sg[g].count == 0)
			return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has an empty segment"), 0;
	}
	if (count != m)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk segments hold %llu elements, not %zu",
					   (unsigned long long) count, m), 0;
	if (pos != plen)
		return sp_fail(ctx, SP_ERR_CORRUPT, pos > plen ? "tensor chunk payload is too short"
					   : "tensor chunk payload has trailing bytes"), 0;
	seg_layout(sg, (int) nseg, *cols, col0);
	return (int) nseg;
}

/*
 * Start helpers for jobs 1 .. nj-1 (each with its model, allocated here on
 * the caller's thread); a job whose thread does not start stays inline.
 */
static sp_status
dec_spawn(sp_ctx *ctx, sp_cm *cm, cm_job *jobs, int nj, pthread_t *th, bool *started)
{
	for (int i = 1; i < nj; i++)
	{
		if (cm_ready(ctx, &cm->helper[i - 1], jobs[i].maxcount, jobs[i].cols) == NULL)
			return ctx->err.code;
		jobs[i].cm = cm->helper[i - 1];
	}
	for (int i = 1; i < nj; i++)
		started[i] = sp_spawn_blocked(&th[i], cm_helper, &jobs[i]);
	return SP_OK;
}

/* Run job 0 here, join the helpers, run the jobs no thread took; the worst result. */
static int
dec_run(sp_ctx *ctx, cm_job *jobs, int nj, pthread_t *th, const bool *started, int *stop)
{
	int			worst = dec_segs(&jobs[0]);

	if (worst == CM_STOPPED)
		__atomic_store_n(stop, 1, __ATOMIC_RELAXED);
	for (int i = 1; i < nj; i++)
	{
		if (started[i])
			pthread_join(th[i], NULL);
		else if (worst != CM_STOPPED)
		{
			jobs[i].ctx = ctx;
			jobs[i].result = dec_segs(&jobs[i]);
		}
		else
			jobs[i].result = CM_STOPPED;
		worst = SP_MAX(worst, jobs[i].result);
	}
	return worst;
}

/* Decode a chunk (see tensorcm.h): its segments on up to ctx->threads threads. */
sp_status
sp_cm_decode(sp_ctx *ctx, sp_cm **cmp, sp_dtype dt, const uint8_t *base,
			 const uint8_t *payload, size_t plen, uint8_t *ft, size_t n)
{
	cm_word		k = word_of(dt);
	size_t		m = n / (size_t) (k.w / 8);
	cm_seg		sg[CM_SEG_MAX];
	cm_job		jobs[CM_SEG_MAX];
	pthread_t	th[CM_SEG_MAX];
	bool		started[CM_SEG_MAX] = {false};
	uint32_t	cols;
	int			nseg,
				nj,
				stop = 0,
				worst;

	if (!sp_cm_supports(dt) || n > SP_TENSOR_CHUNK || n % (size_t) (k.w / 8) != 0)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	if ((nseg = dec_header(ctx, payload, plen, m, sg, &cols)) == 0)
		return ctx->err.code;
	nj = SP_MIN(nseg, sp_pool_threads(ctx->threads));
	for (int i = 0; i < nj; i++)
	{
		jobs[i] = (cm_job) {NULL, k, cols, base, ft, sg, nseg, i, nj, ctx, &stop, CM_DONE, 0};
		for (int g = i; g < nseg; g += nj)
			jobs[i].maxcount = SP_MAX(jobs[i].maxcount, sg[g].count);
	}
	if ((jobs[0].cm = cm_ready(ctx, cmp, jobs[0].maxcount, cols)) == NULL ||
		dec_spawn(ctx, jobs[0].cm, jobs, nj, th, started) != SP_OK)
		return ctx->err.code;
	worst = dec_run(ctx, jobs, nj, th, started, &stop);
	if (worst == CM_STOPPED)
		return ctx->err.code;
	if (worst == CM_TRAILING)
		return sp_fail(ctx, SP_ERR_CORRUPT, "tensor chunk payload has trailing bytes");
	return SP_OK;
}

/* Free the state. */
void
sp_cm_free(sp_ctx *ctx, sp_cm *cm)
{
	if (cm == NULL)
		return;
	sp_free(ctx, cm->colbuf);
	sp_free(ctx, cm->ac);
	sp_free(ctx, cm->raw);
	for (int i = 0; i < CM_SEG_MAX - 1; i++)
		sp_cm_free(ctx, cm->helper[i]);
	sp_free(ctx, cm);
}
