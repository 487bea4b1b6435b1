/*
 * route_text.c -- from a prompt to its complexity class and hashed features.
 *
 * One pass over the scored text does both (sp_route_analyze):
 *   - The scored text is the prompt itself, or, when the prompt is a JSON
 *     chat transcript, the text of its last "user" message (cJSON parses it;
 *     anything that is not such a transcript is plain text).
 *   - Tokens: runs of letters and digits (ASCII lower-cased, any other
 *     script kept as it is), one token per punctuation character, and one
 *     per character of scripts written without spaces (CJK, kana, Thai,
 *     Lao, Khmer, Myanmar).  Invalid UTF-8 bytes count as letters.  No
 *     language is assumed: keywords of several languages sit in one table
 *     and match whole tokens (or runs of 2-3 tokens), so "approve" never
 *     fires "prove".  Each token is hashed once (FNV-1a, then a 64-bit
 *     finalizer), and phrases combine the hashes of their tokens.
 *   - Classification adds up readable signals: length, requested output,
 *     reasoning and task keywords, code, math, several questions, list
 *     items.  The weights are hand-set; the score is clamped to [0, 1].
 *   - Features (for the learned predictors): every token and every pair of
 *     adjacent tokens in the first SP_ROUTE_SCAN_MAX bytes, plus bucketed
 *     structure features and the class, hashed into SP_ROUTE_DIM slots; a
 *     bitmap keeps them distinct and yields them in ascending order.
 * The hash functions and feature layout are SP_ROUTE_FEATURE_VERSION: any
 * change to them must bump it, since stored predictors depend on them.
 */
#include "route_int.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

/* The tokenizer's per-token helpers are inlined into one loop (speed). */
#define HOT static inline __attribute__((always_inline))

#define HASH_SEED 0xcbf29ce484222325ULL
#define UNI_SALT 0x9e3779b97f4a7c15ULL
#define BI_SALT 0xc2b2ae3d27d4eb4fULL
#define STRUCT_SALT 0x165667b19e3779f9ULL

/* Keyword categories and their readable prefix in signals. */
enum kw_kind
{
	KW_REASON,					/* asks for reasoning, proof, design, analysis */
	KW_TASK,					/* asks for an explanation or a computation */
	KW_CODE						/* programming words */
};

typedef struct keyword
{
	const char *text;			/* tokens separated by single spaces */
	enum kw_kind kind;
} keyword;

