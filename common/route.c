/*
 * route.c -- the routing catalog, quality prediction, decisions and the
 * trainer of the learned predictors (API and rules in route.h).
 *
 * Prediction: a model with a learned predictor gets
 * sigmoid(bias + sum of its weights at the prompt's feature slots / sqrt(n))
 * (logistic regression over hashed features, route_text.c); any other model
 * gets its catalog prior for the prompt's complexity class.  Learned weights
 * are stored slot-major (all models' weights of one slot side by side), so
 * predicting every model costs one cache line per feature, not one per
 * feature and model.
 *
 * Decision: filter the catalog by enabled and context window, compare each
 * candidate's predicted quality with threshold * the requested model's, and
 * pick by cost or by quality (route.h); the rollout side is a hash of the
 * request id (or of the prompt) modulo 10^6 against percentage * 10^4.
 *
 * Training: plain SGD on the log loss, one weight vector per model, fed one
 * row at a time by the binding (so the core never calls into a database),
 * epochs with a learning rate decaying as 1/sqrt(epoch + 1) and L2 applied
 * to the weights a row touches.  All arithmetic is in a fixed order on
 * doubles, so the same rows in the same order give the same bits.
 */
#include "route_int.h"

#include <math.h>
#include <string.h>

#include <xxhash.h>

#include "util.h"

#define BLOB_MAGIC "SPRW"
#define WEIGHT_LIMIT 1e6
#define ROLLOUT_SCALE 1000000

/* PREDICT_LANES floats added as one vector in predict_all. */
#define PREDICT_LANES 8
typedef float lanes __attribute__((vector_size(PREDICT_LANES * sizeof(float))));

uint64_t
sp_route_hash(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

/* ---- catalog ------------------------------------------------------------ */

void
sp_route_catalog_init(sp_route_catalog *cat)
{
	memset(cat, 0, sizeof(*cat));
}

/* Check one catalog row; SP_OK or the reason it is refused. */
static sp_status
check_model(sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_model *m)
{
	static const char *const qname[3] = {"quality_simple", "quality_moderate", "quality_complex"};

	if (m->model_id == NULL || m->model_id[0] == '\0')
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "catalog model_id must not be empty");
	if (strlen(m->model_id) > SP_ROUTE_ID_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "catalog model_id is longer than %d bytes",
					   SP_ROUTE_ID_MAX);
	if (sp_route_catalog_find(cat, m->model_id) >= 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "catalog model \"%s\" appears twice",
					   m->model_id);
	if (!(m->cost_per_1m_tokens >= 0) || !isfinite(m->cost_per_1m_tokens))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "catalog model \"%s\": cost_per_1m_tokens must be a finite number >= 0",
					   m->model_id);
	if (m->context_window < 1)
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "catalog model \"%s\": context_window must be at least 1", m->model_id);
	for (int k = 0; k < 3; k++)
		if (!(m->quality[k] >= 0 && m->quality[k] <= 1))
			return sp_fail(ctx, SP_ERR_INVALID_ARG,
						   "catalog model \"%s\": %s must be between 0 and 1",
						   m->model_id, qname[k]);
	if (cat->n >= SP_ROUTE_MODELS_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "the catalog holds more than %d models",
					   SP_ROUTE_MODELS_MAX);
	if ((m->family && strlen(m->family) > SP_ROUTE_ID_MAX) ||
		(m->hardware && strlen(m->hardware) > SP_ROUTE_ID_MAX))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "catalog model \"%s\": family and hardware are limited to %d bytes",
					   m->model_id, SP_ROUTE_ID_MAX);
	return SP_OK;
}

