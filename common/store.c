/*
 * store.c -- the file side of hub storage jobs, shared by the PostgreSQL
 * trigger and sparse_run_jobs, the SQLite ones and the `sparse worker` CLI.
 *
 * A hub row (a model or a dataset, with the path of its files and of its
 * base) is decided with sp_store_estimate (the kind's own estimator, or the
 * size alone when there is no base), and a 'delta' decision is carried out
 * by sp_store_run: clear what an earlier, interrupted attempt left at the
 * delta's path, compress with the kind's compressor, then rebuild the delta
 * in memory (sp_delta_verify) and require the rebuilt digest to equal the
 * SHA-256 compress recorded.  A delta that does not verify is removed, so a
 * job either leaves one verified delta at its path or nothing.
 *
 * The delta's path is a pure function of the object (sp_store_delta_path),
 * so every worker that takes over a job writes to the same place, and
 * sp_store_clear can remove a dead worker's temporary file and an
 * unrecorded delta there.  sp_store_clear only removes files that are
 * sparse deltas or sparse temporaries: a wrong setting cannot make it
 * delete a model.
 */
#include "sparse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "files.h"
#include "util.h"

#define DELTA_SUFFIX ".sdelta"
#define TMP_MARK ".sparse-tmp-"
#define ID_ENC_MAX 160			/* encoded object id kept whole up to this */

/* Parse "model" or "dataset". */
sp_status
sp_kind_parse(sp_ctx *ctx, const char *s, sp_kind *kind)
{
	sp_clear_error(ctx);
	if (s && strcmp(s, "model") == 0)
		*kind = SP_KIND_MODEL;
	else if (s && strcmp(s, "dataset") == 0)
		*kind = SP_KIND_DATASET;
	else
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "kind must be 'model' or 'dataset', not '%s'",
					   s ? s : "(null)");
	return SP_OK;
}

/* "model" or "dataset". */
const char *
sp_kind_name(sp_kind kind)
{
	return kind == SP_KIND_DATASET ? "dataset" : "model";
}

/* Total size of a file, or of every regular file under a directory. */
sp_status
sp_path_bytes(sp_ctx *ctx, const char *path, uint64_t *bytes)
{
	sp_fileset	fs;
	sp_status	rc;

	sp_clear_error(ctx);
	*bytes = 0;
	memset(&fs, 0, sizeof(fs));
	if ((rc = sp_fileset_open(ctx, path, &fs)) != SP_OK)
		return rc;
	for (size_t i = 0; i < fs.n; i++)
		*bytes += fs.f[i].size;
	sp_fileset_close(ctx, &fs);
	return SP_OK;
}

/* Estimate the savings of storing path as a delta against base (NULL: none). */
sp_status
sp_store_estimate(sp_ctx *ctx, sp_kind kind, const char *base, const char *path,
				  sp_store_est *out)
{
	double		t0 = sp_now_ms();
	sp_status	rc;

	memset(out, 0, sizeof(*out));
	if (base == NULL)
	{
		rc = sp_path_bytes(ctx, path, &out->original_bytes);
		out->est_delta_bytes = out->original_bytes;
	}
	else if (kind == SP_KIND_MODEL)
	{
		sp_estimate e;

		if ((rc = sp_delta_estimate(ctx, base, path, 0.01, &e)) == SP_OK)
		{
			out->original_bytes = e.ft_bytes;
			out->est_delta_bytes = e.est_delta_bytes;
			out->savings_pct = e.savings_pct;
		}
	}
	else
	{
		sp_dataset_est e;

		if ((rc = sp_dataset_estimate(ctx, base, path, 1000, &e)) == SP_OK)
		{
			out->original_bytes = e.derived_bytes;
			out->est_delta_bytes = e.est_delta_bytes;
			out->savings_pct = e.savings_pct;
		}
	}
	out->elapsed_ms = sp_now_ms() - t0;
	return rc;
}

