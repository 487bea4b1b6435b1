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
 * mode (sp_hw_direct) there is no job slot: the caller decodes into the
 * ring where sp_hw_space points, waiting there until that much of the ring
 * is hashed and written, and submit only advances the handed-over count
 * (copying a piece that ran past the ring's end to its start); the worker
 * hashes up to that count and the second thread writes each full stage
 * with pwrite at its offset; sp_hw_drain waits for both, then writes the
 * partial stage itself.  A piece submitted after sp_hw_expect joins a
 * queue of checked pieces (its offsets, the XXH3 it must have, the
 * caller's tag); the worker stops each hashing step at the first queued
 * piece's start and end, so that piece's bytes also go through an XXH3
 * state, compares the digest at its end and keeps the first mismatch.  The
 * threads start on the first submit (the flusher on the first with a
 * file) and sp_hw_stop joins them.
 * Threads: the helpers compute the digests and call
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

/* Hash the job and write it if asked (on whichever thread runs it; lock not held). */
static int
hw_run(sp_hashwriter *hw, bool write_it)
{
	sp_sha256_update(hw->sha, hw->p, hw->n);
	return write_it ? hw_write(hw->fd, hw->p, hw->n) : 0;
}

/* Are handed-over ring bytes waiting to be hashed (lock held)? */
static bool
ring_hash_due(const sp_hashwriter *hw)
{
	return hw->direct && hw->hashed < hw->decoded;
}

/*
 * How many ring bytes to hash next, from hashed on (lock held): up to the
 * ring's end, stopping at the start and at the end of the first checked
 * piece, so that its bytes, and only they, go through its XXH3 state;
 * *in_piece says whether they are its bytes.
 */
static size_t
ring_step(const sp_hashwriter *hw, bool *in_piece)
{
	size_t		o = (size_t) (hw->hashed % SP_HW_RING);
	uint64_t	k = SP_MIN(hw->decoded - hw->hashed, (uint64_t) (SP_HW_RING - o));
	const sp_hw_piece *pc = &hw->pieces[hw->pq_head];

	*in_piece = false;
	if (hw->pq_len == 0)
		return (size_t) k;
	if (hw->hashed < pc->start)
		return (size_t) SP_MIN(k, pc->start - hw->hashed);
	*in_piece = true;
	return (size_t) SP_MIN(k, pc->end - hw->hashed);
}

/* The first checked piece is hashed whole: compare its XXH3, drop it (lock held). */
static void
piece_done(sp_hashwriter *hw)
{
	const sp_hw_piece *pc = &hw->pieces[hw->pq_head];

	if (XXH3_64bits_digest(&hw->sum) != pc->want && !hw->bad)
	{
		hw->bad = true;
		hw->bad_tag = pc->tag;
	}
	hw->pq_head = (hw->pq_head + 1) % SP_HW_PIECES;
	hw->pq_len--;
}

/* Hash the next handed-over ring bytes (lock held, released meanwhile). */
static void
hw_hash_ring(sp_hashwriter *hw)
{
	bool		in_piece;
	size_t		k = ring_step(hw, &in_piece);
	sp_sha256  *sha = hw->sha;	/* read under the lock: submit sets it */
	const uint8_t *p = hw->ring + hw->hashed % SP_HW_RING;

	/* the XXH3 state is the worker's alone (reset here, at a piece's start) */
	if (in_piece && hw->hashed == hw->pieces[hw->pq_head].start)
		XXH3_64bits_reset(&hw->sum);
	pthread_mutex_unlock(&hw->mu);
	sp_sha256_update(sha, p, k);
	if (in_piece)
		XXH3_64bits_update(&hw->sum, p, k);
	pthread_mutex_lock(&hw->mu);
	hw->hashed += k;
	if (in_piece && hw->hashed == hw->pieces[hw->pq_head].end)
		piece_done(hw);
	pthread_cond_broadcast(&hw->cv);
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

		while (!hw->busy && !ring_hash_due(hw) && !hw->stop)
			pthread_cond_wait(&hw->cv, &hw->mu);
		if (!hw->busy && ring_hash_due(hw))
		{
			hw_hash_ring(hw);
			continue;
		}
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

/* Is a flush due (lock held)?  Direct writes need none before the final fsync. */
static bool
flush_due(const sp_hashwriter *hw)
{
	return hw->may_sync && hw->err == 0 && hw->fd >= 0 && !hw->direct &&
		hw->written - hw->synced >= SP_HW_SYNC_EVERY;
}

/* Is a full stage of the ring waiting to be written (lock held)? */
static bool
stage_due(const sp_hashwriter *hw)
{
	return hw->direct && hw->decoded - hw->retired >= SP_DIRECT_STAGE;
}

/*
 * Write the next full stage of the ring at its offset (lock held, released
 * meanwhile); after an error it is dropped unwritten, so the ring keeps
 * moving and the caller learns of the error from sp_hw_space or the drain.
 */
static void
hw_write_stage(sp_hashwriter *hw)
{
	uint64_t	off = hw->retired;
	const uint8_t *p = hw->ring + off % SP_HW_RING;
	int			fd = hw->dfd,
				rc = 0;

	if (hw->err == 0)
	{
		pthread_mutex_unlock(&hw->mu);
		rc = hw_pwrite(fd, p, SP_DIRECT_STAGE, off);
		pthread_mutex_lock(&hw->mu);
	}
	if (rc)
		hw_fail(hw, rc, false);
	else if (hw->err == 0)
		hw->written += SP_DIRECT_STAGE;
	hw->retired += SP_DIRECT_STAGE;
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
 * Direct mode: the n bytes at p (where sp_hw_space pointed) are handed
 * over; a piece that ran past the ring's end is copied to its start first,
 * where the helpers read it.
 */
static void
hw_submit_ring(sp_hashwriter *hw, sp_sha256 *sha, size_t n)
{
	size_t		o = (size_t) (hw->decoded % SP_HW_RING);

	if (o + n > SP_HW_RING)
		memcpy(hw->ring, hw->ring + SP_HW_RING, o + n - SP_HW_RING);
	pthread_mutex_lock(&hw->mu);
	if (hw->expect && n > 0)
	{
		while (hw->pq_len == SP_HW_PIECES)	/* the worker drops one as it hashes it */
			pthread_cond_wait(&hw->cv, &hw->mu);
		hw->pieces[(hw->pq_head + hw->pq_len) % SP_HW_PIECES] =
			(sp_hw_piece) {hw->decoded, hw->decoded + n, hw->expect_want, hw->expect_tag};
		hw->pq_len++;
	}
	hw->expect = false;
	hw->sha = sha;
	hw->decoded += n;
	pthread_cond_broadcast(&hw->cv);
	pthread_mutex_unlock(&hw->mu);
}

/*
 * Hash p[0..n) into sha and write it to fd (-1: do not write).  p, sha and
 * fd must stay untouched until the next sp_hw_wait, sp_hw_drain or
 * sp_hw_submit.  In direct mode p is where sp_hw_space pointed for n bytes,
 * and sha must stay until the drain.
 */
void
sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n)
{
	if (hw->direct)
	{
		hw_submit_ring(hw, sha, n);
		return;
	}
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
 * Write the ring's last partial stage, the end of a direct file, buffered:
 * its length need not be aligned (lock held; both helpers are idle).
 */
static void
hw_write_tail(sp_hashwriter *hw)
{
	uint64_t	off = hw->retired;
	int			rc = errno = 0;

	if (sp_fd_direct(hw->dfd, false))
		rc = hw_pwrite(hw->dfd, hw->ring + off % SP_HW_RING, (size_t) (hw->decoded - off), off);
	else
		rc = errno ? errno : EINVAL;
	if (rc)
		hw_fail(hw, rc, false);
	else
		hw->written += hw->decoded - off;
	hw->retired = hw->decoded;
}

/*
 * Wait until the job in flight, the ring (direct mode) and any flush are
 * done, and start no flush until the next submit: the file is then the
 * caller's to fsync or close.
 */
int
sp_hw_drain(sp_hashwriter *hw)
{
	int			err;

	pthread_mutex_lock(&hw->mu);
	while (hw->busy || hw->syncing || stage_due(hw) || ring_hash_due(hw))
		pthread_cond_wait(&hw->cv, &hw->mu);
	hw->may_sync = false;
	if (hw->direct && hw->err == 0 && hw->decoded > hw->retired)
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
	hw->ring = NULL;
	hw->decoded = hw->hashed = hw->retired = 0;
	hw->expect = hw->bad = false;
	hw->pq_head = hw->pq_len = 0;
	pthread_mutex_unlock(&hw->mu);
}

/*
 * Write the current file (fd, just opened, nothing written yet) with
 * O_DIRECT from a ring: SP_HW_RING + slack bytes at an SP_DIRECT_ALIGN-aligned
 * address, lent until the next sp_hw_new_file or sp_hw_stop; slack is the
 * largest piece sp_hw_space will be asked for.  False (and buffered writes
 * through sp_hw_submit as usual) if the helpers cannot run or the file
 * system refuses.
 */
bool
sp_hw_direct(sp_hashwriter *hw, int fd, uint8_t *ring, size_t slack)
{
	sp_hw_drain(hw);
	hw_start(hw, true);
	if (!hw->started || !hw->flusher_started || ((uintptr_t) ring % SP_DIRECT_ALIGN) != 0 ||
		slack > SP_HW_RING || !sp_fd_direct(fd, true))
		return false;
	pthread_mutex_lock(&hw->mu);
	hw->direct = true;
	hw->dfd = fd;
	hw->ring = ring;
	hw->slack = slack;
	hw->may_sync = true;
	pthread_mutex_unlock(&hw->mu);
	return true;
}

/*
 * Direct mode: where the next n bytes (at most the slack) are to be put
 * before sp_hw_submit, once the ring has room for them; NULL after a write
 * error (sp_hw_wait then reports it).
 */
uint8_t *
sp_hw_space(sp_hashwriter *hw, size_t n)
{
	uint8_t    *p = NULL;

	pthread_mutex_lock(&hw->mu);
	if (n > hw->slack)
		hw_fail(hw, EINVAL, false);
	while (hw->err == 0 &&
		   hw->decoded + n > SP_MIN(hw->hashed, hw->retired) + SP_HW_RING)
		pthread_cond_wait(&hw->cv, &hw->mu);
	if (hw->err == 0)
		p = hw->ring + hw->decoded % SP_HW_RING;
	pthread_mutex_unlock(&hw->mu);
	return p;
}

/*
 * Direct mode: the next piece submitted must have XXH3 want; the worker
 * checks it as it hashes it, and sp_hw_bad_piece reports tag if not.
 */
void
sp_hw_expect(sp_hashwriter *hw, uint64_t want, uint64_t tag)
{
	hw->expect = true;			/* read by sp_hw_submit, on the caller's thread too */
	hw->expect_want = want;
	hw->expect_tag = tag;
}

/* Did a checked piece of this file not match?  *tag names the first. */
bool
sp_hw_bad_piece(sp_hashwriter *hw, uint64_t *tag)
{
	bool		bad;

	pthread_mutex_lock(&hw->mu);
	bad = hw->bad;
	*tag = hw->bad_tag;
	pthread_mutex_unlock(&hw->mu);
	return bad;
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