/* Grow the model and learned-column arrays to hold one more model. */
static sp_status
catalog_grow(sp_ctx *ctx, sp_route_catalog *cat)
{
	size_t		cap = cat->cap ? cat->cap * 2 : 16;
	sp_route_model *m;
	int		   *l;

	if (cat->n < cat->cap)
		return SP_OK;
	if ((m = sp_calloc(ctx, cap, sizeof(*m))) == NULL)
		return SP_ERR_NOMEM;
	if ((l = sp_calloc(ctx, cap, sizeof(*l))) == NULL)
	{
		sp_free(ctx, m);
		return SP_ERR_NOMEM;
	}
	if (cat->n)
	{
		memcpy(m, cat->models, cat->n * sizeof(*m));
		memcpy(l, cat->learned, cat->n * sizeof(*l));
	}
	sp_free(ctx, cat->models);
	sp_free(ctx, cat->learned);
	cat->models = m;
	cat->learned = l;
	cat->cap = cap;
	return SP_OK;
}

/* Copy an optional string (NULL stays NULL); false when out of memory. */
static bool
dup_opt(sp_ctx *ctx, const char *s, const char **out)
{
	*out = NULL;
	if (s == NULL)
		return true;
	return (*out = sp_strdup(ctx, s)) != NULL;
}

sp_status
sp_route_catalog_add(sp_ctx *ctx, sp_route_catalog *cat, const sp_route_model *m)
{
	sp_route_model *dst;
	sp_status	st;

	sp_clear_error(ctx);
	if ((st = check_model(ctx, cat, m)) != SP_OK)
		return st;
	if ((st = catalog_grow(ctx, cat)) != SP_OK)
		return st;
	dst = &cat->models[cat->n];
	*dst = *m;
	dst->model_id = dst->family = dst->hardware = NULL;	/* not ours to free */
	if (!dup_opt(ctx, m->model_id, &dst->model_id) ||
		!dup_opt(ctx, m->family, &dst->family) ||
		!dup_opt(ctx, m->hardware, &dst->hardware))
	{
		sp_free(ctx, (void *) dst->model_id);
		sp_free(ctx, (void *) dst->family);
		sp_free(ctx, (void *) dst->hardware);
		return SP_ERR_NOMEM;
	}
	cat->learned[cat->n++] = -1;
	return SP_OK;
}

int
sp_route_catalog_find(const sp_route_catalog *cat, const char *model_id)
{
	if (model_id == NULL)
		return -1;
	for (size_t i = 0; i < cat->n; i++)
		if (strcmp(cat->models[i].model_id, model_id) == 0)
			return (int) i;
	return -1;
}

/* Forget the installed predictors. */
static void
drop_learned(sp_ctx *ctx, sp_route_catalog *cat)
{
	sp_free(ctx, cat->weights);
	sp_free(ctx, cat->bias);
	cat->weights = NULL;
	cat->bias = NULL;
	cat->n_learned = 0;
	cat->stride = 0;
	for (size_t i = 0; i < cat->n; i++)
		cat->learned[i] = -1;
}

/* Check a stored predictor's header and values. */
static sp_status
check_blob(sp_ctx *ctx, const char *id, const uint8_t *b, size_t len)
{
	if (len != SP_ROUTE_BLOB_LEN)
		return sp_fail(ctx, SP_ERR_CORRUPT,
					   "predictor of \"%s\" is %zu bytes, expected %zu", id, len,
					   (size_t) SP_ROUTE_BLOB_LEN);
	if (memcmp(b, BLOB_MAGIC, 4) != 0)
		return sp_fail(ctx, SP_ERR_CORRUPT, "predictor of \"%s\" is not a sparse predictor", id);
	if (sp_get32(b + 4) != SP_ROUTE_FEATURE_VERSION || sp_get32(b + 8) != SP_ROUTE_DIM_BITS)
		return sp_fail(ctx, SP_ERR_CORRUPT,
					   "predictor of \"%s\" uses feature version %u with %u bits, this build uses %d with %d; run route_train() again",
					   id, sp_get32(b + 4), sp_get32(b + 8), SP_ROUTE_FEATURE_VERSION,
					   SP_ROUTE_DIM_BITS);
	for (size_t off = 12; off < len; off += 4)
	{
		uint32_t	u = sp_get32(b + off);
		float		f;

		memcpy(&f, &u, 4);
		if (!isfinite(f) || fabsf(f) > WEIGHT_LIMIT)
			return sp_fail(ctx, SP_ERR_CORRUPT,
						   "predictor of \"%s\" holds an invalid weight at byte %zu", id, off);
	}
	return SP_OK;
}

