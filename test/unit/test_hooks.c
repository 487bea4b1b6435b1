/*
 * test_hooks.c -- the caller's hooks and limits: root confinement,
 * cancellation, allocation failure, in-memory size limits, progress.
 *
 * Allocation: a counting hook fails every allocation after the first K; for
 * each operation the suite first counts the allocations of a successful
 * call, then sweeps K over that range.  Every failing call must return
 * SP_ERR_NOMEM, give back every block it got (live count 0) and leave no
 * file in the output directory; the ASan build checks the rest.
 * Cancellation: the interrupted hook answers 1 from its K-th call on; the
 * call must return SP_ERR_CANCELLED with the PostgreSQL-style message and
 * leave the output directory as it was (no output, no temporary file).
 * Root: with ctx.root set, a path outside it is refused whether it is
 * named directly, reached through "..", or through a symlink, and a
 * directory swapped for a symlink after the check (the race the check
 * alone cannot stop) is refused when the file is opened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"
#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"
#include "util.h"

/* State of the counting allocator and the interrupt hook. */
typedef struct hook_state
{
	long		allocs;			/* calls to alloc */
	long		fail_after;		/* fail every call after this many; -1 never */
	long		live;			/* blocks handed out and not freed */
	long		polls;			/* calls to interrupted */
	long		cancel_at;		/* answer 1 from this call on; -1 never */
	long		progress_calls;
	uint64_t	last_done;
	bool		progress_bad;	/* done went backwards or past total */
} hook_state;

/* alloc hook: counts, fails after fail_after calls. */
static void *
h_alloc(void *user, size_t size)
{
	hook_state *h = user;
	void	   *p;

	h->allocs++;
	if (h->fail_after >= 0 && h->allocs > h->fail_after)
		return NULL;
	p = malloc(size);
	if (p != NULL)
		h->live++;
	return p;
}

/* free hook: counts. */
static void
h_free(void *user, void *ptr)
{
	hook_state *h = user;

	if (ptr != NULL)
	{
		h->live--;
		free(ptr);
	}
}

/* interrupted hook: 1 from the cancel_at-th call on. */
static int
h_interrupted(void *user)
{
	hook_state *h = user;

	h->polls++;
	return h->cancel_at >= 0 && h->polls >= h->cancel_at;
}

/* progress hook: checks done only grows and stays within total. */
static void
h_progress(void *user, uint64_t done, uint64_t total)
{
	hook_state *h = user;

	h->progress_calls++;
	if (done < h->last_done || done > total)
		h->progress_bad = true;
	h->last_done = done;
}

/* A context using the hooks above with fresh counters. */
static void
hook_ctx(sp_ctx *ctx, hook_state *h, long fail_after, long cancel_at)
{
	memset(h, 0, sizeof(*h));
	h->fail_after = fail_after;
	h->cancel_at = cancel_at;
	rt_ctx(ctx);
	ctx->hooks.alloc = h_alloc;
	ctx->hooks.free = h_free;
	ctx->hooks.interrupted = h_interrupted;
	ctx->hooks.progress = h_progress;
	ctx->hooks.user = h;
	/*
	 * No coding workers: waiting for one polls every 20 ms, so the number
	 * of polls would vary between runs and a sweep could end before its
	 * cancel point.  test_threads.c cancels with workers.
	 */
	ctx->threads = 1;
}

/* The operations the sweeps exercise. */
typedef enum op_kind
{
	OP_COMPRESS, OP_APPLY, OP_VERIFY, OP_INFO, OP_ESTIMATE,
	OP_COMPRESS_MEM, OP_APPLY_MEM, OP_INFO_MEM, OP_COUNT
} op_kind;

static const char *const op_names[OP_COUNT] = {
	"compress", "apply", "verify", "info", "estimate",
	"compress_mem", "apply_mem", "info_mem"
};

/* Inputs of the sweeps: a pair on disk and in memory, and their delta. */
typedef struct op_inputs
{
	const char *base,
			   *ft,
			   *delta,
			   *outdir;
	uint8_t    *bmem,
			   *fmem,
			   *dmem;
	size_t		blen,
				flen,
				dlen;
} op_inputs;

