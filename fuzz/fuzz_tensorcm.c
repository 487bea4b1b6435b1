/*
 * fuzz_tensorcm.c -- libFuzzer target for the CM transform's decoder
 * (common/tensorcm.c).
 *
 * Usage: make fuzz-build && build/fuzz/fuzz_tensorcm fuzz/corpus/tensorcm
 *        (scripts/fuzz.sh runs it for a fixed time with a scratch corpus).
 *
 * Input: u8 dtype selector (F32, BF16, F16 by value mod 3), u16 element
 * count (mod FZ_CM_MAX + 1), then a CM payload (docs/FORMAT.md, TENSOR
 * transform 3) decoded against a fixed base of that many weights.  On
 * failure ctx.err must match the status; on success the decoded tensor is
 * encoded again and must decode back to the same bytes, so the model stays
 * symmetric on whatever values a hostile payload produces.
 *
 * Seeds: with SPARSE_FUZZ_SEEDS=DIR set, the binary writes payloads of
 * LoRA-like updates (every dtype, a few row lengths and first columns; one
 * of three segments, spliced from encodings of its parts, since the encoder
 * cuts only chunks longer than the fuzzer's) to DIR/tensorcm and exits;
 * fuzz/make_seeds.py calls it.
 */
#include "fuzz_common.h"
#include "codec.h"
#include "tensorcm.h"
#include "util.h"

#define FZ_CM_MAX 4096			/* elements */

static const sp_dtype fz_cm_dts[3] = {SP_DT_F32, SP_DT_BF16, SP_DT_F16};

/* The fixed base: n weights near 0.02 in dtype dt (BF16: their high halves; F16: one exponent, their mantissas). */
static void
cm_base(sp_dtype dt, size_t n, uint8_t *out)
{
	uint64_t	s = 99;

	for (size_t i = 0; i < n; i++)
	{
		float		v = ((float) (fz_rand(&s) >> 40) / 16777216.0f - 0.5f) * 0.04f;
		uint32_t	w;

		memcpy(&w, &v, 4);
		if (dt == SP_DT_F32)
			memcpy(out + 4 * i, &w, 4);
		else
		{
			uint16_t	h = dt == SP_DT_BF16 ? (uint16_t) (w >> 16) : (uint16_t) (0x2000 | (w >> 20 & 0x3FF));

			memcpy(out + 2 * i, &h, 2);
		}
	}
}

/* Encode ft against base and require it to decode back (the decoder's result round trips). */
static void
check_roundtrip(sp_ctx *ctx, sp_dtype dt, uint32_t cols, uint32_t col0, const uint8_t *base,
				const uint8_t *ft, size_t n)
{
	/* room for the worst case (64 coded bytes and 4 raw bytes an element), so len 0 is a bug */
	static uint8_t pay[68 * FZ_CM_MAX + 4096],
				back[4 * FZ_CM_MAX];
	sp_cm	   *cm = NULL;
	size_t		len;

	if (sp_cm_encode(ctx, &cm, dt, cols, col0, ft, base, n, pay, sizeof(pay), &len) != SP_OK ||
		len == 0)
		fz_die("a decoded tensor does not encode", ctx);
	if (sp_cm_decode(ctx, &cm, dt, base, pay, len, back, n) != SP_OK || memcmp(back, ft, n) != 0)
		fz_die("a decoded tensor does not round trip", ctx);
	sp_cm_free(ctx, cm);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t base[4 * FZ_CM_MAX],
				ft[4 * FZ_CM_MAX];
	sp_ctx		ctx;
	sp_cm	   *cm = NULL;
	sp_dtype	dt;
	size_t		m,
				n;
	sp_status	st;

	if (size < 3)
		return 0;
	dt = fz_cm_dts[data[0] % 3];
	m = ((size_t) data[1] | (size_t) data[2] << 8) % (FZ_CM_MAX + 1);
	n = m * (size_t) sp_dtype_size(dt);
	cm_base(dt, m, base);
	fz_ctx_init(&ctx, 0, 0);
	st = sp_cm_decode(&ctx, &cm, dt, base, data + 3, size - 3, ft, n);
	sp_cm_free(&ctx, cm);
	if (st != SP_OK)
	{
		fz_check_error(&ctx, st);
		return 0;
	}
	check_roundtrip(&ctx, dt, sp_get32(data + 3), sp_get32(data + 7), base, ft, n);
	return 0;
}

