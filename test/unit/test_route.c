/*
 * test_route.c -- unit tests of the routing core (common/route.c,
 * common/route_text.c).
 *
 * Groups, in table order:
 *   classify   clear simple / moderate / complex prompts in English, German,
 *              French, Spanish, Chinese, Japanese and Russian; the token
 *              estimate (ASCII ~ bytes/4, CJK ~ one per character); the
 *              signals; keywords on whole words only ("approve" is not
 *              "prove"); arbitrary bytes (invalid UTF-8, NUL inside, empty);
 *              max_tokens; JSON chat transcripts, array and {"messages"}
 *              forms, content as a string or as parts, behind a long system
 *              prompt and a tool list (only the last user message counts);
 *              malformed JSON (plain text);
 *   featurize  ascending distinct slots, determinism, the caps, and bounded
 *              time on 10 MB prompts (words, a transcript, '[' runs);
 *   hash       XXH3-64 seed 0, expected values computed with `xxhsum -H3`;
 *   catalog    every sp_route_catalog_add and set_learned error with its
 *              exact message (nothing half installed after one), find,
 *              ids missing from the catalog, predict with known weights;
 *   decide     the selection rules of route.h with every number and reason,
 *              ties, the context window edge, disabled models, a missing
 *              requested model, the rollout (hash % 10^6 < pct * 10^4, by
 *              request_id or else by prompt), every argument error, the
 *              feature buffer, learned predictors changing the choice;
 *   train      bit-identical blobs, a separable toy task that is learned
 *              (loss falls with more passes), rows given as features train
 *              exactly as the same prompts, every row error, row count
 *              mismatch between passes, skipped rows, allocation failure at
 *              every allocation (SP_ERR_NOMEM, no leak, no free of memory
 *              the core did not allocate), and, when $SPARSE_DATA is set,
 *              the RouteLLM GSM8K labels read with the core's CSV scanner:
 *              train on the half with an even prompt hash, check calibrated
 *              means, AUC and GPT-4 above Mixtral on the other half;
 *   last       max_tokens near INT64_MAX (a signed overflow aborts the
 *              sanitizer build, so it runs after everything else).
 *
 * Every prompt handed to the core is first copied into a buffer of exactly
 * its length (no NUL after it), so the ASan build catches a read past len.
 * Catalogs and trainers are made and freed by wrappers around the test
 * bodies, so a T_REQUIRE that returns early leaks nothing.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "route.h"
#include "rows.h"
#include "rt_util.h"
#include "st_writer.h"

/* ---- helpers ------------------------------------------------------------ */

/* A copy of len bytes with nothing after them (ASan catches overreads); free it. */
static char *
dup_exact(const char *p, size_t len)
{
	char	   *d = malloc(len > 0 ? len : 1);

	if (d == NULL)
	{
		fprintf(stderr, "out of memory in dup_exact\n");
		exit(2);
	}
	memcpy(d, p, len);
	return d;
}

/* Check the promises every classification keeps: score band and name. */
static void
check_class_at(const char *file, int line, const sp_route_class *c, const char *what)
{
	sp_complexity want = c->score < 0.30 ? SP_SIMPLE : c->score < 0.60 ? SP_MODERATE : SP_COMPLEX;

	if (!(c->score >= 0.0 && c->score <= 1.0))
		t_fail(file, line, "%s: score %g outside [0, 1]", what, c->score);
	else if (c->complexity != want)
		t_fail(file, line, "%s: score %.4f but complexity %s", what, c->score,
			   sp_complexity_name(c->complexity));
	if (c->est_prompt_tokens < 0 || c->context_tokens < c->est_prompt_tokens)
		t_fail(file, line, "%s: est_prompt_tokens %lld, context_tokens %lld", what,
			   (long long) c->est_prompt_tokens, (long long) c->context_tokens);
	if (memchr(c->signals, '\0', sizeof(c->signals)) == NULL)
		t_fail(file, line, "%s: signals not terminated", what);
}

/* Classify len bytes of p; records a failure and returns false on error. */
static bool
classify_at(const char *file, int line, const char *p, size_t len,
			int64_t max_tokens, sp_route_class *out)
{
	sp_ctx		ctx;
	sp_status	st;

	char	   *copy = dup_exact(p, len);

	rt_ctx(&ctx);
	memset(out, 0x5a, sizeof(*out));
	st = sp_route_classify(&ctx, copy, len, max_tokens, out);
	free(copy);
	if (st != SP_OK)
	{
		t_fail(file, line, "classify \"%.40s\": %s: %s", p, sp_status_name(st), ctx.err.msg);
		return false;
	}
	check_class_at(file, line, out, t_fmt("\"%.40s\"", p));
	if (len > 0 && p[0] != '[' && p[0] != '{' && p[0] != ' ' && p[0] != '\n' &&
		out->context_tokens != out->est_prompt_tokens)
		t_fail(file, line, "text \"%.40s\": context_tokens %lld, est_prompt_tokens %lld", p,
			   (long long) out->context_tokens, (long long) out->est_prompt_tokens);
	return true;
}

#define CLASSIFY(p, mt, out) classify_at(__FILE__, __LINE__, (p), strlen(p), (mt), (out))
#define CLASSIFY_N(p, n, mt, out) classify_at(__FILE__, __LINE__, (p), (n), (mt), (out))

/* Expect prompt p (max_tokens 100) to be classified as want. */
static void
expect_class_at(const char *file, int line, const char *p, sp_complexity want)
{
	sp_route_class c;

	if (!classify_at(file, line, p, strlen(p), 100, &c))
		return;
	if (c.complexity != want)
		t_fail(file, line, "\"%.70s\": %s (score %.3f, signals \"%s\"), expected %s", p,
			   sp_complexity_name(c.complexity), c.score, c.signals,
			   sp_complexity_name(want));
}

#define EXPECT_CLASS(p, want) expect_class_at(__FILE__, __LINE__, (p), (want))

/* Featurize len bytes of p and check the promises of route.h. */
static bool
featurize_at(const char *file, int line, const char *p, size_t len, sp_route_features *f)
{
	sp_ctx		ctx;
	sp_status	st;

	char	   *copy = dup_exact(p, len);

	rt_ctx(&ctx);
	memset(f, 0x5a, sizeof(*f));
	st = sp_route_featurize(&ctx, copy, len, f);
	free(copy);
	if (st != SP_OK)
	{
		t_fail(file, line, "featurize: %s: %s", sp_status_name(st), ctx.err.msg);
		return false;
	}
	if (f->n > SP_ROUTE_MAX_FEATURES)
	{
		t_fail(file, line, "featurize: %u features, more than SP_ROUTE_MAX_FEATURES", f->n);
		return false;
	}
	for (uint32_t i = 0; i < f->n; i++)
		if (f->idx[i] >= SP_ROUTE_DIM || (i > 0 && f->idx[i] <= f->idx[i - 1]))
		{
			t_fail(file, line, "featurize: slot %u at %u out of range or not ascending",
				   f->idx[i], i);
			return false;
		}
	return true;
}

#define FEATURIZE(p, n, f) featurize_at(__FILE__, __LINE__, (p), (n), (f))

/* True if two feature sets are equal. */
static bool
same_features(const sp_route_features *a, const sp_route_features *b)
{
	return a->n == b->n && memcmp(a->idx, b->idx, a->n * sizeof(a->idx[0])) == 0;
}

/* True if f holds slot. */
static bool
has_slot(const sp_route_features *f, uint32_t slot)
{
	for (uint32_t i = 0; i < f->n; i++)
		if (f->idx[i] == slot)
			return true;
	return false;
}

/* Features as a tracked buffer (sp_route_features is 8 KiB: keep it off the stack). */
static sp_route_features *
new_features(void)
{
	sp_route_features *f = t_track(calloc(1, sizeof(sp_route_features)));

	if (f == NULL)
		exit(2);
	return f;
}

/* A prompt of n bytes: "w<k> " words drawn from a vocabulary of vocab words. */
static char *
word_soup(size_t n, uint64_t seed, unsigned vocab)
{
	char	   *s = t_track(malloc(n + 16));
	size_t		pos = 0;

	if (s == NULL)
		exit(2);
	while (pos < n)
		pos += (size_t) snprintf(s + pos, 16, "w%u ", (unsigned) (fh_rand(&seed) % vocab));
	s[n] = '\0';
	return s;
}

/* Little-endian u32 / f32 into a blob. */
static void
put_u32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* Little-endian f32 into a blob. */
static void
put_f32le(uint8_t *p, float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	put_u32le(p, u);
}

