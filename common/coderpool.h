/*
 * coderpool.h -- tensor chunks coded on helper threads (internal).
 *
 * The compressor reads, hashes and writes on the caller's thread and hands
 * each tensor chunk to be coded (transform, byte planes, entropy coding) to
 * a pool of worker threads, one per core; it takes the results back in
 * chunk order, so the delta is the same bytes as a one-thread run.  Each
 * worker has its own codec made with plain malloc: the workers touch only
 * the job's buffers, call no hook, allocate nothing through the caller and
 * block every signal.  With no threads (threads == 1, or pthread_create
 * failed) a job runs inline on submission, through the caller's context.
 */
#ifndef SPARSE_CODERPOOL_H
#define SPARSE_CODERPOOL_H

#include <pthread.h>

#include "codec.h"

#define SP_POOL_THREADS_MAX 16

/* One tensor chunk to code. */
typedef struct sp_tjob
{
	/* in */
	int			level;
	sp_dtype	dt;
	const uint8_t *ft;
	const uint8_t *base;		/* NULL: no base */
	size_t		n;
	sp_tgeom	geom;			/* where the chunk sits in its tensor */
	uint8_t    *out;
	size_t		cap;
	/* out */
	size_t		used;
	uint8_t		transform;
	uint64_t	checksum;		/* XXH3 of ft */
	sp_error	err;			/* code SP_OK when coded */
	bool		done;
} sp_tjob;

struct sp_coderpool;

/* What a worker thread is started with. */
typedef struct sp_poolarg
{
	struct sp_coderpool *pool;
	int			k;				/* its codec: pool->codecs[k] */
} sp_poolarg;

/* The workers, their codecs and the queue of submitted jobs. */
typedef struct sp_coderpool
{
	int			nthreads;		/* 0: jobs run inline */
	pthread_t	threads[SP_POOL_THREADS_MAX];
	sp_codec	codecs[SP_POOL_THREADS_MAX];
	sp_poolarg	args[SP_POOL_THREADS_MAX];
	pthread_mutex_t mu;
	pthread_cond_t work;		/* a job was queued, or stop */
	pthread_cond_t done;		/* a job finished */
	sp_tjob    *queue[SP_POOL_THREADS_MAX + 1];	/* ring of submitted jobs */
	int			qhead,
				qlen;
	bool		stop;
	int			cancel;			/* set (atomically) by sp_pool_stop: jobs in hand stop early */
	bool		sync_init;		/* mu and the condition variables exist */
	sp_codec   *inline_codec;	/* the caller's codec, for inline jobs */
} sp_coderpool;

/* The thread count to use for a request of threads (0: one per online core). */
int			sp_pool_threads(int threads);

/*
 * Start nthreads workers (the queue holds at most nthreads + 1 jobs); with
 * nthreads <= 1 or when no thread starts, jobs run inline with codec.
 */
void		sp_pool_start(sp_coderpool *p, int nthreads, sp_codec *codec);

/* Hand a job over (or run it now, inline).  At most nthreads + 1 may wait. */
void		sp_pool_submit(sp_ctx *ctx, sp_coderpool *p, sp_tjob *j);

/*
 * Wait until j is coded, checking the caller's interrupt hook every 20 ms;
 * returns SP_ERR_CANCELLED (j may still be running: stop the pool before
 * touching its buffers) or j's own status, copied into ctx.
 */
sp_status	sp_pool_wait(sp_ctx *ctx, sp_coderpool *p, sp_tjob *j);

/*
 * Drop the queued jobs, tell the running ones to stop at their next check
 * (between byte planes), join and free the workers.
 */
void		sp_pool_stop(sp_coderpool *p);

#endif							/* SPARSE_CODERPOOL_H */
