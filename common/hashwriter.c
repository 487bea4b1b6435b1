/*
 * hashwriter.c -- SHA-256, writing and flushing of decoded bytes on two
 * helper threads (see hashwriter.h).
 *
 * How it works: one mutex and one condition variable guard a job slot and
 * the flush state.  sp_hw_submit waits until the slot is free, fills it
 * and signals; the worker hashes, writes (retrying EINTR and short writes,
 * keeping the first errno), counts the bytes written and frees the slot.
 * The flusher sleeps until SP_HW_SYNC_EVERY bytes are written but not
 * flushed, then calls fdatasync outside the lock, so writing goes on
 * meanwhile (on this project's 2-core VM a 100 MB file's single fsync took
 * 0.15 s; flushed every 16 MiB beside the decoding, the last one 0.01 s).
 * sp_hw_drain waits for both and forbids new flushes until the next
 * submit, so the caller may fsync, close or rename the file.  In direct
 * mode (sp_hw_direct) the worker copies each hashed buffer into the stage
 * it fills and marks the stage full; the second thread writes full stages
 * in turn with pwrite at the file's end instead of flushing, and
 * sp_hw_drain waits for them, then writes the partial stage itself.  The
 * threads start on the first submit (the flusher on the first with a
 * file) and sp_hw_stop joins them.
 * Threads: the helpers compute the digest, copy into the stages, and call
 * write(2), pwrite(2), fcntl(2) and fdatasync(2) only; the caller's hooks
 * and allocator stay on the caller's thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* O_DIRECT */
#endif
#include "hashwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Keep the first error (errno err; flush: it came from fdatasync). */
static void
hw_fail(sp_hashwriter *hw, int err, bool flush)
{
	if (hw->err == 0)
	{
		hw->err = err;
		hw->err_flush = flush;
	}
}

/* Write p[0..n) to fd; 0 or errno. */
static int
hw_write(int fd, const uint8_t *p, size_t n)
{
	while (n > 0)
	{
		ssize_t		w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		p += w;
		n -= (size_t) w;
	}
	return 0;
}

/* Turn O_DIRECT off if it is on; true if it was on and now is off. */
static bool
hw_drop_direct(int fd)
{
	int			fl = fcntl(fd, F_GETFL);

	return fl >= 0 && (fl & O_DIRECT) && sp_fd_direct(fd, false);
}

/*
 * Write p[0..n) at off; 0 or errno.  A direct write the file system
 * refuses (EINVAL) turns O_DIRECT off and goes on buffered from where it
 * stopped: positioned writes, so a short write is never repeated.
 */
static int
hw_pwrite(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0)
	{
		ssize_t		w = pwrite(fd, p, n, (off_t) off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EINVAL && hw_drop_direct(fd))
			continue;			/* once: a buffered EINVAL is an error */
		if (w < 0)
			return errno;
		p += w;
		n -= (size_t) w;
		off += (uint64_t) w;
	}
	return 0;
}

/* Copy the job into the stages, handing each full one to the second thread (lock not held). */
static void
hw_stage(sp_hashwriter *hw)
{
	const uint8_t *p = hw->p;
	size_t		n = hw->n;

	while (n > 0)
	{
		int			c = hw->cur;
		size_t		k;
		int			err;

		pthread_mutex_lock(&hw->mu);
		while (hw->stage_full[c] && hw->err == 0)
			pthread_cond_wait(&hw->cv, &hw->mu);
		err = hw->err;
		pthread_mutex_unlock(&hw->mu);
		if (err)
			return;				/* recorded already; the file is abandoned */
		k = SP_MIN(n, SP_DIRECT_STAGE - hw->stage_len[c]);
		memcpy(hw->stage[c] + hw->stage_len[c], p, k);
		hw->stage_len[c] += k;
		p += k;
		n -= k;
		if (hw->stage_len[c] < SP_DIRECT_STAGE)
			continue;
		pthread_mutex_lock(&hw->mu);
		hw->stage_full[c] = true;
		pthread_cond_broadcast(&hw->cv);
		pthread_mutex_unlock(&hw->mu);
		hw->cur = c ^ 1;
	}
}

/* Hash the job and write (or stage) it if asked (on whichever thread runs it; lock not held). */
static int
hw_run(sp_hashwriter *hw, bool write_it)
{
	sp_sha256_update(hw->sha, hw->p, hw->n);
	if (write_it && hw->direct)
	{
		hw_stage(hw);
		return 0;
	}
	return write_it ? hw_write(hw->fd, hw->p, hw->n) : 0;
}