/* Little-endian f32 from a blob. */
static float
get_f32le(const uint8_t *p)
{
	uint32_t	u = (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
		(uint32_t) p[3] << 24;
	float		f;

	memcpy(&f, &u, 4);
	return f;
}

/* A valid predictor blob (tracked): bias, all weights zero. */
static uint8_t *
make_blob(float bias)
{
	uint8_t    *b = t_track(calloc(1, SP_ROUTE_BLOB_LEN));

	if (b == NULL)
		exit(2);
	memcpy(b, "SPRW", 4);
	put_u32le(b + 4, SP_ROUTE_FEATURE_VERSION);
	put_u32le(b + 8, SP_ROUTE_DIM_BITS);
	put_f32le(b + 12, bias);
	return b;
}

/* Set weight of slot in a blob. */
static void
blob_set_weight(uint8_t *b, uint32_t slot, float w)
{
	put_f32le(b + 16 + 4 * (size_t) slot, w);
}

/* ---- catalogs ----------------------------------------------------------- */

/* The models of the standard catalog. */
static const sp_route_model std_models[] = {
	{"small", "llama", "cpu", 0.2, 8192, {0.90, 0.70, 0.40}, true},
	{"medium", "llama", "l4", 1.0, 32768, {0.95, 0.85, 0.70}, true},
	{"large", "gpt", "h100", 10.0, 131072, {0.98, 0.95, 0.92}, true},
	{"local", NULL, NULL, 0.0, 4096, {0.50, 0.30, 0.10}, true},
};

#define N_STD (sizeof(std_models) / sizeof(std_models[0]))

/* Fill cat with the standard models; records a failure on error. */
static bool
std_catalog(sp_route_catalog *cat)
{
	sp_ctx		ctx;

	rt_ctx(&ctx);
	sp_route_catalog_init(cat);
	for (size_t i = 0; i < N_STD; i++)
		if (sp_route_catalog_add(&ctx, cat, &std_models[i]) != SP_OK)
		{
			t_fail(__FILE__, __LINE__, "add %s: %s", std_models[i].model_id, ctx.err.msg);
			return false;
		}
	return true;
}

/* Run body on a fresh standard catalog and free the catalog afterwards. */
static void
with_std_catalog(void (*body) (sp_route_catalog *cat))
{
	sp_route_catalog cat;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	if (std_catalog(&cat))
		body(&cat);
	sp_route_catalog_free(&ctx, &cat);
}

/* A request with the SQL defaults for model and prompt. */
static sp_route_request
req_of(const char *model, const char *prompt)
{
	sp_route_request r = {
		.requested_model = model,
		.prompt = prompt,
		.prompt_len = prompt != NULL ? strlen(prompt) : 0,
		.max_tokens = 100,
		.quality_threshold = 0.85,
		.cost_priority = true,
		.request_id = NULL,
		.routing_percentage = 100,
	};

	return r;
}

/* Decide; records a failure and returns false on error. */
static bool
decide_at(const char *file, int line, const sp_route_catalog *cat,
		  const sp_route_request *req, sp_route_decision *out, sp_route_features *feats)
{
	sp_ctx		ctx;
	sp_status	st;
	sp_route_request r = *req;

	rt_ctx(&ctx);
	r.prompt = req->prompt ? dup_exact(req->prompt, req->prompt_len) : NULL;
	memset(out, 0x5a, sizeof(*out));
	st = sp_route_decide(&ctx, cat, &r, out, feats);
	free((char *) r.prompt);
	if (st != SP_OK)
	{
		t_fail(file, line, "decide %s: %s: %s", req->requested_model, sp_status_name(st),
			   ctx.err.msg);
		return false;
	}
	check_class_at(file, line, &out->cls, "decide");
	return true;
}

#define DECIDE(cat, req, out) decide_at(__FILE__, __LINE__, (cat), (req), (out), NULL)
#define DECIDE_F(cat, req, out, f) decide_at(__FILE__, __LINE__, (cat), (req), (out), (f))

/* Catalog id of index i, or "(none)". */
static const char *
id_of(const sp_route_catalog *cat, int i)
{
	return i >= 0 && (size_t) i < cat->n ? cat->models[i].model_id : "(none)";
}

/* ---- classify ----------------------------------------------------------- */

/* Greetings and short factual questions are simple, in every language. */
static void
test_route_classify_simple(void)
{
	static const char *const p[] = {
		"Hello!", "Hi, how are you?", "What is the capital of France?",
		"Hallo, wie geht es dir?", "Was ist die Hauptstadt von Deutschland?",
		"Bonjour, comment ça va ?", "Quelle est la capitale de l'Italie ?",
		"¡Hola! ¿Qué tal?", "¿Cuál es la capital de España?",
		"你好！", "中国的首都是哪里？",
		"こんにちは！", "日本の首都はどこですか？",
		"Привет! Как дела?", "Какая столица России?",
		"thanks", "2+2?",
	};

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		EXPECT_CLASS(p[i], SP_SIMPLE);
	T_CHECK(strcmp(sp_complexity_name(SP_SIMPLE), "simple") == 0 &&
			strcmp(sp_complexity_name(SP_MODERATE), "moderate") == 0 &&
			strcmp(sp_complexity_name(SP_COMPLEX), "complex") == 0, "complexity names");
}

/* Long multi-step proof, derivation and design requests are complex. */
static void
test_route_classify_complex(void)
{
	static const char *const p[] = {
		"Prove rigorously that there are infinitely many primes of the form 4k+3. "
		"Then derive, step by step, an asymptotic estimate of their counting function, "
		"justify every lemma, and finally design and implement a Python program with "
		"unit tests that verifies the result up to 10^7, and analyze its time complexity.",
		"Beweise streng, dass es unendlich viele Primzahlen der Form 4k+3 gibt. Leite "
		"danach Schritt für Schritt eine asymptotische Abschätzung ihrer Anzahlfunktion "
		"her, begründe jedes Lemma, und entwirf und implementiere schließlich ein "
		"Python-Programm mit Unit-Tests, das das Ergebnis bis 10^7 prüft, und analysiere "
		"seine Laufzeitkomplexität.",
		"Démontrez rigoureusement qu'il existe une infinité de nombres premiers de la "
		"forme 4k+3. Ensuite, dérivez étape par étape une estimation asymptotique de leur "
		"fonction de comptage, justifiez chaque lemme, puis concevez et implémentez un "
		"programme Python avec des tests unitaires qui vérifie le résultat jusqu'à 10^7, "
		"et analysez sa complexité temporelle.",
		"Demuestra rigurosamente que existen infinitos números primos de la forma 4k+3. "
		"Luego deriva paso a paso una estimación asintótica de su función de conteo, "
		"justifica cada lema y, finalmente, diseña e implementa un programa en Python con "
		"pruebas unitarias que verifique el resultado hasta 10^7, y analiza su complejidad "
		"temporal.",
		"请严格证明形如4k+3的素数有无穷多个。然后一步一步推导其计数函数的渐近估计，"
		"证明每一个引理，最后设计并实现一个带单元测试的Python程序，验证该结果直到10^7，"
		"并分析其时间复杂度。",
		"4k+3の形の素数が無限に存在することを厳密に証明してください。次に、その計数関数の"
		"漸近評価を段階的に導出し、各補題を証明し、最後に10^7までの結果を検証する"
		"単体テスト付きのPythonプログラムを設計・実装し、その時間計算量を分析してください。",
		"Строго докажите, что существует бесконечно много простых чисел вида 4k+3. Затем "
		"шаг за шагом выведите асимптотическую оценку их считающей функции, обоснуйте "
		"каждую лемму и, наконец, спроектируйте и реализуйте программу на Python с "
		"модульными тестами, которая проверяет результат до 10^7, и проанализируйте её "
		"временную сложность.",
		/* no numbers: the request itself must carry it */
		"Design and implement a distributed rate limiter in Go. Compare the token bucket "
		"and sliding window algorithms, analyze the trade-offs, justify the architecture "
		"you choose, and write the code with tests, step by step.",
		"Entwirf und implementiere einen verteilten Rate-Limiter in Go. Vergleiche die "
		"Algorithmen Token-Bucket und Sliding-Window, analysiere die Vor- und Nachteile, "
		"begründe die gewählte Architektur und schreibe den Code mit Tests.",
	};

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		EXPECT_CLASS(p[i], SP_COMPLEX);
}

/* Something between a greeting and a proof is moderate. */
static void
test_route_classify_moderate(void)
{
	EXPECT_CLASS("Explain how a hash table handles collisions, and compare separate "
				 "chaining with open addressing in terms of memory use and speed.",
				 SP_MODERATE);
	EXPECT_CLASS("Summarize the causes of the French Revolution in three paragraphs and "
				 "explain which of them mattered most.", SP_MODERATE);
	EXPECT_CLASS("Erkläre, wie eine Hashtabelle Kollisionen behandelt, und vergleiche "
				 "Verkettung mit offener Adressierung.", SP_MODERATE);
	EXPECT_CLASS("Expliquez comment fonctionne une table de hachage.", SP_MODERATE);
	EXPECT_CLASS("Explica cómo funciona una tabla hash.", SP_MODERATE);
	EXPECT_CLASS("Объясните, как работает хеш-таблица.", SP_MODERATE);
	EXPECT_CLASS("请解释哈希表是如何处理冲突的。", SP_MODERATE);
}

/* The token estimate: about bytes/4 for ASCII, about one per CJK character. */
static void
test_route_classify_tokens(void)
{
	static const char *const cjk[] = {"中", "日", "語", "あ"};
	const char *para = "The committee met on Tuesday to discuss the budget for next year. "
		"Several members argued that the maintenance of the old bridge should come first, "
		"while others preferred to spend the money on the new library and on the school. ";
	char	   *ascii = t_fmt("%s", "");
	char		buf[3 * 400 + 1];
	sp_route_class c;
	size_t		n;

	while (strlen(ascii) < 4000)
		ascii = t_fmt("%s%s", ascii, para);
	n = strlen(ascii);
	if (CLASSIFY(ascii, 0, &c))
		T_CHECK(c.est_prompt_tokens >= (int64_t) (n / 4 * 7 / 10) &&
				c.est_prompt_tokens <= (int64_t) (n / 4 * 13 / 10),
				"%zu bytes of English: %lld tokens", n, (long long) c.est_prompt_tokens);
	for (size_t k = 0; k < sizeof(cjk) / sizeof(cjk[0]); k++)
	{
		for (int i = 0; i < 400; i++)
			memcpy(buf + 3 * i, cjk[k], 3);
		buf[3 * 400] = '\0';
		if (CLASSIFY(buf, 0, &c))
			T_CHECK(c.est_prompt_tokens >= 300 && c.est_prompt_tokens <= 500,
					"400 CJK characters (%s): %lld tokens", cjk[k],
					(long long) c.est_prompt_tokens);
	}
	if (CLASSIFY("", 0, &c))
		T_CHECK(c.est_prompt_tokens <= 1, "empty prompt: %lld tokens",
				(long long) c.est_prompt_tokens);
	if (CLASSIFY("Hello there", 0, &c))
		T_CHECK(c.est_prompt_tokens >= 1 && c.est_prompt_tokens <= 5,
				"\"Hello there\": %lld tokens", (long long) c.est_prompt_tokens);
}

/* max_tokens raises the score, never lowers it; negative is an error. */
static void
test_route_classify_max_tokens(void)
{
	const char *p = "Write a short poem about the sea.";
	sp_route_class lo,
				mid,
				hi;
	sp_ctx		ctx;

	if (!CLASSIFY(p, 0, &lo) || !CLASSIFY(p, 100, &mid) || !CLASSIFY(p, 8000, &hi))
		return;
	T_CHECK(lo.score <= mid.score && mid.score < hi.score,
			"scores %.4f (0), %.4f (100), %.4f (8000)", lo.score, mid.score, hi.score);
	T_CHECK(lo.est_prompt_tokens == hi.est_prompt_tokens,
			"est_prompt_tokens depends on max_tokens: %lld vs %lld",
			(long long) lo.est_prompt_tokens, (long long) hi.est_prompt_tokens);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_route_classify(&ctx, p, strlen(p), -1, &lo), SP_ERR_INVALID_ARG,
		  "max_tokens must be at least 0, not -1");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_route_classify(&ctx, NULL, 0, 100, &lo), SP_ERR_INVALID_ARG,
		  "prompt must not be null");
}

/* Signals name the features that fired. */
static void
test_route_classify_signals(void)
{
	sp_route_class c;

	if (CLASSIFY("Prove that the square root of 2 is irrational.", 100, &c))
		T_CHECK(strstr(c.signals, "keyword:prove") != NULL && strncmp(c.signals, "tokens=", 7) == 0,
				"signals \"%s\"", c.signals);
	if (CLASSIFY("Fix this:\n```c\nint main(void) { return 0 }\n```\n", 100, &c))
		T_CHECK(strstr(c.signals, "code") != NULL, "signals \"%s\"", c.signals);
	if (CLASSIFY("Hello!", 100, &c))
		T_CHECK(strstr(c.signals, "keyword:") == NULL && strstr(c.signals, "code") == NULL,
				"signals \"%s\"", c.signals);
}

/* Keywords fire on whole words only ("approve" is not "prove"). */
static void
test_route_classify_word_boundaries(void)
{
	static const struct
	{
		const char *text;
		const char *signal;
		bool		fires;
	}			cases[] = {
		{"Prove it.", "keyword:prove", true},
		{"please prove: x > 0", "keyword:prove", true},
		{"(prove)", "keyword:prove", true},
		{"The theorem was proven last year.", "keyword:prove", false},
		{"I approve of this plan.", "keyword:prove", false},
		{"We improve the code.", "keyword:prove", false},
		{"proves", "keyword:prove", false},
		{"reprove", "keyword:prove", false},
		{"prove_it", "keyword:prove", false},
		{"prove1", "keyword:prove", false},
		{"Beweise den Satz.", "keyword:beweise", true},
		{"Die Beweisführung fehlt.", "keyword:beweise", false},
		{"Докажите теорему.", "keyword:докажите", true},
		{"Это доказательство неверно.", "keyword:доказать", false},
		{"Démontrez-le.", "keyword:démontrez", true},
		{"请证明这个定理。", "keyword:证明", true},
		{"请证一下", "keyword:证明", false},
		{"Explain step by step.", "keyword:step by step", true},
		{"step, by step", "keyword:step by step", false},
		{"Explain this.", "keyword:explain", true},
		{"Unexplained.", "keyword:explain", false},
	};
	sp_route_class c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		bool		fired;

		if (!CLASSIFY(cases[i].text, 100, &c))
			continue;
		fired = strstr(c.signals, cases[i].signal) != NULL;
		T_CHECK(fired == cases[i].fires, "\"%s\": signals \"%s\" %s %s", cases[i].text,
				c.signals, cases[i].fires ? "lack" : "contain", cases[i].signal);
	}
}

/* Any bytes classify: invalid UTF-8, NUL inside, empty, len without NUL. */
static void
test_route_classify_any_bytes(void)
{
	static const char bad_utf8[] = "\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc"
		"\xf8\xa1\xa1\xa1\xa1\xed\xa0\x80\xc0\xaf\xe4\xb8";
	static const char with_nul[] = "hello\0prove that the theorem holds for every n";
	sp_route_features *f1 = new_features(),
			   *f2 = new_features();
	sp_route_class c,
				c2;
	uint8_t		all[256];

	CLASSIFY_N(bad_utf8, sizeof(bad_utf8) - 1, 100, &c);
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t) i;
	CLASSIFY_N((const char *) all, sizeof(all), 100, &c);
	FEATURIZE((const char *) all, sizeof(all), f1);
	if (CLASSIFY_N(with_nul, sizeof(with_nul) - 1, 100, &c) && CLASSIFY("hello", 100, &c2))
		T_CHECK(c.est_prompt_tokens > c2.est_prompt_tokens,
				"bytes after a NUL are ignored: %lld tokens vs %lld for \"hello\"",
				(long long) c.est_prompt_tokens, (long long) c2.est_prompt_tokens);
	if (FEATURIZE(with_nul, sizeof(with_nul) - 1, f1) && FEATURIZE("hello", 5, f2))
		T_CHECK(!same_features(f1, f2), "bytes after a NUL are not featurized");
	if (CLASSIFY_N("", 0, 100, &c))
		T_CHECK(c.complexity == SP_SIMPLE, "empty prompt: %s", sp_complexity_name(c.complexity));
	if (FEATURIZE("", 0, f1))
		T_CHECK(f1->n <= 8, "empty prompt: %u features", f1->n);
	/* Only the first 5 bytes count: the rest must not be read. */
	if (FEATURIZE("Hello world, prove this", 5, f1) && FEATURIZE("Hello", 5, f2))
		T_CHECK(same_features(f1, f2), "featurize read past len");
}

/* The long English proof request, used as a "complex" message. */
#define PROOF_EN \
	"Prove rigorously that there are infinitely many primes of the form 4k+3. " \
	"Then derive, step by step, an asymptotic estimate of their counting function, " \
	"justify every lemma, and finally design and implement a Python program with " \
	"unit tests that verifies the result up to 10^7, and analyze its time complexity."

/* A long system prompt full of complex signals. */
static char *
long_system(void)
{
	char	   *s = t_fmt("%s", "You are an expert assistant.");

	for (int i = 0; i < 20; i++)
		s = t_fmt("%s %s", s, PROOF_EN);
	return s;
}

/*
 * Expect transcript json to be scored as the one-message transcript
 * [{"role":"user","content":text}]: same class, score, tokens, signals and
 * features; and as the plain text, except for the "chat:last_user" signal
 * and feature.
 */
static void
expect_same_as_at(const char *file, int line, const char *json, const char *text_json,
				  const char *text)
{
	sp_route_class a,
				b,
				t;
	sp_route_features *fa = new_features(),
			   *fb = new_features();
	const char *one = t_fmt("[{\"role\":\"user\",\"content\":\"%s\"}]", text_json);

	if (!classify_at(file, line, json, strlen(json), 100, &a) ||
		!classify_at(file, line, one, strlen(one), 100, &b) ||
		!classify_at(file, line, text, strlen(text), 100, &t) ||
		!featurize_at(file, line, json, strlen(json), fa) ||
		!featurize_at(file, line, one, strlen(one), fb))
		return;
	if (a.complexity != b.complexity || a.score != b.score ||
		a.est_prompt_tokens != b.est_prompt_tokens || strcmp(a.signals, b.signals) != 0)
		t_fail(file, line, "transcript \"%.50s...\" classified %s %.4f %lld \"%s\", "
			   "its last user message %s %.4f %lld \"%s\"", json,
			   sp_complexity_name(a.complexity), a.score, (long long) a.est_prompt_tokens,
			   a.signals, sp_complexity_name(b.complexity), b.score,
			   (long long) b.est_prompt_tokens, b.signals);
	if (!same_features(fa, fb))
		t_fail(file, line, "transcript \"%.50s...\": %u features, its last user message: %u",
			   json, fa->n, fb->n);
	if (a.score != t.score || a.est_prompt_tokens != t.est_prompt_tokens ||
		strstr(a.signals, "chat:last_user") == NULL)
		t_fail(file, line, "transcript \"%.50s...\": %.4f %lld \"%s\", text: %.4f %lld \"%s\"",
			   json, a.score, (long long) a.est_prompt_tokens, a.signals, t.score,
			   (long long) t.est_prompt_tokens, t.signals);
}

