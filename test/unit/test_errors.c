/*
 * test_errors.c -- every error the core reports for bad input, with its
 * code and its exact message.
 *
 * Bad safetensors files are written raw (stw_write_raw) so each one breaks
 * exactly one rule; each is given as ft and as base to sp_delta_compress,
 * and to sp_delta_estimate, which must all report it the same way.  Bad
 * deltas are made from a valid one by walking its records as
 * docs/FORMAT.md lays them out (16-byte header; records of u8 type, u8[3]
 * zero, u32 length, payload, u64 XXH3-64): cut at several points, a byte
 * flipped inside a chunk payload (caught by the record checksum), a byte
 * flipped and the record resealed (caught by the chunk's own checks), the
 * magic, version or flags patched, a file name rewritten to "../x" or
 * "/x".  Paths in messages are canonical (the test directory and
 * t_model() paths are canonical already).  After every failure no output
 * and no temporary file may exist.  Permission errors are provoked in a
 * child that drops to "nobody" when the suite runs as root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "files.h"			/* SP_DIRECT_MIN */
#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"

static void no_temp_files(const char *file, int line);

/* 16 bytes of tensor data used by the raw files. */
static const uint8_t data16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* A valid small model file with one F32 tensor of 4 elements. */
static char *
good_file(void)
{
	char	   *p = t_path("good.safetensors");
	const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";

	if (!fh_exists(p))
		stw_write_raw(p, strlen(h), h, data16, 16);
	return p;
}

/* Write a raw file with a header whose length field is its real length. */
static char *
raw_file(const char *name, const char *header, size_t data_len)
{
	char	   *p = t_path(name);

	stw_write_raw(p, strlen(header), header, data16, data_len);
	return p;
}

/*
 * Compress (ft against a good base, and as base against a good ft) and
 * estimate must fail with code and exactly msg; no output may appear.
 */
#define EXPECT_INPUT_ERR(bad, code, msg) \
	expect_input_err(__FILE__, __LINE__, (bad), (code), (msg))

/* Worker of EXPECT_INPUT_ERR. */
static void
expect_input_err(const char *file, int line, const char *bad, sp_status code,
				 const char *msg)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_estimate est;
	char	   *out = rt_unique("err", ".delta");

	rt_ctx(&ctx);
	t_check_err(file, line, &ctx,
				sp_delta_compress(&ctx, good_file(), bad, out, SP_LEVEL_DEFAULT, &cr),
				code, msg, true);
	if (fh_exists(out))
		t_fail(file, line, "output %s exists after a failed compress", out);
	no_temp_files(file, line);
	rt_ctx(&ctx);
	t_check_err(file, line, &ctx,
				sp_delta_compress(&ctx, bad, good_file(), out, SP_LEVEL_DEFAULT, &cr),
				code, msg, true);
	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_delta_estimate(&ctx, good_file(), bad, 0.5, &est),
				code, msg, true);
	if (fh_exists(out))
		t_fail(file, line, "output %s exists after a failed compress", out);
}

/* A text file named .safetensors, and files too short to hold a header. */
static void
test_err_not_safetensors(void)
{
	char	   *txt = t_path("text.safetensors");
	char	   *tiny = t_path("tiny.safetensors");
	char	   *bracket = raw_file("bracket.safetensors", "[\"w\"]   ", 0);

	T_REQUIRE(fh_write(txt, "this is plain text, not a model\n", 32), "write");
	T_REQUIRE(fh_write(tiny, "abc", 3), "write");
	EXPECT_INPUT_ERR(txt, SP_ERR_HEADER_TOO_LARGE,
					 t_fmt("safetensors header length 2338328219631577204 in \"%s\" is larger than the file (32 bytes)", txt));
	EXPECT_INPUT_ERR(tiny, SP_ERR_NOT_SAFETENSORS,
					 t_fmt("\"%s\" is not a safetensors file: it is too short", tiny));
	EXPECT_INPUT_ERR(bracket, SP_ERR_NOT_SAFETENSORS,
					 t_fmt("\"%s\" is not a safetensors file: its header does not start with '{'", bracket));
}

/* Header length field larger than the file. */
static void
test_err_header_too_large(void)
{
	char	   *p = t_path("big.safetensors");
	const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";

	T_REQUIRE(stw_write_raw(p, 1000, h, data16, 16), "write");
	EXPECT_INPUT_ERR(p, SP_ERR_HEADER_TOO_LARGE,
					 t_fmt("safetensors header length 1000 in \"%s\" is larger than the file (%zu bytes)",
						   p, 8 + strlen(h) + 16));
	/* A header over the 100 MB limit in a (sparse) file long enough for it. */
	p = t_path("huge.safetensors");
	T_REQUIRE(stw_write_raw(p, 150000000, "{", NULL, 0) && fh_truncate(p, 160000000), "write");
	EXPECT_INPUT_ERR(p, SP_ERR_HEADER_TOO_LARGE,
					 t_fmt("safetensors header length 150000000 in \"%s\" exceeds the limit of 100000000 bytes", p));
}

