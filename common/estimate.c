/*
 * estimate.c -- predict the delta size from a small sample, in well under a
 * second.
 *
 * How it works: the fine-tune's headers are parsed and every tensor is paired
 * by name as the encoder would.  From each tensor, evenly spaced windows of
 * 64 KiB are coded with the real chunk coder at level 3 (about
 * sample_fraction of its bytes, at least SP_MIN_WINDOWS windows; a tensor
 * smaller than that is coded whole) and the coded/raw ratio is extrapolated
 * to the whole tensor.  Headers, gaps and other files are coded whole when
 * small, else sampled the same way with their zstd prefix window.  Record
 * overhead is added per chunk.  A tensor whose sampled windows all equal the
 * base counts as identical and costs one COPY record.
 */
#include "codec.h"
#include "container.h"
#include "model.h"

#define SP_WINDOW (64u << 10)
#define SP_MIN_WINDOWS 3
#define SP_EST_LEVEL 3
#define SP_RECORD_COST (SP_REC_HDR + SP_CHUNK_HDR + SP_REC_SUM)
#define SP_SMALL_BUDGET (16u << 20) /* bytes of small tensors coded whole per file, at least */

/*
 * Small tensors (coded whole) of one file.  When there are many of them (a
 * mixture of experts has tens of thousands), only every stride-th is coded
 * and the others are extrapolated from those, so the estimate stays a sample.
 */
typedef struct small_sample
{
	uint64_t	stride;
	uint64_t	seen;			/* small tensors met so far */
	double		coded_est;		/* estimated bytes of the coded ones */
	uint64_t	coded_len,		/* their size */
				coded_paired,	/* how many had a base partner */
				coded_identical;	/* ... and were equal to it */
	uint64_t	skipped_len,
				skipped_paired;
} small_sample;

/* State of one estimate. */
typedef struct estimator
{
	sp_ctx	   *ctx;
	sp_model   *base;
	sp_fileset *ft;
	double		fraction;
	bool		cm;				/* compress would try the CM transform */
	sp_codec	codec;
	uint8_t    *fbuf,
			   *bbuf,
			   *cbuf,
			   *pay;
	size_t		pay_cap;
	double		est;			/* estimated delta bytes so far */
	sp_estimate *out;
} estimator;

/* Number of sample windows for a region of len bytes (0: code it whole). */
static uint64_t
windows_for(const estimator *s, uint64_t len)
{
	uint64_t	k = (uint64_t) (s->fraction * (double) len / SP_WINDOW + 0.999);

	k = SP_MAX(k, (uint64_t) SP_MIN_WINDOWS);
	return k * SP_WINDOW >= len ? 0 : k;
}

/* Start of window i of k in a region of len bytes, aligned to w. */
static uint64_t
window_at(uint64_t i, uint64_t k, uint64_t len, size_t win, size_t w)
{
	uint64_t	span = len - win;
	uint64_t	at = k > 1 ? (uint64_t) ((double) span * (double) i / (double) (k - 1)) : span / 2;

	return at / w * w;
}

/*
 * Coded size of n tensor bytes at off (base at boff in bfile, or none); *same
 * if equal.  *tr < 0 asks for the encoder's own choice and receives it, so
 * later windows of the same tensor reuse it instead of trying both.
 */