/*
 * Append the object id to out with every byte outside [A-Za-z0-9_-] as
 * %XX, so no id can name a directory, "..", or a hidden file; an id whose
 * encoding is long keeps a prefix and adds the XXH3 of the whole id.
 */
static void
encode_id(const char *id, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		n = 0;

	for (const unsigned char *p = (const unsigned char *) id; *p && n + 3 < cap; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '_' || *p == '-')
			out[n++] = (char) *p;
		else
		{
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	if (n > ID_ENC_MAX)
		snprintf(out + ID_ENC_MAX - 17, cap - (ID_ENC_MAX - 17), "~%016llx",
				 (unsigned long long) XXH3_64bits(id, strlen(id)));
}

/*
 * Where the delta of an object goes: with dir empty, next to the original
 * ("PATH.sdelta", a trailing slash of a directory dropped); else
 * "DIR/KIND-ID.sdelta" with the id encoded by encode_id.
 */
sp_status
sp_store_delta_path(sp_ctx *ctx, const char *dir, sp_kind kind, const char *object_id,
					const char *path, char out[SP_PATH_MAX])
{
	char		enc[3 * ID_ENC_MAX + 4];
	size_t		n;
	int			w;

	sp_clear_error(ctx);
	out[0] = '\0';
	if (dir == NULL || dir[0] == '\0')
	{
		if (path == NULL || path[0] == '\0')
			return sp_fail(ctx, SP_ERR_INVALID_ARG, "path must not be empty");
		n = strlen(path);
		while (n > 1 && path[n - 1] == '/')
			n--;
		w = snprintf(out, SP_PATH_MAX, "%.*s%s", (int) n, path, DELTA_SUFFIX);
	}
	else
	{
		if (object_id == NULL || object_id[0] == '\0')
			return sp_fail(ctx, SP_ERR_INVALID_ARG, "object id must not be empty");
		encode_id(object_id, enc, sizeof(enc));
		n = strlen(dir);
		while (n > 1 && dir[n - 1] == '/')
			n--;
		w = snprintf(out, SP_PATH_MAX, "%.*s/%s-%s%s", (int) n, dir, sp_kind_name(kind), enc,
					 DELTA_SUFFIX);
	}
	if (w < 0 || w >= SP_PATH_MAX)
	{
		out[0] = '\0';
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "delta path would exceed %d bytes", SP_PATH_MAX - 1);
	}
	return SP_OK;
}

/*
 * Is the file name of dirfd a regular file that starts with the delta
 * magic?  Symlinks are refused (O_NOFOLLOW), and O_NONBLOCK keeps a FIFO
 * planted there from blocking the open.
 */
static bool
is_delta_file(int dirfd, const char *name)
{
	char		magic[8];
	int			fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	bool		ok;

	if (fd < 0)
		return false;
	ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		read(fd, magic, 8) == 8 && memcmp(magic, "SPRSDLT", 8) == 0;
	close(fd);
	return ok;
}

/* Remove every ".NAME.sparse-tmp-*" regular file in dirfd; count them. */
static sp_status
remove_temps(sp_ctx *ctx, int dirfd, const char *dir, const char *name, int *removed)
{
	char		prefix[256];
	int			fd2 = dup(dirfd);
	DIR		   *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	struct dirent *e;
	size_t		pn;

	/* the same cut to 200 bytes as tmp_name_for in files.c */
	pn = (size_t) snprintf(prefix, sizeof(prefix), ".%.200s%s", name, TMP_MARK);
	if (d == NULL)
	{
		if (fd2 >= 0)
			close(fd2);
		return sp_fail_io(ctx, errno, "could not list \"%s\"", dir);
	}
	while ((e = readdir(d)) != NULL)
	{
		struct stat st;

		if (strncmp(e->d_name, prefix, pn) != 0 || strlen(e->d_name) != pn + 6)
			continue;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd, e->d_name, 0) == 0)
			(*removed)++;
		else if (errno != ENOENT)
		{
			int			err = errno;

			closedir(d);
			return sp_fail_io(ctx, err, "could not remove \"%s/%s\"", dir, e->d_name);
		}
	}
	closedir(d);
	return SP_OK;
}