#define EXPECT_SAME_AS(json, text_json, text) \
	expect_same_as_at(__FILE__, __LINE__, (json), (text_json), (text))

/* JSON chat transcripts: only the last user message is scored. */
static void
test_route_classify_transcript(void)
{
	const char *sys = long_system();
	const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"prove_theorem\","
		"\"description\":\"Prove a theorem step by step and derive every lemma\","
		"\"parameters\":{\"type\":\"object\",\"properties\":{\"statement\":{\"type\":\"string\"}}}}}]";
	const char *msgs = t_fmt("[{\"role\":\"system\",\"content\":\"%s\"},"
							 "{\"role\":\"user\",\"content\":\"%s\"},"
							 "{\"role\":\"assistant\",\"content\":\"%s\"},"
							 "{\"role\":\"user\",\"content\":\"Hi there!\"},"
							 "{\"role\":\"assistant\",\"content\":\"Hello! %s\"}]",
							 sys, PROOF_EN, PROOF_EN, PROOF_EN);
	sp_route_class c;

	EXPECT_SAME_AS(msgs, "Hi there!", "Hi there!");
	/* every message counts toward the context: 20 copies of PROOF_EN and more */
	if (CLASSIFY(msgs, 100, &c))
		T_CHECK(c.context_tokens > 20 * 70 && c.est_prompt_tokens < 10,
				"transcript: context_tokens %lld, est_prompt_tokens %lld",
				(long long) c.context_tokens, (long long) c.est_prompt_tokens);
	EXPECT_SAME_AS(t_fmt("{\"model\":\"large\",\"tools\":%s,\"messages\":%s,\"max_tokens\":9}",
						 tools, msgs), "Hi there!", "Hi there!");
	/* content as parts: scored as the same text given as a string */
	EXPECT_SAME_AS(t_fmt("{\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
						 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi there!\"}]}]}",
						 sys), "Hi there!", "Hi there!");
	EXPECT_SAME_AS(t_fmt("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}]},"
						 "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},"
						 "{\"type\":\"text\",\"text\":\"Hi there!\"}]}]", sys), "Hi there!", "Hi there!");
	/* escapes are decoded; white space around the JSON is allowed */
	EXPECT_SAME_AS(" \n[{\"role\":\"user\",\"content\":\"Caf\\u00e9?\\nYes.\"}]\n",
				   "Caf\\u00e9?\\nYes.", "Café?\nYes.");
	/* The last user message decides, in both directions. */
	if (CLASSIFY(t_fmt("[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"user\",\"content\":\"%s\"}]",
					   PROOF_EN), 100, &c))
		T_CHECK(c.complexity == SP_COMPLEX, "last user message complex: %s %.3f",
				sp_complexity_name(c.complexity), c.score);
	if (CLASSIFY(t_fmt("{\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
					   "{\"role\":\"user\",\"content\":\"thanks\"}],\"tools\":%s}", sys, tools),
				 100, &c))
		T_CHECK(c.complexity == SP_SIMPLE, "simple user message after a long system prompt: %s %.3f",
				sp_complexity_name(c.complexity), c.score);
}

/* Malformed or non-transcript JSON is plain text. */
static void
test_route_classify_malformed_json(void)
{
	static const char *const p[] = {
		"[{\"role\":\"user\",\"content\":\"Hi there!\"}",
		"[{\"role\":\"user\",\"content\":\"Hi there!\"}]]",
		"{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there!\"}],}",
		"[{\"role\":\"user\",\"content\":\"Hi there!\\x\"}]",
		"[{\"role\":\"user\",\"content\":\"Hi there!\"}] trailing",
	};
	sp_route_features *f = new_features(),
			   *hi = new_features();
	sp_route_class c,
				h;

	if (!FEATURIZE("Hi there!", 9, hi) || !CLASSIFY("Hi there!", 100, &h))
		return;
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
	{
		if (!FEATURIZE(p[i], strlen(p[i]), f) || !CLASSIFY(p[i], 100, &c))
			continue;
		T_CHECK(!same_features(f, hi) && c.est_prompt_tokens > h.est_prompt_tokens,
				"malformed \"%s\" scored as its user message (%lld tokens)", p[i],
				(long long) c.est_prompt_tokens);
	}
	/* A truncated transcript with a long proof inside is text, and complex. */
	if (CLASSIFY(t_fmt("[{\"role\":\"user\",\"content\":\"%s\"", PROOF_EN), 100, &c))
		T_CHECK(c.complexity == SP_COMPLEX, "truncated transcript: %s",
				sp_complexity_name(c.complexity));
}

/* ---- featurize ---------------------------------------------------------- */

/* Slots ascend, are distinct and in range; the same prompt gives the same slots. */
static void
test_route_featurize_basic(void)
{
	const char *p = "Prove that the square root of 2 is irrational, then prove it again.";
	sp_route_features *a = new_features(),
			   *b = new_features(),
			   *c = new_features();

	if (!FEATURIZE(p, strlen(p), a) || !FEATURIZE(p, strlen(p), b) ||
		!FEATURIZE("What is the capital of France?", 30, c))
		return;
	T_CHECK(a->n >= 5, "%u features for a 12-word prompt", a->n);
	T_CHECK(same_features(a, b), "featurize is not deterministic");
	T_CHECK(!same_features(a, c), "two different prompts give the same features");
}

/* Many distinct words nearly fill SP_ROUTE_MAX_FEATURES, and no more. */
static void
test_route_featurize_cap(void)
{
	char	   *p = word_soup(SP_ROUTE_SCAN_MAX, 11, 1000000);
	sp_route_features *f = new_features();

	if (FEATURIZE(p, strlen(p), f))
		T_CHECK(f->n >= SP_ROUTE_MAX_FEATURES * 9 / 10, "%u features from %d bytes of distinct words",
				f->n, SP_ROUTE_SCAN_MAX);
}

/* Seconds since an arbitrary point (monotonic). */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Classify and featurize p (n bytes); fail if either takes more than 3 s. */
static void
expect_fast(const char *p, size_t n, const char *what, sp_route_features *f)
{
	sp_route_class c;
	double		t0 = now_s(),
				t1;

	if (!CLASSIFY_N(p, n, 100, &c))
		return;
	t1 = now_s();
	T_CHECK(t1 - t0 < 3.0, "%s: classify took %.2f s", what, t1 - t0);
	if (!FEATURIZE(p, n, f))
		return;
	T_CHECK(now_s() - t1 < 3.0, "%s: featurize took %.2f s", what, now_s() - t1);
}

/* A 10 MB prompt is handled in bounded time; only its head is featurized. */
static void
test_route_featurize_10mb(void)
{
	const size_t n = (size_t) 10 << 20;
	char	   *a = word_soup(n, 3, 50000),
			   *b = t_track(malloc(n + 1)),
			   *json = t_track(malloc(n + 64));
	sp_route_features *fa = new_features(),
			   *fb = new_features();
	size_t		pos;

	T_REQUIRE(b != NULL && json != NULL, "malloc");
	memcpy(b, a, n + 1);
	/* other words of the same shape past the head: only counts may see them */
	for (size_t i = (size_t) 2 * SP_ROUTE_SCAN_MAX; i < n; i++)
		if (b[i] == 'w')
			b[i] = 'v';
	expect_fast(a, n, "10 MB of words", fa);
	expect_fast(b, n, "10 MB of words, tail changed", fb);
	T_CHECK(same_features(fa, fb), "words past 2 * SP_ROUTE_SCAN_MAX changed the features");
	/* The same, inside a JSON transcript (valid, then cut). */
	pos = (size_t) sprintf(json, "[{\"role\":\"user\",\"content\":\"");
	memcpy(json + pos, a, n - 64);
	pos += n - 64;
	pos += (size_t) sprintf(json + pos, "\"}]");
	expect_fast(json, pos, "10 MB transcript", fa);
	expect_fast(json, pos - 2, "10 MB cut transcript", fa);
	memset(b, '[', n);
	expect_fast(b, n, "10 MB of '['", fa);
	memset(b, '\xe4', n);
	expect_fast(b, n, "10 MB of lead bytes", fa);
}

/* ---- hash --------------------------------------------------------------- */

/* XXH3-64 seed 0; expected values from `printf ... | xxhsum -H3`. */
static void
test_route_hash(void)
{
	char		a1000[1000];

	memset(a1000, 'a', sizeof(a1000));
	T_CHECK(sp_route_hash("", 0) == UINT64_C(0x2d06800538d394c2), "hash of \"\": %016llx",
			(unsigned long long) sp_route_hash("", 0));
	T_CHECK(sp_route_hash("abc", 3) == UINT64_C(0x78af5f94892f3950), "hash of \"abc\": %016llx",
			(unsigned long long) sp_route_hash("abc", 3));
	T_CHECK(sp_route_hash("hello routing", 13) == UINT64_C(0xeceaeb08d8c64f67),
			"hash of \"hello routing\": %016llx",
			(unsigned long long) sp_route_hash("hello routing", 13));
	T_CHECK(sp_route_hash(a1000, 1000) == UINT64_C(0xb3e7af627147db7c),
			"hash of 1000 x 'a': %016llx", (unsigned long long) sp_route_hash(a1000, 1000));
	T_CHECK(sp_route_hash("abcd", 3) == sp_route_hash("abc", 3), "hash reads past len");
}

/* ---- catalog ------------------------------------------------------------ */

/* Add m to cat, expecting code and exactly msg. */
static void
expect_add_err_at(const char *file, int line, sp_route_catalog *cat,
				  const sp_route_model *m, const char *msg)
{
	sp_ctx		ctx;
	size_t		n = cat->n;

	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_route_catalog_add(&ctx, cat, m), SP_ERR_INVALID_ARG, msg,
				true);
	if (cat->n != n)
		t_fail(file, line, "a refused model was added (%zu models, was %zu)", cat->n, n);
}

#define EXPECT_ADD_ERR(cat, m, msg) expect_add_err_at(__FILE__, __LINE__, (cat), (m), (msg))

/* Every catalog_add error, with its exact message. */
static void
catalog_add_errors_body(sp_route_catalog *cat)
{
	sp_route_model m = std_models[0];
	char		longid[SP_ROUTE_ID_MAX + 2];
	sp_ctx		ctx;

	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	m.model_id = "";
	EXPECT_ADD_ERR(cat, &m, "catalog model_id must not be empty");
	m.model_id = NULL;
	EXPECT_ADD_ERR(cat, &m, "catalog model_id must not be empty");
	m.model_id = longid;
	EXPECT_ADD_ERR(cat, &m, t_fmt("catalog model_id is longer than %d bytes", SP_ROUTE_ID_MAX));
	longid[SP_ROUTE_ID_MAX] = '\0';	/* exactly SP_ROUTE_ID_MAX bytes is fine */
	rt_ctx(&ctx);
	T_OK(&ctx, sp_route_catalog_add(&ctx, cat, &m));
	m.model_id = "medium";
	EXPECT_ADD_ERR(cat, &m, "catalog model \"medium\" appears twice");
	m.model_id = "new";
	m.cost_per_1m_tokens = -0.01;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": cost_per_1m_tokens must be a finite number >= 0");
	m.cost_per_1m_tokens = NAN;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": cost_per_1m_tokens must be a finite number >= 0");
	m.cost_per_1m_tokens = INFINITY;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": cost_per_1m_tokens must be a finite number >= 0");
	m.cost_per_1m_tokens = 1.0;
	m.context_window = 0;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": context_window must be at least 1");
	m.context_window = -5;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": context_window must be at least 1");
	m.context_window = 1;
	m.quality[2] = 1.5;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": quality_complex must be between 0 and 1");
	m.quality[2] = 0.5;
	m.quality[0] = NAN;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": quality_simple must be between 0 and 1");
	m.quality[0] = -0.1;
	EXPECT_ADD_ERR(cat, &m, "catalog model \"new\": quality_simple must be between 0 and 1");
	m.quality[0] = 0.0;
	longid[SP_ROUTE_ID_MAX] = 'x';
	m.hardware = longid;
	EXPECT_ADD_ERR(cat, &m, t_fmt("catalog model \"new\": family and hardware are limited to %d bytes",
										SP_ROUTE_ID_MAX));
	m.hardware = NULL;
	longid[SP_ROUTE_ID_MAX] = '\0';
	m.family = longid;			/* SP_ROUTE_ID_MAX bytes: fine */
	rt_ctx(&ctx);
	T_OK(&ctx, sp_route_catalog_add(&ctx, cat, &m));
	T_CHECK(cat->n == N_STD + 2, "%zu models", cat->n);
	T_CHECK(sp_route_catalog_find(cat, "new") == (int) N_STD + 1, "find new");
}

