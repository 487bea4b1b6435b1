/*
 * files.c -- canonical paths, model file sets, positioned reads, atomic
 * outputs.
 *
 * Security: every path a caller names is resolved with realpath() before use
 * and, when ctx->root is set, must lie under the resolved root; files found
 * while walking a model directory are resolved too, so a symlink inside the
 * tree cannot lead outside the root.  Names read from a delta are checked by
 * sp_rel_name_ok before they become paths, so a hostile delta cannot write
 * outside its output directory.  Under a root, a checked path is then
 * opened by sp_open_canon, which refuses any symbolic link met on the way:
 * the path is canonical, so a link in it means a directory was swapped for
 * one after the check (a race to leave the root), and the open fails
 * instead of following it.  A file output is created, renamed into place,
 * fsynced and (on failure) removed through a descriptor of its checked
 * directory, opened the same way.
 *
 * Atomicity: a file output is written as ".NAME.sparse-tmp-XXXXXX" in the
 * destination directory, fsynced, and renamed with RENAME_NOREPLACE (falling
 * back to link+unlink), then the directory is fsynced.  A failure or cancel
 * unlinks the temporary file, so no partial output is ever visible; the
 * name goes first, and the descriptor of a large one is closed on a
 * detached thread (close_later), so a cancel does not wait for the kernel
 * to free gigabytes of pages.  A temporary directory's large files are
 * likewise held open while every name is removed, and closed on a
 * detached thread after (remove_tree, close_held).  A large output may be
 * written with O_DIRECT through two aligned stages (sp_out_direct): a full
 * one is written by a thread of its own (sp_stagew) while the caller fills
 * the other; its tail and any rewrite of bytes already on disk go through
 * the page cache, with O_DIRECT off.  Sequential reads ask the kernel to
 * read ahead (read_ahead).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* Is canonical path p equal to or below canonical root r? */
