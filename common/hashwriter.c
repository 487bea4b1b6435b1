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
 * submit, so the caller may fsync, close or rename the file.  The threads
 * start on the first submit (the flusher on the first with a file) and
 * sp_hw_stop joins them.
 * Threads: the helpers compute the digest and call write(2) and
 * fdatasync(2) only; the caller's hooks and allocator stay on the caller's
 * thread.
 */
#include "hashwriter.h"

#include <errno.h>
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

/* Hash the job and write it if asked (on whichever thread runs it; lock not held). */
static int
hw_run(sp_hashwriter *hw, bool write_it)
{
	sp_sha256_update(hw->sha, hw->p, hw->n);
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
		else if (hw->fd >= 0)
			hw->written += hw->n;
		hw->busy = false;
		pthread_cond_broadcast(&hw->cv);
	}
	pthread_mutex_unlock(&hw->mu);
	return NULL;
}

/* Is a flush due (lock held)? */
static bool
flush_due(const sp_hashwriter *hw)
{
	return hw->may_sync && hw->err == 0 && hw->fd >= 0 &&
		hw->written - hw->synced >= SP_HW_SYNC_EVERY;
}

/* The flusher: fdatasync the file each time enough is written. */
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

		while (!flush_due(hw) && !hw->stop)
			pthread_cond_wait(&hw->cv, &hw->mu);
		if (hw->stop)
			break;
		hw->syncing = true;
		upto = hw->written;
		fd = hw->fd;
		pthread_mutex_unlock(&hw->mu);
		rc = fdatasync(fd) == 0 ? 0 : errno;
		pthread_mutex_lock(&hw->mu);
		if (rc)
			hw_fail(hw, rc, true);
		else
			hw->synced = upto;
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

/*
 * Hash p[0..n) into sha and write it to fd (-1: do not write).  p, sha and
 * fd must stay untouched until the next sp_hw_wait, sp_hw_drain or
 * sp_hw_submit.
 */
void
sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n)
{
	sp_hw_wait(hw);
	if (!hw->started)
		hw->started = sp_spawn_blocked(&hw->thread, hw_main, hw);
	if (hw->started && fd >= 0 && !hw->flusher_started)
		hw->flusher_started = sp_spawn_blocked(&hw->flusher, hw_flusher, hw);
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
 * Wait until the job in flight and any flush are done, and start no flush
 * until the next submit: the file is then the caller's to fsync or close.
 */
int
sp_hw_drain(sp_hashwriter *hw)
{
	int			err;

	pthread_mutex_lock(&hw->mu);
	while (hw->busy || hw->syncing)
		pthread_cond_wait(&hw->cv, &hw->mu);
	hw->may_sync = false;
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
	pthread_mutex_unlock(&hw->mu);
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
