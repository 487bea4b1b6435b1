/*
 * test_review.c -- regressions for the bugs an adversarial review of the
 * core found: each builds the hostile input from scratch (deltas are laid
 * out record by record as docs/FORMAT.md says, with XXH3 checksums) and
 * checks the exact error, and that nothing is left on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "harness.h"
#include "files.h"
#include "hashwriter.h"
#include "rt_util.h"
#include "st_writer.h"

/* A delta being built in memory. */
typedef struct dbuf
{
	uint8_t		b[4096];
	size_t		n;
} dbuf;

/* Start a delta: magic, version 1, flags. */
static void
d_header(dbuf *d, uint32_t flags)
{
	memset(d, 0, sizeof(*d));
	memcpy(d->b, "SPRSDLT", 8);
	d->b[8] = 1;
	memcpy(d->b + 12, &flags, 4);
	d->n = 16;
}

/* Append one record (type, payload) with its checksum. */
static void
d_record(dbuf *d, int type, const void *payload, uint32_t len)
{
	uint64_t	h;

	d->b[d->n] = (uint8_t) type;
	memcpy(d->b + d->n + 4, &len, 4);
	memcpy(d->b + d->n + 8, payload, len);
	h = XXH3_64bits(d->b + d->n, 8 + (size_t) len);
	memcpy(d->b + d->n + 8 + len, &h, 8);
	d->n += 16 + len;
}

/* A BASES record listing the same base file count times. */
static uint32_t
bases_payload(uint8_t *p, const char *name, uint64_t size, const char *hexsha, uint32_t count)
{
	uint32_t	n = 4;
	uint16_t	nl = (uint16_t) strlen(name);

	memcpy(p, &count, 4);
	for (uint32_t i = 0; i < count; i++)
	{
		memcpy(p + n, &size, 8);
		for (int k = 0; k < 32; k++)
		{
			unsigned	v;

			sscanf(hexsha + 2 * k, "%2x", &v);
			p[n + 8 + k] = (uint8_t) v;
		}
		memcpy(p + n + 40, &nl, 2);
		memcpy(p + n + 42, name, nl);
		n += 42 + nl;
	}
	return n;
}

/* A single-file delta holding no file is corrupt, not an empty success. */
static void
test_review_single_file_delta_without_file(void)
{
	dbuf		d;
	uint8_t		zero4[4] = {0},
				end[80] = {0};
	char	   *delta = t_path("nofile.delta"),
			   *base = t_path("base.bin"),
			   *out = t_path("out.bin");
	sp_ctx		ctx;
	sp_apply_result res;

	T_REQUIRE(fh_write(base, "base", 4), "write");
	d_header(&d, 0);
	d_record(&d, 1, zero4, 4);
	d_record(&d, 5, end, 80);
	T_REQUIRE(fh_write(delta, d.b, d.n), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, delta, out, &res), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: a single-file delta must hold exactly one file", delta));
	T_CHECK(!fh_exists(out), "an output appeared");
	T_ERR(&ctx, sp_delta_verify(&ctx, base, delta, &res), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: a single-file delta must hold exactly one file", delta));
}

/* Listing one base file many times is refused before it is hashed again. */
static void
test_review_bases_listed_twice(void)
{
	dbuf		d;
	uint8_t		p[512];
	char		hex[65];
	char	   *delta = t_path("twice.delta"),
			   *base = t_path("base.bin");
	sp_ctx		ctx;
	sp_apply_result res;

	T_REQUIRE(fh_write(base, "base", 4) && fh_sha256(base, hex), "write");
	d_header(&d, 0);
	d_record(&d, 1, p, bases_payload(p, "base.bin", 4, hex, 3));
	T_REQUIRE(fh_write(delta, d.b, d.n), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_verify(&ctx, base, delta, &res), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: BASES lists a file twice", delta));
}

/* A name deeper than a directory walk goes is refused, and nothing is left. */
static void
test_review_deep_names(void)
{
	dbuf		d;
	uint8_t		zero4[4] = {0},
				file[600];
	char		name[512] = "";
	uint64_t	size = 1;
	uint16_t	nl;
	uint32_t	nobase = 0xFFFFFFFFu;
	char	   *delta = t_path("deep.delta"),
			   *base = t_path("b"),
			   *out = t_path("out");
	sp_ctx		ctx;
	sp_apply_result res;
	size_t		n;

	for (int i = 0; i < 40; i++)
		strcat(name, i ? "/d" : "d");
	nl = (uint16_t) strlen(name);
	memcpy(file, &size, 8);
	memcpy(file + 8, &nobase, 4);
	memcpy(file + 12, &nl, 2);
	memcpy(file + 14, name, nl);
	d_header(&d, 1);
	d_record(&d, 1, zero4, 4);
	d_record(&d, 2, file, 14u + nl);
	T_REQUIRE(fh_mkdirs(base) && fh_write(delta, d.b, d.n), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, delta, out, &res), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" names an unsafe file \"%s\"", delta, name));
	fh_list(t_dir(), &n);
	T_CHECK(n == 2, "%zu entries in the test directory, expected 2 (no output, no temporary)", n);
}