static bool
path_under(const char *p, const char *r)
{
	size_t		n = strlen(r);

	if (n == 1 && r[0] == '/')
		return true;
	return strncmp(p, r, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* Check a canonical path against ctx->root (resolved here). */
static sp_status
check_root(sp_ctx *ctx, const char *canon, const char *shown)
{
	char	   *root;
	bool		ok;

	if (ctx->root == NULL || ctx->root[0] == '\0')
		return SP_OK;
	root = realpath(ctx->root, NULL);
	if (root == NULL)
		return sp_fail_io(ctx, errno, "could not resolve root directory \"%s\"", ctx->root);
	ok = path_under(canon, root);
	free(root);
	if (!ok)
		return sp_fail(ctx, SP_ERR_OUTSIDE_ROOT,
					   "path \"%s\" is outside the allowed root \"%s\"", shown, ctx->root);
	return SP_OK;
}

/* Test hook: when set, sp_open_canon walks the path as on kernels without openat2. */
bool		sp_open_canon_walk_only = false;

/* Open the next component of a walk below dfd, refusing a symbolic link. */
static int
walk_step(int dfd, const char *name, int flags, mode_t mode, bool last)
{
	struct stat st;
	int			fd = last ? openat(dfd, name, flags | O_NOFOLLOW, mode)
		: openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	/* a link met as a directory reads ENOTDIR: say what it is, as openat2 does */
	if (fd < 0 && errno == ENOTDIR && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		S_ISLNK(st.st_mode))
		errno = ELOOP;
	return fd;
}

/* sp_open_canon without openat2: one component at a time from "/", with O_NOFOLLOW. */
static int
open_walk(const char *path, int flags, mode_t mode)
{
	char		buf[PATH_MAX];
	char	   *p = buf,
			   *slash;
	int			dfd,
				fd,
				err;

	if (path[0] != '/' || strlen(path) >= sizeof(buf))
		return errno = path[0] != '/' ? EINVAL : ENAMETOOLONG, -1;
	strcpy(buf, path);
	while (*p == '/')
		p++;
	if (*p == '\0')
		return open("/", flags, mode);
	if ((dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	for (;;)
	{
		bool		last;

		if ((slash = strchr(p, '/')) != NULL)
			*slash = '\0';
		last = slash == NULL || slash[1 + strspn(slash + 1, "/")] == '\0';
		fd = walk_step(dfd, p, flags, mode, last);
		err = errno;
		close(dfd);
		if (fd < 0 || last)
			return errno = err, fd;
		dfd = fd;
		for (p = slash + 1; *p == '/'; p++)
			;
	}
}

/*
 * Open a canonical absolute path (realpath's output or a name joined to it).
 * When confined (a root is set), every symbolic link on the way is refused,
 * the last component included: what opens is then the object the root
 * check saw, not one a concurrent process swapped a link in for (ELOOP).
 * openat2 with RESOLVE_NO_SYMLINKS does it in the kernel; on a kernel
 * without it (before 5.6, ENOSYS) or where a seccomp filter refuses it
 * (EPERM), the path is walked one component at a time with O_NOFOLLOW,
 * which gives the same guarantee.  Unconfined, links are followed as by
 * open(2): there is no root to leave.
 */
int
sp_open_canon(const char *path, int flags, mode_t mode, bool confined)
{
	struct open_how how = {.flags = (uint64_t) flags,
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	.resolve = RESOLVE_NO_SYMLINKS};
	long		fd = -1;

	if (!confined)
		return open(path, flags, mode);
	if (!sp_open_canon_walk_only)
	{
		fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return (int) fd;
	}
	return open_walk(path, flags, mode);
}

/* Is ctx confined to a root (sp_open_canon's confined)? */
bool
sp_confined(const sp_ctx *ctx)
{
	return ctx->root != NULL && ctx->root[0] != '\0';
}

/*
 * The failure of an open of a checked path: under a root, a symbolic link
 * that appeared in it since the check is refused as outside the root (the
 * swap is how a path would leave it).
 */
sp_status
sp_fail_open(sp_ctx *ctx, int err, const char *what, const char *path)
{
	if (err == ELOOP && sp_confined(ctx))
		return sp_fail(ctx, SP_ERR_OUTSIDE_ROOT,
					   "path \"%s\" changed after it was checked: a symbolic link appeared in it",
					   path);
	return sp_fail_io(ctx, err, "%s \"%s\"", what, path);
}

/*
 * Open the directory holding canonical path p with flags (by sp_open_canon)
 * and point *name at p's last component; -1 with errno on failure.
 */
static int
open_parent(const char *p, int flags, bool confined, const char **name)
{
	char		dir[PATH_MAX];
	const char *slash = strrchr(p, '/');

	if (slash == NULL || (size_t) (slash - p) >= sizeof(dir))
		return errno = EINVAL, -1;
	snprintf(dir, sizeof(dir), "%.*s", slash == p ? 1 : (int) (slash - p), p);
	*name = slash + 1;
	return sp_open_canon(dir, flags, 0, confined);
}

/* mkdir of a canonical path, through its parent opened by open_parent. */
static int
mkdir_canon(const char *path, mode_t mode, bool confined)
{
	const char *name;
	int			dfd = open_parent(path, O_PATH | O_DIRECTORY | O_CLOEXEC, confined, &name),
				rc,
				err;

	if (dfd < 0)
		return -1;
	rc = mkdirat(dfd, name, mode);
	err = errno;
	close(dfd);
	return errno = err, rc;
}

/* Rename within one directory, through a descriptor of it (dfd). */
static sp_status
rename_at(sp_ctx *ctx, int dfd, const char *from, const char *to, const char *fname,
		  const char *tname)
{
	if (renameat2(dfd, fname, dfd, tname, RENAME_NOREPLACE) == 0)
		return SP_OK;
	if (errno == EEXIST)
		return sp_fail(ctx, SP_ERR_EXISTS, "output \"%s\" already exists", to);
	if (errno != EINVAL && errno != ENOSYS)
		return sp_fail_io(ctx, errno, "could not rename \"%s\" to \"%s\"", from, to);
	/* file systems without RENAME_NOREPLACE: link() also refuses to replace */
	if (linkat(dfd, fname, dfd, tname, 0) != 0)
		return errno == EEXIST ? sp_fail(ctx, SP_ERR_EXISTS, "output \"%s\" already exists", to)
			: sp_fail_io(ctx, errno, "could not rename \"%s\" to \"%s\"", from, to);
	unlinkat(dfd, fname, 0);
	return SP_OK;
}

/* Make path absolute and resolve "." and ".." by text alone (malloc'd, or NULL). */
static char *
lexical_abs(const char *path)
{
	char		cwd[PATH_MAX];
	size_t		cap = strlen(path) + PATH_MAX + 2,
				n = 0;
	char	   *out = malloc(cap),
			   *tmp;
	char	   *save = NULL;

	if (out == NULL || (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL) ||
		(tmp = malloc(cap)) == NULL)
	{
		free(out);
		return NULL;
	}
	snprintf(tmp, cap, "%s/%s", path[0] == '/' ? "" : cwd, path);
	for (char *part = strtok_r(tmp, "/", &save); part; part = strtok_r(NULL, "/", &save))
	{
		if (strcmp(part, ".") == 0)
			continue;
		if (strcmp(part, "..") == 0)
		{
			while (n > 0 && out[--n] != '/')
				;
			continue;
		}
		n += (size_t) sprintf(out + n, "/%s", part);
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	free(tmp);
	return out;
}

/*
 * A path that does not resolve: with a root set, say "outside the root"
 * when its text already leads outside, so the error cannot be used to probe
 * which files exist beyond the root.
 */
static sp_status
fail_unresolved(sp_ctx *ctx, int err, const char *what, const char *path)
{
	if (ctx->root && ctx->root[0])
	{
		char	   *lex = lexical_abs(path),
				   *root = realpath(ctx->root, NULL),
				   *lroot = lexical_abs(ctx->root);
		bool		inside = lex && ((root && path_under(lex, root)) ||
									 (lroot && path_under(lex, lroot)));

		free(lex);
		free(root);
		free(lroot);
		if (!inside)
			return sp_fail(ctx, SP_ERR_OUTSIDE_ROOT,
						   "path \"%s\" is outside the allowed root \"%s\"", path, ctx->root);
	}
	return sp_fail_io(ctx, err, "%s \"%s\"", what, path);
}

/* Canonicalize an existing path and check it against the root. */
sp_status
sp_path_input(sp_ctx *ctx, const char *path, char **out)
{
	char	   *canon;

	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "path must not be empty");
	canon = realpath(path, NULL);
	if (canon == NULL)
		return fail_unresolved(ctx, errno, "could not open", path);
	if (check_root(ctx, canon, path) == SP_OK)
		*out = sp_strdup(ctx, canon);
	free(canon);
	return *out ? SP_OK : ctx->err.code;
}

/* Canonicalize a path that must not exist yet (its directory must). */
sp_status
sp_path_output(sp_ctx *ctx, const char *path, char **out)
{
	const char *slash;
	char	   *dir,
			   *canon_dir;
	const char *base;
	struct stat st;
	size_t		n;

	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "output path must not be empty");
	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "output path \"%s\" must name a file", path);
	n = slash ? (size_t) (slash - path) : 1;
	dir = strndup(slash ? (slash == path ? "/" : path) : ".", n ? n : 1);
	if (dir == NULL)
		return sp_fail(ctx, SP_ERR_NOMEM, "out of memory");
	canon_dir = realpath(dir, NULL);
	free(dir);
	if (canon_dir == NULL)
		return fail_unresolved(ctx, errno, "could not open directory of output", path);
	/* the root is checked before the output's existence, so that cannot be probed */
	if (check_root(ctx, canon_dir, path) == SP_OK)
	{
		*out = sp_alloc(ctx, strlen(canon_dir) + strlen(base) + 2);
		if (*out)
			sprintf(*out, "%s%s%s", canon_dir, strcmp(canon_dir, "/") ? "/" : "", base);
	}
	free(canon_dir);
	if (*out && lstat(*out, &st) == 0)
	{
		sp_free(ctx, *out);
		*out = NULL;
		return sp_fail(ctx, SP_ERR_EXISTS, "output \"%s\" already exists", path);
	}
	return *out ? SP_OK : ctx->err.code;
}

/* Is rel a safe relative name (no "..", not absolute, no empty part)? */
bool
sp_rel_name_ok(const char *rel)
{
	const char *p = rel;
	size_t		len = strlen(rel);
	int			parts = 0;

	if (len == 0 || len > SP_MAX_NAME || rel[0] == '/')
		return false;
	while (*p)
	{
		/* no deeper than a directory walk goes, so remove_tree reaches it all */
		const char *e = strchr(p, '/');
		size_t		n = e ? (size_t) (e - p) : strlen(p);

		if (++parts > SP_MAX_DEPTH + 1)
			return false;
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
		else
			break;
	}
	return rel[len - 1] != '/';
}

/* Append one file to a set being built. */
static sp_status
fileset_add(sp_ctx *ctx, sp_fileset *fs, size_t *cap, const char *rel,
			const char *path, uint64_t size)
{
	sp_file    *f;

	if (fs->n >= SP_MAX_FILES)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "directory \"%s\" holds more than %d files",
					   fs->path, SP_MAX_FILES);
	if (fs->n == *cap)
	{
		size_t		ncap = *cap ? *cap * 2 : 16;
		sp_file    *nf = sp_calloc(ctx, ncap, sizeof(sp_file));

		if (nf == NULL)
			return SP_ERR_NOMEM;
		if (fs->n)
			memcpy(nf, fs->f, fs->n * sizeof(sp_file));
		sp_free(ctx, fs->f);
		fs->f = nf;
		*cap = ncap;
	}
	f = &fs->f[fs->n];
	f->rel = sp_strdup(ctx, rel);
	f->path = path ? sp_strdup(ctx, path) : NULL;
	f->size = size;
	if (f->rel == NULL || (path && f->path == NULL))
	{
		sp_free(ctx, f->rel);
		sp_free(ctx, f->path);
		return SP_ERR_NOMEM;
	}
	fs->n++;
	return SP_OK;
}

/* Add one directory entry (file or subdirectory) found while walking. */
static sp_status walk_dir(sp_ctx *ctx, sp_fileset *fs, size_t *cap,
						  const char *dir, const char *prefix, int depth);

/* Handle one entry of a directory being walked. */
static sp_status
walk_entry(sp_ctx *ctx, sp_fileset *fs, size_t *cap, const char *full,
		   const char *rel, int depth)
{
	struct stat st;
	char	   *canon;
	sp_status	rc;

	if (lstat(full, &st) != 0)
		return sp_fail_io(ctx, errno, "could not stat \"%s\"", full);
	if (S_ISDIR(st.st_mode))
		return walk_dir(ctx, fs, cap, full, rel, depth + 1);
	if (S_ISLNK(st.st_mode) && (stat(full, &st) != 0 || !S_ISREG(st.st_mode)))
		return SP_OK;			/* dangling or directory links are skipped: no loops */
	if (!S_ISREG(st.st_mode))
		return SP_OK;
	/* a symlink (as in hub caches) is followed only if it stays under the root */
	canon = realpath(full, NULL);
	if (canon == NULL)
		return sp_fail_io(ctx, errno, "could not resolve \"%s\"", full);
	rc = check_root(ctx, canon, full);
	if (rc == SP_OK)
		rc = fileset_add(ctx, fs, cap, rel, canon, (uint64_t) st.st_size);
	free(canon);
	return rc;
}

/* Sort directory entry names bytewise for a deterministic order. */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Order files by relative name, bytewise (as sp_fileset_find expects). */
static int
cmp_file(const void *a, const void *b)
{
	return strcmp(((const sp_file *) a)->rel, ((const sp_file *) b)->rel);
}

/* Read and sort the names in one directory (malloc'd; freed by caller). */
static sp_status
list_dir(sp_ctx *ctx, const char *dir, char ***names, size_t *count)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	size_t		cap = 0;

	*names = NULL;
	*count = 0;
	if (d == NULL)
		return sp_fail_io(ctx, errno, "could not open directory \"%s\"", dir);
	while ((e = readdir(d)) != NULL)
	{
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (*count == cap)
		{
			char	  **nn = realloc(*names, (cap = cap ? cap * 2 : 32) * sizeof(char *));

			if (nn == NULL)
				break;
			*names = nn;
		}
		if (((*names)[*count] = strdup(e->d_name)) == NULL)
			break;
		(*count)++;
	}
	closedir(d);
	if (e != NULL)
	{
		for (size_t i = 0; i < *count; i++)
			free((*names)[i]);
		free(*names);
		*names = NULL;
		*count = 0;
		return sp_fail(ctx, SP_ERR_NOMEM, "out of memory listing \"%s\"", dir);
	}
	if (*count > 1)
		qsort(*names, *count, sizeof(char *), cmp_str);
	return SP_OK;
}