/* Headers that are not JSON of the expected shape. */
static void
test_err_bad_json(void)
{
	char	   *a = raw_file("a.safetensors", "{\"w\":{\"dtype\":\"F32\",", 16);
	char	   *b = raw_file("b.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16);
	char	   *c = raw_file("c.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16);
	char	   *d = raw_file("d.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,\"16\"]}}", 16);
	char	   *e = raw_file("e.safetensors", "{\"__metadata__\":[1],\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
	char	   *f = raw_file("f.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
	char	   *g = raw_file("g.safetensors", "{\"a\\nb\":{\"dtype\":\"F31\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);

	EXPECT_INPUT_ERR(a, SP_ERR_BAD_JSON,
					 t_fmt("invalid safetensors header in \"%s\": not a JSON object", a));
	EXPECT_INPUT_ERR(b, SP_ERR_BAD_JSON,
					 t_fmt("invalid safetensors header in \"%s\": tensor \"w\" needs dtype, shape and data_offsets", b));
	EXPECT_INPUT_ERR(c, SP_ERR_BAD_JSON,
					 t_fmt("invalid shape for tensor \"w\" in \"%s\"", c));
	EXPECT_INPUT_ERR(d, SP_ERR_BAD_JSON,
					 t_fmt("invalid data_offsets for tensor \"w\" in \"%s\"", d));
	EXPECT_INPUT_ERR(e, SP_ERR_BAD_JSON,
					 t_fmt("invalid safetensors header in \"%s\": __metadata__ is not an object", e));
	EXPECT_INPUT_ERR(f, SP_ERR_BAD_JSON,
					 t_fmt("invalid safetensors header in \"%s\": tensor \"w\" appears twice", f));
	/* a newline in a tensor name must not split the message into two lines */
	EXPECT_INPUT_ERR(g, SP_ERR_UNKNOWN_DTYPE,
					 t_fmt("unknown dtype \"F31\" for tensor \"a?b\" in \"%s\"", g));
}

/* Offsets past the end, reversed, and overlapping. */
static void
test_err_bad_offsets(void)
{
	char	   *a = raw_file("a.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", 16);
	char	   *b = raw_file("b.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", 16);
	char	   *c = raw_file("c.safetensors", "{\"v\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);

	EXPECT_INPUT_ERR(a, SP_ERR_BAD_OFFSETS,
					 t_fmt("data_offsets of tensor \"w\" in \"%s\" point past the end of the file", a));
	EXPECT_INPUT_ERR(b, SP_ERR_BAD_OFFSETS,
					 t_fmt("data_offsets of tensor \"w\" in \"%s\" end before they begin", b));
	EXPECT_INPUT_ERR(c, SP_ERR_BAD_OFFSETS,
					 t_fmt("tensor \"w\" in \"%s\" overlaps another tensor", c));
}

/* A dtype safetensors does not define. */
static void
test_err_unknown_dtype(void)
{
	char	   *a = raw_file("a.safetensors", "{\"w\":{\"dtype\":\"F12\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
	char	   *b = raw_file("b.safetensors", "{\"w\":{\"dtype\":\"f32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);

	EXPECT_INPUT_ERR(a, SP_ERR_UNKNOWN_DTYPE,
					 t_fmt("unknown dtype \"F12\" for tensor \"w\" in \"%s\"", a));
	EXPECT_INPUT_ERR(b, SP_ERR_UNKNOWN_DTYPE,
					 t_fmt("unknown dtype \"f32\" for tensor \"w\" in \"%s\"", b));
}

/* Shape times dtype size differs from the byte range. */
static void
test_err_shape_mismatch(void)
{
	char	   *a = raw_file("a.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16);
	char	   *b = raw_file("b.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}", 16);

	EXPECT_INPUT_ERR(a, SP_ERR_SHAPE_MISMATCH,
					 t_fmt("tensor \"w\" in \"%s\" has 16 bytes but its shape and dtype need 20", a));
	EXPECT_INPUT_ERR(b, SP_ERR_SHAPE_MISMATCH,
					 t_fmt("shape of tensor \"w\" in \"%s\" is too large", b));
}

/* Make a valid delta of the gpt2 pair in the test directory. */
static char *
make_delta(const char **base, const char **ft)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *d = t_path("good.delta");

	*base = t_model("gpt2-lora-r8/base.safetensors");
	*ft = t_model("gpt2-lora-r8/ft.safetensors");
	if (fh_exists(d))
		return d;
	rt_ctx(&ctx);
	if (sp_delta_compress(&ctx, *base, *ft, d, SP_LEVEL_DEFAULT, &cr) != SP_OK)
	{
		t_fail(__FILE__, __LINE__, "compress: %s", ctx.err.msg);
		return NULL;
	}
	return d;
}

/* Copy the good delta to a new name and return it. */
static char *
delta_copy(const char *good)
{
	char	   *p = rt_unique("bad", ".delta");

	return fh_copy(good, p) ? p : NULL;
}

/*
 * Apply, verify and info of a bad delta must fail with code and msg
 * (exactly, or as a substring when exact is false); no output may appear.
 */
#define EXPECT_DELTA_ERR(base, delta, code, msg, exact) \
	expect_delta_err(__FILE__, __LINE__, (base), (delta), (code), (msg), (exact), true)

/* Same as EXPECT_DELTA_ERR without sp_delta_info (errors it cannot see). */
#define EXPECT_APPLY_ERR(base, delta, code, msg, exact) \
	expect_delta_err(__FILE__, __LINE__, (base), (delta), (code), (msg), (exact), false)

/* No temporary output (".NAME.sparse-tmp-XXXXXX") may be left behind. */
static void
no_temp_files(const char *file, int line)
{
	size_t		n;
	char	  **names = fh_list(t_dir(), &n);

	for (size_t i = 0; i < n; i++)
		if (names[i][0] == '.' || strstr(names[i], "sparse-tmp") != NULL)
			t_fail(file, line, "temporary file \"%s\" left behind", names[i]);
}

/* Worker of EXPECT_DELTA_ERR / EXPECT_APPLY_ERR. */
static void
expect_delta_err(const char *file, int line, const char *base, const char *delta,
				 sp_status code, const char *msg, bool exact, bool with_info)
{
	sp_ctx		ctx;
	sp_apply_result ar;
	sp_info		info = {0};
	char	   *out = rt_unique("out", ".safetensors");

	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_delta_apply(&ctx, base, delta, out, &ar),
				code, msg, exact);
	if (fh_exists(out))
		t_fail(file, line, "output %s exists after a failed apply", out);
	no_temp_files(file, line);
	rt_ctx(&ctx);
	t_check_err(file, line, &ctx, sp_delta_verify(&ctx, base, delta, &ar),
				code, msg, exact);
	if (!with_info)
		return;
	rt_ctx(&ctx);
	if (t_check_err(file, line, &ctx, sp_delta_info(&ctx, delta, &info), code, msg, exact))
		return;
	sp_info_free(&ctx, &info);
}

/*
 * Offset of the nth (0-based) record of the given type in a delta, walking
 * the records as docs/FORMAT.md lays them out: a 16-byte header, then
 * records of u8 type, u8[3] zero, u32 payload length, payload, u64 XXH3-64.
 * Only records with at least min_len payload bytes count.  Returns -1 if
 * there is none; the payload length goes to *len.
 */
static int64_t
find_record(const char *delta, int type, int nth, uint32_t min_len, uint32_t *len)
{
	size_t		size;
	uint8_t    *d = fh_read(delta, &size);
	size_t		pos = 16;

	while (d != NULL && pos + 16 <= size)
	{
		uint32_t	n = (uint32_t) d[pos + 4] | (uint32_t) d[pos + 5] << 8 |
			(uint32_t) d[pos + 6] << 16 | (uint32_t) d[pos + 7] << 24;

		if (d[pos] == type && n >= min_len && nth-- == 0)
		{
			*len = n;
			return (int64_t) pos;
		}
		pos += 16 + (size_t) n;
	}
	return -1;
}

/* Recompute the XXH3-64 of the record at rec (after editing its payload). */
static bool
reseal_record(const char *delta, int64_t rec)
{
	size_t		size;
	uint8_t    *d = fh_read(delta, &size);
	uint32_t	n;
	uint64_t	h;

	if (d == NULL)
		return false;
	n = (uint32_t) d[rec + 4] | (uint32_t) d[rec + 5] << 8 |
		(uint32_t) d[rec + 6] << 16 | (uint32_t) d[rec + 7] << 24;
	h = XXH3_64bits(d + rec, 8 + (size_t) n);
	for (int i = 0; i < 8; i++)
		d[rec + 8 + n + i] = (uint8_t) (h >> (8 * i));
	return fh_write(delta, d, size);
}

/* Start of the record holding byte off of a delta, or -1. */
static int64_t
record_at(const char *delta, int64_t off)
{
	size_t		size;
	uint8_t    *d = fh_read(delta, &size);
	size_t		pos = 16;

	while (d != NULL && pos + 16 <= size)
	{
		size_t		n = (size_t) d[pos + 4] | (size_t) d[pos + 5] << 8 |
			(size_t) d[pos + 6] << 16 | (size_t) d[pos + 7] << 24;

		if ((size_t) off >= pos && (size_t) off < pos + 16 + n)
			return (int64_t) pos;
		pos += 16 + n;
	}
	return -1;
}

/* Replace the file name from in a delta by to (same length), resealed. */
static bool
rename_in_delta(const char *delta, const char *from, const char *to)
{
	size_t		size;
	uint8_t    *d = fh_read(delta, &size);
	uint8_t    *at = d ? memmem(d, size, from, strlen(from)) : NULL;
	int64_t		rec;

	if (at == NULL || strlen(from) != strlen(to))
		return false;
	memcpy(at, to, strlen(to));
	rec = record_at(delta, at - d);
	return rec > 0 && fh_write(delta, d, size) && reseal_record(delta, rec);
}

/* A delta naming "../x", "/x" or "a//b" must not write anything. */
static void
test_err_hostile_names(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *bdir = t_path("b"),
			   *fdir = t_path("f"),
			   *good = t_path("dir.delta");
	static const char *const bad[] = {"../evil.txt", "/tmp/ev.txt", "abc//vi.txt",
	"abc/../.txt", "./c/evi.txt"};

	T_REQUIRE(fh_mkdirs(bdir) && fh_mkdirs(t_fmt("%s/abc", fdir)), "mkdir");
	T_REQUIRE(fh_write(t_fmt("%s/x.txt", bdir), "base\n", 5) &&
			  fh_write(t_fmt("%s/abc/evi.txt", fdir), "evil\n", 5), "write");
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_compress(&ctx, bdir, fdir, good, 3, &cr));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		char	   *d = delta_copy(good);

		T_REQUIRE(d != NULL && rename_in_delta(d, "abc/evi.txt", bad[i]), "patch");
		EXPECT_DELTA_ERR(bdir, d, SP_ERR_CORRUPT,
						 t_fmt("delta \"%s\" names an unsafe file \"%s\"", d, bad[i]), true);
	}
	T_CHECK(!fh_exists(t_path("evil.txt")) && !fh_exists(t_fmt("%s/../evil.txt", t_dir())) &&
			!fh_exists("/tmp/ev.txt"), "a file was written outside the output");
}

/* A delta cut at several points is reported as truncated. */
static void
test_err_truncated_delta(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	int64_t		size;

	T_REQUIRE(good != NULL, "no delta");
	size = fh_size(good);
	const int64_t cuts[] = {size - 1, size - 8, size - 16, size / 2, size / 7, 64, 20, 16};

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
	{
		char	   *d = delta_copy(good);

		T_REQUIRE(d != NULL && fh_truncate(d, (uint64_t) cuts[i]), "cut");
		EXPECT_DELTA_ERR(base, d, SP_ERR_TRUNCATED,
						 t_fmt("delta \"%s\" is truncated at byte %lld", d, (long long) cuts[i]), true);
	}
	/* Shorter than the container header: not recognisable as a delta. */
	char	   *d = delta_copy(good);

	T_REQUIRE(d != NULL && fh_truncate(d, 15), "cut");
	EXPECT_DELTA_ERR(base, d, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is not a sparse delta: it is too short", d), true);
}

/* A file shorter than the header, an empty file, a wrong magic, a directory. */
static void
test_err_not_delta(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	char	   *empty = t_path("empty.delta"),
			   *text = t_path("text.delta"),
			   *dir = t_path("dir.delta"),
			   *magic;

	T_REQUIRE(good != NULL, "no delta");
	magic = delta_copy(good);
	T_REQUIRE(fh_flip(magic, 0, 0x20), "flip");
	T_REQUIRE(fh_write(empty, "", 0) && fh_write(text, "hello, this is not a delta file\n", 32) &&
			  fh_mkdirs(dir), "write");
	EXPECT_DELTA_ERR(base, magic, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is not a sparse delta: bad magic", magic), true);
	EXPECT_DELTA_ERR(base, text, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is not a sparse delta: bad magic", text), true);
	EXPECT_DELTA_ERR(base, empty, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is not a sparse delta: it is too short", empty), true);
	/* A safetensors file given as the delta. */
	EXPECT_DELTA_ERR(base, ft, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is not a sparse delta: bad magic", ft), true);
	EXPECT_DELTA_ERR(base, dir, SP_ERR_NOT_DELTA,
					 t_fmt("\"%s\" is a directory, not a sparse delta", dir), true);
}

/* The format version (u16 at byte 8) or the flags (u32 at 12) patched. */
static void
test_err_unsupported_version(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	char	   *d;

	T_REQUIRE(good != NULL, "no delta");
	d = delta_copy(good);
	T_REQUIRE(fh_flip(d, 8, SP_FORMAT_VERSION ^ 2), "patch");
	EXPECT_DELTA_ERR(base, d, SP_ERR_UNSUPPORTED_VERSION,
					 t_fmt("delta \"%s\" has format version 2; this build reads version 1", d), true);
	d = delta_copy(good);
	T_REQUIRE(fh_flip(d, 9, 0x80), "patch");
	EXPECT_DELTA_ERR(base, d, SP_ERR_UNSUPPORTED_VERSION,
					 t_fmt("delta \"%s\" has format version 32769; this build reads version 1", d), true);
	d = delta_copy(good);
	T_REQUIRE(fh_flip(d, 8, SP_FORMAT_VERSION), "patch");
	EXPECT_DELTA_ERR(base, d, SP_ERR_UNSUPPORTED_VERSION,
					 t_fmt("delta \"%s\" has format version 0; this build reads version 1", d), true);
	d = delta_copy(good);
	T_REQUIRE(fh_flip(d, 15, 0x80), "patch");
	EXPECT_DELTA_ERR(base, d, SP_ERR_UNSUPPORTED_VERSION,
					 t_fmt("delta \"%s\" uses flags this build does not know", d), true);
}

/* A flipped byte inside a chunk record is caught by the record checksum. */
static void
test_err_corrupt_delta(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	uint32_t	len = 0;

	T_REQUIRE(good != NULL, "no delta");
	for (int nth = 0; nth < 3; nth++)
	{
		char	   *d = delta_copy(good);
		int64_t		rec = find_record(d, 3, nth * 5, 64, &len);

		T_REQUIRE(rec > 0 && len > 40, "chunk record %d not found", nth * 5);
		/* A byte of the coded payload, after the 40-byte chunk header. */
		T_REQUIRE(fh_flip(d, (uint64_t) rec + 8 + 40 + (len - 40) / 2, 0x10), "flip");
		EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
						 t_fmt("delta \"%s\" is corrupted: checksum mismatch in record at byte %lld",
							   d, (long long) rec), true);
	}
	/* The checksum itself, and the record type byte. */
	char	   *d = delta_copy(good);
	int64_t		rec = find_record(d, 3, 1, 64, &len);

	T_REQUIRE(rec > 0 && fh_flip(d, (uint64_t) rec + 8 + len + 3, 0x01), "flip");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: checksum mismatch in record at byte %lld",
						   d, (long long) rec), true);
	d = delta_copy(good);
	T_REQUIRE(fh_flip(d, (uint64_t) rec, 0x40), "flip");
	EXPECT_DELTA_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: bad record at byte %lld", d, (long long) rec), true);
}

/*
 * A large output is decoded into the hash writer's ring and each chunk's
 * checksum is checked on that writer's thread (hashwriter.c): a chunk
 * whose header checksum is wrong must still fail with the exact message
 * naming it, and with two such chunks in a row, the first (the worker
 * keeps the first it finds; whether it found both before the caller looked
 * depends on timing), also when the second fails to decode (the caller
 * then waits for the checks).  Verify, which has no output, checks on the
 * caller's thread and must say the same.
 */
static void
test_err_ring_checksum(void)
{
	const size_t nel = (SP_DIRECT_MIN + (8u << 20)) / 2;
	char	   *base = t_path("rbase.safetensors"),
			   *ftp = t_path("rft.safetensors"),
			   *good = t_path("r.sdelta");
	sp_ctx		ctx;
	sp_compress_result cr;
	uint32_t	len;
	int64_t		rec20,
				rec21;
	char	   *d,
				want[65],
				got[65];

	T_REQUIRE(rt_write_bf16_pair(base, ftp, nel, 5, 0x0f), "write the pair");
	rt_ctx(&ctx);
	T_REQUIRE(sp_delta_compress(&ctx, base, ftp, good, 3, &cr) == SP_OK, "compress: %s",
			  ctx.err.msg);
	/* CHUNK records 20 and 21 (0-based) are chunks 21 and 22 of the file */
	rec20 = find_record(good, 3, 20, 0, &len);
	rec21 = find_record(good, 3, 21, 0, &len);
	T_REQUIRE(rec20 > 0 && rec21 > 0, "chunk records not found");
	d = delta_copy(good);
	T_REQUIRE(d && fh_flip(d, (uint64_t) rec21 + 8 + 32, 0x01) && reseal_record(d, rec21), "flip");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: chunk 22 of \"rft.safetensors\" does not match"
						   " its checksum", d), true);
	T_REQUIRE(fh_flip(d, (uint64_t) rec20 + 8 + 32, 0x80) && reseal_record(d, rec20), "flip");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: chunk 21 of \"rft.safetensors\" does not match"
						   " its checksum", d), true);
	/* chunk 21 checked on the writer's thread, chunk 22 failing to decode: 21 is reported */
	d = delta_copy(good);
	T_REQUIRE(d && fh_flip(d, (uint64_t) rec20 + 8 + 32, 0x01) && reseal_record(d, rec20) &&
			  fh_flip(d, (uint64_t) rec21 + 8 + 40, 0x7f) && reseal_record(d, rec21), "flip");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: chunk 21 of \"rft.safetensors\" does not match"
						   " its checksum", d), true);
	/* a base with one element changed: that chunk comes out wrong, the base is to blame */
	T_REQUIRE(fh_sha256(base, want) && fh_flip(base, 4096 + 2 * (uint64_t) (nel / 2), 0x01) &&
			  fh_sha256(base, got), "flip the base");
	EXPECT_APPLY_ERR(base, good, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   base, got, want), true);
}

