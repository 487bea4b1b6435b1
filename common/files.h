/*
 * files.h -- the file side of the core (internal): canonical paths confined
 * to an optional root, model inputs as sets of files (one file, a directory
 * tree, or a buffer in memory), positioned reads, and outputs that appear
 * atomically (temporary name, fsync, rename without replacing).
 */
#ifndef SPARSE_FILES_H
#define SPARSE_FILES_H

#include <sys/types.h>

#include "sparse.h"

#define SP_MAX_FILES 100000		/* files in one model directory */
#define SP_MAX_DEPTH 16			/* directory nesting */
#define SP_MAX_NAME 4096		/* relative name length */

/* One input file: a path on disk or a buffer in memory. */
typedef struct sp_file
{
	char	   *rel;			/* name relative to the set's root ("x.safetensors") */
	char	   *path;			/* canonical absolute path, or NULL for memory */
	const uint8_t *mem;			/* contents when in memory */
	uint64_t	size;
} sp_file;

/* The files of one model (base or fine-tune), sorted by rel. */
typedef struct sp_fileset
{
	bool		is_dir;
	char	   *path;			/* canonical path of the file or directory */
	size_t		n;
	sp_file    *f;
	int			fd;				/* cached descriptor ... */
	size_t		fd_idx;			/* ... for this file */
	uint64_t	ra_start;		/* where the current run of reads of it began */
	uint64_t	ra_end;			/* where the last read of it ended */
	uint64_t	ra_ahead;		/* read-ahead asked for up to here */
} sp_fileset;

#define SP_READ_AHEAD ((uint64_t) 32 << 20)	/* sequential reads: asked for ahead */
#define SP_READ_AHEAD_STEP ((uint64_t) 2 << 20) /* per hint */
#define SP_READ_AHEAD_RUN ((uint64_t) 4 << 20)	/* a stream: this much read in a row */

/* Canonicalize an existing path and check it against ctx->root. */
sp_status	sp_path_input(sp_ctx *ctx, const char *path, char **out);

/* Canonicalize a path that must not exist yet (its parent must). */
sp_status	sp_path_output(sp_ctx *ctx, const char *path, char **out);

/*
 * Open a canonical absolute path; when confined (a root is set: see
 * sp_confined), refusing any symbolic link on the way (openat2
 * RESOLVE_NO_SYMLINKS, or a walk with O_NOFOLLOW): -1 with errno, ELOOP for
 * a link.  sp_fail_open reports such a failure (under a root, a link means
 * the path changed since its check).
 */
int			sp_open_canon(const char *path, int flags, mode_t mode, bool confined);
bool		sp_confined(const sp_ctx *ctx);
sp_status	sp_fail_open(sp_ctx *ctx, int err, const char *what, const char *path);
extern bool sp_open_canon_walk_only;	/* tests: never use openat2 */

/* Open a model: one file, or every regular file under a directory. */
sp_status	sp_fileset_open(sp_ctx *ctx, const char *path, sp_fileset *fs);

/* A one-file set over a buffer (name is used in messages). */
sp_status	sp_fileset_mem(sp_ctx *ctx, const char *name, const void *buf,
						   size_t len, sp_fileset *fs);

/* Release a set. */
void		sp_fileset_close(sp_ctx *ctx, sp_fileset *fs);

/* Size of the largest file of a set. */
uint64_t	sp_fileset_max_size(const sp_fileset *fs);

/* Index of the file named rel, or -1. */
long		sp_fileset_find(const sp_fileset *fs, const char *rel);

/* Read exactly len bytes at off from file idx (bounds checked). */
sp_status	sp_fileset_read(sp_ctx *ctx, sp_fileset *fs, size_t idx,
							uint64_t off, void *buf, size_t len);

/* Tell the kernel that [off, off+len) of file idx will be read soon (a hint only). */
void		sp_fileset_prefetch(sp_ctx *ctx, sp_fileset *fs, size_t idx, uint64_t off, uint64_t len);

/*
 * A whole file's SHA-256 and/or fingerprint (what: SP_BH_*), streaming
 * (polls interrupts); sp_fileset_sha256 is the SHA-256 alone.
 */