/* Run one operation; the output (if any) goes to out. */
static sp_status
run_op(sp_ctx *ctx, op_kind op, const op_inputs *in, const char *out)
{
	sp_compress_result cr;
	sp_apply_result ar;
	sp_estimate est;
	sp_info		info = {0};
	void	   *buf = NULL;
	size_t		len = 0;
	sp_status	st = SP_ERR_INTERNAL;

	switch (op)
	{
		case OP_COMPRESS:
			return sp_delta_compress(ctx, in->base, in->ft, out, 3, &cr);
		case OP_APPLY:
			return sp_delta_apply(ctx, in->base, in->delta, out, &ar);
		case OP_VERIFY:
			return sp_delta_verify(ctx, in->base, in->delta, &ar);
		case OP_ESTIMATE:
			return sp_delta_estimate(ctx, in->base, in->ft, 0.05, &est);
		case OP_INFO:
		case OP_INFO_MEM:
			st = op == OP_INFO ? sp_delta_info(ctx, in->delta, &info)
				: sp_delta_info_mem(ctx, in->dmem, in->dlen, &info);
			if (st == SP_OK)
				sp_info_free(ctx, &info);
			return st;
		case OP_COMPRESS_MEM:
		case OP_APPLY_MEM:
			st = op == OP_COMPRESS_MEM
				? sp_delta_compress_mem(ctx, in->bmem, in->blen, in->fmem, in->flen, 3,
										in->flen * 2, &buf, &len)
				: sp_delta_apply_mem(ctx, in->bmem, in->blen, in->dmem, in->dlen,
									 in->flen, &buf, &len);
			if (st == SP_OK)
				ctx->hooks.free(ctx->hooks.user, buf);
			return st;
		case OP_COUNT:
			break;
	}
	return st;
}

/* Set up the inputs: a small real pair and its delta, on disk and in memory. */
static bool
make_inputs(op_inputs *in, const char *pair_base, const char *pair_ft)
{
	sp_ctx		ctx;
	sp_compress_result cr;

	memset(in, 0, sizeof(*in));
	in->base = pair_base;
	in->ft = pair_ft;
	in->delta = t_path("in.delta");
	in->outdir = t_path("out");
	rt_ctx(&ctx);
	if (sp_delta_compress(&ctx, in->base, in->ft, in->delta, 3, &cr) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "compress: %s", ctx.err.msg);
		return false;
	}
	in->bmem = fh_read(in->base, &in->blen);
	in->fmem = fh_read(in->ft, &in->flen);
	in->dmem = fh_read(in->delta, &in->dlen);
	return in->bmem && in->fmem && in->dmem && fh_mkdirs(in->outdir);
}

/* True if the output directory is empty (no output, no temporary file). */
static bool
outdir_empty(const op_inputs *in, op_kind op, long k, const char *what)
{
	size_t		n;
	char	  **names = fh_list(in->outdir, &n);

	if (n == 0)
		return true;
	t_fail(__FILE__, __LINE__, "%s after %s at %ld: \"%s\" left in the output directory",
		   op_names[op], what, k, names[0]);
	return false;
}

/* Sweep the allocation failure point over one operation. */
static void
sweep_alloc(const op_inputs *in, op_kind op)
{
	sp_ctx		ctx;
	hook_state	h;
	long		total,
				step;

	hook_ctx(&ctx, &h, -1, -1);
	if (run_op(&ctx, op, in, t_fmt("%s/ok", in->outdir)) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "%s: %s", op_names[op], ctx.err.msg);
		return;
	}
	total = h.allocs;
	T_CHECK(h.live == 0, "%s: %ld blocks not freed after success", op_names[op], h.live);
	unlink(t_fmt("%s/ok", in->outdir));
	rmdir(t_fmt("%s/ok", in->outdir));
	step = total > 400 ? total / 200 : 1;
	for (long k = 0; k < total; k += step)
	{
		sp_status	st;
		bool		bad = false;

		hook_ctx(&ctx, &h, k, -1);
		st = run_op(&ctx, op, in, t_fmt("%s/o", in->outdir));
		if (st != SP_ERR_NOMEM || ctx.err.code != SP_ERR_NOMEM || ctx.err.msg[0] == '\0')
		{
			t_fail(__FILE__, __LINE__, "%s failing after %ld of %ld allocations: %s (%s)",
				   op_names[op], k, total, sp_status_name(st), ctx.err.msg);
			bad = true;
		}
		if (h.live != 0)
		{
			t_fail(__FILE__, __LINE__, "%s failing after %ld allocations: %ld blocks leaked",
				   op_names[op], k, h.live);
			bad = true;
		}
		if (!outdir_empty(in, op, k, "allocation failure") || bad)
			return;				/* one report per operation is enough */
	}
	printf("# %s: %ld allocations, swept with step %ld\n", op_names[op], total, step);
}