/* Corruption the record checksum cannot see: the chunk's own checks must. */
static void
test_err_corrupt_resealed(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	uint32_t	len = 0;

	T_REQUIRE(good != NULL, "no delta");
	for (int nth = 0; nth < 4; nth++)
	{
		char	   *d = delta_copy(good);
		int64_t		rec = find_record(d, 3, nth * 3, 64, &len);

		T_REQUIRE(rec > 0 && len > 48, "chunk record %d not found", nth * 3);
		T_REQUIRE(fh_flip(d, (uint64_t) rec + 8 + 40 + (len - 40) / 3, 0x04) &&
				  reseal_record(d, rec), "flip");
		EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT, t_fmt("delta \"%s\" is corrupted: ", d), false);
	}
	/* The decoded-data checksum in the chunk header (bytes 32..39). */
	char	   *d = delta_copy(good);
	int64_t		rec = find_record(d, 3, 2, 0, &len);

	T_REQUIRE(rec > 0 && fh_flip(d, (uint64_t) rec + 8 + 32, 0x01) && reseal_record(d, rec), "flip");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: chunk 3 of \"%s\" does not match its checksum",
						   d, "ft.safetensors"), true);
	/* Bytes appended after the END record. */
	d = delta_copy(good);
	{
		size_t		n;
		uint8_t    *b = fh_read(d, &n);
		uint8_t    *b2 = t_track(malloc(n + 100));

		T_REQUIRE(b != NULL && b2 != NULL, "read");
		memcpy(b2, b, n);
		memset(b2 + n, 0, 100);
		T_REQUIRE(fh_write(d, b2, n + 100), "write");
	}
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: bytes after the END record", d), true);
}

