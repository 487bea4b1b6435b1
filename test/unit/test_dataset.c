/*
 * test_dataset.c -- round trips and errors of dataset deltas
 * (sp_dataset_compress in common/dataset.c, decoded by common/apply.c).
 *
 * Inputs are synthetic tables written into the test directory: records
 * whose fields (id, name, city, value, score, note) are derived from the
 * record id alone, so a derived table is the parent's ids filtered,
 * reordered or repeated, with some fields edited, in one of four formats
 * (CSV, TSV, JSONL, pretty-printed JSON array).  Each case runs the whole
 * cycle (ds_roundtrip): compress, apply to a new path, compare the bytes and
 * the SHA-256 (of the file, or of the manifest of a directory, computed here
 * independently of the core), verify, and list the methods sp_delta_info
 * reports per file; then it checks an upper bound on the delta size that
 * only holds if the row coder found the parent's rows (plain zstd -19 of
 * these tables takes about a quarter of their size).  Inputs the row
 * scanners cannot cut must round-trip too, with the byte method the core
 * falls back to.  The eight real pairs of ../shared/data/datasets are
 * checked against the sizes zstd -19 --patch-from reaches (skipped when the
 * data is absent); they are compressed side by side, one thread each, to
 * keep the suite fast.  The error cases check exact messages; damaged ROWS
 * chunks are applied in a child process, so that a decoder crash is a
 * failure, not the end of the run.  The hook sweeps fail every allocation
 * after the k-th, or only the k-th, and cancel at every poll, for compress,
 * apply, verify and info.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "files.h"
#include "harness.h"
#include "parquet.h"
#include "rowindex.h"
#include "rt_util.h"
#include "st_writer.h"

/* ---- synthetic tables ------------------------------------------------------ */

/* Words of the "original" and of the "translated" vocabulary. */
static const char *const words[2][32] = {
	{"river", "stone", "light", "paper", "garden", "window", "silver", "market",
	 "winter", "forest", "engine", "letter", "island", "bridge", "candle", "mirror",
	 "orange", "thunder", "valley", "harbor", "pepper", "ladder", "meadow", "rocket",
	 "saddle", "tunnel", "velvet", "wander", "yellow", "zephyr", "anchor", "basket"},
	{"Fluss", "Stein", "Licht", "Papier", "Garten", "Fenster", "Silber", "Markt",
	 "Winter", "Wald", "Motor", "Brief", "Insel", "Bruecke", "Kerze", "Spiegel",
	 "Orange", "Donner", "Tal", "Hafen", "Pfeffer", "Leiter", "Wiese", "Rakete",
	 "Sattel", "Tunnel", "Samt", "wandern", "gelb", "Westwind", "Anker", "Korb"},
};

static const char *const cities[16] = {
	"Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Lima", "Perth", "Dakar",
	"Tunis", "Sofia", "Riga", "Cusco", "Nairobi", "Porto", "Kyoto", "Bergen",
};

/* One record, every field a function of its id (and the vocabulary). */
typedef struct rec
{
	uint64_t	id;
	char		name[48];
	const char *city;
	unsigned	value;
	unsigned	score;			/* thousandths */
	char		note[200];
	bool		note_comma;		/* the note holds a ',' (CSV quotes it) */
} rec;

/* Fill r for record id in vocabulary vocab (0 or 1, same numbers). */
static void
make_rec(uint64_t id, int vocab, rec *r)
{
	uint64_t	s = id * 0x9E3779B97F4A7C15ull + 0x1234567ull;
	int			nw;
	size_t		k = 0;

	r->id = id;
	snprintf(r->name, sizeof(r->name), "%s %s", words[vocab][fh_rand(&s) % 32],
			 words[vocab][fh_rand(&s) % 32]);
	r->city = cities[fh_rand(&s) % 16];
	r->value = (unsigned) (fh_rand(&s) % 100000);
	r->score = (unsigned) (fh_rand(&s) % 100000);
	nw = 3 + (int) (fh_rand(&s) % 8);
	r->note_comma = false;
	for (int i = 0; i < nw; i++)
	{
		bool		comma = i > 0 && fh_rand(&s) % 6 == 0;

		k += (size_t) snprintf(r->note + k, sizeof(r->note) - k, "%s%s", i == 0 ? "" : comma ? ", " : " ",
							   words[vocab][fh_rand(&s) % 32]);
		r->note_comma |= comma;
	}
}

/* Growable text buffer (malloc'ed; tracked once finished). */
typedef struct sb
{
	char	   *p;
	size_t		n,
				cap;
} sb;

