/*
 * test_store.c -- the file side of hub storage jobs (common/store.c): kind
 * names, sizes of files and directories, the estimate behind a decision,
 * delta paths (the encoding of object ids, long ids, directories, limits),
 * clearing an earlier attempt's leftovers (temporary files and an
 * unrecorded delta go; a file that is not a delta, a symlink, another
 * object's temporaries stay), sp_store_run (a verified delta at the path;
 * nothing left after a failure, a cancel or a wrong base path), and the
 * abort of a large output (name gone at once, descriptor closed soon),
 * and which failures a job queue should not retry (sp_error_permanent).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "files.h"
#include "harness.h"
#include "rt_util.h"

/* Write text to path. */
static bool
put(const char *path, const char *text)
{
	FILE	   *f = fopen(path, "w");

	if (f == NULL)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

/* Does path exist (without following a final symlink)? */
static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/*
 * The failures a queue fails at once: bad input, a file in the way, the
 * root, a refused permission; I/O in general, memory, a cancel, a damaged
 * or mismatched delta are retried.  Each real failure of sp_store_run is
 * classified as its queue would see it.
 */
static void
store_permanent_errors(void)
{
	static const sp_status permanent[] = {
		SP_ERR_INVALID_ARG, SP_ERR_EXISTS, SP_ERR_OUTSIDE_ROOT, SP_ERR_NOT_SAFETENSORS,
		SP_ERR_HEADER_TOO_LARGE, SP_ERR_BAD_JSON, SP_ERR_BAD_OFFSETS, SP_ERR_UNKNOWN_DTYPE,
		SP_ERR_SHAPE_MISMATCH, SP_ERR_UNSUPPORTED_VERSION, SP_ERR_TOO_LARGE
	};
	int			npermanent = 0;
	sp_ctx		ctx;
	sp_compress_result res;
	char	   *junk = t_path("junk.safetensors");
	const char *base = t_model("gpt2-lora-r8/base.safetensors");

	for (int code = SP_OK; code <= SP_ERR_INTERNAL; code++)
	{
		sp_error	e = {(sp_status) code, code == SP_ERR_IO ? EIO : 0, ""};
		bool		want = false;

		for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
			want |= (int) permanent[i] == code;
		npermanent += want;
		T_CHECK(sp_error_permanent(&e) == want, "%s: permanent %d, expected %d",
				sp_status_name((sp_status) code), sp_error_permanent(&e), want);
	}
	T_CHECK(npermanent == 11, "%d permanent statuses", npermanent);
	for (int i = 0; i < 5; i++)
	{
		static const int errs[] = {EACCES, EPERM, EROFS, EEXIST, ENOENT};
		sp_error	e = {SP_ERR_IO, errs[i], ""};

		T_CHECK(sp_error_permanent(&e) == (errs[i] != ENOENT), "I/O error %s", strerror(errs[i]));
	}
	/* as sp_store_run fails: a missing original may come back, a file that is not safetensors not */
	T_REQUIRE(put(junk, "not a model"), "write");
	sp_ctx_init(&ctx);
	T_CHECK(sp_store_run(&ctx, SP_KIND_MODEL, base, t_path("gone.safetensors"), t_path("a.sdelta"),
						 3, &res) == SP_ERR_IO && !sp_error_permanent(&ctx.err), "missing: %s",
			ctx.err.msg);
	sp_ctx_init(&ctx);
	T_CHECK(sp_store_run(&ctx, SP_KIND_MODEL, base, junk, t_path("b.sdelta"), 3, &res) ==
			SP_ERR_HEADER_TOO_LARGE && sp_error_permanent(&ctx.err), "junk: %s", ctx.err.msg);
}

/* Kinds parse both ways; anything else is the exact error. */
static void
store_kind_names(void)
{
	sp_ctx		ctx;
	sp_kind		k;
	sp_status	st;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_kind_parse(&ctx, "model", &k));
	T_CHECK(k == SP_KIND_MODEL && strcmp(sp_kind_name(k), "model") == 0, "model");
	T_OK(&ctx, sp_kind_parse(&ctx, "dataset", &k));
	T_CHECK(k == SP_KIND_DATASET && strcmp(sp_kind_name(k), "dataset") == 0, "dataset");
	st = sp_kind_parse(&ctx, "Model", &k);
	T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "kind must be 'model' or 'dataset', not 'Model'");
	st = sp_kind_parse(&ctx, NULL, &k);
	T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "kind must be 'model' or 'dataset', not '(null)'");
}

