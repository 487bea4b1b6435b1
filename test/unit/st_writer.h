/*
 * st_writer.h -- a minimal safetensors writer and reader for the tests, and
 * file helpers (read, write, sha256, flip a byte, truncate, directories).
 *
 * The writer builds the header JSON with cJSON from a list of tensors in
 * the order given (that order is also the order of the data), optionally
 * with "__metadata__", explicit gaps between tensors, and spaces after the
 * JSON so that 8 + header length is a multiple of `align` (8 by default, as
 * the reference writer does).  The reader parses a file written by anyone
 * into the same tensor list, pointing into the file's bytes, so tests can
 * take real tensors from the shared files and rearrange them.
 *
 * Everything returned is malloc'ed and handed to t_track() (freed by the
 * harness after the test), except where noted.
 */
#ifndef SPARSE_TEST_ST_WRITER_H
#define SPARSE_TEST_ST_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STW_MAX_DIMS 8

/* One tensor to write (or one read back). */
typedef struct stw_tensor
{
	const char *name;
	const char *dtype;			/* "F32", "BF16", ... written as is */
	int			ndim;
	uint64_t	shape[STW_MAX_DIMS];
	const void *data;
	size_t		len;			/* bytes of data */
} stw_tensor;

/* Options of stw_write; zero means the default. */
typedef struct stw_opts
{
	const char *metadata_json;	/* object text for "__metadata__", or NULL */
	bool		metadata_last;	/* put "__metadata__" after the tensors */
	size_t		align;			/* pad header with spaces: 8 default, 1 none */
	size_t		extra_spaces;	/* more spaces after the JSON */
	size_t		gap;			/* filler bytes between consecutive tensors */
	uint8_t		gap_byte;		/* value of those bytes */
} stw_opts;

/* A model read back: tensors point into buf. */
typedef struct stw_model
{
	uint8_t    *buf;			/* the whole file */
	size_t		size;
	size_t		n;
	stw_tensor *t;
	char	   *metadata_json;	/* "__metadata__" object text, or NULL */
} stw_model;

/*
 * Header text for these tensors (data not read, only len): the JSON padded
 * with spaces as opts says; tracked buffer, length in *hlen.
 */
char	   *stw_header(const stw_tensor *t, size_t n, const stw_opts *opts,
					   size_t *hlen);

/* Write a safetensors file; returns false (and reports a failure) on error. */
bool		stw_write(const char *path, const stw_tensor *t, size_t n,
					  const stw_opts *opts);

/* Write a file made of an 8-byte length (len_field), header text, data. */
bool		stw_write_raw(const char *path, uint64_t len_field,
						  const char *header, const void *data, size_t len);

/* Read and parse a safetensors file; false (and a failure) on error. */
bool		stw_read(const char *path, stw_model *m);

/* Find a tensor by name, or NULL. */
const stw_tensor *stw_find(const stw_model *m, const char *name);

/* Element size of a safetensors dtype name, 0 if unknown. */
int			stw_dtype_size(const char *dtype);

/* Number of elements of a shape. */
uint64_t	stw_numel(const stw_tensor *t);

/* Set t's shape from a list: stw_shape(&t, 2, 3, 4) is [3, 4]. */
void		stw_shape(stw_tensor *t, int ndim,...);

/* ---- file helpers ----------------------------------------------------- */

/* Read a whole file (tracked buffer, NUL appended); NULL on error. */
uint8_t    *fh_read(const char *path, size_t *len);

/* Write a whole file (created or truncated). */
bool		fh_write(const char *path, const void *data, size_t len);

/* Copy a file. */
bool		fh_copy(const char *from, const char *to);

/* SHA-256 of a file as 64 lower-case hex digits into hex[65]. */
bool		fh_sha256(const char *path, char hex[65]);

/* SHA-256 of a buffer as hex into hex[65]. */
void		fh_sha256_mem(const void *data, size_t len, char hex[65]);

/* XOR the byte at offset with mask (0xFF if mask is 0). */
bool		fh_flip(const char *path, uint64_t offset, uint8_t mask);

/* Cut a file to len bytes. */
bool		fh_truncate(const char *path, uint64_t len);

/* Size of a file, or -1 if it cannot be stat'ed. */
int64_t		fh_size(const char *path);

/* True if path exists (lstat). */
bool		fh_exists(const char *path);

/* True if the two files have identical bytes. */
bool		fh_same(const char *a, const char *b);

/* mkdir -p. */
bool		fh_mkdirs(const char *path);

/* Names in a directory (sorted, without . and ..), tracked; count in *n. */
char	  **fh_list(const char *dir, size_t *n);

/*
 * Compare two directory trees: same names, same kinds, same file bytes.
 * Reports each difference as a failure; returns true when identical.
 */
bool		fh_same_tree(const char *a, const char *b);

/* Deterministic pseudo-random numbers (xorshift64*). */
uint64_t	fh_rand(uint64_t *state);

#endif							/* SPARSE_TEST_ST_WRITER_H */