/* Add every file under dir (named prefix/...) to the set. */
static sp_status
walk_dir(sp_ctx *ctx, sp_fileset *fs, size_t *cap, const char *dir,
		 const char *prefix, int depth)
{
	char	  **names;
	size_t		count;
	sp_status	rc;

	if (depth > SP_MAX_DEPTH)
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "directory \"%s\" is nested too deeply", dir);
	rc = list_dir(ctx, dir, &names, &count);
	for (size_t i = 0; i < count; i++)
	{
		char		full[PATH_MAX],
					rel[PATH_MAX];

		if (rc == SP_OK)
		{
			snprintf(full, sizeof(full), "%s/%s", dir, names[i]);
			snprintf(rel, sizeof(rel), "%s%s%s", prefix, prefix[0] ? "/" : "", names[i]);
			if (strlen(rel) > SP_MAX_NAME || strlen(full) >= PATH_MAX - 1)
				rc = sp_fail(ctx, SP_ERR_INVALID_ARG, "path \"%s\" is too long", full);
			else if ((rc = sp_check_interrupt(ctx)) == SP_OK)
				rc = walk_entry(ctx, fs, cap, full, rel, depth);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

/* Open a model: one file, or every regular file under a directory. */
sp_status
sp_fileset_open(sp_ctx *ctx, const char *path, sp_fileset *fs)
{
	struct stat st;
	size_t		cap = 0;
	sp_status	rc;

	memset(fs, 0, sizeof(*fs));
	fs->fd = -1;
	if ((rc = sp_path_input(ctx, path, &fs->path)) != SP_OK)
		return rc;
	if (stat(fs->path, &st) != 0)
		return sp_fail_io(ctx, errno, "could not stat \"%s\"", path);
	if (S_ISDIR(st.st_mode))
	{
		fs->is_dir = true;
		rc = walk_dir(ctx, fs, &cap, fs->path, "", 0);
		/* "a/b" sorts after "a.json" bytewise but is walked first: sort the whole list */
		if (rc == SP_OK && fs->n > 1)
			qsort(fs->f, fs->n, sizeof(sp_file), cmp_file);
	}
	else if (S_ISREG(st.st_mode))
	{
		const char *slash = strrchr(fs->path, '/');

		rc = fileset_add(ctx, fs, &cap, slash ? slash + 1 : fs->path, fs->path,
						 (uint64_t) st.st_size);
	}
	else
		rc = sp_fail(ctx, SP_ERR_INVALID_ARG, "\"%s\" is not a regular file or directory", path);
	if (rc != SP_OK)
		sp_fileset_close(ctx, fs);
	return rc;
}

/* A one-file set over a buffer. */
sp_status
sp_fileset_mem(sp_ctx *ctx, const char *name, const void *buf, size_t len,
			   sp_fileset *fs)
{
	size_t		cap = 0;
	sp_status	rc;

	memset(fs, 0, sizeof(*fs));
	fs->fd = -1;
	fs->path = sp_strdup(ctx, name);
	if (fs->path == NULL)
		return SP_ERR_NOMEM;
	rc = fileset_add(ctx, fs, &cap, name, NULL, len);
	if (rc == SP_OK)
		fs->f[0].mem = buf;
	else
		sp_fileset_close(ctx, fs);
	return rc;
}

/* Release a file set. */
void
sp_fileset_close(sp_ctx *ctx, sp_fileset *fs)
{
	if (fs->fd >= 0)
		close(fs->fd);
	fs->fd = -1;
	for (size_t i = 0; i < fs->n; i++)
	{
		sp_free(ctx, fs->f[i].rel);
		sp_free(ctx, fs->f[i].path);
	}
	sp_free(ctx, fs->f);
	sp_free(ctx, fs->path);
	memset(fs, 0, sizeof(*fs));
	fs->fd = -1;
}

/* Size of the largest file of a set. */
uint64_t
sp_fileset_max_size(const sp_fileset *fs)
{
	uint64_t	m = 0;

	for (size_t i = 0; i < fs->n; i++)
		m = SP_MAX(m, fs->f[i].size);
	return m;
}

/* Index of the file named rel (binary search), or -1. */
long
sp_fileset_find(const sp_fileset *fs, const char *rel)
{
	size_t		lo = 0,
				hi = fs->n;

	while (lo < hi)				/* names are sorted bytewise */
	{
		size_t		mid = (lo + hi) / 2;
		int			c = strcmp(fs->f[mid].rel, rel);

		if (c == 0)
			return (long) mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Make sure fs->fd is open on file idx. */
static sp_status
fileset_fd(sp_ctx *ctx, sp_fileset *fs, size_t idx)
{
	if (fs->fd >= 0 && fs->fd_idx == idx)
		return SP_OK;
	if (fs->fd >= 0)
		close(fs->fd);
	fs->fd = sp_open_canon(fs->f[idx].path, O_RDONLY | O_CLOEXEC, 0, sp_confined(ctx));
	if (fs->fd < 0)
		return sp_fail_open(ctx, errno, "could not open", fs->f[idx].path);
	fs->fd_idx = idx;
	fs->ra_end = fs->ra_ahead = UINT64_MAX;	/* no run of reads yet */
	return SP_OK;
}

/*
 * After a read of [off, end) of the open file: when it continues the last
 * one, ask the kernel for the next SP_READ_AHEAD bytes once half of what
 * was asked for is used, so a stream (the delta in apply, the fine-tune in
 * compress, the base of a same-layout pair) finds its bytes read from disk
 * ahead of it instead of waiting for each (on this project's VM, apply of
 * the 2 GB pair with the delta not in the page cache took 2.28 and 2.82 s
 * with this and 2.81-3.23 s in three runs without).  Asked in SP_READ_AHEAD_STEP pieces: the
 * kernel reads at most its read-ahead or device request size per hint
 * (4 MiB here) and drops the rest.  A read elsewhere starts a new run, and
 * only a run of SP_READ_AHEAD_RUN bytes asks: sampled windows (the
 * estimate reads 64 KiB ones, some right after a header) never make the
 * kernel read more than they do (with every run of two reads asking, the
 * estimate of the 14 GB pair asked for 14 GB and took 24.3 s; 0.3-0.6 s
 * with this rule).
 */
static void
read_ahead(sp_fileset *fs, uint64_t off, uint64_t end)
{
	uint64_t	size = fs->f[fs->fd_idx].size;

	if (off != fs->ra_end)
	{
		fs->ra_start = off;		/* a new run */
		fs->ra_ahead = 0;
	}
	fs->ra_end = end;
	if (end - fs->ra_start < SP_READ_AHEAD_RUN || end + SP_READ_AHEAD / 2 <= fs->ra_ahead)
		return;
	fs->ra_ahead = SP_MAX(fs->ra_ahead, end);
	while (fs->ra_ahead < size && fs->ra_ahead < end + SP_READ_AHEAD)
	{
		uint64_t	n = SP_MIN(SP_READ_AHEAD_STEP, size - fs->ra_ahead);

		(void) posix_fadvise(fs->fd, (off_t) fs->ra_ahead, (off_t) n, POSIX_FADV_WILLNEED);
		fs->ra_ahead += n;
	}
}

/* Read exactly len bytes at off from file idx. */
sp_status
sp_fileset_read(sp_ctx *ctx, sp_fileset *fs, size_t idx, uint64_t off,
				void *buf, size_t len)
{
	sp_file    *f = &fs->f[idx];
	size_t		done = 0;

	if (off > f->size || len > f->size - off)
		return sp_fail(ctx, SP_ERR_INTERNAL, "read past the end of \"%s\"", f->rel);
	if (f->mem)
	{
		if (len > 0)
			memcpy(buf, f->mem + off, len);
		return SP_OK;
	}
	if (fileset_fd(ctx, fs, idx) != SP_OK)
		return ctx->err.code;
	while (done < len)
	{
		ssize_t		r = pread(fs->fd, (uint8_t *) buf + done, len - done, (off_t) (off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return sp_fail_io(ctx, errno, "could not read \"%s\"", f->path);
		if (r == 0)
		{
			sp_fail(ctx, SP_ERR_IO, "could not read \"%s\": file shrank while being read", f->path);
			ctx->err.sys_errno = EIO;
			return SP_ERR_IO;
		}
		done += (size_t) r;
	}
	read_ahead(fs, off, off + len);
	return SP_OK;
}

/* Hint that a range of file idx will be read soon. */
void
sp_fileset_prefetch(sp_ctx *ctx, sp_fileset *fs, size_t idx, uint64_t off, uint64_t len)
{
	sp_error	saved = ctx->err;

	if (fs->f[idx].mem != NULL)
		return;
	/* a failed open here is reported by the read that follows, not by the hint */
	if (fileset_fd(ctx, fs, idx) == SP_OK)
		(void) posix_fadvise(fs->fd, (off_t) off, (off_t) len, POSIX_FADV_WILLNEED);
	ctx->err = saved;
}

/*
 * The digests (SP_BH_*) of a whole file of the set, streaming, polling the
 * interrupt hook between reads: SHA-256 into sha, fingerprint into fp.
 */
sp_status
sp_fileset_hash(sp_ctx *ctx, sp_fileset *fs, size_t idx, unsigned what, uint8_t *sha, uint8_t *fp)
{
	const size_t step = 256 << 10;	/* stays in cache between read and hash */
	uint8_t    *buf = NULL;
	sp_basehash h;
	uint64_t	off = 0,
				size = fs->f[idx].size;
	sp_status	rc;

	if ((rc = sp_basehash_init(ctx, &h, what)) != SP_OK)
		return rc;
	if (fs->f[idx].mem)
		sp_basehash_update(&h, fs->f[idx].mem, size);
	else if ((buf = sp_alloc(ctx, step)) == NULL)
		rc = SP_ERR_NOMEM;
	while (rc == SP_OK && buf && off < size)
	{
		size_t		n = (size_t) SP_MIN((uint64_t) step, size - off);

		if ((rc = sp_check_interrupt(ctx)) == SP_OK &&
			(rc = sp_fileset_read(ctx, fs, idx, off, buf, n)) == SP_OK)
			sp_basehash_update(&h, buf, n);
		off += n;
	}
	sp_basehash_final(&h, sha, fp);
	sp_basehash_free(ctx, &h);
	sp_free(ctx, buf);
	return rc;
}

/* SHA-256 of a whole file of the set, streaming. */
sp_status
sp_fileset_sha256(sp_ctx *ctx, sp_fileset *fs, size_t idx, uint8_t out[32])
{
	return sp_fileset_hash(ctx, fs, idx, SP_BH_SHA256, out, NULL);
}

/* ---- outputs ------------------------------------------------------------ */

/* Write all of p to fd, retrying on EINTR and short writes. */
static sp_status
write_all(sp_ctx *ctx, int fd, const void *p, size_t n, const char *path)
{
	while (n > 0)
	{
		ssize_t		w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return sp_fail_io(ctx, errno, "could not write \"%s\"", path);
		p = (const uint8_t *) p + w;
		n -= (size_t) w;
	}
	return SP_OK;
}

/*
 * Build "DIR/.NAME.sparse-tmp-XXXXXX" for a final path (via the hooks), with
 * NAME cut to 200 bytes so the temporary name fits NAME_MAX whenever the
 * final name does, and XXXXXX random.
 */
static char *
tmp_name_for(sp_ctx *ctx, const char *final_path)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	const char *slash = strrchr(final_path, '/');
	size_t		dlen = slash ? (size_t) (slash - final_path) : 0;
	const char *base = slash ? slash + 1 : final_path;
	char	   *t = sp_alloc(ctx, strlen(final_path) + 32);
	uint8_t		rnd[6];
	size_t		n;

	if (t == NULL)
		return NULL;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
	{
		uint64_t	v = (uint64_t) getpid() ^ (uint64_t) (sp_now_ms() * 1000.0);

		memcpy(rnd, &v, sizeof(rnd));
	}
	n = (size_t) sprintf(t, "%.*s/.%.200s.sparse-tmp-", (int) dlen, final_path, base);
	for (size_t i = 0; i < sizeof(rnd); i++)
		t[n + i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	t[n + sizeof(rnd)] = '\0';
	return t;
}

/* Start an atomic file output under a temporary name. */
sp_status
sp_out_file(sp_ctx *ctx, sp_out *o, const char *final_path)
{
	memset(o, 0, sizeof(*o));
	o->kind = SP_OUT_FILE;
	o->fd = -1;
	o->final_path = sp_strdup(ctx, final_path);
	if (o->final_path == NULL)
		return SP_ERR_NOMEM;
	/*
	 * The checked directory is held open and the temporary file created,
	 * renamed and (on failure) removed through it, so a link swapped into
	 * the directory's path meanwhile can move nothing elsewhere.
	 */
	if ((o->dir_fd = open_parent(o->final_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
								 sp_confined(ctx), &o->final_name)) < 0)
		return sp_fail_open(ctx, errno, "could not open the directory of", final_path);
	o->has_dir = true;
	/* mode 0666 less the umask, as any new file (a server's umask 077 stays private) */
	for (int tries = 0; tries < 100 && o->fd < 0; tries++)
	{
		sp_free(ctx, o->tmp_path);
		if ((o->tmp_path = tmp_name_for(ctx, final_path)) == NULL)
			return SP_ERR_NOMEM;
		o->tmp_name = strrchr(o->tmp_path, '/') + 1;
		o->fd = openat(o->dir_fd, o->tmp_name,
					   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (o->fd < 0 && errno != EEXIST)
			break;
	}
	if (o->fd < 0)
	{
		int			err = errno;

		sp_free(ctx, o->tmp_path);
		o->tmp_path = NULL;
		return sp_fail_io(ctx, err, "could not create a temporary file for \"%s\"", final_path);
	}
	return SP_OK;
}

/* Start an in-memory output limited to max bytes. */
void
sp_out_mem(sp_out *o, size_t max)
{
	memset(o, 0, sizeof(*o));
	o->kind = SP_OUT_MEM;
	o->fd = -1;
	o->mem_max = max;
}

/* Grow an in-memory output to hold need bytes, within its limit. */
static sp_status
mem_reserve(sp_ctx *ctx, sp_out *o, size_t need)
{
	size_t		cap;
	uint8_t    *nm;

	if (need > o->mem_max)
		return sp_fail(ctx, SP_ERR_TOO_LARGE,
					   "result would exceed the size limit of %zu bytes", o->mem_max);
	if (need <= o->mem_cap)
		return SP_OK;
	cap = SP_MAX(need, SP_MIN(o->mem_max, SP_MAX(o->mem_cap * 2, (size_t) 65536)));
	if ((nm = sp_alloc(ctx, cap)) == NULL)
		return SP_ERR_NOMEM;
	if (o->mem_len)
		memcpy(nm, o->mem, o->mem_len);
	sp_free(ctx, o->mem);
	o->mem = nm;
	o->mem_cap = cap;
	return SP_OK;
}

/* Turn O_DIRECT on or off for fd; false if the file system refuses (errno set). */
bool
sp_fd_direct(int fd, bool on)
{
	int			fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return false;
	return fcntl(fd, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT)) == 0;
}

/*
 * The thread that writes full stages of a direct output while the caller
 * fills the other stage.  One write is in flight at a time; its result is
 * collected (sw_settle) before the caller reuses that stage, writes
 * anything itself, rewrites bytes or closes the file.  The thread calls
 * write(2) and nothing else, and blocks every signal.
 */
typedef struct sp_stagew
{
	pthread_t	thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool		started,
				busy,			/* a stage is handed over */
				stop;
	int			fd;
	const uint8_t *p;			/* the stage in flight ... */
	size_t		len;			/* ... and its length */
	ssize_t		w;				/* the write's result ... */
	int			err;			/* ... and errno when it failed */
} sp_stagew;

/* Write one stage with write(2), retrying EINTR; result in sw (lock not held). */
static void
sw_write(sp_stagew *sw)
{
	ssize_t		w;

	do
		w = write(sw->fd, sw->p, sw->len);
	while (w < 0 && errno == EINTR);
	sw->err = w < 0 ? errno : 0;
	sw->w = w;
}

/* The stage writer: write each stage handed over until told to stop. */
static void *
sw_main(void *arg)
{
	sp_stagew  *sw = arg;

	pthread_mutex_lock(&sw->mu);
	for (;;)
	{
		while (!sw->busy && !sw->stop)
			pthread_cond_wait(&sw->cv, &sw->mu);
		if (!sw->busy)
			break;
		pthread_mutex_unlock(&sw->mu);
		sw_write(sw);
		pthread_mutex_lock(&sw->mu);
		sw->busy = false;
		pthread_cond_broadcast(&sw->cv);
	}
	pthread_mutex_unlock(&sw->mu);
	return NULL;
}

/* Turn a direct output buffered for good (the stage writer is idle). */
static sp_status
drop_direct(sp_ctx *ctx, sp_out *o, const char *path)
{
	o->direct = false;
	if (!sp_fd_direct(o->fd, false))
		return sp_fail_io(ctx, errno, "could not write \"%s\"", path);
	return SP_OK;
}

/*
 * Collect the stage written last, if any.  A failed write is an error; one
 * refused with EINVAL (a file system that took the flag but not the
 * alignment) or cut short is finished through the page cache from where it
 * stopped (that stage is still intact), and the file stays buffered.
 */
static sp_status
sw_settle(sp_ctx *ctx, sp_out *o)
{
	sp_stagew  *sw = o->sw;
	const char *path = o->tmp_path ? o->tmp_path : o->final_path;
	const uint8_t *p;
	size_t		done;

	if (sw == NULL)
		return SP_OK;
	pthread_mutex_lock(&sw->mu);
	while (sw->busy)
		pthread_cond_wait(&sw->cv, &sw->mu);
	p = sw->p;
	pthread_mutex_unlock(&sw->mu);
	if (p == NULL || sw->w == (ssize_t) sw->len)
		return SP_OK;
	done = sw->w < 0 ? 0 : (size_t) sw->w;
	sw->p = NULL;				/* collected */
	if (sw->w < 0 && sw->err != EINVAL)
		return sp_fail_io(ctx, sw->err, "could not write \"%s\"", path);
	if (drop_direct(ctx, o, path) != SP_OK)
		return ctx->err.code;
	return write_all(ctx, o->fd, p + done, sw->len - done, path);
}

/*
 * Hand the full stage to the stage writer (started on first use) and fill
 * the other one meanwhile; false if that thread cannot run, in which case
 * the stage was written here, and its result waits for sw_settle alike.
 */
static bool
sw_hand(sp_out *o)
{
	sp_stagew  *sw = o->sw;
	uint8_t    *full = o->stage;
	bool		threaded;

	if (!sw->started)
		sw->started = sp_spawn_blocked(&sw->thread, sw_main, sw);
	threaded = sw->started;
	pthread_mutex_lock(&sw->mu);
	sw->fd = o->fd;
	sw->p = full;
	sw->len = o->stage_len;
	sw->busy = threaded;
	pthread_cond_signal(&sw->cv);
	pthread_mutex_unlock(&sw->mu);
	if (!threaded)
		sw_write(sw);
	o->stage = o->stage2;
	o->stage2 = full;
	o->stage_len = 0;
	return threaded;
}

/* Wait for the stage writer, end it and free it (any error is dropped). */
static void
sw_stop(sp_ctx *ctx, sp_out *o)
{
	sp_stagew  *sw = o->sw;

	if (sw == NULL)
		return;
	if (sw->started)
	{
		pthread_mutex_lock(&sw->mu);
		sw->stop = true;
		pthread_cond_broadcast(&sw->cv);
		pthread_mutex_unlock(&sw->mu);
		pthread_join(sw->thread, NULL);	/* it finishes the stage in hand first */
	}
	pthread_cond_destroy(&sw->cv);
	pthread_mutex_destroy(&sw->mu);
	sp_free(ctx, sw);
	o->sw = NULL;
}

/*
 * Write a new file output with direct I/O: bytes gather in an aligned 4 MiB
 * stage that goes to the device in one O_DIRECT write when full, so the
 * kernel neither copies them into its page cache nor has them to write
 * back at the final fsync (on this project's VM, 0.69 GB took 1.95 s with
 * buffered writes and fsync, 1.75 s of it system time, and 0.31 s direct).
 * A full stage is written by a thread of its own while the caller fills
 * the second stage.  A file system that refuses O_DIRECT (tmpfs) keeps
 * buffered writes.
 */
sp_status
sp_out_direct(sp_ctx *ctx, sp_out *o)
{
	if (o->kind != SP_OUT_FILE || o->written != 0 || o->direct)
		return SP_OK;
	if ((o->stage_mem = sp_alloc(ctx, 2 * SP_DIRECT_STAGE + SP_DIRECT_ALIGN)) == NULL ||
		(o->sw = sp_calloc(ctx, 1, sizeof(sp_stagew))) == NULL)
	{
		sp_free(ctx, o->stage_mem);
		o->stage_mem = NULL;
		return SP_ERR_NOMEM;
	}
	o->stage = sp_align_up(o->stage_mem, SP_DIRECT_ALIGN);
	o->stage2 = o->stage + SP_DIRECT_STAGE;
	pthread_mutex_init(&o->sw->mu, NULL);
	pthread_cond_init(&o->sw->cv, NULL);
	o->direct = sp_fd_direct(o->fd, true);
	if (!o->direct)
	{
		sw_stop(ctx, o);
		sp_free(ctx, o->stage_mem);
		o->stage = o->stage2 = o->stage_mem = NULL;
	}
	return SP_OK;
}

/*
 * Leave direct I/O: collect the stage in flight, turn O_DIRECT off and
 * write the stage from byte done on through the page cache (its end need
 * not be aligned).
 */
static sp_status
out_undirect(sp_ctx *ctx, sp_out *o, size_t done)
{
	const char *path = o->tmp_path ? o->tmp_path : o->final_path;
	sp_status	rc;

	if (sw_settle(ctx, o) != SP_OK || (o->direct && drop_direct(ctx, o, path) != SP_OK))
		return ctx->err.code;
	rc = write_all(ctx, o->fd, o->stage + done, o->stage_len - done, path);
	o->stage_len = 0;
	return rc;
}

/*
 * Write the full stage: collect the one in flight, then hand this one to
 * the stage writer, or write it here if that thread cannot run.  A write
 * refused with EINVAL or cut short goes on through the page cache, and the
 * file stays buffered.
 */
static sp_status
stage_flush(sp_ctx *ctx, sp_out *o)
{
	if (sw_settle(ctx, o) != SP_OK)
		return ctx->err.code;
	if (!o->direct)				/* the one in flight fell back: so does this one */
		return out_undirect(ctx, o, 0);
	if (sw_hand(o))
		return SP_OK;
	return sw_settle(ctx, o);	/* written here: its result now */
}

/* Append bytes to a direct output's stage, writing it each time it fills. */
static sp_status
stage_write(sp_ctx *ctx, sp_out *o, const uint8_t *p, size_t n)
{
	while (n > 0)
	{
		size_t		k = SP_MIN(n, SP_DIRECT_STAGE - o->stage_len);

		memcpy(o->stage + o->stage_len, p, k);
		o->stage_len += k;
		o->written += k;
		p += k;
		n -= k;
		if (o->stage_len == SP_DIRECT_STAGE && stage_flush(ctx, o) != SP_OK)
			return ctx->err.code;
		if (!o->direct)			/* stage_flush fell back: the rest is buffered */
			return sp_out_write(ctx, o, p, n);
	}
	return SP_OK;
}

/* Append bytes to an output. */
sp_status
sp_out_write(sp_ctx *ctx, sp_out *o, const void *p, size_t n)
{
	sp_status	rc = SP_OK;

	if (o->kind == SP_OUT_FILE && o->direct)
		return stage_write(ctx, o, p, n);
	if (o->kind == SP_OUT_FILE)
		rc = write_all(ctx, o->fd, p, n, o->tmp_path ? o->tmp_path : o->final_path);
	else if (o->kind == SP_OUT_MEM)
	{
		if (n > SIZE_MAX - o->mem_len)
			return sp_fail(ctx, SP_ERR_TOO_LARGE, "result is too large");
		if ((rc = mem_reserve(ctx, o, o->mem_len + n)) == SP_OK && n)
		{
			memcpy(o->mem + o->mem_len, p, n);
			o->mem_len += n;
		}
	}
	if (rc == SP_OK)
		o->written += n;
	return rc;
}

/* fsync the directory holding canonical path so a rename in it is durable. */
static sp_status
fsync_parent(sp_ctx *ctx, const char *path)
{
	const char *name;
	int			fd = open_parent(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, sp_confined(ctx), &name);

	if (fd < 0)
		return sp_fail_open(ctx, errno, "could not open the directory of", path);
	if (fsync(fd) != 0 && errno != EINVAL)
	{
		int			err = errno;

		close(fd);
		return sp_fail_io(ctx, err, "could not fsync the directory of \"%s\"", path);
	}
	close(fd);
	return SP_OK;
}

/*
 * Rename from to to (both canonical, in one directory), failing rather than
 * replacing an existing to.  Through a descriptor of the checked directory,
 * so a link swapped into its path since cannot move the output elsewhere.
 */
static sp_status
rename_noreplace(sp_ctx *ctx, const char *from, const char *to)
{
	const char *fname,
			   *tname;
	int			dfd = open_parent(to, O_PATH | O_DIRECTORY | O_CLOEXEC, sp_confined(ctx), &tname);
	sp_status	rc;

	if (dfd < 0)
		return sp_fail_open(ctx, errno, "could not open the directory of", to);
	fname = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
	if ((size_t) (fname - from) != (size_t) (tname - to) || memcmp(from, to, (size_t) (tname - to)) != 0)
		rc = sp_fail(ctx, SP_ERR_INTERNAL, "rename across directories: \"%s\" to \"%s\"", from, to);
	else
		rc = rename_at(ctx, dfd, from, to, fname, tname);
	close(dfd);
	return rc;
}

/*
 * Overwrite n bytes at off, inside what was written already (a record
 * completed after the bytes behind it were written).
 */
sp_status
sp_out_pwrite(sp_ctx *ctx, sp_out *o, uint64_t off, const void *p, size_t n)
{
	const uint8_t *q = p;

	if (off > o->written || n > o->written - off)
		return sp_fail(ctx, SP_ERR_INTERNAL, "rewrite past the end of the output");
	if (o->kind == SP_OUT_MEM)
	{
		memcpy(o->mem + off, p, n);
		return SP_OK;
	}
	if (o->direct && off >= o->written - o->stage_len)
	{
		memcpy(o->stage + (off - (o->written - o->stage_len)), p, n);
		return SP_OK;
	}
	/* bytes already on disk: rewritten through the page cache from now on */
	if (o->direct && out_undirect(ctx, o, 0) != SP_OK)
		return ctx->err.code;
	while (o->kind == SP_OUT_FILE && n > 0)
	{
		ssize_t		w = pwrite(o->fd, q, n, (off_t) off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return sp_fail_io(ctx, errno, "could not write \"%s\"",
							  o->tmp_path ? o->tmp_path : o->final_path);
		q += w;
		n -= (size_t) w;
		off += (uint64_t) w;
	}
	return SP_OK;
}

/* fsync, close and rename a file output into place. */
sp_status
sp_out_commit(sp_ctx *ctx, sp_out *o)
{
	const char *path = o->tmp_path ? o->tmp_path : o->final_path;

	if (o->kind != SP_OUT_FILE)
		return SP_OK;
	if (o->direct && out_undirect(ctx, o, 0) != SP_OK)
		return ctx->err.code;
	sw_stop(ctx, o);
	if (fsync(o->fd) != 0)
		return sp_fail_io(ctx, errno, "could not fsync \"%s\"", path);
	if (close(o->fd) != 0)
	{
		o->fd = -1;
		return sp_fail_io(ctx, errno, "could not close \"%s\"", path);
	}
	o->fd = -1;
	if (o->tmp_path == NULL)
		return SP_OK;			/* inside a temporary directory: renamed with it */
	if (rename_at(ctx, o->dir_fd, o->tmp_path, o->final_path, o->tmp_name, o->final_name) != SP_OK)
		return ctx->err.code;
	sp_free(ctx, o->tmp_path);
	o->tmp_path = NULL;
	if (fsync(o->dir_fd) != 0 && errno != EINVAL)
		return sp_fail_io(ctx, errno, "could not fsync the directory of \"%s\"", o->final_path);
	close(o->dir_fd);
	o->has_dir = false;
	return SP_OK;
}

/* Files at least this large are closed by close_later on a thread of its own. */
#define CLOSE_LATER_BYTES (64u << 20)

/* Body of close_later's thread: close one descriptor, nothing else. */
static void *
close_thread(void *arg)
{
	close((int) (intptr_t) arg);
	return NULL;
}

/*
 * Close the descriptor of an output whose name is already unlinked.  The
 * last close of a large unlinked file frees its cached pages and blocks
 * (about 80 ms per GB here), which would delay a cancelled call by that
 * much: a large one is closed on a detached thread that blocks every
 * signal and makes no other call, so the caller returns at once.  (If the
 * process exits first, the kernel closes it.)  Small files, or a thread
 * that cannot start, are closed here.
 */
static void
close_later(int fd)
{
	struct stat st;
	pthread_t	t;

	if (fstat(fd, &st) == 0 && st.st_size >= (off_t) CLOSE_LATER_BYTES &&
		sp_spawn_blocked(&t, close_thread, (void *) (intptr_t) fd))
		pthread_detach(t);
	else
		close(fd);
}

/* Drop an output: unlink its temporary file, then close it (see close_later). */
void
sp_out_abort(sp_ctx *ctx, sp_out *o)
{
	sw_stop(ctx, o);			/* it may be writing to fd: first */
	if (o->tmp_path && o->has_dir)
		unlinkat(o->dir_fd, o->tmp_name, 0);
	else if (o->tmp_path)
		unlink(o->tmp_path);
	if (o->has_dir)
		close(o->dir_fd);
	o->has_dir = false;
	if (o->fd >= 0)
		close_later(o->fd);
	o->fd = -1;
	sp_free(ctx, o->tmp_path);
	sp_free(ctx, o->final_path);
	sp_free(ctx, o->mem);
	sp_free(ctx, o->stage_mem);
	o->tmp_path = o->final_path = NULL;
	o->mem = NULL;
	o->stage = o->stage2 = o->stage_mem = NULL;
	o->direct = false;
}

/* Create the temporary directory of a directory output. */
sp_status
sp_outdir_begin(sp_ctx *ctx, const char *final_path, char **tmp_dir)
{
	int			rc = -1;

	*tmp_dir = NULL;
	/* mode 0777 less the umask, as any new directory */
	for (int tries = 0; tries < 100 && rc != 0; tries++)
	{
		sp_free(ctx, *tmp_dir);
		if ((*tmp_dir = tmp_name_for(ctx, final_path)) == NULL)
			return SP_ERR_NOMEM;
		rc = mkdir_canon(*tmp_dir, 0777, sp_confined(ctx));
		if (rc != 0 && errno != EEXIST)
			break;
	}
	if (rc != 0)
	{
		int			err = errno;

		sp_free(ctx, *tmp_dir);
		*tmp_dir = NULL;
		return sp_fail_open(ctx, err, "could not create a temporary directory for", final_path);
	}
	return SP_OK;
}

/* Create the parent directories of rel inside dir. */
static sp_status
make_parents(sp_ctx *ctx, const char *dir, const char *rel)
{
	char		path[PATH_MAX];
	size_t		dlen = strlen(dir);

	if (dlen + 1 + strlen(rel) >= sizeof(path))
		return sp_fail(ctx, SP_ERR_INVALID_ARG, "path \"%s/%s\" is too long", dir, rel);
	memcpy(path, dir, dlen);
	path[dlen] = '/';
	memcpy(path + dlen + 1, rel, strlen(rel) + 1);
	for (char *p = path + dlen + 1; (p = strchr(p, '/')) != NULL; p++)
	{
		*p = '\0';
		if (mkdir_canon(path, 0755, sp_confined(ctx)) != 0 && errno != EEXIST)
			return sp_fail_open(ctx, errno, "could not create directory", path);
		*p = '/';
	}
	return SP_OK;
}

/* Open file rel inside a temporary output directory. */
sp_status
sp_outdir_file(sp_ctx *ctx, const char *tmp_dir, const char *rel, sp_out *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = SP_OUT_FILE;
	o->fd = -1;
	if (!sp_rel_name_ok(rel))
		return sp_fail(ctx, SP_ERR_CORRUPT, "delta names an unsafe file \"%s\"", rel);
	if (make_parents(ctx, tmp_dir, rel) != SP_OK)
		return ctx->err.code;
	o->final_path = sp_alloc(ctx, strlen(tmp_dir) + strlen(rel) + 2);
	if (o->final_path == NULL)
		return SP_ERR_NOMEM;
	sprintf(o->final_path, "%s/%s", tmp_dir, rel);
	o->fd = sp_open_canon(o->final_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644,
						  sp_confined(ctx));
	if (o->fd < 0)
		return errno == EEXIST
			? sp_fail(ctx, SP_ERR_CORRUPT, "delta names file \"%s\" twice", rel)
			: sp_fail_open(ctx, errno, "could not create", o->final_path);
	return SP_OK;
}

/* fsync every directory under (and including) path, depth first. */
static sp_status
fsync_tree(sp_ctx *ctx, const char *path, int depth)
{
	char	  **names;
	size_t		count;
	sp_status	rc;
	int			fd;

	if (depth > SP_MAX_DEPTH + 1)
		return SP_OK;
	if ((rc = list_dir(ctx, path, &names, &count)) != SP_OK)
		return rc;
	for (size_t i = 0; i < count; i++)
	{
		char		sub[PATH_MAX];
		struct stat st;

		snprintf(sub, sizeof(sub), "%s/%s", path, names[i]);
		if (rc == SP_OK && lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			rc = fsync_tree(ctx, sub, depth + 1);
		free(names[i]);
	}
	free(names);
	if (rc != SP_OK)
		return rc;
	if ((fd = sp_open_canon(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, sp_confined(ctx))) < 0)
		return sp_fail_open(ctx, errno, "could not open directory", path);
	if (fsync(fd) != 0 && errno != EINVAL)
		rc = sp_fail_io(ctx, errno, "could not fsync directory \"%s\"", path);
	close(fd);
	return rc;
}

/* fsync a temporary directory tree and rename it into place. */
sp_status
sp_outdir_commit(sp_ctx *ctx, const char *tmp_dir, const char *final_path)
{
	if (fsync_tree(ctx, tmp_dir, 0) != SP_OK)
		return ctx->err.code;
	if (rename_noreplace(ctx, tmp_dir, final_path) != SP_OK)
		return ctx->err.code;
	return fsync_parent(ctx, final_path);
}

/* Descriptors of unlinked large files, closed once the whole tree is gone. */
typedef struct held_fds
{
	int			fd[64];
	int			n;
} held_fds;

/*
 * Unlink a file of a tree we created.  A large one is opened first and its
 * descriptor held (up to 64), so the unlink only removes the name: ext4
 * frees a file's blocks when its last reference goes, and an rmdir in the
 * same tree waits for that (on this project's VM a cancel of apply waited
 * 0.8-1.3 s for the 6-10 GB of shards it had written with O_DIRECT).  The blocks are
 * freed when close_held closes the descriptors, after every name is gone;
 * if the process exits first, the kernel closes them.  O_NOFOLLOW and
 * O_NONBLOCK: a name swapped for a link or a FIFO since the lstat is
 * neither followed nor waited on.
 */
static void
unlink_file(const char *path, const struct stat *st, held_fds *held)
{
	int			fd = -1;

	if (held && held->n < (int) (sizeof(held->fd) / sizeof(held->fd[0])) &&
		S_ISREG(st->st_mode) && st->st_size >= (off_t) CLOSE_LATER_BYTES)
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0)
		held->fd[held->n++] = fd;
	unlink(path);
}

/* Remove a directory tree we created (entries are ours: no symlink follows). */
static void
remove_tree(const char *path, int depth, held_fds *held)
{
	char	  **names;
	size_t		count;
	sp_ctx		tmp;

	sp_ctx_init(&tmp);
	if (depth > SP_MAX_DEPTH + 1 || list_dir(&tmp, path, &names, &count) != SP_OK)
		return;
	for (size_t i = 0; i < count; i++)
	{
		char		sub[PATH_MAX];
		struct stat st;

		snprintf(sub, sizeof(sub), "%s/%s", path, names[i]);
		free(names[i]);
		if (lstat(sub, &st) != 0)
			unlink(sub);		/* as before: gone already, or not ours to stat */
		else if (S_ISDIR(st.st_mode))
			remove_tree(sub, depth + 1, held);
		else
			unlink_file(sub, &st, held);
	}
	free(names);
	rmdir(path);
}

/* Body of close_held's thread: close the descriptors, free their list. */
static void *
close_held_thread(void *arg)
{
	held_fds   *h = arg;

	for (int i = 0; i < h->n; i++)
		close(h->fd[i]);
	free(h);
	return NULL;
}

/* Close the descriptors remove_tree held, on a detached thread as close_later does. */
static void
close_held(const held_fds *h)
{
	held_fds   *copy;
	pthread_t	t;

	if (h->n == 0)
		return;
	if ((copy = malloc(sizeof(*copy))) != NULL)
	{
		*copy = *h;
		if (sp_spawn_blocked(&t, close_held_thread, copy))
		{
			pthread_detach(t);
			return;
		}
		free(copy);
	}
	for (int i = 0; i < h->n; i++)
		close(h->fd[i]);
}

/* Remove a temporary output directory; the blocks of its large files are freed later. */
void
sp_outdir_abort(sp_ctx *ctx, const char *tmp_dir)
{
	held_fds	held = {.n = 0};

	(void) ctx;
	if (tmp_dir == NULL)
		return;
	remove_tree(tmp_dir, 0, &held);
	close_held(&held);
}
