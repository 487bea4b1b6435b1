/*
 * test_tensorcm.c -- the CM transform (tensorcm.c): context-modelled coding
 * of float tensor chunks against their base.
 *
 * Synthetic chunks (F32, BF16 and F16; scaled per row and column like a
 * LoRA update, plus identical elements, sign changes, NaN and infinity, the
 * largest possible differences and plain random words) round trip at every
 * geometry the encoder can pass: one row, one column, a chunk starting mid-
 * row, rows longer than the chunk.  Damaged payloads fail with their exact
 * messages; chunks of two segments (and a hand-built one of three) decode
 * the same on one or two threads, and a cancel stops both; a real delta's
 * CM chunk damaged under a fixed record checksum is
 * caught by the chunk checksum; the level policy decides where it is used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rt_util.h"
#include "st_writer.h"
#include "codec.h"
#include "container.h"
#include "tensorcm.h"

#define CM_ROWS 48
#define CM_COLS 96
#define CM_N (CM_ROWS * CM_COLS)

/* Uniform in [-1, 1). */
static float
unit(uint64_t *s)
{
	return (float) ((double) (fh_rand(s) >> 11) / (double) (1ull << 52) - 1.0);
}

/*
 * A base and fine-tune of CM_N F32 elements: weights near 0.02 whose change
 * scales with the row and the column; every 97th element unchanged; a tail
 * of special values; with random, the first quarter random words.
 */
static void
make_f32(uint32_t *b, uint32_t *f, bool random, uint64_t seed)
{
	static const uint32_t special[][2] = {
		{0x00000000u, 0xFFFFFFFFu}, {0xFFFFFFFFu, 0x7FFFFFFFu}, {0x80000000u, 0x7F800000u},
		{0x7FC00000u, 0x3F800000u}, {0x3F800000u, 0xBF800000u}, {0x00000000u, 0x80000000u},
		{0x7F800000u, 0xFF800000u}, {0x12345678u, 0x12345678u},
	};
	uint64_t	s = seed;

	for (size_t i = 0; i < CM_N; i++)
	{
		float		x = 0.02f * unit(&s),
					y = x + 1e-5f * (float) (1 + i / CM_COLS % 5) * (float) (1 + i % CM_COLS % 3) * unit(&s);

		memcpy(&b[i], &x, 4);
		memcpy(&f[i], i % 97 ? &y : &x, 4);
	}
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
		b[CM_N - 1 - i] = special[i][0], f[CM_N - 1 - i] = special[i][1];
	for (size_t i = 0; random && i < CM_N / 4; i++)
		b[i] = (uint32_t) fh_rand(&s), f[i] = (uint32_t) fh_rand(&s);
}

/* The pair as dtype dt (F32 as is; BF16 and F16 converted), in buffers of 4 * CM_N bytes. */
static size_t
make_pair(sp_dtype dt, bool random, uint64_t seed, uint8_t *base, uint8_t *ft)
{
	uint32_t   *b = t_track(malloc(4 * CM_N)),
			   *f = t_track(malloc(4 * CM_N));

	make_f32(b, f, random, seed);
	if (dt == SP_DT_F32)
	{
		memcpy(base, b, 4 * CM_N);
		memcpy(ft, f, 4 * CM_N);
		return 4 * CM_N;
	}
	sp_convert(SP_DT_F32, dt, (const uint8_t *) b, base, CM_N);
	sp_convert(SP_DT_F32, dt, (const uint8_t *) f, ft, CM_N);
	return 2 * CM_N;
}