/* Append printf output to b. */
static void __attribute__((format(printf, 2, 3)))
sb_add(sb *b, const char *fmt,...)
{
	va_list		ap;
	int			need;

	va_start(ap, fmt);
	need = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (b->n + (size_t) need + 1 > b->cap)
	{
		b->cap = (b->n + (size_t) need + 1) * 2;
		if ((b->p = realloc(b->p, b->cap)) == NULL)
		{
			fprintf(stderr, "out of memory in sb_add\n");
			exit(2);
		}
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
	b->n += (size_t) need;
}

/* Table formats. */
typedef enum tfmt
{
	T_CSV, T_TSV, T_JSONL, T_JSON
} tfmt;

/* Edits applied to records. */
enum
{
	EDIT_NONE = 0,
	EDIT_SCORE = 1,				/* score changed (records picked by every) */
	EDIT_ADDCOL = 2,			/* a "flag" column added to every row */
	EDIT_RECOMP = 4				/* value recomputed in every row */
};

/* What a table holds and how it is written. */
typedef struct tspec
{
	tfmt		fmt;
	const uint64_t *ids;		/* record ids, in order */
	size_t		n;
	int			edit;			/* EDIT_* bits */
	uint64_t	every;			/* EDIT_SCORE: records with id % every == 7 */
	int			vocab;			/* 1: translated words */
	const char *eol;			/* NULL: "\n" */
	bool		bom;			/* start with a UTF-8 byte order mark */
	bool		no_final_eol;	/* the last row has no line end */
	bool		no_header;		/* CSV/TSV: no header row */
	const char *header;			/* CSV/TSV header; NULL: the default */
} tspec;

/* Append one CSV or TSV row of r. */
static void
put_delimited(sb *b, const tspec *s, const rec *r, unsigned value, unsigned score)
{
	char		d = s->fmt == T_TSV ? '\t' : ',';
	bool		q = s->fmt == T_CSV && r->note_comma;

	sb_add(b, "%llu%c%s%c%s%c%u%c%u.%03u%c%s%s%s", (unsigned long long) r->id, d, r->name, d,
		   r->city, d, value, d, score / 1000, score % 1000, d, q ? "\"" : "", r->note,
		   q ? "\"" : "");
	if (s->edit & EDIT_ADDCOL)
		sb_add(b, "%c%s", d, value % 3 ? "yes" : "no");
}

/* Append one JSON object of r (pretty: one member per line, indented). */
static void
put_object(sb *b, const tspec *s, const rec *r, unsigned value, unsigned score)
{
	const char *sep = s->fmt == T_JSON ? ",\n    " : ", ";

	sb_add(b, "%s\"id\": %llu%s\"name\": \"%s\"%s\"city\": \"%s\"%s\"value\": %u%s"
		   "\"score\": %u.%03u%s\"note\": \"%s\"",
		   s->fmt == T_JSON ? "  {\n    " : "{", (unsigned long long) r->id, sep, r->name, sep,
		   r->city, sep, value, sep, score / 1000, score % 1000, sep, r->note);
	if (s->edit & EDIT_ADDCOL)
		sb_add(b, "%s\"flag\": %s", sep, value % 3 ? "true" : "false");
	sb_add(b, "%s", s->fmt == T_JSON ? "\n  }" : "}");
}

/* The table's bytes as a tracked, NUL-terminated buffer; length in *len. */
static char *
gen_table(const tspec *s, size_t *len)
{
	const char *eol = s->eol != NULL ? s->eol : "\n";
	sb			b = {0};

	sb_add(&b, "%s", s->bom ? "\xEF\xBB\xBF" : "");
	if ((s->fmt == T_CSV || s->fmt == T_TSV) && !s->no_header)
	{
		if (s->header != NULL)
			sb_add(&b, "%s", s->header);
		else if (s->fmt == T_CSV)
			sb_add(&b, "id,name,city,value,score,note%s", s->edit & EDIT_ADDCOL ? ",flag" : "");
		else
			sb_add(&b, "id\tname\tcity\tvalue\tscore\tnote%s", s->edit & EDIT_ADDCOL ? "\tflag" : "");
		sb_add(&b, "%s", s->n > 0 || !s->no_final_eol ? eol : "");
	}
	if (s->fmt == T_JSON)
		sb_add(&b, "[%s", eol);
	for (size_t i = 0; i < s->n; i++)
	{
		rec			r;
		unsigned	value,
					score;
		bool		last = i + 1 == s->n;

		make_rec(s->ids[i], s->vocab, &r);
		value = s->edit & EDIT_RECOMP ? (r.value * 3 + 7) % 1000003 : r.value;
		score = (s->edit & EDIT_SCORE) && s->every && r.id % s->every == 7
			? (r.score + 777) % 100000 : r.score;
		if (s->fmt == T_CSV || s->fmt == T_TSV)
			put_delimited(&b, s, &r, value, score);
		else
			put_object(&b, s, &r, value, score);
		if (s->fmt == T_JSON)
			sb_add(&b, "%s", last ? eol : ",");
		if (s->fmt != T_JSON && !(last && s->no_final_eol))
			sb_add(&b, "%s", eol);
		else if (s->fmt == T_JSON && !last)
			sb_add(&b, "%s", eol);
	}
	if (s->fmt == T_JSON)
		sb_add(&b, "]%s", s->no_final_eol ? "" : eol);
	if (b.p == NULL)
		sb_add(&b, "%s", "");
	*len = b.n;
	return t_track(b.p);
}

/* Write the table to "<test dir>/<rel>" (parents made); returns the path. */
static char *
write_table(const char *rel, const tspec *s)
{
	size_t		len;
	char	   *text = gen_table(s, &len);
	char	   *path = t_path(rel);
	char	   *slash = strrchr(path, '/');

	*slash = '\0';
	if (!fh_mkdirs(path))
		t_fail(__FILE__, __LINE__, "mkdir %s", path);
	*slash = '/';
	if (!fh_write(path, text, len))
		t_fail(__FILE__, __LINE__, "cannot write %s", path);
	return path;
}

/* Ids first, first+1, ..., first+n-1 (tracked). */
static uint64_t *
ids_range(uint64_t first, size_t n)
{
	uint64_t   *ids = t_track(malloc((n ? n : 1) * sizeof(uint64_t)));

	for (size_t i = 0; i < n; i++)
		ids[i] = first + i;
	return ids;
}

/* ---- round trips ------------------------------------------------------------ */

/* Total bytes of the regular files under path (a file or a directory). */
static uint64_t
tree_bytes(const char *path)
{
	size_t		n;
	char	  **names;
	uint64_t	sum = 0;

	if (!rt_is_dir(path))
		return (uint64_t) fh_size(path);
	names = fh_list(path, &n);
	for (size_t i = 0; i < n; i++)
		sum += tree_bytes(t_fmt("%s/%s", path, names[i]));
	return sum;
}

/* Append the relative names of the files under dir to a sb, one per line. */
static void
list_files(const char *dir, const char *prefix, sb *names)
{
	size_t		n;
	char	  **list = fh_list(dir, &n);

	for (size_t i = 0; i < n; i++)
	{
		char	   *rel = prefix[0] ? t_fmt("%s/%s", prefix, list[i]) : list[i];
		char	   *full = t_fmt("%s/%s", dir, list[i]);

		if (rt_is_dir(full))
			list_files(full, rel, names);
		else
			sb_add(names, "%s\n", rel);
	}
}

/* qsort comparator: byte order of names. */
static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * SHA-256 of a file, or of a directory's manifest: the lines
 * "<sha256 hex>  <relative name>\n" (sha256sum's output), names in byte
 * order.  Computed here, independently of the core.
 */
static void
digest_of(const char *path, char hex[65])
{
	sb			names = {0},
				text = {0};
	char	  **v;
	size_t		n = 0;

	if (!rt_is_dir(path))
	{
		fh_sha256(path, hex);
		return;
	}
	list_files(path, "", &names);
	sb_add(&names, "%s", "");
	sb_add(&text, "%s", "");
	v = t_track(malloc((names.n + 1) * sizeof(char *)));
	for (char *p = names.p, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
	{
		*nl = '\0';
		v[n++] = p;
	}
	qsort(v, n, sizeof(char *), cmp_name);
	for (size_t i = 0; i < n; i++)
	{
		char		h[65];

		fh_sha256(t_fmt("%s/%s", path, v[i]), h);
		sb_add(&text, "%s  %s\n", h, v[i]);
	}
	fh_sha256_mem(text.p, text.n, hex);
	free(names.p);
	free(text.p);
}

/*
 * A compression run in a thread of its own (the real pairs run side by
 * side); the thread calls nothing of the harness, which is not thread-safe.
 */
typedef struct ds_job
{
	const char *base,
			   *derived,
			   *out;
	sp_ctx		ctx;
	sp_status	st;
	sp_compress_result res;
	pthread_t	thread;
} ds_job;

/* Thread body: compress the job's pair at level 3. */
static void *
ds_job_run(void *arg)
{
	ds_job	   *j = arg;

	j->st = sp_dataset_compress(&j->ctx, j->base, j->derived, j->out, 3, &j->res);
	return NULL;
}

/* What a dataset round trip produced. */
typedef struct ds_rt
{
	char	   *delta;			/* the delta (tracked path) */
	char	   *out;			/* the rebuilt file or directory */
	uint64_t	derived_bytes;
	uint64_t	delta_bytes;
	char	   *methods;		/* info methods: "m" for a file, "a=m,b=m" for a directory */
	sp_compress_result cres;
	sp_apply_result ares;
} ds_rt;

/* Round trip derived against base; see ds_roundtrip_at. */
#define DS_ROUNDTRIP(base, derived, methods, max_delta, r) \
	ds_roundtrip_at(__FILE__, __LINE__, (base), (derived), (methods), (max_delta), NULL, (r))

/* Compress derived against base at level 3 (or take job's run); check the result. */
static bool
ds_compress(const char *file, int line, const char *base, const char *derived,
			const ds_job *job, ds_rt *r)
{
	sp_ctx		ctx;
	sp_status	st;
	char		hex[65];

	rt_ctx(&ctx);
	if (job != NULL)
	{
		ctx = job->ctx;
		st = job->st;
		r->cres = job->res;
	}
	else
		st = sp_dataset_compress(&ctx, base, derived, r->delta, 3, &r->cres);
	if (st != SP_OK)
	{
		t_fail(file, line, "dataset compress %s -> %s: %s: %s", base, derived,
			   sp_status_name(st), ctx.err.msg);
		return false;
	}
	r->delta_bytes = (uint64_t) fh_size(r->delta);
	if (r->cres.delta_bytes != r->delta_bytes || r->cres.ft_bytes != r->derived_bytes ||
		strcmp(r->cres.delta_path, r->delta) != 0)
		t_fail(file, line, "compress result: delta %llu bytes (file %llu), derived %llu (%llu), path %s",
			   (unsigned long long) r->cres.delta_bytes, (unsigned long long) r->delta_bytes,
			   (unsigned long long) r->cres.ft_bytes, (unsigned long long) r->derived_bytes,
			   r->cres.delta_path);
	digest_of(derived, hex);
	if (strcmp(hex, r->cres.ft_sha256) != 0)
		t_fail(file, line, "compress ft_sha256 %s, derived has %s", r->cres.ft_sha256, hex);
	if (!rt_is_dir(base) && fh_sha256(base, hex) && strcmp(hex, r->cres.base_sha256) != 0)
		t_fail(file, line, "compress base_sha256 %s, base has %s", r->cres.base_sha256, hex);
	if (r->cres.rows_total < 0 || r->cres.rows_shared < 0 ||
		r->cres.rows_shared > r->cres.rows_total)
		t_fail(file, line, "rows_shared %lld of rows_total %lld", (long long) r->cres.rows_shared,
			   (long long) r->cres.rows_total);
	return true;
}

/* Apply into a new path; compare bytes and digests; then verify. */
static bool
ds_apply(const char *file, int line, const char *base, const char *derived, ds_rt *r)
{
	sp_ctx		ctx;
	sp_apply_result v;
	sp_status	st;
	char		hex[65];
	bool		dir = rt_is_dir(derived);

	rt_ctx(&ctx);
	st = sp_delta_apply(&ctx, base, r->delta, r->out, &r->ares);
	if (st != SP_OK)
	{
		t_fail(file, line, "apply %s: %s: %s", r->delta, sp_status_name(st), ctx.err.msg);
		return false;
	}
	if (dir ? !fh_same_tree(derived, r->out) : !fh_same(derived, r->out))
	{
		t_fail(file, line, "rebuilt %s differs from %s", r->out, derived);
		return false;
	}
	digest_of(derived, hex);
	if (strcmp(r->ares.sha256, hex) != 0 || strcmp(r->ares.sha256, r->cres.ft_sha256) != 0 ||
		!r->ares.verified || r->ares.bytes != r->derived_bytes)
		t_fail(file, line, "apply sha256 %s verified %d bytes %llu; derived %s, compress said %s",
			   r->ares.sha256, r->ares.verified, (unsigned long long) r->ares.bytes, hex,
			   r->cres.ft_sha256);
	rt_ctx(&ctx);
	memset(&v, 0, sizeof(v));
	st = sp_delta_verify(&ctx, base, r->delta, &v);
	if (st != SP_OK)
		t_fail(file, line, "verify: %s: %s", sp_status_name(st), ctx.err.msg);
	else if (!v.verified || strcmp(v.sha256, hex) != 0 || v.bytes != r->derived_bytes)
		t_fail(file, line, "verify: verified %d sha %s bytes %llu", v.verified, v.sha256,
			   (unsigned long long) v.bytes);
	return true;
}

/* List the delta: one row per derived file, right sizes and digests; methods. */
static void
ds_info(const char *file, int line, const char *derived, ds_rt *r)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	sp_status	st;
	bool		dir = rt_is_dir(derived);
	uint64_t	spent = 0;
	sb			m = {0};

	rt_ctx(&ctx);
	st = sp_delta_info(&ctx, r->delta, &info);
	if (st != SP_OK)
	{
		t_fail(file, line, "info: %s: %s", sp_status_name(st), ctx.err.msg);
		return;
	}
	sb_add(&m, "%s", "");
	for (size_t i = 0; i < info.n; i++)
	{
		const sp_info_row *row = &info.rows[i];
		char	   *path = dir ? t_fmt("%s/%s", derived, row->name) : (char *) derived;
		char		hex[65] = "";

		if (!dir && strcmp(row->name, strrchr(derived, '/') + 1) != 0)
			t_fail(file, line, "info row named \"%s\" for %s", row->name, derived);
		if (!fh_sha256(path, hex) || row->bytes != (uint64_t) fh_size(path) ||
			strcmp(hex, row->sha256) != 0)
			t_fail(file, line, "info row \"%s\": %llu bytes sha %s; file has %lld %s", row->name,
				   (unsigned long long) row->bytes, row->sha256, (long long) fh_size(path), hex);
		spent += row->delta_bytes;
		if (dir)
			sb_add(&m, "%s%s=%s", i ? "," : "", row->name, row->method ? row->method : "NULL");
		else
			sb_add(&m, "%s", row->method ? row->method : "NULL");
	}
	if (spent > r->delta_bytes)
		t_fail(file, line, "info rows spend %llu bytes of a %llu-byte delta",
			   (unsigned long long) spent, (unsigned long long) r->delta_bytes);
	r->methods = t_track(m.p);
	sp_info_free(&ctx, &info);
}

/* Does got equal one of the '|'-separated alternatives of want? */
static bool
methods_match(const char *got, const char *want)
{
	size_t		n = got != NULL ? strlen(got) : 0;

	for (const char *p = want; got != NULL; p = strchr(p, '|') + 1)
	{
		const char *end = strchr(p, '|') ? strchr(p, '|') : p + strlen(p);

		if ((size_t) (end - p) == n && strncmp(p, got, n) == 0)
			return true;
		if (*end == '\0')
			break;
	}
	return false;
}

/*
 * The whole cycle for derived against base: compress (unless job already
 * did), apply, compare, verify, info.  methods (if not NULL) must equal what
 * info reports (or one of its '|'-separated alternatives); the delta must
 * take at most max_delta bytes.  Failures name
 * the caller's line.
 */
static bool
ds_roundtrip_at(const char *file, int line, const char *base, const char *derived,
				const char *methods, uint64_t max_delta, const ds_job *job, ds_rt *r)
{
	int			fails = t_fail_count();
	const char *name = strrchr(derived, '/') ? strrchr(derived, '/') + 1 : derived;

	memset(r, 0, sizeof(*r));
	r->delta = job != NULL ? (char *) job->out : rt_unique("ds", ".delta");
	r->out = rt_unique("ds", rt_is_dir(derived) ? ".dir" : ".rebuilt");
	r->derived_bytes = tree_bytes(derived);
	if (!ds_compress(file, line, base, derived, job, r) ||
		!ds_apply(file, line, base, derived, r))
		return false;
	ds_info(file, line, derived, r);
	if (methods != NULL && !methods_match(r->methods, methods))
		t_fail(file, line, "info methods \"%s\", expected \"%s\"", r->methods ? r->methods : "",
			   methods);
	if (r->delta_bytes > max_delta)
		t_fail(file, line, "%s: delta %llu bytes, more than the %llu allowed (derived %llu bytes)",
			   name, (unsigned long long) r->delta_bytes, (unsigned long long) max_delta,
			   (unsigned long long) r->derived_bytes);
	printf("# %s: %llu -> %llu bytes (%.2f%%), %lld of %lld rows shared, %s\n", name,
		   (unsigned long long) r->derived_bytes, (unsigned long long) r->delta_bytes,
		   r->derived_bytes ? 100.0 * (double) r->delta_bytes / (double) r->derived_bytes : 0.0,
		   (long long) r->cres.rows_shared, (long long) r->cres.rows_total,
		   r->methods ? r->methods : "?");
	return t_fail_count() == fails;
}

/* pct percent of the bytes under path. */
static uint64_t
pct_of(const char *path, double pct)
{
	return (uint64_t) ((double) tree_bytes(path) * pct / 100.0);
}

/* Size of plain zstd at level of a file (no dictionary): what a byte coder reaches. */
static uint64_t
zstd_size(const char *path, int level)
{
	size_t		len;
	uint8_t    *in = fh_read(path, &len);
	size_t		cap = ZSTD_compressBound(len);
	void	   *out = t_track(malloc(cap));
	size_t		n = in && out ? ZSTD_compress(out, cap, in, len, level) : 0;

	return ZSTD_isError(n) ? UINT64_MAX : (uint64_t) n;
}

/* Size of zstd at level of file path with file prefix as its prefix (zstd --patch-from). */
static uint64_t
zstd_patch_size(const char *prefix, const char *path, int level)
{
	size_t		plen,
				len,
				n = 0;
	uint8_t    *pre = fh_read(prefix, &plen),
			   *in = fh_read(path, &len);
	size_t		cap = ZSTD_compressBound(len);
	void	   *out = t_track(malloc(cap));
	ZSTD_CCtx  *cc = ZSTD_createCCtx();

	if (pre && in && out && cc &&
		!ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level)) &&
		!ZSTD_isError(ZSTD_CCtx_refPrefix(cc, pre, plen)))
		n = ZSTD_compress2(cc, out, cap, in, len);
	ZSTD_freeCCtx(cc);
	return n == 0 || ZSTD_isError(n) ? UINT64_MAX : (uint64_t) n;
}

/* Does the file hold the n bytes of what (at its start, if at_start)? */
static bool
file_has(const char *path, const char *what, size_t n, bool at_start)
{
	size_t		len;
	uint8_t    *b = fh_read(path, &len);

	if (b == NULL || len < n)
		return false;
	return at_start ? memcmp(b, what, n) == 0 : memmem(b, len, what, n) != NULL;
}

#define NROWS 20000				/* rows of the main synthetic table */
#define NROWS_LIT 2000			/* rows of tables where every row is a literal */

/* A parent table: records 0..n-1 in order, in format fmt. */
static tspec
table_spec(tfmt fmt, size_t n)
{
	return (tspec) {.fmt = fmt, .ids = ids_range(0, n), .n = n};
}

/* The main parent table: NROWS records. */
static tspec
parent_spec(tfmt fmt)
{
	return table_spec(fmt, NROWS);
}

/* ---- synthetic cases ------------------------------------------------------------ */

/* 1% of the rows edited: the row coder stores only the changed cells. */
static void
test_dataset_csv_edit(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *base,
			   *der;
	uint64_t	z;
	ds_rt		r;

	d.edit = EDIT_SCORE;
	d.every = 100;
	base = write_table("p/train.csv", &p);
	der = write_table("d/train.csv", &d);
	T_REQUIRE(!fh_same(base, der), "the edit changed nothing");
	if (!DS_ROUNDTRIP(base, der, "rows-csv", pct_of(der, 5), &r))
		return;
	T_CHECK(r.cres.rows_total == NROWS + 1, "rows_total %lld", (long long) r.cres.rows_total);
	T_CHECK(r.cres.rows_shared == NROWS + 1 - NROWS / 100, "rows_shared %lld",
			(long long) r.cres.rows_shared);
	/* the delta beats plain zstd of the derived file by far */
	z = zstd_size(der, 3);
	T_CHECK(r.delta_bytes * 10 < z, "delta %llu, zstd -3 %llu", (unsigned long long) r.delta_bytes,
			(unsigned long long) z);
}

/* A filter: rows kept in order. */
static void
test_dataset_subset(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	uint64_t   *keep = t_track(malloc(NROWS * sizeof(uint64_t)));
	size_t		n = 0;
	uint64_t	s = 42;
	ds_rt		r;

	for (uint64_t i = 0; i < NROWS; i++)
		if (fh_rand(&s) % 3 != 0)
			keep[n++] = i;
	d.ids = keep;
	d.n = n;
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), write_table("d/data.csv", &d),
					 "rows-csv", pct_of(t_path("d/data.csv"), 2), &r))
		T_CHECK(r.cres.rows_shared == r.cres.rows_total && r.cres.rows_total == (int64_t) n + 1,
				"%lld of %lld rows shared, %zu rows", (long long) r.cres.rows_shared,
				(long long) r.cres.rows_total, n + 1);
}

/* Duplicates removed: the parent repeats one row in five. */
static void
test_dataset_dedup(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	uint64_t   *dup = t_track(malloc(2 * NROWS * sizeof(uint64_t)));
	size_t		n = 0;
	ds_rt		r;

	for (uint64_t i = 0; i < NROWS; i++)
	{
		dup[n++] = i;
		if (i % 5 == 4)
			dup[n++] = i - 3;	/* an earlier row again */
	}
	p.ids = dup;
	p.n = n;
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), write_table("d/data.csv", &d),
					 "rows-csv", pct_of(t_path("d/data.csv"), 2), &r))
		T_CHECK(r.cres.rows_shared == r.cres.rows_total, "%lld of %lld rows shared",
				(long long) r.cres.rows_shared, (long long) r.cres.rows_total);
}

/* Rows permuted (header first): every row is a parent row, in another place. */
static void
test_dataset_shuffle(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	uint64_t   *perm = ids_range(0, NROWS);
	uint64_t	s = 7;
	ds_rt		r;

	for (size_t i = NROWS - 1; i > 0; i--)
	{
		size_t		j = (size_t) (fh_rand(&s) % (i + 1));
		uint64_t	t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	d.ids = perm;
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), write_table("d/data.csv", &d),
					 "rows-csv", pct_of(t_path("d/data.csv"), 6), &r))
		T_CHECK(r.cres.rows_shared == r.cres.rows_total, "%lld of %lld rows shared",
				(long long) r.cres.rows_shared, (long long) r.cres.rows_total);
}