/* Applying with another base fails before writing anything. */
static void
test_err_wrong_base(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	const char *other = t_model("gpt2-lora-r8/chain/ckpt-2000.safetensors");
	const char *bigger = t_model("roberta-lora-r4-biasall/base.safetensors");
	char		hb[65],
				ho[65],
				hf[65];

	T_REQUIRE(good != NULL && fh_sha256(base, hb) && fh_sha256(other, ho) &&
			  fh_sha256(ft, hf), "no delta");
	EXPECT_APPLY_ERR(other, good, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   other, ho, hb), true);
	/* The fine-tune itself is not the base either. */
	EXPECT_APPLY_ERR(ft, good, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   ft, hf, hb), true);
	EXPECT_APPLY_ERR(bigger, good, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has %lld bytes, the delta was made against %lld bytes (sha256 %s)",
						   bigger, (long long) fh_size(bigger), (long long) fh_size(base), hb), true);
}

/*
 * A base that differs only in bytes the delta never reads (a tensor the
 * fine-tune does not have): every chunk decodes and the rebuilt file
 * matches its digest, so only the base digest, hashed beside the decoding,
 * can refuse it, and it must do so before the output is renamed into place.
 */
static void
test_err_wrong_base_unread(void)
{
	float		a[256],
				z[64];
	stw_tensor	bt[2] = {{"a", "F32", 1, {256}, a, sizeof(a)}, {"z", "F32", 1, {64}, z, sizeof(z)}};
	stw_tensor	ft = {"a", "F32", 1, {256}, NULL, sizeof(a)};
	float		fa[256];
	char	   *base = t_path("unread_base.safetensors"),
			   *other = t_path("unread_other.safetensors"),
			   *ftp = t_path("unread_ft.safetensors"),
			   *delta = t_path("unread.delta");
	char		hb[65],
				ho[65];
	sp_ctx		ctx;
	sp_compress_result cr;

	for (int i = 0; i < 256; i++)
		a[i] = fa[i] = (float) i * 0.25f;
	for (int i = 0; i < 64; i++)
		z[i] = (float) i;
	fa[7] += 1.0f;
	ft.data = fa;
	T_REQUIRE(stw_write(base, bt, 2, NULL) && stw_write(ftp, &ft, 1, NULL), "write");
	rt_ctx(&ctx);
	T_REQUIRE(sp_delta_compress(&ctx, base, ftp, delta, SP_LEVEL_DEFAULT, &cr) == SP_OK,
			  "compress: %s", ctx.err.msg);
	/* the last byte of the file is the last byte of z, which the delta never reads */
	T_REQUIRE(fh_copy(base, other) && fh_flip(other, (uint64_t) fh_size(other) - 1, 0x01) &&
			  fh_sha256(base, hb) && fh_sha256(other, ho), "copy");
	EXPECT_APPLY_ERR(other, delta, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   other, ho, hb), true);
	no_temp_files(__FILE__, __LINE__);
}

