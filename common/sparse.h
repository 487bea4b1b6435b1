/*
 * sparse.h -- public interface of the sparse core (common/).
 *
 * The core stores a fine-tuned model (a .safetensors file or a model
 * directory) as a lossless delta against its base model, rebuilds it
 * byte-for-byte with SHA-256 verification, and estimates the savings from a
 * small sample.  It contains no PostgreSQL or SQLite code: every binding
 * (pg/, sqlite/, cli/) passes an sp_ctx holding its allocator, interrupt
 * check and progress hooks, calls one of the functions below, and translates
 * the returned sp_status (plus the message in ctx->err) into its own error
 * style exactly once.
 *
 * Rules the core keeps, so bindings can rely on them:
 *   - every function returns a status; on failure ctx->err holds the code,
 *     a one-line message naming the file and the problem, and errno for I/O;
 *   - it never exits, never longjmps, never assumes a hook does not return;
 *   - it polls hooks.interrupted at least every chunk (~1 MiB of work) and
 *     returns SP_ERR_CANCELLED after cleaning up (no partial file is left);
 *   - outputs are written under a temporary name, fsynced and renamed into
 *     place without replacing an existing path;
 *   - it calls no hook from any thread but the caller's.
 */
#ifndef SPARSE_H
#define SPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the delta container format written (docs/FORMAT.md). */
#define SP_FORMAT_VERSION 1

/* Status codes; each has its own message and maps to one SQLSTATE. */
typedef enum sp_status
{
	SP_OK = 0,
	SP_ERR_NOMEM,				/* allocation hook returned NULL */
	SP_ERR_CANCELLED,			/* interrupted hook returned nonzero */
	SP_ERR_INVALID_ARG,			/* bad parameter (level, fraction, empty path) */
	SP_ERR_IO,					/* open/read/write/fsync/rename failed; errno kept */
	SP_ERR_EXISTS,				/* output path already exists */
	SP_ERR_OUTSIDE_ROOT,		/* path resolves outside the configured root */
	SP_ERR_NOT_SAFETENSORS,		/* file too short or header does not start with '{' */
	SP_ERR_HEADER_TOO_LARGE,	/* header length larger than the file (or limit) */
	SP_ERR_BAD_JSON,			/* header is not valid JSON of the expected shape */
	SP_ERR_BAD_OFFSETS,			/* tensor offsets out of range or overlapping */
	SP_ERR_UNKNOWN_DTYPE,		/* dtype string not defined by safetensors */
	SP_ERR_SHAPE_MISMATCH,		/* shape * dtype size != byte length */
	SP_ERR_NOT_DELTA,			/* bad magic: not a sparse delta */
	SP_ERR_UNSUPPORTED_VERSION,	/* container version this build cannot read */
	SP_ERR_TRUNCATED,			/* delta ends before its end record */
	SP_ERR_CORRUPT,				/* checksum mismatch or malformed record */
	SP_ERR_WRONG_BASE,			/* base digest differs from the one recorded */
	SP_ERR_VERIFY_FAILED,		/* rebuilt file digest differs from the recorded one */
	SP_ERR_TOO_LARGE,			/* in-memory result would exceed the caller's limit */
	SP_ERR_INTERNAL				/* a bug: "cannot happen" */
} sp_status;

/* The error a failed call leaves behind. */
typedef struct sp_error
{
	sp_status	code;
	int			sys_errno;		/* errno for SP_ERR_IO, else 0 */
	char		msg[512];		/* lower case, no final period, names quoted */
} sp_error;

/*
 * Hooks from the caller.  alloc returns NULL on failure (it must not longjmp
 * or throw); interrupted returns nonzero when the caller wants the call to
 * stop; progress may be NULL.  All are called only from the calling thread.
 */
typedef struct sp_hooks
{
	void	   *(*alloc) (void *user, size_t size);
	void		(*free) (void *user, void *ptr);
	int			(*interrupted) (void *user);
	void		(*progress) (void *user, uint64_t done, uint64_t total);
	void	   *user;
} sp_hooks;

/* Per-call context: hooks, options and the error slot. */
typedef struct sp_ctx
{
	sp_hooks	hooks;
	const char *root;			/* if non-empty, every path must resolve under it */
	int			threads;		/* coding threads: 0 one per core, 1 none */
	sp_error	err;
} sp_ctx;

/* Result of sp_delta_estimate. */
typedef struct sp_estimate
{
	uint64_t	base_bytes;
	uint64_t	ft_bytes;
	uint64_t	est_delta_bytes;
	double		est_compression;	/* ft_bytes / est_delta_bytes */
	double		savings_pct;		/* 100 * (1 - est_delta_bytes / ft_bytes) */
	int64_t		tensors_total;		/* tensors in the fine-tune */
	int64_t		tensors_identical;	/* paired, and every sampled byte equal */
	int64_t		tensors_changed;	/* paired, some sampled byte differs */
	int64_t		tensors_unpaired;	/* no same-named base tensor of the same or a convertible float dtype */
	double		elapsed_ms;
} sp_estimate;