/* 5% new rows appended: only they are stored. */
static void
test_dataset_append(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *der;
	ds_rt		r;

	d.ids = ids_range(0, NROWS + NROWS / 20);
	d.n = NROWS + NROWS / 20;
	der = write_table("d/data.csv", &d);
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 3), &r))
		T_CHECK(r.cres.rows_shared == NROWS + 1, "rows_shared %lld", (long long) r.cres.rows_shared);
}

/* A column added to every row: each row coded against its parent row. */
static void
test_dataset_column_added(void)
{
	tspec		p = table_spec(T_CSV, NROWS_LIT),
				d = p;
	char	   *der;
	ds_rt		r;

	d.edit = EDIT_ADDCOL;
	der = write_table("d/data.csv", &d);
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 6), &r))
		T_CHECK(r.cres.rows_shared == 0, "rows_shared %lld", (long long) r.cres.rows_shared);
}

/* One numeric column recomputed in every row: column mode. */
static void
test_dataset_column_recomputed(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *der;
	ds_rt		r;

	d.edit = EDIT_RECOMP;
	der = write_table("d/data.csv", &d);
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 8), &r))
		T_CHECK(r.cres.rows_shared == 1, "rows_shared %lld (only the header)",
				(long long) r.cres.rows_shared);
}

/* Only the header row changed. */
static void
test_dataset_header_renamed(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	ds_rt		r;

	d.header = "id,full_name,town,value,score,comment";
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), write_table("d/data.csv", &d),
					 "rows-csv", 1024, &r))
		T_CHECK(r.cres.rows_shared == NROWS, "rows_shared %lld", (long long) r.cres.rows_shared);
}

/* Write shards of ids [0, n) as dir/part-K.csv, each with the header. */
static void
write_shards(const char *dir, size_t n, int shards, int edit)
{
	for (int k = 0; k < shards; k++)
	{
		size_t		lo = n * (size_t) k / (size_t) shards,
					hi = n * (size_t) (k + 1) / (size_t) shards;
		tspec		s = {.fmt = T_CSV, .ids = ids_range(lo, hi - lo), .n = hi - lo,
		.edit = edit, .every = 100};

		write_table(t_fmt("%s/part-%04d.csv", dir, k), &s);
	}
}

/*
 * A dataset repository as a hub holds it: .gitattributes and a README.md
 * beside the CSV shards (re-sharded from two to three, scores edited).  The
 * shards are coded by rows, the small text files as bytes: the row format
 * is the one with the most bytes, not the first file's.
 */
static void
test_dataset_repo_layout(void)
{
	static const char attrs[] = "*.csv filter=lfs diff=lfs merge=lfs -text\n";
	static const char readme[] = "---\nlicense: mit\n---\n# Scores\n\nOne row per id.\n";
	ds_rt		r;

	write_shards("rp/data", NROWS, 2, EDIT_NONE);
	write_shards("rd/data", NROWS, 3, EDIT_SCORE);
	T_REQUIRE(fh_write(t_path("rp/.gitattributes"), attrs, sizeof(attrs) - 1) &&
			  fh_write(t_path("rd/.gitattributes"), attrs, sizeof(attrs) - 1) &&
			  fh_write(t_path("rp/README.md"), readme, sizeof(readme) - 1) &&
			  fh_write(t_path("rd/README.md"), readme, sizeof(readme) - 2), "write");
	DS_ROUNDTRIP(t_path("rp"), t_path("rd"), ".gitattributes=zstd-ref,README.md=zstd-ref,"
				 "data/part-0000.csv=rows-csv,data/part-0001.csv=rows-csv,"
				 "data/part-0002.csv=rows-csv", pct_of(t_path("rd"), 2), &r);
}

/* One file re-sharded into four: a directory against a single file. */
static void
test_dataset_reshard_file_to_dir(void)
{
	tspec		p = parent_spec(T_CSV);
	char	   *base = write_table("p/train.csv", &p);
	char	   *der = t_path("d");
	char		hex[65];
	ds_rt		r;

	write_shards("d", NROWS, 4, EDIT_NONE);
	if (!DS_ROUNDTRIP(base, der, "part-0000.csv=rows-csv,part-0001.csv=rows-csv,"
					  "part-0002.csv=rows-csv,part-0003.csv=rows-csv", pct_of(der, 2), &r))
		return;
	/* the rebuilt directory's manifest digest is the derived one */
	digest_of(r.out, hex);
	T_CHECK(strcmp(hex, r.ares.sha256) == 0, "rebuilt manifest %s, apply said %s", hex,
			r.ares.sha256);
	/* four headers: the parent's header row is copied four times */
	T_CHECK(r.cres.rows_shared == r.cres.rows_total && r.cres.rows_total == NROWS + 4,
			"%lld of %lld rows shared", (long long) r.cres.rows_shared,
			(long long) r.cres.rows_total);
}

/* Two shards re-sharded into three, with 1% of the rows edited. */
static void
test_dataset_reshard_dir_to_dir(void)
{
	char	   *base = t_path("p"),
			   *der = t_path("d");
	char		hex[65];
	ds_rt		r;

	write_shards("p", NROWS, 2, EDIT_NONE);
	write_shards("d", NROWS, 3, EDIT_SCORE);
	if (!DS_ROUNDTRIP(base, der, "part-0000.csv=rows-csv,part-0001.csv=rows-csv,"
					  "part-0002.csv=rows-csv", pct_of(der, 5), &r))
		return;
	/* both parent shards are read: base_sha256 is the parent's manifest digest */
	digest_of(base, hex);
	T_CHECK(strcmp(hex, r.cres.base_sha256) == 0, "base_sha256 %s, parent manifest %s",
			r.cres.base_sha256, hex);
	T_CHECK(r.cres.rows_shared == NROWS + 3 - NROWS / 100, "rows_shared %lld",
			(long long) r.cres.rows_shared);
	/* and applying against a copy of the parent elsewhere works the same */
	{
		sp_ctx		ctx;
		sp_apply_result ar;

		write_shards("p2", NROWS, 2, EDIT_NONE);
		rt_ctx(&ctx);
		T_OK(&ctx, sp_delta_apply(&ctx, t_path("p2"), r.delta, t_path("again"), &ar));
		T_CHECK(strcmp(ar.sha256, r.cres.ft_sha256) == 0, "sha %s", ar.sha256);
		fh_same_tree(der, t_path("again"));
	}
}

/* CRLF line ends on both sides, 1% edited. */
static void
test_dataset_crlf(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *der;
	ds_rt		r;

	p.eol = d.eol = "\r\n";
	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d/data.csv", &d);
	T_REQUIRE(file_has(der, "\r\n", 2, false), "no CRLF written");
	DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 5), &r);
	/* CRLF rows against an LF parent: every row differs in its last field */
	p = table_spec(T_CSV, NROWS_LIT);
	d = p;
	d.eol = "\r\n";
	der = write_table("d2/data.csv", &d);
	DS_ROUNDTRIP(write_table("p2/data.csv", &p), der, "rows-csv", pct_of(der, 12), &r);
}

/* No final newline: on both sides, and only on the derived side. */
static void
test_dataset_no_final_newline(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *der;
	size_t		len;
	uint8_t    *bytes;
	ds_rt		r;

	p.no_final_eol = d.no_final_eol = true;
	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d/data.csv", &d);
	bytes = fh_read(der, &len);
	T_REQUIRE(bytes != NULL && len > 0 && bytes[len - 1] != '\n', "file ends with a newline");
	DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 5), &r);
	p.no_final_eol = false;
	DS_ROUNDTRIP(write_table("p2/data.csv", &p), der, "rows-csv", pct_of(der, 5), &r);
	/* a single row without a newline, against the full parent */
	T_REQUIRE(fh_write(t_path("one.csv"), "id,name,city", 12), "write");
	DS_ROUNDTRIP(write_table("p3/data.csv", &p), t_path("one.csv"), "zstd", 500, &r);
}

/* An empty derived file against a full parent. */
static void
test_dataset_empty_derived(void)
{
	tspec		p = parent_spec(T_CSV);
	char	   *der = t_path("empty.csv");
	ds_rt		r;

	T_REQUIRE(fh_write(der, "", 0), "write");
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "zstd", 400, &r))
		T_CHECK(r.cres.rows_total == 0 && r.ares.bytes == 0, "rows %lld bytes %llu",
				(long long) r.cres.rows_total, (unsigned long long) r.ares.bytes);
}

/* An empty parent: every row is new, so the delta is about zstd's size. */
static void
test_dataset_empty_parent(void)
{
	tspec		d = table_spec(T_CSV, 2000);
	char	   *base = t_path("empty.csv"),
			   *der = write_table("d/data.csv", &d);
	uint64_t	z = zstd_size(der, 19);
	ds_rt		r;

	T_REQUIRE(fh_write(base, "", 0), "write");
	if (DS_ROUNDTRIP(base, der, "zstd", z + z / 50 + 300, &r))
		T_CHECK(r.cres.rows_shared == 0, "rows_shared %lld", (long long) r.cres.rows_shared);
	/* both empty */
	DS_ROUNDTRIP(base, base, "zstd", 400, &r);
}

/* A UTF-8 byte order mark on both sides, then only on the derived side. */
static void
test_dataset_bom(void)
{
	tspec		p = parent_spec(T_CSV),
				d = p;
	char	   *der;
	ds_rt		r;

	p.bom = d.bom = true;
	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d/data.csv", &d);
	T_REQUIRE(file_has(der, "\xEF\xBB\xBF", 3, true), "no BOM written");
	DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv", pct_of(der, 5), &r);
	p.bom = false;
	DS_ROUNDTRIP(write_table("p2/data.csv", &p), der, "rows-csv", pct_of(der, 5), &r);
}

/* JSONL with 2% of the values edited. */
static void
test_dataset_jsonl_edit(void)
{
	tspec		p = table_spec(T_JSONL, 10000),
				d = p;
	char	   *der;
	ds_rt		r;

	d.edit = EDIT_SCORE;
	d.every = 50;
	der = write_table("d/data.jsonl", &d);
	if (DS_ROUNDTRIP(write_table("p/data.jsonl", &p), der, "rows-jsonl", pct_of(der, 5), &r))
		T_CHECK(r.cres.rows_shared == 10000 - 10000 / 50, "rows_shared %lld",
				(long long) r.cres.rows_shared);
	/* a field added to every object */
	p = table_spec(T_JSONL, NROWS_LIT);
	d = p;
	d.edit = EDIT_ADDCOL;
	der = write_table("d2/data.jsonl", &d);
	DS_ROUNDTRIP(write_table("p2/data.jsonl", &p), der, "rows-jsonl", pct_of(der, 6), &r);
}

/* A pretty-printed JSON array, and a subset of its elements. */
static void
test_dataset_json_array_subset(void)
{
	tspec		p = table_spec(T_JSON, 10000),
				d = p;
	uint64_t   *keep = t_track(malloc(10000 * sizeof(uint64_t)));
	size_t		n = 0;
	char	   *der;
	ds_rt		r;

	for (uint64_t i = 0; i < 10000; i++)
		if (i % 4 != 1)
			keep[n++] = i;
	d.ids = keep;
	d.n = n;
	der = write_table("d/data.json", &d);
	if (DS_ROUNDTRIP(write_table("p/data.json", &p), der, "rows-json-array", pct_of(der, 2), &r))
		T_CHECK(r.cres.rows_shared >= r.cres.rows_total - 2, "%lld of %lld rows shared",
				(long long) r.cres.rows_shared, (long long) r.cres.rows_total);
	/* values edited in 1% of the elements */
	d = p;
	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d2/data.json", &d);
	DS_ROUNDTRIP(t_path("p/data.json"), der, "rows-json-array", pct_of(der, 5), &r);
}

/* TSV with 1% of the rows edited. */
static void
test_dataset_tsv(void)
{
	tspec		p = parent_spec(T_TSV),
				d = p;
	char	   *der;
	ds_rt		r;

	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d/data.tsv", &d);
	DS_ROUNDTRIP(write_table("p/data.tsv", &p), der, "rows-tsv", pct_of(der, 5), &r);
}

/* Plain text lines (no known extension) with an edit. */
static void
test_dataset_lines(void)
{
	tspec		p = parent_spec(T_TSV),
				d = p;
	char	   *der;
	ds_rt		r;

	p.no_header = d.no_header = true;
	d.edit = EDIT_SCORE;
	d.every = 100;
	der = write_table("d/notes.txt", &d);
	DS_ROUNDTRIP(write_table("p/notes.txt", &p), der, "rows-lines", pct_of(der, 5), &r);
}

/* ---- inputs the scanners cannot cut ----------------------------------------------- */

/* Write the parent table and a derived copy with bytes inserted at row `at`. */
static char *
derived_with(const char *rel, const tspec *s, size_t at, const char *insert, size_t ilen)
{
	size_t		len;
	char	   *text = gen_table(s, &len);
	char	   *pos = text;
	sb			b = {0};
	char	   *path = t_path(rel);

	for (size_t i = 0; i < at && pos != NULL; i++)
		pos = strchr(pos, '\n') ? strchr(pos, '\n') + 1 : NULL;
	if (pos == NULL)
		pos = text + len;
	sb_add(&b, "%.*s", (int) (pos - text), text);
	for (size_t i = 0; i < ilen; i++)
		sb_add(&b, "%c", insert[i]);
	sb_add(&b, "%.*s", (int) (len - (size_t) (pos - text)), pos);
	if (!fh_write(path, b.p, b.n))
		t_fail(__FILE__, __LINE__, "cannot write %s", path);
	free(b.p);
	return path;
}

