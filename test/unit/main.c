/*
 * main.c -- runner of the unit tests (see harness.h for the output format).
 *
 * Usage: build/unit_tests [NAME_SUBSTRING]
 *
 * Runs every test of every table listed in t_tables (or only those whose
 * name contains NAME_SUBSTRING), each in its own directory made with
 * mkdtemp under $TMPDIR (default /tmp) and removed afterwards together with
 * every buffer the test handed to t_track().  Failures are collected while
 * the test runs and printed as "# file:line: message" lines after its
 * "not ok" line.  Exit status: 0 if nothing failed, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* Every test table, in the order they run. */
static const t_case *const t_tables[] = {
	t_tests_writer,
	t_tests_roundtrip,
	t_tests_synthetic,
	t_tests_tensorcm,
	t_tests_errors,
	t_tests_hooks,
	t_tests_review,
	t_tests_rows,
	t_tests_dataset,
	t_tests_bigmem,
	t_tests_route,
	t_tests_threads,
	t_tests_store,
};

#define T_MAX_MSGS 32
#define T_MAX_TRACKED 4096

/* State of the running test. */
static struct
{
	char		dir[4096];
	int			n_fail;
	char	   *msgs[T_MAX_MSGS];
	int			n_msgs;
	bool		skipped;
	char		skip_reason[256];
	void	   *tracked[T_MAX_TRACKED];
	int			n_tracked;
}			cur;

/* Record a failure at file:line with a printf-style message. */
void
t_fail(const char *file, int line, const char *fmt,...)
{
	char		body[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	cur.n_fail++;
	if (cur.n_msgs < T_MAX_MSGS)
	{
		size_t		len = strlen(file) + strlen(body) + 32;
		char	   *m = malloc(len);

		if (m != NULL)
		{
			snprintf(m, len, "%s:%d: %s", file, line, body);
			cur.msgs[cur.n_msgs++] = m;
		}
	}
}

/* Mark the running test as skipped, with a reason. */
void
t_skip(const char *reason)
{
	cur.skipped = true;
	snprintf(cur.skip_reason, sizeof(cur.skip_reason), "%s", reason);
}

/* True once the running test has recorded a failure. */
bool
t_failed(void)
{
	return cur.n_fail > 0;
}

/* Failures the running test has recorded so far. */
int
t_fail_count(void)
{
	return cur.n_fail;
}

/* Temporary directory of the running test. */
const char *
t_dir(void)
{
	return cur.dir;
}

/* Take ownership of a malloc'ed pointer: freed after the test. */
void *
t_track(void *p)
{
	if (p == NULL)
		return NULL;
	if (cur.n_tracked >= T_MAX_TRACKED)
	{
		/* Keep going rather than abort: the pointer just leaks. */
		t_fail(__FILE__, __LINE__, "too many tracked pointers");
		return p;
	}
	cur.tracked[cur.n_tracked++] = p;
	return p;
}

/* printf into a tracked buffer. */
char *
t_fmt(const char *fmt,...)
{
	va_list		ap;
	char	   *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s == NULL)
	{
		fprintf(stderr, "out of memory in t_fmt\n");
		exit(2);
	}
	return t_track(s);
}

/* Path "<t_dir()>/<name>" in a tracked buffer. */
char *
t_path(const char *name)
{
	return t_fmt("%s/%s", cur.dir, name);
}

/* Directory holding the shared data ($SPARSE_DATA), or NULL if unset. */
const char *
t_data(void)
{
	const char *d = getenv("SPARSE_DATA");

	return (d != NULL && d[0] != '\0') ? d : NULL;
}

/* Path under $SPARSE_DATA/models, tracked. */
char *
t_model(const char *rel)
{
	const char *d = t_data();
	char	   *p = t_fmt("%s/models/%s", d != NULL ? d : "../shared/data", rel);
	char	   *real = realpath(p, NULL);

	/* Canonical, as the core names files in its messages. */
	return real != NULL ? t_track(real) : p;
}

/* Worker of T_ERR / T_ERR_SUB; returns true when everything matched. */
bool
t_check_err(const char *file, int line, const sp_ctx *ctx, sp_status st,
			sp_status code, const char *msg, bool exact)
{
	bool		ok = true;

	if (st != code || ctx->err.code != code)
	{
		t_fail(file, line, "returned %s (err.code %s), expected %s; message: %s",
			   sp_status_name(st), sp_status_name(ctx->err.code),
			   sp_status_name(code), ctx->err.msg);
		ok = false;
	}
	else if (exact ? strcmp(ctx->err.msg, msg) != 0
			 : strstr(ctx->err.msg, msg) == NULL)
	{
		t_fail(file, line, "message \"%s\", expected %s\"%s\"", ctx->err.msg,
			   exact ? "" : "it to contain ", msg);
		ok = false;
	}
	return ok;
}

