/*
 * test_writer.c -- tests of the test helpers themselves (st_writer.c).
 *
 * The other tests build their inputs with the writer, so it must be right:
 * rewriting each shared real file from what the reader parsed must give the
 * same bytes (same JSON order, number format and space padding as the
 * reference writer), and options (alignment, gaps, metadata) must do what
 * they say.  These tests do not call the core.
 */
#include <string.h>

#include "harness.h"
#include "st_writer.h"

/* Rewrite one real file from its parsed form; the bytes must not change. */
static void
rewrite_same(const char *rel)
{
	char	   *src = t_model(rel);
	char	   *dst = t_path("rewritten.safetensors");
	stw_model	m;
	stw_opts	o = {0};

	T_REQUIRE(stw_read(src, &m), "cannot read %s", src);
	o.metadata_json = m.metadata_json;
	/* The mlp files carry "__metadata__" after the tensors. */
	o.metadata_last = strstr(rel, "mlp") != NULL;
	T_REQUIRE(stw_write(dst, m.t, m.n, &o), "cannot write %s", dst);
	T_CHECK(fh_same(src, dst), "rewrite of %s differs from the original", rel);
}

/* The writer reproduces the real files byte for byte. */
static void
test_writer_reproduces_real_files(void)
{
	rewrite_same("gpt2-lora-r8/base.safetensors");
	rewrite_same("roberta-lora-r4-biasall/ft.safetensors");
	rewrite_same("mlp-trained/base.f32.safetensors");
	rewrite_same("mlp-trained/ft.bf16.safetensors");
}

/* Alignment, extra spaces, gaps and metadata come back through the reader. */
static void
test_writer_options(void)
{
	static const float a[3] = {1.0f, 2.0f, 3.0f};
	static const uint16_t b[4] = {1, 2, 3, 4};
	stw_tensor	t[2] = {
		{.name = "a", .dtype = "F32", .ndim = 1, .shape = {3}, .data = a, .len = sizeof(a)},
		{.name = "b", .dtype = "BF16", .ndim = 2, .shape = {2, 2}, .data = b, .len = sizeof(b)},
	};
	stw_opts	o = {.metadata_json = "{\"k\":\"v\"}", .extra_spaces = 5,
	.gap = 7, .gap_byte = 0xAB};
	char	   *p = t_path("x.safetensors");
	stw_model	m;
	size_t		hlen;

	T_REQUIRE(stw_write(p, t, 2, &o), "write failed");
	T_REQUIRE(stw_read(p, &m), "read failed");
	hlen = (size_t) m.buf[0] | (size_t) m.buf[1] << 8;
	T_CHECK((8 + hlen) % 8 == 0, "header not padded to 8: %zu", hlen);
	T_CHECK(m.buf[8 + hlen - 1] == ' ', "header does not end with a space");
	T_CHECK(m.size == 8 + hlen + sizeof(a) + 7 + sizeof(b), "size %zu", m.size);
	T_CHECK(m.buf[8 + hlen + sizeof(a)] == 0xAB, "gap byte not written");
	T_REQUIRE(m.n == 2, "read %zu tensors", m.n);
	T_CHECK(strcmp(m.t[1].name, "b") == 0 && m.t[1].ndim == 2 &&
			m.t[1].shape[1] == 2 && memcmp(m.t[1].data, b, sizeof(b)) == 0,
			"tensor b read back wrong");
	T_CHECK(m.metadata_json != NULL && strcmp(m.metadata_json, "{\"k\":\"v\"}") == 0,
			"metadata read back as %s", m.metadata_json ? m.metadata_json : "NULL");
	o.align = 1;
	o.extra_spaces = 0;
	T_REQUIRE(stw_write(p, t, 2, &o), "write failed");
	T_REQUIRE(stw_read(p, &m), "read failed");
	T_CHECK(m.buf[8 + m.buf[0] - 1] == '}', "align 1 still padded");
}

/* The sha256 helper agrees on file and memory, and with a known digest. */
static void
test_writer_sha256(void)
{
	char		h1[65],
				h2[65];
	char	   *p = t_path("abc");

	T_REQUIRE(fh_write(p, "abc", 3), "write failed");
	T_REQUIRE(fh_sha256(p, h1), "sha failed");
	fh_sha256_mem("abc", 3, h2);
	T_CHECK(strcmp(h1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
			"sha256(abc) = %s", h1);
	T_CHECK(strcmp(h1, h2) == 0, "file and memory digests differ");
	T_REQUIRE(fh_flip(p, 1, 0), "flip failed");
	T_REQUIRE(fh_truncate(p, 2), "truncate failed");
	T_CHECK(fh_size(p) == 2, "size after truncate %lld", (long long) fh_size(p));
}

const t_case t_tests_writer[] = {
	{"writer_reproduces_real_files", test_writer_reproduces_real_files},
	{"writer_options", test_writer_options},
	{"writer_sha256", test_writer_sha256},
	{NULL, NULL}
};