/* Read float k of a blob's weights (after the 16-byte header). */
static inline float
blob_weight(const uint8_t *b, size_t k)
{
	uint32_t	u = sp_get32(b + 16 + 4 * k);
	float		f;

	memcpy(&f, &u, 4);
	return f;
}

sp_status
sp_route_catalog_set_learned(sp_ctx *ctx, sp_route_catalog *cat, size_t n,
							 const char *const *ids, const void *const *blobs,
							 const size_t *lens)
{
	size_t		nl = 0;
	size_t		from[SP_ROUTE_MODELS_MAX];	/* per learned column: index in ids */
	sp_status	st;

	sp_clear_error(ctx);
	drop_learned(ctx, cat);
	for (size_t i = 0; i < n; i++)
	{
		int			m = sp_route_catalog_find(cat, ids[i]);

		if (m < 0 || cat->learned[m] >= 0)
			continue;
		if ((st = check_blob(ctx, ids[i], blobs[i], lens[i])) != SP_OK)
			return drop_learned(ctx, cat), st;
		cat->learned[m] = (int) nl;
		from[nl++] = i;			/* nl <= cat->n <= SP_ROUTE_MODELS_MAX */
	}
	if (nl == 0)
		return SP_OK;
	cat->stride = (nl + PREDICT_LANES - 1) / PREDICT_LANES * PREDICT_LANES;
	cat->weights = sp_alloc(ctx, (size_t) SP_ROUTE_DIM * cat->stride * sizeof(float));
	cat->bias = sp_alloc(ctx, nl * sizeof(float));
	if (cat->weights == NULL || cat->bias == NULL)
		return drop_learned(ctx, cat), SP_ERR_NOMEM;
	memset(cat->weights, 0, (size_t) SP_ROUTE_DIM * cat->stride * sizeof(float));
	cat->n_learned = nl;
	for (size_t c = 0; c < nl; c++)
	{
		const uint8_t *b = blobs[from[c]];
		uint32_t	u = sp_get32(b + 12);

		memcpy(&cat->bias[c], &u, 4);
		for (size_t k = 0; k < SP_ROUTE_DIM; k++)
			cat->weights[k * cat->stride + c] = blob_weight(b, k);
	}
	return SP_OK;
}

void
sp_route_catalog_free(sp_ctx *ctx, sp_route_catalog *cat)
{
	for (size_t i = 0; i < cat->n; i++)
	{
		sp_free(ctx, (void *) cat->models[i].model_id);
		sp_free(ctx, (void *) cat->models[i].family);
		sp_free(ctx, (void *) cat->models[i].hardware);
	}
	drop_learned(ctx, cat);
	sp_free(ctx, cat->models);
	sp_free(ctx, cat->learned);
	memset(cat, 0, sizeof(*cat));
}

/* ---- prediction ---------------------------------------------------------- */

/* Logistic function, safe for any input. */
static inline double
sigmoid(double z)
{
	if (z >= 0)
		return 1.0 / (1.0 + exp(-z));
	double		e = exp(z);

	return e / (1.0 + e);
}

/*
 * Add up, for the g (1-4) column blocks from block c on, the weights of
 * every feature into acc[c..c+g-1]: one pass over the features with g
 * sums kept in registers, each adding its slots in ascending order.
 */
static inline __attribute__((always_inline)) void
sum_blocks(const sp_route_catalog *cat, const sp_route_features *f, size_t c,
		   const int g, lanes *acc)
{
	const float *col = cat->weights + c * PREDICT_LANES;
	lanes		s0 = {0},
				s1 = {0},
				s2 = {0},
				s3 = {0};

	for (uint32_t j = 0; j < f->n; j++)
	{
		const float *w = col + (size_t) f->idx[j] * cat->stride;
		lanes		x;

		memcpy(&x, w, sizeof(x));
		s0 += x;
		if (g > 1)
			memcpy(&x, w + PREDICT_LANES, sizeof(x)), s1 += x;
		if (g > 2)
			memcpy(&x, w + 2 * PREDICT_LANES, sizeof(x)), s2 += x;
		if (g > 3)
			memcpy(&x, w + 3 * PREDICT_LANES, sizeof(x)), s3 += x;
	}
	acc[c] = s0;
	if (g > 1)
		acc[c + 1] = s1;
	if (g > 2)
		acc[c + 2] = s2;
	if (g > 3)
		acc[c + 3] = s3;
}

