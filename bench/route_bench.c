/*
 * route_bench.c -- microbenchmark of the routing core (common/route.c).
 *
 * Usage (from the repository root):  make bench-route   (runs bench/route_bench.sh)
 *    or:  make build/route_bench && ./build/route_bench [--calls N]
 *             [--train-prompts N] [--prompts N] [--models N] [--seed S]
 *
 * How it works:
 *   1. builds a catalog of --models (20) models, prices spread log-uniformly
 *      from $0.05 to $30 per 1M tokens, context windows from 8k to 1M;
 *   2. generates --train-prompts (3000) synthetic prompts of varied text
 *      (prose, code, math, German and Chinese text, JSON chat transcripts)
 *      of 0.3 to 2 KB, gives each model a 0/1 quality per prompt drawn from a
 *      logistic model of its skill against the prompt's difficulty, and
 *      trains every predictor with the core trainer (sp_route_train_*,
 *      default options); reports the rows fed per second over all epochs;
 *   3. installs the learned predictors in the catalog and times, over
 *      --prompts (1024) other prompts of about 1 KB cycled for --calls
 *      (200,000) calls each: sp_route_featurize, sp_route_classify,
 *      sp_route_decide (requested model: the most expensive, so every model
 *      is a candidate) and sp_route_decide with the feature buffer the
 *      decision log uses.  Each call is timed alone (clock_gettime,
 *      CLOCK_MONOTONIC, about 20 ns of overhead included), in 5 rounds; the
 *      mean, the median and the 99th percentile of all calls, and the mean of
 *      the fastest round, are reported in microseconds.
 *
 * The text generator is a fixed xorshift PRNG, so runs are comparable.  Bars
 * (TAP lines at the end, exit status 1 if one is missed): classify < 10 us,
 * decide < 50 us per call on average.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route.h"

#define BAR_CLASSIFY_US 10.0
#define BAR_DECIDE_US 50.0
#define TEXT_MAX 4096
#define ROUNDS 5				/* timed rounds per function (best one reported too) */

/* Options of one run. */
typedef struct bench_opts
{
	long		calls;
	int			train_prompts;
	int			prompts;
	int			models;
	uint64_t	seed;
} bench_opts;

/* A generated prompt and its difficulty in [0, 1]. */
typedef struct prompt
{
	char	   *text;
	size_t		len;
	double		difficulty;
} prompt;

/* ---- text generation ------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252ULL;

/* xorshift64: the next pseudo-random 64-bit value. */
static uint64_t
rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A uniform double in [0, 1). */
static double
rng_unit(void)
{
	return (double) (rng_next() >> 11) / 9007199254740992.0;
}

/* A uniform integer in [0, n). */
static size_t
rng_below(size_t n)
{
	return (size_t) (rng_next() % n);
}

static const char *const prose_words[] = {
	"the", "a", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
	"be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
	"summary", "email", "write", "short", "friendly", "customer", "meeting", "travel",
	"recipe", "weekend", "history", "story", "explain", "simple", "list", "ideas",
	"translate", "poem", "letter", "review", "product", "market", "weather", "city",
};
static const char *const math_words[] = {
	"prove", "theorem", "lemma", "integral", "derivative", "matrix", "eigenvalue",
	"probability", "expected", "variance", "prime", "modulo", "induction", "bound",
	"rigorously", "x^2", "3x + 7 = 22", "sum_{k=1}^n k", "\\frac{a}{b}", "limit",
	"convergence", "polynomial", "group", "ring", "field", "topology", "compact",
};
static const char *const code_words[] = {
	"def", "return", "function", "class", "import", "for i in range(n):", "{", "}",
	"int main(void)", "malloc", "pointer", "SELECT * FROM t WHERE id = ?", "async",
	"await", "debug", "stack trace", "segfault", "refactor", "complexity O(n log n)",
	"unit test", "git rebase", "compile error", "std::vector<int>", "lambda x: x + 1",
};
static const char *const foreign_words[] = {
	"Bitte", "erkläre", "mir", "die", "Geschichte", "der", "Stadt", "Übersetzung",
	"warum", "größer", "请", "解释", "这个", "问题", "为什么", "数学", "证明", "谢谢",
	"café", "naïve", "résumé", "señor", "año", "Москва", "спасибо",
};

