/*
 * rt_util.c -- round-trip helpers shared by the test files (rt_util.h).
 *
 * The checks are split into one function per step (compress, apply,
 * compare, verify, info) so a failure names the step.  Each records
 * failures at the caller's file:line given to rt_roundtrip_at.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <xxhash.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

/* Fresh context with default hooks and no root. */
void
rt_ctx(sp_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	sp_ctx_init(ctx);
}

/* A new unique path in the test directory. */
char *
rt_unique(const char *stem, const char *suffix)
{
	static int	counter;

	return t_fmt("%s/%s-%d%s", t_dir(), stem, ++counter, suffix);
}

/* True if path is a directory. */
bool
rt_is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Entries of directory dir (not . or ..), or -1 if it cannot be listed. */
int
rt_entries(const char *dir)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	int			n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

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

/* Append the relative names of the regular files under dir to names. */
static void
collect_files(const char *dir, const char *prefix, char ***names, size_t *n,
			  size_t *cap)
{
	size_t		k;
	char	  **list = fh_list(dir, &k);

	for (size_t i = 0; i < k; i++)
	{
		char	   *rel = prefix[0] ? t_fmt("%s/%s", prefix, list[i]) : list[i];
		char	   *full = t_fmt("%s/%s", dir, list[i]);

		if (rt_is_dir(full))
		{
			collect_files(full, rel, names, n, cap);
			continue;
		}
		if (*n == *cap)
		{
			*cap = *cap ? *cap * 2 : 16;
			*names = realloc(*names, *cap * sizeof(char *));
		}
		(*names)[(*n)++] = rel;
	}
}

/* qsort comparator: byte order, as "LC_ALL=C sort" does. */
static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * SHA-256 of a directory's manifest, computed independently of the core:
 * the lines "<sha256 hex>  <relative name>\n" that sha256sum prints, one
 * per regular file, in byte order of the names.  *files gets the count.
 */
static void
manifest_sha256(const char *dir, char hex[65], size_t *files)
{
	char	  **names = NULL;
	size_t		n = 0,
				cap = 0;
	char	   *text = t_fmt("%s", "");

	collect_files(dir, "", &names, &n, &cap);
	if (names != NULL)
		qsort(names, n, sizeof(char *), cmp_name);
	for (size_t i = 0; i < n; i++)
	{
		char		h[65];

		fh_sha256(t_fmt("%s/%s", dir, names[i]), h);
		text = t_fmt("%s%s  %s\n", text, h, names[i]);
	}
	free(names);
	fh_sha256_mem(text, strlen(text), hex);
	*files = n;
}

/* Compress and check the compress result. */
static bool
rt_compress(const char *file, int line, const char *base, const char *ft,
			int level, rt_result *r)
{
	sp_ctx		ctx;
	sp_status	st;
	int64_t		size;

	rt_ctx(&ctx);
	st = sp_delta_compress(&ctx, base, ft, r->delta, level, &r->cres);
	if (st != SP_OK)
	{
		t_fail(file, line, "compress %s -> %s: %s: %s", base, ft,
			   sp_status_name(st), ctx.err.msg);
		return false;
	}
	size = fh_size(r->delta);
	r->delta_bytes = (uint64_t) size;
	if (size < 0 || r->cres.delta_bytes != (uint64_t) size ||
		r->cres.ft_bytes != r->ft_bytes)
		t_fail(file, line, "compress result: delta_bytes %llu (file %lld), "
			   "ft_bytes %llu (expected %llu)",
			   (unsigned long long) r->cres.delta_bytes, (long long) size,
			   (unsigned long long) r->cres.ft_bytes,
			   (unsigned long long) r->ft_bytes);
	if (strcmp(r->cres.delta_path, r->delta) != 0)
		t_fail(file, line, "delta_path \"%s\", expected \"%s\"",
			   r->cres.delta_path, r->delta);
	return true;
}