/* A header with more JSON values than allowed is refused before parsing. */
static void
test_review_header_value_budget(void)
{
	size_t		len = 2000020;
	char	   *json = t_track(malloc(len + 16));
	char	   *p = t_path("many.safetensors");
	sp_ctx		ctx;
	sp_estimate est;

	T_REQUIRE(json != NULL, "malloc");
	strcpy(json, "{\"x\":[");
	for (size_t i = 6; i < len - 2; i += 2)
		memcpy(json + i, "0,", 2);
	strcpy(json + len - 2, "0]}");
	T_REQUIRE(stw_write_raw(p, strlen(json), json, NULL, 0), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_estimate(&ctx, p, p, 0.01, &est), SP_ERR_HEADER_TOO_LARGE,
		  t_fmt("safetensors header of \"%s\" has more than 1000000 JSON values", p));
}

/* Outputs are created with the caller's umask, and long names fit. */
static void
test_review_umask_and_long_names(void)
{
	char		longname[256];
	char	   *base = t_model("mlp-trained/base.bf16.safetensors"),
			   *ft = t_model("mlp-trained/ft.bf16.safetensors"),
			   *delta;
	sp_ctx		ctx;
	sp_compress_result cr;
	struct stat st;
	mode_t		old;

	memset(longname, 'n', 245);
	strcpy(longname + 245, ".sdelta");
	delta = t_path(longname);
	rt_ctx(&ctx);
	old = umask(077);
	sp_status	rc = sp_delta_compress(&ctx, base, ft, delta, 3, &cr);

	umask(old);
	T_OK(&ctx, rc);
	T_REQUIRE(stat(delta, &st) == 0, "no delta");
	T_CHECK((st.st_mode & 0777) == 0600, "mode %o, expected 600 under umask 077",
			(unsigned) (st.st_mode & 0777));
}

/* A missing path outside the root is "outside the root", not "no such file". */
static void
test_review_root_does_not_leak_existence(void)
{
	sp_ctx		ctx;
	sp_estimate est;
	char	   *root = t_path("root");

	T_REQUIRE(fh_mkdirs(root), "mkdir");
	rt_ctx(&ctx);
	ctx.root = root;
	T_ERR(&ctx, sp_delta_estimate(&ctx, "/nonexistent/a.safetensors", "/etc/passwd", 0.01, &est),
		  SP_ERR_OUTSIDE_ROOT,
		  t_fmt("path \"/nonexistent/a.safetensors\" is outside the allowed root \"%s\"", root));
}

/*
 * A file of thousands of small tensors is estimated from a sample of them
 * (not coded whole), within 3 points of the real savings, with every
 * tensor counted.
 */
static void
test_review_many_small_tensors(void)
{
	enum
	{
		NT = 3000, NEL = 4096
	};
	stw_tensor *bt = t_track(calloc(NT, sizeof(stw_tensor))),
			   *ft = t_track(calloc(NT, sizeof(stw_tensor)));
	uint16_t   *bd = t_track(malloc((size_t) NT * NEL * 2)),
			   *fd = t_track(malloc((size_t) NT * NEL * 2));
	char	   *base = t_path("base.safetensors"),
			   *ftp = t_path("ft.safetensors"),
			   *delta = t_path("d.sdelta");
	uint64_t	rng = 7;
	sp_ctx		ctx;
	sp_estimate est;
	sp_compress_result cr;

	T_REQUIRE(bt && ft && bd && fd, "malloc");
	for (size_t i = 0; i < (size_t) NT * NEL; i++)
	{
		bd[i] = (uint16_t) (0x3c00 + (fh_rand(&rng) & 0x3ff));
		/* every third tensor unchanged, the rest nudged in the low bits */
		fd[i] = (i / NEL) % 3 == 0 ? bd[i] : (uint16_t) (bd[i] ^ (fh_rand(&rng) & 7));
	}
	for (int i = 0; i < NT; i++)
	{
		bt[i].name = ft[i].name = t_fmt("expert.%d.weight", i);
		bt[i].dtype = ft[i].dtype = "BF16";
		stw_shape(&bt[i], 1, (uint64_t) NEL);
		stw_shape(&ft[i], 1, (uint64_t) NEL);
		bt[i].data = bd + (size_t) i * NEL;
		ft[i].data = fd + (size_t) i * NEL;
		bt[i].len = ft[i].len = NEL * 2;
	}
	T_REQUIRE(stw_write(base, bt, NT, NULL) && stw_write(ftp, ft, NT, NULL), "write");
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_estimate(&ctx, base, ftp, 0.01, &est));
	T_OK(&ctx, sp_delta_compress(&ctx, base, ftp, delta, 3, &cr));
	T_CHECK(est.tensors_total == NT, "tensors_total %lld", (long long) est.tensors_total);
	T_CHECK(est.tensors_identical + est.tensors_changed == NT, "identical %lld + changed %lld",
			(long long) est.tensors_identical, (long long) est.tensors_changed);
	T_CHECK(est.tensors_identical >= 900 && est.tensors_identical <= 1100,
			"identical %lld, expected about 1000", (long long) est.tensors_identical);
	T_CHECK(fabs(est.savings_pct - cr.savings_pct) <= 3.0, "estimated %.2f%%, real %.2f%%",
			est.savings_pct, cr.savings_pct);
}