/* nftw callback: make writable and remove one entry. */
static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void) sb;
	(void) ftw;
	if (flag == FTW_DP)
		return rmdir(path) == 0 ? 0 : (errno == ENOENT ? 0 : -1);
	return unlink(path) == 0 ? 0 : (errno == ENOENT ? 0 : -1);
}

/* nftw pre-pass callback: give directories back their permissions. */
static int
chmod_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void) ftw;
	if (flag == FTW_D || flag == FTW_DNR)
		chmod(path, 0700);
	(void) sb;
	return 0;
}

/* Remove a directory tree (used for the per-test directory). */
static void
remove_tree(const char *dir)
{
	nftw(dir, chmod_entry, 16, FTW_PHYS);
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "# warning: could not remove %s\n", dir);
}

/* Make the per-test directory under $TMPDIR. */
static bool
make_test_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	char	   *real;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	snprintf(cur.dir, sizeof(cur.dir), "%s/sparse-unit-XXXXXX", tmp);
	if (mkdtemp(cur.dir) == NULL)
	{
		fprintf(stderr, "mkdtemp(%s): %s\n", cur.dir, strerror(errno));
		return false;
	}
	/* Canonical form so paths compare equal to what the core reports. */
	real = realpath(cur.dir, NULL);

	if (real != NULL)
	{
		snprintf(cur.dir, sizeof(cur.dir), "%s", real);
		free(real);
	}
	return true;
}

/* Free what the finished test left: messages, tracked buffers, its dir. */
static void
end_test(void)
{
	for (int i = 0; i < cur.n_msgs; i++)
		free(cur.msgs[i]);
	for (int i = 0; i < cur.n_tracked; i++)
		free(cur.tracked[i]);
	remove_tree(cur.dir);
	memset(&cur, 0, sizeof(cur));
}

/* Run one test; returns 1 passed, 0 failed, 2 skipped. */
static int
run_one(const t_case *tc, int num)
{
	int			result;

	memset(&cur, 0, sizeof(cur));
	if (!make_test_dir())
	{
		printf("not ok %d - %s\n# cannot make a temporary directory\n", num,
			   tc->name);
		return 0;
	}
	tc->fn();
	if (cur.n_fail > 0)
	{
		printf("not ok %d - %s\n", num, tc->name);
		for (int i = 0; i < cur.n_msgs; i++)
			printf("# %s\n", cur.msgs[i]);
		if (cur.n_fail > cur.n_msgs)
			printf("# ... and %d more failures\n", cur.n_fail - cur.n_msgs);
		result = 0;
	}
	else if (cur.skipped)
	{
		printf("ok %d - %s # SKIP %s\n", num, tc->name, cur.skip_reason);
		result = 2;
	}
	else
	{
		printf("ok %d - %s\n", num, tc->name);
		result = 1;
	}
	fflush(stdout);
	end_test();
	return result;
}

/* Count the tests selected by filter. */
static int
count_selected(const char *filter)
{
	int			n = 0;

	for (size_t i = 0; i < sizeof(t_tables) / sizeof(t_tables[0]); i++)
		for (const t_case *tc = t_tables[i]; tc->name != NULL; tc++)
			if (filter == NULL || strstr(tc->name, filter) != NULL)
				n++;
	return n;
}

/* Run the selected tests and print the summary. */
int
main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	int			num = 0,
				passed = 0,
				failed = 0,
				skipped = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (t_data() == NULL)
		printf("# SPARSE_DATA is not set; tests needing the shared data fail\n");
	printf("1..%d\n", count_selected(filter));
	for (size_t i = 0; i < sizeof(t_tables) / sizeof(t_tables[0]); i++)
		for (const t_case *tc = t_tables[i]; tc->name != NULL; tc++)
		{
			if (filter != NULL && strstr(tc->name, filter) == NULL)
				continue;
			switch (run_one(tc, ++num))
			{
				case 1:
					passed++;
					break;
				case 2:
					skipped++;
					break;
				default:
					failed++;
			}
		}
	if (skipped > 0)
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	else
		printf("%d passed, %d failed\n", passed, failed);
	return failed > 0 ? 1 : 0;
}
