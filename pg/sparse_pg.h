/*
 * sparse_pg.h -- what pg/sparse_pg.c shares with the other files of the
 * PostgreSQL binding (pg/route_pg.c, pg/store_pg.c).
 *
 * A call into the core goes through a sparse_call: an sp_ctx whose hooks
 * allocate in the call's own memory context (a child of the memory context
 * current at sparse_call_init) and never throw.  A failed core call becomes
 * exactly one PostgreSQL error through sparse_raise(), the binding's only
 * translator from sp_status to SQLSTATE.  Include after postgres.h.
 */
#ifndef SPARSE_PG_H
#define SPARSE_PG_H

#include "fmgr.h"

#include "sparse.h"

/* The core context plus the memory context its allocations go to. */
typedef struct sparse_call
{
	sp_ctx		ctx;
	MemoryContext mcxt;
} sparse_call;

/* What a file function is about to do, for the privilege check. */
typedef enum sparse_access
{
	SPARSE_READ,				/* reads server files */
	SPARSE_READ_WRITE			/* reads server files and creates new ones */
} sparse_access;

/* Prepare a call: our hooks, a new context under CurrentMemoryContext. */
extern void sparse_call_init(sparse_call *call);

/* Release the call's memory context. */
extern void sparse_call_done(sparse_call *call);

/* Raise the one error a failed core call stands for. */
extern void sparse_raise(sparse_call *call, sp_status st) pg_attribute_noreturn();

/* The function's composite result (its OUT columns) from values[] and nulls[]. */
extern Datum sparse_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls);

/* Refuse callers without pg_read_server_files (and pg_write_server_files). */
extern void sparse_check_access(sparse_access access);

/* Define the storage settings (pg/store_pg.c); from _PG_init. */
extern void sparse_store_init(void);

/* Define the routing settings and caches (pg/route_pg.c); from _PG_init. */
extern void sparse_route_init(void);

#endif							/* SPARSE_PG_H */