/* Delta paths: next to the original, or in a directory with the id encoded. */
static void
store_delta_paths(void)
{
	char		out[SP_PATH_MAX];
	char		id[600];
	sp_ctx		ctx;
	sp_status	st;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_store_delta_path(&ctx, "", SP_KIND_MODEL, "7", "/m/ft.safetensors", out));
	T_CHECK(strcmp(out, "/m/ft.safetensors.sdelta") == 0, "next to the file: %s", out);
	T_OK(&ctx, sp_store_delta_path(&ctx, NULL, SP_KIND_DATASET, "7", "/d/shards//", out));
	T_CHECK(strcmp(out, "/d/shards.sdelta") == 0, "a directory's trailing slashes go: %s", out);
	T_OK(&ctx, sp_store_delta_path(&ctx, "/deltas/", SP_KIND_MODEL, "org/Name_v1-2.0", "/x", out));
	T_CHECK(strcmp(out, "/deltas/model-org%2FName_v1-2%2E0.sdelta") == 0, "encoded: %s", out);
	T_OK(&ctx, sp_store_delta_path(&ctx, "/deltas", SP_KIND_DATASET, "..", "/x", out));
	T_CHECK(strcmp(out, "/deltas/dataset-%2E%2E.sdelta") == 0, "no way out: %s", out);
	T_OK(&ctx, sp_store_delta_path(&ctx, "/deltas", SP_KIND_MODEL, "caf\xc3\xa9 \n", "/x", out));
	T_CHECK(strcmp(out, "/deltas/model-caf%C3%A9%20%0A.sdelta") == 0, "bytes encoded: %s", out);

	/* long ids keep a prefix and a hash: distinct ids stay distinct, names stay short */
	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	T_OK(&ctx, sp_store_delta_path(&ctx, "/d", SP_KIND_MODEL, id, "/x", out));
	T_CHECK(strlen(out) == strlen("/d/model-") + 160 + strlen(".sdelta"), "long id: %zu", strlen(out));
	T_CHECK(strchr(out, '~') != NULL, "long id marked: %s", out);
	{
		char		other[SP_PATH_MAX];

		id[sizeof(id) - 2] = 'b';
		T_OK(&ctx, sp_store_delta_path(&ctx, "/d", SP_KIND_MODEL, id, "/x", other));
		T_CHECK(strcmp(out, other) != 0, "two long ids that share a prefix differ: %s", other);
	}

	st = sp_store_delta_path(&ctx, "/d", SP_KIND_MODEL, "", "/x", out);
	T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "object id must not be empty");
	st = sp_store_delta_path(&ctx, "", SP_KIND_MODEL, "1", "", out);
	T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "path must not be empty");
	{
		char	   *dir = t_track(malloc(SP_PATH_MAX));

		memset(dir, 'd', SP_PATH_MAX - 10);
		dir[0] = '/';
		dir[SP_PATH_MAX - 10] = '\0';
		st = sp_store_delta_path(&ctx, dir, SP_KIND_MODEL, "12345", "/x", out);
		T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "delta path would exceed 4095 bytes");
		T_CHECK(out[0] == '\0', "no partial path");
	}
}

