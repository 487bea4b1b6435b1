/*
 * route_int.h -- what route.c needs from route_text.c (internal).
 *
 * route_text.c turns a prompt into its complexity class and its hashed
 * features in one pass; route.c (catalog, decisions, training) calls it.
 */
#ifndef SPARSE_ROUTE_INT_H
#define SPARSE_ROUTE_INT_H

#include "route.h"

/*
 * Where the weights of a feature slot live (slot * stride floats from
 * rows): the tokenizer prefetches each new slot's row so that the dot
 * products after it read from cache.  rows NULL: no prefetching.
 */
typedef struct sp_route_warm
{
	const float *rows;
	size_t		stride;
} sp_route_warm;

/*
 * Classify the prompt (cls may be NULL) and featurize it (feats may be
 * NULL) in one pass over the scored text.  Checks prompt and max_tokens.
 * warm (may be NULL) names weights to prefetch for the features found.
 */
sp_status	sp_route_analyze(sp_ctx *ctx, const char *prompt, size_t len,
							 int64_t max_tokens, sp_route_class *cls,
							 sp_route_features *feats, const sp_route_warm *warm);

#endif							/* SPARSE_ROUTE_INT_H */
