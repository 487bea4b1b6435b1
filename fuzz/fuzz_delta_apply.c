/*
 * fuzz_delta_apply.c -- libFuzzer target for the delta decoder.
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_delta_apply fuzz/corpus/delta_apply
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * The input is a delta.  Each run:
 *   1. sp_delta_info_mem on it (rows are checked: name, method, digest);
 *   2. sp_delta_apply_mem against a fixed base, result capped at 64 MiB:
 *      one of the small dataset parents below (CSV, JSONL, JSON array)
 *      when the delta's BASES record names a file of that parent's size,
 *      so that dataset deltas reach the ROWSPACE and ROWS chunk decoders,
 *      else the fixed base model of fuzz_common.h;
 *   3. the same two on a copy whose record checksums were recomputed, so
 *      mutations inside records reach the chunk decoders;
 *   4. for one input in four (by hash), apply again with the Nth allocation
 *      failing, and again cancelled at the Mth interrupt poll (N, M picked
 *      from the input's hash among the allocations and polls step 3 made):
 *      the call must then fail with SP_ERR_NOMEM / SP_ERR_CANCELLED and
 *      leak nothing.
 * Any crash, leak, unbounded allocation (fz_alloc aborts above 256 MiB) or
 * broken error contract (fz_check_error) is a finding.
 *
 * Seeds: with SPARSE_FUZZ_SEEDS=DIR set, the binary writes the base's
 * fine-tune variants to DIR/roundtrip/ and the delta of every file in
 * DIR/roundtrip/ against the base to DIR/delta_apply/, plus six dataset
 * deltas (DIR/delta_apply/dataset_*.delta: a CSV with rows edited, removed
 * and added, a JSONL likewise, a JSON array subset in reverse order, a CSV
 * with a column added, question-answer JSONL with every answer rewritten, a
 * CSV with every score changed and rows appended, a Parquet file of zstd
 * pages, whose SNAPPY chunks name the zstd codec)
 * made with sp_dataset_compress against the dataset parents, then exits
 * (fuzz/make_seeds.py drives it).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "fuzz_common.h"

/* ---- dataset parents ------------------------------------------------------ */

#define DS_PARENTS 4			/* CSV, JSONL, JSON array, question-answer JSONL */
#define DS_ROWS 60				/* rows of each parent */
#define DS_CAP 32768			/* bytes of a parent or derived text, at most */

static const char *const ds_ext[DS_PARENTS] = {"csv", "jsonl", "json", "jsonl"};

/* Words of the question-answer rows. */
static const char *const ds_words[8] = {"river", "stone", "light", "paper", "garden", "window",
"silver", "market"};

/* Edits of a row. */
enum
{
	DS_SAME = 0, DS_VALUE = 1, DS_COLUMN = 2, DS_TEXT = 3
};

/*
 * Append question-answer row i to buf at len: two answer lines, each after a
 * sub-question when edit is DS_TEXT (rewritten text keeping the old text,
 * which the interleaved row layout codes); the new length.
 */
static size_t
ds_qa_row(char *buf, size_t len, int i, int edit)
{
	const char *w1 = ds_words[i % 8],
			   *w2 = ds_words[(i * 5 + 3) % 8],
			   *sub = edit == DS_TEXT ? "How many are there? ** " : "";
	int			n = snprintf(buf + len, DS_CAP - len,
							 "{\"question\": \"How many %s and %s are there in row %d?\", "
							 "\"answer\": \"%sThe %s count is %d = <<%d*2=%d>>%d\\n"
							 "%sThe %s count is %d\\n#### %d\"}\n",
							 w1, w2, i, sub, w1, i * 2, i, i * 2, i * 2, sub, w2, i + 7, i * 3 + 7);

	if (n < 0 || (size_t) n >= DS_CAP - len)
		abort();				/* the texts are small: cannot happen */
	return len + (size_t) n;
}