/* The keyword table: several languages, whole tokens only. */
static const keyword keywords[] = {
	{"prove", KW_REASON}, {"proof", KW_REASON}, {"derive", KW_REASON},
	{"derivation", KW_REASON}, {"theorem", KW_REASON}, {"lemma", KW_REASON},
	{"analyze", KW_REASON}, {"analyse", KW_REASON}, {"analysis", KW_REASON},
	{"compare", KW_REASON}, {"contrast", KW_REASON}, {"evaluate", KW_REASON},
	{"critique", KW_REASON}, {"justify", KW_REASON}, {"optimize", KW_REASON},
	{"optimise", KW_REASON}, {"design", KW_REASON}, {"architecture", KW_REASON},
	{"implement", KW_REASON}, {"refactor", KW_REASON}, {"debug", KW_REASON},
	{"algorithm", KW_REASON}, {"complexity", KW_REASON}, {"rigorous", KW_REASON},
	{"rigorously", KW_REASON}, {"trade - offs", KW_REASON}, {"tradeoffs", KW_REASON},
	{"step by step", KW_REASON}, {"multi - step", KW_REASON},
	{"beweise", KW_REASON}, {"beweisen", KW_REASON}, {"herleiten", KW_REASON},
	{"analysiere", KW_REASON}, {"analysieren", KW_REASON}, {"vergleiche", KW_REASON},
	{"implementiere", KW_REASON}, {"optimiere", KW_REASON}, {"entwirf", KW_REASON},
	{"begründe", KW_REASON}, {"démontrer", KW_REASON}, {"démontrez", KW_REASON},
	{"démontre", KW_REASON}, {"prouver", KW_REASON}, {"prouvez", KW_REASON},
	{"analyser", KW_REASON}, {"analysez", KW_REASON}, {"comparer", KW_REASON},
	{"implémenter", KW_REASON}, {"optimiser", KW_REASON}, {"concevoir", KW_REASON},
	{"justifier", KW_REASON}, {"justifiez", KW_REASON}, {"implémentez", KW_REASON},
	{"implémente", KW_REASON}, {"optimisez", KW_REASON}, {"concevez", KW_REASON},
	{"prouve", KW_REASON}, {"dérivez", KW_REASON}, {"théorème", KW_REASON},
	{"algorithme", KW_REASON}, {"complexité", KW_REASON}, {"étape par étape", KW_REASON},
	{"implementieren", KW_REASON}, {"algorithmus", KW_REASON}, {"komplexität", KW_REASON},
	{"schritt für schritt", KW_REASON}, {"paso a paso", KW_REASON},
	{"implementa", KW_REASON}, {"optimiza", KW_REASON}, {"demuestre", KW_REASON},
	{"algoritmo", KW_REASON}, {"complejidad", KW_REASON}, {"teorema", KW_REASON},
	{"шаг за шагом", KW_REASON}, {"алгоритм", KW_REASON}, {"теорему", KW_REASON},
	{"теорема", KW_REASON}, {"сложность", KW_REASON}, {"demostrar", KW_REASON}, {"demuestra", KW_REASON},
	{"analizar", KW_REASON}, {"analiza", KW_REASON}, {"comparar", KW_REASON},
	{"implementar", KW_REASON}, {"optimizar", KW_REASON}, {"diseñar", KW_REASON},
	{"diseña", KW_REASON}, {"докажите", KW_REASON}, {"докажи", KW_REASON},
	{"доказать", KW_REASON}, {"проанализируй", KW_REASON},
	{"проанализируйте", KW_REASON}, {"сравни", KW_REASON}, {"сравните", KW_REASON},
	{"реализуй", KW_REASON}, {"реализуйте", KW_REASON}, {"оптимизируй", KW_REASON},
	{"выведи", KW_REASON}, {"证 明", KW_REASON}, {"推 导", KW_REASON},
	{"分 析", KW_REASON}, {"比 较", KW_REASON}, {"實 現", KW_REASON},
	{"实 现", KW_REASON}, {"优 化", KW_REASON}, {"设 计", KW_REASON},
	{"算 法", KW_REASON}, {"証 明", KW_REASON}, {"導 出", KW_REASON},
	{"比 較", KW_REASON}, {"実 装", KW_REASON}, {"最 適 化", KW_REASON},
	{"設 計", KW_REASON},
	{"explain", KW_TASK}, {"describe", KW_TASK}, {"summarize", KW_TASK},
	{"summarise", KW_TASK}, {"calculate", KW_TASK}, {"solve", KW_TASK},
	{"compute", KW_TASK}, {"outline", KW_TASK}, {"translate", KW_TASK},
	{"erkläre", KW_TASK}, {"erklären", KW_TASK}, {"beschreibe", KW_TASK},
	{"zusammenfassen", KW_TASK}, {"berechne", KW_TASK}, {"löse", KW_TASK},
	{"übersetze", KW_TASK}, {"expliquer", KW_TASK}, {"expliquez", KW_TASK},
	{"explique", KW_TASK}, {"décrire", KW_TASK}, {"décrivez", KW_TASK},
	{"résumer", KW_TASK}, {"résumez", KW_TASK}, {"calculer", KW_TASK},
	{"calculez", KW_TASK}, {"résoudre", KW_TASK}, {"résolvez", KW_TASK},
	{"traduire", KW_TASK}, {"traduisez", KW_TASK}, {"explicar", KW_TASK},
	{"explica", KW_TASK}, {"describir", KW_TASK}, {"resumir", KW_TASK},
	{"resume", KW_TASK}, {"calcular", KW_TASK}, {"calcula", KW_TASK},
	{"resolver", KW_TASK}, {"resuelve", KW_TASK}, {"traduce", KW_TASK},
	{"traducir", KW_TASK}, {"объясни", KW_TASK}, {"объясните", KW_TASK},
	{"опиши", KW_TASK}, {"опишите", KW_TASK}, {"вычисли", KW_TASK},
	{"вычислите", KW_TASK}, {"реши", KW_TASK}, {"решите", KW_TASK},
	{"переведи", KW_TASK}, {"解 释", KW_TASK}, {"描 述", KW_TASK},
	{"总 结", KW_TASK}, {"计 算", KW_TASK}, {"求 解", KW_TASK},
	{"翻 译", KW_TASK}, {"説 明", KW_TASK}, {"要 約", KW_TASK},
	{"計 算", KW_TASK}, {"翻 訳", KW_TASK},
	{"def", KW_CODE}, {"function", KW_CODE}, {"return", KW_CODE},
	{"lambda", KW_CODE}, {"printf", KW_CODE}, {"println", KW_CODE},
	{"struct", KW_CODE}, {"void", KW_CODE}, {"# include", KW_CODE},
	{"public static", KW_CODE}, {"console . log", KW_CODE}, {"const", KW_CODE},
};

#define N_KEYWORDS (sizeof(keywords) / sizeof(keywords[0]))
#define KW_TABLE 1024			/* open addressing, power of two */
#define MAX_SIGNAL_KW 6			/* keywords named in signals */

/* Hash table of keyword phrase hashes -> index + 1 (0 = empty). */
static uint64_t kw_hash[KW_TABLE];
static uint16_t kw_slot[KW_TABLE];

/*
 * Bloom filters (4096 bits) in front of the table, so most tokens cost one
 * bit test: kw_bloom holds every phrase hash, kw_prefix the hashes of the
 * first one and first two tokens of phrases of two and three tokens.
 */
#define BLOOM_WORDS 64
static uint64_t kw_bloom[BLOOM_WORDS];
static uint64_t kw_prefix[BLOOM_WORDS];
static pthread_once_t kw_once = PTHREAD_ONCE_INIT;