/*
 * Remove what an earlier attempt left at delta_path: temporary files of it
 * (a worker killed while writing), and a delta at the path itself (written
 * but never recorded).  A file there that is not a sparse delta is an
 * error, never removed.  The directory is resolved and checked against the
 * root like any output.
 */
sp_status
sp_store_clear(sp_ctx *ctx, const char *delta_path, int *removed)
{
	const char *slash = strrchr(delta_path, '/');
	const char *name = slash ? slash + 1 : delta_path;
	char		dirbuf[SP_PATH_MAX];
	char	   *dir = NULL;
	int			dirfd;
	sp_status	rc;

	sp_clear_error(ctx);
	*removed = 0;
	/* a cut path would name another directory: refuse it whole */
	if (strlen(delta_path) >= SP_PATH_MAX)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "delta path is longer than %d bytes", SP_PATH_MAX - 1);
	if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "\"%s\" does not name a file", delta_path);
	if (slash == NULL)
		strcpy(dirbuf, ".");
	else if (slash == delta_path)
		strcpy(dirbuf, "/");
	else
		snprintf(dirbuf, sizeof(dirbuf), "%.*s", (int) (slash - delta_path), delta_path);
	if ((rc = sp_path_input(ctx, dirbuf, &dir)) != SP_OK)
		return rc;
	/* opened as checked: under a root, a link swapped in since is refused */
	dirfd = sp_open_canon(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, sp_confined(ctx));
	if (dirfd < 0)
		rc = sp_fail_open(ctx, errno, "could not open directory", dir);
	else
	{
		rc = remove_temps(ctx, dirfd, dir, name, removed);
		if (rc == SP_OK && faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		{
			if (!is_delta_file(dirfd, name))
				rc = sp_fail(ctx, SP_ERR_EXISTS,
							 "\"%s/%s\" exists and is not a sparse delta; not removing it", dir, name);
			else if (unlinkat(dirfd, name, 0) != 0)
				rc = sp_fail_io(ctx, errno, "could not remove \"%s/%s\"", dir, name);
			else
				(*removed)++;
		}
		close(dirfd);
	}
	sp_free(ctx, dir);
	return rc;
}

/* Compress path against base into delta_path with the kind's compressor. */
static sp_status
store_compress(sp_ctx *ctx, sp_kind kind, const char *base, const char *path,
			   const char *delta_path, int level, sp_compress_result *res)
{
	if (kind == SP_KIND_DATASET)
		return sp_dataset_compress(ctx, base, path, delta_path, level, res);
	return sp_delta_compress(ctx, base, path, delta_path, level, res);
}

/*
 * Carry out a 'delta' decision: clear leftovers at delta_path, compress,
 * and rebuild the delta in memory to check it gives the SHA-256 compress
 * recorded for the original.  On any failure nothing is left at delta_path.
 */
sp_status
sp_store_run(sp_ctx *ctx, sp_kind kind, const char *base, const char *path,
			 const char *delta_path, int level, sp_compress_result *res)
{
	sp_apply_result check;
	int			removed;
	sp_status	rc;

	sp_clear_error(ctx);
	memset(res, 0, sizeof(*res));
	if (base == NULL || base[0] == '\0')
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "a delta needs a base path");
	if ((rc = sp_store_clear(ctx, delta_path, &removed)) != SP_OK)
		return rc;
	if ((rc = store_compress(ctx, kind, base, path, delta_path, level, res)) != SP_OK)
		return rc;
	rc = sp_delta_verify(ctx, base, res->delta_path, &check);
	if (rc == SP_OK && (!check.verified || strcmp(check.sha256, res->ft_sha256) != 0))
		rc = sp_fail(ctx, SP_ERR_VERIFY_FAILED,
					 "the delta \"%s\" rebuilds sha256 %s, the original has %s",
					 res->delta_path, check.sha256, res->ft_sha256);
	if (rc != SP_OK)
		unlink(res->delta_path);
	return rc;
}
