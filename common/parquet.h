/*
 * parquet.h -- find the pages of a Parquet file (internal).
 *
 * A Parquet file is "PAR1", column chunks, a Thrift footer, its u32
 * length and "PAR1".  Column chunks are runs of pages, each a Thrift
 * (compact protocol) PageHeader followed by its payload; some writers put
 * a ColumnChunk struct after each run.  The scanner walks those structs from
 * byte 4 to the footer, so compressed pages can be expanded before delta
 * coding and compressed again on rebuild (see dataset.c).  Only Thrift
 * framing is parsed; every length and offset is checked against the file.
 */
#ifndef SPARSE_PARQUET_H
#define SPARSE_PARQUET_H

#include "codec.h"
#include "files.h"
#include "util.h"

#define SP_PQ_PAGE_MAX (4u << 20)	/* pages larger than this stay compressed */
#define SP_PQ_MAX_PAGES 1000000
#define SP_PQ_HEADER_MAX (1u << 20) /* longest Thrift struct the scanner reads */

/* One page payload of a Parquet file. */
typedef struct sp_pq_page
{
	uint64_t	off;			/* file offset of the payload */
	uint32_t	clen;			/* stored (compressed) bytes */
	uint32_t	ulen;			/* uncompressed bytes, per the header */
} sp_pq_page;

/*
 * The pages of file idx of fs, in file order; *n 0 when the file is not a
 * Parquet file the scanner can walk (that is not an error).  Free *pages.
 */
sp_status	sp_parquet_pages(sp_ctx *ctx, sp_fileset *fs, size_t idx, sp_pq_page **pages,
							 size_t *n);

/*
 * Expand a snappy page (clen bytes at src) into dst (ulen bytes) and check
 * that compressing it again gives the same bytes; false if not.
 */
bool		sp_snappy_roundtrips(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen,
								 uint8_t *scratch, size_t scratch_cap);

/* Snappy-compress src into dst (cap bytes); its length, or 0 if it does not fit. */
size_t		sp_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* Expand snappy data into dst, exactly ulen bytes; false if it is not that. */
bool		sp_snappy_expand(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen);

/* Largest snappy output for n input bytes. */
size_t		sp_snappy_bound(size_t n);

/* Page codecs a SNAPPY chunk knows (its transform byte). */
enum
{
	SP_PQ_SNAPPY = 0, SP_PQ_ZSTD = 1
};

/*
 * zstd levels a page may name: those the level search tries.  Higher ones
 * are refused, so a hostile delta cannot make a rebuild spend seconds and
 * hundreds of MB on one page at level 22 (or outlast a cancel).
 */
#define SP_PQ_ZSTD_LEVEL_MAX 9

/* Does a page start with a zstd frame's magic number? */
bool		sp_pq_is_zstd(const uint8_t *src, size_t clen);

/* Largest compressed page, either codec, for n input bytes. */
size_t		sp_pq_bound(size_t n);

/* Expand a page of codec (SP_PQ_*) into exactly ulen bytes; false if it is not that. */
bool		sp_pq_expand(sp_codec *c, int codec, const uint8_t *src, size_t clen, uint8_t *dst,
						 size_t ulen);

/*
 * Compress a page with codec into dst (cap bytes; zstd: at level, exactly
 * as ZSTD_compress does); its length, or 0 on failure.
 */
size_t		sp_pq_compress(sp_codec *c, int codec, int level, const uint8_t *src, size_t n,
						   uint8_t *dst, size_t cap);

/*
 * A zstd page (clen bytes at src): expand it into dst (ulen bytes) and find
 * the level (hint first, then the common ones up to 9) at which zstd
 * compresses it back to the same bytes; *level 0 if none does.  Polls for
 * a cancel before each try (a 4 MiB page takes up to ~0.1 s per level).
 */
sp_status	sp_pq_zstd_level(sp_ctx *ctx, sp_codec *c, const uint8_t *src, size_t clen,
							 uint8_t *dst, size_t ulen, uint8_t *scratch, size_t scratch_cap,
							 int hint, int *level);

#endif							/* SPARSE_PARQUET_H */
