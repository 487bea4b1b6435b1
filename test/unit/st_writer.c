/*
 * st_writer.c -- a minimal safetensors writer/reader and file helpers for
 * the unit tests (see st_writer.h).
 *
 * How it writes: the header is a cJSON object built in the order of the
 * tensor list ("__metadata__" first unless metadata_last); offsets run from
 * 0 in list order with opts->gap filler bytes between tensors; the printed
 * JSON gets spaces so that 8 + N is a multiple of opts->align.  The file is
 * the u64 little-endian N, the header, then the data.
 *
 * The reader is independent of the core on purpose: tests build their
 * inputs without trusting the code they test.  It checks only what it needs
 * to avoid reading out of bounds.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "st_writer.h"

/* Report a failure of a helper (file:line of the helper, errno text). */
#define FH_FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

/* Element size of a safetensors dtype name, 0 if unknown. */
int
stw_dtype_size(const char *dtype)
{
	static const struct
	{
		const char *name;
		int			size;
	}			dt[] = {
		{"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1},
		{"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
		{"I32", 4}, {"U32", 4}, {"F32", 4},
		{"I64", 8}, {"U64", 8}, {"F64", 8},
	};

	for (size_t i = 0; i < sizeof(dt) / sizeof(dt[0]); i++)
		if (strcmp(dt[i].name, dtype) == 0)
			return dt[i].size;
	return 0;
}

/* Number of elements of a shape. */
uint64_t
stw_numel(const stw_tensor *t)
{
	uint64_t	n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

/* Set t's shape from a list of ndim uint64-convertible ints. */
void
stw_shape(stw_tensor *t, int ndim,...)
{
	va_list		ap;

	va_start(ap, ndim);
	t->ndim = ndim;
	for (int i = 0; i < ndim && i < STW_MAX_DIMS; i++)
		t->shape[i] = (uint64_t) va_arg(ap, long long);
	va_end(ap);
}

/* Add "__metadata__" parsed from text to obj; false on bad text. */
static bool
add_metadata(cJSON *obj, const char *text)
{
	cJSON	   *md = cJSON_Parse(text);

	if (md == NULL)
	{
		FH_FAIL("bad metadata JSON in test: %s", text);
		return false;
	}
	cJSON_AddItemToObject(obj, "__metadata__", md);
	return true;
}

/* Add one tensor entry {dtype, shape, data_offsets} to obj. */
static void
add_tensor_entry(cJSON *obj, const stw_tensor *t, uint64_t begin)
{
	cJSON	   *e = cJSON_CreateObject();
	cJSON	   *shape = cJSON_CreateArray();
	cJSON	   *offs = cJSON_CreateArray();

	cJSON_AddStringToObject(e, "dtype", t->dtype);
	for (int d = 0; d < t->ndim; d++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double) t->shape[d]));
	cJSON_AddItemToObject(e, "shape", shape);
	cJSON_AddItemToArray(offs, cJSON_CreateNumber((double) begin));
	cJSON_AddItemToArray(offs, cJSON_CreateNumber((double) (begin + t->len)));
	cJSON_AddItemToObject(e, "data_offsets", offs);
	cJSON_AddItemToObject(obj, t->name, e);
}

/* Header text for these tensors, padded as opts says (tracked). */
char *
stw_header(const stw_tensor *t, size_t n, const stw_opts *opts, size_t *hlen)
{
	static const stw_opts defaults = {0};
	const stw_opts *o = opts != NULL ? opts : &defaults;
	size_t		align = o->align != 0 ? o->align : 8;
	cJSON	   *obj = cJSON_CreateObject();
	uint64_t	off = 0;
	char	   *json,
			   *out;
	size_t		len,
				total;

	if (o->metadata_json != NULL && !o->metadata_last &&
		!add_metadata(obj, o->metadata_json))
		return cJSON_Delete(obj), NULL;
	for (size_t i = 0; i < n; i++)
	{
		add_tensor_entry(obj, &t[i], off);
		off += t[i].len + o->gap;
	}
	if (o->metadata_json != NULL && o->metadata_last &&
		!add_metadata(obj, o->metadata_json))
		return cJSON_Delete(obj), NULL;
	json = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	len = strlen(json);
	total = len + o->extra_spaces;
	while ((8 + total) % align != 0)
		total++;
	out = t_track(malloc(total + 1));
	memcpy(out, json, len);
	memset(out + len, ' ', total - len);
	out[total] = '\0';
	cJSON_free(json);
	*hlen = total;
	return out;
}

/* Write n bytes or report the failure. */
static bool
write_all(FILE *f, const void *p, size_t n, const char *path)
{
	if (n > 0 && fwrite(p, 1, n, f) != n)
	{
		FH_FAIL("write \"%s\": %s", path, strerror(errno));
		return false;
	}
	return true;
}

/* Write the 8-byte little-endian header length. */
static bool
write_len(FILE *f, uint64_t len, const char *path)
{
	uint8_t		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t) (len >> (8 * i));
	return write_all(f, b, 8, path);
}

