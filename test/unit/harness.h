/*
 * harness.h -- a tiny test harness for the unit tests of common/.
 *
 * No external test library.  Each test file defines a table of
 * (name, function) pairs ending with {NULL, NULL} and main.c lists the
 * tables.  main() runs each test (optionally only those whose name contains
 * argv[1]) inside a fresh temporary directory made with mkdtemp under
 * $TMPDIR, and prints TAP-like lines:
 *
 *     ok 3 - roundtrip_gpt2_pair
 *     not ok 4 - errors_bad_json
 *     # test/unit/test_errors.c:120: code SP_ERR_IO, expected SP_ERR_BAD_JSON
 *
 * then "N passed, N failed" (", N skipped" when some were skipped) and exits
 * with status 1 if any test failed.
 *
 * T_CHECK records a failure (file:line and a printf-style message) and goes
 * on; T_REQUIRE records it and returns from the test function.  Buffers that
 * a test wants freed at its end go through t_track(); the harness frees them
 * and removes the temporary directory after each test, so an early return
 * from T_REQUIRE leaks nothing (the ASan build checks leaks).
 */
#ifndef SPARSE_TEST_HARNESS_H
#define SPARSE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparse.h"

/* A test function. */
typedef void (*t_func) (void);

/* One row of a test table; tables end with {NULL, NULL}. */
typedef struct t_case
{
	const char *name;
	t_func		fn;
} t_case;

/* Record a failure at file:line with a printf-style message. */
void		t_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Mark the running test as skipped, with a reason. */
void		t_skip(const char *reason);

/* True once the running test has recorded a failure. */
bool		t_failed(void);

/* Failures the running test has recorded so far. */
int			t_fail_count(void);

/* Temporary directory of the running test (absolute, no trailing slash). */
const char *t_dir(void);

/* Path "<t_dir()>/<name>" in a tracked buffer. */
char	   *t_path(const char *name);

/* printf into a tracked buffer. */
char	   *t_fmt(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* Take ownership of a malloc'ed pointer: freed after the test. */
void	   *t_track(void *p);

/* Directory holding the shared data ($SPARSE_DATA), or NULL if unset. */
const char *t_data(void);

/* Path under $SPARSE_DATA/models, tracked. */
char	   *t_model(const char *rel);

/* Record a failure unless cond holds; the test goes on. */
#define T_CHECK(cond, ...) \
	do { if (!(cond)) t_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Record a failure and return from the test unless cond holds. */
#define T_REQUIRE(cond, ...) \
	do { if (!(cond)) { t_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)

/* Like T_REQUIRE, in a helper that returns v. */
#define T_REQUIRE_V(cond, v, ...) \
	do { if (!(cond)) { t_fail(__FILE__, __LINE__, __VA_ARGS__); return (v); } } while (0)

/* Require a core call to succeed, printing the core's message if not. */
#define T_OK(ctx, call) \
	do { sp_status t_st_ = (call); \
		if (t_st_ != SP_OK) { \
			t_fail(__FILE__, __LINE__, "%s returned %s: %s", #call, \
				   sp_status_name(t_st_), (ctx)->err.msg); \
			return; } } while (0)

/*
 * Check that a failed call returned code and left exactly message msg in
 * ctx->err (code also in ctx->err.code).
 */
#define T_ERR(ctx, st, code, msg) \
	t_check_err(__FILE__, __LINE__, (ctx), (st), (code), (msg), true)

/* Like T_ERR but msg need only be a substring of the message. */
#define T_ERR_SUB(ctx, st, code, msg) \
	t_check_err(__FILE__, __LINE__, (ctx), (st), (code), (msg), false)

/* Worker of T_ERR / T_ERR_SUB; returns true when everything matched. */
bool		t_check_err(const char *file, int line, const sp_ctx *ctx,
						sp_status st, sp_status code, const char *msg,
						bool exact);

/* The test tables, one per test file (listed in main.c). */
extern const t_case t_tests_writer[];
extern const t_case t_tests_roundtrip[];
extern const t_case t_tests_synthetic[];
extern const t_case t_tests_errors[];
extern const t_case t_tests_hooks[];
extern const t_case t_tests_review[];
extern const t_case t_tests_rows[];
extern const t_case t_tests_dataset[];
extern const t_case t_tests_bigmem[];
extern const t_case t_tests_route[];
extern const t_case t_tests_threads[];
extern const t_case t_tests_store[];
extern const t_case t_tests_tensorcm[];

#endif							/* SPARSE_TEST_HARNESS_H */
