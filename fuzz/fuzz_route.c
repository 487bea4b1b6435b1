/*
 * fuzz_route.c -- libFuzzer target for the routing core (common/route.c,
 * common/route_text.c): prompt analysis, decisions, predictor blobs and
 * training.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_route fuzz/corpus/route
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * Input layout (every field optional: a short input gets zeros):
 *   byte 0     flags: 1 install predictors from the blob section,
 *              2 cost_priority, 4 blob section patched over a valid blob
 *              (else used as it is), 8 request_id = the prompt's first half,
 *              16 train on the prompt and install the result, 32 fail one
 *              allocation after the catalog is built, 64 cancel training
 *   byte 1     requested model: index into the catalog, or (>= 4) a name
 *              that is not in it
 *   byte 2     max_tokens: one of 0, 1, 100, 4000, 8100, 200000, INT32_MAX, INT64_MAX
 *              (SQL passes an int; int64 overflow has a unit test)
 *   byte 3     quality_threshold (b + 1) / 256; also the training quality
 *   byte 4     routing_percentage b * 100 / 255; also the allocation to fail
 *   bytes 5-6  prompt length, little-endian (cut to what is left)
 *   then       the prompt, then the blob section
 * The blob section is the predictor of "small" (set_learned must accept it
 * or refuse it with SP_ERR_CORRUPT); in patch mode it overwrites the start
 * of a valid SP_ROUTE_BLOB_LEN blob, so header checks and the first weights
 * are reached although inputs stay small.
 *
 * Checked (fz_die aborts): classify keeps its score band, est_prompt_tokens
 * and context_tokens <= prompt bytes (equal for text that is not JSON), a
 * terminated signals string; featurize gives ascending distinct slots
 * < SP_ROUTE_DIM, at most SP_ROUTE_MAX_FEATURES, the same twice; decide (with and without predictors) keeps every promise of
 * route.h (indices, served/routed/in_rollout agree, the recommendation is
 * enabled, fits and qualifies, quality in [0, 1], features as featurize's);
 * blobs the trainer writes are accepted by set_learned; every failure
 * leaves ctx.err consistent (fz_check_error).
 */
#include <math.h>

#include "fuzz_common.h"
#include "route.h"

/* The fixed catalog: cheap to expensive, one disabled. */
static const sp_route_model fr_models[] = {
	{"small", "llama", "cpu", 0.2, 8192, {0.90, 0.70, 0.40}, true},
	{"medium", "llama", "l4", 1.0, 32768, {0.95, 0.85, 0.70}, true},
	{"large", "gpt", "h100", 10.0, 131072, {0.98, 0.95, 0.92}, true},
	{"off", NULL, NULL, 0.0, 1 << 30, {1.0, 1.0, 1.0}, false},
};

#define FR_N 4

static const int64_t fr_max_tokens[] = {0, 1, 100, 4000, 8100, 200000, INT32_MAX, INT64_MAX};

/* The parsed input. */
typedef struct fr_input
{
	uint8_t		flags;
	const char *model;
	int64_t		max_tokens;
	double		threshold;
	double		percentage;
	uint8_t		b4;
	const char *prompt;			/* exact-size copy (malloc'ed) */
	size_t		prompt_len;
	uint8_t    *blob;			/* malloc'ed */
	size_t		blob_len;
} fr_input;

/* Little-endian u32 into p. */
static void
fr_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* A valid predictor: small weights on a few slots. */
static uint8_t *
fr_valid_blob(void)
{
	uint8_t    *b = calloc(1, SP_ROUTE_BLOB_LEN);
	float		w = 0.5f;
	uint32_t	u;

	if (b == NULL)
		abort();
	memcpy(b, "SPRW", 4);
	fr_put32(b + 4, SP_ROUTE_FEATURE_VERSION);
	fr_put32(b + 8, SP_ROUTE_DIM_BITS);
	memcpy(&u, &w, 4);
	for (uint32_t slot = 7; slot < SP_ROUTE_DIM; slot += 977)
		fr_put32(b + 16 + 4 * (size_t) slot, u);
	return b;
}

