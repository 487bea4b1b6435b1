/*
 * hashwriter.h -- SHA-256 and writing of decoded bytes on a second thread.
 *
 * The decoder hands each decoded buffer over (sp_hw_submit) and goes on
 * decoding the next one into another buffer while a worker thread hashes
 * the handed buffer and, for a file output, writes it.  One buffer is in flight at a time: submit first waits for the
 * previous one.  The worker touches only the buffer, the digest state and
 * the file descriptor it is given: no hook, no allocation, no database
 * call, every signal blocked.  Without a thread (pthread_create failed) the
 * same work runs inline.
 */
#ifndef SPARSE_HASHWRITER_H
#define SPARSE_HASHWRITER_H

#include <pthread.h>

#include "util.h"

/* The worker and the one job it may hold. */
typedef struct sp_hashwriter
{
	pthread_t	thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool		started;		/* thread running (else: inline) */
	bool		busy;			/* a job is held */
	bool		stop;
	/* the job */
	sp_sha256  *sha;
	int			fd;				/* -1: hash only */
	const uint8_t *p;
	size_t		n;
	/* results */
	int			err;			/* errno of the first failed write, or 0 */
} sp_hashwriter;

void		sp_hw_init(sp_hashwriter *hw);
void		sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n);
int			sp_hw_wait(sp_hashwriter *hw);
void		sp_hw_stop(sp_hashwriter *hw);
void		sp_hw_new_file(sp_hashwriter *hw);

#endif