/*
 * A damaged length field in a complete delta is "corrupted" (its END record
 * is intact), while a delta cut short is "truncated".
 */
static void
test_review_damaged_length_is_corruption(void)
{
	dbuf		d;
	uint8_t		zero4[4] = {0},
				end[80] = {0};
	char	   *delta = t_path("len.delta"),
			   *base = t_path("base.bin");
	sp_ctx		ctx;
	sp_apply_result res;
	uint32_t	huge = 1u << 20;

	T_REQUIRE(fh_write(base, "base", 4), "write");
	d_header(&d, 0);
	d_record(&d, 1, zero4, 4);
	d_record(&d, 5, end, 80);
	memcpy(d.b + 16 + 4, &huge, 4);	/* the BASES record now claims 1 MiB */
	T_REQUIRE(fh_write(delta, d.b, d.n), "write");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_verify(&ctx, base, delta, &res), SP_ERR_CORRUPT,
		  t_fmt("delta \"%s\" is corrupted: record at byte 16 claims more bytes than remain", delta));
	T_REQUIRE(fh_truncate(delta, d.n - 1), "cut");
	T_ERR(&ctx, sp_delta_verify(&ctx, base, delta, &res), SP_ERR_TRUNCATED,
		  t_fmt("delta \"%s\" is truncated at byte %zu", delta, d.n - 1));
}

/*
 * The apply hash writer: three buffers handed over in turn reach the file
 * in order and give the digest of their concatenation; a write to a bad
 * descriptor is reported (EBADF) while hashing goes on.
 */
static void
test_review_hashwriter(void)
{
	static uint8_t bufs[3][100000];
	sp_ctx		ctx;
	sp_sha256	sha,
				ref;
	sp_hashwriter hw;
	uint8_t		got[SP_SHA256_LEN],
				want[SP_SHA256_LEN];
	char	   *p = t_path("hw.bin");
	FILE	   *f;
	int			fd;

	for (int k = 0; k < 3; k++)
		for (size_t i = 0; i < sizeof(bufs[k]); i++)
			bufs[k][i] = (uint8_t) (i * 7 + k * 13);
	rt_ctx(&ctx);
	T_REQUIRE(sp_sha256_init(&ctx, &sha) == SP_OK && sp_sha256_init(&ctx, &ref) == SP_OK, "sha");
	T_REQUIRE((f = fopen(p, "wb")) != NULL, "open %s", p);
	fd = fileno(f);
	sp_hw_init(&hw);
	for (int k = 0; k < 3; k++)
	{
		sp_hw_submit(&hw, &sha, fd, bufs[k], sizeof(bufs[k]));
		sp_sha256_update(&ref, bufs[k], sizeof(bufs[k]));
	}
	T_CHECK(sp_hw_wait(&hw) == 0, "no write error expected");
	sp_sha256_final(&sha, got);
	sp_sha256_final(&ref, want);
	T_CHECK(memcmp(got, want, SP_SHA256_LEN) == 0, "digest differs");
	sp_sha256_free(&sha);
	sp_sha256_free(&ref);
	fclose(f);
	T_CHECK(fh_size(p) == 3 * (int64_t) sizeof(bufs[0]), "file has %lld bytes",
			(long long) fh_size(p));
	/* a closed descriptor: EBADF, and the digest still covers the bytes */
	T_REQUIRE(sp_sha256_init(&ctx, &sha) == SP_OK, "sha");
	sp_hw_new_file(&hw);
	sp_hw_submit(&hw, &sha, fd, bufs[0], sizeof(bufs[0]));
	T_CHECK(sp_hw_wait(&hw) == EBADF, "closed descriptor: errno %d", hw.err);
	sp_hw_stop(&hw);
	sp_sha256_final(&sha, got);
	T_REQUIRE(sp_sha256_init(&ctx, &ref) == SP_OK, "sha");
	sp_sha256_update(&ref, bufs[0], sizeof(bufs[0]));
	sp_sha256_final(&ref, want);
	T_CHECK(memcmp(got, want, SP_SHA256_LEN) == 0, "digest differs after a write error");
	sp_sha256_free(&sha);
	sp_sha256_free(&ref);
}