#define NWORDS(a) (sizeof(a) / sizeof((a)[0]))

/* Append s (and a separator) to buf if it fits; returns the new length. */
static size_t
append(char *buf, size_t len, const char *s, const char *sep)
{
	size_t		n = strlen(s);
	size_t		m = strlen(sep);

	if (len + n + m + 1 >= TEXT_MAX)
		return len;
	memcpy(buf + len, s, n);
	memcpy(buf + len + n, sep, m);
	buf[len + n + m] = '\0';
	return len + n + m;
}

/* Words of one kind of text until about target bytes; difficulty grows with math and code. */
static size_t
fill_words(char *buf, size_t len, size_t target, int kind)
{
	while (len < target)
	{
		const char *w;
		int			k = rng_unit() < 0.6 ? kind : (int) rng_below(4);

		if (k == 1)
			w = math_words[rng_below(NWORDS(math_words))];
		else if (k == 2)
			w = code_words[rng_below(NWORDS(code_words))];
		else if (k == 3)
			w = foreign_words[rng_below(NWORDS(foreign_words))];
		else
			w = prose_words[rng_below(NWORDS(prose_words))];
		len = append(buf, len, w, rng_unit() < 0.08 ? ". " : rng_unit() < 0.03 ? "\n" : " ");
		if (len + 64 >= TEXT_MAX)
			break;
	}
	return len;
}

/* Make one prompt of about target bytes (a chat transcript one time in five). */
static prompt
make_prompt(size_t target)
{
	static const double kind_difficulty[4] = {0.2, 0.75, 0.6, 0.4};
	char		body[TEXT_MAX];
	char		out[TEXT_MAX + 256];
	int			kind = (int) rng_below(4);
	size_t		len = fill_words(body, 0, target, kind);
	prompt		p;

	body[len] = '\0';
	if (rng_unit() < 0.2)
	{
		/* body holds no quote or backslash but math's "\frac": escape it for JSON */
		for (char *c = body; *c; c++)
			if (*c == '\\' || *c == '"' || *c == '\n')
				*c = ' ';
		snprintf(out, sizeof(out), "[{\"role\":\"system\",\"content\":\"You are a helpful"
				 " assistant.\"},{\"role\":\"user\",\"content\":\"%s\"}]", body);
	}
	else
		snprintf(out, sizeof(out), "%s", body);
	p.len = strlen(out);
	p.text = malloc(p.len + 1);
	if (p.text == NULL)
	{
		fprintf(stderr, "route_bench: out of memory\n");
		exit(1);
	}
	memcpy(p.text, out, p.len + 1);
	p.difficulty = fmin(1.0, kind_difficulty[kind] + 0.15 * (double) len / 2048.0 +
						0.1 * (rng_unit() - 0.5));
	return p;
}

/* ---- catalog and training ------------------------------------------------- */

/* Fill cat with n models: prices log-uniform $0.05..$30, priors rising with price. */
static void
make_catalog(sp_ctx *ctx, sp_route_catalog *cat, int n, char ids[][32])
{
	sp_route_catalog_init(cat);
	for (int i = 0; i < n; i++)
	{
		double		f = n > 1 ? (double) i / (n - 1) : 1.0;
		sp_route_model m = {0};

		snprintf(ids[i], 32, "model-%02d", i);
		m.model_id = ids[i];
		m.family = "bench";
		m.hardware = i % 2 ? "gpu-large" : "gpu-small";
		m.cost_per_1m_tokens = 0.05 * pow(600.0, f);
		m.context_window = (int64_t) (8192 * pow(128.0, f));
		m.quality[0] = 0.7 + 0.28 * f;
		m.quality[1] = 0.5 + 0.43 * f;
		m.quality[2] = 0.3 + 0.55 * f;
		m.enabled = true;
		if (sp_route_catalog_add(ctx, cat, &m) != SP_OK)
		{
			fprintf(stderr, "route_bench: %s\n", ctx->err.msg);
			exit(1);
		}
	}
}