/* Split the fuzzer's bytes into the fields above. */
static void
fr_parse(const uint8_t *data, size_t size, fr_input *in)
{
	uint8_t		h[7] = {0};
	size_t		hn = size < 7 ? size : 7,
				plen,
				rest;
	char	   *p;

	memcpy(h, data, hn);
	memset(in, 0, sizeof(*in));
	in->flags = h[0];
	in->model = h[1] < FR_N ? fr_models[h[1]].model_id : "not-in-catalog";
	in->max_tokens = fr_max_tokens[h[2] % (sizeof(fr_max_tokens) / sizeof(fr_max_tokens[0]))];
	in->threshold = (h[3] + 1) / 256.0;
	in->percentage = h[4] * 100.0 / 255.0;
	in->b4 = h[4];
	plen = (size_t) h[5] | (size_t) h[6] << 8;
	rest = size - hn;
	if (plen > rest)
		plen = rest;
	if ((p = malloc(plen ? plen : 1)) == NULL)
		abort();
	memcpy(p, data + hn, plen);
	in->prompt = p;
	in->prompt_len = plen;
	rest -= plen;
	if (in->flags & 4)
	{
		in->blob = fr_valid_blob();
		memcpy(in->blob, data + hn + plen, rest < SP_ROUTE_BLOB_LEN ? rest : SP_ROUTE_BLOB_LEN);
		in->blob_len = SP_ROUTE_BLOB_LEN;
	}
	else
	{
		if ((in->blob = malloc(rest ? rest : 1)) == NULL)
			abort();
		memcpy(in->blob, data + hn + plen, rest);
		in->blob_len = rest;
	}
}

/*
 * Build the fixed catalog; false (catalog freed) when an injected
 * allocation failure stopped it, which must be SP_ERR_NOMEM.
 */
static bool
fr_catalog(sp_ctx *ctx, sp_route_catalog *cat)
{
	sp_route_catalog_init(cat);
	for (int i = 0; i < FR_N; i++)
	{
		sp_status	st = sp_route_catalog_add(ctx, cat, &fr_models[i]);

		if (st == SP_ERR_NOMEM)
		{
			sp_route_catalog_free(ctx, cat);
			return false;
		}
		if (st != SP_OK)
			fz_die("the fixed catalog was refused", ctx);
	}
	return true;
}

/* Tokens a request needs, saturating as the core does. */
static int64_t
fr_need(int64_t context_tokens, int64_t max_tokens)
{
	return max_tokens > INT64_MAX - context_tokens ? INT64_MAX : context_tokens + max_tokens;
}

/* True if the prompt could be a JSON transcript (first non-blank byte [ or {). */
static bool
fr_json_like(const fr_input *in)
{
	for (size_t i = 0; i < in->prompt_len; i++)
		if (!strchr(" \t\r\n", in->prompt[i]) || in->prompt[i] == '\0')
			return in->prompt[i] == '[' || in->prompt[i] == '{';
	return false;
}

/* Classify and featurize; check every promise.  Returns false on NOMEM. */
static bool
fr_analyze(sp_ctx *ctx, const fr_input *in, sp_route_class *c, sp_route_features *f)
{
	static sp_route_features again;
	sp_status	st = sp_route_classify(ctx, in->prompt, in->prompt_len, in->max_tokens, c);

	fz_check_error(ctx, st);
	if (st == SP_ERR_NOMEM)
		return false;
	if (st != SP_OK)
		fz_die("classify failed on a valid request", ctx);
	if (!(c->score >= 0 && c->score <= 1) ||
		c->complexity != (c->score < 0.30 ? SP_SIMPLE : c->score < 0.60 ? SP_MODERATE : SP_COMPLEX))
		fz_die("score outside [0, 1] or not in its complexity's band", ctx);
	if (c->est_prompt_tokens < 0 || (uint64_t) c->est_prompt_tokens > in->prompt_len ||
		c->context_tokens < 0 || (uint64_t) c->context_tokens > in->prompt_len ||
		memchr(c->signals, '\0', sizeof(c->signals)) == NULL)
		fz_die("est_prompt_tokens or context_tokens outside [0, bytes], or signals not terminated",
			   ctx);
	if (!fr_json_like(in) && c->context_tokens != c->est_prompt_tokens)
		fz_die("plain text, but context_tokens differs from est_prompt_tokens", ctx);
	for (int k = 0; k < 2; k++)
	{
		sp_route_features *g = k ? &again : f;

		st = sp_route_featurize(ctx, in->prompt, in->prompt_len, g);
		fz_check_error(ctx, st);
		if (st == SP_ERR_NOMEM)
			return false;
		if (st != SP_OK || g->n > SP_ROUTE_MAX_FEATURES)
			fz_die("featurize failed or gave too many features", ctx);
		for (uint32_t i = 0; i < g->n; i++)
			if (g->idx[i] >= SP_ROUTE_DIM || (i > 0 && g->idx[i] <= g->idx[i - 1]))
				fz_die("feature slots out of range or not ascending", ctx);
	}
	if (again.n != f->n || memcmp(again.idx, f->idx, f->n * sizeof(f->idx[0])) != 0)
		fz_die("featurize is not deterministic", ctx);
	return true;
}