/* Encode and decode one chunk with sp_cm_*; returns the payload size (0 on failure). */
static size_t
cm_roundtrip(sp_ctx *ctx, sp_dtype dt, uint32_t cols, uint32_t col0, const uint8_t *base,
			 const uint8_t *ft, size_t n)
{
	size_t		cap = sp_codec_bound(n),
				len = 0;
	uint8_t    *pay = t_track(malloc(cap)),
			   *back = t_track(malloc(n));
	sp_cm	   *cm = NULL;
	sp_status	st = sp_cm_encode(ctx, &cm, dt, cols, col0, ft, base, n, pay, cap, &len);

	T_REQUIRE_V(st == SP_OK && len > 0, 0, "%s %u/%u: encode %s, %zu bytes: %s",
				sp_dtype_name(dt), cols, col0, sp_status_name(st), len, ctx->err.msg);
	st = sp_cm_decode(ctx, &cm, dt, base, pay, len, back, n);
	sp_cm_free(ctx, cm);
	T_REQUIRE_V(st == SP_OK, 0, "%s %u/%u: decode: %s", sp_dtype_name(dt), cols, col0,
				ctx->err.msg);
	T_REQUIRE_V(memcmp(back, ft, n) == 0, 0, "%s %u/%u: decoded bytes differ",
				sp_dtype_name(dt), cols, col0);
	return len;
}

/* Every dtype and geometry round trips, structured or random. */
static void
test_cm_roundtrip_geometries(void)
{
	static const sp_dtype dts[] = {SP_DT_F32, SP_DT_BF16, SP_DT_F16};
	static const uint32_t geo[][2] = {
		{CM_N, 0}, {1, 0}, {7, 3}, {2 * CM_N, 5}, {CM_COLS, 0}, {CM_COLS, 40}, {UINT32_MAX, 12345},
	};
	uint8_t    *b = t_track(malloc(4 * CM_N)),
			   *f = t_track(malloc(4 * CM_N));
	sp_ctx		ctx;

	rt_ctx(&ctx);
	T_CHECK(!sp_cm_supports(SP_DT_F64) && !sp_cm_supports(SP_DT_I32) &&
			!sp_cm_supports(SP_DT_F8_E4M3), "only F32, BF16 and F16 are supported");
	for (size_t k = 0; k < 3; k++)
		for (int random = 0; random < 2; random++)
		{
			size_t		n = make_pair(dts[k], random, 7 + k, b, f);

			for (size_t g = 0; g < sizeof(geo) / sizeof(geo[0]); g++)
				cm_roundtrip(&ctx, dts[k], geo[g][0], geo[g][1], b, f, n);
			/* a chunk ending mid-row, and one element */
			cm_roundtrip(&ctx, dts[k], CM_COLS, 10, b, f, n - 37 * (n / CM_N));
			cm_roundtrip(&ctx, dts[k], CM_COLS, 95, b, f, n / CM_N);
		}
}

/* On LoRA-like data the codec picks CM over byte planes, only when allowed. */
static void
test_cm_chosen_when_smaller(void)
{
	uint8_t    *b = t_track(malloc(4 * CM_N)),
			   *f = t_track(malloc(4 * CM_N)),
			   *out = t_track(malloc(sp_codec_bound(4 * CM_N))),
			   *back = t_track(malloc(4 * CM_N));
	size_t		n = make_pair(SP_DT_F32, false, 3, b, f),
				planes,
				cm;
	uint8_t		tr;
	sp_tgeom	g = {true, CM_COLS, 0};
	sp_codec	c;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_codec_init(&ctx, &c));
	T_OK(&ctx, sp_codec_encode_tensor(&ctx, &c, 3, SP_DT_F32, f, b, n, NULL, out,
									  sp_codec_bound(n), &planes, &tr));
	T_CHECK(tr == SP_TR_SUB, "without a geometry: transform %d, expected SUB", tr);
	g.cm = false;
	T_OK(&ctx, sp_codec_encode_tensor(&ctx, &c, 3, SP_DT_F32, f, b, n, &g, out,
									  sp_codec_bound(n), &planes, &tr));
	T_CHECK(tr == SP_TR_SUB, "CM not allowed: transform %d, expected SUB", tr);
	g.cm = true;
	T_OK(&ctx, sp_codec_encode_tensor(&ctx, &c, 3, SP_DT_F32, f, b, n, &g, out,
									  sp_codec_bound(n), &cm, &tr));
	printf("# %zu bytes of F32: planes %zu, CM %zu\n", n, planes, cm);
	T_CHECK(tr == SP_TR_CM && cm < planes * 95 / 100, "CM: transform %d, %zu bytes against %zu",
			tr, cm, planes);
	T_OK(&ctx, sp_codec_decode_tensor(&ctx, &c, SP_DT_F32, tr, b, out, cm, back, n));
	T_CHECK(memcmp(back, f, n) == 0, "decoded bytes differ");
	/* the estimator's fixed choice: CM again, or SUB where CM is not allowed */
	T_OK(&ctx, sp_codec_encode_tensor_as(&ctx, &c, 3, SP_DT_F32, SP_TR_CM, f, b, n, &g, out,
										 sp_codec_bound(n), &cm, &tr));
	T_CHECK(tr == SP_TR_CM, "encode_as CM gave transform %d", tr);
	g.cm = false;
	T_OK(&ctx, sp_codec_encode_tensor_as(&ctx, &c, 3, SP_DT_F32, SP_TR_CM, f, b, n, &g, out,
										 sp_codec_bound(n), &cm, &tr));
	T_CHECK(tr == SP_TR_SUB && cm == planes, "encode_as CM, not allowed: transform %d, %zu bytes",
			tr, cm);
	sp_codec_free(&ctx, &c);
}