/* A 0/1 quality of model i (skill rising with i) on a prompt of difficulty d. */
static double
draw_quality(int i, int n, double d)
{
	double		skill = 0.35 + 0.6 * (n > 1 ? (double) i / (n - 1) : 1.0);
	double		p = 1.0 / (1.0 + exp(-6.0 * (skill - d)));

	return rng_unit() < p ? 1.0 : 0.0;
}

/* Monotonic time in seconds. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* Feed every (prompt, model) row of one pass to the trainer. */
static void
train_pass(sp_ctx *ctx, sp_route_trainer *t, const prompt *ps, int np,
		   char ids[][32], int nm, const double *labels)
{
	for (int k = 0; k < np; k++)
		for (int i = 0; i < nm; i++)
		{
			sp_route_sample s = {0};

			s.model_id = ids[i];
			s.quality = labels[(size_t) k * nm + i];
			s.prompt = ps[k].text;
			s.prompt_len = ps[k].len;
			if (sp_route_train_add(ctx, t, &s) != SP_OK)
			{
				fprintf(stderr, "route_bench: train_add: %s\n", ctx->err.msg);
				exit(1);
			}
		}
}

/* Train every model on np prompts, install the predictors, print rows/s. */
static void
train_catalog(sp_ctx *ctx, sp_route_catalog *cat, const prompt *ps, int np,
			  char ids[][32], int nm)
{
	double	   *labels = malloc(sizeof(double) * (size_t) np * nm);
	sp_route_trainer *t;
	sp_route_train_result res;
	const char *tid[SP_ROUTE_MODELS_MAX];
	const void *blob[SP_ROUTE_MODELS_MAX];
	size_t		len[SP_ROUTE_MODELS_MAX];
	bool		more = true;
	double		t0;
	double		sec;
	int			passes = 0;

	for (int k = 0; labels != NULL && k < np; k++)
		for (int i = 0; i < nm; i++)
			labels[(size_t) k * nm + i] = draw_quality(i, nm, ps[k].difficulty);
	if (labels == NULL || sp_route_train_begin(ctx, cat, NULL, &t) != SP_OK)
	{
		fprintf(stderr, "route_bench: train_begin: %s\n", labels ? ctx->err.msg : "out of memory");
		exit(1);
	}
	t0 = now_s();
	while (more)
	{
		train_pass(ctx, t, ps, np, ids, nm, labels);
		passes++;
		if (sp_route_train_next_epoch(ctx, t, &more) != SP_OK)
		{
			fprintf(stderr, "route_bench: next_epoch: %s\n", ctx->err.msg);
			exit(1);
		}
	}
	sec = now_s() - t0;
	for (int k = 0; k < sp_route_train_count(t); k++)
	{
		int64_t		rows;
		double		loss;

		sp_route_train_model(t, k, &tid[k], &blob[k], &len[k], &rows, &loss);
	}
	if (sp_route_catalog_set_learned(ctx, cat, (size_t) sp_route_train_count(t),
									 tid, blob, len) != SP_OK)
	{
		fprintf(stderr, "route_bench: set_learned: %s\n", ctx->err.msg);
		exit(1);
	}
	sp_route_train_end(ctx, t, &res);
	printf("sp_route_train: %lld rows x %d epochs (%d prompts x %d models, ~1 KB each)"
		   " in %.2f s: %.0f rows/s, %d models, train_loss %.4f\n",
		   (long long) res.rows, passes, np, nm, sec,
		   (double) res.rows * passes / sec, res.models, res.train_loss);
	free(labels);
}

/* ---- timing --------------------------------------------------------------- */