/*
 * The same with the unread tensor between two read ones, in a base larger
 * than a chunk's reference window: the decoder fingerprints the base bytes
 * it reads up to the gap, and the helper goes on from there (apply.c:
 * feed_base).  The right base must rebuild the file (the fingerprint goes
 * on correctly from the decoder's state) and the base with a byte of the
 * gap changed must be refused.
 */
static void
test_err_wrong_base_gap(void)
{
	const size_t nel = (size_t) 2 << 20;	/* 8 MiB per tensor */
	float	   *a = t_track(malloc(nel * 4)),
			   *z = t_track(malloc(nel * 4)),
			   *b = t_track(malloc(nel * 4)),
			   *fb = t_track(malloc(nel * 4));
	stw_tensor	bt[3] = {{"a", "F32", 1, {nel}, a, nel * 4}, {"z", "F32", 1, {nel}, z, nel * 4},
	{"b", "F32", 1, {nel}, b, nel * 4}};
	stw_tensor	ft[2] = {{"a", "F32", 1, {nel}, a, nel * 4}, {"b", "F32", 1, {nel}, fb, nel * 4}};
	char	   *base = t_path("gap_base.safetensors"),
			   *other = t_path("gap_other.safetensors"),
			   *ftp = t_path("gap_ft.safetensors"),
			   *delta = t_path("gap.delta"),
			   *out = t_path("gap_out.safetensors");
	char		hb[65],
				ho[65],
				hf[65],
				hout[65];
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;

	T_REQUIRE(a && z && b && fb, "malloc");
	for (size_t i = 0; i < nel; i++)
	{
		a[i] = (float) i * 0.25f;
		z[i] = (float) (i % 1000);
		b[i] = fb[i] = (float) i * -0.5f;
		if (i % 97 == 0)
			fb[i] += 1.0f;
	}
	T_REQUIRE(stw_write(base, bt, 3, NULL) && stw_write(ftp, ft, 2, NULL), "write");
	rt_ctx(&ctx);
	T_REQUIRE(sp_delta_compress(&ctx, base, ftp, delta, SP_LEVEL_DEFAULT, &cr) == SP_OK,
			  "compress: %s", ctx.err.msg);
	T_CHECK(sp_delta_apply(&ctx, base, delta, out, &ar) == SP_OK, "apply: %s", ctx.err.msg);
	T_CHECK(fh_sha256(out, hout) && fh_sha256(ftp, hf) && strcmp(hout, hf) == 0,
			"rebuilt %s, expected %s", hout, hf);
	/* a byte in the middle of z, 12 MiB in: past the first chunk's window */
	T_REQUIRE(fh_copy(base, other) && fh_flip(other, (uint64_t) fh_size(other) / 2, 0x01) &&
			  fh_sha256(base, hb) && fh_sha256(other, ho), "copy");
	EXPECT_APPLY_ERR(other, delta, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   other, ho, hb), true);
	no_temp_files(__FILE__, __LINE__);
}