static sp_status
code_tensor_window(estimator *s, size_t fi, const sp_tensor *t, uint64_t off, size_t n,
				   long bfile, sp_dtype bdt, uint64_t boff, size_t *coded, bool *same, int *tr)
{
	sp_dtype	dt = t->dtype;
	size_t		elems = n / (size_t) sp_dtype_size(dt);
	sp_tgeom	g = sp_tgeom_for(t, (off - t->begin) / (uint64_t) sp_dtype_size(dt), s->cm);
	uint8_t		chosen;
	uint8_t    *bp = s->bbuf;

	if (sp_check_interrupt(s->ctx) != SP_OK ||
		sp_fileset_read(s->ctx, s->ft, fi, off, s->fbuf, n) != SP_OK ||
		(bfile >= 0 && sp_fileset_read(s->ctx, &s->base->fs, bfile, boff, s->bbuf,
									   elems * (size_t) sp_dtype_size(bdt)) != SP_OK))
		return s->ctx->err.code;
	if (bfile >= 0 && bdt != dt)
	{
		sp_convert(bdt, dt, s->bbuf, s->cbuf, elems);
		bp = s->cbuf;
	}
	*same = bfile >= 0 && memcmp(s->fbuf, bp, n) == 0;
	if (*same)
	{
		*coded = 0;
		return SP_OK;
	}
	if (bfile < 0)
		*tr = SP_TR_NONE;
	if (*tr >= 0)
		return sp_codec_encode_tensor_as(s->ctx, &s->codec, SP_EST_LEVEL, dt, *tr, s->fbuf,
										 bfile >= 0 ? bp : NULL, n, &g, s->pay, s->pay_cap,
										 coded, &chosen);
	if (sp_codec_encode_tensor(s->ctx, &s->codec, SP_EST_LEVEL, dt, s->fbuf, bp, n, &g,
							   s->pay, s->pay_cap, coded, &chosen) != SP_OK)
		return s->ctx->err.code;
	*tr = chosen;
	return SP_OK;
}

/*
 * Ask the kernel for every window of a run at once, so on a cold cache the
 * reads overlap with coding instead of arriving one seek at a time.
 */
static void
prefetch_windows(estimator *s, size_t fi, sp_dtype dt, uint64_t off, uint64_t len, uint64_t k,
				 long bfile, sp_dtype bdt, uint64_t boff)
{
	size_t		w = (size_t) sp_dtype_size(dt);
	size_t		win = SP_WINDOW / w * w;

	for (uint64_t i = 0; i < k; i++)
	{
		uint64_t	at = window_at(i, k, len, win, w);

		sp_fileset_prefetch(s->ctx, s->ft, fi, off + at, win);
		if (bfile >= 0)
			sp_fileset_prefetch(s->ctx, &s->base->fs, (size_t) bfile,
								boff + at / w * (uint64_t) sp_dtype_size(bdt),
								win / w * (uint64_t) sp_dtype_size(bdt));
	}
}

/* Is a tensor of len bytes small enough to be coded whole? */
static bool
is_small(const estimator *s, uint64_t len)
{
	return len > 0 && windows_for(s, len) == 0;
}

/* Choose how many small tensors of a file to skip between two coded ones. */
static void
small_plan(const estimator *s, const sp_st_header *h, small_sample *ss)
{
	uint64_t	total = 0,
				small = 0,
				budget;

	memset(ss, 0, sizeof(*ss));
	for (size_t j = 0; j < h->n; j++)
	{
		uint64_t	len = h->t[j].end - h->t[j].begin;

		total += len;
		small += is_small(s, len) ? len : 0;
	}
	budget = SP_MAX((uint64_t) (s->fraction * (double) total), (uint64_t) SP_SMALL_BUDGET);
	ss->stride = small > budget ? (small + budget - 1) / budget : 1;
}

/* Is small tensor number k (in file order) one of those coded? */
static bool
small_coded(const small_sample *ss, uint64_t k)
{
	return k % ss->stride == 0;
}

/* Prefetch the windows of every tensor of a file before coding any of them. */
static void
prefetch_file(estimator *s, size_t fi, const sp_st_header *h, const small_sample *ss)
{
	uint64_t	k = 0;

	for (size_t j = 0; j < h->n; j++)
	{
		const sp_tensor *t = &h->t[j];
		uint64_t	len = t->end - t->begin,
					paired;
		const sp_tref *r = sp_pair_tensor(s->base, t, &paired);

		if (is_small(s, len) && !small_coded(ss, k++))
			continue;
		if (paired > 0)
			prefetch_windows(s, fi, t->dtype, t->begin, paired, windows_for(s, paired),
							 (long) r->file, r->t->dtype, r->t->begin);
		if (len > paired)
			prefetch_windows(s, fi, t->dtype, t->begin + paired, len - paired,
							 windows_for(s, len - paired), -1, t->dtype, 0);
	}
}