/*
 * Predicted quality of every model into q[cat->n]: the learned models' dot
 * products, PREDICT_LANES columns per vector (GCC/Clang vector types: SSE
 * or NEON, whatever the target has) and up to four vectors per pass over
 * the features.  Each column adds its weights in ascending slot order, so
 * the sums are those of a plain loop, bit for bit.
 */
static void
predict_all(const sp_route_catalog *cat, const sp_route_class *cls,
			const sp_route_features *f, double *q)
{
	lanes		acc[SP_ROUTE_MODELS_MAX / PREDICT_LANES];
	float		p[SP_ROUTE_MODELS_MAX];
	size_t		nl = cat->n_learned,
				nv = cat->stride / PREDICT_LANES;

	if (nl && f)
	{
		double		v = f->n ? 1.0 / sqrt((double) f->n) : 0;

		for (size_t c = 0; c < nv; c += 4)
		{
			switch (nv - c)
			{
				case 1:
					sum_blocks(cat, f, c, 1, acc);
					break;
				case 2:
					sum_blocks(cat, f, c, 2, acc);
					break;
				case 3:
					sum_blocks(cat, f, c, 3, acc);
					break;
				default:
					sum_blocks(cat, f, c, 4, acc);
					break;
			}
		}
		memcpy(p, acc, nl * sizeof(float));
		for (size_t c = 0; c < nl; c++)
			p[c] = (float) sigmoid(cat->bias[c] + v * p[c]);
	}
	for (size_t i = 0; i < cat->n; i++)
	{
		int			c = cat->learned[i];

		q[i] = (c >= 0 && f) ? p[c] : cat->models[i].quality[cls->complexity];
	}
}

double
sp_route_predict(const sp_route_catalog *cat, int i, const sp_route_class *cls,
				 const sp_route_features *feats)
{
	double		q[SP_ROUTE_MODELS_MAX];

	if (i < 0 || (size_t) i >= cat->n)
		return NAN;
	predict_all(cat, cls, feats, q);
	return q[i];
}

/* ---- decisions ------------------------------------------------------------ */

/* Check the arguments of a request. */
static sp_status
check_request(sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_request *r)
{
	if (r->requested_model == NULL)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "requested_model must not be null");
	if (r->prompt == NULL)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "prompt must not be null");
	if (r->max_tokens < 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "max_tokens must be at least 0, not %lld",
					   (long long) r->max_tokens);
	if (!(r->quality_threshold > 0 && r->quality_threshold <= 1))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "quality_threshold must be in (0, 1], not %g", r->quality_threshold);
	if (!(r->routing_percentage >= 0 && r->routing_percentage <= 100))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "routing percentage must be between 0 and 100, not %g",
					   r->routing_percentage);
	if (cat->n == 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "the routing catalog is empty");
	return SP_OK;
}

/* True when model a beats model b for the rule in use. */
static bool
better(const sp_route_catalog *cat, const double *q, int a, int b, bool by_cost)
{
	const sp_route_model *ma = &cat->models[a],
			   *mb = &cat->models[b];

	if (by_cost && ma->cost_per_1m_tokens != mb->cost_per_1m_tokens)
		return ma->cost_per_1m_tokens < mb->cost_per_1m_tokens;
	if (q[a] != q[b])
		return q[a] > q[b];
	if (!by_cost && ma->cost_per_1m_tokens != mb->cost_per_1m_tokens)
		return ma->cost_per_1m_tokens < mb->cost_per_1m_tokens;
	return strcmp(ma->model_id, mb->model_id) < 0;
}

/*
 * The model the rule picks, or -1: candidates fit the context and qualify;
 * without cost priority they must also be cheaper than the requested one.
 */