/* A CSV with an unbalanced quote does not cut: bytes against the parent file. */
static void
test_dataset_fallback_unbalanced_quote(void)
{
	tspec		p = table_spec(T_CSV, NROWS_LIT);
	char	   *base = write_table("p/data.csv", &p);
	char	   *der;
	const char	row[] = "9999,\"open quote,Oslo,1,2.000,x\n";
	ds_rt		r;

	T_REQUIRE(fh_mkdirs(t_path("d")), "mkdir");
	der = derived_with("d/data.csv", &p, NROWS_LIT / 2, row, sizeof(row) - 1);
	if (DS_ROUNDTRIP(base, der, "zstd-ref", pct_of(der, 2), &r))
		T_CHECK(r.cres.rows_total == 0, "rows_total %lld", (long long) r.cres.rows_total);
}

/*
 * The format with the most bytes does not cut: a directory whose larger CSV
 * has an unbalanced quote and whose smaller JSON Lines file is fine.  The
 * next format is tried, so the JSON Lines file is still coded by rows.
 */
static void
test_dataset_fallback_next_format(void)
{
	tspec		c = table_spec(T_CSV, NROWS_LIT),
				j = table_spec(T_JSONL, NROWS_LIT / 4),
				jd = j;
	const char	row[] = "9999,\"open quote,Oslo,1,2.000,x\n";
	ds_rt		r;

	T_REQUIRE(fh_mkdirs(t_path("d")), "mkdir");
	write_table("p/a.csv", &c);
	write_table("p/b.jsonl", &j);
	derived_with("d/a.csv", &c, NROWS_LIT / 2, row, sizeof(row) - 1);
	jd.edit = EDIT_SCORE;
	jd.every = 10;
	write_table("d/b.jsonl", &jd);
	if (DS_ROUNDTRIP(t_path("p"), t_path("d"), "a.csv=zstd-ref,b.jsonl=rows-jsonl",
					 pct_of(t_path("d"), 3), &r))
		T_CHECK(r.cres.rows_total == NROWS_LIT / 4, "rows_total %lld", (long long) r.cres.rows_total);
}

/* A JSON array that never closes. */
static void
test_dataset_fallback_json_unclosed(void)
{
	tspec		p = table_spec(T_JSON, NROWS_LIT);
	size_t		len;
	char	   *base = write_table("p/data.json", &p);
	char	   *text = gen_table(&p, &len);
	char	   *der = t_path("data.json");
	ds_rt		r;

	/* cut before the closing bracket */
	T_REQUIRE(fh_write(der, text, len - 3), "write");
	DS_ROUNDTRIP(base, der, "zstd-ref", pct_of(der, 2), &r);
}

/* Invalid UTF-8 inside CSV fields: the scanner only needs the delimiters. */
static void
test_dataset_invalid_utf8(void)
{
	tspec		p = parent_spec(T_CSV);
	char	   *base = write_table("p/data.csv", &p);
	char	   *der;
	const char	row[] = "1,\xff\xfe bad,\xc3,\x80\x80,1.000,\xed\xa0\x80\n";
	ds_rt		r;

	T_REQUIRE(fh_mkdirs(t_path("d")), "mkdir");
	der = derived_with("d/data.csv", &p, 700, row, sizeof(row) - 1);
	DS_ROUNDTRIP(base, der, "rows-csv", pct_of(der, 2), &r);
}

/* Rows with different field counts. */
static void
test_dataset_ragged(void)
{
	tspec		p = parent_spec(T_CSV);
	char	   *base = write_table("p/data.csv", &p);
	const char	rows[] = "1,2\n\n1,2,3,4,5,6,7,8,9,10,11,12\n,,,,,,,\nonly\n";
	char	   *der;
	ds_rt		r;

	T_REQUIRE(fh_mkdirs(t_path("d")), "mkdir");
	der = derived_with("d/data.csv", &p, 300, rows, sizeof(rows) - 1);
	DS_ROUNDTRIP(base, der, "rows-csv", pct_of(der, 2), &r);
}

/*
 * Rows longer than a scan read (256 KiB) and than a page, between short
 * ones, at every alignment: the row scan keeps each unfinished row and
 * reads on at page-aligned places, and every row must still be found.
 */
static void
test_dataset_long_rows(void)
{
	static const size_t lens[] = {1, 5000, 300000, 4095, 3000000, 4097, 7, 262144, 262143, 20};
	size_t		total = 0,
				at = 0;
	uint8_t    *a,
			   *b;
	uint64_t	s = 7;
	ds_rt		r;

	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		total += lens[k] + 1;
	a = t_track(malloc(total));
	b = t_track(malloc(total + 4));
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
	{
		for (size_t i = 0; i < lens[k]; i++)
			a[at + i] = (uint8_t) ('a' + fh_rand(&s) % 26);
		a[at + lens[k]] = '\n';
		at += lens[k] + 1;
	}
	/* derived: a new short row first, then the parent's rows unchanged */
	memcpy(b, "new\n", 4);
	memcpy(b + 4, a, total);
	T_REQUIRE(fh_write(t_path("p.txt"), a, total) && fh_write(t_path("d.txt"), b, total + 4),
			  "write");
	if (DS_ROUNDTRIP(t_path("p.txt"), t_path("d.txt"), "rows-lines", 2000, &r))
		T_CHECK(r.cres.rows_shared == (int64_t) (sizeof(lens) / sizeof(lens[0])),
				"rows_shared %lld", (long long) r.cres.rows_shared);
}

/*
 * A question-and-answer table whose answers get a sub-question before each
 * line (as gsm8k's "socratic" version): rewritten text that keeps the old
 * text.  Writes the parent and the derived JSONL file; rows of each.
 */
static void
write_qa_pair(const char *pdir, const char *ddir, size_t rows)
{
	char	   *prel = t_fmt("%s/qa.jsonl", pdir),
			   *drel = t_fmt("%s/qa.jsonl", ddir);
	size_t		cap = rows * 600 + 1,
				pn = 0,
				dn = 0;
	char	   *p = t_track(malloc(cap)),
			   *d = t_track(malloc(cap));
	uint64_t	s = 11;

	for (size_t i = 0; i < rows; i++)
	{
		char		q[200],
					line[3][100];
		size_t		qn = 0;

		for (int w = 0, nw = 6 + (int) (fh_rand(&s) % 8); w < nw; w++)
			qn += (size_t) snprintf(q + qn, sizeof(q) - qn, "%s%s", w ? " " : "",
									words[0][fh_rand(&s) % 32]);
		for (int k = 0; k < 3; k++)
			snprintf(line[k], sizeof(line[k]), "%s %s %zu = <<%zu*%d=%zu>>%zu",
					 words[0][fh_rand(&s) % 32], words[0][fh_rand(&s) % 32], i, i, k + 2,
					 i * (size_t) (k + 2), i * (size_t) (k + 2));
		pn += (size_t) snprintf(p + pn, cap - pn,
								"{\"question\": \"%s?\", \"answer\": \"%s\\n%s\\n%s\\n#### %zu\"}\n",
								q, line[0], line[1], line[2], i);
		dn += (size_t) snprintf(d + dn, cap - dn, "{\"question\": \"%s?\", \"answer\": \"", q);
		for (int k = 0; k < 3; k++)
			dn += (size_t) snprintf(d + dn, cap - dn, "How many %s %s? ** %s\\n",
									words[0][fh_rand(&s) % 32], words[0][fh_rand(&s) % 32],
									line[k]);
		dn += (size_t) snprintf(d + dn, cap - dn, "#### %zu\"}\n", i);
	}
	T_REQUIRE(fh_mkdirs(t_path(pdir)) && fh_mkdirs(t_path(ddir)) && fh_write(t_path(prel), p, pn) &&
			  fh_write(t_path(drel), d, dn), "write");
}

/* The first ROWS chunk of r's delta has this layout; print its size next to zstd's z. */
static void
check_layout(const ds_rt *r, int layout, const char *what, uint64_t z)
{
	uint8_t    *d;
	size_t		len,
				plen = 0,
				roff;

	T_REQUIRE((d = fh_read(r->delta, &len)) != NULL, "read the delta");
	roff = rt_find_chunk(d, len, 4, -1, &plen);
	T_REQUIRE(roff > 0, "no ROWS chunk in the delta");
	T_CHECK(d[roff + 8 + 2] == layout, "layout %d, expected %d", d[roff + 8 + 2], layout);
	printf("# %s: delta %llu bytes, zstd -19 --patch-from %llu\n", what,
		   (unsigned long long) r->delta_bytes, (unsigned long long) z);
}

/*
 * Rewritten text that keeps the old text: the interleaved layout (each
 * reference row repeated before the rest of its edited row) is chosen, and
 * the delta is smaller than zstd -19 with the parent as prefix.
 */
static void
test_dataset_interleaved(void)
{
	uint64_t	z;
	ds_rt		r;

	write_qa_pair("qp", "qd", 3000);
	z = zstd_patch_size(t_path("qp/qa.jsonl"), t_path("qd/qa.jsonl"), 19);
	if (DS_ROUNDTRIP(t_path("qp/qa.jsonl"), t_path("qd/qa.jsonl"), "rows-jsonl", z, &r))
		check_layout(&r, SP_LAYOUT_INTERLEAVED, "interleaved", z);
}

/* A row space over text (one file, name) and a layout, for walking chunks by hand. */
static bool
walk_setup(sp_ctx *ctx, const char *name, const char *text, sp_rowfmt fmt, sp_fileset *fs,
		   sp_rowspace *rs, sp_rowslay *lay)
{
	size_t		idx = 0;

	rt_ctx(ctx);
	memset(rs, 0, sizeof(*rs));
	return sp_fileset_mem(ctx, name, text, strlen(text), fs) == SP_OK &&
		sp_rowspace_build(ctx, rs, fs, fmt, &idx, 1, false, NULL, 0) == SP_OK &&
		sp_rowslay_init(ctx, lay) == SP_OK;
}

/* Free what walk_setup made. */
static void
walk_teardown(sp_ctx *ctx, sp_fileset *fs, sp_rowspace *rs, sp_rowslay *lay)
{
	sp_rowslay_free(ctx, lay);
	sp_rowspace_free(ctx, rs);
	sp_fileset_close(ctx, fs);
}

/* One interleaved literal against parent row 0 (ctl: group, selector, first field...). */
static sp_status
walk_one(sp_ctx *ctx, sp_rowspace *rs, sp_rowslay *lay, const uint8_t *ctl, size_t n,
		 uint64_t data_n)
{
	sp_rows_chunk c = {ctl, n, 1, -1, SP_LAYOUT_INTERLEAVED, data_n};

	return sp_rows_walk(ctx, rs, lay, SP_WALK_SIZES, &c, NULL, 0);
}

/*
 * The interleaved layout walked by hand: a literal rebuilt from the
 * reference row's first fields and the data after the repeated reference
 * row; a missing or out-of-range first changed field is corrupt.
 */
static void
test_dataset_interleaved_walk(void)
{
	static const char parent[] = "{\"q\": \"alpha\", \"a\": \"one\"}\n";
	static const char suffix[] = "\"ONE!\"}\n";
	static const char want[] = "{\"q\": \"alpha\", \"a\": \"ONE!\"}\n";
	/* no copied rows, one literal: next row, by fields, rest from field 3 */
	const uint8_t ok[] = {0, 1, SP_REF_NEXT | SP_LIT_COLS, 3},
				past[] = {0, 1, SP_REF_NEXT | SP_LIT_COLS, 5},
				cut[] = {0, 1, SP_REF_NEXT | SP_LIT_COLS};
	size_t		pn = sizeof(parent) - 1,
				sn = sizeof(suffix) - 1;
	uint8_t		out[sizeof(want)];
	sp_ctx		ctx;
	sp_fileset	fs;
	sp_rowspace rs = {0};
	sp_rowslay	lay;
	sp_rows_chunk c = {ok, sizeof(ok), 1, -1, SP_LAYOUT_INTERLEAVED, pn + sn};

	T_REQUIRE(walk_setup(&ctx, "p.jsonl", parent, SP_ROWS_JSONL, &fs, &rs, &lay), "setup: %s",
			  ctx.err.msg);
	/* decode: sizes, prefix, then the data (reference row, rest of the row) */
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_SIZES, &c, NULL, 0) == SP_OK &&
			lay.dtotal == pn + sn && lay.ptotal == pn, "sizes: %s", ctx.err.msg);
	T_REQUIRE(sp_reserve(&ctx, &lay.prefix.p, &lay.prefix.cap, pn + 1) == SP_OK &&
			  sp_reserve(&ctx, &lay.data.p, &lay.data.cap, pn + sn + 1) == SP_OK, "reserve");
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_PREFIX, &c, NULL, 0) == SP_OK &&
			memcmp(lay.prefix.p, parent, pn) == 0, "prefix: %s", ctx.err.msg);
	memcpy(lay.data.p, parent, pn);
	memcpy(lay.data.p + pn, suffix, sn);
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_EMIT, &c, out, sizeof(want) - 1) == SP_OK &&
			memcmp(out, want, sizeof(want) - 1) == 0, "emit: %s", ctx.err.msg);
	/* bad control streams */
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_one(&ctx, &rs, &lay, past, sizeof(past), pn + sn), SP_ERR_CORRUPT,
		  "row chunk is malformed: first changed field is past the reference row");
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_one(&ctx, &rs, &lay, cut, sizeof(cut), pn + sn), SP_ERR_CORRUPT,
		  "row chunk is malformed: truncated first changed field");
	/* a data length short of the repeated reference row */
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_one(&ctx, &rs, &lay, ok, sizeof(ok), pn - 1), SP_ERR_CORRUPT,
		  "row chunk is malformed: column sizes disagree with the data length");
	walk_teardown(&ctx, &fs, &rs, &lay);
}

/*
 * A daily series of running totals per region (as covid_countries_1month):
 * the derived file has days more days in each region's block, and one
 * earlier row in 40 revised.  Writes both CSV files.
 */
