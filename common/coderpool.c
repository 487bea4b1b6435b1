/*
 * coderpool.c -- tensor chunks coded on helper threads (see coderpool.h).
 *
 * How it works: one mutex guards a ring of submitted jobs; workers sleep
 * on "work" until a job is queued, take the oldest, code it outside the
 * lock with their own codec and a plain sp_ctx (malloc, no hooks), then
 * mark it done and wake the caller on "done".  The caller waits for its
 * jobs in the order it submitted them, in 20 ms slices, calling its own
 * interrupt hook between slices, so a cancel is seen while workers code.
 * Stopping drops queued jobs, raises a flag that the job in hand checks
 * between byte planes (its worker's interrupt hook reads only that flag),
 * and joins the workers; only then may the caller reuse or free the job
 * buffers.
 */
#include "coderpool.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "util.h"

/* Slice of a wait between two checks of the caller's interrupt hook. */
#define POOL_WAIT_MS 20L

int
sp_pool_threads(int threads)
{
	long		cores;

	if (threads > 0)
		return threads < SP_POOL_THREADS_MAX ? threads : SP_POOL_THREADS_MAX;
	cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		return 1;
	return cores < SP_POOL_THREADS_MAX ? (int) cores : SP_POOL_THREADS_MAX;
}

/* Code job j with codec c under ctx (any thread; the job's own buffers only). */
static void
run_job(sp_ctx *ctx, sp_codec *c, sp_tjob *j)
{
	sp_clear_error(ctx);
	j->checksum = XXH3_64bits(j->ft, j->n);
	if (sp_codec_encode_tensor(ctx, c, j->level, j->dt, j->ft, j->base, j->n, &j->geom,
							   j->out, j->cap, &j->used, &j->transform) != SP_OK)
		j->err = ctx->err;
	else
		j->err.code = SP_OK;
}

/* A worker's interrupted hook: the pool is stopping (reads one flag, nothing else). */
static int
pool_cancelled(void *user)
{
	return __atomic_load_n(&((sp_coderpool *) user)->cancel, __ATOMIC_RELAXED);
}

/* A worker: code queued jobs until told to stop. */
static void *
pool_main(void *arg)
{
	sp_poolarg *a = arg;
	sp_coderpool *p = a->pool;
	sp_codec   *c = &p->codecs[a->k];
	sp_ctx		plain;

	/* malloc, and an interrupt check of our own flag: never the caller's hooks */
	sp_ctx_init(&plain);
	plain.hooks.interrupted = pool_cancelled;
	plain.hooks.user = p;
	pthread_mutex_lock(&p->mu);
	for (;;)
	{
		sp_tjob    *j;

		while (p->qlen == 0 && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		j = p->queue[p->qhead];
		p->qhead = (p->qhead + 1) % (SP_POOL_THREADS_MAX + 1);
		p->qlen--;
		pthread_mutex_unlock(&p->mu);
		run_job(&plain, c, j);
		pthread_mutex_lock(&p->mu);
		j->done = true;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Start worker k (every signal blocked in it); false if it cannot be created. */
static bool
pool_spawn(sp_coderpool *p, int k)
{
	p->args[k].pool = p;
	p->args[k].k = k;
	return sp_spawn_blocked(&p->threads[k], pool_main, &p->args[k]);
}

void
sp_pool_start(sp_coderpool *p, int nthreads, sp_codec *codec)
{
	sp_ctx		plain;

	memset(p, 0, sizeof(*p));
	p->inline_codec = codec;
	if (nthreads <= 1)
		return;
	if (nthreads > SP_POOL_THREADS_MAX)
		nthreads = SP_POOL_THREADS_MAX;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->sync_init = true;
	/* each worker's codec allocates with malloc: it is used off the caller's thread */
	sp_ctx_init(&plain);
	for (int k = 0; k < nthreads; k++)
	{
		if (sp_codec_init(&plain, &p->codecs[k]) != SP_OK)
			break;
		if (!pool_spawn(p, k))
		{
			sp_codec_free(&plain, &p->codecs[k]);
			break;
		}
		p->nthreads = k + 1;
	}
}

void
sp_pool_submit(sp_ctx *ctx, sp_coderpool *p, sp_tjob *j)
{
	j->done = false;
	if (p->nthreads == 0)
	{
		run_job(ctx, p->inline_codec, j);
		j->done = true;
		return;
	}
	pthread_mutex_lock(&p->mu);
	/* the caller keeps at most nthreads + 1 jobs out: the ring has room */
	p->queue[(p->qhead + p->qlen) % (SP_POOL_THREADS_MAX + 1)] = j;
	p->qlen++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

sp_status
sp_pool_wait(sp_ctx *ctx, sp_coderpool *p, sp_tjob *j)
{
	if (p->nthreads > 0)
	{
		pthread_mutex_lock(&p->mu);
		while (!j->done)
		{
			struct timespec t = sp_deadline_ms(POOL_WAIT_MS);

			pthread_cond_timedwait(&p->done, &p->mu, &t);
			if (!j->done)
			{
				/* the hook runs on the caller's thread, without the lock */
				pthread_mutex_unlock(&p->mu);
				if (sp_check_interrupt(ctx) != SP_OK)
					return ctx->err.code;
				pthread_mutex_lock(&p->mu);
			}
		}
		pthread_mutex_unlock(&p->mu);
	}
	if (j->err.code != SP_OK)
	{
		ctx->err = j->err;
		return j->err.code;
	}
	return SP_OK;
}

void
sp_pool_stop(sp_coderpool *p)
{
	sp_ctx		plain;

	if (!p->sync_init)
		return;
	__atomic_store_n(&p->cancel, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	p->qlen = 0;				/* queued jobs are dropped */
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	sp_ctx_init(&plain);
	for (int k = 0; k < p->nthreads; k++)
	{
		pthread_join(p->threads[k], NULL);
		sp_codec_free(&plain, &p->codecs[k]);
	}
	p->nthreads = 0;
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	p->sync_init = false;
}