/* Allocation failure at every point of every operation. */
static void
test_alloc_failure_sweep(void)
{
	op_inputs	in;

	if (!make_inputs(&in, t_model("gpt2-lora-r8/base.safetensors"),
					 t_model("gpt2-lora-r8/ft.safetensors")))
		return;
	for (int op = 0; op < OP_COUNT; op++)
		sweep_alloc(&in, (op_kind) op);
}

/* Sweep the cancellation point over one operation. */
static void
sweep_cancel(const op_inputs *in, op_kind op)
{
	sp_ctx		ctx;
	hook_state	h;
	long		total,
				step;

	hook_ctx(&ctx, &h, -1, -1);
	if (run_op(&ctx, op, in, t_fmt("%s/ok", in->outdir)) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "%s: %s", op_names[op], ctx.err.msg);
		return;
	}
	total = h.polls;
	/* info only reads record headers: it need not poll on a small delta. */
	T_CHECK(total >= 1 || op == OP_INFO || op == OP_INFO_MEM,
			"%s never polls the interrupt hook", op_names[op]);
	T_CHECK(!h.progress_bad, "%s: progress went backwards or past total", op_names[op]);
	unlink(t_fmt("%s/ok", in->outdir));
	step = total > 100 ? total / 50 : 1;
	for (long k = 1; k <= total; k += step)
	{
		sp_status	st;

		hook_ctx(&ctx, &h, -1, k);
		st = run_op(&ctx, op, in, t_fmt("%s/o", in->outdir));
		bool		bad = false;

		if (st != SP_ERR_CANCELLED || strcmp(ctx.err.msg, "canceling statement due to user request") != 0)
		{
			t_fail(__FILE__, __LINE__, "%s cancelled at poll %ld of %ld: %s (%s)",
				   op_names[op], k, total, sp_status_name(st), ctx.err.msg);
			bad = true;
		}
		if (h.live != 0)
		{
			t_fail(__FILE__, __LINE__, "%s cancelled at poll %ld: %ld blocks leaked",
				   op_names[op], k, h.live);
			bad = true;
		}
		if (!outdir_empty(in, op, k, "cancel") || bad)
			return;
	}
	printf("# %s: %ld interrupt polls, progress called %ld times\n", op_names[op],
		   total, h.progress_calls);
}

/* Cancellation at every poll of every operation. */
static void
test_cancel_sweep(void)
{
	op_inputs	in;

	if (!make_inputs(&in, t_model("roberta-lora-r4-biasall/base.safetensors"),
					 t_model("roberta-lora-r4-biasall/ft.safetensors")))
		return;
	for (int op = 0; op < OP_COUNT; op++)
		sweep_cancel(&in, (op_kind) op);
}

