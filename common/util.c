/*
 * util.c -- errors, hook-based allocation, interrupts, timing and SHA-256.
 *
 * Every failure in the core goes through sp_fail/sp_fail_io, which fill
 * ctx->err once (the first error wins, so cleanup after a failure cannot
 * overwrite the message that explains it).  SHA-256 is OpenSSL's EVP
 * implementation: the same digest the hub's LFS storage keys files by.
 */
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#ifndef SPARSE_VERSION
#define SPARSE_VERSION "0.0.0"
#endif

/* Default allocator: malloc. */
static void *
default_alloc(void *user, size_t size)
{
	(void) user;
	return malloc(size ? size : 1);
}

/* Default free: free. */
static void
default_free(void *user, void *p)
{
	(void) user;
	free(p);
}

/* Default interrupt check: never interrupted. */
static int
default_interrupted(void *user)
{
	(void) user;
	return 0;
}

/* Default hooks: malloc/free, never interrupted, no progress. */
void
sp_ctx_init(sp_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->hooks.alloc = default_alloc;
	ctx->hooks.free = default_free;
	ctx->hooks.interrupted = default_interrupted;
	ctx->root = "";
}

/* Library version string. */
const char *
sp_version(void)
{
	return SPARSE_VERSION;
}

/* Stable name of a status code. */
const char *
sp_status_name(sp_status code)
{
	static const char *const names[] = {
		"SP_OK", "SP_ERR_NOMEM", "SP_ERR_CANCELLED", "SP_ERR_INVALID_ARG",
		"SP_ERR_IO", "SP_ERR_EXISTS", "SP_ERR_OUTSIDE_ROOT",
		"SP_ERR_NOT_SAFETENSORS", "SP_ERR_HEADER_TOO_LARGE", "SP_ERR_BAD_JSON",
		"SP_ERR_BAD_OFFSETS", "SP_ERR_UNKNOWN_DTYPE", "SP_ERR_SHAPE_MISMATCH",
		"SP_ERR_NOT_DELTA", "SP_ERR_UNSUPPORTED_VERSION", "SP_ERR_TRUNCATED",
		"SP_ERR_CORRUPT", "SP_ERR_WRONG_BASE", "SP_ERR_VERIFY_FAILED",
		"SP_ERR_TOO_LARGE", "SP_ERR_INTERNAL"
	};

	if ((unsigned) code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "SP_ERR_UNKNOWN";
}

/* Would the same call fail the same way again (see sparse.h)? */
bool
sp_error_permanent(const sp_error *err)
{
	switch (err->code)
	{
		case SP_ERR_IO:
			return err->sys_errno == EACCES || err->sys_errno == EPERM ||
				err->sys_errno == EROFS || err->sys_errno == EEXIST;
		case SP_ERR_INVALID_ARG:
		case SP_ERR_EXISTS:
		case SP_ERR_OUTSIDE_ROOT:
		case SP_ERR_NOT_SAFETENSORS:
		case SP_ERR_HEADER_TOO_LARGE:
		case SP_ERR_BAD_JSON:
		case SP_ERR_BAD_OFFSETS:
		case SP_ERR_UNKNOWN_DTYPE:
		case SP_ERR_SHAPE_MISMATCH:
		case SP_ERR_UNSUPPORTED_VERSION:
		case SP_ERR_TOO_LARGE:
			return true;
		default:
			return false;
	}
}

/*
 * Replace control characters (from tensor names or paths read from input)
 * with '?': a message stays one line and cannot forge lines in a server log.
 */
static void
sanitize_message(char *m)
{
	for (; *m; m++)
		if ((unsigned char) *m < 0x20 || (unsigned char) *m == 0x7f)
			*m = '?';
}

/* Fill ctx->err unless an error is already recorded. */
static void set_error(sp_ctx *ctx, sp_status code, int err, const char *fmt, va_list ap)
			SP_PRINTF(4, 0);

/* Fill ctx->err unless an error is already recorded. */
static void
set_error(sp_ctx *ctx, sp_status code, int err, const char *fmt, va_list ap)
{
	if (ctx->err.code != SP_OK)
		return;
	ctx->err.code = code;
	ctx->err.sys_errno = err;
	vsnprintf(ctx->err.msg, sizeof(ctx->err.msg), fmt, ap);
	sanitize_message(ctx->err.msg);
}

/* Forget an error left by an earlier call. */
void
sp_clear_error(sp_ctx *ctx)
{
	memset(&ctx->err, 0, sizeof(ctx->err));
}

/* Record an error and return its code. */
sp_status
sp_fail(sp_ctx *ctx, sp_status code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	set_error(ctx, code, 0, fmt, ap);
	va_end(ap);
	return ctx->err.code;
}

/* Record an I/O error with the system's message and errno. */
sp_status
sp_fail_io(sp_ctx *ctx, int err, const char *fmt,...)
{
	va_list		ap;
	size_t		len;

	if (ctx->err.code != SP_OK)
		return ctx->err.code;
	va_start(ap, fmt);
	set_error(ctx, SP_ERR_IO, err, fmt, ap);
	va_end(ap);
	len = strlen(ctx->err.msg);
	snprintf(ctx->err.msg + len, sizeof(ctx->err.msg) - len, ": %s", strerror(err));
	return SP_ERR_IO;
}

/* Allocate through the caller's hook. */
void *
sp_alloc(sp_ctx *ctx, size_t size)
{
	void	   *p = ctx->hooks.alloc(ctx->hooks.user, size ? size : 1);

	if (p == NULL)
		sp_fail(ctx, SP_ERR_NOMEM, "out of memory allocating %zu bytes", size);
	return p;
}

/* Allocate zeroed memory through the caller's hook. */
void *
sp_calloc(sp_ctx *ctx, size_t n, size_t size)
{
	size_t		total;
	void	   *p;

	if (__builtin_mul_overflow(n, size, &total))
	{
		sp_fail(ctx, SP_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", n, size);
		return NULL;
	}
	p = sp_alloc(ctx, total);
	if (p)
		memset(p, 0, total);
	return p;
}

/* Free through the caller's hook. */
void
sp_free(sp_ctx *ctx, void *p)
{
	if (p)
		ctx->hooks.free(ctx->hooks.user, p);
}

/* Make a buffer hold at least need bytes. */
sp_status
sp_reserve(sp_ctx *ctx, uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap && *buf != NULL)
		return SP_OK;
	sp_free(ctx, *buf);
	*cap = 0;
	if ((*buf = sp_alloc(ctx, need)) == NULL)
		return SP_ERR_NOMEM;
	*cap = need;
	return SP_OK;
}

/* Duplicate a string through the caller's hook. */
char *
sp_strdup(sp_ctx *ctx, const char *s)
{
	size_t		n = strlen(s) + 1;
	char	   *p = sp_alloc(ctx, n);

	if (p)
		memcpy(p, s, n);
	return p;
}

/* SP_ERR_CANCELLED if the caller asked to stop. */
sp_status
sp_check_interrupt(sp_ctx *ctx)
{
	if (ctx->hooks.interrupted && ctx->hooks.interrupted(ctx->hooks.user))
		return sp_fail(ctx, SP_ERR_CANCELLED, "canceling statement due to user request");
	return SP_OK;
}

/* Report progress to the caller's hook, if any. */
void
sp_progress(sp_ctx *ctx, uint64_t done, uint64_t total)
{
	if (ctx->hooks.progress)
		ctx->hooks.progress(ctx->hooks.user, done, total);
}

/* Monotonic clock in milliseconds. */
double
sp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Start an incremental SHA-256. */
sp_status
sp_sha256_init(sp_ctx *ctx, sp_sha256 *s)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	s->md = md;
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
	{
		EVP_MD_CTX_free(md);
		s->md = NULL;
		return sp_fail(ctx, SP_ERR_NOMEM, "could not initialize SHA-256");
	}
	return SP_OK;
}