static void
write_series_pair(const char *prel, const char *drel, int regions, int days, int more)
{
	size_t		cap = (size_t) regions * (size_t) (days + more) * 48 + 64,
				pn = 0,
				dn = 0;
	char	   *p = t_track(malloc(cap)),
			   *d = t_track(malloc(cap));
	uint64_t	s = 5;

	pn = (size_t) snprintf(p, cap, "Date,Region,Confirmed,Deaths\n");
	dn = (size_t) snprintf(d, cap, "Date,Region,Confirmed,Deaths\n");
	for (int r = 0; r < regions; r++)
	{
		uint64_t	total = fh_rand(&s) % 100000,
					dead = total / 50;

		for (int day = 0; day < days + more; day++)
		{
			/* 28-day months from 2021-01-01, so a month turns over now and then */
			char		row[96];
			int			n;

			total += fh_rand(&s) % (200 + (uint64_t) r * 40);
			dead += fh_rand(&s) % 7 == 0;
			n = snprintf(row, sizeof(row), "2021-%02d-%02d,region %d,%llu,%llu\n",
						 1 + day / 28, 1 + day % 28, r, (unsigned long long) total,
						 (unsigned long long) dead);
			if (day < days)
				pn += (size_t) snprintf(p + pn, cap - pn, "%s", row);
			if (day < days && fh_rand(&s) % 40 == 0)
				n = snprintf(row, sizeof(row), "2021-%02d-%02d,region %d,%llu,%llu\n",
							 1 + day / 28, 1 + day % 28, r,
							 (unsigned long long) (total + fh_rand(&s) % 30),
							 (unsigned long long) dead);
			dn += (size_t) snprintf(d + dn, cap - dn, "%.*s", n, row);
		}
	}
	T_REQUIRE(fh_write(t_path(prel), p, pn) && fh_write(t_path(drel), d, dn), "write");
}

/*
 * Running totals with days appended: the numeric layout (each new day coded
 * as its increments over the row above, each revision over the old row) is
 * chosen, and the delta is under four fifths of zstd -19 with the parent
 * as prefix (with the numeric layout turned off it took 0.86 of it).
 */
static void
test_dataset_numeric(void)
{
	uint64_t	z;
	ds_rt		r;

	write_series_pair("series_p.csv", "series_d.csv", 60, 300, 30);
	z = zstd_patch_size(t_path("series_p.csv"), t_path("series_d.csv"), 19);
	if (DS_ROUNDTRIP(t_path("series_p.csv"), t_path("series_d.csv"), "rows-csv", z * 4 / 5, &r))
		check_layout(&r, SP_LAYOUT_NUMERIC, "numeric", z);
}

/* sp_num_code on cell and ref gives want, and decodes back to cell. */
static void
num_case(const char *cell, const char *ref, const char *want)
{
	size_t		n = strlen(cell);
	uint8_t		t[64];

	memcpy(t, cell, n);
	sp_num_code(t, n, (const uint8_t *) ref, strlen(ref), false);
	T_CHECK(memcmp(t, want, n) == 0, "\"%s\" against \"%s\": \"%.*s\", expected \"%s\"", cell,
			ref, (int) n, (char *) t, want);
	sp_num_code(t, n, (const uint8_t *) ref, strlen(ref), true);
	T_CHECK(memcmp(t, cell, n) == 0, "\"%s\" against \"%s\" decodes to \"%.*s\"", cell, ref,
			(int) n, (char *) t);
}

/*
 * Numbers as differences: exact codes (a rise, a fall, a month turning
 * over, a run wider or narrower than its reference, runs the reference
 * lacks, a run too long to code), then 20,000 random cells of digits and
 * punctuation against random references decode to themselves.
 */
static void
test_dataset_num_code(void)
{
	uint64_t	s = 9;
	int			bad = 0;

	num_case("154000", "153962", "000038");
	num_case("153900", "153962", "999938");
	num_case("2021-10-01,", "2021-09-30,", "0000-01-71,");
	num_case("9", "10", "9");
	num_case("1000", "999", "0001");
	num_case("0042", "0040", "0002");
	num_case("7,8.5", "3", "4,8.5");
	num_case("x12y", "", "x12y");
	num_case("1234567890123456789", "1", "1234567890123456789");
	num_case("123456789012345678", "1", "123456789012345677");
	for (int i = 0; i < 20000; i++)
	{
		static const char alpha[] = "0123456789000999,.-\"e ";
		uint8_t		cell[40],
					ref[40],
					t[40];
		size_t		n = fh_rand(&s) % 40,
					rn = fh_rand(&s) % 40;

		for (size_t k = 0; k < n; k++)
			cell[k] = (uint8_t) alpha[fh_rand(&s) % (sizeof(alpha) - 1)];
		for (size_t k = 0; k < rn; k++)
			ref[k] = (uint8_t) alpha[fh_rand(&s) % (sizeof(alpha) - 1)];
		memcpy(t, cell, n);
		sp_num_code(t, n, ref, rn, false);
		sp_num_code(t, n, ref, rn, true);
		bad += memcmp(t, cell, n) != 0;
	}
	T_CHECK(bad == 0, "%d random cells did not decode to themselves", bad);
}

/* A numeric-layout chunk of rows parent row 0 then one literal: a sizes pass. */
static sp_status
walk_num(sp_ctx *ctx, sp_rowspace *rs, sp_rowslay *lay, const uint8_t *ctl, size_t n,
		 int layout)
{
	sp_rows_chunk c = {ctl, n, 2, -1, layout, 6};

	return sp_rows_walk(ctx, rs, lay, SP_WALK_SIZES, &c, NULL, 0);
}

/*
 * The numeric layout walked by hand: parent row 0 copied, then a literal
 * whose changed fields are increments over the row above; then the
 * selectors a reader must refuse.
 */
static void
test_dataset_numeric_walk(void)
{
	static const char parent[] = "a,17,100\nb,5,5\n";
	static const char want[] = "a,17,100\na,19,105\n";
	/* copy 1 row from 0, one literal: same row, by fields, numbers against the row above */
	const uint8_t ok[] = {1, 0, 1, SP_REF_SAME | SP_LIT_COLS | (SP_NUM_ABOVE << SP_LIT_NUM_SHIFT),
		0x6, 3, 4},
				first[] = {0, 2, SP_REF_NEXT | SP_LIT_COLS | (SP_NUM_ABOVE << SP_LIT_NUM_SHIFT),
		0x6, 3, 4, 0},
				mode3[] = {1, 0, 1, SP_REF_SAME | SP_LIT_COLS | (3 << SP_LIT_NUM_SHIFT), 0x6, 3, 4},
				whole[] = {1, 0, 1, SP_REF_SAME | (SP_NUM_REF << SP_LIT_NUM_SHIFT)};
	uint8_t		out[sizeof(want)];
	sp_ctx		ctx;
	sp_fileset	fs;
	sp_rowspace rs = {0};
	sp_rowslay	lay;
	sp_rows_chunk c = {ok, sizeof(ok), 2, -1, SP_LAYOUT_NUMERIC, 7};

	T_REQUIRE(walk_setup(&ctx, "p.csv", parent, SP_ROWS_CSV, &fs, &rs, &lay), "setup: %s",
			  ctx.err.msg);
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_SIZES, &c, NULL, 0) == SP_OK &&
			lay.dtotal == 7, "sizes: %s", ctx.err.msg);
	T_REQUIRE(sp_reserve(&ctx, &lay.prefix.p, &lay.prefix.cap, lay.ptotal + 1) == SP_OK &&
			  sp_reserve(&ctx, &lay.data.p, &lay.data.cap, 8) == SP_OK, "reserve");
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_PREFIX, &c, NULL, 0) == SP_OK, "prefix: %s",
			ctx.err.msg);
	/* field 1 "19," is 2 over "17,", field 2 "105\n" 5 over "100\n" */
	memcpy(lay.data.p, "02,005\n", 7);
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_EMIT, &c, out, sizeof(want) - 1) == SP_OK &&
			memcmp(out, want, sizeof(want) - 1) == 0, "emit: %s", ctx.err.msg);
	/* the encoder's pass lays the same data out from the rows */
	memset(lay.data.p, 0, 7);
	memcpy(out, want, sizeof(want) - 1);
	T_CHECK(sp_rows_walk(&ctx, &rs, &lay, SP_WALK_FILL, &c, out, sizeof(want) - 1) == SP_OK &&
			memcmp(lay.data.p, "02,005\n", 7) == 0, "fill: %s", ctx.err.msg);
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_num(&ctx, &rs, &lay, first, sizeof(first), SP_LAYOUT_NUMERIC),
		  SP_ERR_CORRUPT, "row chunk is malformed: the chunk's first row has no row above");
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_num(&ctx, &rs, &lay, mode3, sizeof(mode3), SP_LAYOUT_NUMERIC),
		  SP_ERR_CORRUPT, "row chunk is malformed: unknown number coding");
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_num(&ctx, &rs, &lay, whole, sizeof(whole), SP_LAYOUT_NUMERIC),
		  SP_ERR_CORRUPT, "row chunk is malformed: numbers coded in a whole row");
	/* the numeric bits mean nothing in the column layout */
	rt_ctx(&ctx);
	T_ERR(&ctx, walk_num(&ctx, &rs, &lay, ok, sizeof(ok), SP_LAYOUT_COLUMNS),
		  SP_ERR_CORRUPT, "row chunk is malformed: unknown literal selector");
	walk_teardown(&ctx, &fs, &rs, &lay);
}

/*
 * A parent that shrinks after it was opened: the read-ahead thread's read
 * fails, and its error reaches the caller (I/O error, exact message).
 */
static void
test_dataset_scan_shrunk(void)
{
	size_t		n = 5u << 20,
				idx = 0;
	char	   *buf = t_track(malloc(n));
	const char *path = t_path("shrink.jsonl");
	sp_ctx		ctx;
	sp_fileset	fs;
	sp_rowspace rs;
	sp_status	st;

	for (size_t k = 0; k < n; k += 64)
		snprintf(buf + k, 65, "{\"row\": %-45zu, \"x\": 1}\n", k / 64);
	T_REQUIRE(fh_write(path, buf, n), "write");
	rt_ctx(&ctx);
	T_REQUIRE(sp_fileset_open(&ctx, path, &fs) == SP_OK, "open: %s", ctx.err.msg);
	T_REQUIRE(truncate(path, 3u << 20) == 0, "truncate");
	st = sp_rowspace_build(&ctx, &rs, &fs, SP_ROWS_JSONL, &idx, 1, true, NULL, 0);
	T_ERR(&ctx, st, SP_ERR_IO, t_fmt("could not read \"%s\": file shrank while being read", path));
	sp_rowspace_free(&ctx, &rs);
	sp_fileset_close(&ctx, &fs);
}

/* Binary files with NUL bytes: bytes against the same-named parent file. */
static void
test_dataset_binary(void)
{
	size_t		n = 300000;
	uint8_t    *a = t_track(malloc(n)),
			   *b = t_track(malloc(n));
	uint64_t	s = 99;
	ds_rt		r;

	for (size_t i = 0; i < n; i++)
		a[i] = (uint8_t) (fh_rand(&s) % 4 == 0 ? 0 : fh_rand(&s));
	memcpy(b, a, n);
	for (size_t i = 0; i < n; i += 997)
		b[i] ^= 0x5a;
	T_REQUIRE(fh_mkdirs(t_path("p")) && fh_mkdirs(t_path("d")), "mkdir");
	T_REQUIRE(fh_write(t_path("p/blob.bin"), a, n) && fh_write(t_path("d/blob.bin"), b, n) &&
			  fh_write(t_path("p/data.csv"), "a,b\n1,2\n", 8) &&
			  fh_write(t_path("d/data.csv"), "a,b\n1,2\n3,4\n", 12), "write");
	DS_ROUNDTRIP(t_path("p/blob.bin"), t_path("d/blob.bin"), "zstd-ref", n / 20, &r);
	/* a directory mixing a binary file and a CSV */
	DS_ROUNDTRIP(t_path("p"), t_path("d"), "blob.bin=zstd-ref,data.csv=rows-csv", n / 20, &r);
	/* a binary file named .csv is not cut into rows either */
	T_REQUIRE(fh_write(t_path("bin.csv"), b, n), "write");
	DS_ROUNDTRIP(t_path("p/blob.bin"), t_path("bin.csv"), "zstd-ref", n / 20, &r);
}

/* A translation: same ids and numbers, every text field new. */
static void
test_dataset_translation(void)
{
	tspec		p = table_spec(T_CSV, NROWS_LIT),
				d = p;
	char	   *der;
	uint64_t	z;
	ds_rt		r;

	d.vocab = 1;
	der = write_table("d/data.csv", &d);
	z = zstd_size(der, 19);
	/* no worse than plain zstd -19 of the derived file, plus overhead */
	if (DS_ROUNDTRIP(write_table("p/data.csv", &p), der, "rows-csv|zstd", z + z / 50 + 400, &r))
		T_CHECK(r.cres.rows_shared <= 1, "rows_shared %lld", (long long) r.cres.rows_shared);
	/* an unrelated file: the parent is of no use */
	T_REQUIRE(fh_write(t_path("p/other.csv"), "x,y\n1,2\n", 8), "write");
	DS_ROUNDTRIP(t_path("p/other.csv"), der, "zstd|rows-csv", z + z / 50 + 400, &r);
}

/* ---- the real pairs ------------------------------------------------------------------ */

/* One real pair and the zstd -19 --patch-from size it is measured against. */
typedef struct real_pair
{
	const char *name;
	const char *ext;
	uint64_t	ref_bytes;
	double		slack;			/* allowed multiple of ref_bytes */
	const char *method;
} real_pair;

static const real_pair real_pairs[] = {
	{"covid_countries_1day", "csv", 2670, 1.0, "rows-csv"},
	{"covid_countries_1month", "csv", 34870, 1.0, "rows-csv"},
	{"owid_co2_update", "csv", 290491, 1.0, "rows-csv"},
	{"toolformer_simfilter", "json", 8356, 1.0, "rows-json-array"},
	{"gsm8k_socratic", "jsonl", 49666, 0.96, "rows-jsonl"},	/* 47,187 (interleaved) */
	{"alpaca_eval_outputs_regen", "json", 180625, 1.0, "rows-json-array"},
	{"xquad_en_de", "json", 106464, 1.0, "rows-lines"},	/* not an array */
	{"ranked_dash_parquet", "parquet", 343274, 0.7, "parquet-pages"},
};