/* The 64-bit finalizer of MurmurHash3: spreads a hash over every bit. */
static inline uint64_t
fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/*
 * Hash of the phrase "a b" from the (already mixed) hashes of a and b: one
 * multiply, since the high bits of a * odd constant are well mixed.
 */
static inline uint64_t
combine(uint64_t a, uint64_t b)
{
	return (a * UNI_SALT) ^ b;
}

/* Feature slot of a mixed hash: its top SP_ROUTE_DIM_BITS bits. */
static inline uint32_t
slot_of(uint64_t h)
{
	return (uint32_t) (h >> (64 - SP_ROUTE_DIM_BITS));
}

/*
 * Streaming hash of a token's lower-cased bytes: a rotate and an xor per
 * byte (a short dependency chain), then the 64-bit finalizer.  Tokens up
 * to 12 bytes never collide before the finalizer.
 */
typedef struct thash
{
	uint64_t	h;
	uint64_t	n;				/* bytes so far */
} thash;

/* Start a token hash. */
static inline void
th_init(thash *t)
{
	t->h = HASH_SEED;
	t->n = 0;
}

/* Add one byte. */
static inline void
th_byte(thash *t, uint8_t b)
{
	t->h = ((t->h << 5) | (t->h >> 59)) ^ b;
	t->n++;
}

/* The finished hash: one multiply and a shift spread it over every bit. */
static inline uint64_t
th_final(const thash *t)
{
	uint64_t	h = (t->h + (t->n << 58)) * UNI_SALT;

	return h ^ (h >> 31);
}

/* Hash of one already-lower-cased token. */
static uint64_t
token_hash(const uint8_t *p, size_t n)
{
	thash		t;

	th_init(&t);
	for (size_t i = 0; i < n; i++)
		th_byte(&t, p[i]);
	return th_final(&t);
}

/* Byte classes of ASCII (and "not ASCII") for the tokenizer's fast path. */
enum
{
	B_PUNCT = 0, B_WORD = 1, B_SPACE = 2, B_NEWLINE = 3, B_HIGH = 4
};
static uint8_t btab[256];		/* class of each byte */
static uint8_t wtab[256];		/* lower-case of a word byte; 0: not one */
static uint64_t byte_hash[128];	/* token_hash of each one-byte (ASCII) token */

/* Fill btab and wtab. */
static void
byte_tables_init(void)
{
	for (int b = 0; b < 256; b++)
	{
		bool		alnum = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
			(b >= '0' && b <= '9') || b == '_';

		btab[b] = b >= 0x80 ? B_HIGH : alnum ? B_WORD :
			b == '\n' ? B_NEWLINE :
			(b == ' ' || b == '\t' || b == '\r' || b == '\v' || b == '\f') ? B_SPACE : B_PUNCT;
		wtab[b] = alnum ? (uint8_t) ((b >= 'A' && b <= 'Z') ? b + 32 : b) : 0;
		if (b < 128)
		{
			uint8_t		one = (uint8_t) b;

			byte_hash[b] = token_hash(&one, 1);
		}
	}
}

/* Bit of a hash in a Bloom filter. */
static inline void
bloom_set(uint64_t *f, uint64_t h)
{
	f[(h >> 20) & (BLOOM_WORDS - 1)] |= 1ULL << ((h >> 26) & 63);
}

static inline bool
bloom_has(const uint64_t *f, uint64_t h)
{
	return (f[(h >> 20) & (BLOOM_WORDS - 1)] >> ((h >> 26) & 63)) & 1;
}

/*
 * Hash of a keyword phrase: its space-separated tokens combined in order;
 * the hashes of its proper prefixes go to the prefix filter.
 */
static uint64_t
phrase_hash(const char *text)
{
	uint64_t	h = 0;
	bool		first = true;

	while (*text)
	{
		const char *end = strchr(text, ' ');
		size_t		n = end ? (size_t) (end - text) : strlen(text);
		uint64_t	t = token_hash((const uint8_t *) text, n);

		h = first ? t : combine(h, t);
		first = false;
		text += n + (end ? 1 : 0);
		if (*text)
			bloom_set(kw_prefix, h);
	}
	return h;
}

/* Build the byte tables and the keyword hash table (once per process). */
static void
kw_init(void)
{
	byte_tables_init();
	for (size_t i = 0; i < N_KEYWORDS; i++)
	{
		uint64_t	h = phrase_hash(keywords[i].text);
		size_t		j = (h >> 40) & (KW_TABLE - 1);

		while (kw_slot[j] != 0)
			j = (j + 1) & (KW_TABLE - 1);
		kw_hash[j] = h;
		kw_slot[j] = (uint16_t) (i + 1);
		bloom_set(kw_bloom, h);
	}
}

/* Index of the keyword whose phrase hash is h, or -1. */
static inline int
kw_find(uint64_t h)
{
	size_t		j = (h >> 40) & (KW_TABLE - 1);

	if (!bloom_has(kw_bloom, h))
		return -1;
	while (kw_slot[j] != 0)
	{
		if (kw_hash[j] == h)
			return kw_slot[j] - 1;
		j = (j + 1) & (KW_TABLE - 1);
	}
	return -1;
}

