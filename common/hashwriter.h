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
 * (never for a flush; direct mode, below, works differently).  The helpers
 * touch only the buffer, the digest state and the file descriptor they are
 * given: no hook, no allocation, no database call, every signal blocked.
 * Without threads (pthread_create failed) the hashing and writing run
 * inline and nothing is flushed early.
 *
 * Direct I/O (sp_hw_direct, for large files): the file is switched to
 * O_DIRECT and the caller decodes straight into a ring of SP_HW_RING
 * aligned bytes it lent (sp_hw_space says where the next piece goes), so no
 * byte is copied on its way to the device.  The worker hashes what was
 * handed over, in order, and the second thread writes each aligned
 * SP_DIRECT_STAGE of the ring at its file offset instead of flushing; the
 * caller may run up to a ring ahead of the slower of the two.  The kernel
 * then copies nothing into its page cache and has nothing to write back at
 * the fsync (on this project's VM, writing 0.5 GB and fsyncing took 1.7 s
 * of system time buffered, 0.4 s with O_DIRECT).  The last partial stage is
 * written by sp_hw_drain without O_DIRECT.  A file system that refuses
 * O_DIRECT (tmpfs, some network file systems) keeps buffered writes; a
 * direct write that fails with EINVAL is retried buffered and the file
 * stays buffered.  In direct mode a piece can also be checked: after
 * sp_hw_expect, the worker computes the XXH3 of the next piece submitted
 * beside its SHA-256 (the bytes are in cache then) and compares it, so the
 * decoder need not; sp_hw_bad_piece names the first that did not match.
 */
#ifndef SPARSE_HASHWRITER_H
#define SPARSE_HASHWRITER_H

#include <pthread.h>

#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY
#endif
#include <xxhash.h>

#include "files.h"
#include "util.h"

#define SP_HW_SYNC_EVERY ((uint64_t) 16 << 20)
#define SP_HW_RING (4 * (size_t) SP_DIRECT_STAGE)	/* direct I/O ring: four stages */
#define SP_HW_PIECES 64			/* checked pieces in the ring at once, at most */

/* A handed-over ring piece whose XXH3 must be want (direct mode, sp_hw_expect). */
typedef struct sp_hw_piece
{
	uint64_t	start,
				end;			/* its file offsets */
	uint64_t	want;
	uint64_t	tag;			/* the caller's name for it */
} sp_hw_piece;

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
	/* direct I/O of the current file (see above): positions are file offsets */
	bool		direct;
	uint8_t    *ring;			/* SP_HW_RING bytes and slack after them, aligned */
	size_t		slack;			/* how far a piece may run past the ring's end */
	uint64_t	decoded;		/* bytes handed over: [retired, decoded) are in the ring */
	uint64_t	hashed;			/* of which hashed */
	uint64_t	retired;		/* of which written (or dropped after an error) */
	int			dfd;			/* the file being written directly */
	/* direct mode: checksums of pieces, checked by the worker as it hashes them */
	bool		expect;			/* the next piece submitted is checked ... */
	uint64_t	expect_want,	/* ... against this XXH3 */
				expect_tag;
	sp_hw_piece pieces[SP_HW_PIECES];	/* handed over, not yet checked, in order */
	int			pq_head,
				pq_len;
	XXH3_state_t sum;			/* XXH3 of the first piece, so far */
	bool		bad;			/* a piece did not match ... */
	uint64_t	bad_tag;		/* ... the first such */
} sp_hashwriter;

void		sp_hw_init(sp_hashwriter *hw);
void		sp_hw_submit(sp_hashwriter *hw, sp_sha256 *sha, int fd, const uint8_t *p, size_t n);
int			sp_hw_wait(sp_hashwriter *hw);
int			sp_hw_drain(sp_hashwriter *hw);
void		sp_hw_new_file(sp_hashwriter *hw);
bool		sp_hw_direct(sp_hashwriter *hw, int fd, uint8_t *ring, size_t slack);
uint8_t    *sp_hw_space(sp_hashwriter *hw, size_t n);
void		sp_hw_expect(sp_hashwriter *hw, uint64_t want, uint64_t tag);
bool		sp_hw_bad_piece(sp_hashwriter *hw, uint64_t *tag);
void		sp_hw_stop(sp_hashwriter *hw);

#endif