/* catalog_add errors. */
static void
test_route_catalog_add_errors(void)
{
	with_std_catalog(catalog_add_errors_body);
}

/* Strings are copied; find works; free zeroes the catalog. */
static void
test_route_catalog_find(void)
{
	sp_route_catalog cat;
	sp_route_model m = std_models[1];
	char		id[16] = "tmp-model",
				hw[8] = "gpu";
	sp_ctx		ctx;

	rt_ctx(&ctx);
	sp_route_catalog_init(&cat);
	T_CHECK(sp_route_catalog_find(&cat, "small") == -1, "find in an empty catalog");
	m.model_id = id;
	m.hardware = hw;
	if (sp_route_catalog_add(&ctx, &cat, &m) != SP_OK)
		t_fail(__FILE__, __LINE__, "add: %s", ctx.err.msg);
	for (size_t i = 0; i < N_STD; i++)
		if (sp_route_catalog_add(&ctx, &cat, &std_models[i]) != SP_OK)
			t_fail(__FILE__, __LINE__, "add %s: %s", std_models[i].model_id, ctx.err.msg);
	strcpy(id, "changed");
	strcpy(hw, "cpu");
	T_CHECK(sp_route_catalog_find(&cat, "tmp-model") == 0, "find copied id");
	T_CHECK(sp_route_catalog_find(&cat, "changed") == -1, "catalog kept the caller's pointer");
	T_CHECK(cat.n > 0 && strcmp(cat.models[0].hardware, "gpu") == 0, "hardware not copied");
	T_CHECK(sp_route_catalog_find(&cat, "large") == 3, "find large: %d",
			sp_route_catalog_find(&cat, "large"));
	T_CHECK(sp_route_catalog_find(&cat, "Large") == -1 && sp_route_catalog_find(&cat, "larg") == -1 &&
			sp_route_catalog_find(&cat, "") == -1, "find is not exact");
	sp_route_catalog_free(&ctx, &cat);
	T_CHECK(cat.n == 0 && cat.models == NULL && cat.n_learned == 0 && cat.weights == NULL,
			"free did not zero the catalog");
	sp_route_catalog_free(&ctx, &cat);	/* twice is harmless */
}

/* More than SP_ROUTE_MODELS_MAX models is an error. */
static void
test_route_catalog_too_many(void)
{
	sp_route_catalog cat;
	sp_route_model m = std_models[0];
	sp_ctx		ctx;
	char		id[32];
	bool		ok = true;

	rt_ctx(&ctx);
	sp_route_catalog_init(&cat);
	m.model_id = id;
	for (int i = 0; i < SP_ROUTE_MODELS_MAX && ok; i++)
	{
		snprintf(id, sizeof(id), "m%d", i);
		ok = sp_route_catalog_add(&ctx, &cat, &m) == SP_OK;
	}
	T_CHECK(ok && cat.n == SP_ROUTE_MODELS_MAX, "adding %d models: %s", SP_ROUTE_MODELS_MAX,
			ctx.err.msg);
	snprintf(id, sizeof(id), "one-too-many");
	if (ok)
		EXPECT_ADD_ERR(&cat, &m, t_fmt("the catalog holds more than %d models", SP_ROUTE_MODELS_MAX));
	T_CHECK(sp_route_catalog_find(&cat, "m1000") == 1000, "find m1000");
	sp_route_catalog_free(&ctx, &cat);
}

/* set_learned with one blob for id; expects SP_ERR_CORRUPT and exactly msg. */
static void
expect_blob_err_at(const char *file, int line, sp_route_catalog *cat, const char *id,
				   const void *blob, size_t len, const char *msg)
{
	sp_ctx		ctx;
	const char *ids[2] = {"medium", id};
	const void *blobs[2] = {make_blob(0.5f), blob};
	size_t		lens[2] = {SP_ROUTE_BLOB_LEN, len};

	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_route_catalog_set_learned(&ctx, cat, 2, ids, blobs, lens),
				SP_ERR_CORRUPT, msg, true);
	if (cat->n_learned != 0 || cat->weights != NULL || cat->learned[1] != -1)
		t_fail(file, line, "a refused set of predictors was installed (%zu learned)",
			   cat->n_learned);
}

#define EXPECT_BLOB_ERR(cat, id, blob, len, msg) \
	expect_blob_err_at(__FILE__, __LINE__, (cat), (id), (blob), (len), (msg))

/* Every set_learned error, with its exact message; nothing is half installed. */
static void
set_learned_errors_body(sp_route_catalog *cat)
{
	uint8_t    *b = make_blob(0.0f);
	const size_t L = SP_ROUTE_BLOB_LEN;

	EXPECT_BLOB_ERR(cat, "small", b, 100,
					t_fmt("predictor of \"small\" is 100 bytes, expected %zu", L));
	EXPECT_BLOB_ERR(cat, "small", b, L + 4,
					t_fmt("predictor of \"small\" is %zu bytes, expected %zu", L + 4, L));
	b[0] = 'X';
	EXPECT_BLOB_ERR(cat, "small", b, L, "predictor of \"small\" is not a sparse predictor");
	b[0] = 'S';
	put_u32le(b + 4, SP_ROUTE_FEATURE_VERSION + 1);
	EXPECT_BLOB_ERR(cat, "small", b, L,
					t_fmt("predictor of \"small\" uses feature version %d with %d bits, this build "
						  "uses %d with %d; run route_train() again", SP_ROUTE_FEATURE_VERSION + 1,
						  SP_ROUTE_DIM_BITS, SP_ROUTE_FEATURE_VERSION, SP_ROUTE_DIM_BITS));
	put_u32le(b + 4, SP_ROUTE_FEATURE_VERSION);
	put_u32le(b + 8, SP_ROUTE_DIM_BITS + 1);
	EXPECT_BLOB_ERR(cat, "small", b, L,
					t_fmt("predictor of \"small\" uses feature version %d with %d bits, this build "
						  "uses %d with %d; run route_train() again", SP_ROUTE_FEATURE_VERSION,
						  SP_ROUTE_DIM_BITS + 1, SP_ROUTE_FEATURE_VERSION, SP_ROUTE_DIM_BITS));
	put_u32le(b + 8, SP_ROUTE_DIM_BITS);
	blob_set_weight(b, 1000, NAN);
	EXPECT_BLOB_ERR(cat, "small", b, L,
					"predictor of \"small\" holds an invalid weight at byte 4016");
	blob_set_weight(b, 1000, 0.0f);
	blob_set_weight(b, SP_ROUTE_DIM - 1, -INFINITY);
	EXPECT_BLOB_ERR(cat, "small", b, L,
					t_fmt("predictor of \"small\" holds an invalid weight at byte %zu", L - 4));
	blob_set_weight(b, SP_ROUTE_DIM - 1, 0.0f);
	put_f32le(b + 12, 2e6f);
	EXPECT_BLOB_ERR(cat, "small", b, L,
					"predictor of \"small\" holds an invalid weight at byte 12");
}

/* set_learned errors. */
static void
test_route_set_learned_errors(void)
{
	with_std_catalog(set_learned_errors_body);
}

/* Install predictors: unknown ids skipped, replacement, and predict. */
static void
set_learned_body(sp_route_catalog *cat)
{
	sp_ctx		ctx;
	uint8_t    *b1 = make_blob(2.0f),
			   *b2 = make_blob(-1.0f);
	const char *ids[3] = {"no-such-model", "large", "small"};
	const void *blobs[3] = {b2, b1, b2};
	size_t		lens[3] = {5, SP_ROUTE_BLOB_LEN, SP_ROUTE_BLOB_LEN};
	sp_route_features *f = new_features();
	sp_route_class c;
	double		want = 1.0 / (1.0 + exp(-2.0));

	rt_ctx(&ctx);
	/* the unknown id's blob is not even looked at (it is 5 bytes) */
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, 3, ids, blobs, lens));
	T_CHECK(cat->n_learned == 2 && cat->learned[2] >= 0 && cat->learned[0] >= 0 &&
			cat->learned[1] == -1, "%zu learned", cat->n_learned);
	if (!CLASSIFY("Hello!", 100, &c) || !FEATURIZE("Hello!", 6, f))
		return;
	T_CHECK(fabs(sp_route_predict(cat, 2, &c, f) - want) < 1e-6, "large: %g, expected %g",
			sp_route_predict(cat, 2, &c, f), want);
	T_CHECK(fabs(sp_route_predict(cat, 0, &c, f) - 1.0 / (1.0 + exp(1.0))) < 1e-6,
			"small: %g", sp_route_predict(cat, 0, &c, f));
	T_CHECK(sp_route_predict(cat, 1, &c, f) == 0.95, "medium keeps its prior: %g",
			sp_route_predict(cat, 1, &c, f));
	T_CHECK(isnan(sp_route_predict(cat, 4, &c, f)) && isnan(sp_route_predict(cat, -1, &c, f)),
			"predict out of range is not NaN");
	/* replacing: only "medium" now */
	ids[0] = "medium";
	lens[0] = SP_ROUTE_BLOB_LEN;
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, 1, ids, blobs, lens));
	T_CHECK(cat->n_learned == 1 && cat->learned[1] == 0 && cat->learned[0] == -1 &&
			cat->learned[2] == -1, "replace: %zu learned", cat->n_learned);
	T_CHECK(sp_route_predict(cat, 2, &c, f) == 0.98 && sp_route_predict(cat, 2, &c, NULL) == 0.98,
			"large back to its prior: %g", sp_route_predict(cat, 2, &c, f));
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, 0, NULL, NULL, NULL));
	T_CHECK(cat->n_learned == 0 && cat->learned[1] == -1, "cleared: %zu learned", cat->n_learned);
}

/* set_learned and predict. */
static void
test_route_set_learned(void)
{
	with_std_catalog(set_learned_body);
}

/* A weight on one of the prompt's slots moves its prediction that way. */
static void
predict_weights_body(sp_route_catalog *cat)
{
	sp_ctx		ctx;
	uint8_t    *b = make_blob(0.0f);
	const char *ids[1] = {"small"};
	const void *blobs[1] = {b};
	size_t		lens[1] = {SP_ROUTE_BLOB_LEN};
	sp_route_features *f = new_features(),
			   *g = new_features();
	sp_route_class c;
	double		v;
	uint32_t	slot = UINT32_MAX;

	rt_ctx(&ctx);
	if (!CLASSIFY("Prove it", 100, &c) || !FEATURIZE("Prove it", 8, f) ||
		!FEATURIZE("Hello there", 11, g))
		return;
	for (uint32_t i = 0; i < f->n && slot == UINT32_MAX; i++)
		if (!has_slot(g, f->idx[i]))
			slot = f->idx[i];
	T_REQUIRE(slot != UINT32_MAX, "\"Prove it\" has no slot that \"Hello there\" lacks");
	blob_set_weight(b, slot, 3.0f);
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, 1, ids, blobs, lens));
	v = 1.0 / (1.0 + exp(-3.0 / sqrt((double) f->n)));
	T_CHECK(fabs(sp_route_predict(cat, 0, &c, f) - v) < 1e-6, "predict %g, expected %g",
			sp_route_predict(cat, 0, &c, f), v);
	T_CHECK(sp_route_predict(cat, 0, &c, g) == 0.5, "a prompt without the slot: %g",
			sp_route_predict(cat, 0, &c, g));
	T_CHECK(sp_route_predict(cat, 1, &c, f) == std_models[1].quality[c.complexity],
			"medium keeps its prior: %g", sp_route_predict(cat, 1, &c, f));
}

/* predict with a weight set. */
static void
test_route_predict_weights(void)
{
	with_std_catalog(predict_weights_body);
}

/*
 * The prediction of learned model k, computed the plain way: its weights
 * added one by one in ascending slot order in a float, then the sigmoid.
 */
static float
plain_predict(const uint8_t *blob, const sp_route_features *f)
{
	float		acc = 0;
	double		v = f->n ? 1.0 / sqrt((double) f->n) : 0,
				z;

	for (uint32_t j = 0; j < f->n; j++)
		acc += get_f32le(blob + 16 + 4 * (size_t) f->idx[j]);
	z = get_f32le(blob + 12) + v * acc;
	return (float) (z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)));
}

/*
 * Catalogs of 1 to 45 learned models (one to six vectors of eight columns,
 * so every grouping of the vectorized sum runs) predict exactly what a
 * plain loop over each model's weights gives, bit for bit, with one model
 * in three left on its prior.
 */
