/*
 * route.h -- request routing: classify a prompt, predict each model's
 * quality on it, pick the cheapest model that is good enough, and learn the
 * predictors from quality feedback (common/route.c).
 *
 * Pure computation: no I/O, no threads, no database.  A binding reads the
 * catalog (sparse_route_catalog) and the learned predictors
 * (sparse_route_model) from its database into an sp_route_catalog, keeps it
 * per connection, and calls sp_route_decide() per request.  Training is
 * driven by the binding too (so the core never calls back into a database):
 *
 *     sp_route_train_begin(ctx, cat, NULL, &t);
 *     do {
 *         for each feedback row, in a fixed order:
 *             sp_route_train_add(ctx, t, &sample);
 *     } while (sp_route_train_next_epoch(ctx, t, &more) == SP_OK && more);
 *     for k in 0 .. sp_route_train_count(t) - 1:
 *         sp_route_train_model(t, k, &id, &blob, &len, &rows, &loss);
 *         store (id, blob, rows, loss) in sparse_route_model
 *     sp_route_train_end(ctx, t, &result);
 *
 * The same rows in the same order give bit-identical predictors.
 *
 * Prompts: when a prompt is a JSON chat transcript (an array of
 * {"role", "content"} objects, or an object with such a "messages" array),
 * only the last "user" message is classified and featurized; content may
 * be a string or an array of {"type": "text", "text": ...} parts.  Any other
 * text, in any language or none, is used as it is.
 */
#ifndef SPARSE_ROUTE_H
#define SPARSE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the feature hashing below; a predictor from another is refused. */
#define SP_ROUTE_FEATURE_VERSION 1
#define SP_ROUTE_DIM_BITS 12
#define SP_ROUTE_DIM (1u << SP_ROUTE_DIM_BITS)	/* hashed feature slots */
#define SP_ROUTE_MAX_FEATURES 2048	/* distinct slots kept per prompt */
#define SP_ROUTE_SCAN_MAX 16384		/* bytes of the scored text featurized */
#define SP_ROUTE_MODELS_MAX 1024	/* catalog rows */
#define SP_ROUTE_ID_MAX 256			/* bytes of a model_id, family, hardware */
/* A stored predictor: "SPRW", u32 feature version, u32 dim bits, f32 bias,
 * then f32 weight[SP_ROUTE_DIM], all little-endian. */
#define SP_ROUTE_BLOB_LEN (16 + 4 * (size_t) SP_ROUTE_DIM)

typedef enum sp_complexity
{
	SP_SIMPLE = 0,
	SP_MODERATE = 1,
	SP_COMPLEX = 2
} sp_complexity;

/* "simple", "moderate" or "complex". */
const char *sp_complexity_name(sp_complexity c);

/* Result of sp_route_classify. */
typedef struct sp_route_class
{
	sp_complexity complexity;
	double		score;				/* 0..1; simple < 0.30 <= moderate < 0.60 <= complex */
	int64_t		est_prompt_tokens;	/* of the scored text */
	int64_t		context_tokens;		/* of the whole prompt (a chat transcript
									 * counts every message): what must fit
									 * in a context window with the output */
	char		signals[256];		/* readable, comma separated, e.g.
									 * "tokens=212, keyword:prove, code" */
} sp_route_class;

/*
 * Classify a prompt (len bytes, need not be NUL-terminated) that asks for up
 * to max_tokens output tokens.  Errors: prompt NULL, max_tokens < 0
 * (SP_ERR_INVALID_ARG).
 */
sp_status	sp_route_classify(sp_ctx *ctx, const char *prompt, size_t len,
							  int64_t max_tokens, sp_route_class *out);

/* Hashed features of a prompt: distinct slots in ascending order. */
typedef struct sp_route_features
{
	uint32_t	n;
	uint32_t	idx[SP_ROUTE_MAX_FEATURES];
} sp_route_features;

/* Featurize a prompt (the scored text, as for classify). */
sp_status	sp_route_featurize(sp_ctx *ctx, const char *prompt, size_t len,
							   sp_route_features *out);