/* Write a safetensors file. */
bool
stw_write(const char *path, const stw_tensor *t, size_t n,
		  const stw_opts *opts)
{
	size_t		hlen;
	char	   *hdr = stw_header(t, n, opts, &hlen);
	size_t		gap = opts != NULL ? opts->gap : 0;
	uint8_t		gapbuf[256];
	FILE	   *f;
	bool		ok;

	if (hdr == NULL)
		return false;
	memset(gapbuf, opts != NULL ? opts->gap_byte : 0, sizeof(gapbuf));
	if ((f = fopen(path, "wb")) == NULL)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		return false;
	}
	ok = write_len(f, hlen, path) && write_all(f, hdr, hlen, path);
	for (size_t i = 0; ok && i < n; i++)
	{
		ok = write_all(f, t[i].data, t[i].len, path);
		for (size_t g = gap; ok && i + 1 < n && g > 0;)
		{
			size_t		k = g < sizeof(gapbuf) ? g : sizeof(gapbuf);

			ok = write_all(f, gapbuf, k, path);
			g -= k;
		}
	}
	if (fclose(f) != 0 && ok)
	{
		FH_FAIL("close \"%s\": %s", path, strerror(errno));
		ok = false;
	}
	return ok;
}

/* Write a file made of an 8-byte length, header text, data. */
bool
stw_write_raw(const char *path, uint64_t len_field, const char *header,
			  const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");
	bool		ok;

	if (f == NULL)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		return false;
	}
	ok = write_len(f, len_field, path) &&
		write_all(f, header, strlen(header), path) &&
		write_all(f, data, len, path);
	if (fclose(f) != 0)
		ok = false;
	return ok;
}

/* Fill one tensor from its header entry e; false if malformed. */
static bool
read_entry(stw_model *m, uint64_t hlen, const cJSON *e, stw_tensor *t)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const cJSON *x;
	uint64_t	b,
				en;

	if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
		cJSON_GetArraySize(of) != 2 || cJSON_GetArraySize(sh) > STW_MAX_DIMS)
		return false;
	t->name = t_track(strdup(e->string));
	t->dtype = t_track(strdup(dt->valuestring));
	t->ndim = 0;
	cJSON_ArrayForEach(x, sh)
		t->shape[t->ndim++] = (uint64_t) x->valuedouble;
	b = (uint64_t) cJSON_GetArrayItem(of, 0)->valuedouble;
	en = (uint64_t) cJSON_GetArrayItem(of, 1)->valuedouble;
	if (b > en || 8 + hlen + en > m->size)
		return false;
	t->data = m->buf + 8 + hlen + b;
	t->len = en - b;
	return true;
}

/* Parse the header JSON of a file already in m->buf. */
static bool
parse_header(const char *path, stw_model *m, uint64_t hlen)
{
	cJSON	   *root = cJSON_ParseWithLength((const char *) m->buf + 8, hlen);
	const cJSON *e;
	bool		ok = true;

	if (!cJSON_IsObject(root))
	{
		FH_FAIL("\"%s\": header is not a JSON object", path);
		cJSON_Delete(root);
		return false;
	}
	m->t = t_track(calloc(cJSON_GetArraySize(root) + 1, sizeof(stw_tensor)));
	cJSON_ArrayForEach(e, root)
	{
		if (strcmp(e->string, "__metadata__") == 0)
			m->metadata_json = t_track(cJSON_PrintUnformatted(e));
		else if (!(ok = read_entry(m, hlen, e, &m->t[m->n++])))
		{
			FH_FAIL("\"%s\": bad tensor entry \"%s\"", path, e->string);
			break;
		}
	}
	cJSON_Delete(root);
	return ok;
}

/* Read and parse a safetensors file. */
bool
stw_read(const char *path, stw_model *m)
{
	uint64_t	hlen = 0;

	memset(m, 0, sizeof(*m));
	if ((m->buf = fh_read(path, &m->size)) == NULL)
		return false;
	if (m->size < 8)
	{
		FH_FAIL("\"%s\" is shorter than 8 bytes", path);
		return false;
	}
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t) m->buf[i] << (8 * i);
	if (hlen > m->size - 8)
	{
		FH_FAIL("\"%s\": header length %llu too large", path,
				(unsigned long long) hlen);
		return false;
	}
	return parse_header(path, m, hlen);
}

/* Find a tensor by name, or NULL. */
const stw_tensor *
stw_find(const stw_model *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->t[i].name, name) == 0)
			return &m->t[i];
	return NULL;
}

/* ---- file helpers ----------------------------------------------------- */

/* Read a whole file (tracked buffer, NUL appended). */
uint8_t *
fh_read(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	struct stat st;
	uint8_t    *buf;

	if (f == NULL || fstat(fileno(f), &st) != 0)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	buf = t_track(malloc((size_t) st.st_size + 1));
	if (buf == NULL || fread(buf, 1, (size_t) st.st_size, f) != (size_t) st.st_size)
	{
		FH_FAIL("read \"%s\" failed", path);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[st.st_size] = 0;
	*len = (size_t) st.st_size;
	return buf;
}

/* Write a whole file (created or truncated). */
bool
fh_write(const char *path, const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");
	bool		ok;

	if (f == NULL)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		return false;
	}
	ok = write_all(f, data, len, path);
	return fclose(f) == 0 && ok;
}