/* Character classes of the tokenizer. */
enum cclass
{
	C_SPACE,
	C_WORD,						/* part of a run-of-letters token */
	C_PUNCT,					/* a token by itself */
	C_SOLO						/* a letter of a script without spaces: a token by itself */
};

/* Class of a code point at or above 0x80. */
HOT enum cclass
class_of(uint32_t cp)
{
	if (cp == 0xA0 || cp == 0x3000 || cp == 0x2028 || cp == 0x2029 || cp == 0x85)
		return C_SPACE;
	if ((cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 ||
		(cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x2190 && cp <= 0x22FF) ||
		(cp >= 0x2E00 && cp <= 0x2E7F) || (cp >= 0x3000 && cp <= 0x303F) ||
		(cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF0F) ||
		(cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
		(cp >= 0xFF5B && cp <= 0xFF65) || cp == 0x061F || cp == 0x060C ||
		cp == 0x037E || cp == 0x0964)
		return C_PUNCT;
	if ((cp >= 0x0E00 && cp <= 0x0EFF) || (cp >= 0x1000 && cp <= 0x109F) ||
		(cp >= 0x1780 && cp <= 0x17FF) || (cp >= 0x3040 && cp <= 0x312F) ||
		(cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
		(cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x3FFFF))
		return C_SOLO;
	return C_WORD;
}

/*
 * Decode one UTF-8 character at p (n > 0 bytes left): its code point and
 * length.  An invalid or truncated sequence is one byte, code point 0xFFFD.
 */
HOT size_t
utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t		b = p[0];
	size_t		len;
	uint32_t	c;

	if (b < 0x80)
		return *cp = b, 1;
	if (b >= 0xC2 && b <= 0xDF)
		len = 2, c = b & 0x1F;
	else if (b >= 0xE0 && b <= 0xEF)
		len = 3, c = b & 0x0F;
	else if (b >= 0xF0 && b <= 0xF4)
		len = 4, c = b & 0x07;
	else
		return *cp = 0xFFFD, 1;
	if (len > n)
		return *cp = 0xFFFD, 1;
	for (size_t i = 1; i < len; i++)
	{
		if ((p[i] & 0xC0) != 0x80)
			return *cp = 0xFFFD, 1;
		c = (c << 6) | (p[i] & 0x3F);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
		(c >= 0xD800 && c <= 0xDFFF))
		return *cp = 0xFFFD, 1;
	*cp = c;
	return len;
}

/* Lower-case of the capitals of Latin-1, Greek and Cyrillic; others as they are. */
HOT uint32_t
lower_cp(uint32_t cp)
{
	if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3A9) ||
		(cp >= 0x410 && cp <= 0x42F))
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

/* Add one character (bytes p, len; code point cp), lower-cased, to a hash. */
static inline void
th_char_lower(thash *t, const uint8_t *p, size_t len, uint32_t cp)
{
	uint32_t	lc = lower_cp(cp);

	if (lc != cp)
	{
		/* every lowered code point is below 0x800: two bytes */
		th_byte(t, (uint8_t) (0xC0 | (lc >> 6)));
		th_byte(t, (uint8_t) (0x80 | (lc & 0x3F)));
		return;
	}
	for (size_t k = 0; k < len; k++)
		th_byte(t, p[k]);
}

/* Everything one pass learns about the scored text. */
typedef struct scan
{
	int64_t		tokens;			/* estimated model tokens */
	int64_t		numbers, digits, sentences, questions, lines, list_items, code_chars, ops;
	int64_t		kw_count[3];	/* distinct keywords per kind */
	int			kw_named[MAX_SIGNAL_KW];
	int			n_named;
	uint64_t	kw_seen[(N_KEYWORDS + 63) / 64];
	bool		fence, latex, bad_utf8;
	int			backticks;		/* consecutive '`' tokens */
	int			line_state;		/* 0 line start, 1 number first, 2 other */
	uint64_t	prev1, prev2;	/* hashes of the last two tokens */
	int			nprev;
	bool		pre1, pre2;		/* last token / last two tokens begin a phrase */
	bool		prev_backslash;
	size_t		scanned;		/* bytes of scored text */
	/* features */
	sp_route_features *feats;
	uint64_t   *bitmap;			/* SP_ROUTE_DIM bits */
	uint32_t	distinct;
	bool		feat_on;
	sp_route_warm warm;			/* weights to prefetch, or rows NULL */
} scan;

/* Room kept for the structure features after the token features. */
#define STRUCT_ROOM 48

/* Add one hashed feature to the bitmap unless limit features are there. */
HOT void
feat_add(scan *s, uint64_t h, uint32_t limit)
{
	uint32_t	slot = slot_of(h);
	uint64_t	bit = 1ULL << (slot & 63);

	if (s->bitmap[slot >> 6] & bit)
		return;
	if (s->distinct >= limit)
		return;
	s->bitmap[slot >> 6] |= bit;
	s->distinct++;
	if (s->warm.rows)
	{
		/* the first 64 floats of the row at most (four cache lines) */
		const float *row = s->warm.rows + (size_t) slot * s->warm.stride;
		size_t		span = s->warm.stride < 64 ? s->warm.stride : 64;

		for (size_t k = 0; k < span; k += 16)
			__builtin_prefetch(row + k);
		__builtin_prefetch(row + span - 1);
	}
}

/* Note a keyword match (each keyword counts once). */
static void
kw_hit(scan *s, int k)
{
	if (s->kw_seen[k >> 6] & (1ULL << (k & 63)))
		return;
	s->kw_seen[k >> 6] |= 1ULL << (k & 63);
	s->kw_count[keywords[k].kind]++;
	if (s->n_named < MAX_SIGNAL_KW)
		s->kw_named[s->n_named++] = k;
}

/* Look up the phrases ending with the token of hash h. */
HOT void
kw_lookup(scan *s, uint64_t h)
{
	int			k = kw_find(h);
	uint64_t	c1 = 0;

	if (k >= 0)
		kw_hit(s, k);
	if (s->pre1)
	{
		c1 = combine(s->prev1, h);
		if ((k = kw_find(c1)) >= 0)
			kw_hit(s, k);
	}
	if (s->pre2 && (k = kw_find(combine(combine(s->prev2, s->prev1), h))) >= 0)
		kw_hit(s, k);
	s->pre2 = s->pre1 && bloom_has(kw_prefix, c1);
	s->pre1 = bloom_has(kw_prefix, h);
}

/* Structure counters for a punctuation token (an ASCII byte or a code point). */
HOT void
punct_counts(scan *s, uint32_t cp)
{
	if (cp == '.' || cp == 0x3002 || cp == '!' || cp == 0xFF01)
		s->sentences++;
	if (cp == '?' || cp == 0xFF1F || cp == 0x061F || cp == 0x037E)
		s->questions++;
	switch (cp)
	{
		case '{': case '}': case ';': case '(': case ')': case '<': case '>':
		case '[': case ']':
			s->code_chars++;
			break;
		case '=':
			s->code_chars++;
			s->ops++;
			break;
		case '+': case '*': case '/': case '^': case 0xD7: case 0xF7: case 0x2212:
			s->ops++;
			break;
	}
	s->backticks = (cp == '`') ? s->backticks + 1 : 0;
	if (s->backticks >= 3)
		s->fence = true;
	if (s->line_state == 0 && (cp == '-' || cp == '*' || cp == 0x2022))
		s->list_items++;
	else if (s->line_state == 1 && (cp == '.' || cp == ')'))
		s->list_items++;
	s->line_state = 2;
	s->prev_backslash = (cp == '\\');
}

/* Account for one token: its hash, kind, and (for words) first byte. */
HOT void
token_done(scan *s, uint64_t h, enum cclass kind, uint8_t first)
{
	if (kind == C_WORD && first >= '0' && first <= '9')
	{
		s->numbers++;
		if (s->line_state == 0)
			s->line_state = 1;
		else
			s->line_state = 2;
	}
	else if (kind != C_PUNCT)
	{
		if (s->prev_backslash && kind == C_WORD)
			s->latex = true;
		s->line_state = 2;
	}
	if (kind != C_PUNCT)
	{
		s->backticks = 0;
		s->prev_backslash = false;
	}
	kw_lookup(s, h);
	if (s->feat_on)
	{
		feat_add(s, h, SP_ROUTE_MAX_FEATURES - STRUCT_ROOM);
		if (s->nprev >= 1)
			feat_add(s, combine(s->prev1, h ^ BI_SALT), SP_ROUTE_MAX_FEATURES - STRUCT_ROOM);
	}
	s->prev2 = s->prev1;
	s->prev1 = h;
	if (s->nprev < 2)
		s->nprev++;
}

/*
 * Scan a run of word characters starting at p; returns its length.  ASCII
 * runs take one table lookup and one hash step per byte; every character
 * hashes to as many bytes as it has, so the hash's byte count is i.
 */
HOT size_t
scan_word(scan *s, const uint8_t *p, size_t n)
{
	thash		t;
	size_t		i = 0;
	int64_t		ascii = 0,
				other = 0;

	th_init(&t);
	for (;;)
	{
		size_t		start = i;
		uint8_t		w;

		while (i < n && (w = wtab[p[i]]) != 0)
		{
			t.h = ((t.h << 5) | (t.h >> 59)) ^ w;
			i++;
		}
		ascii += (int64_t) (i - start);
		if (i == n || p[i] < 0x80)
			break;

		uint32_t	cp;
		size_t		len = utf8_next(p + i, n - i, &cp);

		if (cp == 0xFFFD && len == 1)
			s->bad_utf8 = true;
		if (class_of(cp) != C_WORD)
			break;
		th_char_lower(&t, p + i, len, cp);
		other++;
		i += len;
	}
	t.n = i;
	s->tokens += (ascii + 3) / 4;
	if (other)
		s->tokens += (other + 2) / 3;
	if (p[0] >= '0' && p[0] <= '9')
		s->digits += ascii;
	token_done(s, th_final(&t), C_WORD, p[0]);
	return i;
}

/* Scan the text, filling s. */
static void
scan_text(scan *s, const uint8_t *p, size_t n, const bool want_feats)
{
	size_t		i = 0;

	while (i < n)
	{
		uint8_t		b = p[i];

		s->feat_on = want_feats && i < SP_ROUTE_SCAN_MAX;
		if (b < 0x80)
		{
			uint8_t		c = btab[b];

			if (c == B_WORD)
				i += scan_word(s, p + i, n - i);
			else if (c == B_SPACE || c == B_NEWLINE)
			{
				if (c == B_NEWLINE)
					s->lines++, s->line_state = 0;
				i++;
			}
			else
			{
				s->tokens++;
				punct_counts(s, b);
				token_done(s, byte_hash[b], C_PUNCT, b);
				i++;
			}
			continue;
		}

		uint32_t	cp;
		size_t		len = utf8_next(p + i, n - i, &cp);
		enum cclass c = class_of(cp);

		if (c == C_WORD)
			i += scan_word(s, p + i, n - i);
		else
		{
			if (c != C_SPACE)
			{
				s->tokens++;
				if (c == C_PUNCT)
					punct_counts(s, cp);
				token_done(s, token_hash(p + i, len), c, p[i]);
			}
			i += len;
		}
	}
	s->scanned = n;
}

/* ---- scored text: the last user message of a chat transcript ---------- */

/* The text to classify: the prompt, or a copy of the last user message. */
typedef struct scored
{
	const uint8_t *p;
	size_t		n;
	char	   *owned;			/* allocated copy, or NULL */
	bool		chat;
} scored;

/* The message array of a transcript (array, or object with "messages"). */
static const cJSON *
transcript_messages(const cJSON *root)
{
	const cJSON *m = root;

	if (cJSON_IsObject(root))
		m = cJSON_GetObjectItemCaseSensitive(root, "messages");
	if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0)
		return NULL;
	for (const cJSON *e = m->child; e; e = e->next)
		if (!cJSON_IsObject(e) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "role")))
			return NULL;
	return m;
}