static int
pick(const sp_route_catalog *cat, const sp_route_request *r, const double *q,
	 int req, int64_t need, int *fitting)
{
	int			best = -1;
	double		bar = r->quality_threshold * q[req];
	double		req_cost = cat->models[req].cost_per_1m_tokens;

	*fitting = 0;
	for (size_t i = 0; i < cat->n; i++)
	{
		const sp_route_model *m = &cat->models[i];

		if (!m->enabled || m->context_window < need)
			continue;
		(*fitting)++;
		if (q[i] < bar)
			continue;
		if (!r->cost_priority && m->cost_per_1m_tokens >= req_cost)
			continue;
		if (best < 0 || better(cat, q, (int) i, best, r->cost_priority))
			best = (int) i;
	}
	return best;
}

/* Fill the costs and qualities of a decision about catalog model req. */
static void
fill_numbers(const sp_route_catalog *cat, const double *q, int req, sp_route_decision *d)
{
	const sp_route_model *rm = &cat->models[req],
			   *em = &cat->models[d->recommended];

	d->requested_cost_per_1m_tokens = rm->cost_per_1m_tokens;
	d->estimated_cost_per_1m_tokens = em->cost_per_1m_tokens;
	d->requested_predicted_quality = q[req];
	d->predicted_quality = q[d->recommended];
	d->cost_savings_pct = rm->cost_per_1m_tokens > 0 ?
		100.0 * (1.0 - em->cost_per_1m_tokens / rm->cost_per_1m_tokens) : 0.0;
}

/* Why the requested model is kept when the rule found nothing better. */
static void
reason_kept(const sp_route_request *r, int fitting, int64_t need, bool self_best,
			sp_route_decision *d)
{
	if (fitting == 0)
		snprintf(d->reason, sizeof(d->reason),
				 "no enabled model has a context window of %lld tokens; keeping the requested model",
				 (long long) need);
	else if (self_best)
		snprintf(d->reason, sizeof(d->reason),
				 "the requested model is already the cheapest that meets %g of its predicted quality",
				 r->quality_threshold);
	else
		snprintf(d->reason, sizeof(d->reason),
				 "no cheaper model meets %g of the requested model's predicted quality",
				 r->quality_threshold);
}

/* Why the recommended model serves instead of the requested one. */
static void
reason_routed(const sp_route_catalog *cat, const sp_route_request *r, const double *q,
			  int req, int best, int64_t need, sp_route_decision *d)
{
	const sp_route_model *rm = &cat->models[req];
	char		why[128] = "";

	if (!rm->enabled)
		snprintf(why, sizeof(why), "the requested model is disabled; ");
	else if (rm->context_window < need)
		snprintf(why, sizeof(why), "the requested model's context window (%lld) is under %lld tokens; ",
				 (long long) rm->context_window, (long long) need);
	snprintf(d->reason, sizeof(d->reason),
			 r->cost_priority ?
			 "%scheapest model meeting %g of the requested model's predicted quality (%.3f vs %.3f)" :
			 "%sbest predicted quality among cheaper models meeting %g of the requested model's (%.3f vs %.3f)",
			 why, r->quality_threshold, q[best], q[req]);
}

/* Decide for a requested model that is in the catalog. */
static void
decide_known(const sp_route_catalog *cat, const sp_route_request *r, const double *q,
			 int req, sp_route_decision *d)
{
	int64_t		need = r->max_tokens > INT64_MAX - d->cls.context_tokens ?
		INT64_MAX : d->cls.context_tokens + r->max_tokens;	/* saturate */
	int			fitting;
	int			best = pick(cat, r, q, req, need, &fitting);
	uint64_t	h = r->request_id ? sp_route_hash(r->request_id, r->request_id_len)
		: sp_route_hash(r->prompt, r->prompt_len);

	d->in_rollout = (double) (h % ROLLOUT_SCALE) < r->routing_percentage * (ROLLOUT_SCALE / 100);
	d->recommended = best >= 0 ? best : req;
	fill_numbers(cat, q, req, d);
	if (best < 0 || best == req)
	{
		d->served = req;
		reason_kept(r, fitting, need, best == req, d);
		return;
	}
	if (!d->in_rollout)
	{
		d->served = req;
		snprintf(d->reason, sizeof(d->reason),
				 "outside rollout (%g%% routed); would route to \"%s\"",
				 r->routing_percentage, cat->models[best].model_id);
		return;
	}
	d->served = best;
	d->routed = true;
	reason_routed(cat, r, q, req, best, need, d);
}