/* Abort unless decision d keeps the promises of route.h for request r. */
static void
fr_check_decision(const sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_request *r,
				  const sp_route_decision *d)
{
	int			req = sp_route_catalog_find(cat, r->requested_model);
	const sp_route_model *rm,
			   *em;

	if (d->requested != req)
		fz_die("requested index differs from catalog_find", ctx);
	if (req < 0)
	{
		if (d->recommended != -1 || d->served != -1 || d->routed || !isnan(d->predicted_quality))
			fz_die("a model not in the catalog was routed or priced", ctx);
		return;
	}
	if (d->recommended < 0 || (size_t) d->recommended >= cat->n ||
		(d->served != req && d->served != d->recommended))
		fz_die("recommended or served index out of range", ctx);
	if (d->routed != (d->served != req) || (d->routed && !d->in_rollout))
		fz_die("routed, served and in_rollout disagree", ctx);
	if (!(d->predicted_quality >= 0 && d->predicted_quality <= 1) ||
		!(d->requested_predicted_quality >= 0 && d->requested_predicted_quality <= 1) ||
		!isfinite(d->cost_savings_pct))
		fz_die("quality outside [0, 1] or savings not finite", ctx);
	if (d->recommended == req)
		return;
	rm = &cat->models[req];
	em = &cat->models[d->recommended];
	if (!em->enabled || em->context_window < fr_need(d->cls.context_tokens, r->max_tokens))
		fz_die("the recommended model is disabled or its context window is too small", ctx);
	if (d->predicted_quality < r->quality_threshold * d->requested_predicted_quality)
		fz_die("the recommended model does not meet the threshold", ctx);
	if (!r->cost_priority && em->cost_per_1m_tokens >= rm->cost_per_1m_tokens)
		fz_die("quality first, but the recommendation is not cheaper", ctx);
	if (r->cost_priority && rm->enabled &&
		rm->context_window >= fr_need(d->cls.context_tokens, r->max_tokens) &&
		em->cost_per_1m_tokens > rm->cost_per_1m_tokens)
		fz_die("cost first, but the recommendation costs more than the requested model", ctx);
}

/* Decide on the input's request; check the result and the features. */
static void
fr_decide(sp_ctx *ctx, const sp_route_catalog *cat, const fr_input *in,
		  const sp_route_features *want)
{
	static sp_route_features f;
	sp_route_decision d;
	sp_route_request r = {
		.requested_model = in->model, .prompt = in->prompt, .prompt_len = in->prompt_len,
		.max_tokens = in->max_tokens, .quality_threshold = in->threshold,
		.cost_priority = (in->flags & 2) != 0, .routing_percentage = in->percentage,
	};
	sp_status	st;

	if (in->flags & 8)
	{
		r.request_id = in->prompt;
		r.request_id_len = in->prompt_len / 2;
	}
	st = sp_route_decide(ctx, cat, &r, &d, &f);
	fz_check_error(ctx, st);
	if (st == SP_ERR_NOMEM)
		return;
	if (st != SP_OK)
		fz_die("decide failed on a valid request", ctx);
	fr_check_decision(ctx, cat, &r, &d);
	if (want && (f.n != want->n || memcmp(f.idx, want->idx, f.n * sizeof(f.idx[0])) != 0))
		fz_die("decide's features differ from featurize's", ctx);
	st = sp_route_decide(ctx, cat, &r, &d, NULL);
	fz_check_error(ctx, st);
	if (st == SP_OK)
		fr_check_decision(ctx, cat, &r, &d);
}

/*
 * Install the input's blob for "small" (an unknown id with the same blob is
 * skipped).  Two learned columns are reached through training (flag 16):
 * each blob costs 65536 instrumented checks, so one is installed here.
 */
