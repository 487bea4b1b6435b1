/*
 * util.h -- internal helpers shared by every file of the core: errors,
 * allocation through the caller's hooks, interrupt polling, timing, SHA-256
 * (OpenSSL EVP) and little-endian byte access.  Nothing here is exported to
 * the bindings.
 */
#ifndef SPARSE_UTIL_H
#define SPARSE_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sparse.h"

#define SP_SHA256_LEN 32

#if defined(__GNUC__)
#define SP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SP_PRINTF(a, b)
#endif

/* Forget any error left in ctx by an earlier call (every entry point calls it). */
void		sp_clear_error(sp_ctx *ctx);

/* Record an error in ctx and return its code (so callers can "return sp_fail(...)"). */
sp_status	sp_fail(sp_ctx *ctx, sp_status code, const char *fmt,...) SP_PRINTF(3, 4);

/* Record an I/O error: message plus strerror(errno), errno kept. */
sp_status	sp_fail_io(sp_ctx *ctx, int err, const char *fmt,...) SP_PRINTF(3, 4);

/* Allocate through the caller's hook; NULL on failure (records SP_ERR_NOMEM). */
void	   *sp_alloc(sp_ctx *ctx, size_t size);

/* Allocate zeroed memory through the caller's hook. */
void	   *sp_calloc(sp_ctx *ctx, size_t n, size_t size);

/* Free through the caller's hook; NULL is fine. */
void		sp_free(sp_ctx *ctx, void *p);

/* Make *buf hold at least need bytes (old contents are not kept). */
sp_status	sp_reserve(sp_ctx *ctx, uint8_t **buf, size_t *cap, size_t need);

/* Duplicate a string through the caller's hook. */
char	   *sp_strdup(sp_ctx *ctx, const char *s);

/* SP_ERR_CANCELLED (recorded) if the caller asked to stop, else SP_OK. */
sp_status	sp_check_interrupt(sp_ctx *ctx);

/* Report progress if the caller installed a hook. */
void		sp_progress(sp_ctx *ctx, uint64_t done, uint64_t total);

/* Monotonic clock in milliseconds. */
double		sp_now_ms(void);

/* Incremental SHA-256 (an EVP_MD_CTX underneath). */
typedef struct sp_sha256
{
	void	   *md;				/* EVP_MD_CTX * */
} sp_sha256;

sp_status	sp_sha256_init(sp_ctx *ctx, sp_sha256 *s);
bool		sp_sha256_restart(sp_sha256 *s);
void		sp_sha256_update(sp_sha256 *s, const void *p, size_t n);
void		sp_sha256_final(sp_sha256 *s, uint8_t out[SP_SHA256_LEN]);
void		sp_sha256_free(sp_sha256 *s);

/*
 * A base file's digests in one pass: its SHA-256 and/or its fingerprint,
 * the XXH3-128 (seed 0) of its bytes in canonical (big-endian) order.
 * Apply checks a base by its fingerprint, about 20 times cheaper to
 * compute than SHA-256 (container.h: SP_FLAG_BASEFP says why that is safe).
 * No ctx after init, so a helper thread may use one.
 */
#define SP_FP_LEN 16
#define SP_BH_SHA256 1u			/* compute the SHA-256 */
#define SP_BH_FP 2u				/* compute the fingerprint */

typedef struct sp_basehash
{
	unsigned	what;			/* SP_BH_* */
	sp_sha256	sha;
	void	   *xxh_mem;		/* allocation holding the aligned XXH3 state */
	void	   *xxh;			/* XXH3_state_t * inside it */
} sp_basehash;

sp_status	sp_basehash_init(sp_ctx *ctx, sp_basehash *h, unsigned what);
bool		sp_basehash_restart(sp_basehash *h);
void		sp_basehash_update(sp_basehash *h, const void *p, size_t n);
void		sp_basehash_final(sp_basehash *h, uint8_t *sha, uint8_t *fp);
void		sp_basehash_copy_fp(sp_basehash *dst, const sp_basehash *src);
void		sp_basehash_free(sp_ctx *ctx, sp_basehash *h);

/* Lower-case hex of a digest into out (65 bytes). */
void		sp_hex(const uint8_t *d, size_t n, char *out);

/* The first address at or after p that is a multiple of align (a power of two). */
static inline uint8_t *
sp_align_up(void *p, size_t align)
{
	return (uint8_t *) p + ((align - (uintptr_t) p % align) % align);
}

/* Little-endian loads and stores. */
static inline uint16_t
sp_get16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}
static inline uint32_t
sp_get32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}
static inline uint64_t
sp_get64(const uint8_t *p)
{
	return (uint64_t) sp_get32(p) | ((uint64_t) sp_get32(p + 4) << 32);
}
static inline void
sp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}
static inline void
sp_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}
static inline void
sp_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

#define SP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SP_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Start a helper thread running fn(arg) with every signal blocked in it, so
 * that the caller's signal handlers (PostgreSQL's, the CLI's) run on the
 * caller's thread only; false if the thread could not be created.
 */
bool		sp_spawn_blocked(pthread_t *t, void *(*fn) (void *), void *arg);

/* The CLOCK_REALTIME time ms milliseconds from now (a pthread_cond_timedwait deadline). */
struct timespec sp_deadline_ms(long ms);

#endif							/* SPARSE_UTIL_H */