/* Append row i of format k (edited as edit says) to buf at len; new length. */
static size_t
ds_row(char *buf, size_t len, int k, int i, int edit, int last)
{
	int			score = edit == DS_VALUE ? i * 7 + 1 : i * 7;
	int			n;

	if (k == 3)
		return ds_qa_row(buf, len, i, edit);
	if (k == 0 && i == 5)		/* a quoted newline and a quoted comma */
		n = snprintf(buf + len, DS_CAP - len, "5,\"line one\nline, two\",%d.5,x%s\n", score,
					 edit == DS_COLUMN ? ",extra" : "");
	else if (k == 0)
		n = snprintf(buf + len, DS_CAP - len, "%d,\"q%d, part %d\",%d.5,word%d%s%s\n", i, i,
					 i % 3, score, i % 11, edit == DS_COLUMN ? ",extra" : "",
					 i % 7 == 3 ? "\r" : "");
	else if (k == 1)
		n = snprintf(buf + len, DS_CAP - len,
					 "{\"id\": %d, \"q\": \"question %d\", \"score\": %d, \"tags\": [\"a\", \"b%d\"]%s}\n",
					 i, i, score, i % 5, edit == DS_COLUMN ? ", \"new\": true" : "");
	else
		n = snprintf(buf + len, DS_CAP - len,
					 "  {\"id\": %d, \"q\": \"question %d\", \"score\": %d%s}%s\n",
					 i, i, score, edit == DS_COLUMN ? ", \"new\": true" : "", last ? "" : ",");
	if (n < 0 || (size_t) n >= DS_CAP - len)
		abort();				/* the texts are small: cannot happen */
	return len + (size_t) n;
}

/* Text of format k holding rows ids[0..n) with edits[i] (malloc'ed). */
static char *
ds_text(int k, const int *ids, const int *edits, int n, size_t *len)
{
	char	   *buf = malloc(DS_CAP);
	size_t		l = 0;

	if (buf == NULL)
		abort();
	if (k == 0)
		l = (size_t) snprintf(buf, DS_CAP, "id,question,score,note%s\n",
							  edits && n && edits[0] == DS_COLUMN ? ",more" : "");
	if (k == 2)
		l = (size_t) snprintf(buf, DS_CAP, "[\n");
	for (int i = 0; i < n; i++)
		l = ds_row(buf, l, k, ids[i], edits ? edits[i] : DS_SAME, i + 1 == n);
	if (k == 2)
		l += (size_t) snprintf(buf + l, DS_CAP - l, "]\n");
	*len = l;
	return buf;
}

/* Dataset parent k (built once, kept for the process). */
static const uint8_t *
ds_parent(int k, size_t *len)
{
	static char *text[DS_PARENTS];
	static size_t tlen[DS_PARENTS];

	if (text[k] == NULL)
	{
		int			ids[DS_ROWS];

		for (int i = 0; i < DS_ROWS; i++)
			ids[i] = i;
		text[k] = ds_text(k, ids, NULL, DS_ROWS, &tlen[k]);
	}
	*len = tlen[k];
	return (const uint8_t *) text[k];
}

/*
 * The base to apply a delta to: the dataset parent whose size the first
 * entry of the delta's BASES record gives (header 16 bytes, record header
 * 8, count 4, then u64 size), else the fixed base model.
 */
static const uint8_t *
pick_base(const uint8_t *data, size_t size, size_t *len)
{
	if (size >= 16 + 8 + 4 + 42 && data[16] == 1 && (data[24] | data[25] | data[26] | data[27]) != 0)
	{
		uint64_t	want = 0;

		for (int i = 0; i < 8; i++)
			want |= (uint64_t) data[28 + i] << (8 * i);
		for (int k = 0; k < DS_PARENTS; k++)
		{
			const uint8_t *p = ds_parent(k, len);

			if (*len == want)
				return p;
		}
	}
	return fz_base(len);
}

