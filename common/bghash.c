/*
 * bghash.c -- digests of base files on a helper thread (see bghash.h).
 *
 * How it works: sp_bghash_start copies the file indexes, allocates one read
 * buffer, one digest state and the digest arrays on the caller's thread,
 * then starts the helper.  The helper opens each file by its canonical
 * path, reads it front to back with pread into the buffer and hashes it
 * (SHA-256, fingerprint or both: the job's `what`),
 * checking the stop flag between reads (a resumed job starts each file
 * where the caller's fingerprint of it ends, from a copy of that state);
 * the first failure (errno, or -1
 * when the file ends early) ends the job.  It sets `done` under the mutex
 * and signals.  sp_bghash_finish waits in 20 ms slices, polling the
 * caller's interrupt hook between them, so a cancel stops the helper
 * within one read and returns at once.
 * Security: the helper opens only the canonical paths of a file set the
 * caller opened (resolved and checked against the root in files.c), and
 * reads only the size recorded there, as sp_fileset_hash does.
 */
#include "bghash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define BGHASH_STEP ((size_t) 256 << 10)	/* stays in cache between read and hash */

/* The state the helper uses besides the job: one digest state. */
typedef struct bghash_job
{
	sp_bghash  *bh;
	sp_basehash h;
} bghash_job;

/* Has the caller asked the helper to stop? */
static bool
stopped(sp_bghash *bh)
{
	return __atomic_load_n(&bh->stop, __ATOMIC_RELAXED) != 0;
}

/* Where file i's SHA-256 goes (NULL when not computed). */
static uint8_t *
digest_of(sp_bghash *bh, size_t i)
{
	return bh->digests ? bh->digests + i * SP_SHA256_LEN : NULL;
}

/* Where file i's fingerprint goes (NULL when not computed). */
static uint8_t *
fp_of(sp_bghash *bh, size_t i)
{
	return bh->fps ? bh->fps + i * SP_FP_LEN : NULL;
}

/*
 * Hash one open file of size bytes into file i's digests (a resumed job:
 * from where the caller's state of it ends); 0, errno, or -1 if it ended
 * early.
 */