/* The worker: run jobs until told to stop. */
static void *
hw_main(void *arg)
{
	sp_hashwriter *hw = arg;

	pthread_mutex_lock(&hw->mu);
	for (;;)
	{
		bool		write_it;
		int			err;

		while (!hw->busy && !hw->stop)
			pthread_cond_wait(&hw->cv, &hw->mu);
		if (!hw->busy)
			break;
		write_it = hw->fd >= 0 && hw->err == 0;	/* after an error, only hash */
		pthread_mutex_unlock(&hw->mu);
		err = hw_run(hw, write_it);
		pthread_mutex_lock(&hw->mu);
		if (err)
			hw_fail(hw, err, false);
		else if (hw->fd >= 0 && !hw->direct)
			hw->written += hw->n;	/* direct: counted when the stage is written */
		hw->busy = false;
		pthread_cond_broadcast(&hw->cv);
	}
	pthread_mutex_unlock(&hw->mu);
	return NULL;
}

/* Is a flush due (lock held)?  Direct writes need none before the final fsync. */
static bool
flush_due(const sp_hashwriter *hw)
{
	return hw->may_sync && hw->err == 0 && hw->fd >= 0 && !hw->direct &&
		hw->written - hw->synced >= SP_HW_SYNC_EVERY;
}

/* Is a full stage waiting to be written (lock held)? */
static bool
stage_due(const sp_hashwriter *hw)
{
	return hw->direct && hw->stage_full[hw->wcur];
}

/* Write the next full stage at the end of the file (lock held, released meanwhile). */
static void
hw_write_stage(sp_hashwriter *hw)
{
	int			c = hw->wcur,
				rc = 0;
	size_t		n = hw->stage_len[c];
	uint64_t	off = hw->written;

	if (hw->err == 0)
	{
		pthread_mutex_unlock(&hw->mu);
		rc = hw_pwrite(hw->dfd, hw->stage[c], n, off);
		pthread_mutex_lock(&hw->mu);
	}
	if (rc)
		hw_fail(hw, rc, false);
	else if (hw->err == 0)
		hw->written += n;
	hw->stage_len[c] = 0;
	hw->stage_full[c] = false;
	hw->wcur = c ^ 1;
}

/* The second thread: write full stages (direct I/O), or fdatasync each time enough is written. */
static void *
hw_flusher(void *arg)
{
	sp_hashwriter *hw = arg;

	pthread_mutex_lock(&hw->mu);
	for (;;)
	{
		uint64_t	upto;
		int			fd,
					rc;

		while (!stage_due(hw) && !flush_due(hw) && !hw->stop)
			pthread_cond_wait(&hw->cv, &hw->mu);
		if (hw->stop)
			break;
		hw->syncing = true;
		if (stage_due(hw))
			hw_write_stage(hw);
		else
		{
			upto = hw->written;
			fd = hw->fd;
			pthread_mutex_unlock(&hw->mu);
			rc = fdatasync(fd) == 0 ? 0 : errno;
			pthread_mutex_lock(&hw->mu);
			if (rc)
				hw_fail(hw, rc, true);
			else
				hw->synced = upto;
		}
		hw->syncing = false;
		pthread_cond_broadcast(&hw->cv);
	}
	pthread_mutex_unlock(&hw->mu);
	return NULL;
}

/* Set up an idle hash writer (no thread yet). */
void
sp_hw_init(sp_hashwriter *hw)
{
	memset(hw, 0, sizeof(*hw));
	pthread_mutex_init(&hw->mu, NULL);
	pthread_cond_init(&hw->cv, NULL);
}

/* Start the worker, and the second thread if a file is written (each if not running). */
static void
hw_start(sp_hashwriter *hw, bool file)
{
	if (!hw->started)
		hw->started = sp_spawn_blocked(&hw->thread, hw_main, hw);
	if (hw->started && file && !hw->flusher_started)
		hw->flusher_started = sp_spawn_blocked(&hw->flusher, hw_flusher, hw);
}

/*
 * Hash p[0..n) into sha and write it to fd (-1: do not write).  p, sha and
 * fd must stay untouched until the next sp_hw_wait, sp_hw_drain or
 * sp_hw_submit.
 */