/* The hash used for rollout and for ordering: XXH3-64 of the bytes, seed 0. */
uint64_t	sp_route_hash(const void *p, size_t len);

/* One catalog row. */
typedef struct sp_route_model
{
	const char *model_id;			/* required, 1..SP_ROUTE_ID_MAX bytes */
	const char *family;				/* may be NULL */
	const char *hardware;			/* may be NULL */
	double		cost_per_1m_tokens; /* >= 0 */
	int64_t		context_window;		/* > 0 */
	double		quality[3];			/* prior per complexity, each in [0, 1] */
	bool		enabled;
} sp_route_model;

/* Catalog plus learned predictors; zero it or call sp_route_catalog_init. */
typedef struct sp_route_catalog
{
	size_t		n;
	size_t		cap;
	sp_route_model *models;			/* strings owned by the catalog */
	int		   *learned;			/* per model: column in weights, or -1 */
	size_t		n_learned;
	size_t		stride;				/* n_learned rounded up to a multiple of 8 */
	float	   *bias;				/* n_learned */
	float	   *weights;			/* SP_ROUTE_DIM * stride, slot-major:
									 * weights[slot * stride + column]; the
									 * padding columns are zero */
} sp_route_catalog;

void		sp_route_catalog_init(sp_route_catalog *cat);

/*
 * Add a model (strings are copied).  Errors (SP_ERR_INVALID_ARG): empty or
 * too long model_id, duplicate model_id, negative or non-finite cost,
 * context_window < 1, a quality outside [0, 1], more than
 * SP_ROUTE_MODELS_MAX models.
 */
sp_status	sp_route_catalog_add(sp_ctx *ctx, sp_route_catalog *cat,
								 const sp_route_model *m);

/*
 * Install learned predictors (replacing any installed before): blobs[i] of
 * lens[i] bytes for the model ids[i].  Ids not in the catalog are skipped.
 * A blob of the wrong length, magic, feature version or dimension, or with
 * a non-finite or huge (> 1e6) value, is SP_ERR_CORRUPT naming the model.
 */
sp_status	sp_route_catalog_set_learned(sp_ctx *ctx, sp_route_catalog *cat,
										 size_t n, const char *const *ids,
										 const void *const *blobs,
										 const size_t *lens);

/* Index of model_id in the catalog, or -1. */
int			sp_route_catalog_find(const sp_route_catalog *cat, const char *model_id);

/* Free everything the catalog owns and zero it. */
void		sp_route_catalog_free(sp_ctx *ctx, sp_route_catalog *cat);

/*
 * Predicted quality of catalog model i on a prompt: its learned predictor
 * if it has one, else its prior for the prompt's complexity.  feats may be
 * NULL when no model is learned.
 */
double		sp_route_predict(const sp_route_catalog *cat, int i,
							 const sp_route_class *cls,
							 const sp_route_features *feats);

/* One routing request. */
typedef struct sp_route_request
{
	const char *requested_model;	/* required */
	const char *prompt;				/* required */
	size_t		prompt_len;
	int64_t		max_tokens;			/* >= 0 */
	double		quality_threshold;	/* in (0, 1] */
	bool		cost_priority;
	const char *request_id;			/* NULL: the prompt decides the rollout side */
	size_t		request_id_len;
	double		routing_percentage; /* 0..100 */
} sp_route_request;

/* Result of sp_route_decide; doubles are NAN where SQL shows NULL. */
typedef struct sp_route_decision
{
	sp_route_class cls;
	int			requested;			/* catalog index, or -1 (not in the catalog) */
	int			recommended;		/* catalog index, or -1 (then the requested name) */
	double		estimated_cost_per_1m_tokens;	/* of the recommended model */
	double		requested_cost_per_1m_tokens;
	double		cost_savings_pct;	/* 100 * (1 - estimated / requested); 0 if requested costs 0 */
	double		predicted_quality;	/* of the recommended model */
	double		requested_predicted_quality;
	bool		in_rollout;			/* the request falls in routing_percentage */
	bool		routed;				/* the recommended model serves, and it is not the requested one */
	int			served;				/* catalog index of the model that serves, or -1 */
	char		reason[256];
} sp_route_decision;