/* A payload too large for the caller's room is no error: *len stays 0, out untouched. */
static void
test_cm_no_room(void)
{
	uint8_t    *b = t_track(malloc(4 * CM_N)),
			   *f = t_track(malloc(4 * CM_N)),
			   *out = t_track(malloc(4 * CM_N));
	size_t		n = make_pair(SP_DT_F32, true, 5, b, f),
				len = 1;
	sp_cm	   *cm = NULL;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	memset(out, 0xAB, 4 * CM_N);
	T_OK(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_COLS, 0, f, b, n, out, 10, &len));
	T_CHECK(len == 0, "10 bytes of room: %zu", len);
	T_OK(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_COLS, 0, f, b, n, out, n / 2, &len));
	T_CHECK(len == 0, "random words in half their size: %zu", len);
	/* the caller's planes sit in out: a payload that does not fit leaves it as it was */
	for (size_t i = 0; i < 4 * CM_N; i++)
		if (out[i] != 0xAB)
		{
			T_CHECK(false, "out was written at byte %zu", i);
			break;
		}
	T_ERR(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_COLS, CM_COLS, f, b, n, out, n, &len),
		  SP_ERR_INTERNAL, "bad CM chunk of 18432 bytes");
	sp_cm_free(&ctx, cm);
}

/* Decode payload p (plen bytes) of an F32 chunk of n bytes; the status. */
static sp_status
cm_decode_raw(sp_ctx *ctx, const uint8_t *base, const uint8_t *p, size_t plen, size_t n)
{
	uint8_t    *back = t_track(malloc(n ? n : 1));
	sp_cm	   *cm = NULL;
	sp_status	st;

	sp_clear_error(ctx);
	st = sp_cm_decode(ctx, &cm, SP_DT_F32, base, p, plen, back, n);

	sp_cm_free(ctx, cm);
	return st;
}