/* Sizes of a file and of a directory; the estimate without and with a base. */
static void
store_sizes_and_estimate(void)
{
	const char *dir = t_path("dir");
	sp_store_est est;
	uint64_t	bytes;
	sp_ctx		ctx;
	sp_status	st;

	rt_ctx(&ctx);
	T_REQUIRE(mkdir(dir, 0777) == 0 && mkdir(t_fmt("%s/sub", dir), 0777) == 0, "mkdir");
	T_REQUIRE(put(t_fmt("%s/a", dir), "12345") && put(t_fmt("%s/sub/b", dir), "123"), "files");
	T_OK(&ctx, sp_path_bytes(&ctx, dir, &bytes));
	T_CHECK(bytes == 8, "directory: %llu", (unsigned long long) bytes);
	T_OK(&ctx, sp_store_estimate(&ctx, SP_KIND_DATASET, NULL, t_fmt("%s/a", dir), &est));
	T_CHECK(est.original_bytes == 5 && est.est_delta_bytes == 5 && est.savings_pct == 0,
			"no base: the size alone");
	st = sp_path_bytes(&ctx, t_path("missing"), &bytes);
	T_ERR(&ctx, st, SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", t_path("missing")));
	if (t_data() == NULL)
		return;
	T_OK(&ctx, sp_store_estimate(&ctx, SP_KIND_MODEL, t_model("mlp-trained/base.bf16.safetensors"),
								 t_model("mlp-trained/ft.bf16.safetensors"), &est));
	T_CHECK(est.original_bytes == 989736 && est.savings_pct > 60 && est.savings_pct < 80,
			"model estimate: %.1f%%", est.savings_pct);
	T_OK(&ctx, sp_store_estimate(&ctx, SP_KIND_DATASET,
								 t_fmt("%s/datasets/gsm8k_socratic/base.jsonl", t_data()),
								 t_fmt("%s/datasets/gsm8k_socratic/derived.jsonl", t_data()), &est));
	T_CHECK(est.original_bytes == 972978 && est.savings_pct > 90, "dataset estimate: %.1f%%", est.savings_pct);
}

/* Clearing: temporaries and a delta go; others' files and non-deltas stay. */
static void
store_clear_leftovers(void)
{
	const char *delta = t_path("model-1.sdelta");
	sp_ctx		ctx;
	sp_status	st;
	int			removed;

	rt_ctx(&ctx);
	T_REQUIRE(put(t_path(".model-1.sdelta.sparse-tmp-abc123"), "x") &&
			  put(t_path(".model-1.sdelta.sparse-tmp-zzzzzz"), "y") &&
			  put(t_path(".model-12.sdelta.sparse-tmp-abc123"), "another object's") &&
			  put(t_path(".model-1.sdelta.sparse-tmp-toolong1"), "not our pattern") &&
			  put(delta, "SPRSDLT") && put(delta, ""), "files");
	/* a real delta header at the path: written then never recorded */
	{
		FILE	   *f = fopen(delta, "wb");

		T_REQUIRE(f && fwrite("SPRSDLT\0\1\0\0\0\0\0\0\0", 1, 16, f) == 16 && fclose(f) == 0, "delta");
	}
	T_OK(&ctx, sp_store_clear(&ctx, delta, &removed));
	T_CHECK(removed == 3, "two temporaries and the delta: %d", removed);
	T_CHECK(!exists(delta) && !exists(t_path(".model-1.sdelta.sparse-tmp-abc123")), "gone");
	T_CHECK(exists(t_path(".model-12.sdelta.sparse-tmp-abc123")), "another object's temporary stays");
	T_CHECK(exists(t_path(".model-1.sdelta.sparse-tmp-toolong1")), "a name of another shape stays");
	T_OK(&ctx, sp_store_clear(&ctx, delta, &removed));
	T_CHECK(removed == 0, "nothing left to clear: %d", removed);

	/* not a delta: refused, untouched */
	T_REQUIRE(put(delta, "a model, say"), "put");
	st = sp_store_clear(&ctx, delta, &removed);
	T_ERR(&ctx, st, SP_ERR_EXISTS, t_fmt("\"%s\" exists and is not a sparse delta; not removing it", delta));
	T_CHECK(exists(delta), "still there");
	/* a symlink to a delta: refused too (the link is not followed) */
	T_REQUIRE(unlink(delta) == 0 && put(t_path("real.sdelta"), "SPRSDLT") &&
			  symlink(t_path("real.sdelta"), delta) == 0, "symlink");
	st = sp_store_clear(&ctx, delta, &removed);
	T_CHECK(st == SP_ERR_EXISTS && exists(delta) && exists(t_path("real.sdelta")), "symlink kept");
	/* a FIFO there: refused at once, not waited on */
	T_REQUIRE(unlink(delta) == 0 && mkfifo(delta, 0600) == 0, "mkfifo");
	st = sp_store_clear(&ctx, delta, &removed);
	T_CHECK(st == SP_ERR_EXISTS && exists(delta), "a FIFO is refused");
	/* the directory must exist and lie under the root */
	st = sp_store_clear(&ctx, t_path("nodir/x.sdelta"), &removed);
	T_ERR(&ctx, st, SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", t_path("nodir")));
	ctx.root = "/proc";
	st = sp_store_clear(&ctx, delta, &removed);
	T_CHECK(st == SP_ERR_OUTSIDE_ROOT, "outside the root: %s", sp_status_name(st));
	st = sp_store_clear(&ctx, t_fmt("%s/", t_dir()), &removed);
	T_CHECK(st == SP_ERR_INVALID_ARG, "a path ending in / names no file");
	{
		char	   *longp = t_track(malloc(SP_PATH_MAX + 16));

		memset(longp, 'a', SP_PATH_MAX + 15);
		longp[0] = '/';
		longp[SP_PATH_MAX + 15] = '\0';
		ctx.root = "";
		st = sp_store_clear(&ctx, longp, &removed);
		T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "delta path is longer than 4095 bytes");
	}
}

/* A run leaves a verified delta; failures and cancels leave nothing. */
static void
store_run(void)
{
	const char *base,
			   *ft,
			   *delta = t_path("model-2.sdelta");
	sp_compress_result res;
	sp_apply_result check;
	ds_hooks	h;
	sp_ctx		ctx;
	sp_status	st;

	if (t_data() == NULL)
	{
		t_skip("SPARSE_DATA is not set");
		return;
	}
	base = t_model("mlp-trained/base.bf16.safetensors");
	ft = t_model("mlp-trained/ft.bf16.safetensors");
	rt_ctx(&ctx);
	T_REQUIRE(put(t_path(".model-2.sdelta.sparse-tmp-qwerty"), "partial"), "temporary");
	T_OK(&ctx, sp_store_run(&ctx, SP_KIND_MODEL, base, ft, delta, 3, &res));
	T_CHECK(!exists(t_path(".model-2.sdelta.sparse-tmp-qwerty")), "the killed writer's file is gone");
	T_OK(&ctx, sp_delta_verify(&ctx, base, delta, &check));
	T_CHECK(check.verified && strcmp(check.sha256, res.ft_sha256) == 0, "verified");
	/* again: the unrecorded delta is replaced by a fresh one */
	T_OK(&ctx, sp_store_run(&ctx, SP_KIND_MODEL, base, ft, delta, 3, &res));

	/* a dataset: the kind picks the row coder */
	T_OK(&ctx, sp_store_run(&ctx, SP_KIND_DATASET,
							t_fmt("%s/datasets/covid_countries_1day/base.csv", t_data()),
							t_fmt("%s/datasets/covid_countries_1day/derived.csv", t_data()),
							t_path("dataset-c.sdelta"), 3, &res));
	T_CHECK(res.rows_total > 0 && res.rows_shared > 0, "rows: %lld shared of %lld",
			(long long) res.rows_shared, (long long) res.rows_total);

	/* no base, a missing original: errors, nothing at the path */
	st = sp_store_run(&ctx, SP_KIND_MODEL, NULL, ft, t_path("x.sdelta"), 3, &res);
	T_ERR(&ctx, st, SP_ERR_INVALID_ARG, "a delta needs a base path");
	st = sp_store_run(&ctx, SP_KIND_MODEL, base, t_path("missing"), t_path("x.sdelta"), 3, &res);
	T_CHECK(st == SP_ERR_IO && !exists(t_path("x.sdelta")), "missing original");

	/* cancelled at every tenth poll: nothing at the path, no temporary */
	for (long at = 0; at < 60; at += 10)
	{
		dh_ctx(&ctx, &h, -1, at);
		ctx.threads = 1;
		st = sp_store_run(&ctx, SP_KIND_MODEL, base, ft, t_path("c.sdelta"), 3, &res);
		if (st == SP_OK)
			break;
		T_CHECK(st == SP_ERR_CANCELLED, "cancel at %ld: %s", at, sp_status_name(st));
		T_CHECK(!exists(t_path("c.sdelta")) && h.live == 0, "cancel at %ld left a file or memory", at);
	}
}

/* Open descriptors of this process. */
static int
open_fds(void)
{
	DIR		   *d = opendir("/proc/self/fd");
	int			n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/*
 * Aborting a large output: the temporary name is gone when sp_out_abort
 * returns (its descriptor is closed on a detached thread, so a cancel does
 * not wait for the kernel to free the pages), and the descriptor is closed
 * soon after.
 */
static void
store_abort_large_output(void)
{
	const char *final = t_path("big.out");
	char	   *chunk = t_track(calloc(1, 1 << 20));
	int			fds_before = open_fds();
	int			fds_after = -1;
	sp_ctx		ctx;
	sp_out		o;
	DIR		   *d;
	struct dirent *e;
	int			names = 0;

	rt_ctx(&ctx);
	T_REQUIRE(chunk != NULL, "calloc");
	T_OK(&ctx, sp_out_file(&ctx, &o, final));
	for (int i = 0; i < 80; i++)
		T_OK(&ctx, sp_out_write(&ctx, &o, chunk, 1 << 20));
	sp_out_abort(&ctx, &o);
	T_REQUIRE((d = opendir(t_dir())) != NULL, "opendir");
	while ((e = readdir(d)) != NULL)
		names += e->d_name[0] != '.' || strstr(e->d_name, "sparse-tmp") != NULL;
	closedir(d);
	T_CHECK(names == 0, "%d names left in the output directory", names);
	for (int i = 0; i < 200 && (fds_after = open_fds()) != fds_before; i++)
		usleep(10 * 1000);
	T_CHECK(fds_after == fds_before, "descriptors: %d before, %d two seconds after", fds_before, fds_after);
}

const t_case t_tests_store[] = {
	{"store_kind_names", store_kind_names},
	{"store_permanent_errors", store_permanent_errors},
	{"store_delta_paths", store_delta_paths},
	{"store_sizes_and_estimate", store_sizes_and_estimate},
	{"store_clear_leftovers", store_clear_leftovers},
	{"store_run", store_run},
	{"store_abort_large_output", store_abort_large_output},
	{NULL, NULL}
};