/* Estimate a run of tensor bytes; *all_same tells if every sample equalled the base. */
static sp_status
estimate_tensor_run(estimator *s, size_t fi, const sp_tensor *t, uint64_t off, uint64_t len,
					long bfile, sp_dtype bdt, uint64_t boff, bool *all_same)
{
	size_t		w = (size_t) sp_dtype_size(t->dtype);
	size_t		win = SP_WINDOW / w * w;
	uint64_t	k = windows_for(s, len),
				sampled = 0;
	double		coded_sum = 0;
	int			tr = -1;

	*all_same = true;
	for (uint64_t i = 0; i < (k ? k : (len + SP_TENSOR_CHUNK - 1) / SP_TENSOR_CHUNK); i++)
	{
		uint64_t	at = k ? window_at(i, k, len, win, w) : i * SP_TENSOR_CHUNK;
		size_t		n = k ? win : (size_t) SP_MIN((uint64_t) SP_TENSOR_CHUNK, len - at);
		size_t		coded;
		bool		same = false;

		uint64_t	bat = at / w * (uint64_t) sp_dtype_size(bdt);

		if (code_tensor_window(s, fi, t, off + at, n, bfile, bdt, boff + bat, &coded, &same,
							   &tr) != SP_OK)
			return s->ctx->err.code;
		*all_same = *all_same && same;
		coded_sum += (double) coded;
		sampled += n;
	}
	if (!*all_same)
		s->est += coded_sum * ((double) len / (double) sampled) +
			SP_RECORD_COST * (double) ((len + SP_TENSOR_CHUNK - 1) / SP_TENSOR_CHUNK);
	else
		s->est += SP_RECORD_COST;
	return SP_OK;
}

/* Estimate one tensor and count it; *identical tells if it equalled its base. */
static sp_status
estimate_tensor(estimator *s, size_t fi, const sp_tensor *t, bool *identical)
{
	uint64_t	len = t->end - t->begin,
				paired;
	const sp_tref *r = sp_pair_tensor(s->base, t, &paired);
	bool		same = true,
				same2 = true,
				pairs = r != NULL;

	s->out->tensors_total++;
	if (paired && estimate_tensor_run(s, fi, t, t->begin, paired, r->file, r->t->dtype,
									  r->t->begin, &same) != SP_OK)
		return s->ctx->err.code;
	if (len > paired && estimate_tensor_run(s, fi, t, t->begin + paired, len - paired,
											-1, t->dtype, 0, &same2) != SP_OK)
		return s->ctx->err.code;
	*identical = pairs && same && (len == paired || len == 0);
	if (!pairs)
		s->out->tensors_unpaired++;
	else if (*identical)
		s->out->tensors_identical++;
	else
		s->out->tensors_changed++;
	return SP_OK;
}

/* Estimate a small tensor, or skip it and count it for extrapolation. */
static sp_status
estimate_small(estimator *s, size_t fi, const sp_tensor *t, small_sample *ss)
{
	uint64_t	len = t->end - t->begin,
				paired;
	bool		pairs = sp_pair_tensor(s->base, t, &paired) != NULL,
				identical;
	double		before = s->est;

	if (!small_coded(ss, ss->seen++))
	{
		s->out->tensors_total++;
		s->out->tensors_unpaired += !pairs;
		ss->skipped_len += len;
		ss->skipped_paired += pairs;
		return SP_OK;
	}
	if (estimate_tensor(s, fi, t, &identical) != SP_OK)
		return s->ctx->err.code;
	ss->coded_est += s->est - before;
	ss->coded_len += len;
	ss->coded_paired += pairs;
	ss->coded_identical += identical;
	return SP_OK;
}

/* Add the skipped small tensors at the ratio of the coded ones. */
static void
small_extrapolate(estimator *s, const small_sample *ss)
{
	uint64_t	ident;

	if (ss->skipped_len == 0 && ss->skipped_paired == 0)
		return;
	s->est += ss->coded_len ? ss->coded_est * ((double) ss->skipped_len / (double) ss->coded_len)
		: (double) ss->skipped_len;
	ident = ss->coded_paired ? (uint64_t) ((double) ss->skipped_paired * (double) ss->coded_identical /
										   (double) ss->coded_paired + 0.5) : 0;
	s->out->tensors_identical += (int64_t) ident;
	s->out->tensors_changed += (int64_t) (ss->skipped_paired - ident);
}