sp_status
sp_route_decide(sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_request *r,
				sp_route_decision *out, sp_route_features *feats)
{
	sp_route_features local;
	sp_route_features *f = feats;
	double		q[SP_ROUTE_MODELS_MAX];
	sp_route_warm warm;
	sp_status	st;

	sp_clear_error(ctx);
	memset(out, 0, sizeof(*out));
	if ((st = check_request(ctx, cat, r)) != SP_OK)
		return st;
	if (f == NULL && cat->n_learned)
		f = &local;
	warm.rows = cat->weights;
	warm.stride = cat->stride;
	if ((st = sp_route_analyze(ctx, r->prompt, r->prompt_len, r->max_tokens, &out->cls, f,
							   &warm)) != SP_OK)
		return st;
	out->requested = sp_route_catalog_find(cat, r->requested_model);
	out->recommended = out->served = out->requested;
	out->estimated_cost_per_1m_tokens = out->requested_cost_per_1m_tokens = NAN;
	out->cost_savings_pct = out->predicted_quality = out->requested_predicted_quality = NAN;
	if (out->requested < 0)
	{
		snprintf(out->reason, sizeof(out->reason),
				 "model \"%.180s\" is not in the routing catalog; returned unchanged",
				 r->requested_model);
		return SP_OK;
	}
	predict_all(cat, &out->cls, f, q);
	decide_known(cat, r, q, out->requested, out);
	return SP_OK;
}

/* ---- training -------------------------------------------------------------- */

/* Per-model state of the trainer. */
typedef struct trained
{
	double	   *w;				/* SP_ROUTE_DIM weights, allocated on first row */
	double		bias;
	int64_t		rows;			/* rows in the current pass */
	int64_t		rows_first;		/* rows in the first pass */
	double		loss;			/* log loss summed over the current pass */
	double		last_loss;		/* mean log loss of the last finished pass */
} trained;

struct sp_route_trainer
{
	const sp_route_catalog *cat;
	sp_route_train_opts opts;
	int			epoch;			/* current pass, from 0 */
	int64_t		rows, rows_first, skipped;
	double		loss, last_loss;
	trained    *m;				/* cat->n entries */
	int		   *order;			/* after the last pass: catalog index of trained k */
	int			n_trained;
	uint8_t    *blobs;			/* n_trained * SP_ROUTE_BLOB_LEN */
	sp_route_features feats;	/* features of the last prompt */
	uint8_t    *last;			/* copy of the last prompt (feedback rows come
								 * grouped by prompt: one per model) */
	size_t		last_len,
				last_cap;
	bool		last_valid;
};

sp_status
sp_route_train_begin(sp_ctx *ctx, const sp_route_catalog *cat,
					 const sp_route_train_opts *opts, sp_route_trainer **out)
{
	sp_route_trainer *t;

	sp_clear_error(ctx);
	*out = NULL;
	if (cat->n == 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "the routing catalog is empty");
	if ((t = sp_calloc(ctx, 1, sizeof(*t))) == NULL)
		return SP_ERR_NOMEM;
	if ((t->m = sp_calloc(ctx, cat->n, sizeof(trained))) == NULL)
		return sp_free(ctx, t), SP_ERR_NOMEM;
	t->cat = cat;
	t->opts.epochs = 8;
	t->opts.learning_rate = 0.2;
	t->opts.l2 = 1e-4;
	if (opts && opts->epochs > 0)
		t->opts.epochs = opts->epochs;
	if (opts && opts->learning_rate > 0)
		t->opts.learning_rate = opts->learning_rate;
	if (opts && opts->l2 > 0)
		t->opts.l2 = opts->l2;
	*out = t;
	return SP_OK;
}