/* What is timed: one call of one core function on one prompt. */
typedef enum bench_kind
{
	B_FEATURIZE, B_CLASSIFY, B_DECIDE, B_DECIDE_FEATS
} bench_kind;

/* Shared state of the timed calls. */
typedef struct bench_state
{
	sp_ctx		ctx;
	const sp_route_catalog *cat;
	const char *requested;
	sp_route_features feats;
	double		sink;			/* keeps results alive so nothing is optimized away */
} bench_state;

/* One call of kind on prompt p; exits on an error. */
static void
call_once(bench_state *b, bench_kind kind, const prompt *p)
{
	sp_route_class cls;
	sp_route_decision d;
	sp_route_request req = {0};
	sp_status	rc;

	if (kind == B_FEATURIZE)
		rc = sp_route_featurize(&b->ctx, p->text, p->len, &b->feats);
	else if (kind == B_CLASSIFY)
		rc = sp_route_classify(&b->ctx, p->text, p->len, 100, &cls);
	else
	{
		req.requested_model = b->requested;
		req.prompt = p->text;
		req.prompt_len = p->len;
		req.max_tokens = 100;
		req.quality_threshold = 0.85;
		req.cost_priority = true;
		req.routing_percentage = 100;
		rc = sp_route_decide(&b->ctx, b->cat, &req, &d,
							 kind == B_DECIDE_FEATS ? &b->feats : NULL);
		cls = d.cls;
		b->sink += d.recommended;
	}
	if (rc != SP_OK)
	{
		fprintf(stderr, "route_bench: %s\n", b->ctx.err.msg);
		exit(1);
	}
	b->sink += kind == B_FEATURIZE ? b->feats.n : cls.score;
}

/* Ascending order of doubles, for qsort. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/*
 * Time calls calls of kind over the prompts in ROUNDS rounds; print the mean,
 * p50 and p99 of all calls and the mean of the fastest round (the machine is
 * shared: a busy neighbour inflates some rounds); return the overall mean.
 */
static double
time_kind(bench_state *b, bench_kind kind, const char *name, const prompt *ps, int np,
		  long calls, double *us)
{
	double		total = 0;
	double		best = INFINITY;
	long		per_round = calls / ROUNDS;
	long		c = 0;

	for (int k = 0; k < np && k < 1000; k++)	/* warm up caches */
		call_once(b, kind, &ps[k]);
	for (int r = 0; r < ROUNDS; r++)
	{
		double		round_total = 0;
		long		end = r == ROUNDS - 1 ? calls : c + per_round;
		long		start = c;

		for (; c < end; c++)
		{
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			call_once(b, kind, &ps[c % np]);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			us[c] = (double) (t1.tv_sec - t0.tv_sec) * 1e6 +
				(double) (t1.tv_nsec - t0.tv_nsec) * 1e-3;
			round_total += us[c];
		}
		total += round_total;
		best = fmin(best, round_total / (double) (end - start));
	}
	qsort(us, (size_t) calls, sizeof(double), cmp_double);
	printf("%-28s %7.2f us/call mean %7.2f p50 %8.2f p99 %7.2f best round  (%ld calls)\n",
		   name, total / calls, us[calls / 2], us[calls * 99 / 100], best, calls);
	return total / calls;
}

/* ---- main ----------------------------------------------------------------- */