static void
test_route_predict_many_models(void)
{
	static const int sizes[] = {1, 2, 7, 8, 9, 16, 17, 24, 25, 32, 33, 40, 41, 45};
	sp_route_features *f = new_features();
	const char *prompt = word_soup(3000, 5, 400);
	sp_route_class cls;
	sp_ctx		ctx;
	uint64_t	seed = 77;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_route_featurize(&ctx, prompt, strlen(prompt), f));
	T_OK(&ctx, sp_route_classify(&ctx, prompt, strlen(prompt), 100, &cls));
	T_REQUIRE(f->n > 100, "only %u features", f->n);
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
	{
		int			n = sizes[z] + sizes[z] / 2,	/* models; one in three unlearned */
					nb = 0,
					bad = 0;
		sp_route_catalog cat;
		const char **ids = t_track(calloc((size_t) n, sizeof(char *)));
		const void **blobs = t_track(calloc((size_t) n, sizeof(void *)));
		size_t	   *lens = t_track(calloc((size_t) n, sizeof(size_t)));
		uint8_t   **own = t_track(calloc((size_t) n, sizeof(uint8_t *)));

		T_REQUIRE(ids && blobs && lens && own, "calloc");
		sp_route_catalog_init(&cat);
		for (int i = 0; i < n; i++)
		{
			sp_route_model m = {t_fmt("m%d", i), NULL, NULL, 1.0 + i, 100000, {0.5, 0.4, 0.3}, true};

			T_OK(&ctx, sp_route_catalog_add(&ctx, &cat, &m));
			if (i % 3 == 2)
				continue;
			own[i] = make_blob((float) ((int) (fh_rand(&seed) % 200) - 100) / 100.0f);
			for (uint32_t k = 0; k < SP_ROUTE_DIM; k++)
				blob_set_weight(own[i], k, (float) ((int) (fh_rand(&seed) % 2001) - 1000) / 997.0f);
			ids[nb] = cat.models[i].model_id;
			blobs[nb] = own[i];
			lens[nb++] = SP_ROUTE_BLOB_LEN;
		}
		T_OK(&ctx, sp_route_catalog_set_learned(&ctx, &cat, (size_t) nb, ids, blobs, lens));
		T_CHECK(cat.n_learned == (size_t) nb && cat.stride % 8 == 0 && cat.stride >= cat.n_learned &&
				cat.stride < cat.n_learned + 8, "%d learned: n_learned %zu, stride %zu", nb,
				cat.n_learned, cat.stride);
		for (int i = 0; i < n; i++)
		{
			double		got = sp_route_predict(&cat, i, &cls, f);
			double		want = own[i] ? plain_predict(own[i], f) : 0.5 - 0.1 * cls.complexity;

			if (own[i] ? got != want : fabs(got - want) > 1e-12)
				bad++;
			if (bad == 1 && (own[i] ? got != want : fabs(got - want) > 1e-12))
				t_fail(__FILE__, __LINE__, "%d models: model %d predicts %.9g, plain %.9g",
					   n, i, got, want);
		}
		T_CHECK(bad == 0, "%d models: %d predictions differ from the plain loop", n, bad);
		sp_route_catalog_free(&ctx, &cat);
	}
}

/* Ids past SP_ROUTE_MODELS_MAX that are in the catalog are still installed. */
static void
set_learned_many_ids_body(sp_route_catalog *cat)
{
	enum
	{
		N = SP_ROUTE_MODELS_MAX + 8
	};
	const char **ids = t_track(calloc(N, sizeof(char *)));
	const void **blobs = t_track(calloc(N, sizeof(void *)));
	size_t	   *lens = t_track(calloc(N, sizeof(size_t)));
	sp_ctx		ctx;

	T_REQUIRE(ids && blobs && lens, "calloc");
	for (int i = 0; i < N; i++)
	{
		ids[i] = t_fmt("retired-%d", i);
		blobs[i] = "x";
		lens[i] = 1;
	}
	ids[N - 1] = "small";
	blobs[N - 1] = make_blob(1.0f);
	lens[N - 1] = SP_ROUTE_BLOB_LEN;
	rt_ctx(&ctx);
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, N, ids, blobs, lens));
	T_CHECK(cat->n_learned == 1 && cat->learned[0] == 0,
			"the predictor of \"small\" after %d retired ids was dropped (%zu learned)",
			N - 1, cat->n_learned);
}

/* set_learned with more ids than a catalog can hold. */
static void
test_route_set_learned_many_ids(void)
{
	with_std_catalog(set_learned_many_ids_body);
}

/* ---- decide ------------------------------------------------------------- */

#define SIMPLE_Q "What is the capital of France?"

/* Expect recommended / served / routed as given (catalog ids). */
static void
expect_pick_at(const char *file, int line, const sp_route_catalog *cat,
			   const sp_route_decision *d, const char *rec, const char *served, bool routed)
{
	if (strcmp(id_of(cat, d->recommended), rec) != 0 ||
		strcmp(id_of(cat, d->served), served) != 0 || d->routed != routed)
		t_fail(file, line, "recommended %s, served %s, routed %d (reason \"%s\"); expected %s, %s, %d",
			   id_of(cat, d->recommended), id_of(cat, d->served), d->routed, d->reason,
			   rec, served, routed);
}

#define EXPECT_PICK(cat, d, rec, served, routed) \
	expect_pick_at(__FILE__, __LINE__, (cat), (d), (rec), (served), (routed))

/* The rules of route.h on the standard catalog, with every number. */
static void
decide_rules_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_decision d = {0};

	/* simple: bar 0.85 * 0.98; small (0.90, $0.2) is the cheapest that meets it */
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "small", "small", true);
		T_CHECK(d.requested == 2 && d.in_rollout && d.cls.complexity == SP_SIMPLE, "requested %d",
				d.requested);
		T_CHECK(d.estimated_cost_per_1m_tokens == 0.2 && d.requested_cost_per_1m_tokens == 10.0 &&
				fabs(d.cost_savings_pct - 98.0) < 1e-9 && d.predicted_quality == 0.90 &&
				d.requested_predicted_quality == 0.98, "numbers %g %g %g %g %g",
				d.estimated_cost_per_1m_tokens, d.requested_cost_per_1m_tokens,
				d.cost_savings_pct, d.predicted_quality, d.requested_predicted_quality);
		T_CHECK(strcmp(d.reason, "cheapest model meeting 0.85 of the requested model's predicted quality (0.900 vs 0.980)") == 0,
				"reason \"%s\"", d.reason);
	}
	/* quality first: the best model cheaper than large that meets the bar */
	r.cost_priority = false;
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "medium", "medium", true);
		T_CHECK(fabs(d.cost_savings_pct - 90.0) < 1e-9, "savings %g", d.cost_savings_pct);
		T_CHECK(strcmp(d.reason, "best predicted quality among cheaper models meeting 0.85 of the requested model's (0.950 vs 0.980)") == 0,
				"reason \"%s\"", d.reason);
	}
	/* medium requested, cost first: small; savings 100 * (1 - 0.2 / 1) */
	r = req_of("medium", SIMPLE_Q);
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "small", "small", true);
		T_CHECK(fabs(d.cost_savings_pct - 80.0) < 1e-9, "savings %g", d.cost_savings_pct);
	}
	/* a threshold of 1: nothing cheaper is as good as large */
	r = req_of("large", SIMPLE_Q);
	r.quality_threshold = 1.0;
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "large", "large", false);
}

/* Selection rules. */
static void
test_route_decide_rules(void)
{
	with_std_catalog(decide_rules_body);
}

/* Nothing qualifies, or the requested model is already the cheapest. */
static void
decide_kept_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", PROOF_EN);
	sp_route_decision d = {0};

	/* complex: bar 0.85 * 0.92 = 0.782; medium 0.70, small 0.40 */
	if (DECIDE(cat, &r, &d))
	{
		T_CHECK(d.cls.complexity == SP_COMPLEX, "PROOF_EN is %s", sp_complexity_name(d.cls.complexity));
		EXPECT_PICK(cat, &d, "large", "large", false);
		T_CHECK(d.cost_savings_pct == 0 && d.predicted_quality == 0.92, "savings %g quality %g",
				d.cost_savings_pct, d.predicted_quality);
		T_CHECK(strcmp(d.reason, "the requested model is already the cheapest that meets 0.85 of its predicted quality") == 0,
				"reason \"%s\"", d.reason);
	}
	r.cost_priority = false;
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "large", "large", false);
		T_CHECK(strcmp(d.reason, "no cheaper model meets 0.85 of the requested model's predicted quality") == 0,
				"reason \"%s\"", d.reason);
	}
	/* the free local model: it meets its own bar and costs nothing; savings 0 */
	r = req_of("local", SIMPLE_Q);
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "local", "local", false);
		T_CHECK(d.cost_savings_pct == 0 && d.requested_cost_per_1m_tokens == 0,
				"savings %g", d.cost_savings_pct);
	}
	/* more tokens than any context window */
	r = req_of("large", SIMPLE_Q);
	r.max_tokens = 200000;
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "large", "large", false);
		T_CHECK(strncmp(d.reason, "no enabled model has a context window of ", 41) == 0,
				"reason \"%s\"", d.reason);
	}
}

/* Requested model kept. */
static void
test_route_decide_kept(void)
{
	with_std_catalog(decide_kept_body);
}

/* The context window filter, at its exact edge. */
static void
decide_context_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_decision d = {0};
	int64_t		est;
	const char *chat;

	if (!DECIDE(cat, &r, &d))
		return;
	est = d.cls.context_tokens;
	r.max_tokens = 8192 - est;	/* small's window holds exactly this */
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "small", "small", true);
	r.max_tokens = 8192 - est + 1;
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "medium", "medium", true);
	/* a transcript: the whole of it must fit, not only its last user message */
	chat = t_fmt("[{\"role\":\"system\",\"content\":\"%s\"},"
				 "{\"role\":\"user\",\"content\":\"%s\"}]", long_system(), SIMPLE_Q);
	r = req_of("large", chat);
	if (!DECIDE(cat, &r, &d))
		return;
	T_CHECK(d.cls.complexity == SP_SIMPLE && d.cls.context_tokens > 1000,
			"transcript: %s, context_tokens %lld", sp_complexity_name(d.cls.complexity),
			(long long) d.cls.context_tokens);
	r.max_tokens = 8192 - d.cls.context_tokens;
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "small", "small", true);
	r.max_tokens++;
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "medium", "medium", true);
}

/* Context window. */
static void
test_route_decide_context(void)
{
	with_std_catalog(decide_context_body);
}

/* A disabled model is never chosen. */
static void
test_route_decide_disabled(void)
{
	sp_route_catalog cat;
	sp_route_model m[N_STD];
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_decision d = {0};
	sp_ctx		ctx;

	rt_ctx(&ctx);
	sp_route_catalog_init(&cat);
	memcpy(m, std_models, sizeof(m));
	m[0].enabled = false;
	for (size_t i = 0; i < N_STD; i++)
		if (sp_route_catalog_add(&ctx, &cat, &m[i]) != SP_OK)
			t_fail(__FILE__, __LINE__, "add: %s", ctx.err.msg);
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "medium", "medium", true);
	r.cost_priority = false;
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "medium", "medium", true);
	r = req_of("small", SIMPLE_Q);	/* requested but disabled: cheapest enabled qualifying */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "medium", "medium", true);
	sp_route_catalog_free(&ctx, &cat);
}

/* Ties: by cost then quality then id; by quality then cost then id. */
static void
test_route_decide_ties(void)
{
	static const sp_route_model tm[] = {
		{"zeta", NULL, NULL, 1.0, 1000, {0.9, 0.9, 0.9}, true},
		{"beta", NULL, NULL, 1.0, 1000, {0.9, 0.9, 0.9}, true},
		{"alpha", NULL, NULL, 1.0, 1000, {0.8, 0.8, 0.8}, true},
		{"gamma", NULL, NULL, 0.5, 1000, {0.7, 0.7, 0.7}, true},
		{"delta", NULL, NULL, 0.5, 1000, {0.9, 0.9, 0.9}, true},
		{"big", NULL, NULL, 9.0, 1000, {1.0, 1.0, 1.0}, true},
	};
	sp_route_catalog cat;
	sp_route_request r = req_of("big", "hi");
	sp_route_decision d = {0};
	sp_ctx		ctx;

	rt_ctx(&ctx);
	sp_route_catalog_init(&cat);
	for (size_t i = 0; i < sizeof(tm) / sizeof(tm[0]); i++)
		if (sp_route_catalog_add(&ctx, &cat, &tm[i]) != SP_OK)
			t_fail(__FILE__, __LINE__, "add: %s", ctx.err.msg);
	r.quality_threshold = 0.75;	/* bar 0.75: gamma (0.7) fails */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "delta", "delta", true);
	r.quality_threshold = 0.85;	/* bar 0.85: delta */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "delta", "delta", true);
	r.quality_threshold = 0.5;	/* gamma and delta cost 0.5: delta is better */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "delta", "delta", true);
	r.cost_priority = false;	/* 0.9: beta, zeta, delta; delta is cheaper */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "delta", "delta", true);
	cat.models[4].cost_per_1m_tokens = 1.0;	/* now beta, delta, zeta tie: beta */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "beta", "beta", true);
	r.cost_priority = true;		/* cheapest is gamma (0.5) at bar 0.5 */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "gamma", "gamma", true);
	r.quality_threshold = 0.85;	/* beta, delta, zeta at 1.0, same quality: beta */
	if (DECIDE(&cat, &r, &d))
		EXPECT_PICK(&cat, &d, "beta", "beta", true);
	sp_route_catalog_free(&ctx, &cat);
}

/* A requested model missing from the catalog is no error. */
static void
decide_missing_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("gpt-9", SIMPLE_Q);
	sp_route_decision d = {0};

	if (!DECIDE(cat, &r, &d))
		return;
	T_CHECK(d.requested == -1 && d.recommended == -1 && d.served == -1 && !d.routed,
			"requested %d recommended %d served %d routed %d", d.requested, d.recommended,
			d.served, d.routed);
	T_CHECK(isnan(d.estimated_cost_per_1m_tokens) && isnan(d.requested_cost_per_1m_tokens) &&
			isnan(d.cost_savings_pct) && isnan(d.predicted_quality) &&
			isnan(d.requested_predicted_quality), "numbers are not NaN");
	T_CHECK(strcmp(d.reason, "model \"gpt-9\" is not in the routing catalog; returned unchanged") == 0,
			"reason \"%s\"", d.reason);
	T_CHECK(d.cls.complexity == SP_SIMPLE, "still classified");
}

/* Missing requested model. */
static void
test_route_decide_missing(void)
{
	with_std_catalog(decide_missing_body);
}