void
sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n)
{
	sp_hw_wait(hw);
	hw_start(hw, fd >= 0);
	pthread_mutex_lock(&hw->mu);
	hw->sha = sha;
	hw->fd = fd;
	hw->p = p;
	hw->n = n;
	hw->may_sync = true;
	if (hw->started)
	{
		hw->busy = true;
		pthread_cond_broadcast(&hw->cv);
		pthread_mutex_unlock(&hw->mu);
		return;
	}
	pthread_mutex_unlock(&hw->mu);
	{
		int			err = hw_run(hw, fd >= 0 && hw->err == 0);	/* no thread: inline */

		if (err)
			hw_fail(hw, err, false);
	}
}

/* Wait until the job in flight is done; returns the first error's errno, or 0. */
int
sp_hw_wait(sp_hashwriter *hw)
{
	int			err;

	pthread_mutex_lock(&hw->mu);
	while (hw->busy)
		pthread_cond_wait(&hw->cv, &hw->mu);
	err = hw->err;
	pthread_mutex_unlock(&hw->mu);
	return err;
}

/*
 * Write the partly filled stage, the end of a direct file, buffered: its
 * length need not be aligned (lock held; both helpers are idle).
 */
static void
hw_write_tail(sp_hashwriter *hw)
{
	int			c = hw->cur,
				rc = errno = 0;

	if (sp_fd_direct(hw->dfd, false))
		rc = hw_pwrite(hw->dfd, hw->stage[c], hw->stage_len[c], hw->written);
	else
		rc = errno ? errno : EINVAL;
	if (rc)
		hw_fail(hw, rc, false);
	else
		hw->written += hw->stage_len[c];
	hw->stage_len[c] = 0;
}

/*
 * Wait until the job in flight and any flush are done, and start no flush
 * until the next submit: the file is then the caller's to fsync or close.
 */
int
sp_hw_drain(sp_hashwriter *hw)
{
	int			err;

	pthread_mutex_lock(&hw->mu);
	while (hw->busy || hw->syncing || stage_due(hw))
		pthread_cond_wait(&hw->cv, &hw->mu);
	hw->may_sync = false;
	if (hw->direct && hw->err == 0 && hw->stage_len[hw->cur] > 0)
		hw_write_tail(hw);
	err = hw->err;
	pthread_mutex_unlock(&hw->mu);
	return err;
}

/* The next submits go to a new file: clear the counts and the error. */
void
sp_hw_new_file(sp_hashwriter *hw)
{
	sp_hw_drain(hw);
	pthread_mutex_lock(&hw->mu);
	hw->written = hw->synced = 0;
	hw->err = 0;
	hw->err_flush = false;
	hw->direct = false;
	hw->dfd = -1;
	hw->stage_len[0] = hw->stage_len[1] = 0;
	hw->stage_full[0] = hw->stage_full[1] = false;
	hw->cur = hw->wcur = 0;
	pthread_mutex_unlock(&hw->mu);
}

/*
 * Write the current file (fd, just opened, nothing written yet) with
 * O_DIRECT through stages: 2 * SP_DIRECT_STAGE bytes at an SP_DIRECT_ALIGN-aligned
 * address, lent until the next sp_hw_new_file or sp_hw_stop.  False (and
 * buffered writes) if the helpers cannot run or the file system refuses.
 */
bool
sp_hw_direct(sp_hashwriter *hw, int fd, uint8_t *stages)
{
	sp_hw_drain(hw);
	hw_start(hw, true);
	if (!hw->started || !hw->flusher_started || ((uintptr_t) stages % SP_DIRECT_ALIGN) != 0 ||
		!sp_fd_direct(fd, true))
		return false;
	pthread_mutex_lock(&hw->mu);
	hw->direct = true;
	hw->dfd = fd;
	hw->stage[0] = stages;
	hw->stage[1] = stages + SP_DIRECT_STAGE;
	pthread_mutex_unlock(&hw->mu);
	return true;
}

/* Finish the job in flight, end the helpers and release the writer. */
void
sp_hw_stop(sp_hashwriter *hw)
{
	sp_hw_drain(hw);
	pthread_mutex_lock(&hw->mu);
	hw->stop = true;
	pthread_cond_broadcast(&hw->cv);
	pthread_mutex_unlock(&hw->mu);
	if (hw->started)
		pthread_join(hw->thread, NULL);
	if (hw->flusher_started)
		pthread_join(hw->flusher, NULL);
	hw->started = hw->flusher_started = false;
	pthread_cond_destroy(&hw->cv);
	pthread_mutex_destroy(&hw->mu);
}