/* Cancelling the apply of a directory leaves no temporary directory. */
static void
test_cancel_directory_output(void)
{
	sp_ctx		ctx,
				c2;
	hook_state	h;
	sp_compress_result cr;
	sp_apply_result ar;
	char	   *bdir = t_path("b"),
			   *fdir = t_path("f"),
			   *delta = t_path("d.delta"),
			   *outdir = t_path("out");
	size_t		n;

	T_REQUIRE(fh_mkdirs(bdir) && fh_mkdirs(fdir) && fh_mkdirs(outdir), "mkdir");
	T_REQUIRE(fh_copy(t_model("gpt2-lora-r8/base.safetensors"), t_fmt("%s/a.safetensors", bdir)) &&
			  fh_copy(t_model("gpt2-lora-r8/ft.safetensors"), t_fmt("%s/a.safetensors", fdir)) &&
			  fh_copy(t_model("roberta-lora-r4-biasall/ft.safetensors"), t_fmt("%s/b.safetensors", fdir)),
			  "copy");
	rt_ctx(&c2);
	T_OK(&c2, sp_delta_compress(&c2, bdir, fdir, delta, 3, &cr));
	for (long k = 1; k < 64; k *= 2)
	{
		hook_ctx(&ctx, &h, -1, k);
		if (sp_delta_apply(&ctx, bdir, delta, t_fmt("%s/m", outdir), &ar) == SP_OK)
			break;
		T_CHECK(ctx.err.code == SP_ERR_CANCELLED, "cancel at %ld: %s", k, ctx.err.msg);
		fh_list(outdir, &n);
		T_REQUIRE(n == 0, "cancel at %ld left %zu entries in the output directory", k, n);
	}
}

/* In-memory results over max_out fail with SP_ERR_TOO_LARGE, leak nothing. */
static void
test_mem_too_large(void)
{
	sp_ctx		ctx;
	hook_state	h;
	op_inputs	in;
	void	   *buf = NULL;
	size_t		len = 0;

	if (!make_inputs(&in, t_model("gpt2-lora-r8/base.safetensors"),
					 t_model("gpt2-lora-r8/ft.safetensors")))
		return;
	hook_ctx(&ctx, &h, -1, -1);
	T_ERR(&ctx, sp_delta_compress_mem(&ctx, in.bmem, in.blen, in.fmem, in.flen, 3,
									  100, &buf, &len),
		  SP_ERR_TOO_LARGE, "result would exceed the size limit of 100 bytes");
	T_CHECK(h.live == 0 && buf == NULL, "live %ld buf %p", h.live, buf);
	hook_ctx(&ctx, &h, -1, -1);
	T_ERR(&ctx, sp_delta_apply_mem(&ctx, in.bmem, in.blen, in.dmem, in.dlen,
								   in.flen - 1, &buf, &len),
		  SP_ERR_TOO_LARGE, t_fmt("result would exceed the size limit of %zu bytes", in.flen - 1));
	T_CHECK(h.live == 0 && buf == NULL, "live %ld buf %p", h.live, buf);
	/* Exactly the size fits. */
	hook_ctx(&ctx, &h, -1, -1);
	T_OK(&ctx, sp_delta_apply_mem(&ctx, in.bmem, in.blen, in.dmem, in.dlen, in.flen,
								  &buf, &len));
	T_CHECK(len == in.flen && memcmp(buf, in.fmem, len) == 0, "rebuilt bytes differ");
	h_free(&h, buf);
	T_CHECK(h.live == 0, "live %ld", h.live);
}

/* Make root/ with a model pair inside and an outside/ directory beside it. */
static bool
make_root(char **root, char **outside)
{
	*root = t_path("root");
	*outside = t_path("outside");
	return fh_mkdirs(t_fmt("%s/models", *root)) && fh_mkdirs(*outside) &&
		fh_mkdirs(t_path("root2")) &&
		fh_copy(t_model("gpt2-lora-r8/base.safetensors"), t_fmt("%s/base.safetensors", *root)) &&
		fh_copy(t_model("gpt2-lora-r8/ft.safetensors"), t_fmt("%s/ft.safetensors", *root)) &&
		fh_copy(t_model("gpt2-lora-r8/ft.safetensors"), t_fmt("%s/ft.safetensors", *outside)) &&
		fh_copy(t_model("gpt2-lora-r8/ft.safetensors"), t_path("root2/ft.safetensors")) &&
		symlink(t_fmt("%s/ft.safetensors", *outside), t_fmt("%s/link.safetensors", *root)) == 0 &&
		symlink(*outside, t_fmt("%s/linkdir", *root)) == 0 &&
		fh_copy(t_model("gpt2-lora-r8/base.safetensors"), t_fmt("%s/models/a.safetensors", *root)) &&
		symlink(t_fmt("%s/ft.safetensors", *outside), t_fmt("%s/models/b.safetensors", *root)) == 0;
}