#define N_REAL (sizeof(real_pairs) / sizeof(real_pairs[0]))

/* The estimate of a pair is within 5 points of the real savings. */
static void
check_estimate(const char *name, const char *base, const char *derived, double real)
{
	sp_ctx		ctx;
	sp_dataset_est est;

	rt_ctx(&ctx);
	T_CHECK(sp_dataset_estimate(&ctx, base, derived, 1000, &est) == SP_OK, "%s: estimate: %s",
			name, ctx.err.msg);
	T_CHECK(fabs(est.savings_pct - real) <= 5.0, "%s: estimated %.2f%% savings, real %.2f%%",
			name, est.savings_pct, real);
	T_CHECK(est.rows_sampled <= 1000, "%s: %lld rows sampled", name, (long long) est.rows_sampled);
	printf("# %s: estimate %.2f%% (real %.2f%%), %lld rows sampled, %.0f ms\n", name,
		   est.savings_pct, real, (long long) est.rows_sampled, est.elapsed_ms);
}

/* Every shared pair round-trips within its reference size (compressed side by side). */
static void
test_dataset_real_pairs(void)
{
	const char *d = t_data() != NULL ? t_data() : "../shared/data";
	ds_job		jobs[N_REAL];
	bool		started[N_REAL] = {false};
	struct stat st;

	if (stat(t_fmt("%s/datasets", d), &st) != 0)
	{
		t_skip("no shared datasets");
		return;
	}
	for (size_t i = 0; i < N_REAL; i++)
	{
		const real_pair *p = &real_pairs[i];
		ds_job	   *j = &jobs[i];

		memset(j, 0, sizeof(*j));
		j->base = t_track(realpath(t_fmt("%s/datasets/%s/base.%s", d, p->name, p->ext), NULL));
		j->derived = t_track(realpath(t_fmt("%s/datasets/%s/derived.%s", d, p->name, p->ext),
									  NULL));
		j->out = t_fmt("%s/%s.delta", t_dir(), p->name);
		rt_ctx(&j->ctx);
		if (j->base == NULL || j->derived == NULL)
			t_fail(__FILE__, __LINE__, "%s: missing base or derived file", p->name);
		else if (pthread_create(&j->thread, NULL, ds_job_run, j) != 0)
			t_fail(__FILE__, __LINE__, "%s: cannot start a thread", p->name);
		else
			started[i] = true;
	}
	for (size_t i = 0; i < N_REAL; i++)
	{
		const real_pair *p = &real_pairs[i];
		ds_rt		r;

		if (!started[i])
			continue;
		pthread_join(jobs[i].thread, NULL);
		if (ds_roundtrip_at(__FILE__, __LINE__, jobs[i].base, jobs[i].derived, p->method,
							(uint64_t) ((double) p->ref_bytes * p->slack), &jobs[i], &r))
			check_estimate(p->name, jobs[i].base, jobs[i].derived, r.cres.savings_pct);
	}
}


/* ---- hooks ------------------------------------------------------------------------------ */

/*
 * The core's helper threads (variants coded side by side, read-ahead,
 * hashing and writing) never call the caller's hooks: a caller's allocator
 * (PostgreSQL's palloc) may only run on the caller's thread.  Rewritten
 * text makes compress and the estimate code two ways on two threads.
 */
static void
test_dataset_hooks_caller_thread(void)
{
	sp_ctx		ctx;
	ds_hooks	h;
	sp_compress_result cr;
	sp_dataset_est est;
	sp_apply_result ar;
	const char *base = t_path("hp/qa.jsonl"),
			   *der = t_path("hd/qa.jsonl");

	write_qa_pair("hp", "hd", 3000);
	dh_ctx(&ctx, &h, -1, -1);
	T_OK(&ctx, sp_dataset_compress(&ctx, base, der, t_path("h.delta"), 3, &cr));
	T_OK(&ctx, sp_dataset_estimate(&ctx, base, der, 1000, &est));
	T_OK(&ctx, sp_delta_apply(&ctx, base, t_path("h.delta"), t_path("h.out"), &ar));
	T_CHECK(h.foreign == 0, "%ld hook calls from another thread", h.foreign);
	T_CHECK(h.live == 0, "%ld blocks not freed", h.live);
	T_CHECK(h.allocs > 0 && h.polls > 0, "hooks not used: %ld allocations, %ld polls", h.allocs,
			h.polls);
}

/* ---- errors ---------------------------------------------------------------------------- */

/* A small pair (parent, derived with edits) and its delta; paths tracked. */
static char *
small_pair(const char **base, const char **der, size_t rows)
{
	tspec		p = {.fmt = T_CSV, .ids = ids_range(0, rows), .n = rows},
				d = p;
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *delta = t_path("small.delta");

	d.edit = EDIT_SCORE;
	d.every = 10;
	*base = write_table("sp/data.csv", &p);
	*der = write_table("sd/data.csv", &d);
	rt_ctx(&ctx);
	if (sp_dataset_compress(&ctx, *base, *der, delta, 3, &cr) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "compress: %s", ctx.err.msg);
		return NULL;
	}
	return delta;
}

/* Level out of range, missing inputs, outputs that exist. */
static void
test_dataset_err_args(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 200);
	char	   *missing = t_path("missing.csv");
	char	   *out = t_path("o.delta");
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;
	const int	levels[] = {0, 20, -1};

	T_REQUIRE(delta != NULL, "no delta");
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
	{
		rt_ctx(&ctx);
		T_ERR(&ctx, sp_dataset_compress(&ctx, base, der, out, levels[i], &cr), SP_ERR_INVALID_ARG,
			  t_fmt("compression level %d is out of range (1 to 19)", levels[i]));
	}
	{
		sp_dataset_est est;
		const int	rows[] = {0, -5, 10000001};

		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		{
			rt_ctx(&ctx);
			T_ERR(&ctx, sp_dataset_estimate(&ctx, base, der, rows[i], &est), SP_ERR_INVALID_ARG,
				  t_fmt("sample_rows %d is out of range (1 to 10000000)", rows[i]));
		}
		rt_ctx(&ctx);
		T_ERR(&ctx, sp_dataset_estimate(&ctx, missing, der, 1000, &est), SP_ERR_IO,
			  t_fmt("could not open \"%s\": No such file or directory", missing));
		/* a sample never holds more rows than asked for */
		rt_ctx(&ctx);
		T_OK(&ctx, sp_dataset_estimate(&ctx, base, der, 10, &est));
		T_CHECK(est.rows_sampled == 10, "10 rows asked, %lld sampled", (long long) est.rows_sampled);
	}
	rt_ctx(&ctx);
	T_OK(&ctx, sp_dataset_compress(&ctx, base, der, t_path("l1.delta"), 1, &cr));
	rt_ctx(&ctx);
	T_OK(&ctx, sp_dataset_compress(&ctx, base, der, t_path("l19.delta"), 19, &cr));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_dataset_compress(&ctx, missing, der, out, 3, &cr), SP_ERR_IO,
		  t_fmt("could not open \"%s\": No such file or directory", missing));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_dataset_compress(&ctx, base, missing, out, 3, &cr), SP_ERR_IO,
		  t_fmt("could not open \"%s\": No such file or directory", missing));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_dataset_compress(&ctx, base, der, delta, 3, &cr), SP_ERR_EXISTS,
		  t_fmt("output \"%s\" already exists", delta));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_dataset_compress(&ctx, base, der, "", 3, &cr), SP_ERR_INVALID_ARG,
		  "output path must not be empty");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, missing, delta, t_path("o.csv"), &ar), SP_ERR_IO,
		  t_fmt("could not open \"%s\": No such file or directory", missing));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, delta, der, &ar), SP_ERR_EXISTS,
		  t_fmt("output \"%s\" already exists", der));
	T_CHECK(!fh_exists(out) && !fh_exists(t_path("o.csv")), "an output was written");
}

/* Applying against another parent is refused before anything is written. */
static void
test_dataset_err_wrong_base(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 200);
	char	   *flipped = t_path("flipped.csv"),
			   *other = t_path("other.csv");
	char		want[65],
				got[65];
	sp_ctx		ctx;
	sp_apply_result ar;
	tspec		o = {.fmt = T_CSV, .ids = ids_range(5, 100), .n = 100};

	T_REQUIRE(delta != NULL, "no delta");
	fh_sha256(base, want);
	/* same size, one byte changed */
	T_REQUIRE(fh_copy(base, flipped) && fh_flip(flipped, 500, 0x01), "setup");
	fh_sha256(flipped, got);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, flipped, delta, t_path("o1.csv"), &ar), SP_ERR_WRONG_BASE,
		  t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s", flipped,
				got, want));
	/* another table */
	write_table("other.csv", &o);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_verify(&ctx, other, delta, &ar), SP_ERR_WRONG_BASE,
		  t_fmt("wrong base: \"%s\" has %lld bytes, the delta was made against %lld bytes (sha256 %s)",
				other, (long long) fh_size(other), (long long) fh_size(base), want));
	T_CHECK(!fh_exists(t_path("o1.csv")), "an output was written");
}

/* A directory delta against a parent directory that lacks a shard. */
static void
test_dataset_err_wrong_base_dir(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;
	char	   *delta = t_path("d.delta");

	write_shards("p", 2000, 2, EDIT_NONE);
	write_shards("d", 2000, 3, EDIT_SCORE);
	rt_ctx(&ctx);
	T_OK(&ctx, sp_dataset_compress(&ctx, t_path("p"), t_path("d"), delta, 3, &cr));
	T_REQUIRE(unlink(t_path("p/part-0001.csv")) == 0, "unlink");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, t_path("p"), delta, t_path("out"), &ar), SP_ERR_WRONG_BASE,
		  t_fmt("wrong base: \"%s\" has no file \"part-0001.csv\", which the delta was made against",
				t_path("p")));
	T_CHECK(!fh_exists(t_path("out")), "an output was written");
}

/* Append a Thrift compact i32 field (delta 1 from the last) of value v. */
static void
pq_i32(sb *b, int64_t v)
{
	uint64_t	z = (uint64_t) (v << 1) ^ (uint64_t) (v >> 63);

	sb_add(b, "%c", 0x15);
	do
		sb_add(b, "%c", (int) ((z & 0x7f) | (z > 0x7f ? 0x80 : 0)));
	while ((z >>= 7) != 0);
}

/*
 * A minimal Parquet file at rel: npages pages of CSV-like text (64 KiB
 * each, every 50th row's value changed when edited; with noise, each row
 * also carries 32 random hex digits, so the pages stay large), each behind
 * a PageHeader (type, sizes) and compressed by zstd at level, with the
 * frame checksum on when checksum (which ZSTD_compress never writes).
 */
static char *
write_zstd_parquet_at(const char *rel, int npages, bool edited, int level, bool checksum,
					  bool noise)
{
	sb			f = {0},
				page = {0};
	ZSTD_CCtx  *cc = ZSTD_createCCtx();
	size_t		cap = ZSTD_compressBound(70000);
	uint8_t    *z = t_track(malloc(cap));
	char	   *path = t_path(rel);

	uint64_t	rng = 7;

	sb_add(&f, "PAR1");
	for (int p = 0, row = 0; p < npages; p++)
	{
		size_t		n;

		page.n = 0;
		while (page.n < 65000)
		{
			sb_add(&page, "%d,%s %s,%d", row, cities[row % 16], words[0][row % 32],
				   (row * 37) % 1000 + (edited && row % 50 == 7 ? 1 : 0));
			if (noise)
				sb_add(&page, ",%016llx%016llx", (unsigned long long) fh_rand(&rng),
					   (unsigned long long) fh_rand(&rng));
			sb_add(&page, "\n");
			row++;
		}
		ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, checksum);
		n = ZSTD_compress2(cc, z, cap, page.p, page.n);
		pq_i32(&f, 0);
		pq_i32(&f, (int64_t) page.n);
		pq_i32(&f, (int64_t) n);
		sb_add(&f, "%c", 0);
		for (size_t i = 0; i < n; i++)
			sb_add(&f, "%c", z[i]);
	}
	sb_add(&f, "%c%c%c", 0x15, 0x02, 0);	/* a footer: a struct of one i32 */
	sb_add(&f, "%c%c%c%cPAR1", 3, 0, 0, 0);
	ZSTD_freeCCtx(cc);
	T_REQUIRE_V(fh_write(path, f.p, f.n), NULL, "write %s", path);
	free(f.p);
	free(page.p);
	return path;
}

/* write_zstd_parquet_at without noise. */
static char *
write_zstd_parquet(const char *rel, int npages, bool edited, int level, bool checksum)
{
	return write_zstd_parquet_at(rel, npages, edited, level, checksum, false);
}

/*
 * A Parquet file over the 16 MiB the estimate codes whole is estimated
 * from a sample of its pages, coded as compress codes them: within a point
 * of the real savings (it was 85 points off when byte windows were coded
 * instead, and took seconds).  The page scan checks for a cancel.
 */