/* Result of sp_delta_compress and sp_delta_compress_mem. */
typedef struct sp_compress_result
{
	char		delta_path[4096];	/* canonical output path ("" for memory) */
	uint64_t	ft_bytes;
	uint64_t	delta_bytes;
	double		compression_ratio;	/* ft_bytes / delta_bytes */
	double		savings_pct;
	char		ft_sha256[65];		/* file: its SHA-256; directory: see FORMAT.md */
	char		base_sha256[65];
	double		elapsed_ms;
	int64_t		rows_total;			/* dataset deltas: rows in the derived files */
	int64_t		rows_shared;		/* dataset deltas: rows stored as parent references */
} sp_compress_result;

/* Result of sp_delta_apply and sp_delta_verify. */
typedef struct sp_apply_result
{
	char		out_path[4096];		/* canonical output path ("" for verify) */
	uint64_t	bytes;				/* bytes rebuilt */
	char		sha256[65];			/* same definition as ft_sha256 above */
	bool		verified;			/* every digest matched */
	double		elapsed_ms;
} sp_apply_result;

/* One stored file, as listed by sp_delta_info. */
typedef struct sp_info_row
{
	char	   *name;				/* relative name of the rebuilt file */
	uint64_t	bytes;				/* size of the rebuilt file */
	uint64_t	delta_bytes;		/* bytes of the delta spent on it */
	char		sha256[65];			/* SHA-256 of the rebuilt file */
	const char *method;				/* "tensor-delta", "zstd-ref", "zstd", "copy", or
									 * "rows-csv", "rows-tsv", "rows-jsonl",
									 * "rows-json-array", "rows-lines", "parquet-pages" */
} sp_info_row;

/* Rows returned by sp_delta_info; free with sp_info_free. */
typedef struct sp_info
{
	size_t		n;
	sp_info_row *rows;
} sp_info;

/* Fill ctx with default hooks (malloc/free, never interrupted, no progress). */
void		sp_ctx_init(sp_ctx *ctx);

/* Short stable name of a status code, e.g. "SP_ERR_CORRUPT". */
const char *sp_status_name(sp_status code);

/*
 * Would the same call fail the same way if tried again?  True for bad
 * input (not safetensors, a bad argument, a format version this build cannot
 * read), a path outside the root, a file in the way of an output and a
 * permission the system refused (EACCES, EPERM, EROFS; EEXIST likewise):
 * a job queue fails such a job at once instead of retrying it.  Everything
 * else (other I/O errors, memory, a cancel, a damaged or mismatched file
 * that may be rewritten meanwhile) may pass on a later try.  The PostgreSQL binding's
 * SQLSTATEs for exactly these are 22023, 22P03, 58P02, 42501, 0A000, 54000.
 */
bool		sp_error_permanent(const sp_error *err);

/* Library version string, e.g. "0.1.0". */
const char *sp_version(void);

/*
 * Estimate the delta size of ft against base by encoding a sample of about
 * sample_fraction of the tensor bytes (at least a few windows per tensor,
 * all of small tensors).  base and ft are files or directories.
 */
sp_status	sp_delta_estimate(sp_ctx *ctx, const char *base, const char *ft,
							  double sample_fraction, sp_estimate *out);

/* Write the delta of ft against base to out (which must not exist). */
sp_status	sp_delta_compress(sp_ctx *ctx, const char *base, const char *ft,
							  const char *out, int level,
							  sp_compress_result *res);

/* Rebuild the fine-tune from base and delta into out (must not exist). */
sp_status	sp_delta_apply(sp_ctx *ctx, const char *base, const char *delta,
						   const char *out, sp_apply_result *res);

/* Rebuild in memory, chunk by chunk, and check every digest; write nothing. */
sp_status	sp_delta_verify(sp_ctx *ctx, const char *base, const char *delta,
							sp_apply_result *res);

/* List the files a delta holds. */
sp_status	sp_delta_info(sp_ctx *ctx, const char *delta, sp_info *out);

/* List the files of a delta held in memory (same rows as sp_delta_info). */
sp_status	sp_delta_info_mem(sp_ctx *ctx, const void *delta, size_t delta_len,
							  sp_info *out);

/* Free what sp_delta_info returned. */
void		sp_info_free(sp_ctx *ctx, sp_info *info);