/* Abort unless the info rows are well formed. */
static void
check_info(const sp_ctx *ctx, const sp_info *info)
{
	static const char *const methods[] = {
		"tensor-delta", "zstd-ref", "zstd", "copy", "rows-lines", "rows-csv", "rows-tsv",
		"rows-jsonl", "rows-json-array", "parquet-pages"
	};

	if (info->n > 0 && info->rows == NULL)
		fz_die("info rows counted but no array", ctx);
	for (size_t i = 0; i < info->n; i++)
	{
		const sp_info_row *r = &info->rows[i];
		bool		known = false;

		if (r->name == NULL || r->method == NULL)
			fz_die("info row without name or method", ctx);
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
			known |= strcmp(r->method, methods[m]) == 0;
		if (!known)
			fz_die("info row with an unknown method", ctx);
		if (strlen(r->sha256) != 64 || strspn(r->sha256, "0123456789abcdef") != 64)
			fz_die("info row sha256 is not 64 lower-case hex digits", ctx);
	}
}

/* sp_delta_info_mem on the input; check rows or the error. */
static void
run_info(const uint8_t *data, size_t size)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	sp_status	st;

	fz_ctx_init(&ctx, 0, 0);
	st = sp_delta_info_mem(&ctx, data, size, &info);
	fz_check_error(&ctx, st);
	if (st == SP_OK)
	{
		check_info(&ctx, &info);
		sp_info_free(&ctx, &info);
	}
}

/* sp_delta_apply_mem against the base with a fault plan; returns the status. */
static sp_status
run_apply(const uint8_t *data, size_t size, unsigned long fail_at, unsigned long cancel_at)
{
	sp_ctx		ctx;
	size_t		base_len,
				out_len = 0;
	const uint8_t *base = pick_base(data, size, &base_len);
	void	   *out = NULL;
	sp_status	st;

	fz_ctx_init(&ctx, fail_at, cancel_at);
	st = sp_delta_apply_mem(&ctx, base, base_len, data, size, FZ_MAX_OUT, &out, &out_len);
	fz_check_error(&ctx, st);
	if (st == SP_OK)
	{
		if (out == NULL && out_len > 0)
			fz_die("SP_OK with a NULL result", &ctx);
		if (out_len > FZ_MAX_OUT)
			fz_die("result larger than max_out", &ctx);
		fz_free(NULL, out);
	}
	return st;
}

/* FNV-1a hash of the input: picks the faulted allocation and poll. */
static uint64_t
input_hash(const uint8_t *data, size_t size)
{
	uint64_t	h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h;
}

/* Re-run the apply with one failing allocation and with a cancel. */
static void
run_faults(const uint8_t *data, size_t size, sp_status clean)
{
	unsigned long n_alloc = fz_plan.n_alloc,
				n_poll = fz_plan.n_poll;
	uint64_t	h = input_hash(data, size);
	sp_status	st;
	sp_ctx		dummy;

	sp_ctx_init(&dummy);
	if (h % 4 != 0)
		return;					/* one input in four: each apply costs ~16 MiB of buffers */
	if (n_alloc > 0)
	{
		st = run_apply(data, size, 1 + h % n_alloc, 0);
		if (clean == SP_OK ? st != SP_ERR_NOMEM : st == SP_OK)
			fz_die("a failed allocation did not make the apply fail with SP_ERR_NOMEM", &dummy);
	}
	if (n_poll > 0)
	{
		st = run_apply(data, size, 0, 1 + (h >> 32) % n_poll);
		if (clean == SP_OK ? st != SP_ERR_CANCELLED : st == SP_OK)
			fz_die("an interrupt did not make the apply fail with SP_ERR_CANCELLED", &dummy);
	}
}