/* Copy the text of a message's content (a string or text parts) into sc. */
static sp_status
copy_content(sp_ctx *ctx, const cJSON *content, scored *sc)
{
	size_t		total = 0,
				at = 0;
	const cJSON *part;

	if (cJSON_IsString(content))
		total = strlen(content->valuestring);
	else
		cJSON_ArrayForEach(part, content)
	{
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (cJSON_IsString(t))
			total += strlen(t->valuestring) + 1;
	}
	if ((sc->owned = sp_alloc(ctx, total + 1)) == NULL)
		return SP_ERR_NOMEM;
	if (cJSON_IsString(content))
		memcpy(sc->owned, content->valuestring, total), at = total;
	else
		cJSON_ArrayForEach(part, content)
	{
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (!cJSON_IsString(t))
			continue;
		size_t		k = strlen(t->valuestring);

		if (at > 0)
			sc->owned[at++] = '\n';	/* between parts only: one part reads as a string */
		memcpy(sc->owned + at, t->valuestring, k);
		at += k;
	}
	sc->p = (const uint8_t *) sc->owned;
	sc->n = at;
	sc->chat = true;
	return SP_OK;
}

/* Point sc at the scored text of the prompt (see the file comment). */
static sp_status
scored_text(sp_ctx *ctx, const char *prompt, size_t len, scored *sc)
{
	size_t		i = 0;
	cJSON	   *root;
	const char *end = NULL;
	const cJSON *msgs,
			   *user = NULL,
			   *e;
	sp_status	st = SP_OK;

	memset(sc, 0, sizeof(*sc));
	sc->p = (const uint8_t *) prompt;
	sc->n = len;
	while (i < len && (prompt[i] == ' ' || prompt[i] == '\n' || prompt[i] == '\t' || prompt[i] == '\r'))
		i++;
	if (i == len || (prompt[i] != '[' && prompt[i] != '{'))
		return SP_OK;
	if ((root = cJSON_ParseWithLengthOpts(prompt, len, &end, 0)) == NULL)
		return SP_OK;
	while (end < prompt + len && (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r'))
		end++;
	if (end != prompt + len)	/* text after the JSON: not a transcript */
	{
		cJSON_Delete(root);
		return SP_OK;
	}
	if ((msgs = transcript_messages(root)) != NULL)
		cJSON_ArrayForEach(e, msgs)
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");

		if (strcmp(role->valuestring, "user") == 0 &&
			(cJSON_IsString(content) || cJSON_IsArray(content)))
			user = content;
	}
	if (user)
		st = copy_content(ctx, user, sc);
	cJSON_Delete(root);
	return st;
}

/* ---- classification -------------------------------------------------- */

/* x clamped to [lo, hi]. */
static double
clampd(double x, double lo, double hi)
{
	return x < lo ? lo : (x > hi ? hi : x);
}

/*
 * Append ", <prefix><text>" (no comma first) to the signals if it fits,
 * else nothing; written by hand because snprintf was a tenth of the time
 * of classifying a short prompt.
 */
static void
signal_add2(char *buf, size_t cap, const char *prefix, const char *text)
{
	size_t		n = strlen(buf),
				a = strlen(prefix),
				b = strlen(text),
				sep = n ? 2 : 0;

	if (n + sep + a + b + 1 > cap)
		return;
	memcpy(buf + n, ", ", sep);
	memcpy(buf + n + sep, prefix, a);
	memcpy(buf + n + sep + a, text, b);
	buf[n + sep + a + b] = '\0';
}

/* Append ", text". */
static void
signal_add(char *buf, size_t cap, const char *text)
{
	signal_add2(buf, cap, "", text);
}

/* Append ", <prefix><decimal value>". */
static void
signal_num(char *buf, size_t cap, const char *prefix, int64_t v)
{
	char		digits[24];
	int			k = (int) sizeof(digits) - 1;
	uint64_t	u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;

	digits[k] = '\0';
	do
		digits[--k] = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		digits[--k] = '-';
	signal_add2(buf, cap, prefix, digits + k);
}

/* True for an ASCII letter or digit. */
static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * A keyword as people write it: its table form joins tokens with spaces,
 * which only belong between two words ("step by step", but "#include",
 * "trade-offs", "证明").
 */
static void
keyword_display(const char *text, char *out, size_t cap)
{
	size_t		n = 0;

	for (size_t i = 0; text[i] && n + 1 < cap; i++)
	{
		if (text[i] == ' ' && !(i > 0 && is_alnum(text[i - 1]) && is_alnum(text[i + 1])))
			continue;
		out[n++] = text[i];
	}
	out[n] = '\0';
}

/* Score contributed by the keywords found. */
static double
keyword_score(const scan *s)
{
	double		r = (double) s->kw_count[KW_REASON],
				t = (double) s->kw_count[KW_TASK];

	if (r > 0)
		return fmin(0.6, 0.35 + 0.12 * (r - 1) + 0.06 * t);
	if (t > 0)
		return fmin(0.45, 0.30 + 0.06 * (t - 1));
	return 0;
}

/* True when the scan looks like code / math. */
static bool
is_code(const scan *s)
{
	return s->fence || s->kw_count[KW_CODE] >= 2 ||
		(s->code_chars >= 12 && s->code_chars * 40 >= (int64_t) s->scanned);
}

static bool
is_math(const scan *s)
{
	return s->latex || s->numbers >= 4 || (s->numbers >= 2 && s->ops >= 2);
}

/* Turn a finished scan into the class, score and signals. */
static void
classify_scan(const scan *s, int64_t max_tokens, bool chat, sp_route_class *out)
{
	double		len_s = clampd((log2((double) (s->tokens > 1 ? s->tokens : 1)) - 4) / 6, 0, 1);
	double		out_s = clampd((log2((double) (max_tokens > 1 ? max_tokens : 1)) - 6) / 5, 0, 1);
	double		score = 0.25 * len_s + 0.15 * out_s + keyword_score(s);

	memset(out, 0, sizeof(*out));
	signal_num(out->signals, sizeof(out->signals), "tokens=", s->tokens);
	if (out_s >= 0.3)
		signal_num(out->signals, sizeof(out->signals), "max_tokens=", max_tokens);
	if (chat)
		signal_add(out->signals, sizeof(out->signals), "chat:last_user");
	for (int i = 0; i < s->n_named; i++)
	{
		char		word[64];

		keyword_display(keywords[s->kw_named[i]].text, word, sizeof(word));
		signal_add2(out->signals, sizeof(out->signals), "keyword:", word);
	}
	if (is_code(s))
		score += 0.15, signal_add(out->signals, sizeof(out->signals), "code");
	if (is_math(s))
		score += 0.10, signal_add(out->signals, sizeof(out->signals), "math");
	if (s->questions > 1)
	{
		score += fmin(0.10, 0.04 * (double) (s->questions - 1));
		signal_num(out->signals, sizeof(out->signals), "questions=", s->questions);
	}
	if (s->list_items > 0)
	{
		score += fmin(0.10, 0.03 * (double) s->list_items);
		signal_num(out->signals, sizeof(out->signals), "list=", s->list_items);
	}
	if (s->bad_utf8)
		signal_add(out->signals, sizeof(out->signals), "invalid_utf8");
	out->score = clampd(score, 0, 1);
	out->complexity = out->score < 0.30 ? SP_SIMPLE : (out->score < 0.60 ? SP_MODERATE : SP_COMPLEX);
	out->est_prompt_tokens = s->tokens;
}

/* ---- features ---------------------------------------------------------- */

/* floor(log2(x)) for x >= 1, else 0. */
static int
ilog2(int64_t x)
{
	int			k = 0;

	while (x > 1)
		x >>= 1, k++;
	return k;
}

/* Add the bucketed structure features (none depends on the request). */
static void
struct_features(scan *s, bool chat)
{
	const uint64_t base = STRUCT_SALT;
	const uint32_t all = SP_ROUTE_MAX_FEATURES;

	for (int k = 0; k <= ilog2(s->tokens) && k < 16; k++)
		feat_add(s, fmix64(base + 0x100 + k), all);
	for (int k = 0; k <= ilog2(s->numbers + 1) && k < 8; k++)
		feat_add(s, fmix64(base + 0x200 + k), all);
	feat_add(s, fmix64(base + 0x210 + (s->numbers > 15 ? 15 : s->numbers)), all);
	feat_add(s, fmix64(base + 0x220 + (s->sentences > 15 ? 15 : s->sentences)), all);
	for (int k = 0; k <= ilog2(s->digits + 1) && k < 12; k++)
		feat_add(s, fmix64(base + 0x230 + k), all);
	feat_add(s, fmix64(base + 0x300 + (s->questions > 3 ? 3 : s->questions)), all);
	feat_add(s, fmix64(base + 0x400 + (ilog2(s->lines + 1) > 7 ? 7 : ilog2(s->lines + 1))), all);
	for (int kind = 0; kind < 3; kind++)
		for (int k = 0; k < s->kw_count[kind] && k < 3; k++)
			feat_add(s, fmix64(base + 0x500 + 0x10 * kind + k), all);
	if (is_code(s))
		feat_add(s, fmix64(base + 0x600), all);
	if (is_math(s))
		feat_add(s, fmix64(base + 0x601), all);
	if (s->list_items > 0)
		feat_add(s, fmix64(base + 0x602), all);
	if (chat)
		feat_add(s, fmix64(base + 0x603), all);
}

/* Move the bitmap's slots into feats in ascending order and clear it. */
static void
bitmap_drain(scan *s)
{
	sp_route_features *f = s->feats;

	f->n = 0;
	for (uint32_t w = 0; w < SP_ROUTE_DIM / 64; w++)
	{
		uint64_t	bits = s->bitmap[w];

		while (bits && f->n < SP_ROUTE_MAX_FEATURES)
		{
			int			b = __builtin_ctzll(bits);

			f->idx[f->n++] = w * 64 + (uint32_t) b;
			bits &= bits - 1;
		}
	}
}

/*
 * Estimated tokens of a whole prompt (a chat transcript with its markup),
 * from bytes alone so that it costs far less than tokenizing: four ASCII
 * bytes or one other character per token.
 */
static int64_t
whole_tokens(const char *prompt, size_t len)
{
	const uint8_t *p = (const uint8_t *) prompt;
	int64_t		ascii = 0,
				other = 0;

	for (size_t i = 0; i < len; i++)
	{
		ascii += p[i] < 0x80;
		other += p[i] >= 0xC0;	/* a UTF-8 lead byte */
	}
	return (ascii + 3) / 4 + other;
}

/* ---- entry points ------------------------------------------------------ */

const char *
sp_complexity_name(sp_complexity c)
{
	switch (c)
	{
		case SP_SIMPLE:
			return "simple";
		case SP_MODERATE:
			return "moderate";
		case SP_COMPLEX:
			return "complex";
	}
	return "unknown";
}

sp_status
sp_route_analyze(sp_ctx *ctx, const char *prompt, size_t len, int64_t max_tokens,
				 sp_route_class *cls, sp_route_features *feats, const sp_route_warm *warm)
{
	scan		s;
	scored		sc;
	sp_route_class local;
	uint64_t	bitmap[SP_ROUTE_DIM / 64];
	sp_status	st;

	if (prompt == NULL)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "prompt must not be null");
	if (max_tokens < 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG,
					   "max_tokens must be at least 0, not %lld", (long long) max_tokens);
	pthread_once(&kw_once, kw_init);
	if ((st = scored_text(ctx, prompt, len, &sc)) != SP_OK)
		return st;
	memset(&s, 0, sizeof(s));
	s.feats = feats;
	if (feats && warm && warm->rows)
		s.warm = *warm;
	if (feats)
	{
		memset(bitmap, 0, sizeof(bitmap));
		s.bitmap = bitmap;
	}
	scan_text(&s, sc.p, sc.n, feats != NULL);
	classify_scan(&s, max_tokens, sc.chat, cls ? cls : &local);
	if (feats)
	{
		struct_features(&s, sc.chat);
		bitmap_drain(&s);
	}
	if (cls)
	{
		/* the whole prompt holds the scored text: never count it as less */
		int64_t		whole = sc.chat ? whole_tokens(prompt, len) : 0;

		cls->context_tokens = whole > cls->est_prompt_tokens ? whole : cls->est_prompt_tokens;
	}
	sp_free(ctx, sc.owned);
	return SP_OK;
}

sp_status
sp_route_classify(sp_ctx *ctx, const char *prompt, size_t len, int64_t max_tokens,
				  sp_route_class *out)
{
	sp_clear_error(ctx);
	return sp_route_analyze(ctx, prompt, len, max_tokens, out, NULL, NULL);
}

sp_status
sp_route_featurize(sp_ctx *ctx, const char *prompt, size_t len, sp_route_features *out)
{
	sp_clear_error(ctx);
	return sp_route_analyze(ctx, prompt, len, 0, NULL, out, NULL);
}
