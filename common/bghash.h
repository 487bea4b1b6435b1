/*
 * bghash.h -- digests of base files on a helper thread, beside decoding.
 *
 * Apply needs the base's digest only to refuse a wrong base (its
 * fingerprint, or its SHA-256 for deltas written before fingerprints;
 * compress computes both, util.h: sp_basehash); the rebuilt
 * bytes are checked by their own SHA-256 anyway, and nothing reaches the
 * final path before every check has passed.  So the base is hashed on a
 * helper thread while the decoder works, and the digests are compared
 * before the output is committed (apply.c: settle_bases).
 *
 * The caller allocates everything (buffer, digest states, the list of
 * files) and starts the helper; the helper only opens, reads and hashes
 * the files it was given (no hook, not the caller's allocator, no database
 * call, every signal blocked) and stops between reads when asked.  A job
 * may also go on with fingerprints the caller began (apply fingerprints
 * the base bytes its decoder reads, in order, and hands the rest of each
 * file over: sp_bghash_resume).  If the caller asks for no helper
 * (compress with sparse.threads = 1), or the thread cannot be started,
 * sp_bghash_finish hashes the files on the caller's thread (whole files,
 * resumed or not).
 */
#ifndef SPARSE_BGHASH_H
#define SPARSE_BGHASH_H

#include <pthread.h>

#include "files.h"
#include "util.h"

/* One background hashing job over some files of a file set. */
typedef struct sp_bghash
{
	pthread_t	thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool		started;		/* thread running (else: hash in finish) */
	bool		done;			/* thread finished (guarded by mu) */
	int			stop;			/* asked to stop (atomic) */
	sp_fileset *fs;
	size_t		n;
	size_t	   *idx;			/* file indexes in fs */
	unsigned	what;			/* SP_BH_*: the digests computed */
	bool		confined;		/* a root is set: open files refusing links */
	uint8_t    *digests;		/* n * SP_SHA256_LEN when SP_BH_SHA256, filled when done */
	uint8_t    *fps;			/* n * SP_FP_LEN when SP_BH_FP, likewise */
	uint8_t    *buf;
	const uint64_t *from;		/* resumed job: where each file's hashing goes on, or NULL */
	const sp_basehash *resume;	/* ... from these states of the bytes before it */
	struct bghash_job *job;		/* the helper's digest state */
	/* outcome */
	int			err;			/* errno of a failed open or read, or -1: file shrank */
	size_t		err_file;		/* which of the n */
} sp_bghash;

sp_status	sp_bghash_start(sp_ctx *ctx, sp_bghash *bh, sp_fileset *fs, const size_t *idx, size_t n,
							unsigned what, bool helper);
sp_status	sp_bghash_resume(sp_ctx *ctx, sp_bghash *bh, sp_fileset *fs, const size_t *idx, size_t n,
							 const uint64_t *from, const sp_basehash *states);
sp_status	sp_bghash_finish(sp_ctx *ctx, sp_bghash *bh);
void		sp_bghash_free(sp_ctx *ctx, sp_bghash *bh);

#endif