/* The features of a sample, checked, into t->feats (or pointed to). */
static sp_status
sample_features(sp_ctx *ctx, sp_route_trainer *t, const sp_route_sample *s,
				const uint32_t **idx, size_t *n)
{
	if (s->prompt)
	{
		sp_status	st = SP_OK;

		*idx = t->feats.idx;
		if (!(t->last_valid && s->prompt_len == t->last_len &&
			  memcmp(s->prompt, t->last, s->prompt_len) == 0))
		{
			t->last_valid = false;
			if ((st = sp_route_analyze(ctx, s->prompt, s->prompt_len, 0, NULL, &t->feats, NULL)) != SP_OK ||
				(st = sp_reserve(ctx, &t->last, &t->last_cap, s->prompt_len + 1)) != SP_OK)
				return st;
			memcpy(t->last, s->prompt, s->prompt_len);
			t->last_len = s->prompt_len;
			t->last_valid = true;
		}
		*n = t->feats.n;
		return SP_OK;
	}
	if (s->n_features > SP_ROUTE_MAX_FEATURES)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "a training row has %zu features, more than %d",
					   s->n_features, SP_ROUTE_MAX_FEATURES);
	for (size_t j = 0; j < s->n_features; j++)
		if (s->features[j] >= SP_ROUTE_DIM)
			return sp_fail(ctx, SP_ERR_INVALID_ARG,
						   "a training row has feature slot %u, beyond %u",
						   s->features[j], SP_ROUTE_DIM - 1);
	*idx = s->features;
	*n = s->n_features;
	return SP_OK;
}

/* One SGD step of model m on features idx[n] with target y; returns the loss. */
static double
sgd_step(sp_route_trainer *t, trained *m, const uint32_t *idx, size_t n, double y)
{
	double		v = n ? 1.0 / sqrt((double) n) : 0;
	double		z = m->bias,
				p,
				g,
				lr = t->opts.learning_rate / sqrt((double) t->epoch + 1.0);

	for (size_t j = 0; j < n; j++)
		z += m->w[idx[j]] * v;
	p = sigmoid(z);
	g = p - y;
	m->bias -= lr * g;
	for (size_t j = 0; j < n; j++)
		m->w[idx[j]] -= lr * (g * v + t->opts.l2 * m->w[idx[j]]);
	p = p < 1e-12 ? 1e-12 : (p > 1 - 1e-12 ? 1 - 1e-12 : p);
	return -(y * log(p) + (1 - y) * log(1 - p));
}

sp_status
sp_route_train_add(sp_ctx *ctx, sp_route_trainer *t, const sp_route_sample *s)
{
	const uint32_t *idx = NULL;
	size_t		n = 0;
	int			i;
	trained    *m;
	sp_status	st;

	if (!(s->quality >= 0 && s->quality <= 1))
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "feedback quality must be between 0 and 1, not %g", s->quality);
	if (s->prompt == NULL && s->features == NULL)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "a training row has neither a prompt nor features");
	if ((t->rows & 1023) == 0 && (st = sp_check_interrupt(ctx)) != SP_OK)
		return st;
	if (s->prompt == NULL && (st = sample_features(ctx, t, s, &idx, &n)) != SP_OK)
		return st;				/* stored features are checked even for skipped rows */
	if ((i = sp_route_catalog_find(t->cat, s->model_id)) < 0)
	{
		if (t->epoch == 0)
			t->skipped++;
		return SP_OK;
	}
	if (s->prompt && (st = sample_features(ctx, t, s, &idx, &n)) != SP_OK)
		return st;
	m = &t->m[i];
	if (m->w == NULL && (m->w = sp_calloc(ctx, SP_ROUTE_DIM, sizeof(double))) == NULL)
		return SP_ERR_NOMEM;
	double		l = sgd_step(t, m, idx, n, s->quality);

	m->loss += l;
	t->loss += l;
	m->rows++;
	t->rows++;
	return SP_OK;
}