/*
 * Write n pieces of len bytes of data in direct mode to fd, each put where
 * sp_hw_space points (or submitted from data where the file system refused
 * direct I/O); the digest, the pieces handed over and the write error out.
 */
static int
hw_direct_run(int fd, uint8_t *ring, uint8_t *data, size_t len, int n, uint8_t got[SP_SHA256_LEN],
			  bool *direct, int *handed)
{
	sp_ctx		ctx;
	sp_sha256	sha;
	sp_hashwriter hw;
	int			err;

	rt_ctx(&ctx);
	if (sp_sha256_init(&ctx, &sha) != SP_OK)
		return -1;
	sp_hw_init(&hw);
	sp_hw_new_file(&hw);
	*direct = sp_hw_direct(&hw, fd, ring, len);
	for (*handed = 0; *handed < n; (*handed)++)
	{
		const uint8_t *src = data + (size_t) *handed * len;
		uint8_t    *p = *direct ? sp_hw_space(&hw, len) : (uint8_t *) src;

		if (p == NULL)
			break;				/* a write failed: the ring takes no more */
		if (p != src)
			memcpy(p, src, len);
		sp_hw_submit(&hw, &sha, fd, p, len);
	}
	err = sp_hw_drain(&hw);
	sp_hw_stop(&hw);
	sp_sha256_final(&sha, got);
	sp_sha256_free(&sha);
	return err;
}

/*
 * Direct I/O in the hash writer: pieces of an odd size go round the ring
 * (one runs past its end into the slack and is copied to its start), fill
 * four stages and leave a partial one, and the file holds exactly their
 * bytes, in order, with their digest; a descriptor that cannot be written
 * reports EBADF instead of hanging, and the ring then refuses more pieces.
 * On a file system that refuses O_DIRECT the same bytes arrive buffered.
 */