/* Apply and compare with ft; check the digests. */
static bool
rt_apply(const char *file, int line, const char *base, const char *ft,
		 rt_result *r)
{
	sp_ctx		ctx;
	sp_status	st;
	char		hex[65];
	bool		dir = rt_is_dir(ft);

	rt_ctx(&ctx);
	st = sp_delta_apply(&ctx, base, r->delta, r->out, &r->ares);
	if (st != SP_OK)
	{
		t_fail(file, line, "apply %s: %s: %s", r->delta, sp_status_name(st),
			   ctx.err.msg);
		return false;
	}
	if (dir ? !fh_same_tree(ft, r->out) : !fh_same(ft, r->out))
	{
		t_fail(file, line, "rebuilt %s differs from %s", r->out, ft);
		return false;
	}
	if (strcmp(r->ares.sha256, r->cres.ft_sha256) != 0 || !r->ares.verified)
		t_fail(file, line, "apply sha256 %s verified %d, compress ft_sha256 %s",
			   r->ares.sha256, r->ares.verified, r->cres.ft_sha256);
	if (dir)
		manifest_sha256(ft, hex, &r->ft_files);
	else
	{
		fh_sha256(ft, hex);
		r->ft_files = 1;
	}
	if (strcmp(hex, r->ares.sha256) != 0)
		t_fail(file, line, "apply sha256 %s, sha256 of ft%s %s", r->ares.sha256,
			   dir ? "'s manifest" : "", hex);
	if (r->ares.bytes != r->ft_bytes)
		t_fail(file, line, "apply bytes %llu, expected %llu",
			   (unsigned long long) r->ares.bytes,
			   (unsigned long long) r->ft_bytes);
	if (strcmp(r->ares.out_path, r->out) != 0)
		t_fail(file, line, "out_path \"%s\", expected \"%s\"", r->ares.out_path,
			   r->out);
	return true;
}

/* sp_delta_verify must pass with the same digest. */
static void
rt_verify(const char *file, int line, const char *base, rt_result *r)
{
	sp_ctx		ctx;
	sp_apply_result v;
	sp_status	st;

	rt_ctx(&ctx);
	memset(&v, 0, sizeof(v));
	st = sp_delta_verify(&ctx, base, r->delta, &v);
	if (st != SP_OK)
		t_fail(file, line, "verify: %s: %s", sp_status_name(st), ctx.err.msg);
	else if (!v.verified || strcmp(v.sha256, r->cres.ft_sha256) != 0 ||
			 v.bytes != r->ft_bytes)
		t_fail(file, line, "verify: verified %d sha %s bytes %llu", v.verified,
			   v.sha256, (unsigned long long) v.bytes);
}

/* Check one info row against the file it names under root (or ft itself). */
static void
rt_check_row(const char *file, int line, const char *path,
			 const sp_info_row *row, uint64_t *delta_sum)
{
	char		hex[65];

	if (!fh_exists(path) || !fh_sha256(path, hex))
	{
		t_fail(file, line, "info row \"%s\": no such file %s", row->name, path);
		return;
	}
	if (row->bytes != (uint64_t) fh_size(path) || strcmp(row->sha256, hex) != 0)
		t_fail(file, line, "info row \"%s\": bytes %llu sha %s, file has %lld %s",
			   row->name, (unsigned long long) row->bytes, row->sha256,
			   (long long) fh_size(path), hex);
	if (row->method == NULL ||
		(strcmp(row->method, "tensor-delta") != 0 && strcmp(row->method, "zstd-ref") != 0 &&
		 strcmp(row->method, "zstd") != 0 && strcmp(row->method, "copy") != 0))
		t_fail(file, line, "info row \"%s\": method %s", row->name,
			   row->method ? row->method : "NULL");
	*delta_sum += row->delta_bytes;
}

/* sp_delta_info lists ft (one row) or every file of the ft directory. */
static void
rt_info(const char *file, int line, const char *ft, rt_result *r)
{
	sp_ctx		ctx;
	sp_info		info = {0};
	sp_status	st;
	bool		dir = rt_is_dir(ft);
	uint64_t	delta_sum = 0,
				bytes_sum = 0;

	rt_ctx(&ctx);
	st = sp_delta_info(&ctx, r->delta, &info);
	if (st != SP_OK)
	{
		t_fail(file, line, "info: %s: %s", sp_status_name(st), ctx.err.msg);
		return;
	}
	if (info.n != r->ft_files)
		t_fail(file, line, "info: %zu rows, ft has %zu files", info.n, r->ft_files);
	if (!dir && info.n == 1 && strcmp(info.rows[0].name, strrchr(ft, '/') ? strrchr(ft, '/') + 1 : ft) != 0)
		t_fail(file, line, "info: row named \"%s\" for \"%s\"", info.rows[0].name, ft);
	for (size_t i = 0; i < info.n; i++)
	{
		rt_check_row(file, line, dir ? t_fmt("%s/%s", ft, info.rows[i].name) : ft,
					 &info.rows[i], &delta_sum);
		bytes_sum += info.rows[i].bytes;
	}
	if (bytes_sum != r->ft_bytes)
		t_fail(file, line, "info: rows add up to %llu bytes, ft has %llu",
			   (unsigned long long) bytes_sum, (unsigned long long) r->ft_bytes);
	if (delta_sum > r->delta_bytes)
		t_fail(file, line, "info: rows spend %llu delta bytes, delta has %llu",
			   (unsigned long long) delta_sum, (unsigned long long) r->delta_bytes);
	sp_info_free(&ctx, &info);
}