/* Coded size of a generic window at off (n bytes) with the partner prefix. */
static sp_status
code_generic_window(estimator *s, size_t fi, long partner, uint64_t off, size_t n, double *coded)
{
	uint64_t	boff = 0,
				blen = 0;
	size_t		used;

	if (sp_check_interrupt(s->ctx) != SP_OK ||
		sp_fileset_read(s->ctx, s->ft, fi, off, s->fbuf, n) != SP_OK)
		return s->ctx->err.code;
	if (partner >= 0)
	{
		uint64_t	psize = s->base->fs.f[partner].size;

		sp_prefix_window(off, psize, &boff, &blen);
		if (sp_fileset_read(s->ctx, &s->base->fs, partner, boff, s->bbuf, (size_t) blen) != SP_OK)
			return s->ctx->err.code;
		if (off + n <= psize && memcmp(s->bbuf + (off - boff), s->fbuf, n) == 0)
		{
			*coded = 0;
			return SP_OK;
		}
	}
	if (sp_codec_encode_zstd(s->ctx, &s->codec, SP_EST_LEVEL, s->fbuf, n, s->bbuf,
							 (size_t) blen, s->pay, s->pay_cap, &used) != SP_OK)
		return s->ctx->err.code;
	*coded = (double) used;
	return SP_OK;
}

/* Estimate a generic region [off, off+len) of file fi. */
static sp_status
estimate_generic(estimator *s, size_t fi, long partner, uint64_t off, uint64_t len)
{
	uint64_t	k = len <= SP_ZSTD_CHUNK ? 0 : windows_for(s, len),
				sampled = 0;
	double		coded_sum = 0;

	for (uint64_t i = 0; i < (k ? k : (len + SP_ZSTD_CHUNK - 1) / SP_ZSTD_CHUNK); i++)
	{
		uint64_t	at = k ? window_at(i, k, len, SP_WINDOW, 1) : i * SP_ZSTD_CHUNK;
		size_t		n = k ? SP_WINDOW : (size_t) SP_MIN((uint64_t) SP_ZSTD_CHUNK, len - at);
		double		coded = 0;

		if (code_generic_window(s, fi, partner, off + at, n, &coded) != SP_OK)
			return s->ctx->err.code;
		coded_sum += coded;
		sampled += n;
	}
	if (len)
		s->est += coded_sum * ((double) len / (double) sampled) +
			SP_RECORD_COST * (double) ((len + SP_ZSTD_CHUNK - 1) / SP_ZSTD_CHUNK);
	return SP_OK;
}

/* Estimate one fine-tune file. */
static sp_status
estimate_file(estimator *s, size_t fi)
{
	sp_st_header h = {0};
	bool		st;
	uint64_t	pos = 0;
	long		partner;
	small_sample ss;
	sp_status	rc = SP_OK;

	if (sp_load_header(s->ctx, s->ft, fi, &h, &st) != SP_OK)
		return s->ctx->err.code;
	partner = sp_partner(s->base, s->ft, fi, st ? &h : NULL);
	small_plan(s, &h, &ss);
	prefetch_file(s, fi, &h, &ss);
	s->est += 2 * SP_REC_HDR + 2 * SP_REC_SUM + 14 + 48 + strlen(s->ft->f[fi].rel);
	for (size_t j = 0; j < h.n && rc == SP_OK; j++)
	{
		const sp_tensor *t = &h.t[j];

		if (t->end == t->begin)
		{
			s->out->tensors_total++;
			s->out->tensors_identical += sp_model_lookup(s->base, t->name) != NULL;
			s->out->tensors_unpaired += sp_model_lookup(s->base, t->name) == NULL;
			continue;
		}
		bool		identical;

		if (t->begin > pos)
			rc = estimate_generic(s, fi, partner, pos, t->begin - pos);
		if (rc == SP_OK)
			rc = is_small(s, t->end - t->begin) ? estimate_small(s, fi, t, &ss)
				: estimate_tensor(s, fi, t, &identical);
		pos = t->end;
	}
	small_extrapolate(s, &ss);
	if (rc == SP_OK)
		rc = estimate_generic(s, fi, partner, pos, s->ft->f[fi].size - pos);
	sp_st_free(s->ctx, &h);
	return rc;
}