static void
test_review_hashwriter_direct(void)
{
	const size_t len = ((size_t) 1 << 20) + 12345;
	const int	n = 19;			/* about 19 MiB: round the 16 MiB ring once */
	uint8_t    *raw = t_track(malloc(SP_HW_RING + len + SP_DIRECT_ALIGN)),
			   *ring = sp_align_up(raw, SP_DIRECT_ALIGN),
			   *data = t_track(malloc(len * n)),
			   *back;
	uint8_t		got[SP_SHA256_LEN];
	char		want_hex[65],
				got_hex[65];
	char	   *p = t_path("hw_direct.bin");
	size_t		blen;
	bool		direct;
	int			fd,
				handed;
	uint64_t	st = 42;

	T_REQUIRE(raw && data, "malloc");
	for (size_t i = 0; i < len * n; i++)
		data[i] = (uint8_t) fh_rand(&st);
	fh_sha256_mem(data, len * n, want_hex);
	T_REQUIRE((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0, "open %s", p);
	T_CHECK(hw_direct_run(fd, ring, data, len, n, got, &direct, &handed) == 0, "write error");
	close(fd);
	printf("# direct I/O %s on %s\n", direct ? "on" : "refused (buffered)", p);
	T_CHECK(handed == n, "%d of %d pieces handed over", handed, n);
	sp_hex(got, SP_SHA256_LEN, got_hex);
	T_CHECK(strcmp(got_hex, want_hex) == 0, "digest %s, expected %s", got_hex, want_hex);
	back = fh_read(p, &blen);
	T_CHECK(back && blen == len * n && memcmp(back, data, blen) == 0,
			"file has %zu bytes, expected %zu, or differs", blen, len * n);
	/* a read-only descriptor: every direct write fails, the drain says so */
	T_REQUIRE((fd = open(p, O_RDONLY)) >= 0, "open %s", p);
	T_CHECK(hw_direct_run(fd, ring, data, len, n, got, &direct, &handed) == EBADF,
			"expected EBADF");
	close(fd);
	if (direct)
		T_CHECK(handed < n, "the ring took all %d pieces after a failed write", n);
}

/* Append n bytes of data at *at to o and to the model copy. */
static bool
out_append(sp_ctx *ctx, sp_out *o, const uint8_t *data, size_t *at, size_t n)
{
	bool		ok = sp_out_write(ctx, o, data + *at, n) == SP_OK;

	*at += n;
	return ok;
}

/*
 * A direct-I/O output (sp_out_direct, what compress uses for large inputs)
 * holds exactly the bytes written, in order, across full stages and a
 * partial one: a rewrite of bytes still in the stage stays direct, a
 * rewrite of bytes already on disk turns direct I/O off and the rest goes
 * through the page cache; an aborted one leaves nothing.  On a file system
 * that refuses O_DIRECT the same bytes arrive buffered.
 */
static void
test_review_out_direct(void)
{
	const size_t total = 2 * SP_DIRECT_STAGE + 777777;
	uint8_t    *data = t_track(malloc(total)),
			   *back;
	char	   *p = t_path("out_direct.bin"),
			   *q = t_path("out_aborted.bin");
	size_t		at = 0,
				blen;
	uint64_t	st = 7;
	bool		was_direct;
	sp_ctx		ctx;
	sp_out		o;

	T_REQUIRE(data != NULL, "malloc");
	for (size_t i = 0; i < total; i++)
		data[i] = (uint8_t) fh_rand(&st);
	rt_ctx(&ctx);
	T_REQUIRE(sp_out_file(&ctx, &o, p) == SP_OK && sp_out_direct(&ctx, &o) == SP_OK,
			  "open: %s", ctx.err.msg);
	was_direct = o.direct;
	printf("# direct I/O %s on %s\n", was_direct ? "on" : "refused (buffered)", p);
	/* one stage and a bit, in uneven pieces */
	T_CHECK(out_append(&ctx, &o, data, &at, 12345) && out_append(&ctx, &o, data, &at, SP_DIRECT_STAGE),
			"write: %s", ctx.err.msg);
	/* rewrite bytes still in the stage: stays direct */
	memset(data + SP_DIRECT_STAGE + 100, 0xAB, 50);
	T_CHECK(sp_out_pwrite(&ctx, &o, SP_DIRECT_STAGE + 100, data + SP_DIRECT_STAGE + 100, 50) == SP_OK,
			"pwrite in stage: %s", ctx.err.msg);
	T_CHECK(o.direct == was_direct, "a rewrite inside the stage changed the mode");
	T_CHECK(out_append(&ctx, &o, data, &at, SP_DIRECT_STAGE), "write: %s", ctx.err.msg);
	/* rewrite bytes on disk (as BASES is sealed): direct I/O ends, bytes stay right */
	memset(data + 10, 0xCD, 20);
	T_CHECK(sp_out_pwrite(&ctx, &o, 10, data + 10, 20) == SP_OK, "pwrite on disk: %s",
			ctx.err.msg);
	T_CHECK(!o.direct, "still direct after rewriting bytes on disk");
	T_CHECK(out_append(&ctx, &o, data, &at, total - at), "write: %s", ctx.err.msg);
	T_CHECK(o.written == total, "written %llu, expected %zu", (unsigned long long) o.written, total);
	T_CHECK(sp_out_commit(&ctx, &o) == SP_OK, "commit: %s", ctx.err.msg);
	sp_out_abort(&ctx, &o);
	back = fh_read(p, &blen);
	T_CHECK(back && blen == total && memcmp(back, data, total) == 0,
			"file has %zu bytes, expected %zu, or differs", blen, total);
	/* aborted halfway through a stage: no file, no temporary file */
	T_REQUIRE(sp_out_file(&ctx, &o, q) == SP_OK && sp_out_direct(&ctx, &o) == SP_OK, "open");
	at = 0;
	T_CHECK(out_append(&ctx, &o, data, &at, SP_DIRECT_STAGE + 4096), "write: %s", ctx.err.msg);
	sp_out_abort(&ctx, &o);
	T_CHECK(!fh_exists(q), "an aborted output exists");
	{
		size_t		n;
		char	  **names = fh_list(t_dir(), &n);

		for (size_t i = 0; i < n; i++)
			T_CHECK(strstr(names[i], "sparse-tmp") == NULL, "temporary file %s left", names[i]);
	}
}

/*
 * A direct output whose stages the kernel refuses (EINVAL: here, stages
 * put 256 bytes off alignment): the stage writer's refused write is
 * finished through the page cache when it is collected, the file turns
 * buffered, and it holds exactly the bytes written.
 */
static void
test_review_out_direct_refused(void)
{
	const size_t total = 3 * SP_DIRECT_STAGE + 4321;
	uint8_t    *data = t_track(malloc(total)),
			   *mem,
			   *back;
	char	   *p = t_path("out_refused.bin");
	size_t		at = 0,
				blen;
	uint64_t	st = 9;
	sp_ctx		ctx;
	sp_out		o;

	T_REQUIRE(data != NULL, "malloc");
	for (size_t i = 0; i < total; i++)
		data[i] = (uint8_t) fh_rand(&st);
	rt_ctx(&ctx);
	T_REQUIRE(sp_out_file(&ctx, &o, p) == SP_OK && sp_out_direct(&ctx, &o) == SP_OK,
			  "open: %s", ctx.err.msg);
	if (!o.direct)
	{
		sp_out_abort(&ctx, &o);
		t_skip("the test directory's file system refuses O_DIRECT");
		return;
	}
	/* swap in misaligned stages (freed by sp_out_abort, like the real ones) */
	T_REQUIRE((mem = sp_alloc(&ctx, 2 * SP_DIRECT_STAGE + 2 * SP_DIRECT_ALIGN)) != NULL, "alloc");
	sp_free(&ctx, o.stage_mem);
	o.stage_mem = mem;
	o.stage = sp_align_up(mem, SP_DIRECT_ALIGN) + 256;
	o.stage2 = o.stage + SP_DIRECT_STAGE;
	T_CHECK(out_append(&ctx, &o, data, &at, SP_DIRECT_STAGE + 1000), "write: %s", ctx.err.msg);
	T_CHECK(out_append(&ctx, &o, data, &at, total - at), "write: %s", ctx.err.msg);
	T_CHECK(!o.direct, "still direct after the kernel refused a stage");
	T_CHECK(sp_out_commit(&ctx, &o) == SP_OK, "commit: %s", ctx.err.msg);
	sp_out_abort(&ctx, &o);
	back = fh_read(p, &blen);
	T_CHECK(back && blen == total && memcmp(back, data, total) == 0,
			"file has %zu bytes, expected %zu, or differs", blen, total);
}

/* Fraction of path's pages in the page cache (mincore), or -1. */
static double
resident_fraction(const char *path)
{
	int			fd = open(path, O_RDONLY);
	struct stat st;
	void	   *m;
	size_t		pages,
				in = 0;
	unsigned char *vec;

	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0)
	{
		if (fd >= 0)
			close(fd);
		return -1;
	}
	m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -1;
	pages = ((size_t) st.st_size + 4095) / 4096;
	vec = t_track(malloc(pages));
	if (vec == NULL || mincore(m, (size_t) st.st_size, vec) != 0)
		pages = 0;
	for (size_t i = 0; i < pages; i++)
		in += vec[i] & 1;
	munmap(m, (size_t) st.st_size);
	return pages ? (double) in / (double) pages : -1;
}

