/*
 * container.h -- the delta container (internal; spec in docs/FORMAT.md).
 *
 * A delta is a 16-byte header followed by records.  Every record is
 *   u8 type, u8[3] zero, u32 payload length, payload, u64 XXH3-64 of the
 *   header and payload,
 * so truncation and corruption are found record by record before anything
 * is decoded.  Records: BASES (base files read, with size and SHA-256), then
 * per rebuilt file FILE, CHUNK..., FILE_END (with its SHA-256), and END.
 */
#ifndef SPARSE_CONTAINER_H
#define SPARSE_CONTAINER_H

#include "bghash.h"
#include "files.h"
#include "util.h"

#define SP_MAGIC "SPRSDLT"		/* 7 bytes + NUL = 8 */
#define SP_HEADER_LEN 16
#define SP_FLAG_DIR 1u			/* the fine-tune was a directory */

/*
 * BASES entries carry each base file's fingerprint (util.h: XXH3-128) after
 * its SHA-256, and apply checks the base by the fingerprint, which is about
 * 20 times cheaper to compute.  Security: the base check is there to turn a
 * mistaken base into a clear "wrong base" error; it is not what keeps a
 * wrong file out.  Every rebuilt file is compared with the SHA-256 recorded
 * for it before it is renamed into place, so a base forged to match a
 * fingerprint can at worst fail that comparison (or, differing only where
 * the delta never reads, rebuild the right file).  A base given by mistake
 * matches a 128-bit fingerprint with probability 2^-128.
 */
#define SP_FLAG_BASEFP 2u
#define SP_FLAGS_KNOWN (SP_FLAG_DIR | SP_FLAG_BASEFP)

/* Fixed bytes of a BASES entry before its name, with and without fingerprints. */
#define SP_BASE_ENTRY(flags) ((flags) & SP_FLAG_BASEFP ? 58u : 42u)

#define SP_REC_HDR 8
#define SP_REC_SUM 8
#define SP_REC_MAX (64u << 20)	/* largest payload accepted */
#define SP_NO_BASE 0xFFFFFFFFu

enum
{
	SP_REC_BASES = 1, SP_REC_FILE = 2, SP_REC_CHUNK = 3, SP_REC_FILE_END = 4, SP_REC_END = 5,
	SP_REC_ROWSPACE = 6
};

enum
{
	SP_CHUNK_ZSTD = 1, SP_CHUNK_TENSOR = 2, SP_CHUNK_COPY = 3, SP_CHUNK_ROWS = 4,
	SP_CHUNK_SNAPPY = 5
};

enum
{
	SP_METHOD_TENSOR = 1, SP_METHOD_ZSTD_REF = 2, SP_METHOD_ZSTD = 3, SP_METHOD_COPY = 4,
	SP_METHOD_ROWS_BASE = 4,		/* + row format (rows.h): 5 rows-lines ... 9 rows-json-array */
	SP_METHOD_PARQUET = 10
};

/* Fixed part of a CHUNK payload. */
#define SP_CHUNK_HDR 40
typedef struct sp_chunk_hdr
{
	uint8_t		kind;
	uint8_t		transform;
	uint8_t		dtype;
	uint8_t		base_dtype;		/* 0: same as dtype; else the base's dtype + 1 */
	uint32_t	base;			/* index into BASES, or SP_NO_BASE */
	uint64_t	out_len;
	uint64_t	base_off;
	uint64_t	base_len;
	uint64_t	checksum;		/* XXH3-64 of the decoded bytes */
} sp_chunk_hdr;

/* Name of a method code for delta_info. */
const char *sp_method_name(int method);

/* Serialize / parse the fixed chunk header. */
void		sp_chunk_hdr_put(uint8_t *p, const sp_chunk_hdr *h);
void		sp_chunk_hdr_get(const uint8_t *p, sp_chunk_hdr *h);

/* Write the container header. */
sp_status	sp_write_header(sp_ctx *ctx, sp_out *o, uint32_t flags);

/* Write one record (type, payload) with its checksum. */
sp_status	sp_write_record(sp_ctx *ctx, sp_out *o, int type, const uint8_t *payload, size_t len);

/* Sequential reader of a delta held in a one-file sp_fileset. */
typedef struct sp_reader
{
	sp_fileset *src;
	const char *name;			/* for messages */
	uint64_t	pos;
	uint64_t	size;
	uint32_t	flags;
	bool		complete;		/* the delta ends with a valid END record */
	uint8_t    *buf;			/* payload of the last record read */
	size_t		cap;
	int			type;
	size_t		len;
	uint64_t	rec_start;		/* offset of the last record */
} sp_reader;

/* Check magic and version; fills r->flags. */
sp_status	sp_reader_open(sp_ctx *ctx, sp_reader *r, sp_fileset *src);

/* Read the next record (verifying its checksum unless skip_chunks and it is a chunk). */
sp_status	sp_reader_next(sp_ctx *ctx, sp_reader *r, bool skip_chunks);

void		sp_reader_close(sp_ctx *ctx, sp_reader *r);

/* Add "HEX  NAME\n" (sha256sum's format) to a directory manifest digest. */
/*
 * The BASES record of a delta being written (with fingerprints: the header
 * must carry SP_FLAG_BASEFP).  sp_bases_write writes it with the digests
 * left zero and starts hashing the base files on a helper thread
 * (bghash.h), so the encoder codes meanwhile; sp_bases_seal, before END,
 * waits for the digests and writes the record again in place.
 */
typedef struct sp_bases
{
	uint8_t    *rec;			/* the payload */
	size_t		len;
	uint64_t	off;			/* where the record starts in the output */
	sp_fileset *fs;
	size_t		n;
	sp_bghash	bh;
} sp_bases;

sp_status	sp_bases_write(sp_ctx *ctx, sp_out *o, sp_fileset *fs, const size_t *idx, size_t n,
						   const char *too_many, sp_bases *b);
sp_status	sp_bases_seal(sp_ctx *ctx, sp_out *o, sp_bases *b, uint8_t digest[SP_SHA256_LEN]);
void		sp_bases_free(sp_ctx *ctx, sp_bases *b);

void		sp_manifest_add(sp_sha256 *man, const uint8_t digest[SP_SHA256_LEN],
							const char *rel);

#endif							/* SPARSE_CONTAINER_H */