/* The rollout side: request_id (or the prompt) hashed against the share. */
static bool
expected_side(const char *key, double pct)
{
	return (double) (sp_route_hash(key, strlen(key)) % 1000000) < pct * 10000;
}

/* Rollout: stable per id, about the share, 0 and 100 exact. */
static void
decide_rollout_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_decision d = {0};
	int			in = 0,
				routed = 0,
				mismatch = 0;

	r.routing_percentage = 10;
	for (int i = 0; i < 10000; i++)
	{
		char		id[32];
		bool		first;

		r.request_id_len = (size_t) snprintf(id, sizeof(id), "req-%d", i);
		r.request_id = id;
		if (!DECIDE(cat, &r, &d))
			return;
		first = d.in_rollout;
		in += d.in_rollout;
		routed += d.routed;
		mismatch += d.in_rollout != expected_side(id, 10) || d.routed != d.in_rollout ||
			d.recommended != 0 || d.served != (d.routed ? 0 : 2);
		if (i % 100 == 0 && DECIDE(cat, &r, &d) && d.in_rollout != first)
			t_fail(__FILE__, __LINE__, "request id %s changed sides", id);
	}
	T_CHECK(in >= 800 && in <= 1200, "10%% rollout: %d of 10000 in", in);
	T_CHECK(routed == in, "%d routed, %d in the rollout", routed, in);
	T_CHECK(mismatch == 0, "%d decisions differ from hash %% 10^6 < pct * 10^4", mismatch);
	r.routing_percentage = 0;
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "small", "large", false);
		T_CHECK(!d.in_rollout && strcmp(d.reason, "outside rollout (0% routed); would route to \"small\"") == 0,
				"reason \"%s\"", d.reason);
		T_CHECK(d.estimated_cost_per_1m_tokens == 0.2 && d.predicted_quality == 0.9,
				"the recommendation's numbers are not reported");
	}
	r.routing_percentage = 100;
	if (DECIDE(cat, &r, &d))
		EXPECT_PICK(cat, &d, "small", "small", true);
}

/* Rollout by request_id. */
static void
test_route_decide_rollout(void)
{
	with_std_catalog(decide_rollout_body);
}

/* Without a request_id the prompt decides the side. */
static void
decide_rollout_prompt_body(sp_route_catalog *cat)
{
	sp_route_decision d = {0};
	int			in = 0;

	for (int i = 0; i < 2000; i++)
	{
		char		p[48];
		sp_route_request r;

		snprintf(p, sizeof(p), "What is %d plus %d?", i, i + 1);
		r = req_of("large", p);
		r.routing_percentage = 50;
		if (!DECIDE(cat, &r, &d))
			return;
		in += d.in_rollout;
		if (d.in_rollout != expected_side(p, 50))
		{
			t_fail(__FILE__, __LINE__, "prompt \"%s\": in_rollout %d", p, d.in_rollout);
			return;
		}
		r.request_id = "fixed";
		r.request_id_len = 5;
		if (DECIDE(cat, &r, &d) && d.in_rollout != expected_side("fixed", 50))
			t_fail(__FILE__, __LINE__, "request_id ignored for \"%s\"", p);
	}
	T_CHECK(in >= 900 && in <= 1100, "50%% rollout by prompt: %d of 2000 in", in);
}

/* Rollout by prompt. */
static void
test_route_decide_rollout_prompt(void)
{
	with_std_catalog(decide_rollout_prompt_body);
}

/* Decide with req; expect SP_ERR_INVALID_ARG and exactly msg. */
static void
expect_decide_err_at(const char *file, int line, const sp_route_catalog *cat,
					 const sp_route_request *r, const char *msg)
{
	sp_ctx		ctx;
	sp_route_decision d = {0};

	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_route_decide(&ctx, cat, r, &d, NULL), SP_ERR_INVALID_ARG,
				msg, true);
}

#define EXPECT_DECIDE_ERR(cat, r, msg) expect_decide_err_at(__FILE__, __LINE__, (cat), (r), (msg))

/* Every argument error of decide. */
static void
decide_errors_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_catalog empty;

	r.prompt = NULL;
	EXPECT_DECIDE_ERR(cat, &r, "prompt must not be null");
	r = req_of(NULL, SIMPLE_Q);
	EXPECT_DECIDE_ERR(cat, &r, "requested_model must not be null");
	r = req_of("large", SIMPLE_Q);
	r.max_tokens = -1;
	EXPECT_DECIDE_ERR(cat, &r, "max_tokens must be at least 0, not -1");
	r.max_tokens = 100;
	r.quality_threshold = 0;
	EXPECT_DECIDE_ERR(cat, &r, "quality_threshold must be in (0, 1], not 0");
	r.quality_threshold = 1.5;
	EXPECT_DECIDE_ERR(cat, &r, "quality_threshold must be in (0, 1], not 1.5");
	r.quality_threshold = NAN;
	EXPECT_DECIDE_ERR(cat, &r, "quality_threshold must be in (0, 1], not nan");
	r.quality_threshold = 0.85;
	r.routing_percentage = -1;
	EXPECT_DECIDE_ERR(cat, &r, "routing percentage must be between 0 and 100, not -1");
	r.routing_percentage = 101;
	EXPECT_DECIDE_ERR(cat, &r, "routing percentage must be between 0 and 100, not 101");
	r.routing_percentage = NAN;
	EXPECT_DECIDE_ERR(cat, &r, "routing percentage must be between 0 and 100, not nan");
	r.routing_percentage = 100;
	sp_route_catalog_init(&empty);
	EXPECT_DECIDE_ERR(&empty, &r, "the routing catalog is empty");
	r = req_of("gpt-9", SIMPLE_Q);	/* even for a model that is not in it */
	EXPECT_DECIDE_ERR(&empty, &r, "the routing catalog is empty");
}

/* Decide errors. */
static void
test_route_decide_errors(void)
{
	with_std_catalog(decide_errors_body);
}

/* The caller's feature buffer is filled (with and without predictors). */
static void
decide_feats_body(sp_route_catalog *cat)
{
	const char *p = "Compare quicksort and mergesort.";
	sp_route_request r = req_of("large", p);
	sp_route_decision d = {0};
	sp_route_features *f = new_features(),
			   *want = new_features();
	const char *ids[1] = {"small"};
	const void *blobs[1] = {make_blob(4.0f)};
	size_t		lens[1] = {SP_ROUTE_BLOB_LEN};
	sp_ctx		ctx;
	double		s4 = 1.0 / (1.0 + exp(-4.0));

	if (!FEATURIZE(p, strlen(p), want))
		return;
	/* moderate: bar 0.85 * 0.95; small's prior 0.70 fails, medium's 0.85 passes */
	if (DECIDE_F(cat, &r, &d, f))
	{
		T_CHECK(same_features(f, want), "feats: %u, expected %u", f->n, want->n);
		T_CHECK(d.cls.complexity == SP_MODERATE && d.recommended == 1, "%s, recommended %s",
				sp_complexity_name(d.cls.complexity), id_of(cat, d.recommended));
	}
	rt_ctx(&ctx);
	T_OK(&ctx, sp_route_catalog_set_learned(&ctx, cat, 1, ids, blobs, lens));
	memset(f, 0, sizeof(*f));
	/* small's predictor now says sigmoid(4) = 0.982: it qualifies */
	if (DECIDE_F(cat, &r, &d, f))
	{
		T_CHECK(same_features(f, want), "feats with predictors: %u, expected %u", f->n, want->n);
		T_CHECK(d.recommended == 0 && fabs(d.predicted_quality - s4) < 1e-6 &&
				d.requested_predicted_quality == 0.95, "recommended %s at %g",
				id_of(cat, d.recommended), d.predicted_quality);
	}
	if (DECIDE(cat, &r, &d))
		T_CHECK(d.recommended == 0, "without a buffer: recommended %s",
				id_of(cat, d.recommended));
}

/* The feature buffer. */
static void
test_route_decide_feats(void)
{
	with_std_catalog(decide_feats_body);
}

/* ---- train -------------------------------------------------------------- */

/* What a training run gave: its result and copies of the blobs. */
typedef struct train_out
{
	sp_route_train_result res;
	int			count;
	const char *ids[N_STD];
	uint8_t    *blobs[N_STD];	/* tracked copies */
	int64_t		rows[N_STD];
	double		loss[N_STD];
} train_out;

/* Copy the trained models out of t (blobs only when out->ids is wanted). */
static void
copy_trained(const sp_route_trainer *t, train_out *out, bool blobs)
{
	out->count = sp_route_train_count(t);
	for (int k = 0; k < out->count && k < (int) N_STD; k++)
	{
		const void *b;
		size_t		len;

		sp_route_train_model(t, k, &out->ids[k], &b, &len, &out->rows[k], &out->loss[k]);
		out->ids[k] = t_fmt("%s", out->ids[k]);
		if (blobs && len == SP_ROUTE_BLOB_LEN)
			out->blobs[k] = memcpy(t_track(malloc(len)), b, len);
	}
}

/*
 * Train on n rows of s, every pass the same; out may be NULL (nothing
 * copied: the allocation sweep).  The trainer is always ended.
 */
static sp_status
train_all(sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_train_opts *opts,
		  const sp_route_sample *s, size_t n, train_out *out)
{
	sp_route_trainer *t = NULL;
	bool		more = true;
	sp_status	st;

	if (out)
		memset(out, 0, sizeof(*out));
	if ((st = sp_route_train_begin(ctx, cat, opts, &t)) != SP_OK)
		return st;
	while (st == SP_OK && more)
	{
		for (size_t i = 0; i < n && st == SP_OK; i++)
			st = sp_route_train_add(ctx, t, &s[i]);
		if (st == SP_OK)
			st = sp_route_train_next_epoch(ctx, t, &more);
	}
	if (st == SP_OK && out)
		copy_trained(t, out, true);
	sp_route_train_end(ctx, t, out ? &out->res : NULL);
	return st;
}

#define TOY_ROWS 240

/*
 * The toy task: "alpha ..." prompts are good for small (quality 1), "beta
 * ..." prompts bad (0); filler words carry no signal.  Every fifth row is
 * for a model that is not in the catalog; every third is also fed to
 * medium with a constant 0.8.  Returns the row count.
 */
static size_t
toy_rows(sp_route_sample *s)
{
	uint64_t	seed = 42;
	size_t		n = 0;

	for (int i = 0; i < TOY_ROWS; i++)
	{
		const char *p = t_fmt("%s w%u w%u w%u", i % 2 ? "beta" : "alpha",
							  (unsigned) (fh_rand(&seed) % 40),
							  (unsigned) (fh_rand(&seed) % 40),
							  (unsigned) (fh_rand(&seed) % 40));

		s[n++] = (sp_route_sample) {
			.model_id = "small", .quality = i % 2 ? 0.0 : 1.0,
			.prompt = p, .prompt_len = strlen(p)
		};
		if (i % 3 == 0)
			s[n++] = (sp_route_sample) {
				.model_id = "medium", .quality = 0.8, .prompt = p, .prompt_len = strlen(p)
			};
		if (i % 5 == 0)
			s[n++] = (sp_route_sample) {
				.model_id = "retired", .quality = 0.5, .prompt = p, .prompt_len = strlen(p)
			};
	}
	return n;
}

/* Predicted quality of catalog model i on prompt p. */
static double
predict_text(const sp_route_catalog *cat, int i, const char *p)
{
	sp_route_class c;
	sp_route_features *f = new_features();

	if (!CLASSIFY(p, 0, &c) || !FEATURIZE(p, strlen(p), f))
		return NAN;
	return sp_route_predict(cat, i, &c, f);
}

/* Install the trained blobs of out into cat. */
static bool
install(sp_route_catalog *cat, const train_out *out)
{
	sp_ctx		ctx;
	size_t		lens[N_STD];

	for (int k = 0; k < out->count; k++)
		lens[k] = SP_ROUTE_BLOB_LEN;
	rt_ctx(&ctx);
	if (sp_route_catalog_set_learned(&ctx, cat, (size_t) out->count, out->ids,
									 (const void *const *) out->blobs, lens) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "set_learned of trained blobs: %s", ctx.err.msg);
		return false;
	}
	return true;
}

/* The same rows twice give bit-identical blobs and results. */
static void
train_deterministic_body(sp_route_catalog *cat)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s);
	train_out	a,
				b;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, n, &a));
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, n, &b));
	T_REQUIRE(a.count == 2 && b.count == 2, "%d and %d models trained", a.count, b.count);
	for (int k = 0; k < 2; k++)
		T_CHECK(strcmp(a.ids[k], b.ids[k]) == 0 && a.blobs[k] && b.blobs[k] &&
				memcmp(a.blobs[k], b.blobs[k], SP_ROUTE_BLOB_LEN) == 0 &&
				memcmp(&a.loss[k], &b.loss[k], sizeof(double)) == 0,
				"model %d (%s) differs between two runs", k, a.ids[k]);
	T_CHECK(memcmp(&a.res.train_loss, &b.res.train_loss, sizeof(double)) == 0,
			"train_loss differs: %.17g vs %.17g", a.res.train_loss, b.res.train_loss);
	/* one row changed: another predictor */
	s[0].quality = 0.9;
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, n, &b));
	T_CHECK(b.count == 2 && memcmp(a.blobs[0], b.blobs[0], SP_ROUTE_BLOB_LEN) != 0,
			"a changed row gives the same predictor");
}

/* Determinism. */
static void
test_route_train_deterministic(void)
{
	with_std_catalog(train_deterministic_body);
}