/* Whether files in dir can be opened with O_DIRECT. */
static bool
dir_takes_direct(const char *dir)
{
	char	   *p = t_fmt("%s/direct_probe", dir);
	int			fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	bool		ok = fd >= 0 && sp_fd_direct(fd, true);

	if (fd >= 0)
		close(fd);
	unlink(p);
	return ok;
}

/*
 * Compress of a large model (SP_DIRECT_MIN or more of fine-tune) and apply
 * of a large file write past the page cache.  A build decided this before it
 * had summed the input's size, so no compress ever went direct: the delta's
 * pages, left in the page cache, are what show it.
 */
static void
test_review_large_outputs_are_direct(void)
{
	const size_t nel = (SP_DIRECT_MIN + (8u << 20)) / 2;
	char	   *base = t_path("big_base.safetensors"),
			   *ftp = t_path("big_ft.safetensors"),
			   *delta = t_path("big.sdelta"),
			   *out = t_path("big_out.safetensors");
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;
	double		dres,
				ores;

	if (!dir_takes_direct(t_dir()))
	{
		t_skip("the test directory's file system refuses O_DIRECT");
		return;
	}
	/* a noisy low byte: a delta large enough to take several direct stages */
	T_REQUIRE(rt_write_bf16_pair(base, ftp, nel, 11, 0xff), "write the pair");
	rt_ctx(&ctx);
	T_REQUIRE(sp_delta_compress(&ctx, base, ftp, delta, 3, &cr) == SP_OK, "compress: %s",
			  ctx.err.msg);
	T_REQUIRE(cr.delta_bytes > 4 * SP_DIRECT_STAGE, "delta of %llu bytes is too small to tell",
			  (unsigned long long) cr.delta_bytes);
	dres = resident_fraction(delta);	/* before apply reads it back in */
	T_REQUIRE(sp_delta_apply(&ctx, base, delta, out, &ar) == SP_OK, "apply: %s", ctx.err.msg);
	ores = resident_fraction(out);
	printf("# resident in the page cache: delta %.2f, rebuilt file %.2f\n", dres, ores);
	/* direct: only the tail and the resealed BASES went through the cache */
	T_CHECK(dres >= 0 && dres < 0.5, "%.0f%% of the delta is in the page cache", dres * 100);
	T_CHECK(ores >= 0 && ores < 0.5, "%.0f%% of the rebuilt file is in the page cache", ores * 100);
}

/*
 * Hand n pieces of len bytes to a direct-mode hash writer on fd, checking
 * all but pieces 1, 5, 9, ... against their XXH3 (the pieces in bad against
 * a wrong one); returns whether a piece failed, and the first in *tag.
 */