/* Damaged payloads: each fails with its exact message. */
static void
test_cm_damaged_payloads(void)
{
	uint8_t    *b = t_track(malloc(4 * CM_N)),
			   *f = t_track(malloc(4 * CM_N)),
			   *pay = t_track(malloc(sp_codec_bound(4 * CM_N) + 1)),
			   *m = t_track(malloc(sp_codec_bound(4 * CM_N) + 1));
	size_t		n = make_pair(SP_DT_F32, false, 9, b, f),
				len;
	sp_cm	   *cm = NULL;
	sp_codec	c;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	T_OK(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_COLS, 0, f, b, n, pay,
							sp_codec_bound(n), &len));
	sp_cm_free(&ctx, cm);
	T_REQUIRE(len > 100, "payload of %zu bytes", len);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, pay, 11, n), SP_ERR_CORRUPT,
		  "tensor chunk payload is too short");
	T_REQUIRE(sp_get32(pay + 8) == 1 && sp_get32(pay + 12) == CM_N, "one segment of %u elements",
			  sp_get32(pay + 12));
	T_ERR(&ctx, cm_decode_raw(&ctx, b, pay, 23, n), SP_ERR_CORRUPT,
		  "tensor chunk payload is too short");
	memcpy(m, pay, len);
	sp_put32(m + 16, sp_get32(pay + 16) + 1);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk payload is too short");
	sp_put32(m + 16, sp_get32(pay + 16));
	sp_put32(m + 20, sp_get32(pay + 20) - 1);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk payload has trailing bytes");
	memcpy(m, pay, len);
	sp_put32(m + 8, 0);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk has an invalid segment count 0");
	sp_put32(m + 8, 9);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk has an invalid segment count 9");
	memcpy(m, pay, len);
	sp_put32(m + 12, CM_N - 1);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk segments hold 4607 elements, not 4608");
	sp_put32(m + 12, 0);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk has an empty segment");
	memcpy(m, pay, len);
	sp_put32(m, 0);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk has an invalid row length 0 (first column 0)");
	sp_put32(m, 4);
	sp_put32(m + 4, 4);
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len, n), SP_ERR_CORRUPT,
		  "tensor chunk has an invalid row length 4 (first column 4)");
	memcpy(m, pay, len);
	m[len] = 0;
	T_ERR(&ctx, cm_decode_raw(&ctx, b, m, len + 1, n), SP_ERR_CORRUPT,
		  "tensor chunk payload has trailing bytes");
	T_ERR(&ctx, cm_decode_raw(&ctx, b, pay, len, SP_TENSOR_CHUNK + 4), SP_ERR_CORRUPT,
		  "tensor chunk has invalid parameters");
	/* through the codec: CM needs a base and a float dtype it supports */
	T_OK(&ctx, sp_codec_init(&ctx, &c));
	sp_clear_error(&ctx);
	T_ERR(&ctx, sp_codec_decode_tensor(&ctx, &c, SP_DT_F32, SP_TR_CM, NULL, pay, len, m, n),
		  SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	sp_clear_error(&ctx);
	T_ERR(&ctx, sp_codec_decode_tensor(&ctx, &c, SP_DT_I32, SP_TR_CM, b, pay, len, m, n),
		  SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	sp_clear_error(&ctx);
	T_ERR(&ctx, sp_codec_decode_tensor(&ctx, &c, SP_DT_F32, SP_TR_COUNT, b, pay, len, m, n),
		  SP_ERR_CORRUPT, "tensor chunk has invalid parameters");
	sp_codec_free(&ctx, &c);
}

#define CM_BIG (SP_TENSOR_CHUNK / 4)	/* F32 elements of a full chunk: two segments */
#define CM_BIG_COLS 1000

/* A full-chunk F32 pair: weights near 0.02, changes scaled per row and column. */
static void
make_big(uint32_t *b, uint32_t *f)
{
	uint64_t	s = 77;

	for (size_t i = 0; i < CM_BIG; i++)
	{
		float		x = 0.02f * unit(&s),
					y = x + 1e-5f * (float) (1 + i / CM_BIG_COLS % 7) *
			(float) (1 + i % CM_BIG_COLS % 3) * unit(&s);

		memcpy(&b[i], &x, 4);
		memcpy(&f[i], i % 89 ? &y : &x, 4);
	}
}

/* Decode payload p of an F32 chunk of n bytes on threads threads, and compare it with want. */
static bool
cm_decode_threads(int threads, const uint8_t *base, const uint8_t *p, size_t plen,
				  const uint8_t *want, size_t n)
{
	uint8_t    *back = t_track(malloc(n));
	sp_cm	   *cm = NULL;
	ds_hooks	h;
	sp_ctx		ctx;
	sp_status	st;

	dh_ctx(&ctx, &h, -1, -1);
	ctx.threads = threads;
	st = sp_cm_decode(&ctx, &cm, SP_DT_F32, base, p, plen, back, n);
	sp_cm_free(&ctx, cm);
	T_CHECK(h.foreign == 0 && h.live == 0, "threads %d: %ld hook calls off the caller's thread, "
			"%ld allocations live", threads, h.foreign, h.live);
	T_CHECK(st == SP_OK, "threads %d: %s", threads, ctx.err.msg);
	return st == SP_OK && memcmp(back, want, n) == 0;
}

/*
 * Build a payload of three segments by hand from three one-segment
 * encodings of the parts (FORMAT.md: a segment codes as a chunk of its own,
 * starting at column (col0 + start) mod cols).
 */
static size_t
cm_three_segments(const uint8_t *b, const uint8_t *f, uint32_t col0, uint8_t *out)
{
	static const size_t count[3] = {30017, 20011, 9973};
	size_t		start = 0,
				pos = 12 + 3 * 12,
				cap = sp_codec_bound(4 * 30017);
	uint8_t    *part = t_track(malloc(cap));
	sp_cm	   *cm = NULL;
	sp_ctx		ctx;

	rt_ctx(&ctx);
	sp_put32(out, CM_BIG_COLS);
	sp_put32(out + 4, col0);
	sp_put32(out + 8, 3);
	for (int j = 0; j < 3; j++)
	{
		size_t		len = 0;
		sp_status	st = sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_BIG_COLS,
									  (uint32_t) ((col0 + start) % CM_BIG_COLS), f + 4 * start,
									  b + 4 * start, 4 * count[j], part, cap, &len);

		T_REQUIRE_V(st == SP_OK && len > 24 && sp_get32(part + 8) == 1, 0,
					"part %d: %s, %zu bytes", j, ctx.err.msg, len);
		memcpy(out + 12 + 12 * j, part + 12, 12);
		memcpy(out + pos, part + 24, len - 24);
		pos += len - 24;
		start += count[j];
	}
	sp_cm_free(&ctx, cm);
	return pos;
}