/* Write len bytes to path; abort on failure (seed mode only). */
static void
write_file(const char *path, const void *p, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* Read a whole small file (malloc'ed); NULL if unreadable or too big. */
static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *p = f ? malloc(1 << 20) : NULL;

	*len = p ? fread(p, 1, 1 << 20, f) : 0;
	if (f)
		fclose(f);
	return p;
}

/* Compress every file of DIR/roundtrip against the base into DIR/delta_apply. */
static void
write_delta_seeds(const char *dir)
{
	char		in_dir[4096],
				path[8192];
	size_t		base_len;
	const uint8_t *base = fz_base(&base_len);
	DIR		   *d;
	struct dirent *e;

	snprintf(in_dir, sizeof(in_dir), "%s/roundtrip", dir);
	if ((d = opendir(in_dir)) == NULL)
	{
		perror(in_dir);
		exit(1);
	}
	while ((e = readdir(d)) != NULL)
	{
		sp_ctx		ctx;
		size_t		ft_len,
					out_len;
		void	   *out;
		uint8_t    *ft;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", in_dir, e->d_name);
		if ((ft = read_file(path, &ft_len)) == NULL)
			continue;
		sp_ctx_init(&ctx);
		if (sp_delta_compress_mem(&ctx, base, base_len, ft, ft_len, 3, FZ_MAX_OUT,
								  &out, &out_len) == SP_OK)
		{
			snprintf(path, sizeof(path), "%s/delta_apply/%s.delta", dir, e->d_name);
			write_file(path, out, out_len);
			ctx.hooks.free(ctx.hooks.user, out);
		}
		else
			fprintf(stderr, "seed %s: %s\n", e->d_name, ctx.err.msg);
		free(ft);
	}
	closedir(d);
}

/* Append a Thrift compact i32 field (field id one past the last) of value v < 2^20. */
static size_t
pq_i32(uint8_t *p, uint32_t v)
{
	size_t		n = 0;

	p[n++] = 0x15;
	for (v <<= 1; v > 0x7f; v >>= 7)
		p[n++] = (uint8_t) ((v & 0x7f) | 0x80);
	p[n++] = (uint8_t) v;
	return n;
}

/*
 * A small Parquet file of the CSV parent's text in two zstd pages (level
 * 3), each behind a PageHeader (type, sizes), and a one-field footer.
 */
static uint8_t *
ds_zstd_parquet(size_t *len)
{
	size_t		tlen,
				cap = 64 + 2 * (ZSTD_compressBound(DS_ROWS * 64) + 16),
				n = 4;
	const uint8_t *text = ds_parent(0, &tlen);
	uint8_t    *p = malloc(cap);

	if (p == NULL)
		abort();
	memcpy(p, "PAR1", 4);
	for (int k = 0; k < 2; k++)
	{
		size_t		half = k == 0 ? tlen / 2 : tlen - tlen / 2;
		uint8_t		z[8192 + DS_ROWS * 64];
		size_t		zn = ZSTD_compress(z, sizeof(z), text + (k ? tlen / 2 : 0), half, 3);

		if (ZSTD_isError(zn) || n + 32 + zn > cap)
			abort();
		n += pq_i32(p + n, 0);
		n += pq_i32(p + n, (uint32_t) half);
		n += pq_i32(p + n, (uint32_t) zn);
		p[n++] = 0;
		memcpy(p + n, z, zn);
		n += zn;
	}
	memcpy(p + n, "\x15\x02\x00\x03\x00\x00\x00PAR1", 11);
	*len = n + 11;
	return p;
}

/*
 * One dataset seed: parent k against derived (dlen bytes, named with ext),
 * compressed in tmp, into DIR/delta_apply/dataset_TAG.delta.
 */
static void
write_seed(const char *dir, const char *tmp, const char *tag, int k, const void *derived,
		   size_t dlen, const char *ext)
{
	size_t		plen,
				len;
	const uint8_t *parent = ds_parent(k, &plen);
	char		bpath[4096],
				dpath[4096],
				out[4096],
				seed[4096];
	sp_ctx		ctx;
	sp_compress_result res;
	uint8_t    *delta;

	snprintf(bpath, sizeof(bpath), "%s/parent.%s", tmp, ds_ext[k]);
	snprintf(dpath, sizeof(dpath), "%s/derived.%s", tmp, ext);
	snprintf(out, sizeof(out), "%s/seed.delta", tmp);
	write_file(bpath, parent, plen);
	write_file(dpath, derived, dlen);
	sp_ctx_init(&ctx);
	if (sp_dataset_compress(&ctx, bpath, dpath, out, 3, &res) != SP_OK)
	{
		fprintf(stderr, "dataset seed %s: %s\n", tag, ctx.err.msg);
		exit(1);
	}
	delta = read_file(out, &len);
	snprintf(seed, sizeof(seed), "%s/delta_apply/dataset_%s.delta", dir, tag);
	write_file(seed, delta, len);
	free(delta);
	unlink(out);
	unlink(bpath);
	unlink(dpath);
}

/* One dataset seed: parent k against derived rows ids/edits. */
static void
write_dataset_seed(const char *dir, const char *tmp, const char *tag, int k, const int *ids,
				   const int *edits, int n)
{
	size_t		dlen;
	char	   *derived = ds_text(k, ids, edits, n, &dlen);

	write_seed(dir, tmp, tag, k, derived, dlen, ds_ext[k]);
	free(derived);
}

/* The Parquet seed: zstd pages against the CSV parent (no parent pages). */
static void
write_parquet_seed(const char *dir, const char *tmp)
{
	size_t		dlen;
	uint8_t    *derived = ds_zstd_parquet(&dlen);

	write_seed(dir, tmp, "parquet_zstd", 0, derived, dlen, "parquet");
	free(derived);
}

/* The six dataset seeds, made in a temporary directory. */
static void
write_dataset_seeds(const char *dir)
{
	char		tmp[] = "/tmp/sparse-seeds-XXXXXX";
	int			ids[DS_ROWS + 3],
				edits[DS_ROWS + 3],
				n = 0;

	if (mkdtemp(tmp) == NULL)
	{
		perror("mkdtemp");
		exit(1);
	}
	/* rows edited, removed and added */
	for (int i = 0; i < DS_ROWS + 3; i++)
		if (i != 20)
		{
			ids[n] = i;
			edits[n++] = i == 10 || i == 41 ? DS_VALUE : DS_SAME;
		}
	write_dataset_seed(dir, tmp, "csv_edit", 0, ids, edits, n);
	write_dataset_seed(dir, tmp, "jsonl_edit", 1, ids, edits, n);
	/* odd rows, in reverse order */
	n = 0;
	for (int i = DS_ROWS - 1; i > 0; i -= 2)
	{
		ids[n] = i;
		edits[n++] = DS_SAME;
	}
	write_dataset_seed(dir, tmp, "json_array_subset", 2, ids, edits, n);
	/* a column added to every row */
	for (int i = 0; i < DS_ROWS; i++)
	{
		ids[i] = i;
		edits[i] = DS_COLUMN;
	}
	write_dataset_seed(dir, tmp, "csv_column", 0, ids, edits, DS_ROWS);
	/* every answer rewritten around its old lines */
	for (int i = 0; i < DS_ROWS; i++)
		edits[i] = DS_TEXT;
	write_dataset_seed(dir, tmp, "jsonl_text", 3, ids, edits, DS_ROWS);
	/* every score changed and rows appended: numbers as differences (numeric layout) */
	for (int i = 0; i < DS_ROWS + 3; i++)
	{
		ids[i] = i;
		edits[i] = DS_VALUE;
	}
	write_dataset_seed(dir, tmp, "csv_numbers", 0, ids, edits, DS_ROWS + 3);
	write_parquet_seed(dir, tmp);
	rmdir(tmp);
}

/* Seed mode: write variants and their deltas under $SPARSE_FUZZ_SEEDS, exit. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fz_seed_dir("roundtrip");
	char		path[4096];

	(void) argc;
	(void) argv;
	if (dir == NULL || fz_seed_dir("delta_apply") == NULL)
		return 0;
	for (int k = 0; k < FZ_N_VARIANTS; k++)
	{
		size_t		len;
		uint8_t    *v = fz_variant(k, &len);

		snprintf(path, sizeof(path), "%s/roundtrip/variant_%d.safetensors", dir, k);
		write_file(path, v, len);
		free(v);
	}
	write_delta_seeds(dir);
	write_dataset_seeds(dir);
	exit(0);
}

/* Decode a delta from the fuzzer, as is and with its checksums fixed. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *fixed;
	sp_status	st;

	run_info(data, size);
	if ((fixed = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(fixed, data, size);
	if (fz_fix_checksums(fixed, size) > 0 && memcmp(fixed, data, size) != 0)
	{
		run_apply(data, size, 0, 0);
		run_info(fixed, size);
	}
	st = run_apply(fixed, size, 0, 0);
	run_faults(fixed, size, st);
	free(fixed);
	return 0;
}