static bool
hw_checked_run(int fd, uint8_t *ring, const uint8_t *data, size_t len, int n,
			   const int *bad, int nbad, uint64_t *tag)
{
	sp_ctx		ctx;
	sp_sha256	sha;
	sp_hashwriter hw;
	bool		failed;

	rt_ctx(&ctx);
	*tag = 0;
	if (sp_sha256_init(&ctx, &sha) != SP_OK)
		return false;
	sp_hw_init(&hw);
	sp_hw_new_file(&hw);
	T_REQUIRE_V(sp_hw_direct(&hw, fd, ring, len), false, "direct mode refused");
	for (int i = 0; i < n; i++)
	{
		uint8_t    *p = sp_hw_space(&hw, len);
		uint64_t	want;

		T_REQUIRE_V(p != NULL, false, "the ring refused piece %d", i);
		memcpy(p, data + (size_t) i * len, len);
		want = XXH3_64bits(p, len);
		for (int b = 0; b < nbad; b++)
			want ^= bad[b] == i;
		if (i % 4 != 1)
			sp_hw_expect(&hw, want, (uint64_t) i);
		sp_hw_submit(&hw, &sha, fd, p, len);
	}
	T_CHECK(sp_hw_drain(&hw) == 0, "write error");
	failed = sp_hw_bad_piece(&hw, tag);
	sp_hw_stop(&hw);
	sp_sha256_free(&sha);
	return failed;
}

/*
 * Pieces checked by the hash writer's worker (sp_hw_expect): 19 odd-sized
 * pieces round the ring, one of them across its end, most of them checked;
 * all right: none is reported; wrong checksums on pieces 6 and 15 (the one
 * across the end): 6 is; on 15 alone: 15 is.
 */