/*
 * Segments: a full chunk is coded in two halves and decodes the same on
 * one, two or the default number of threads, with no hook called off the
 * caller's thread and nothing left allocated; a hand-built payload of three
 * segments decodes on two threads (one takes segments 0 and 2); a cancel
 * stops the caller and its helper.
 */
static void
test_cm_segments(void)
{
	uint32_t   *b = t_track(malloc(4 * CM_BIG)),
			   *f = t_track(malloc(4 * CM_BIG));
	size_t		n = 4 * CM_BIG,
				cap = sp_codec_bound(n),
				len;
	uint8_t    *pay = t_track(malloc(cap)),
			   *back = t_track(malloc(n));
	sp_cm	   *cm = NULL;
	ds_hooks	h;
	sp_ctx		ctx;

	make_big(b, f);
	rt_ctx(&ctx);
	T_OK(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_BIG_COLS, 123, (uint8_t *) f,
							(uint8_t *) b, n, pay, cap, &len));
	sp_cm_free(&ctx, cm);
	cm = NULL;
	T_REQUIRE(len > 0 && sp_get32(pay + 8) == 2 && sp_get32(pay + 12) == CM_BIG / 2 &&
			  sp_get32(pay + 24) == CM_BIG / 2, "two halves: %zu bytes, %u segments of %u",
			  len, sp_get32(pay + 8), sp_get32(pay + 12));
	for (int t = 0; t <= 2; t++)
		T_CHECK(cm_decode_threads(t, (uint8_t *) b, pay, len, (uint8_t *) f, n),
				"two segments on %d threads", t);
	/* an odd count: the second half is longer, and only it holds a whole row */
	T_CHECK(cm_roundtrip(&ctx, SP_DT_F32, 32769, 0, (uint8_t *) b, (uint8_t *) f, 4 * 65537) > 0,
			"65537 elements in rows of 32769");
	/* three segments of a 60001-element chunk */
	len = cm_three_segments((uint8_t *) b, (uint8_t *) f, 990, pay);
	for (int t = 1; t <= 2; t++)
		T_CHECK(len > 0 && cm_decode_threads(t, (uint8_t *) b, pay, len, (uint8_t *) f, 4 * 60001),
				"three segments on %d threads", t);
	/* a cancel at the caller's first poll: the helper is stopped and joined */
	rt_ctx(&ctx);
	T_OK(&ctx, sp_cm_encode(&ctx, &cm, SP_DT_F32, CM_BIG_COLS, 0, (uint8_t *) f,
							(uint8_t *) b, n, pay, cap, &len));
	sp_cm_free(&ctx, cm);
	cm = NULL;
	dh_ctx(&ctx, &h, -1, 0);
	ctx.threads = 2;
	T_ERR(&ctx, sp_cm_decode(&ctx, &cm, SP_DT_F32, (uint8_t *) b, pay, len, back, n),
		  SP_ERR_CANCELLED, "canceling statement due to user request");
	sp_cm_free(&ctx, cm);
	T_CHECK(h.polls == 1 && h.foreign == 0 && h.live == 0,
			"%ld polls, %ld off the caller's thread, %ld allocations live", h.polls, h.foreign,
			h.live);
}