/*
 * In-memory variants for artifacts kept inside a database.  base and ft are
 * one safetensors file each.  The result is allocated with hooks.alloc and
 * must be at most max_out bytes (SP_ERR_TOO_LARGE otherwise).
 */
sp_status	sp_delta_compress_mem(sp_ctx *ctx,
								  const void *base, size_t base_len,
								  const void *ft, size_t ft_len,
								  int level, size_t max_out,
								  void **out, size_t *out_len);

/* Rebuild a fine-tune in memory from base bytes and delta bytes. */
sp_status	sp_delta_apply_mem(sp_ctx *ctx,
							   const void *base, size_t base_len,
							   const void *delta, size_t delta_len,
							   size_t max_out, void **out, size_t *out_len);

/* ---- dataset deltas (common/dataset.c) ---------------------------------- */

/* Result of sp_dataset_estimate. */
typedef struct sp_dataset_est
{
	uint64_t	base_bytes;
	uint64_t	derived_bytes;
	int64_t		rows_sampled;		/* derived rows looked up in the parent */
	double		rows_shared_pct;	/* of those, found verbatim in the parent */
	uint64_t	est_delta_bytes;
	double		savings_pct;		/* 100 * (1 - est_delta_bytes / derived_bytes) */
	char		format[16];			/* "csv", "tsv", "jsonl", "json-array", "lines", "parquet",
									 * "binary" (no rows), or "mixed" */
	double		elapsed_ms;
} sp_dataset_est;

/*
 * Estimate the delta of a derived dataset (file or directory) against its
 * parent by coding sample_rows derived rows (1..10,000,000; default 1000).
 */
sp_status	sp_dataset_estimate(sp_ctx *ctx, const char *base, const char *derived,
								int sample_rows, sp_dataset_est *out);

/*
 * Write the delta of a derived dataset against its parent to out (which
 * must not exist).  Rows found in the parent become references; other rows
 * are coded cell by cell against an aligned parent row; files without rows
 * are coded with zstd against their same-named parent file.  Apply, verify
 * and info work on the result as on model deltas.
 */
sp_status	sp_dataset_compress(sp_ctx *ctx, const char *base, const char *derived,
								const char *out, int level, sp_compress_result *res);

/* ---- hub storage jobs (common/store.c) ---------------------------------- */

/* Longest path the storage functions build. */
#define SP_PATH_MAX 4096

/* What a hub row holds. */
typedef enum sp_kind
{
	SP_KIND_MODEL = 0,			/* a safetensors file or model directory */
	SP_KIND_DATASET = 1			/* a dataset file or directory of shards */
} sp_kind;

/* The estimate behind a storage decision. */
typedef struct sp_store_est
{
	uint64_t	original_bytes;		/* size of the object's files */
	uint64_t	est_delta_bytes;	/* original_bytes when there is no base */
	double		savings_pct;		/* 0 when there is no base */
	double		elapsed_ms;
} sp_store_est;

/* Parse "model" or "dataset" (SP_ERR_INVALID_ARG otherwise). */
sp_status	sp_kind_parse(sp_ctx *ctx, const char *s, sp_kind *kind);

/* "model" or "dataset". */
const char *sp_kind_name(sp_kind kind);

/* Total size of a file, or of the regular files under a directory. */
sp_status	sp_path_bytes(sp_ctx *ctx, const char *path, uint64_t *bytes);

/* Estimate the savings of a delta of path against base (NULL: no base, size only). */
sp_status	sp_store_estimate(sp_ctx *ctx, sp_kind kind, const char *base,
							  const char *path, sp_store_est *out);

/*
 * The delta path of an object: "PATH.sdelta" when dir is empty, else
 * "DIR/KIND-ID.sdelta" with the id percent-encoded (no '/', '.' or NUL).
 */
sp_status	sp_store_delta_path(sp_ctx *ctx, const char *dir, sp_kind kind,
								const char *object_id, const char *path,
								char out[SP_PATH_MAX]);

/*
 * Remove an earlier attempt's leftovers at delta_path: its temporary files
 * and a sparse delta at the path (anything else there is SP_ERR_EXISTS).
 */
sp_status	sp_store_clear(sp_ctx *ctx, const char *delta_path, int *removed);

/*
 * Clear delta_path, compress path against base into it with the kind's
 * compressor, and rebuild it in memory to check the SHA-256; on failure
 * nothing is left at delta_path.
 */
sp_status	sp_store_run(sp_ctx *ctx, sp_kind kind, const char *base, const char *path,
						 const char *delta_path, int level, sp_compress_result *res);

/* Valid compression levels (as zstd's). */
#define SP_LEVEL_MIN 1
#define SP_LEVEL_MAX 19
#define SP_LEVEL_DEFAULT 3

#ifdef __cplusplus
}
#endif

#endif							/* SPARSE_H */