/* Copy a file. */
bool
fh_copy(const char *from, const char *to)
{
	size_t		len;
	uint8_t    *b = fh_read(from, &len);

	return b != NULL && fh_write(to, b, len);
}

/* Hex of a 32-byte digest into hex[65]. */
static void
to_hex(const unsigned char *md, char hex[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* SHA-256 of a buffer as hex into hex[65]. */
void
fh_sha256_mem(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	to_hex(md, hex);
}

/* SHA-256 of a file, streamed, as hex into hex[65]. */
bool
fh_sha256(const char *path, char hex[65])
{
	FILE	   *f = fopen(path, "rb");
	EVP_MD_CTX *c;
	unsigned char md[32],
				buf[1 << 16];
	unsigned int mdlen = 0;
	size_t		n;

	hex[0] = '\0';
	if (f == NULL)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		return false;
	}
	c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(c, buf, n);
	EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	fclose(f);
	to_hex(md, hex);
	return true;
}

/* XOR the byte at offset with mask (0xFF if mask is 0). */
bool
fh_flip(const char *path, uint64_t offset, uint8_t mask)
{
	int			fd = open(path, O_RDWR);
	uint8_t		b;
	bool		ok;

	if (fd < 0)
	{
		FH_FAIL("open \"%s\": %s", path, strerror(errno));
		return false;
	}
	ok = pread(fd, &b, 1, (off_t) offset) == 1;
	b ^= mask != 0 ? mask : 0xFF;
	ok = ok && pwrite(fd, &b, 1, (off_t) offset) == 1;
	close(fd);
	if (!ok)
		FH_FAIL("flip byte %llu of \"%s\" failed", (unsigned long long) offset, path);
	return ok;
}

/* Cut a file to len bytes. */
bool
fh_truncate(const char *path, uint64_t len)
{
	if (truncate(path, (off_t) len) != 0)
	{
		FH_FAIL("truncate \"%s\": %s", path, strerror(errno));
		return false;
	}
	return true;
}

/* Size of a file, or -1. */
int64_t
fh_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int64_t) st.st_size : -1;
}

/* True if path exists (lstat, so a dangling symlink exists). */
bool
fh_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* True if the two files have identical bytes. */
bool
fh_same(const char *a, const char *b)
{
	size_t		la,
				lb;
	uint8_t    *ba = fh_read(a, &la);
	uint8_t    *bb = fh_read(b, &lb);

	return ba != NULL && bb != NULL && la == lb && memcmp(ba, bb, la) == 0;
}

/* mkdir -p. */
bool
fh_mkdirs(const char *path)
{
	char		buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p != '\0'; p++)
		if (*p == '/')
		{
			*p = '\0';
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
				break;
			*p = '/';
		}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
	{
		FH_FAIL("mkdir \"%s\": %s", path, strerror(errno));
		return false;
	}
	return true;
}

/* qsort comparator for strings. */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Names in a directory (sorted, without . and ..), tracked. */
char **
fh_list(const char *dir, size_t *n)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	char	  **names;
	size_t		cap = 16;

	*n = 0;
	if (d == NULL)
		return NULL;
	names = malloc(cap * sizeof(char *));
	while (names != NULL && (e = readdir(d)) != NULL)
	{
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (*n == cap)
		{
			char	  **nn = realloc(names, (cap *= 2) * sizeof(char *));

			if (nn == NULL)
				break;
			names = nn;
		}
		names[(*n)++] = t_track(strdup(e->d_name));
	}
	closedir(d);
	qsort(names, *n, sizeof(char *), cmp_str);
	return t_track(names);
}

/* Compare two directory trees: names, kinds and bytes. */
bool
fh_same_tree(const char *a, const char *b)
{
	size_t		na,
				nb;
	char	  **la = fh_list(a, &na);
	char	  **lb = fh_list(b, &nb);
	bool		same = true;

	if (la == NULL || lb == NULL || na != nb)
	{
		FH_FAIL("\"%s\" has %zu entries, \"%s\" has %zu", a, na, b, nb);
		return false;
	}
	for (size_t i = 0; i < na; i++)
	{
		char	   *pa = t_fmt("%s/%s", a, la[i]);
		char	   *pb = t_fmt("%s/%s", b, lb[i]);
		struct stat sa,
					sb;

		if (strcmp(la[i], lb[i]) != 0 || lstat(pa, &sa) != 0 ||
			lstat(pb, &sb) != 0 || (sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
		{
			FH_FAIL("\"%s\" and \"%s\" differ in name or kind", pa, pb);
			same = false;
		}
		else if (S_ISDIR(sa.st_mode))
			same = fh_same_tree(pa, pb) && same;
		else if (!fh_same(pa, pb))
		{
			FH_FAIL("\"%s\" and \"%s\" differ in content", pa, pb);
			same = false;
		}
	}
	return same;
}

/* Deterministic pseudo-random numbers (xorshift64*). */
uint64_t
fh_rand(uint64_t *state)
{
	uint64_t	x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
