/*
 * hashwriter.c -- SHA-256 and writing of decoded bytes on a second thread
 * (see hashwriter.h).
 *
 * How it works: a mutex and a condition variable guard one job slot.
 * sp_hw_submit waits until the slot is free, fills it and signals; the
 * worker hashes, writes (retrying EINTR and short writes, keeping the
 * first errno) and frees the slot.  The thread starts on the first submit,
 * so a run that writes nothing creates none, and sp_hw_stop joins it.
 * Threads: the worker computes the digest and calls write(2)
 * only; the caller's hooks and allocator stay on the
 * caller's thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "hashwriter.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

/* Hash and write one job (on whichever thread runs it). */
static void
hw_run(sp_hashwriter *hw)
{
	const uint8_t *p = hw->p;
	size_t		n = hw->n;

	sp_sha256_update(hw->sha, p, n);
	if (hw->fd < 0 || hw->err)
		return;
	while (n > 0)
	{
		ssize_t		w = write(hw->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
		{
			hw->err = errno;
			return;
		}
		p += w;
		n -= (size_t) w;
	}
}

/* The worker: run jobs until told to stop. */
static void *
hw_main(void *arg)
{
	sp_hashwriter *hw = arg;

	pthread_mutex_lock(&hw->mu);
	for (;;)
	{
		while (!hw->busy && !hw->stop)
			pthread_cond_wait(&hw->cv, &hw->mu);
		if (!hw->busy)
			break;
		pthread_mutex_unlock(&hw->mu);
		hw_run(hw);
		pthread_mutex_lock(&hw->mu);
		hw->busy = false;
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

/* Start the worker; false (work inline) if the thread cannot be created. */
static bool
hw_start(sp_hashwriter *hw)
{
	sigset_t	all,
				old;

	/* the worker blocks every signal: the caller's handlers run on the caller's thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	hw->started = pthread_create(&hw->thread, NULL, hw_main, hw) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return hw->started;
}

/*
 * Hash p[0..n) into sha and write it to fd (-1: do not write).  p, sha and
 * fd must stay untouched until the next sp_hw_wait or sp_hw_submit.
 */
void
sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n)
{
	sp_hw_wait(hw);
	hw->sha = sha;
	hw->fd = fd;
	hw->p = p;
	hw->n = n;
	if (!hw->started && !hw_start(hw))
	{
		hw_run(hw);
		return;
	}
	pthread_mutex_lock(&hw->mu);
	hw->busy = true;
	pthread_cond_signal(&hw->cv);
	pthread_mutex_unlock(&hw->mu);
}

/* Wait until the job in flight is done; returns the first write errno, or 0. */
int
sp_hw_wait(sp_hashwriter *hw)
{
	if (hw->started)
	{
		pthread_mutex_lock(&hw->mu);
		while (hw->busy)
			pthread_cond_wait(&hw->cv, &hw->mu);
		pthread_mutex_unlock(&hw->mu);
	}
	return hw->err;
}

/* The next submits go to a new file: restart the write-back offset. */
void
sp_hw_new_file(sp_hashwriter *hw)
{
	sp_hw_wait(hw);
	hw->err = 0;
}

/* Finish the job in flight, end the worker and release the writer. */
void
sp_hw_stop(sp_hashwriter *hw)
{
	sp_hw_wait(hw);
	if (hw->started)
	{
		pthread_mutex_lock(&hw->mu);
		hw->stop = true;
		pthread_cond_signal(&hw->cv);
		pthread_mutex_unlock(&hw->mu);
		pthread_join(hw->thread, NULL);
		hw->started = false;
	}
	pthread_cond_destroy(&hw->cv);
	pthread_mutex_destroy(&hw->mu);
}