/*
 * Decide which model serves a request.  Candidates are enabled models whose
 * context window holds context_tokens + max_tokens; one qualifies when
 * its predicted quality is at least quality_threshold times the requested
 * model's.  cost_priority: the cheapest qualifying (ties: higher predicted
 * quality, then model_id); otherwise the best predicted quality among
 * qualifying models cheaper than the requested one (ties: cheaper, then
 * model_id), or the requested model when none is.  Outside the rollout the
 * requested model serves and the recommendation is still reported.  A
 * requested model missing from the catalog is returned unchanged with
 * routed false and a reason.  Errors (SP_ERR_INVALID_ARG): NULL model or
 * prompt, max_tokens < 0, threshold outside (0, 1], percentage outside
 * [0, 100], empty catalog.  feats may be NULL; when not, it receives the
 * prompt's features (what the decision log stores).
 */
sp_status	sp_route_decide(sp_ctx *ctx, const sp_route_catalog *cat,
							const sp_route_request *req, sp_route_decision *out,
							sp_route_features *feats);

/* ---- training ------------------------------------------------------------ */

/* One feedback row: a prompt (or its stored features) and an observed quality. */
typedef struct sp_route_sample
{
	const char *model_id;			/* rows for models not in the catalog are skipped */
	double		quality;			/* in [0, 1] */
	const char *prompt;				/* NULL when features are given */
	size_t		prompt_len;
	const uint32_t *features;		/* slots < SP_ROUTE_DIM (a logged request) */
	size_t		n_features;
} sp_route_sample;

/* Training options; a field <= 0 takes its default. */
typedef struct sp_route_train_opts
{
	int			epochs;				/* passes over the rows (default 8) */
	double		learning_rate;		/* default 0.2, decays as 1/sqrt(epoch + 1) */
	double		l2;					/* default 1e-4 */
} sp_route_train_opts;

typedef struct sp_route_train_result
{
	int64_t		rows;				/* rows used in one pass */
	int64_t		skipped;			/* rows for models not in the catalog */
	int			models;				/* models with at least one row */
	int			epochs;
	double		train_loss;			/* mean log loss over the last pass; NAN without rows */
} sp_route_train_result;

typedef struct sp_route_trainer sp_route_trainer;

/* Start training predictors for the models of cat (opts NULL: defaults). */
sp_status	sp_route_train_begin(sp_ctx *ctx, const sp_route_catalog *cat,
								 const sp_route_train_opts *opts,
								 sp_route_trainer **out);

/*
 * Feed one row of the current pass.  Every pass must feed the same rows in
 * the same order.  Errors: quality outside [0, 1] or NaN, no prompt and no
 * features, a feature slot out of range (SP_ERR_INVALID_ARG); a different
 * number of rows than the first pass is found by next_epoch.
 */
sp_status	sp_route_train_add(sp_ctx *ctx, sp_route_trainer *t,
							   const sp_route_sample *s);

/* End a pass; *more is true when the caller must feed another. */
sp_status	sp_route_train_next_epoch(sp_ctx *ctx, sp_route_trainer *t, bool *more);

/* Models trained (valid after the last pass). */
int			sp_route_train_count(const sp_route_trainer *t);

/*
 * The k-th trained model: its id, its predictor as a blob of
 * SP_ROUTE_BLOB_LEN bytes (owned by the trainer), its row count and its
 * mean log loss over the last pass.
 */
void		sp_route_train_model(const sp_route_trainer *t, int k,
								 const char **model_id, const void **blob,
								 size_t *len, int64_t *rows, double *loss);

/* Fill res (may be NULL) and free the trainer. */
void		sp_route_train_end(sp_ctx *ctx, sp_route_trainer *t,
							   sp_route_train_result *res);

#ifdef __cplusplus
}
#endif

#endif							/* SPARSE_ROUTE_H */
