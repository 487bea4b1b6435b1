/*
 * rt_util.h -- round-trip helpers shared by the test files.
 *
 * rt_roundtrip(base, ft) runs the whole cycle the way a user would:
 * sp_delta_compress into the test directory, sp_delta_apply into another
 * path, then checks that the output is byte-identical to ft (every file for
 * a directory), that the digests agree (apply's sha256 == compress's
 * ft_sha256 == sha256 of ft for a file), that sp_delta_verify passes and
 * that sp_delta_info lists the right files with the right sizes and digests.
 * Failures are recorded with the caller's file:line.
 */
#ifndef SPARSE_TEST_RT_UTIL_H
#define SPARSE_TEST_RT_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sparse.h"

/* What a round trip produced. */
typedef struct rt_result
{
	bool		ok;				/* every check passed */
	char	   *delta;			/* path of the delta (tracked) */
	char	   *out;			/* path of the rebuilt file or directory */
	uint64_t	ft_bytes;
	uint64_t	delta_bytes;
	size_t		ft_files;		/* regular files in ft (1 for a file) */
	sp_compress_result cres;
	sp_apply_result ares;
} rt_result;

/* Round trip ft against base at level (see above); result in *r. */
#define rt_roundtrip(base, ft, level, r) \
	rt_roundtrip_at(__FILE__, __LINE__, (base), (ft), (level), (r))

/* Worker of rt_roundtrip. */
bool		rt_roundtrip_at(const char *file, int line, const char *base,
							const char *ft, int level, rt_result *r);

/* Fresh context with default hooks and no root. */
void		rt_ctx(sp_ctx *ctx);

/* A new unique path in the test directory: "<dir>/<stem>-<n><suffix>". */
char	   *rt_unique(const char *stem, const char *suffix);

/* True if path is a directory. */
bool		rt_is_dir(const char *path);

/* Entries of directory dir (not . or ..), or -1 if it cannot be listed. */
int			rt_entries(const char *dir);

/* Counting allocator and interrupt hook state. */
typedef struct ds_hooks
{
	long		allocs;
	long		fail_after;		/* -1: never */
	bool		fail_once;		/* fail only allocation fail_after + 1 */
	long		live;
	long		polls;
	long		cancel_at;		/* -1: never */
	pthread_t	owner;			/* the thread that made the context */
	long		foreign;		/* hook calls from any other thread */
} ds_hooks;

/*
 * A context whose allocator counts (and fails every call after fail_after,
 * -1 never), whose interrupt hook answers 1 from poll cancel_at on (-1
 * never), and whose hooks count calls made off the calling thread.
 */
void		dh_ctx(sp_ctx *ctx, ds_hooks *h, long fail_after, long cancel_at);

/*
 * Write a pair of one BF16 tensor "w" of nel elements: base values in
 * [1, 2), each fine-tune element its base with the bits in mask flipped at
 * random (seeded).  False if either file cannot be written.
 */
bool		rt_write_bf16_pair(const char *base, const char *ft, size_t nel, uint64_t seed,
							   uint16_t mask);

/* Offset of the first chunk record of kind (and transform, unless -1) in a delta in memory; 0 if none. */
size_t		rt_find_chunk(const uint8_t *d, size_t len, int kind, int transform, size_t *plen);

/* Recompute the XXH3-64 of the record at pos (payload length plen). */
void		rt_fix_record_sum(uint8_t *d, size_t pos, size_t plen);

#endif							/* SPARSE_TEST_RT_UTIL_H */