/* The toy task is learned; counts, blob header, per-model results. */
static void
train_toy_body(sp_route_catalog *cat)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s);
	train_out	o;
	sp_ctx		ctx;
	double		good,
				bad,
				med;

	rt_ctx(&ctx);
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, n, &o));
	T_CHECK(o.res.rows == TOY_ROWS + TOY_ROWS / 3 && o.res.skipped == TOY_ROWS / 5 &&
			o.res.models == 2 && o.res.epochs == 8,
			"rows %lld skipped %lld models %d epochs %d", (long long) o.res.rows,
			(long long) o.res.skipped, o.res.models, o.res.epochs);
	T_REQUIRE(o.count == 2 && strcmp(o.ids[0], "small") == 0 && strcmp(o.ids[1], "medium") == 0,
			  "trained %d models: %s", o.count, o.count ? o.ids[0] : "");
	T_CHECK(o.rows[0] == TOY_ROWS && o.rows[1] == TOY_ROWS / 3, "rows %lld, %lld",
			(long long) o.rows[0], (long long) o.rows[1]);
	T_CHECK(memcmp(o.blobs[0], "SPRW", 4) == 0 && o.blobs[0][4] == SP_ROUTE_FEATURE_VERSION &&
			o.blobs[0][8] == SP_ROUTE_DIM_BITS && o.blobs[0][5] == 0 && o.blobs[0][9] == 0,
			"blob header");
	T_CHECK(o.loss[0] < 0.5 && o.res.train_loss < 0.6, "losses %g (small), %g (all)", o.loss[0],
			o.res.train_loss);
	T_REQUIRE(install(cat, &o), "install");
	good = predict_text(cat, 0, "alpha w7 w8 w9");
	bad = predict_text(cat, 0, "beta w7 w8 w9");
	med = predict_text(cat, 1, "beta w7 w8 w9");
	T_CHECK(good > 0.75 && bad < 0.25, "small: alpha %.3f, beta %.3f", good, bad);
	T_CHECK(fabs(med - 0.8) < 0.1, "medium (always 0.8): %.3f", med);
	T_CHECK(isfinite(get_f32le(o.blobs[0] + 12)), "bias not finite");
}

/* Toy task. */
static void
test_route_train_toy(void)
{
	with_std_catalog(train_toy_body);
}

/* The loss of the last pass goes down as passes are added. */
static void
train_loss_body(sp_route_catalog *cat)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s);
	static const int epochs[] = {1, 2, 4, 8, 16};
	double		prev = log(2.0) + 0.01;
	train_out	o;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	for (size_t i = 0; i < sizeof(epochs) / sizeof(epochs[0]); i++)
	{
		sp_route_train_opts opts = {.epochs = epochs[i]};

		T_OK(&ctx, train_all(&ctx, cat, &opts, s, n, &o));
		T_CHECK(o.res.epochs == epochs[i], "epochs %d, asked %d", o.res.epochs, epochs[i]);
		T_CHECK(o.loss[0] < prev, "%d epochs: small's loss %.4f, not below %.4f", epochs[i],
				o.loss[0], prev);
		prev = o.loss[0];
	}
}

/* Loss decreases. */
static void
test_route_train_loss(void)
{
	with_std_catalog(train_loss_body);
}

/* Rows given as features train exactly as the same rows given as prompts. */
static void
train_features_body(sp_route_catalog *cat)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample))),
			   *fs = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s);
	sp_route_features *all = t_track(calloc(n, sizeof(sp_route_features)));
	train_out	a,
				b;
	sp_ctx		ctx;

	T_REQUIRE(all != NULL, "calloc");
	for (size_t i = 0; i < n; i++)
	{
		sp_route_features *f = &all[i];

		if (!FEATURIZE(s[i].prompt, s[i].prompt_len, f))
			return;
		fs[i] = s[i];
		fs[i].prompt = NULL;
		fs[i].prompt_len = 0;
		fs[i].features = f->idx;
		fs[i].n_features = f->n;
	}
	rt_ctx(&ctx);
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, n, &a));
	T_OK(&ctx, train_all(&ctx, cat, NULL, fs, n, &b));
	T_REQUIRE(a.count == 2 && b.count == 2, "%d and %d models", a.count, b.count);
	for (int k = 0; k < 2; k++)
		T_CHECK(memcmp(a.blobs[k], b.blobs[k], SP_ROUTE_BLOB_LEN) == 0,
				"%s: features and prompts train differently", a.ids[k]);
	/* mixed: half as prompts, half as features */
	for (size_t i = 0; i < n; i += 2)
		fs[i] = s[i];
	T_OK(&ctx, train_all(&ctx, cat, NULL, fs, n, &b));
	T_CHECK(b.count == 2 && memcmp(a.blobs[0], b.blobs[0], SP_ROUTE_BLOB_LEN) == 0,
			"mixed rows train differently");
}

/* Samples as features. */
static void
test_route_train_features(void)
{
	with_std_catalog(train_features_body);
}

/* Feed one row to a fresh trainer; expect SP_ERR_INVALID_ARG and exactly msg. */
static void
expect_row_err_at(const char *file, int line, const sp_route_catalog *cat,
				  const sp_route_sample *s, const char *msg)
{
	sp_ctx		ctx;
	sp_route_trainer *t = NULL;

	rt_ctx(&ctx);
	if (sp_route_train_begin(&ctx, cat, NULL, &t) != SP_OK)
	{
		t_fail(file, line, "train_begin: %s", ctx.err.msg);
		return;
	}
	t_check_err(file, line, &ctx, sp_route_train_add(&ctx, t, s), SP_ERR_INVALID_ARG, msg, true);
	sp_route_train_end(&ctx, t, NULL);
}

#define EXPECT_ROW_ERR(cat, s, msg) expect_row_err_at(__FILE__, __LINE__, (cat), (s), (msg))

/* Every row error, with its exact message. */
static void
train_row_errors_body(sp_route_catalog *cat)
{
	uint32_t	slots[3] = {1, 2, SP_ROUTE_DIM};
	uint32_t   *many = t_track(calloc(SP_ROUTE_MAX_FEATURES + 1, sizeof(uint32_t)));
	sp_route_sample s = {.model_id = "small", .quality = 1.5, .prompt = "hi", .prompt_len = 2};

	EXPECT_ROW_ERR(cat, &s, "feedback quality must be between 0 and 1, not 1.5");
	s.quality = NAN;
	EXPECT_ROW_ERR(cat, &s, "feedback quality must be between 0 and 1, not nan");
	s.quality = -0.25;
	EXPECT_ROW_ERR(cat, &s, "feedback quality must be between 0 and 1, not -0.25");
	s.model_id = "retired";		/* checked even for a model that is skipped */
	EXPECT_ROW_ERR(cat, &s, "feedback quality must be between 0 and 1, not -0.25");
	s.model_id = "small";
	s.quality = 1;
	s.prompt = NULL;
	EXPECT_ROW_ERR(cat, &s, "a training row has neither a prompt nor features");
	s.features = slots;
	s.n_features = 3;
	EXPECT_ROW_ERR(cat, &s, t_fmt("a training row has feature slot %u, beyond %u", SP_ROUTE_DIM,
								  SP_ROUTE_DIM - 1));
	T_REQUIRE(many != NULL, "calloc");
	for (uint32_t i = 0; i <= SP_ROUTE_MAX_FEATURES; i++)
		many[i] = i;
	s.features = many;
	s.n_features = SP_ROUTE_MAX_FEATURES + 1;
	EXPECT_ROW_ERR(cat, &s, t_fmt("a training row has %d features, more than %d",
								  SP_ROUTE_MAX_FEATURES + 1, SP_ROUTE_MAX_FEATURES));
}

/* Row errors. */
static void
test_route_train_row_errors(void)
{
	with_std_catalog(train_row_errors_body);
}

/* Feed passes of rows[p] rows each; return the status of the first failure. */
static sp_status
train_passes(sp_ctx *ctx, const sp_route_catalog *cat, const sp_route_sample *s,
			 const size_t *rows, int passes, int *failed_pass)
{
	sp_route_trainer *t = NULL;
	sp_route_train_opts opts = {.epochs = passes};
	sp_status	st = sp_route_train_begin(ctx, cat, &opts, &t);
	bool		more = true;

	*failed_pass = 0;
	for (int p = 0; st == SP_OK && more && p < passes; p++)
	{
		for (size_t i = 0; i < rows[p] && st == SP_OK; i++)
			st = sp_route_train_add(ctx, t, &s[i]);
		if (st == SP_OK)
			st = sp_route_train_next_epoch(ctx, t, &more);
		if (st != SP_OK)
			*failed_pass = p + 1;
	}
	sp_route_train_end(ctx, t, NULL);
	return st;
}

/* A pass with another number of rows than the first is an error. */
static void
train_row_count_body(sp_route_catalog *cat)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s);
	size_t		fewer[3] = {n, n, n - 1},
				more[2] = {n - 1, n};
	sp_ctx		ctx;
	int			pass;

	rt_ctx(&ctx);
	T_ERR(&ctx, train_passes(&ctx, cat, s, fewer, 3, &pass), SP_ERR_INVALID_ARG,
		  "training pass 3 saw 319 rows but the first saw 320; the feedback changed during training");
	T_CHECK(pass == 3, "failed in pass %d", pass);
	rt_ctx(&ctx);
	/* row n - 1 is small's (the last toy row, 239, is "beta" for small) */
	T_ERR(&ctx, train_passes(&ctx, cat, s, more, 2, &pass), SP_ERR_INVALID_ARG,
		  "training pass 2 saw 320 rows but the first saw 319; the feedback changed during training");
	rt_ctx(&ctx);
	fewer[0] = fewer[1] = fewer[2] = n;
	T_OK(&ctx, train_passes(&ctx, cat, s, fewer, 3, &pass));
}

/* Row count mismatch. */
static void
test_route_train_row_count(void)
{
	with_std_catalog(train_row_count_body);
}

/* No rows, only unknown models, an empty catalog. */
static void
train_empty_body(sp_route_catalog *cat)
{
	sp_route_sample s = {.model_id = "retired", .quality = 0.5, .prompt = "hi", .prompt_len = 2};
	sp_route_catalog empty;
	sp_route_trainer *t = (sp_route_trainer *) &s;
	train_out	o;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	T_OK(&ctx, train_all(&ctx, cat, NULL, &s, 0, &o));
	T_CHECK(o.count == 0 && o.res.models == 0 && o.res.rows == 0 && isnan(o.res.train_loss),
			"no rows: %d models, loss %g", o.count, o.res.train_loss);
	T_OK(&ctx, train_all(&ctx, cat, NULL, &s, 1, &o));
	T_CHECK(o.count == 0 && o.res.skipped == 1 && o.res.rows == 0,
			"unknown model: %d models, %lld skipped", o.count, (long long) o.res.skipped);
	sp_route_catalog_init(&empty);
	T_ERR(&ctx, sp_route_train_begin(&ctx, &empty, NULL, &t), SP_ERR_INVALID_ARG,
		  "the routing catalog is empty");
	T_CHECK(t == NULL, "trainer set on error");
	sp_route_train_end(&ctx, NULL, &o.res);	/* NULL is harmless */
}

/* Empty training. */
static void
test_route_train_empty(void)
{
	with_std_catalog(train_empty_body);
}

/* ---- allocation failure -------------------------------------------------- */

#define LIVE_MAX 4096

/* Counting allocator that knows its blocks (a foreign free is reported, not done). */
typedef struct alloc_state
{
	long		allocs;			/* calls to alloc */
	long		fail_after;		/* fail every call after this many; -1 never */
	long		foreign;		/* frees of pointers this allocator did not give */
	int			n_live;
	void	   *live[LIVE_MAX];
} alloc_state;

/* alloc hook: counts, remembers the block, fails after fail_after calls. */
static void *
a_alloc(void *user, size_t size)
{
	alloc_state *a = user;
	void	   *p;

	a->allocs++;
	if ((a->fail_after >= 0 && a->allocs > a->fail_after) || a->n_live >= LIVE_MAX)
		return NULL;
	if ((p = malloc(size ? size : 1)) != NULL)
		a->live[a->n_live++] = p;
	return p;
}

/* free hook: frees only blocks a_alloc gave out. */
static void
a_free(void *user, void *ptr)
{
	alloc_state *a = user;

	if (ptr == NULL)
		return;
	for (int i = a->n_live - 1; i >= 0; i--)
		if (a->live[i] == ptr)
		{
			a->live[i] = a->live[--a->n_live];
			free(ptr);
			return;
		}
	a->foreign++;
}

/* A context using the counting allocator. */
static void
alloc_ctx(sp_ctx *ctx, alloc_state *a, long fail_after)
{
	memset(a, 0, sizeof(*a));
	a->fail_after = fail_after;
	rt_ctx(ctx);
	ctx->hooks.alloc = a_alloc;
	ctx->hooks.free = a_free;
	ctx->hooks.user = a;
}

/* Everything the core allocates for: catalog, predictors, a transcript, training. */
static sp_status
alloc_scenario(sp_ctx *ctx, const sp_route_sample *s, size_t n, const uint8_t *blob,
			   sp_route_features *f)
{
	sp_route_catalog cat;
	sp_route_decision d = {0};
	const char *ids[1] = {"medium"};
	const void *blobs[1] = {blob};
	size_t		lens[1] = {SP_ROUTE_BLOB_LEN};
	const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"Prove it\"}]}";
	sp_route_request r = req_of("large", chat);
	sp_route_train_opts opts = {.epochs = 2};
	sp_status	st = SP_OK;

	sp_route_catalog_init(&cat);
	for (size_t i = 0; i < N_STD && st == SP_OK; i++)
		st = sp_route_catalog_add(ctx, &cat, &std_models[i]);
	if (st == SP_OK)
		st = sp_route_catalog_set_learned(ctx, &cat, 1, ids, blobs, lens);
	if (st == SP_OK)
		st = sp_route_decide(ctx, &cat, &r, &d, f);
	if (st == SP_OK)
		st = sp_route_featurize(ctx, chat, strlen(chat), f);
	if (st == SP_OK)
		st = train_all(ctx, &cat, &opts, s, n, NULL);
	sp_route_catalog_free(ctx, &cat);
	return st;
}