static void
test_dataset_parquet_estimate_large(void)
{
	char	   *pb = write_zstd_parquet_at("zl_base.parquet", 620, false, 3, false, true),
			   *pd = write_zstd_parquet_at("zl_der.parquet", 620, true, 3, false, true),
			   *delta = t_path("zl.delta");
	sp_ctx		ctx;
	sp_dataset_est est;
	sp_compress_result cr;

	T_REQUIRE(pb && pd && fh_size(pd) > (16 << 20), "setup: %lld bytes", (long long) fh_size(pd));
	rt_ctx(&ctx);
	T_OK(&ctx, sp_dataset_estimate(&ctx, pb, pd, 1000, &est));
	rt_ctx(&ctx);
	T_OK(&ctx, sp_dataset_compress(&ctx, pb, pd, delta, 3, &cr));
	T_CHECK(fabs(est.savings_pct - cr.savings_pct) < 1.0 && strcmp(est.format, "parquet") == 0,
			"estimate %.2f%% (%s), real %.2f%%", est.savings_pct, est.format, cr.savings_pct);
	printf("# %lld-byte Parquet file: estimate %.2f%% in %.1f ms, real %.2f%%\n",
		   (long long) fh_size(pd), est.savings_pct, est.elapsed_ms, cr.savings_pct);
	/* its 620 page headers are read with a cancel check every 64; a cancel frees the list */
	for (long cancel_at = -1; cancel_at <= 1; cancel_at += 2)
	{
		ds_hooks	h;
		sp_fileset	fs;
		sp_pq_page *pg = NULL;
		size_t		npg = 0;
		sp_status	st;

		dh_ctx(&ctx, &h, -1, cancel_at);
		T_REQUIRE(sp_fileset_open(&ctx, pd, &fs) == SP_OK, "open");
		st = sp_parquet_pages(&ctx, &fs, 0, &pg, &npg);
		T_CHECK(cancel_at < 0 ? st == SP_OK && npg == 620 && h.polls >= 9
				: st == SP_ERR_CANCELLED && npg == 0 && pg == NULL,
				"cancel at %ld: %s, %zu pages, %ld polls", cancel_at, sp_status_name(st), npg,
				h.polls);
		sp_free(&ctx, pg);
		sp_fileset_close(&ctx, &fs);
		T_CHECK(h.live == 0, "%ld blocks not freed", h.live);
	}
}

/*
 * Parquet pages compressed by zstd (Polars and DuckDB write level 3, Arrow
 * level 1) are expanded and coded against the parent's pages when libzstd
 * compresses them back to the same bytes, as snappy pages are; pages it
 * cannot reproduce (here: with the frame checksum) stay bytes and still
 * round-trip; the levels tried for them poll for a cancel.  Damage to the
 * chunk's codec or level (an unknown codec, a level on a snappy page, none
 * or one above 9 on a zstd page, a wrong one) is an error.
 */
static void
test_dataset_parquet_zstd_pages(void)
{
	ds_rt		r;
	char	   *pb = write_zstd_parquet("zp_base.parquet", 24, false, 3, false),
			   *pd = write_zstd_parquet("zp_der.parquet", 24, true, 3, false),
			   *p1 = write_zstd_parquet("zp_der1.parquet", 24, true, 1, false),
			   *pc = write_zstd_parquet("zp_derc.parquet", 24, true, 3, true),
			   *bad = t_path("zp_bad.delta");
	size_t		len,
				plen = 0,
				off;
	uint8_t    *d;
	sp_ctx		ctx;
	sp_apply_result ar;

	T_REQUIRE(pb && pd && p1 && pc, "setup");
	T_CHECK(DS_ROUNDTRIP(pb, pd, "parquet-pages", pct_of(pd, 10), &r), "level 3 pages");
	T_CHECK(DS_ROUNDTRIP(pb, p1, "parquet-pages", pct_of(p1, 10), &r), "level 1 pages");
	T_CHECK(DS_ROUNDTRIP(pb, pc, "zstd-ref", pct_of(pc, 100), &r), "pages with checksums");
	/* a cancel at every poll of that compress: cancelled, nothing leaked or left */
	{
		ds_hooks	h;
		long		total;
		sp_compress_result cr;
		char	   *out = t_path("zp_cancel.delta");

		dh_ctx(&ctx, &h, -1, -1);
		T_REQUIRE(sp_dataset_compress(&ctx, pb, pc, out, 3, &cr) == SP_OK && unlink(out) == 0,
				  "count polls");
		total = h.polls;
		for (long k = 1; k <= total; k++)
		{
			dh_ctx(&ctx, &h, -1, k);
			if (sp_dataset_compress(&ctx, pb, pc, out, 3, &cr) != SP_ERR_CANCELLED ||
				h.live != 0 || fh_exists(out))
			{
				t_fail(__FILE__, __LINE__, "cancel at poll %ld of %ld: %s, %ld blocks live",
					   k, total, ctx.err.msg, h.live);
				break;
			}
		}
	}
	/* the level search polls once per level tried: 9 for a page none reproduces, 1 at the hint */
	for (int k = 0; k < 2; k++)
	{
		ds_hooks	h;
		sp_codec	codec;
		sp_fileset	fs;
		sp_pq_page *pg = NULL;
		size_t		npg = 0,
					flen;
		uint8_t    *f = fh_read(k ? pd : pc, &flen),
				   *out = t_track(malloc(1 << 20)),
				   *scratch = t_track(malloc(1 << 20));
		int			level = -1;
		long		polls;

		dh_ctx(&ctx, &h, -1, -1);
		T_REQUIRE(f && sp_codec_init(&ctx, &codec) == SP_OK &&
				  sp_fileset_open(&ctx, k ? pd : pc, &fs) == SP_OK &&
				  sp_parquet_pages(&ctx, &fs, 0, &pg, &npg) == SP_OK && npg == 24, "pages");
		polls = h.polls;
		T_OK(&ctx, sp_pq_zstd_level(&ctx, &codec, f + pg[0].off, pg[0].clen, out, pg[0].ulen,
									scratch, 1 << 20, k ? 3 : 0, &level));
		polls = h.polls - polls;
		T_CHECK(level == (k ? 3 : 0) && polls == (k ? 1 : 9), "%s page: level %d after %ld polls",
				k ? "level 3" : "checksummed", level, polls);
		sp_free(&ctx, pg);
		sp_fileset_close(&ctx, &fs);
		sp_codec_free(&ctx, &codec);
		T_CHECK(h.live == 0, "%ld blocks not freed", h.live);
	}
	/* the level 3 delta again, its first SNAPPY chunk damaged (record checksum fixed) */
	T_CHECK(DS_ROUNDTRIP(pb, pd, "parquet-pages", pct_of(pd, 10), &r), "level 3 pages");
	T_REQUIRE((d = fh_read(r.delta, &len)) != NULL &&
			  (off = rt_find_chunk(d, len, 5, -1, &plen)) > 0, "no SNAPPY chunk");
	T_CHECK(d[off + 9] == 1 && d[off + 10] == 3, "codec %d level %d, expected zstd (1) at 3",
			d[off + 9], d[off + 10]);
	for (int k = 0; k < 5; k++)
	{
		static const uint8_t codec[] = {2, 0, 1, 1, 1},
					level[] = {3, 3, 0, 10, 9};

		d[off + 9] = codec[k];
		d[off + 10] = level[k];
		rt_fix_record_sum(d, off, plen);
		T_REQUIRE(fh_write(bad, d, len) && unlink(bad) == 0 && fh_write(bad, d, len), "write");
		rt_ctx(&ctx);
		T_ERR_SUB(&ctx, sp_delta_apply(&ctx, pb, bad, rt_unique("zp", ".out"), &ar), SP_ERR_CORRUPT,
				  k < 4 ? "bad SNAPPY chunk"
				  : "does not compress back to its size (or this libzstd differs from the writer's)");
	}
}

/* Damage inside a ROWS chunk: the record checksum, then the chunk's own. */
static void
test_dataset_err_corrupt_rows_chunk(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 2000);
	char	   *bad = t_path("bad.delta");
	size_t		len,
				plen = 0,
				roff;
	uint8_t    *d;
	sp_ctx		ctx;
	sp_apply_result ar;

	T_REQUIRE(delta != NULL && (d = fh_read(delta, &len)) != NULL, "no delta");
	roff = rt_find_chunk(d, len, 4, -1, &plen);
	T_REQUIRE(roff > 0, "no ROWS chunk in the delta");
	/* a byte of the compressed streams: the record checksum catches it */
	d[roff + 8 + 40 + (plen - 40) / 2] ^= 0x10;
	T_REQUIRE(fh_write(bad, d, len), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, bad, t_path("o.csv"), &ar), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: checksum mismatch in record at byte %zu", bad, roff));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_verify(&ctx, base, bad, &ar), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: checksum mismatch in record at byte %zu", bad, roff));
	/* the chunk's checksum field changed, the record checksum made to match */
	d[roff + 8 + 40 + (plen - 40) / 2] ^= 0x10;
	d[roff + 8 + 32] ^= 0x01;
	rt_fix_record_sum(d, roff, plen);
	unlink(bad);
	T_REQUIRE(fh_write(bad, d, len), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, bad, t_path("o.csv"), &ar), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: chunk 1 of \"data.csv\" does not match its checksum",
				bad));
	T_CHECK(!fh_exists(t_path("o.csv")), "an output was written");
}

/* What an apply in a child process gave (see apply_isolated). */
typedef struct iso_result
{
	bool		crashed;		/* the child died (signal or no answer) */
	sp_status	st;
	bool		same;			/* SP_OK and the bytes equal the expected ones */
	long		live;			/* blocks the call did not free */
	char		msg[512];
} iso_result;

/*
 * Apply delta m against base b in memory in a child process, so that a
 * crash in the decoder is reported as a failure instead of ending the run.
 */
static void
apply_isolated(const uint8_t *b, size_t blen, const uint8_t *m, size_t len,
			   const uint8_t *want, size_t wlen, iso_result *res)
{
	int			fd[2],
				status = 0;
	pid_t		pid;

	memset(res, 0, sizeof(*res));
	res->crashed = true;
	if (pipe(fd) != 0 || (pid = fork()) < 0)
		return;
	if (pid == 0)
	{
		sp_ctx		ctx;
		ds_hooks	h;
		void	   *out = NULL;
		size_t		out_len = 0;
		iso_result	r = {0};

		close(fd[0]);
		dh_ctx(&ctx, &h, -1, -1);
		r.st = sp_delta_apply_mem(&ctx, b, blen, m, len, 1 << 20, &out, &out_len);
		r.same = r.st == SP_OK && out_len == wlen && memcmp(out, want, wlen) == 0;
		if (r.st == SP_OK)
			ctx.hooks.free(ctx.hooks.user, out);	/* dh_free: counts it */
		r.live = h.live;
		snprintf(r.msg, sizeof(r.msg), "%s", ctx.err.msg);
		_exit(write(fd[1], &r, sizeof(r)) == (ssize_t) sizeof(r) ? 0 : 1);
	}
	close(fd[1]);
	if (read(fd[0], res, sizeof(*res)) != (ssize_t) sizeof(*res))
		res->crashed = true;
	close(fd[0]);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		res->crashed = true;
}

/*
 * Every byte of the first ROWS chunk record of delta set to three other
 * values in turn, with the record checksum fixed so that the chunk decoder
 * sees it: SP_ERR_CORRUPT, or (a change the decoding does not depend on)
 * the derived bytes exactly; never a crash or a leak.  Each apply runs in a
 * child process.  Returns the ROWS chunk's layout.
 */
static int
sweep_rows_chunk(const char *base, const char *der, const char *delta)
{
	size_t		len,
				blen,
				flen,
				plen = 0,
				roff;
	uint8_t    *d,
			   *b,
			   *f,
			   *m;
	int			bad = 0,
				same = 0;

	T_REQUIRE_V(delta != NULL && (d = fh_read(delta, &len)) != NULL &&
				(b = fh_read(base, &blen)) != NULL && (f = fh_read(der, &flen)) != NULL, -1,
				"setup");
	roff = rt_find_chunk(d, len, 4, -1, &plen);
	T_REQUIRE_V(roff > 0, -1, "no ROWS chunk in the delta");
	m = t_track(malloc(len));
	fflush(stdout);
	for (size_t i = 0; i < plen && bad < 8; i++)
	{
		for (int k = 0; k < 3; k++)
		{
			iso_result	res;
			uint8_t		was = d[roff + 8 + i],
						now = k == 0 ? was ^ 0x01 : k == 1 ? was ^ 0xFF : 0x00;

			if (now == was)
				continue;
			memcpy(m, d, len);
			m[roff + 8 + i] = now;
			rt_fix_record_sum(m, roff, plen);
			apply_isolated(b, blen, m, len, f, flen, &res);
			if (!res.crashed && res.live == 0 && res.same)
				same++;
			else if (res.crashed || res.live != 0 || res.st != SP_ERR_CORRUPT)
			{
				t_fail(__FILE__, __LINE__, "byte %zu of the ROWS chunk record payload 0x%02x -> "
					   "0x%02x: %s (%s), %ld blocks not freed", i, was, now,
					   res.crashed ? "CRASHED" : sp_status_name(res.st), res.msg, res.live);
				bad++;
			}
		}
	}
	printf("# %zu bytes of a ROWS chunk changed three ways; %d changes decoded the same\n",
		   plen, same);
	return d[roff + 8 + 2];
}

/* The damage sweep on a chunk of recomputed numbers (column layout). */
static void
test_dataset_err_rows_chunk_sweep(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 120);

	T_CHECK(sweep_rows_chunk(base, der, delta) == SP_LAYOUT_COLUMNS, "not the column layout");
}

/* The damage sweep on a chunk of running totals (numeric layout). */
static void
test_dataset_err_numeric_sweep(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *delta = t_path("series.delta");

	write_series_pair("sweep_p.csv", "sweep_d.csv", 3, 12, 4);
	rt_ctx(&ctx);
	T_REQUIRE(sp_dataset_compress(&ctx, t_path("sweep_p.csv"), t_path("sweep_d.csv"), delta, 3,
								  &cr) == SP_OK, "compress: %s", ctx.err.msg);
	T_CHECK(sweep_rows_chunk(t_path("sweep_p.csv"), t_path("sweep_d.csv"), delta) ==
			SP_LAYOUT_NUMERIC, "not the numeric layout");
}

/* The damage sweep on a chunk of rewritten text (interleaved layout). */
static void
test_dataset_err_interleaved_sweep(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *delta = t_path("qa.delta");

	write_qa_pair("sqp", "sqd", 12);
	rt_ctx(&ctx);
	T_REQUIRE(sp_dataset_compress(&ctx, t_path("sqp/qa.jsonl"), t_path("sqd/qa.jsonl"), delta, 3,
								  &cr) == SP_OK, "compress: %s", ctx.err.msg);
	T_CHECK(sweep_rows_chunk(t_path("sqp/qa.jsonl"), t_path("sqd/qa.jsonl"), delta) ==
			SP_LAYOUT_INTERLEAVED, "not the interleaved layout");
}