/* A LoRA-like update of m elements of dtype k against the fixed base, into base and ft. */
static void
make_update(int k, size_t m, uint32_t cols, uint8_t *base, uint8_t *ft)
{
	size_t		w = (size_t) sp_dtype_size(fz_cm_dts[k]);
	uint64_t	s = 5 + (uint64_t) k;

	cm_base(fz_cm_dts[k], m, base);
	memcpy(ft, base, m * w);
	for (size_t i = 0; i < m; i++)
	{
		uint32_t	v = 0;
		int			shift = (int) ((i / cols) % 4) * (w == 4 ? 3 : 1);

		memcpy(&v, ft + i * w, w);
		v += (uint32_t) ((int32_t) (fz_rand(&s) % 16) - 8) << shift;
		memcpy(ft + i * w, &v, w);
	}
}

/*
 * Code the update as nseg segments of about m / nseg elements into out (an
 * encoding of each part spliced under one header, FORMAT.md); its length.
 */
static size_t
code_segments(int k, size_t m, uint32_t cols, uint32_t col0, int nseg, const uint8_t *base,
			  const uint8_t *ft, uint8_t *out, size_t cap)
{
	static uint8_t part[8 * FZ_CM_MAX + 4096];
	size_t		w = (size_t) sp_dtype_size(fz_cm_dts[k]),
				start = 0,
				pos = 12 + 12 * (size_t) nseg;
	sp_cm	   *cm = NULL;
	sp_ctx		ctx;

	sp_ctx_init(&ctx);
	sp_put32(out, cols);
	sp_put32(out + 4, col0);
	sp_put32(out + 8, (uint32_t) nseg);
	for (int j = 0; j < nseg; j++)
	{
		size_t		count = j == nseg - 1 ? m - start : m / (size_t) nseg,
					len = 0;

		if (sp_cm_encode(&ctx, &cm, fz_cm_dts[k], cols, (uint32_t) ((col0 + start) % cols),
						 ft + start * w, base + start * w, count * w, part, sizeof(part),
						 &len) != SP_OK || len <= 24 || pos + len - 24 > cap)
			fz_die("seed does not encode", &ctx);
		memcpy(out + 12 + 12 * j, part + 12, 12);
		memcpy(out + pos, part + 24, len - 24);
		pos += len - 24;
		start += count;
	}
	sp_cm_free(&ctx, cm);
	return pos;
}

/* Write one seed: a LoRA-like update of m elements of dtype k, coded with geometry cols/col0 in nseg segments. */
static void
write_seed(const char *dir, int k, size_t m, uint32_t cols, uint32_t col0, int nseg)
{
	static uint8_t base[4 * FZ_CM_MAX],
				ft[4 * FZ_CM_MAX],
				seed[3 + 8 * FZ_CM_MAX + 4096];
	size_t		len;
	char		path[4096];
	FILE	   *f;

	make_update(k, m, cols, base, ft);
	len = code_segments(k, m, cols, col0, nseg, base, ft, seed + 3, sizeof(seed) - 3);
	seed[0] = (uint8_t) k;
	seed[1] = (uint8_t) m;
	seed[2] = (uint8_t) (m >> 8);
	snprintf(path, sizeof(path), "%s/tensorcm/%s_%zu_%u_%u%s", dir, sp_dtype_name(fz_cm_dts[k]),
			 m, cols, col0, nseg > 1 ? "_segments" : "");
	if ((f = fopen(path, "wb")) == NULL || fwrite(seed, 1, 3 + len, f) != 3 + len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* Seed mode: write CM payloads under $SPARSE_FUZZ_SEEDS/tensorcm, exit. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fz_seed_dir("tensorcm");

	(void) argc;
	(void) argv;
	if (dir == NULL)
		return 0;
	for (int k = 0; k < 3; k++)
	{
		write_seed(dir, k, 1024, 32, 0, 1);
		write_seed(dir, k, 600, 64, 17, 1);
		write_seed(dir, k, 40, 1000, 3, 1);
	}
	write_seed(dir, 0, 1, 1, 0, 1);
	write_seed(dir, 0, 1000, 48, 7, 3);	/* decoded on two threads: one takes segments 0 and 2 */
	exit(0);
}