/* Every allocation failing in turn: SP_ERR_NOMEM, nothing leaked or freed twice. */
static void
test_route_alloc_failure(void)
{
	sp_route_sample *s = t_track(calloc(2 * TOY_ROWS, sizeof(sp_route_sample)));
	size_t		n = toy_rows(s) / 8;
	alloc_state *a = t_track(calloc(1, sizeof(alloc_state)));
	uint8_t    *blob = make_blob(1.0f);
	sp_route_features *f = new_features();
	sp_ctx		ctx;
	long		total;

	T_REQUIRE(a != NULL, "calloc");
	alloc_ctx(&ctx, a, -1);
	T_OK(&ctx, alloc_scenario(&ctx, s, n, blob, f));
	total = a->allocs;
	T_CHECK(a->n_live == 0 && a->foreign == 0, "success: %d blocks live, %ld foreign frees",
			a->n_live, a->foreign);
	T_CHECK(total >= 10, "only %ld allocations", total);
	for (long k = 0; k < total; k++)
	{
		sp_status	st;

		alloc_ctx(&ctx, a, k);
		st = alloc_scenario(&ctx, s, n, blob, f);
		if (!T_ERR_SUB(&ctx, st, SP_ERR_NOMEM, "out of memory") || a->n_live != 0 ||
			a->foreign != 0)
			t_fail(__FILE__, __LINE__, "failing after %ld of %ld allocations: %d blocks "
				   "leaked, %ld frees of pointers the core did not allocate", k, total,
				   a->n_live, a->foreign);
		for (int i = 0; i < a->n_live; i++)
			free(a->live[i]);
	}
	if (!t_failed())
		printf("# route: %ld allocations, each failed in turn\n", total);
}

/* ---- the RouteLLM labels ------------------------------------------------- */

#define GSM_MAX 2000

/* One GSM8K row: the prompt and whether each model answered it right. */
typedef struct gsm_row
{
	char	   *prompt;			/* tracked */
	size_t		len;
	bool		ok[2];			/* Mixtral, GPT-4 */
} gsm_row;

/* Field [a, b) of a CSV row without its delimiter, unquoted, as a tracked string. */
static char *
csv_field(const uint8_t *row, uint32_t a, uint32_t b, size_t *len)
{
	char	   *out = t_track(malloc((size_t) (b - a) + 1));
	size_t		n = 0;

	while (b > a && (row[b - 1] == ',' || row[b - 1] == '\n' || row[b - 1] == '\r'))
		b--;
	if (b - a >= 2 && row[a] == '"' && row[b - 1] == '"')
	{
		for (uint32_t i = a + 1; i < b - 1; i++)
		{
			out[n++] = (char) row[i];
			if (row[i] == '"' && i + 1 < b - 1 && row[i + 1] == '"')
				i++;
		}
	}
	else
		for (uint32_t i = a; i < b; i++)
			out[n++] = (char) row[i];
	out[n] = '\0';
	*len = n;
	return out;
}

/* Read gsm8k_responses.csv with the core's CSV row scanner; returns rows read. */
static size_t
gsm_read(const char *path, gsm_row *rows)
{
	size_t		size,
				pos = 0,
				n = 0;
	uint8_t    *buf = fh_read(path, &size);
	sp_rowscan	sc = {.fmt = SP_ROWS_CSV};
	long		got;
	uint32_t	ends[8];

	if (buf == NULL)
		return 0;
	while ((got = sp_row_next(&sc, buf + pos, size - pos, true)) > 0 && n < GSM_MAX)
	{
		const uint8_t *row = buf + pos;
		size_t		nf = sp_row_fields(SP_ROWS_CSV, row, (size_t) got, ends, 8);

		pos += (size_t) got;
		if (sc.rows == 1 || nf != 5)
			continue;			/* the header, or a row the test cannot use */
		rows[n].prompt = csv_field(row, 0, ends[0], &rows[n].len);
		rows[n].ok[0] = ends[1] - ends[0] == 5 && memcmp(row + ends[0], "True,", 5) == 0;
		rows[n].ok[1] = ends[2] - ends[1] == 5 && memcmp(row + ends[1], "True,", 5) == 0;
		n++;
	}
	return n;
}

static void gsm_check(const sp_route_catalog *cat, const train_out *o, const double *p,
					  const bool *y, size_t n, size_t nt);

/* Area under the ROC curve of scores p[] for labels y[] (n items, O(n^2)). */
static double
auc(const double *p, const bool *y, size_t n)
{
	double		pairs = 0,
				wins = 0;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (y[i] && !y[j])
			{
				pairs++;
				wins += p[i] > p[j] ? 1.0 : p[i] == p[j] ? 0.5 : 0.0;
			}
	return pairs > 0 ? wins / pairs : 0.5;
}

/* Train on the rows whose prompt hash is even; held-out checks on the rest. */
static void
gsm_body(sp_route_catalog *cat, const gsm_row *rows, size_t n)
{
	sp_route_sample *s = t_track(calloc(2 * n, sizeof(sp_route_sample)));
	double	   *p = t_track(calloc(2 * n, sizeof(double)));
	bool	   *y = t_track(calloc(2 * n, sizeof(bool)));
	size_t		ns = 0,
				nt = 0;
	train_out	o;
	sp_ctx		ctx;
	sp_route_features *f = new_features();

	T_REQUIRE(s && p && y, "calloc");
	for (size_t i = 0; i < n; i++)
		if (sp_route_hash(rows[i].prompt, rows[i].len) % 2 == 0)
			for (int m = 0; m < 2; m++)
				s[ns++] = (sp_route_sample) {
					.model_id = cat->models[m].model_id, .quality = rows[i].ok[m],
					.prompt = rows[i].prompt, .prompt_len = rows[i].len
				};
	rt_ctx(&ctx);
	T_OK(&ctx, train_all(&ctx, cat, NULL, s, ns, &o));
	T_REQUIRE(o.count == 2 && o.res.rows == (int64_t) ns, "%d models, %lld rows", o.count,
			  (long long) o.res.rows);
	T_REQUIRE(install(cat, &o), "install");
	for (size_t i = 0; i < n; i++)
	{
		sp_route_class c;

		if (sp_route_hash(rows[i].prompt, rows[i].len) % 2 == 0)
			continue;
		if (!CLASSIFY_N(rows[i].prompt, rows[i].len, 0, &c) ||
			!FEATURIZE(rows[i].prompt, rows[i].len, f))
			return;
		for (int m = 0; m < 2; m++)
		{
			p[m * n + nt] = sp_route_predict(cat, m, &c, f);
			y[m * n + nt] = rows[i].ok[m];
		}
		nt++;
	}
	T_REQUIRE(nt > n / 3, "%zu held-out rows of %zu", nt, n);
	gsm_check(cat, &o, p, y, n, nt);
}

/* The held-out checks: calibrated means, some ranking power, GPT-4 above Mixtral. */
static void
gsm_check(const sp_route_catalog *cat, const train_out *o, const double *p, const bool *y,
		  size_t n, size_t nt)
{
	double		pred[2] = {0, 0},
				obs[2] = {0, 0},
				a;

	for (int m = 0; m < 2; m++)
	{
		a = auc(p + m * n, y + m * n, nt);
		for (size_t i = 0; i < nt; i++)
		{
			pred[m] += p[m * n + i];
			obs[m] += y[m * n + i];
		}
		pred[m] /= (double) nt;
		obs[m] /= (double) nt;
		printf("# gsm8k %s: held-out mean predicted %.3f, observed %.3f, AUC %.3f, "
			   "train loss %.3f\n", cat->models[m].model_id, pred[m], obs[m], a, o->loss[m]);
		T_CHECK(fabs(pred[m] - obs[m]) < 0.1, "%s: predicted %.3f, observed %.3f",
				cat->models[m].model_id, pred[m], obs[m]);
		/* the prompts carry signal past the base rate (0.60 / 0.67 when written) */
		T_CHECK(a > 0.55, "%s: held-out AUC %.3f", cat->models[m].model_id, a);
	}
	T_CHECK(pred[1] - pred[0] > 0.1, "GPT-4 %.3f not above Mixtral %.3f", pred[1], pred[0]);
}

/* The learned predictors on the real GSM8K labels (needs $SPARSE_DATA). */
static void
test_route_gsm8k(void)
{
	static const sp_route_model gm[2] = {
		{"mistralai/Mixtral-8x7B-Instruct-v0.1", NULL, NULL, 0.24, 32768, {0.7, 0.7, 0.7}, true},
		{"gpt-4-1106-preview", NULL, NULL, 24.7, 128000, {0.9, 0.9, 0.9}, true},
	};
	gsm_row    *rows = t_track(calloc(GSM_MAX, sizeof(gsm_row)));
	sp_route_catalog cat;
	sp_ctx		ctx;
	size_t		n;

	if (t_data() == NULL)
	{
		t_skip("SPARSE_DATA is not set");
		return;
	}
	n = gsm_read(t_fmt("%s/routing/routellm/gsm8k_responses.csv", t_data()), rows);
	T_REQUIRE(n == 1319, "%zu rows read from gsm8k_responses.csv", n);
	rt_ctx(&ctx);
	sp_route_catalog_init(&cat);
	if (sp_route_catalog_add(&ctx, &cat, &gm[0]) == SP_OK &&
		sp_route_catalog_add(&ctx, &cat, &gm[1]) == SP_OK)
		gsm_body(&cat, rows, n);
	else
		t_fail(__FILE__, __LINE__, "add: %s", ctx.err.msg);
	sp_route_catalog_free(&ctx, &cat);
}

/* ---- last: a failure here may abort the sanitizer build ------------------- */

/* max_tokens near INT64_MAX fits no context window (and must not overflow). */
static void
decide_huge_body(sp_route_catalog *cat)
{
	sp_route_request r = req_of("large", SIMPLE_Q);
	sp_route_decision d = {0};
	sp_route_class c;

	r.max_tokens = INT64_MAX;
	if (DECIDE(cat, &r, &d))
	{
		EXPECT_PICK(cat, &d, "large", "large", false);
		T_CHECK(strncmp(d.reason, "no enabled model has a context window of ", 41) == 0,
				"reason \"%s\"", d.reason);
	}
	if (CLASSIFY(SIMPLE_Q, INT64_MAX, &c))
		T_CHECK(c.score <= 0.5, "score %g", c.score);
}

/* Huge max_tokens. */
static void
test_route_decide_huge_max_tokens(void)
{
	with_std_catalog(decide_huge_body);
}

/* ---- the table ------------------------------------------------------------ */

const t_case t_tests_route[] = {
	{"route_classify_simple", test_route_classify_simple},
	{"route_classify_complex", test_route_classify_complex},
	{"route_classify_moderate", test_route_classify_moderate},
	{"route_classify_tokens", test_route_classify_tokens},
	{"route_classify_max_tokens", test_route_classify_max_tokens},
	{"route_classify_signals", test_route_classify_signals},
	{"route_classify_word_boundaries", test_route_classify_word_boundaries},
	{"route_classify_any_bytes", test_route_classify_any_bytes},
	{"route_classify_transcript", test_route_classify_transcript},
	{"route_classify_malformed_json", test_route_classify_malformed_json},
	{"route_featurize_basic", test_route_featurize_basic},
	{"route_featurize_cap", test_route_featurize_cap},
	{"route_featurize_10mb", test_route_featurize_10mb},
	{"route_hash", test_route_hash},
	{"route_catalog_add_errors", test_route_catalog_add_errors},
	{"route_catalog_find", test_route_catalog_find},
	{"route_catalog_too_many", test_route_catalog_too_many},
	{"route_set_learned_errors", test_route_set_learned_errors},
	{"route_set_learned", test_route_set_learned},
	{"route_predict_weights", test_route_predict_weights},
	{"route_set_learned_many_ids", test_route_set_learned_many_ids},
	{"route_predict_many_models", test_route_predict_many_models},
	{"route_decide_rules", test_route_decide_rules},
	{"route_decide_kept", test_route_decide_kept},
	{"route_decide_context", test_route_decide_context},
	{"route_decide_disabled", test_route_decide_disabled},
	{"route_decide_ties", test_route_decide_ties},
	{"route_decide_missing", test_route_decide_missing},
	{"route_decide_rollout", test_route_decide_rollout},
	{"route_decide_rollout_prompt", test_route_decide_rollout_prompt},
	{"route_decide_errors", test_route_decide_errors},
	{"route_decide_feats", test_route_decide_feats},
	{"route_train_deterministic", test_route_train_deterministic},
	{"route_train_toy", test_route_train_toy},
	{"route_train_loss", test_route_train_loss},
	{"route_train_features", test_route_train_features},
	{"route_train_row_errors", test_route_train_row_errors},
	{"route_train_row_count", test_route_train_row_count},
	{"route_train_empty", test_route_train_empty},
	{"route_alloc_failure", test_route_alloc_failure},
	{"route_gsm8k", test_route_gsm8k},
	{"route_decide_huge_max_tokens", test_route_decide_huge_max_tokens},
	{NULL, NULL}
};