/* Worker of rt_roundtrip. */
bool
rt_roundtrip_at(const char *file, int line, const char *base, const char *ft,
				int level, rt_result *r)
{
	int			fails = t_fail_count();

	memset(r, 0, sizeof(*r));
	r->delta = rt_unique("rt", ".delta");
	r->out = rt_unique("rt", rt_is_dir(ft) ? ".out" : ".safetensors");
	r->ft_bytes = tree_bytes(ft);
	if (!rt_compress(file, line, base, ft, level, r) ||
		!rt_apply(file, line, base, ft, r))
		return false;
	rt_verify(file, line, base, r);
	rt_info(file, line, ft, r);
	r->ok = t_fail_count() == fails;
	return r->ok;
}

/* ---- counting hooks that note calls off the caller's thread -------------- */

/* Count a hook call made from a thread other than the context's maker. */
static void
dh_thread_check(ds_hooks *h)
{
	if (!pthread_equal(pthread_self(), h->owner))
		__atomic_add_fetch(&h->foreign, 1, __ATOMIC_RELAXED);
}

/* alloc hook: fails every call after fail_after (or only the next one). */
static void *
dh_alloc(void *user, size_t size)
{
	ds_hooks   *h = user;
	void	   *p;

	dh_thread_check(h);
	if (h->fail_after >= 0 &&
		(h->fail_once ? h->allocs == h->fail_after : h->allocs >= h->fail_after))
	{
		h->allocs++;
		return NULL;
	}
	h->allocs++;
	if ((p = malloc(size)) != NULL)
		h->live++;
	return p;
}

/* free hook. */
static void
dh_free(void *user, void *p)
{
	ds_hooks   *h = user;

	dh_thread_check(h);
	if (p != NULL)
	{
		h->live--;
		free(p);
	}
}

/* interrupted hook: 1 from the cancel_at-th poll on. */
static int
dh_interrupted(void *user)
{
	ds_hooks   *h = user;

	dh_thread_check(h);
	h->polls++;
	return h->cancel_at >= 0 && h->polls >= h->cancel_at;
}

/* A context with the hooks above. */
void
dh_ctx(sp_ctx *ctx, ds_hooks *h, long fail_after, long cancel_at)
{
	memset(h, 0, sizeof(*h));
	h->fail_after = fail_after;
	h->cancel_at = cancel_at;
	h->owner = pthread_self();
	rt_ctx(ctx);
	ctx->hooks.alloc = dh_alloc;
	ctx->hooks.free = dh_free;
	ctx->hooks.interrupted = dh_interrupted;
	ctx->hooks.user = h;
}

/* Write a one-tensor BF16 pair (see rt_util.h). */
bool
rt_write_bf16_pair(const char *base, const char *ft, size_t nel, uint64_t seed, uint16_t mask)
{
	uint16_t   *bd = malloc(nel * 2),
			   *fd = malloc(nel * 2);
	stw_tensor	bt = {0},
				t = {0};
	bool		ok;

	if (bd == NULL || fd == NULL)
	{
		free(bd);
		free(fd);
		return false;
	}
	for (size_t i = 0; i < nel; i++)
	{
		bd[i] = (uint16_t) (0x3c00 + (fh_rand(&seed) & 0x3ff));
		fd[i] = (uint16_t) (bd[i] ^ (fh_rand(&seed) & mask));
	}
	bt.name = t.name = "w";
	bt.dtype = t.dtype = "BF16";
	stw_shape(&bt, 1, (uint64_t) nel);
	stw_shape(&t, 1, (uint64_t) nel);
	bt.data = bd;
	t.data = fd;
	bt.len = t.len = nel * 2;
	ok = stw_write(base, &bt, 1, NULL) && stw_write(ft, &t, 1, NULL);
	free(bd);
	free(fd);
	return ok;
}

/* Offset of the first chunk record of kind (and transform, unless -1) in a delta in memory; 0 if none. */
size_t
rt_find_chunk(const uint8_t *d, size_t len, int kind, int transform, size_t *plen)
{
	size_t		pos = 16;

	while (pos + 16 <= len)
	{
		size_t		n = (size_t) d[pos + 4] | (size_t) d[pos + 5] << 8 |
			(size_t) d[pos + 6] << 16 | (size_t) d[pos + 7] << 24;

		if (n > len - pos - 16)
			return 0;
		if (d[pos] == 3 && n > 40 && d[pos + 8] == kind && (transform < 0 || d[pos + 9] == transform))
		{
			*plen = n;
			return pos;
		}
		pos += 16 + n;
	}
	return 0;
}

/* Recompute the XXH3-64 of the record at pos (payload length plen). */
void
rt_fix_record_sum(uint8_t *d, size_t pos, size_t plen)
{
	uint64_t	sum = XXH3_64bits(d + pos, 8 + plen);

	for (int i = 0; i < 8; i++)
		d[pos + 8 + plen + (size_t) i] = (uint8_t) (sum >> (8 * i));
}