/* Start over on an existing SHA-256 context (no ctx: usable on a helper thread). */
bool
sp_sha256_restart(sp_sha256 *s)
{
	return EVP_DigestInit_ex((EVP_MD_CTX *) s->md, EVP_sha256(), NULL) == 1;
}

/* Add bytes to a SHA-256. */
void
sp_sha256_update(sp_sha256 *s, const void *p, size_t n)
{
	if (n)
		EVP_DigestUpdate((EVP_MD_CTX *) s->md, p, n);
}

/* Finish a SHA-256. */
void
sp_sha256_final(sp_sha256 *s, uint8_t out[SP_SHA256_LEN])
{
	unsigned int len = SP_SHA256_LEN;

	EVP_DigestFinal_ex((EVP_MD_CTX *) s->md, out, &len);
}

/* Free a SHA-256 context. */
void
sp_sha256_free(sp_sha256 *s)
{
	EVP_MD_CTX_free((EVP_MD_CTX *) s->md);
	s->md = NULL;
}

/* Start a base hash computing what (SP_BH_*); the XXH3 state is aligned by hand. */
sp_status
sp_basehash_init(sp_ctx *ctx, sp_basehash *h, unsigned what)
{
	memset(h, 0, sizeof(*h));
	h->what = what;
	if ((what & SP_BH_SHA256) && sp_sha256_init(ctx, &h->sha) != SP_OK)
		return ctx->err.code;
	if (what & SP_BH_FP)
	{
		/* XXH3_state_t wants 64-byte alignment, more than the hooks promise */
		if ((h->xxh_mem = sp_alloc(ctx, sizeof(XXH3_state_t) + 64)) == NULL)
		{
			sp_sha256_free(&h->sha);
			return SP_ERR_NOMEM;
		}
		h->xxh = sp_align_up(h->xxh_mem, 64);
		XXH3_INITSTATE((XXH3_state_t *) h->xxh);
	}
	(void) sp_basehash_restart(h);
	return SP_OK;
}