/* Compress under a root must fail with OUTSIDE_ROOT naming path. */
#define EXPECT_OUTSIDE(root, base, ft, out, shown) \
	do { sp_ctx c_; sp_compress_result cr_; \
		rt_ctx(&c_); c_.root = (root); \
		T_ERR(&c_, sp_delta_compress(&c_, (base), (ft), (out), 3, &cr_), SP_ERR_OUTSIDE_ROOT, \
			  t_fmt("path \"%s\" is outside the allowed root \"%s\"", (shown), (root))); \
	} while (0)

/* ctx.root confines inputs and outputs, through "..", symlinks, prefixes. */
static void
test_root_confinement(void)
{
	char	   *root,
			   *outside;
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;

	T_REQUIRE(make_root(&root, &outside), "setup");
	char	   *b = t_fmt("%s/base.safetensors", root);
	char	   *f = t_fmt("%s/ft.safetensors", root);
	char	   *of = t_fmt("%s/ft.safetensors", outside);
	char	   *dotdot = t_fmt("%s/../outside/ft.safetensors", root);
	char	   *link = t_fmt("%s/link.safetensors", root);
	char	   *prefix = t_path("root2/ft.safetensors");
	char	   *out = t_fmt("%s/d.delta", root);

	EXPECT_OUTSIDE(root, b, of, out, of);
	EXPECT_OUTSIDE(root, of, f, out, of);
	EXPECT_OUTSIDE(root, b, dotdot, out, dotdot);
	EXPECT_OUTSIDE(root, b, link, out, link);
	EXPECT_OUTSIDE(root, b, prefix, out, prefix);
	EXPECT_OUTSIDE(root, b, f, t_fmt("%s/d.delta", outside), t_fmt("%s/d.delta", outside));
	EXPECT_OUTSIDE(root, b, f, t_fmt("%s/../d.delta", root), t_fmt("%s/../d.delta", root));
	EXPECT_OUTSIDE(root, b, f, t_fmt("%s/linkdir/d.delta", root), t_fmt("%s/linkdir/d.delta", root));
	/* An existing file outside the root must not be revealed as existing. */
	EXPECT_OUTSIDE(root, b, f, of, of);
	T_CHECK(!fh_exists(out) && !fh_exists(t_fmt("%s/d.delta", outside)) &&
			!fh_exists(t_path("d.delta")), "an output was written");
	/* Inside the root everything works, also with ".." that stays inside. */
	rt_ctx(&ctx);
	ctx.root = root;
	T_OK(&ctx, sp_delta_compress(&ctx, b, t_fmt("%s/models/../ft.safetensors", root),
								 out, 3, &cr));
	T_OK(&ctx, sp_delta_apply(&ctx, b, out, t_fmt("%s/rebuilt.safetensors", root), &ar));
	T_CHECK(fh_same(f, t_fmt("%s/rebuilt.safetensors", root)), "rebuilt differs");
	EXPECT_OUTSIDE(root, b, out, t_fmt("%s/x", outside), t_fmt("%s/x", outside));
	rt_ctx(&ctx);
	ctx.root = root;
	T_ERR(&ctx, sp_delta_apply(&ctx, b, out, t_fmt("%s/r2.safetensors", outside), &ar),
		  SP_ERR_OUTSIDE_ROOT, t_fmt("path \"%s/r2.safetensors\" is outside the allowed root \"%s\"",
									 outside, root));
}