/* Little-endian u32 / u16 at p. */
static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/*
 * Rewrite delta good as a delta of the format before base fingerprints
 * (docs/FORMAT.md: header flag 2 clear, 42-byte BASES entries) under a new
 * name, the way deltas written by earlier builds look.
 */
static char *
delta_without_fps(const char *good)
{
	size_t		size,
				w = 28,
				q = 28,
				rest;
	uint8_t    *d = fh_read(good, &size);
	uint8_t    *out = d ? t_track(malloc(size)) : NULL;
	char	   *p = rt_unique("nofp", ".delta");
	uint64_t	h;

	if (out == NULL || size < 28 || d[16] != 1 || !(d[12] & 2))
		return NULL;
	rest = 16 + 16 + (size_t) le32(d + 20);
	memcpy(out, d, 28);
	out[12] &= (uint8_t) ~2u;
	for (uint32_t i = 0, n = le32(d + 24); i < n; i++)
	{
		size_t		nl = (size_t) d[q + 56] | (size_t) d[q + 57] << 8;

		memcpy(out + w, d + q, 40);			/* size, sha256 */
		memcpy(out + w + 40, d + q + 56, 2 + nl);	/* name length, name */
		w += 42 + nl;
		q += 58 + nl;
	}
	for (int i = 0; i < 4; i++)
		out[20 + i] = (uint8_t) ((w - 24) >> (8 * i));
	h = XXH3_64bits(out + 16, w - 16);
	for (int i = 0; i < 8; i++)
		out[w + i] = (uint8_t) (h >> (8 * i));
	w += 8;
	memcpy(out + w, d + rest, size - rest);
	return fh_write(p, out, w + size - rest) ? p : NULL;
}

/*
 * New deltas carry a fingerprint per base file (header flag 2), and apply
 * checks the base by it: a fingerprint edited in the delta (the record
 * resealed) refuses the right base as a corrupted delta, explained after
 * hashing the base with SHA-256, and nothing is written.
 */
static void
test_err_base_fingerprint(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	char	   *d = good ? delta_copy(good) : NULL;
	size_t		size;
	uint8_t    *b = d ? fh_read(d, &size) : NULL;

	T_REQUIRE(b != NULL && size > 100 && b[16] == 1, "no delta");
	T_CHECK(b[12] == 2, "header flags are %d, not 2 (fingerprints, one file)", b[12]);
	/* header 16, record header 8, count 4, size 8, sha256 32: the fingerprint */
	b[16 + 8 + 4 + 8 + 32] ^= 0x01;
	T_REQUIRE(fh_write(d, b, size) && reseal_record(d, 16), "edit");
	EXPECT_APPLY_ERR(base, d, SP_ERR_CORRUPT,
					 t_fmt("delta \"%s\" is corrupted: a BASES fingerprint does not match its base file",
						   d), true);
	no_temp_files(__FILE__, __LINE__);
}

/*
 * Deltas written before fingerprints still apply, with the base checked by
 * its SHA-256 as before: the right base rebuilds the fine-tune, another is
 * refused with the same message.
 */
static void
test_err_wrong_base_old_format(void)
{
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	char	   *old = good ? delta_without_fps(good) : NULL;
	const char *other = t_model("gpt2-lora-r8/chain/ckpt-2000.safetensors");
	char	   *out = rt_unique("oldfmt", ".safetensors");
	char		hb[65],
				ho[65],
				hf[65],
				hout[65];
	sp_ctx		ctx;
	sp_apply_result ar;

	T_REQUIRE(old != NULL && fh_sha256(base, hb) && fh_sha256(other, ho) && fh_sha256(ft, hf),
			  "no delta");
	rt_ctx(&ctx);
	T_CHECK(sp_delta_apply(&ctx, base, old, out, &ar) == SP_OK, "apply: %s", ctx.err.msg);
	T_CHECK(fh_sha256(out, hout) && strcmp(hout, hf) == 0, "the old-format delta rebuilt %s", hout);
	EXPECT_APPLY_ERR(other, old, SP_ERR_WRONG_BASE,
					 t_fmt("wrong base: \"%s\" has sha256 %s, the delta was made against %s",
						   other, ho, hb), true);
	no_temp_files(__FILE__, __LINE__);
}

/* Missing inputs, a path through a file, an output in a missing directory. */
static void
test_err_io(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;
	sp_estimate est;
	char	   *missing = t_path("missing.safetensors");
	char	   *through = t_fmt("%s/x.safetensors", good_file());
	char	   *nodir = t_path("nodir/out.delta");
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);

	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, missing, good_file(), t_path("o1"), 3, &cr),
		  SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", missing));
	T_CHECK(ctx.err.sys_errno == ENOENT, "sys_errno %d", ctx.err.sys_errno);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_estimate(&ctx, good_file(), missing, 0.1, &est),
		  SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", missing));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, good_file(), through, t_path("o2"), 3, &cr),
		  SP_ERR_IO, t_fmt("could not open \"%s\": Not a directory", through));
	T_CHECK(ctx.err.sys_errno == ENOTDIR, "sys_errno %d", ctx.err.sys_errno);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, good_file(), good_file(), nodir, 3, &cr),
		  SP_ERR_IO, t_fmt("could not open directory of output \"%s\": No such file or directory", nodir));
	T_REQUIRE(good != NULL, "no delta");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, missing, t_path("o3"), &ar),
		  SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", missing));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, missing, good, t_path("o4"), &ar),
		  SP_ERR_IO, t_fmt("could not open \"%s\": No such file or directory", missing));
	T_CHECK(!fh_exists(t_path("o1")) && !fh_exists(t_path("o2")) &&
			!fh_exists(t_path("o3")) && !fh_exists(t_path("o4")), "an output exists");
}

/* What the unprivileged child of test_err_io_unreadable_dir reports. */
typedef struct io_report
{
	sp_status	st;
	int			sys_errno;
	char		msg[512];
} io_report;