static int
hash_fd(sp_bghash *bh, sp_basehash *h, int fd, uint64_t size, size_t i)
{
	uint64_t	off = bh->from ? SP_MIN(bh->from[i], size) : 0;

	if (!sp_basehash_restart(h))
		return ENOMEM;
	if (bh->from)
		sp_basehash_copy_fp(h, &bh->resume[i]);
	(void) posix_fadvise(fd, (off_t) off, 0, POSIX_FADV_SEQUENTIAL);
	while (off < size && !stopped(bh))
	{
		size_t		want = (size_t) SP_MIN((uint64_t) BGHASH_STEP, size - off);
		ssize_t		r = pread(fd, bh->buf, want, (off_t) off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			return -1;
		sp_basehash_update(h, bh->buf, (size_t) r);
		off += (uint64_t) r;
	}
	sp_basehash_final(h, digest_of(bh, i), fp_of(bh, i));
	return 0;
}

/* Hash n bytes in memory into file i's digests; 0 or ENOMEM. */
static int
hash_mem(sp_bghash *bh, sp_basehash *h, const uint8_t *p, uint64_t n, size_t i)
{
	if (!sp_basehash_restart(h))
		return ENOMEM;
	sp_basehash_update(h, p, (size_t) n);
	sp_basehash_final(h, digest_of(bh, i), fp_of(bh, i));
	return 0;
}

/* Hash every file of the job, stopping at the first failure or when asked. */
static void
hash_all(sp_bghash *bh, sp_basehash *h)
{
	for (size_t i = 0; i < bh->n && !stopped(bh); i++)
	{
		const sp_file *f = &bh->fs->f[bh->idx[i]];
		int			fd,
					err;

		if (f->mem)				/* a file set in memory (the *_mem entry points) */
			err = hash_mem(bh, h, f->mem, f->size, i);
		else if ((fd = sp_open_canon(f->path, O_RDONLY | O_CLOEXEC, 0, bh->confined)) < 0)
			err = errno;
		else
		{
			err = hash_fd(bh, h, fd, f->size, i);
			close(fd);
		}
		if (err)
		{
			bh->err = err;
			bh->err_file = i;
			return;
		}
	}
}

/* The helper thread: hash, then say so. */
static void *
bghash_main(void *arg)
{
	bghash_job *job = arg;
	sp_bghash  *bh = job->bh;

	hash_all(bh, &job->h);
	pthread_mutex_lock(&bh->mu);
	bh->done = true;
	pthread_cond_broadcast(&bh->cv);
	pthread_mutex_unlock(&bh->mu);
	return NULL;
}

/*
 * Start computing the digests `what` (SP_BH_*) of files idx[0..n) of fs on
 * a helper thread (helper false: later, in finish).
 */
sp_status
sp_bghash_start(sp_ctx *ctx, sp_bghash *bh, sp_fileset *fs, const size_t *idx, size_t n,
				unsigned what, bool helper)
{
	bghash_job *job;

	memset(bh, 0, sizeof(*bh));
	pthread_mutex_init(&bh->mu, NULL);
	pthread_cond_init(&bh->cv, NULL);
	bh->fs = fs;
	bh->n = n;
	bh->what = what;
	bh->confined = sp_confined(ctx);	/* read here: the helper never touches ctx */
	if ((bh->idx = sp_calloc(ctx, n ? n : 1, sizeof(size_t))) == NULL ||
		((what & SP_BH_SHA256) && (bh->digests = sp_calloc(ctx, n ? n : 1, SP_SHA256_LEN)) == NULL) ||
		((what & SP_BH_FP) && (bh->fps = sp_calloc(ctx, n ? n : 1, SP_FP_LEN)) == NULL) ||
		(bh->buf = sp_alloc(ctx, BGHASH_STEP)) == NULL ||
		(job = sp_calloc(ctx, 1, sizeof(*job))) == NULL)
		return SP_ERR_NOMEM;
	if (n)
		memcpy(bh->idx, idx, n * sizeof(size_t));
	job->bh = bh;
	bh->job = job;
	if (sp_basehash_init(ctx, &job->h, what) != SP_OK)
		return ctx->err.code;
	bh->started = helper && sp_spawn_blocked(&bh->thread, bghash_main, job);
	return SP_OK;
}

/*
 * Go on fingerprinting files idx[0..n) of fs on a helper thread: file i from
 * byte from[i], where states[i] (the caller's, untouched until finish or
 * free) holds the fingerprint of the bytes before it.
 */
sp_status
sp_bghash_resume(sp_ctx *ctx, sp_bghash *bh, sp_fileset *fs, const size_t *idx, size_t n,
				 const uint64_t *from, const sp_basehash *states)
{
	sp_status	rc = sp_bghash_start(ctx, bh, fs, idx, n, SP_BH_FP, false);

	if (rc != SP_OK)
		return rc;
	bh->from = from;
	bh->resume = states;
	bh->started = sp_spawn_blocked(&bh->thread, bghash_main, bh->job);
	return SP_OK;
}

/* Turn the helper's failure into a status. */
static sp_status
bghash_error(sp_ctx *ctx, sp_bghash *bh)
{
	const sp_file *f = &bh->fs->f[bh->idx[bh->err_file]];

	if (bh->err == -1)
	{
		sp_fail(ctx, SP_ERR_IO, "could not read \"%s\": file shrank while being read", f->path);
		ctx->err.sys_errno = EIO;
		return SP_ERR_IO;
	}
	if (bh->err == ENOMEM)
		return sp_fail(ctx, SP_ERR_NOMEM, "could not initialize SHA-256");
	if (bh->err == ELOOP && bh->confined)
		return sp_fail_open(ctx, bh->err, "could not read", f->path);
	return sp_fail_io(ctx, bh->err, "could not read \"%s\"", f->path ? f->path : f->rel);
}

/* Stop the helper (if running) and wait for it. */
static void
bghash_join(sp_bghash *bh)
{
	if (!bh->started)
		return;
	__atomic_store_n(&bh->stop, 1, __ATOMIC_RELAXED);
	pthread_join(bh->thread, NULL);
	bh->started = false;
}

/* Wait up to 20 ms for the helper; true when it is done. */
static bool
wait_slice(sp_bghash *bh)
{
	struct timespec until = sp_deadline_ms(20);
	bool		done;

	pthread_mutex_lock(&bh->mu);
	if (!bh->done)
		pthread_cond_timedwait(&bh->cv, &bh->mu, &until);
	done = bh->done;
	pthread_mutex_unlock(&bh->mu);
	return done;
}

/*
 * Wait for the digests (polling the interrupt hook every 20 ms), or hash
 * here if no thread could be started; a read error or cancel as a status.
 */
sp_status
sp_bghash_finish(sp_ctx *ctx, sp_bghash *bh)
{
	sp_status	rc;

	if (!bh->started)
	{
		for (size_t i = 0; i < bh->n; i++)
			if ((rc = sp_fileset_hash(ctx, bh->fs, bh->idx[i], bh->what, digest_of(bh, i),
									  fp_of(bh, i))) != SP_OK)
				return rc;
		return SP_OK;
	}
	while (!wait_slice(bh))
		if ((rc = sp_check_interrupt(ctx)) != SP_OK)
		{
			bghash_join(bh);
			return rc;
		}
	bghash_join(bh);
	return bh->err ? bghash_error(ctx, bh) : SP_OK;
}

/* Stop the helper and release everything (safe on a zeroed or half-started job). */
void
sp_bghash_free(sp_ctx *ctx, sp_bghash *bh)
{
	if (bh->fs == NULL)
		return;
	bghash_join(bh);
	if (bh->job)
		sp_basehash_free(ctx, &bh->job->h);
	sp_free(ctx, bh->job);
	sp_free(ctx, bh->idx);
	sp_free(ctx, bh->digests);
	sp_free(ctx, bh->fps);
	sp_free(ctx, bh->buf);
	pthread_mutex_destroy(&bh->mu);
	pthread_cond_destroy(&bh->cv);
	memset(bh, 0, sizeof(*bh));
}