/* Does the delta at path hold a CM tensor chunk? */
static bool
has_cm_chunk(const char *path)
{
	size_t		len,
				plen;
	uint8_t    *d = fh_read(path, &len);

	return d && rt_find_chunk(d, len, SP_CHUNK_TENSOR, SP_TR_CM, &plen) > 0;
}

/* Where CM is used: the level and size policy, and a real delta end to end. */
static void
test_cm_level_policy(void)
{
	const char *b = t_model("gpt2-lora-r8/base.safetensors"),
			   *f = t_model("gpt2-lora-r8/ft.safetensors");
	const char *d1 = t_path("l1.delta"),
			   *d3 = t_path("l3.delta");
	size_t		len,
				plen,
				off;
	uint8_t    *d;
	sp_compress_result cr;
	sp_apply_result ar;
	sp_ctx		ctx;

	T_CHECK(!sp_cm_wanted(1, 1000) && !sp_cm_wanted(2, 1000) && sp_cm_wanted(3, SP_CM_SMALL) &&
			!sp_cm_wanted(3, SP_CM_SMALL + 1) && !sp_cm_wanted(9, SP_CM_SMALL + 1) &&
			sp_cm_wanted(10, 1ull << 40), "sp_cm_wanted");
	if (t_data() == NULL)
	{
		t_skip("SPARSE_DATA is not set");
		return;
	}
	rt_ctx(&ctx);
	T_OK(&ctx, sp_delta_compress(&ctx, b, f, d1, 1, &cr));
	T_OK(&ctx, sp_delta_compress(&ctx, b, f, d3, 3, &cr));
	T_CHECK(!has_cm_chunk(d1) && has_cm_chunk(d3), "CM chunks: level 1 %d, level 3 %d",
			has_cm_chunk(d1), has_cm_chunk(d3));
	/* a CM chunk's raw bits damaged, its record checksum fixed: the chunk checksum catches it */
	T_REQUIRE((d = fh_read(d3, &len)) != NULL &&
			  (off = rt_find_chunk(d, len, SP_CHUNK_TENSOR, SP_TR_CM, &plen)) > 0, "no CM chunk");
	d[off + 8 + plen - 1] ^= 0xFF;
	rt_fix_record_sum(d, off, plen);
	T_REQUIRE(fh_write(t_path("bad.delta"), d, len), "write");
	T_ERR_SUB(&ctx, sp_delta_apply(&ctx, b, t_path("bad.delta"), t_path("out"), &ar),
			  SP_ERR_CORRUPT, "of \"ft.safetensors\" does not match its checksum");
	T_CHECK(!fh_exists(t_path("out")), "an output was written");
}

const t_case t_tests_tensorcm[] = {
	{"cm_roundtrip_geometries", test_cm_roundtrip_geometries},
	{"cm_chosen_when_smaller", test_cm_chosen_when_smaller},
	{"cm_segments", test_cm_segments},
	{"cm_no_room", test_cm_no_room},
	{"cm_damaged_payloads", test_cm_damaged_payloads},
	{"cm_level_policy", test_cm_level_policy},
	{NULL, NULL}
};