/* A ROWS chunk naming no row format (0) is corrupt, like any unknown one. */
static void
test_dataset_err_rows_chunk_format0(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 120);
	size_t		len,
				blen,
				plen = 0,
				roff;
	uint8_t    *d,
			   *b;
	iso_result	res;

	T_REQUIRE(delta != NULL && (d = fh_read(delta, &len)) != NULL &&
			  (b = fh_read(base, &blen)) != NULL, "setup");
	roff = rt_find_chunk(d, len, 4, -1, &plen);
	T_REQUIRE(roff > 0, "no ROWS chunk in the delta");
	d[roff + 8 + 1] = 0;		/* transform: the row format */
	rt_fix_record_sum(d, roff, plen);
	fflush(stdout);
	apply_isolated(b, blen, d, len, NULL, 0, &res);
	T_CHECK(!res.crashed && res.st == SP_ERR_CORRUPT &&
			strcmp(res.msg, "delta \"delta\" is corrupted: row chunk without a ROWSPACE record "
				   "for its format") == 0,
			"apply of a ROWS chunk with format 0: %s (%s)",
			res.crashed ? "CRASHED" : sp_status_name(res.st), res.msg);
}

/* A delta cut short anywhere is truncated, not corrupted. */
static void
test_dataset_err_truncated(void)
{
	const char *base,
			   *der;
	char	   *delta = small_pair(&base, &der, 2000);
	char	   *cut = t_path("cut.delta");
	size_t		len,
				plen = 0,
				roff;
	uint8_t    *d;
	sp_ctx		ctx;
	sp_apply_result ar;
	size_t		at[4];

	T_REQUIRE(delta != NULL && (d = fh_read(delta, &len)) != NULL, "no delta");
	roff = rt_find_chunk(d, len, 4, -1, &plen);
	T_REQUIRE(roff > 0, "no ROWS chunk");
	at[0] = roff + 8 + plen / 2;	/* inside the ROWS chunk */
	at[1] = roff;				/* just before it */
	at[2] = len - 1;			/* the last byte of END missing */
	at[3] = 40;
	for (int i = 0; i < 4; i++)
	{
		unlink(cut);
		T_REQUIRE(fh_write(cut, d, at[i]), "write");
		rt_ctx(&ctx);
		T_ERR(&ctx, sp_delta_apply(&ctx, base, cut, t_path("o.csv"), &ar), SP_ERR_TRUNCATED,
			  t_fmt("delta \"%s\" is truncated at byte %zu", cut, at[i]));
		T_CHECK(!fh_exists(t_path("o.csv")), "an output was written at cut %zu", at[i]);
	}
}

/* Operations the sweeps run. */
typedef enum ds_op
{
	DS_COMPRESS, DS_APPLY, DS_VERIFY, DS_INFO, DS_NOPS
} ds_op;

static const char *const ds_op_names[DS_NOPS] = {"compress", "apply", "verify", "info"};

/* Run one operation on base/der/delta; outputs go to out. */
static sp_status
ds_run(sp_ctx *ctx, ds_op op, const char *base, const char *der, const char *delta,
	   const char *out)
{
	sp_compress_result cr;
	sp_apply_result ar;
	sp_info		info = {0};
	sp_status	st;

	switch (op)
	{
		case DS_COMPRESS:
			return sp_dataset_compress(ctx, base, der, out, 3, &cr);
		case DS_APPLY:
			return sp_delta_apply(ctx, base, delta, out, &ar);
		case DS_VERIFY:
			return sp_delta_verify(ctx, base, delta, &ar);
		default:
			if ((st = sp_delta_info(ctx, delta, &info)) == SP_OK)
				sp_info_free(ctx, &info);
			return st;
	}
}

/* Is directory dir empty?  Otherwise report what was left. */
static bool
dir_empty(const char *dir, const char *what, long k)
{
	size_t		n;
	char	  **names = fh_list(dir, &n);

	if (n == 0)
		return true;
	t_fail(__FILE__, __LINE__, "%s at %ld left \"%s\" in the output directory", what, k, names[0]);
	return false;
}

/* Inputs of the sweeps: a file pair and a directory pair with their deltas. */
static bool
sweep_inputs(const char **base, const char **der, const char **delta, bool dir)
{
	sp_ctx		ctx;
	sp_compress_result cr;

	if (!dir)
		return (*delta = small_pair(base, der, 3000)) != NULL;
	write_shards("wp", 3000, 2, EDIT_NONE);
	write_shards("wd", 3000, 3, EDIT_SCORE);
	if (!fh_write(t_path("wp/blob.bin"), "\0\1\2\3abc", 7) ||
		!fh_write(t_path("wd/blob.bin"), "\0\1\2\3abd", 7))
		return false;
	*base = t_path("wp");
	*der = t_path("wd");
	*delta = t_path("w.delta");
	rt_ctx(&ctx);
	if (sp_dataset_compress(&ctx, *base, *der, *delta, 3, &cr) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "compress: %s", ctx.err.msg);
		return false;
	}
	return true;
}

/* Run op once without faults (output under okdir); its allocation and poll counts. */
static bool
ds_count(ds_op op, const char *base, const char *der, const char *delta, const char *okdir,
		 bool dir, ds_hooks *h)
{
	sp_ctx		ctx;
	char	   *ok = t_fmt("%s/%s", okdir, ds_op_names[op]);
	sp_status	st;

	dh_ctx(&ctx, h, -1, -1);
	st = ds_run(&ctx, op, base, der, delta, ok);
	if (st != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "%s%s: %s: %s", ds_op_names[op], dir ? " (directory)" : "",
			   sp_status_name(st), ctx.err.msg);
		return false;
	}
	T_CHECK(h->live == 0, "%s: %ld blocks not freed", ds_op_names[op], h->live);
	if (op == DS_APPLY)
		T_CHECK(dir ? fh_same_tree(der, ok) : fh_same(der, ok), "%s: rebuilt output differs", ok);
	return true;
}

/*
 * Fail the allocations after k, for every k, in each operation; with once,
 * fail allocation k + 1 only (later ones succeed: cleanup must still free
 * what the calls before and after it got).
 */
static void
sweep_alloc(bool dir, bool once)
{
	const char *base,
			   *der,
			   *delta;
	char	   *outdir = t_path("out"),
			   *okdir = t_path("ok");

	T_REQUIRE(sweep_inputs(&base, &der, &delta, dir) && fh_mkdirs(outdir) && fh_mkdirs(okdir),
			  "setup");
	for (int op = 0; op < DS_NOPS; op++)
	{
		sp_ctx		ctx;
		ds_hooks	h;
		long		total;
		char	   *o = t_fmt("%s/o", outdir);

		if (!ds_count((ds_op) op, base, der, delta, okdir, dir, &h))
			continue;
		total = h.allocs;
		for (long k = 0; k < total; k++)
		{
			sp_status	st;

			dh_ctx(&ctx, &h, k, -1);
			h.fail_once = once;
			st = ds_run(&ctx, (ds_op) op, base, der, delta, o);
			if (st != SP_ERR_NOMEM || ctx.err.code != SP_ERR_NOMEM || h.live != 0 ||
				!dir_empty(outdir, ds_op_names[op], k))
			{
				t_fail(__FILE__, __LINE__, "%s%s failing %s %ld of %ld allocations: %s (%s), "
					   "%ld blocks not freed", ds_op_names[op], dir ? " (directory)" : "",
					   once ? "only allocation" : "after", once ? k + 1 : k, total,
					   sp_status_name(st), ctx.err.msg, h.live);
				break;			/* one report per operation */
			}
		}
		printf("# %s%s: %ld allocations swept%s\n", ds_op_names[op],
			   dir ? " (directory)" : "", total, once ? " one at a time" : "");
	}
}

/* Allocation failure at every point of compress, apply, verify and info. */
static void
test_dataset_alloc_sweep(void)
{
	sweep_alloc(false, false);
}

/* The same over a directory pair (shards and a binary file). */
static void
test_dataset_alloc_sweep_dir(void)
{
	sweep_alloc(true, false);
}

/* One allocation failing at every point, the others succeeding. */
static void
test_dataset_alloc_once_sweep(void)
{
	sweep_alloc(false, true);
}

/* One allocation failing at every point, directory pair. */
static void
test_dataset_alloc_once_sweep_dir(void)
{
	sweep_alloc(true, true);
}

/* Cancel at every poll of each operation: SP_ERR_CANCELLED, nothing left. */
static void
sweep_cancel(bool dir)
{
	const char *base,
			   *der,
			   *delta;
	char	   *outdir = t_path("out"),
			   *okdir = t_path("ok");

	T_REQUIRE(sweep_inputs(&base, &der, &delta, dir) && fh_mkdirs(outdir) && fh_mkdirs(okdir),
			  "setup");
	for (int op = 0; op < DS_NOPS; op++)
	{
		sp_ctx		ctx;
		ds_hooks	h;
		long		total;

		if (!ds_count((ds_op) op, base, der, delta, okdir, dir, &h))
			continue;
		total = h.polls;
		T_CHECK(total >= 1 || op == DS_INFO, "%s never polls the interrupt hook", ds_op_names[op]);
		for (long k = 1; k <= total; k++)
		{
			sp_status	st;

			dh_ctx(&ctx, &h, -1, k);
			st = ds_run(&ctx, (ds_op) op, base, der, delta, t_fmt("%s/o", outdir));
			if (st != SP_ERR_CANCELLED ||
				strcmp(ctx.err.msg, "canceling statement due to user request") != 0 ||
				h.live != 0 || !dir_empty(outdir, ds_op_names[op], k))
			{
				t_fail(__FILE__, __LINE__, "%s%s cancelled at poll %ld of %ld: %s (%s), "
					   "%ld blocks not freed", ds_op_names[op], dir ? " (directory)" : "", k,
					   total, sp_status_name(st), ctx.err.msg, h.live);
				break;
			}
		}
		printf("# %s%s: %ld polls swept\n", ds_op_names[op], dir ? " (directory)" : "", total);
	}
}

/* Cancellation at every poll. */
static void
test_dataset_cancel_sweep(void)
{
	sweep_cancel(false);
}

/* Cancellation at every poll, directory pair. */
static void
test_dataset_cancel_sweep_dir(void)
{
	sweep_cancel(true);
}

const t_case t_tests_dataset[] = {
	{"dataset_csv_edit", test_dataset_csv_edit},
	{"dataset_subset", test_dataset_subset},
	{"dataset_dedup", test_dataset_dedup},
	{"dataset_shuffle", test_dataset_shuffle},
	{"dataset_append", test_dataset_append},
	{"dataset_column_added", test_dataset_column_added},
	{"dataset_column_recomputed", test_dataset_column_recomputed},
	{"dataset_header_renamed", test_dataset_header_renamed},
	{"dataset_reshard_file_to_dir", test_dataset_reshard_file_to_dir},
	{"dataset_reshard_dir_to_dir", test_dataset_reshard_dir_to_dir},
	{"dataset_repo_layout", test_dataset_repo_layout},
	{"dataset_crlf", test_dataset_crlf},
	{"dataset_no_final_newline", test_dataset_no_final_newline},
	{"dataset_empty_derived", test_dataset_empty_derived},
	{"dataset_empty_parent", test_dataset_empty_parent},
	{"dataset_bom", test_dataset_bom},
	{"dataset_jsonl_edit", test_dataset_jsonl_edit},
	{"dataset_json_array_subset", test_dataset_json_array_subset},
	{"dataset_tsv", test_dataset_tsv},
	{"dataset_lines", test_dataset_lines},
	{"dataset_fallback_unbalanced_quote", test_dataset_fallback_unbalanced_quote},
	{"dataset_fallback_next_format", test_dataset_fallback_next_format},
	{"dataset_fallback_json_unclosed", test_dataset_fallback_json_unclosed},
	{"dataset_invalid_utf8", test_dataset_invalid_utf8},
	{"dataset_ragged", test_dataset_ragged},
	{"dataset_binary", test_dataset_binary},
	{"dataset_translation", test_dataset_translation},
	{"dataset_real_pairs", test_dataset_real_pairs},
	{"dataset_err_args", test_dataset_err_args},
	{"dataset_err_wrong_base", test_dataset_err_wrong_base},
	{"dataset_err_wrong_base_dir", test_dataset_err_wrong_base_dir},
	{"dataset_err_corrupt_rows_chunk", test_dataset_err_corrupt_rows_chunk},
	{"dataset_parquet_zstd_pages", test_dataset_parquet_zstd_pages},
	{"dataset_parquet_estimate_large", test_dataset_parquet_estimate_large},
	{"dataset_err_rows_chunk_sweep", test_dataset_err_rows_chunk_sweep},
	{"dataset_err_numeric_sweep", test_dataset_err_numeric_sweep},
	{"dataset_err_interleaved_sweep", test_dataset_err_interleaved_sweep},
	{"dataset_err_rows_chunk_format0", test_dataset_err_rows_chunk_format0},
	{"dataset_err_truncated", test_dataset_err_truncated},
	{"dataset_hooks_caller_thread", test_dataset_hooks_caller_thread},
	{"dataset_alloc_sweep", test_dataset_alloc_sweep},
	{"dataset_alloc_sweep_dir", test_dataset_alloc_sweep_dir},
	{"dataset_long_rows", test_dataset_long_rows},
	{"dataset_interleaved", test_dataset_interleaved},
	{"dataset_interleaved_walk", test_dataset_interleaved_walk},
	{"dataset_numeric", test_dataset_numeric},
	{"dataset_num_code", test_dataset_num_code},
	{"dataset_numeric_walk", test_dataset_numeric_walk},
	{"dataset_scan_shrunk", test_dataset_scan_shrunk},
	{"dataset_alloc_once_sweep", test_dataset_alloc_once_sweep},
	{"dataset_alloc_once_sweep_dir", test_dataset_alloc_once_sweep_dir},
	{"dataset_cancel_sweep", test_dataset_cancel_sweep},
	{"dataset_cancel_sweep_dir", test_dataset_cancel_sweep_dir},
	{NULL, NULL}
};