/* A symlink inside a model directory that leads outside the root. */
static void
test_root_symlink_in_directory(void)
{
	char	   *root,
			   *outside;
	sp_ctx		ctx;
	sp_compress_result cr;

	T_REQUIRE(make_root(&root, &outside), "setup");
	rt_ctx(&ctx);
	ctx.root = root;
	T_ERR(&ctx, sp_delta_compress(&ctx, t_fmt("%s/base.safetensors", root),
								  t_fmt("%s/models", root), t_fmt("%s/d.delta", root), 3, &cr),
		  SP_ERR_OUTSIDE_ROOT,
		  t_fmt("path \"%s/models/b.safetensors\" is outside the allowed root \"%s\"", root, root));
	T_CHECK(!fh_exists(t_fmt("%s/d.delta", root)), "output written");
	/* A root that does not exist is an I/O error naming it. */
	rt_ctx(&ctx);
	ctx.root = t_path("no-such-root");
	T_ERR(&ctx, sp_delta_compress(&ctx, t_fmt("%s/base.safetensors", root),
								  t_fmt("%s/ft.safetensors", root), t_fmt("%s/e.delta", root), 3, &cr),
		  SP_ERR_IO, t_fmt("could not resolve root directory \"%s\": No such file or directory",
						   t_path("no-such-root")));
}

/* Swap dir <r>/d for a symlink to <o>/d (way 1), or back (way 0). */
static bool
swap_dir(const char *r, const char *o, bool way)
{
	char	   *d = t_fmt("%s/d", r),
			   *kept = t_fmt("%s/d.kept", r);

	if (way)
		return rename(d, kept) == 0 && symlink(t_fmt("%s/d", o), d) == 0;
	return unlink(d) == 0 && rename(kept, d) == 0;
}

/*
 * Paths are checked, then opened: a directory swapped for a link to outside
 * the root in between must not be followed, for reads, new files, the
 * rename into place and directory outputs, with openat2 and with the
 * component walk used where the kernel lacks it.  The message names the
 * checked path.  With no root set, links are followed.
 */
static void
test_root_swap_race(void)
{
	char	   *r0 = t_path("swaproot"),
			   *o0 = t_path("swapout");

	T_REQUIRE(fh_mkdirs(t_fmt("%s/d", r0)) && fh_mkdirs(t_fmt("%s/d", o0)) &&
			  fh_write(t_fmt("%s/d/x.bin", r0), "inside", 6) &&
			  fh_write(t_fmt("%s/d/x.bin", o0), "OUTSIDE", 7), "setup");
	char	   *r = t_track(realpath(r0, NULL)),
			   *o = t_track(realpath(o0, NULL));

	T_REQUIRE(r && o, "realpath");
	for (int walk = 0; walk <= 1; walk++)
	{
		sp_ctx		ctx;
		sp_fileset	fs;
		sp_out		out;
		char		buf[8];
		char	   *canon,
				   *tmpdir;
		char	   *x = t_fmt("%s/d/x.bin", r);
		const char *msg = t_fmt("path \"%s\" changed after it was checked: "
								"a symbolic link appeared in it", x);

		sp_open_canon_walk_only = walk;
		/* a read: the file set was checked, then its directory swapped */
		rt_ctx(&ctx);
		ctx.root = r;
		T_OK(&ctx, sp_fileset_open(&ctx, t_fmt("%s/d", r), &fs));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		T_ERR(&ctx, sp_fileset_read(&ctx, &fs, 0, 0, buf, 6), SP_ERR_OUTSIDE_ROOT, msg);
		sp_fileset_close(&ctx, &fs);
		/* no root, nothing to leave: links are followed as by open(2) */
		T_REQUIRE(swap_dir(r, o, false), "swap back");
		rt_ctx(&ctx);
		T_OK(&ctx, sp_fileset_open(&ctx, x, &fs));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		T_OK(&ctx, sp_fileset_read(&ctx, &fs, 0, 0, buf, 6));
		sp_fileset_close(&ctx, &fs);
		T_REQUIRE(swap_dir(r, o, false), "swap back");
		/* a new file: checked, swapped, then created */
		rt_ctx(&ctx);
		ctx.root = r;
		T_OK(&ctx, sp_path_output(&ctx, t_fmt("%s/d/new.delta", r), &canon));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		T_ERR(&ctx, sp_out_file(&ctx, &out, canon), SP_ERR_OUTSIDE_ROOT,
			  t_fmt("path \"%s\" changed after it was checked: a symbolic link appeared in it", canon));
		sp_out_abort(&ctx, &out);
		T_REQUIRE(swap_dir(r, o, false), "swap back");
		/* created before the swap: the rename stays in the checked directory */
		rt_ctx(&ctx);
		ctx.root = r;
		T_OK(&ctx, sp_out_file(&ctx, &out, canon));
		T_OK(&ctx, sp_out_write(&ctx, &out, "data", 4));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		T_OK(&ctx, sp_out_commit(&ctx, &out));
		sp_out_abort(&ctx, &out);
		T_CHECK(fh_exists(t_fmt("%s/d.kept/new.delta", r)) &&
				rt_entries(t_fmt("%s/d", o)) == 1,
				"the output left its checked directory (%d entries outside)",
				rt_entries(t_fmt("%s/d", o)));
		T_REQUIRE(swap_dir(r, o, false) && unlink(t_fmt("%s/d/new.delta", r)) == 0, "swap back");
		/* a failed file output is removed from the checked directory, not the swapped one */
		rt_ctx(&ctx);
		ctx.root = r;
		T_OK(&ctx, sp_out_file(&ctx, &out, canon));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		sp_out_abort(&ctx, &out);
		T_CHECK(rt_entries(t_fmt("%s/d.kept", r)) == 1, "temporary file left behind");
		T_REQUIRE(swap_dir(r, o, false), "swap back");
		/* a directory output */
		rt_ctx(&ctx);
		ctx.root = r;
		sp_free(&ctx, canon);
		T_OK(&ctx, sp_path_output(&ctx, t_fmt("%s/d/tree", r), &canon));
		T_REQUIRE(swap_dir(r, o, true), "swap");
		T_ERR(&ctx, sp_outdir_begin(&ctx, canon, &tmpdir), SP_ERR_OUTSIDE_ROOT,
			  t_fmt("path \"%s\" changed after it was checked: a symbolic link appeared in it", canon));
		T_CHECK(rt_entries(t_fmt("%s/d", o)) == 1, "a directory was made outside the root");
		T_REQUIRE(swap_dir(r, o, false), "swap back");
		sp_free(&ctx, canon);
	}
	sp_open_canon_walk_only = false;
}