static void
test_review_hashwriter_checked(void)
{
	const size_t len = ((size_t) 1 << 20) + 12345;
	const int	n = 19;
	uint8_t    *raw = t_track(malloc(SP_HW_RING + len + SP_DIRECT_ALIGN)),
			   *ring = sp_align_up(raw, SP_DIRECT_ALIGN),
			   *data = t_track(malloc(len * n));
	const int	both[] = {6, 15},
				last[] = {15};
	uint64_t	st = 7,
				tag;
	char	   *p = t_path("hw_checked.bin");
	int			fd;

	T_REQUIRE(raw && data, "malloc");
	if (!dir_takes_direct(t_dir()))
	{
		t_skip("the test directory's file system refuses O_DIRECT");
		return;
	}
	/* piece 15 runs past the ring's end: [15, 16) * len spans SP_HW_RING */
	T_REQUIRE(15 * len < SP_HW_RING && 16 * len > SP_HW_RING, "piece 15 must cross the end");
	for (size_t i = 0; i < len * n; i++)
		data[i] = (uint8_t) fh_rand(&st);
	T_REQUIRE((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0, "open %s", p);
	T_CHECK(!hw_checked_run(fd, ring, data, len, n, NULL, 0, &tag),
			"piece %llu reported, none is wrong", (unsigned long long) tag);
	T_CHECK(ftruncate(fd, 0) == 0, "truncate");
	T_CHECK(hw_checked_run(fd, ring, data, len, n, both, 2, &tag) && tag == 6,
			"pieces 6 and 15 wrong: reported %llu", (unsigned long long) tag);
	T_CHECK(ftruncate(fd, 0) == 0, "truncate");
	T_CHECK(hw_checked_run(fd, ring, data, len, n, last, 1, &tag) && tag == 15,
			"piece 15 wrong: reported %llu", (unsigned long long) tag);
	close(fd);
}

/* Fraction of the 4 KiB pages of path in [from, to) that are in the page cache, or -1. */
static double
resident_range(const char *path, uint64_t from, uint64_t to)
{
	int			fd = open(path, O_RDONLY);
	void	   *m;
	size_t		pages = (size_t) ((to - from) / 4096),
				in = 0;
	unsigned char *vec = t_track(malloc(pages ? pages : 1));

	if (fd < 0)
		return -1;
	m = mmap(NULL, (size_t) (to - from), PROT_READ, MAP_SHARED, fd, (off_t) from);
	close(fd);
	if (m == MAP_FAILED || vec == NULL || mincore(m, (size_t) (to - from), vec) != 0)
		return -1;
	for (size_t i = 0; i < pages; i++)
		in += vec[i] & 1;
	munmap(m, (size_t) (to - from));
	return (double) in / (double) pages;
}

/* Write len bytes to path, fsync them and drop them from the page cache; false if they stay. */
static bool
cold_file(const char *path, size_t len)
{
	uint8_t    *buf = t_track(calloc(1, len));
	int			fd;
	bool		ok;

	if (buf == NULL || !fh_write(path, buf, len) || (fd = open(path, O_RDONLY)) < 0)
		return false;
	ok = fsync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
	close(fd);
	return ok && resident_range(path, 0, len) < 0.05;
}

/*
 * Sequential reads of a file set ask the kernel to read ahead: after five
 * 1 MiB reads in a row at the start of a cold file, the bytes 24-32 MiB in
 * (past the kernel's own read-ahead, up to 8 MiB ahead here) come into the
 * page cache; a run of two reads (a header and a sampled window, as the
 * estimate reads) does not bring them in.  Skipped where the file system
 * keeps every page resident (tmpfs).
 */
static void
test_review_sequential_reads_read_ahead(void)
{
	const size_t len = 48u << 20;
	char	   *p = t_path("ra.bin"),
			   *q = t_path("ra_short.bin");
	uint8_t    *buf = t_track(malloc(1u << 20));
	sp_ctx		ctx;
	sp_fileset	fs;
	bool		ok = true;
	double		seq = 0,
				shrt;

	T_REQUIRE(buf != NULL, "malloc");
	if (!cold_file(p, len) || !cold_file(q, len))
	{
		t_skip("the test directory's file system keeps its pages in memory");
		return;
	}
	rt_ctx(&ctx);
	T_REQUIRE(sp_fileset_open(&ctx, p, &fs) == SP_OK, "open: %s", ctx.err.msg);
	for (uint64_t k = 0; k < 5; k++)
		ok = ok && sp_fileset_read(&ctx, &fs, 0, k << 20, buf, 1u << 20) == SP_OK;
	T_CHECK(ok, "read: %s", ctx.err.msg);
	for (int i = 0; i < 100 && seq < 0.9; i++)
	{
		usleep(20000);			/* the read-ahead is asynchronous: up to 2 s */
		seq = resident_range(p, 24u << 20, 32u << 20);
	}
	sp_fileset_close(&ctx, &fs);
	T_REQUIRE(sp_fileset_open(&ctx, q, &fs) == SP_OK, "open: %s", ctx.err.msg);
	T_CHECK(sp_fileset_read(&ctx, &fs, 0, 0, buf, 12345) == SP_OK &&
			sp_fileset_read(&ctx, &fs, 0, 12345, buf, 1u << 20) == SP_OK, "read: %s",
			ctx.err.msg);
	usleep(200000);
	shrt = resident_range(q, 24u << 20, 32u << 20);
	sp_fileset_close(&ctx, &fs);
	printf("# 24-32 MiB in the page cache: %.2f after 5 MiB read in a row, %.2f after two reads\n",
		   seq, shrt);
	T_CHECK(seq >= 0.9, "a 5 MiB run brought in %.0f%% of 24-32 MiB", seq * 100);
	T_CHECK(shrt >= 0 && shrt < 0.1, "a run of two reads brought in %.0f%% of 24-32 MiB",
			shrt * 100);
}

/*
 * Aborting a directory output removes every name before it returns, large
 * files too (their descriptors are held and closed on a helper afterwards,
 * so the blocks are freed without the caller waiting): nested directories,
 * a large and a small file, nothing left.
 */
static void
test_review_outdir_abort_large(void)
{
	char	   *final = t_path("abort_tree"),
			   *tmp = NULL;
	sp_ctx		ctx;
	sp_out		o;
	int			fd;

	rt_ctx(&ctx);
	T_REQUIRE(sp_outdir_begin(&ctx, final, &tmp) == SP_OK, "begin: %s", ctx.err.msg);
	T_REQUIRE(sp_outdir_file(&ctx, tmp, "a/b/big.safetensors", &o) == SP_OK, "file: %s",
			  ctx.err.msg);
	T_CHECK(ftruncate(o.fd, (off_t) SP_DIRECT_MIN + 4096) == 0, "ftruncate");
	sp_out_abort(&ctx, &o);		/* closes it, the name stays for the tree removal */
	T_REQUIRE((fd = open(t_fmt("%s/small.json", tmp), O_WRONLY | O_CREAT, 0644)) >= 0, "open");
	close(fd);
	sp_outdir_abort(&ctx, tmp);
	T_CHECK(!fh_exists(tmp), "the temporary tree %s is still there", tmp);
	T_CHECK(!fh_exists(final), "the final path exists");
	sp_free(&ctx, tmp);
}

const t_case t_tests_review[] = {
	{"review_hashwriter", test_review_hashwriter},
	{"review_hashwriter_direct", test_review_hashwriter_direct},
	{"review_hashwriter_checked", test_review_hashwriter_checked},
	{"review_out_direct", test_review_out_direct},
	{"review_out_direct_refused", test_review_out_direct_refused},
	{"review_large_outputs_are_direct", test_review_large_outputs_are_direct},
	{"review_sequential_reads_read_ahead", test_review_sequential_reads_read_ahead},
	{"review_outdir_abort_large", test_review_outdir_abort_large},
	{"review_damaged_length_is_corruption", test_review_damaged_length_is_corruption},
	{"review_many_small_tensors", test_review_many_small_tensors},
	{"review_single_file_delta_without_file", test_review_single_file_delta_without_file},
	{"review_bases_listed_twice", test_review_bases_listed_twice},
	{"review_deep_names", test_review_deep_names},
	{"review_header_value_budget", test_review_header_value_budget},
	{"review_umask_and_long_names", test_review_umask_and_long_names},
	{"review_root_does_not_leak_existence", test_review_root_does_not_leak_existence},
	{NULL, NULL}
};