/* Write model m's predictor as a blob at out. */
static void
write_blob(const trained *m, uint8_t *out)
{
	float		f = (float) m->bias;
	uint32_t	u;

	memcpy(out, BLOB_MAGIC, 4);
	for (int k = 0; k < 4; k++)
	{
		out[4 + k] = (uint8_t) (SP_ROUTE_FEATURE_VERSION >> (8 * k));
		out[8 + k] = (uint8_t) (SP_ROUTE_DIM_BITS >> (8 * k));
	}
	memcpy(&u, &f, 4);
	for (size_t j = 0; j <= SP_ROUTE_DIM; j++)
	{
		if (j > 0)
		{
			f = (float) m->w[j - 1];
			memcpy(&u, &f, 4);
		}
		for (int k = 0; k < 4; k++)
			out[12 + 4 * j + k] = (uint8_t) (u >> (8 * k));
	}
}

/* After the last pass: the list of trained models and their blobs. */
static sp_status
train_finish(sp_ctx *ctx, sp_route_trainer *t)
{
	int			n = 0;

	for (size_t i = 0; i < t->cat->n; i++)
		n += t->m[i].rows_first > 0;
	t->n_trained = n;
	if (n == 0)
		return SP_OK;
	if ((t->order = sp_calloc(ctx, (size_t) n, sizeof(int))) == NULL ||
		(t->blobs = sp_alloc(ctx, (size_t) n * SP_ROUTE_BLOB_LEN)) == NULL)
		return SP_ERR_NOMEM;
	n = 0;
	for (size_t i = 0; i < t->cat->n; i++)
		if (t->m[i].rows_first > 0)
		{
			t->order[n] = (int) i;
			write_blob(&t->m[i], t->blobs + (size_t) n * SP_ROUTE_BLOB_LEN);
			n++;
		}
	return SP_OK;
}

sp_status
sp_route_train_next_epoch(sp_ctx *ctx, sp_route_trainer *t, bool *more)
{
	*more = false;
	if (t->epoch == 0)
		t->rows_first = t->rows;
	else if (t->rows != t->rows_first)
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "training pass %d saw %lld rows but the first saw %lld; the feedback changed during training",
					   t->epoch + 1, (long long) t->rows, (long long) t->rows_first);
	for (size_t i = 0; i < t->cat->n; i++)
	{
		trained    *m = &t->m[i];

		if (t->epoch == 0)
			m->rows_first = m->rows;
		m->last_loss = m->rows ? m->loss / (double) m->rows : 0;
		m->loss = 0;
		m->rows = 0;
	}
	t->last_loss = t->rows ? t->loss / (double) t->rows : 0;
	t->loss = 0;
	t->rows = 0;
	t->epoch++;
	if (t->epoch < t->opts.epochs && t->rows_first > 0)
		return *more = true, SP_OK;
	return train_finish(ctx, t);
}

int
sp_route_train_count(const sp_route_trainer *t)
{
	return t->n_trained;
}

void
sp_route_train_model(const sp_route_trainer *t, int k, const char **model_id,
					 const void **blob, size_t *len, int64_t *rows, double *loss)
{
	const trained *m = &t->m[t->order[k]];

	*model_id = t->cat->models[t->order[k]].model_id;
	*blob = t->blobs + (size_t) k * SP_ROUTE_BLOB_LEN;
	*len = SP_ROUTE_BLOB_LEN;
	*rows = m->rows_first;
	*loss = m->last_loss;
}

void
sp_route_train_end(sp_ctx *ctx, sp_route_trainer *t, sp_route_train_result *res)
{
	if (res)
	{
		memset(res, 0, sizeof(*res));
		if (t)
		{
			res->rows = t->rows_first;
			res->skipped = t->skipped;
			res->models = t->n_trained;
			res->epochs = t->epoch;
			res->train_loss = t->rows_first ? t->last_loss : NAN;
		}
	}
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->cat->n; i++)
		sp_free(ctx, t->m[i].w);
	sp_free(ctx, t->m);
	sp_free(ctx, t->order);
	sp_free(ctx, t->blobs);
	sp_free(ctx, t->last);
	sp_free(ctx, t);
}
