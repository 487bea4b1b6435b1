/*
 * hashwriter.h -- SHA-256, writing and flushing of decoded bytes on two
 * helper threads.
 *
 * The decoder hands each decoded buffer over (sp_hw_submit) and goes on
 * decoding the next one into another buffer while a worker thread hashes
 * the handed buffer and, for a file output, writes it.  A second thread
 * fdatasyncs a file output every SP_HW_SYNC_EVERY written bytes, beside
 * both, so the caller's final fsync has only the tail left to flush.  One
 * buffer is in flight at a time: submit first waits for the previous one
 * (never for a flush).  The helpers touch only the buffer, the digest
 * state and the file descriptor they are given: no hook, no allocation, no
 * database call, every signal blocked.  Without threads (pthread_create
 * failed) the hashing and writing run inline and nothing is flushed early.
 */
#ifndef SPARSE_HASHWRITER_H
#define SPARSE_HASHWRITER_H

#include <pthread.h>

#include "util.h"

#define SP_HW_SYNC_EVERY ((uint64_t) 16 << 20)

/* The helpers and the one job they may hold. */
typedef struct sp_hashwriter
{
	pthread_t	thread;			/* hashes and writes */
	pthread_t	flusher;		/* fdatasyncs */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool		started;		/* worker running (else: inline) */
	bool		flusher_started;
	bool		busy;			/* a job is held */
	bool		syncing;		/* a flush is running */
	bool		may_sync;		/* a flush may start (cleared by sp_hw_drain) */
	bool		stop;
	/* the job */
	sp_sha256  *sha;
	int			fd;				/* -1: hash only */
	const uint8_t *p;
	size_t		n;
	/* the current file */
	uint64_t	written;		/* bytes written to fd */
	uint64_t	synced;			/* of which flushed */
	int			err;			/* errno of the first failed write or flush, or 0 */
	bool		err_flush;		/* it was a flush */
} sp_hashwriter;

void		sp_hw_init(sp_hashwriter *hw);
void		sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n);
int			sp_hw_wait(sp_hashwriter *hw);
int			sp_hw_drain(sp_hashwriter *hw);
void		sp_hw_new_file(sp_hashwriter *hw);
void		sp_hw_stop(sp_hashwriter *hw);

#endif