/* The progress hook sees done grow within total on compress and apply. */
static void
test_progress_hook(void)
{
	sp_ctx		ctx;
	hook_state	h;
	sp_compress_result cr;
	sp_apply_result ar;
	const char *b = t_model("roberta-lora-r4-biasall/base.safetensors");
	char	   *d = t_path("d.delta");

	hook_ctx(&ctx, &h, -1, -1);
	T_OK(&ctx, sp_delta_compress(&ctx, b, t_model("roberta-lora-r4-biasall/ft.safetensors"),
								 d, 3, &cr));
	T_CHECK(h.progress_calls > 0 && !h.progress_bad, "compress progress: %ld calls, bad %d",
			h.progress_calls, h.progress_bad);
	T_CHECK(h.live == 0, "compress: %ld blocks not freed", h.live);
	hook_ctx(&ctx, &h, -1, -1);
	T_OK(&ctx, sp_delta_apply(&ctx, b, d, t_path("o.safetensors"), &ar));
	/* apply need not report progress (only compress promises it), but
	 * whatever it reports must make sense. */
	T_CHECK(!h.progress_bad, "apply progress went backwards or past total");
	printf("# apply: progress called %ld times\n", h.progress_calls);
	T_CHECK(h.live == 0, "apply: %ld blocks not freed", h.live);
}

const t_case t_tests_hooks[] = {
	{"alloc_failure_sweep", test_alloc_failure_sweep},
	{"cancel_sweep", test_cancel_sweep},
	{"cancel_directory_output", test_cancel_directory_output},
	{"mem_too_large", test_mem_too_large},
	{"root_confinement", test_root_confinement},
	{"root_symlink_in_directory", test_root_symlink_in_directory},
	{"root_swap_race", test_root_swap_race},
	{"progress_hook", test_progress_hook},
	{NULL, NULL}
};
