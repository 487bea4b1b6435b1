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
 * Classify the prompt (cls may be NULL) and featurize it (feats may be
 * NULL) in one pass over the scored text.  Checks prompt and max_tokens.
 */
sp_status	sp_route_analyze(sp_ctx *ctx, const char *prompt, size_t len,
							 int64_t max_tokens, sp_route_class *cls,
							 sp_route_features *feats);

#endif							/* SPARSE_ROUTE_INT_H */