sp_status	sp_fileset_hash(sp_ctx *ctx, sp_fileset *fs, size_t idx, unsigned what,
							uint8_t *sha, uint8_t *fp);
sp_status	sp_fileset_sha256(sp_ctx *ctx, sp_fileset *fs, size_t idx,
							  uint8_t out[32]);

/* Is rel a safe relative name (no "..", no absolute, no empty part)? */
bool		sp_rel_name_ok(const char *rel);

/*
 * An output: a file written under a temporary name in the same directory,
 * or a temporary directory that receives a tree of files, or a growing
 * buffer in memory, or nothing at all (verify).
 */
typedef enum sp_out_kind
{
	SP_OUT_NULL, SP_OUT_FILE, SP_OUT_MEM
} sp_out_kind;

typedef struct sp_out
{
	sp_out_kind kind;
	int			fd;
	char	   *final_path;		/* where the file or directory goes */
	char	   *tmp_path;		/* the temporary file or directory */
	char	   *dir_tmp;		/* temporary directory when building a tree */
	bool		has_dir;		/* a file output: dir_fd is open ... */
	int			dir_fd;			/* ... on the checked directory it goes in */
	const char *final_name;		/* final_path's and tmp_path's last components */
	const char *tmp_name;
	uint8_t    *mem;
	size_t		mem_len;
	size_t		mem_cap;
	size_t		mem_max;
	uint64_t	written;		/* bytes accepted (direct: the stage's included) */
	/* direct I/O (sp_out_direct): the last bytes, not yet on disk */
	bool		direct;
	uint8_t    *stage;			/* SP_DIRECT_STAGE bytes, SP_DIRECT_ALIGN-aligned */
	uint8_t    *stage2;			/* the other stage: the one being written meanwhile */
	uint8_t    *stage_mem;		/* their allocation */
	size_t		stage_len;
	struct sp_stagew *sw;		/* the thread writing full stages, or NULL */
} sp_out;

/* Direct I/O of large outputs, shared by sp_out_direct and the hash writer (apply). */
#define SP_DIRECT_STAGE ((size_t) 4 << 20)	/* bytes per direct write */
#define SP_DIRECT_ALIGN ((size_t) 4096)	/* buffer, offset and length alignment for O_DIRECT */
#define SP_DIRECT_MIN ((uint64_t) 64 << 20)	/* smaller outputs (inputs, for compress) stay buffered */

/* Turn O_DIRECT on or off for fd; false if the file system refuses (errno set). */
bool		sp_fd_direct(int fd, bool on);

/* Start an atomic single-file output at final_path (canonical, not existing). */
sp_status	sp_out_file(sp_ctx *ctx, sp_out *o, const char *final_path);

/* Start an in-memory output limited to max bytes. */
void		sp_out_mem(sp_out *o, size_t max);

/* Write a new file output with direct I/O from now on, where the file system allows. */
sp_status	sp_out_direct(sp_ctx *ctx, sp_out *o);

/* Append bytes to an output. */
sp_status	sp_out_write(sp_ctx *ctx, sp_out *o, const void *p, size_t n);

/* fsync, close and rename a file output into place (no replace). */
sp_status	sp_out_pwrite(sp_ctx *ctx, sp_out *o, uint64_t off, const void *p, size_t n);

sp_status	sp_out_commit(sp_ctx *ctx, sp_out *o);

/* Drop an output: close and unlink the temporary file; free memory. */
void		sp_out_abort(sp_ctx *ctx, sp_out *o);

/* Directory outputs: a temporary directory next to final_path. */
sp_status	sp_outdir_begin(sp_ctx *ctx, const char *final_path, char **tmp_dir);

/* Open file rel inside a temporary directory (creating parents). */
sp_status	sp_outdir_file(sp_ctx *ctx, const char *tmp_dir, const char *rel, sp_out *o);

/* fsync the tree and rename the temporary directory into place. */
sp_status	sp_outdir_commit(sp_ctx *ctx, const char *tmp_dir, const char *final_path);

/* Remove a temporary directory tree. */
void		sp_outdir_abort(sp_ctx *ctx, const char *tmp_dir);

#endif							/* SPARSE_FILES_H */