static void
fr_set_learned(sp_ctx *ctx, sp_route_catalog *cat, const fr_input *in)
{
	const char *ids[2] = {"not-in-catalog", "small"};
	const void *blobs[2] = {in->blob, in->blob};
	size_t		lens[2] = {in->blob_len, in->blob_len};
	sp_status	st = sp_route_catalog_set_learned(ctx, cat, 2, ids, blobs, lens);

	fz_check_error(ctx, st);
	if (st != SP_OK && st != SP_ERR_CORRUPT && st != SP_ERR_NOMEM)
		fz_die("set_learned failed with neither SP_ERR_CORRUPT nor SP_ERR_NOMEM", ctx);
	if (st != SP_OK && cat->n_learned != 0)
		fz_die("set_learned failed but left predictors installed", ctx);
	if (st == SP_OK && (cat->n_learned != 1 || cat->learned[0] != 0))
		fz_die("set_learned accepted but did not install the predictor", ctx);
}

/* Train two epochs on the prompt (as text and as features), then install. */
static void
fr_train(sp_ctx *ctx, sp_route_catalog *cat, const fr_input *in, const sp_route_features *f)
{
	sp_route_trainer *t = NULL;
	sp_route_train_opts opts = {.epochs = 2};
	sp_route_sample s[3] = {
		{.model_id = "small", .quality = in->threshold, .prompt = in->prompt,
		.prompt_len = in->prompt_len},
		{.model_id = "medium", .quality = 1 - in->threshold, .features = f->idx,
		.n_features = f->n},
		{.model_id = "retired", .quality = 0.5, .prompt = in->prompt, .prompt_len = 0},
	};
	bool		more = true;
	sp_status	st = sp_route_train_begin(ctx, cat, &opts, &t);

	while (st == SP_OK && more)
	{
		for (int i = 0; i < 3 && st == SP_OK; i++)
			st = sp_route_train_add(ctx, t, &s[i]);
		if (st == SP_OK)
			st = sp_route_train_next_epoch(ctx, t, &more);
	}
	fz_check_error(ctx, st);
	if (st != SP_OK && st != SP_ERR_NOMEM && st != SP_ERR_CANCELLED)
		fz_die("training failed on valid rows", ctx);
	if (st == SP_OK)
	{
		const char *ids[2];
		const void *blobs[2];
		size_t		lens[2];
		int64_t		rows;
		double		loss;
		int			n = sp_route_train_count(t);

		if (n != 2)
			fz_die("two models had rows but not two were trained", ctx);
		for (int k = 0; k < n; k++)
			sp_route_train_model(t, k, &ids[k], &blobs[k], &lens[k], &rows, &loss);
		st = sp_route_catalog_set_learned(ctx, cat, 2, ids, blobs, lens);
		fz_check_error(ctx, st);
		if (st != SP_OK && st != SP_ERR_NOMEM)
			fz_die("set_learned refused blobs the trainer wrote", ctx);
	}
	sp_route_train_end(ctx, t, NULL);
}

/* One input: analyze, decide plain, install the blob, decide, maybe train. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sp_route_features f;
	sp_route_catalog cat;
	sp_route_class c;
	sp_ctx		ctx;
	fr_input	in;
	bool		analyzed;

	fr_parse(data, size, &in);
	fz_ctx_init(&ctx, 0, 0);
	if ((in.flags & 32) && (in.b4 & 128))	/* fail an allocation of the catalog */
	{
		fz_plan.fail_alloc_at = fz_plan.n_alloc + 1 + in.b4 % 4;
		if (!fr_catalog(&ctx, &cat))
		{
			free((void *) in.prompt);
			free(in.blob);
			return 0;
		}
		fz_plan.fail_alloc_at = 0;
	}
	else if (!fr_catalog(&ctx, &cat))
		fz_die("the fixed catalog failed without an injected failure", &ctx);
	if (in.flags & 32)			/* fail one allocation from here on */
		fz_plan.fail_alloc_at = fz_plan.n_alloc + 1 + in.b4 % 8;
	if (in.flags & 64)
		fz_plan.cancel_at = fz_plan.n_poll + 1;
	analyzed = fr_analyze(&ctx, &in, &c, &f);
	fr_decide(&ctx, &cat, &in, analyzed ? &f : NULL);
	if (in.flags & 1)
	{
		fr_set_learned(&ctx, &cat, &in);
		fr_decide(&ctx, &cat, &in, analyzed ? &f : NULL);
	}
	if ((in.flags & 16) && analyzed)
	{
		fr_train(&ctx, &cat, &in, &f);
		fr_decide(&ctx, &cat, &in, &f);
	}
	sp_route_catalog_free(&ctx, &cat);
	free((void *) in.prompt);
	free(in.blob);
	return 0;
}