/* Compress base against the locked dir, as "nobody" when we are root. */
static bool
compress_unprivileged(const char *base, const char *dir, const char *out,
					  io_report *r)
{
	int			p[2];
	pid_t		pid;
	int			status = 0;
	bool		got;

	if (pipe(p) != 0 || (pid = fork()) < 0)
		return false;
	if (pid == 0)
	{
		sp_ctx		ctx;
		sp_compress_result cr;

		close(p[0]);
		memset(r, 0, sizeof(*r));
		/* Root ignores permissions: drop to nobody so EACCES can happen. */
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(2);
		rt_ctx(&ctx);
		r->st = sp_delta_compress(&ctx, base, dir, out, 3, &cr);
		r->sys_errno = ctx.err.sys_errno;
		snprintf(r->msg, sizeof(r->msg), "%s", ctx.err.msg);
		_exit(write(p[1], r, sizeof(*r)) == (ssize_t) sizeof(*r) ? 0 : 3);
	}
	close(p[1]);
	got = read(p[0], r, sizeof(*r)) == (ssize_t) sizeof(*r);
	close(p[0]);
	waitpid(pid, &status, 0);
	return got && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A model directory that cannot be read is an I/O error naming it. */
static void
test_err_io_unreadable_dir(void)
{
	char	   *dir = t_path("locked");
	char	   *f = t_path("locked/model.safetensors");
	char	   *outdir = t_path("outdir");
	io_report	r;
	sp_ctx		ctx;

	T_REQUIRE(fh_mkdirs(dir) && fh_copy(good_file(), f) && fh_mkdirs(outdir), "setup");
	/* Others may enter the test directory and read the good file. */
	T_REQUIRE(chmod(t_dir(), 0755) == 0 && chmod(good_file(), 0644) == 0 &&
			  chmod(outdir, 0777) == 0 && chmod(dir, 0) == 0, "chmod");
	T_REQUIRE(compress_unprivileged(good_file(), dir, t_fmt("%s/o", outdir), &r),
			  "child failed");
	ctx.err.code = r.st;
	snprintf(ctx.err.msg, sizeof(ctx.err.msg), "%s", r.msg);
	T_ERR(&ctx, r.st, SP_ERR_IO,
		  t_fmt("could not open directory \"%s\": Permission denied", dir));
	T_CHECK(r.sys_errno == EACCES, "sys_errno %d", r.sys_errno);
	T_CHECK(!fh_exists(t_fmt("%s/o", outdir)), "output written");
	chmod(dir, 0700);
	/* A model file that cannot be read. */
	T_REQUIRE(chmod(f, 0) == 0 && chmod(dir, 0755) == 0, "chmod");
	T_REQUIRE(compress_unprivileged(good_file(), f, t_fmt("%s/o", outdir), &r),
			  "child failed");
	ctx.err.code = r.st;
	snprintf(ctx.err.msg, sizeof(ctx.err.msg), "%s", r.msg);
	T_ERR(&ctx, r.st, SP_ERR_IO, t_fmt("could not open \"%s\": Permission denied", f));
	T_CHECK(r.sys_errno == EACCES, "sys_errno %d", r.sys_errno);
	T_CHECK(!fh_exists(t_fmt("%s/o", outdir)), "output written");
}

/* An existing output is refused and left untouched. */
static void
test_err_output_exists(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_apply_result ar;
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	char	   *out = t_path("taken");
	char	   *outdir = t_path("takendir");
	char		before[65],
				after[65];

	T_REQUIRE(good != NULL, "no delta");
	T_REQUIRE(fh_write(out, "precious\n", 9) && fh_mkdirs(outdir), "setup");
	/* A dangling symlink is an existing output too (it is not followed). */
	T_REQUIRE(symlink(t_path("nowhere"), t_path("dangling")) == 0, "symlink");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, base, ft, t_path("dangling"), 3, &cr),
		  SP_ERR_EXISTS, t_fmt("output \"%s\" already exists", t_path("dangling")));
	T_CHECK(!fh_exists(t_path("nowhere")), "symlink target was created");
	fh_sha256(out, before);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, base, ft, out, 3, &cr),
		  SP_ERR_EXISTS, t_fmt("output \"%s\" already exists", out));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, good, out, &ar),
		  SP_ERR_EXISTS, t_fmt("output \"%s\" already exists", out));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, base, good, outdir, &ar),
		  SP_ERR_EXISTS, t_fmt("output \"%s\" already exists", outdir));
	/* The delta itself as the output of a compress. */
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, base, ft, good, 3, &cr),
		  SP_ERR_EXISTS, t_fmt("output \"%s\" already exists", good));
	fh_sha256(out, after);
	T_CHECK(strcmp(before, after) == 0, "existing output was modified");
	T_CHECK(fh_size(out) == 9, "existing output size changed");
}

/* Levels outside 1..19, fractions outside (0, 1], empty paths. */
static void
test_err_invalid_args(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	sp_estimate est;
	sp_apply_result ar;
	const int	levels[] = {0, -1, 20, 1000};
	const double fr[] = {0.0, -0.5, 1.5, NAN, INFINITY};
	char	   *g = good_file();

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
	{
		rt_ctx(&ctx);
		T_ERR(&ctx, sp_delta_compress(&ctx, g, g, t_path("o"), levels[i], &cr),
			  SP_ERR_INVALID_ARG,
			  t_fmt("compression level %d is out of range (1 to 19)", levels[i]));
	}
	for (size_t i = 0; i < sizeof(fr) / sizeof(fr[0]); i++)
	{
		rt_ctx(&ctx);
		T_ERR(&ctx, sp_delta_estimate(&ctx, g, g, fr[i], &est), SP_ERR_INVALID_ARG,
			  t_fmt("sample fraction %g is out of range (greater than 0, at most 1)", fr[i]));
	}
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_estimate(&ctx, g, g, 1.5, &est), SP_ERR_INVALID_ARG,
		  "sample fraction 1.5 is out of range (greater than 0, at most 1)");
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_estimate(&ctx, g, g, 1.0, &est));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, "", g, t_path("o"), 3, &cr),
		  SP_ERR_INVALID_ARG, "path must not be empty");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, g, g, "", 3, &cr),
		  SP_ERR_INVALID_ARG, "output path must not be empty");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply(&ctx, g, "", t_path("o"), &ar),
		  SP_ERR_INVALID_ARG, "path must not be empty");
	T_CHECK(!fh_exists(t_path("o")), "output exists");
}

