/*
 * sparse_sqlite.h -- declarations shared by the files of the SQLite
 * extension (./sparse.so): sparse_sqlite.c (entry point, file functions,
 * interrupt hook, error translator), route_sqlite.c (smart routing) and
 * store_sqlite.c (hub storage decisions and jobs).
 *
 * The shared functions are hidden from the shared object's symbol table:
 * only sqlite3_sparse_init is meant to be found by the loader.
 */
#ifndef SPARSE_SQLITE_H
#define SPARSE_SQLITE_H

#include <stdbool.h>

#include "sqlite3ext.h"
#include "sparse.h"

#define SQ_HIDDEN __attribute__((visibility("hidden")))

/* sqlite3_is_interrupted() appeared in SQLite 3.41.0. */
#define SQ_IS_INTERRUPTED_SQLITE 3041000

/* What a hook call needs: the connection and how to ask it for interrupts. */
typedef struct sq_call
{
	sqlite3    *db;
	bool		native_interrupt;	/* sqlite3_is_interrupted() is usable */
} sq_call;

/* State shared by everything one load registers on one connection. */
typedef struct sq_conn sq_conn;

/* Core context for one call: SQLite's allocator, interrupts, SPARSE_ROOT. */
SQ_HIDDEN void sq_ctx_init(sp_ctx *ctx, sq_call *call, const sq_conn *conn);

/* Drop one reference to the connection state (a function's destructor). */
SQ_HIDDEN void sq_conn_release(void *p);

/* Take one more reference to the connection state. */
SQ_HIDDEN void sq_conn_ref(sq_conn *conn);

/* Register the storage functions (store_sqlite.c) on a connection. */
SQ_HIDDEN int sq_store_register(sqlite3 *db, sq_conn *conn, char **errmsg);

/* What sparse_install() adds for storage (store_sqlite.c), in order. */
extern SQ_HIDDEN const char *const sq_store_install_sql[];
extern SQ_HIDDEN const int sq_store_install_n;
SQ_HIDDEN int sq_store_upgrade(sqlite3 *db);

/* Interrupt hook (user is an sq_call): has sqlite3_interrupt() been called? */
SQ_HIDDEN int sq_interrupted(void *user);

/* The one translator from a core status to an SQLite result code. */
SQ_HIDDEN int sq_status_code(const sp_error *err);

/*
 * xBestIndex of a table-valued function whose argument columns are the nargs
 * hidden columns after its ncols result columns (shared by both files).
 */
SQ_HIDDEN int sq_best_index_args(sqlite3_index_info *info, int ncols, int nargs,
								 bool set_returning);

/* Register the routing functions (route_sqlite.c) on a connection. */
SQ_HIDDEN int sq_route_register(sqlite3 *db, char **errmsg);

#endif							/* SPARSE_SQLITE_H */