/* Start over on an initialized base hash; false if SHA-256 cannot restart. */
bool
sp_basehash_restart(sp_basehash *h)
{
	if (h->what & SP_BH_FP)
		(void) XXH3_128bits_reset((XXH3_state_t *) h->xxh);
	return !(h->what & SP_BH_SHA256) || sp_sha256_restart(&h->sha);
}

/* Add bytes to a base hash. */
void
sp_basehash_update(sp_basehash *h, const void *p, size_t n)
{
	if (h->what & SP_BH_SHA256)
		sp_sha256_update(&h->sha, p, n);
	if ((h->what & SP_BH_FP) && n)
		(void) XXH3_128bits_update((XXH3_state_t *) h->xxh, p, n);
}

/* Make dst's fingerprint state src's (both compute one), to go on from where src is. */
void
sp_basehash_copy_fp(sp_basehash *dst, const sp_basehash *src)
{
	if ((dst->what & SP_BH_FP) && (src->what & SP_BH_FP))
		XXH3_copyState((XXH3_state_t *) dst->xxh, (const XXH3_state_t *) src->xxh);
}

/* Finish a base hash into sha (32 bytes) and fp (16 bytes), each when computed. */
void
sp_basehash_final(sp_basehash *h, uint8_t *sha, uint8_t *fp)
{
	if (h->what & SP_BH_SHA256)
		sp_sha256_final(&h->sha, sha);
	if (h->what & SP_BH_FP)
	{
		XXH128_canonical_t c;

		XXH128_canonicalFromHash(&c, XXH3_128bits_digest((XXH3_state_t *) h->xxh));
		memcpy(fp, c.digest, SP_FP_LEN);
	}
}

/* Free a base hash (safe on a zeroed one). */
void
sp_basehash_free(sp_ctx *ctx, sp_basehash *h)
{
	sp_sha256_free(&h->sha);
	sp_free(ctx, h->xxh_mem);
	memset(h, 0, sizeof(*h));
}

/* Lower-case hex of a digest. */
void
sp_hex(const uint8_t *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++)
	{
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

struct timespec
sp_deadline_ms(long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L)
	{
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

bool
sp_spawn_blocked(pthread_t *t, void *(*fn) (void *), void *arg)
{
	sigset_t	all,
				old;
	bool		ok;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ok = pthread_create(t, NULL, fn, arg) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ok;
}