/* A context reused after a failure reports the new error, or success. */
static void
test_err_ctx_reuse(void)
{
	sp_ctx		ctx;
	sp_compress_result cr;
	char	   *missing = t_path("missing.safetensors");
	char	   *g = good_file();

	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress(&ctx, g, g, t_path("o"), 0, &cr), SP_ERR_INVALID_ARG,
		  "compression level 0 is out of range (1 to 19)");
	T_ERR(&ctx, sp_delta_compress(&ctx, missing, g, t_path("o"), 3, &cr), SP_ERR_IO,
		  t_fmt("could not open \"%s\": No such file or directory", missing));
	T_OK(&ctx, sp_delta_compress(&ctx, g, g, t_path("o"), 3, &cr));
	T_CHECK(ctx.err.code == SP_OK, "err.code %s after success", sp_status_name(ctx.err.code));
}

/* The in-memory functions report bad buffers with the same codes. */
static void
test_err_mem(void)
{
	sp_ctx		ctx;
	const char *base,
			   *ft;
	char	   *good = make_delta(&base, &ft);
	size_t		blen,
				flen,
				dlen;
	uint8_t    *b,
			   *f,
			   *d;
	void	   *out = NULL;
	size_t		olen = 0;
	sp_info		info = {0};
	static const char text[] = "just some text, not a model at all";
	char		hb[65],
				hf[65];

	T_REQUIRE(good != NULL, "no delta");
	b = fh_read(base, &blen);
	f = fh_read(ft, &flen);
	d = fh_read(good, &dlen);
	T_REQUIRE(b && f && d, "read");
	fh_sha256_mem(b, blen, hb);
	fh_sha256_mem(f, flen, hf);
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress_mem(&ctx, b, blen, text, sizeof(text), 3, flen, &out, &olen),
		  SP_ERR_HEADER_TOO_LARGE,
		  "safetensors header length 7885648055778899306 in \"model.safetensors\" is larger than the file (35 bytes)");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress_mem(&ctx, text, 5, f, flen, 3, flen, &out, &olen),
		  SP_ERR_NOT_SAFETENSORS, "\"base.safetensors\" is not a safetensors file: it is too short");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply_mem(&ctx, b, blen, d, dlen / 2, flen, &out, &olen),
		  SP_ERR_TRUNCATED, t_fmt("delta \"delta\" is truncated at byte %zu", dlen / 2));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply_mem(&ctx, b, blen, f, flen, flen, &out, &olen),
		  SP_ERR_NOT_DELTA, "\"delta\" is not a sparse delta: bad magic");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_apply_mem(&ctx, f, flen, d, dlen, flen, &out, &olen),
		  SP_ERR_WRONG_BASE,
		  t_fmt("wrong base: \"base.safetensors\" has sha256 %s, the delta was made against %s", hf, hb));
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_info_mem(&ctx, d, 10, &info), SP_ERR_NOT_DELTA,
		  "\"delta\" is not a sparse delta: it is too short");
	rt_ctx(&ctx);
	T_ERR(&ctx, sp_delta_compress_mem(&ctx, b, blen, f, flen, 0, flen, &out, &olen),
		  SP_ERR_INVALID_ARG, "compression level 0 is out of range (1 to 19)");
	T_CHECK(out == NULL, "out set after failures");
}

/* Every status has a distinct stable name; the version is the build's. */
static void
test_api_names(void)
{
	static const char *const names[] = {"SP_OK", "SP_ERR_NOMEM", "SP_ERR_CANCELLED",
		"SP_ERR_INVALID_ARG", "SP_ERR_IO", "SP_ERR_EXISTS", "SP_ERR_OUTSIDE_ROOT",
		"SP_ERR_NOT_SAFETENSORS", "SP_ERR_HEADER_TOO_LARGE", "SP_ERR_BAD_JSON",
		"SP_ERR_BAD_OFFSETS", "SP_ERR_UNKNOWN_DTYPE", "SP_ERR_SHAPE_MISMATCH",
		"SP_ERR_NOT_DELTA", "SP_ERR_UNSUPPORTED_VERSION", "SP_ERR_TRUNCATED",
		"SP_ERR_CORRUPT", "SP_ERR_WRONG_BASE", "SP_ERR_VERIFY_FAILED",
	"SP_ERR_TOO_LARGE", "SP_ERR_INTERNAL"};

	T_REQUIRE(sizeof(names) / sizeof(names[0]) == SP_ERR_INTERNAL + 1, "table size");
	for (int i = 0; i <= SP_ERR_INTERNAL; i++)
		T_CHECK(sp_status_name((sp_status) i) != NULL &&
				strcmp(sp_status_name((sp_status) i), names[i]) == 0,
				"sp_status_name(%d) = %s, expected %s", i,
				sp_status_name((sp_status) i) ? sp_status_name((sp_status) i) : "NULL", names[i]);
	T_CHECK(sp_status_name((sp_status) 999) != NULL, "unknown code has no name");
#ifdef SPARSE_VERSION
	T_CHECK(strcmp(sp_version(), SPARSE_VERSION) == 0, "sp_version %s, built as %s",
			sp_version(), SPARSE_VERSION);
#endif
}

const t_case t_tests_errors[] = {
	{"api_names", test_api_names},
	{"err_not_safetensors", test_err_not_safetensors},
	{"err_header_too_large", test_err_header_too_large},
	{"err_bad_json", test_err_bad_json},
	{"err_bad_offsets", test_err_bad_offsets},
	{"err_unknown_dtype", test_err_unknown_dtype},
	{"err_shape_mismatch", test_err_shape_mismatch},
	{"err_truncated_delta", test_err_truncated_delta},
	{"err_not_delta", test_err_not_delta},
	{"err_unsupported_version", test_err_unsupported_version},
	{"err_corrupt_delta", test_err_corrupt_delta},
	{"err_corrupt_resealed", test_err_corrupt_resealed},
	{"err_ring_checksum", test_err_ring_checksum},
	{"err_wrong_base", test_err_wrong_base},
	{"err_wrong_base_unread", test_err_wrong_base_unread},
	{"err_wrong_base_gap", test_err_wrong_base_gap},
	{"err_base_fingerprint", test_err_base_fingerprint},
	{"err_wrong_base_old_format", test_err_wrong_base_old_format},
	{"err_hostile_names", test_err_hostile_names},
	{"err_io", test_err_io},
	{"err_io_unreadable_dir", test_err_io_unreadable_dir},
	{"err_output_exists", test_err_output_exists},
	{"err_invalid_args", test_err_invalid_args},
	{"err_ctx_reuse", test_err_ctx_reuse},
	{"err_mem", test_err_mem},
	{NULL, NULL}
};