/* Parse the command line into o; exits 2 on a bad option. */
static void
parse_args(int argc, char **argv, bench_opts *o)
{
	o->calls = 200000;
	o->train_prompts = 3000;
	o->prompts = 1024;
	o->models = 20;
	o->seed = 1;
	for (int i = 1; i < argc; i++)
	{
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v && strcmp(argv[i], "--calls") == 0)
			o->calls = atol(v);
		else if (v && strcmp(argv[i], "--train-prompts") == 0)
			o->train_prompts = atoi(v);
		else if (v && strcmp(argv[i], "--prompts") == 0)
			o->prompts = atoi(v);
		else if (v && strcmp(argv[i], "--models") == 0)
			o->models = atoi(v);
		else if (v && strcmp(argv[i], "--seed") == 0)
			o->seed = strtoull(v, NULL, 10);
		else
		{
			fprintf(stderr, "usage: route_bench [--calls N] [--train-prompts N] [--prompts N]"
					" [--models N] [--seed S]\n");
			exit(2);
		}
		i++;
	}
	if (o->calls < 100 || o->train_prompts < 1 || o->prompts < 1 || o->models < 1 ||
		o->models > 1000 || o->seed == 0)
	{
		fprintf(stderr, "route_bench: --calls >= 100, --train-prompts, --prompts >= 1,"
				" --models 1..1000, --seed > 0\n");
		exit(2);
	}
}

/* Build, train, time, and print the bars as TAP lines. */
int
main(int argc, char **argv)
{
	bench_opts	o;
	static char ids[1000][32];
	static bench_state b;
	sp_route_catalog cat;
	prompt	   *train;
	prompt	   *test;
	double	   *us;
	double		classify_us;
	double		decide_us;
	size_t		bytes = 0;
	int			failed = 0;

	parse_args(argc, argv, &o);
	rng_state ^= o.seed * 0x9E3779B97F4A7C15ULL;
	sp_ctx_init(&b.ctx);
	train = malloc(sizeof(prompt) * (size_t) o.train_prompts);
	test = malloc(sizeof(prompt) * (size_t) o.prompts);
	us = malloc(sizeof(double) * (size_t) o.calls);
	if (train == NULL || test == NULL || us == NULL)
	{
		fprintf(stderr, "route_bench: out of memory\n");
		return 1;
	}
	for (int k = 0; k < o.train_prompts; k++)
		train[k] = make_prompt(300 + rng_below(1700));
	for (int k = 0; k < o.prompts; k++)
	{
		test[k] = make_prompt(900 + rng_below(250));
		bytes += test[k].len;
	}
	make_catalog(&b.ctx, &cat, o.models, ids);
	train_catalog(&b.ctx, &cat, train, o.train_prompts, ids, o.models);
	b.cat = &cat;
	b.requested = ids[o.models - 1];
	printf("timed prompts: %d, mean %.0f bytes; catalog: %d models, all learned;"
		   " requested: %s\n", o.prompts, (double) bytes / o.prompts, o.models, b.requested);
	time_kind(&b, B_FEATURIZE, "sp_route_featurize", test, o.prompts, o.calls, us);
	classify_us = time_kind(&b, B_CLASSIFY, "sp_route_classify", test, o.prompts, o.calls, us);
	decide_us = time_kind(&b, B_DECIDE, "sp_route_decide", test, o.prompts, o.calls, us);
	time_kind(&b, B_DECIDE_FEATS, "sp_route_decide (+features)", test, o.prompts, o.calls, us);
	failed += classify_us >= BAR_CLASSIFY_US;
	printf("%s 1 - sp_route_classify %.2f us/call %s %.0f us\n",
		   classify_us < BAR_CLASSIFY_US ? "ok" : "not ok", classify_us,
		   classify_us < BAR_CLASSIFY_US ? "<" : ">=", BAR_CLASSIFY_US);
	failed += decide_us >= BAR_DECIDE_US;
	printf("%s 2 - sp_route_decide %.2f us/call (%d models) %s %.0f us\n",
		   decide_us < BAR_DECIDE_US ? "ok" : "not ok", decide_us, o.models,
		   decide_us < BAR_DECIDE_US ? "<" : ">=", BAR_DECIDE_US);
	if (b.sink == 12345.678)	/* never true; makes the sink observable */
		printf("\n");
	sp_route_catalog_free(&b.ctx, &cat);
	for (int k = 0; k < o.train_prompts; k++)
		free(train[k].text);
	for (int k = 0; k < o.prompts; k++)
		free(test[k].text);
	free(train);
	free(test);
	free(us);
	return failed ? 1 : 0;
}
