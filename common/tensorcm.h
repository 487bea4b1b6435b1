/*
 * tensorcm.h -- context-modelled coding of a float tensor chunk against its
 * base (internal; the CM transform of codec.h).
 *
 * Each element's integer difference from its base (the SUB transform's
 * order-preserving difference, kept signed) is coded with an adaptive binary
 * arithmetic coder: its bit length in the context of the mean magnitude so
 * far along its row and down its column, its sign and the two bits below
 * its leading one in small contexts; the lower bits are stored raw.  A
 * chunk of 64Ki elements or more is coded as two independent halves, which
 * sp_cm_decode decodes on two threads (pure computation).  See
 * tensorcm.c for the model and docs/FORMAT.md for the payload.
 */
#ifndef SPARSE_TENSORCM_H
#define SPARSE_TENSORCM_H

#include "safetensors.h"

typedef struct sp_cm sp_cm;		/* model state and scratch, allocated on first use */

/* Can chunks of dtype dt be coded this way (F32, BF16, F16)? */
bool		sp_cm_supports(sp_dtype dt);

/*
 * Encode n bytes of ft (dtype dt) against base, for a tensor whose rows hold
 * cols elements, the chunk starting at column col0.  *len is the payload
 * length, or 0 when it would not fit in cap (not an error: the caller keeps
 * its other coding, and out is untouched: the payload is built in *cm's
 * scratch and copied to out only when it fits).  *cm is allocated through
 * ctx on first use.
 */
sp_status	sp_cm_encode(sp_ctx *ctx, sp_cm **cm, sp_dtype dt, uint32_t cols, uint32_t col0,
						 const uint8_t *ft, const uint8_t *base, size_t n,
						 uint8_t *out, size_t cap, size_t *len);

/*
 * Decode a payload of plen bytes into ft (n bytes) against base: its
 * segments on up to ctx->threads threads (0: one per core), helpers that
 * call no hook and allocate nothing (their models are made here first).
 */
sp_status	sp_cm_decode(sp_ctx *ctx, sp_cm **cm, sp_dtype dt, const uint8_t *base,
						 const uint8_t *payload, size_t plen, uint8_t *ft, size_t n);

/* Free the state (NULL is fine). */
void		sp_cm_free(sp_ctx *ctx, sp_cm *cm);

#endif							/* SPARSE_TENSORCM_H */