/* Allocate the estimator's buffers. */
static sp_status
estimator_init(sp_ctx *ctx, estimator *s)
{
	size_t		fcap = (size_t) SP_MIN((uint64_t) SP_CHUNK_MAX, sp_fileset_max_size(s->ft));
	size_t		bcap = (size_t) SP_MIN((uint64_t) SP_PREFIX_MAX, sp_fileset_max_size(&s->base->fs));

	s->ctx = ctx;
	s->pay_cap = sp_codec_bound(fcap);
	s->fbuf = sp_alloc(ctx, fcap);
	s->bbuf = sp_alloc(ctx, bcap);
	s->cbuf = sp_alloc(ctx, fcap);
	s->pay = sp_alloc(ctx, s->pay_cap);
	if (!s->fbuf || !s->bbuf || !s->cbuf || !s->pay)
		return SP_ERR_NOMEM;
	return sp_codec_init(ctx, &s->codec);
}

/* Estimate the delta size of ft against base from a sample. */
sp_status
sp_delta_estimate(sp_ctx *ctx, const char *base, const char *ft, double sample_fraction,
				  sp_estimate *out)
{
	double		t0 = sp_now_ms();
	sp_model	bm = {.fs.fd = -1};
	sp_fileset	fs = {.fd = -1};
	estimator	s = {0};
	sp_status	rc;

	sp_clear_error(ctx);
	memset(out, 0, sizeof(*out));
	fs.fd = -1;
	if (!(sample_fraction > 0 && sample_fraction <= 1))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "sample fraction %g is out of range (greater than 0, at most 1)", sample_fraction);
	s.fraction = sample_fraction;
	s.out = out;
	s.ft = &fs;
	s.base = &bm;
	if ((rc = sp_model_open(ctx, base, true, &bm)) == SP_OK &&
		(rc = sp_fileset_open(ctx, ft, &fs)) == SP_OK &&
		(rc = estimator_init(ctx, &s)) == SP_OK)
	{
		uint64_t	ft_total = 0;

		s.est = SP_HEADER_LEN + 3 * (SP_REC_HDR + SP_REC_SUM) + 80 + 4;
		for (size_t i = 0; i < bm.fs.n; i++)
			out->base_bytes += bm.fs.f[i].size;
		for (size_t i = 0; i < fs.n; i++)
			ft_total += fs.f[i].size;
		s.cm = sp_cm_wanted(SP_EST_LEVEL, ft_total);
		for (size_t i = 0; i < fs.n && rc == SP_OK; i++)
		{
			out->ft_bytes += fs.f[i].size;
			rc = estimate_file(&s, i);
			sp_progress(ctx, i + 1, fs.n);
		}
	}
	if (rc == SP_OK)
	{
		double		est;

		/* ratio and savings from the rounded size, so the three columns agree */
		out->est_delta_bytes = (uint64_t) (s.est + 0.5);
		est = (double) out->est_delta_bytes;
		out->est_compression = est > 0 ? (double) out->ft_bytes / est : 0;
		out->savings_pct = out->ft_bytes ? 100.0 * (1.0 - est / (double) out->ft_bytes) : 0;
		out->elapsed_ms = sp_now_ms() - t0;
	}
	if (s.ctx)
		sp_codec_free(ctx, &s.codec);
	sp_free(ctx, s.fbuf);
	sp_free(ctx, s.bbuf);
	sp_free(ctx, s.cbuf);
	sp_free(ctx, s.pay);
	sp_fileset_close(ctx, &fs);
	sp_model_close(ctx, &bm);
	return rc;
}
