/*
 * sparse_sqlite.c -- SQLite loadable extension: the sparse core as SQL.
 *
 * Usage (sqlite3 shell; "make" builds ./sparse.so):
 *
 *   .load ./sparse
 *   SELECT savings_pct FROM delta_estimate('base.safetensors', 'ft.safetensors');
 *   SELECT * FROM delta_compress('base.safetensors', 'ft.safetensors', 'ft.delta', 19);
 *   SELECT sha256, verified FROM delta_apply('base.safetensors', 'ft.delta', 'out.safetensors');
 *   SELECT verified FROM delta_verify('base.safetensors', 'ft.delta');
 *   SELECT name, bytes, method FROM delta_info('ft.delta');
 *   SELECT savings_pct FROM dataset_delta_estimate('base.csv', 'derived.csv');
 *   SELECT rows_shared FROM dataset_delta_compress('base.csv', 'derived.csv', 'd.delta');
 *   SELECT delta_apply(b, delta_compress(b, f, 19)) = f FROM models;
 *   SELECT sparse_version();
 *
 * The file functions are eponymous table-valued functions (virtual tables
 * whose arguments are HIDDEN columns) with the same names, arguments and
 * result columns as the PostgreSQL functions, so a query such as
 * "SELECT savings_pct FROM delta_estimate('a', 'b')" runs unchanged in both.
 * One generic virtual table (sq_connect .. sq_column) is driven by a table of
 * descriptors (sq_vtab_defs), one per function.  A NULL argument gives one
 * row of NULLs (no row for delta_info), as PostgreSQL's STRICT does.
 * delta_info also accepts a BLOB holding a delta (PostgreSQL's bytea
 * overload).  The in-memory functions are plain scalars named as in
 * PostgreSQL, delta_compress(base, ft [, level]) and delta_apply(base,
 * delta): a scalar may share its name with an eponymous virtual table
 * (SQLite resolves the name as a function in expressions and as the table
 * in FROM; checked with 3.40.1).  delta_compress_blob and delta_apply_blob
 * are the same scalars under their earlier names, kept as aliases.
 *
 * Every core call gets an sp_ctx whose hooks are SQLite's allocator and an
 * interrupt check (sq_interrupted), and every failure goes through one
 * translator (sq_status_code) to an SQLite result code; the message is the
 * core's, unchanged.
 *
 * Security (see the SQLite section of README.md):
 *   - the file functions are SQLITE_VTAB_DIRECTONLY (sq_connect), so the
 *     schema of an untrusted database (views, triggers) cannot call them;
 *   - SPARSE_ROOT, read once when the extension is loaded, confines every
 *     path (sq_conn_new);
 *   - outputs are never overwritten (the core refuses existing paths);
 *   - blob results are bounded by SQLITE_LIMIT_LENGTH.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sparse.h"
#include "sparse_sqlite.h"

/* SQLITE_DIRECTONLY and SQLITE_VTAB_DIRECTONLY appeared in SQLite 3.31.0. */
#define SQ_MIN_SQLITE 3031000

#define SQ_MAX_ARGS 4

/* Derived rows dataset_delta_estimate codes when sample_rows is not given. */
#define SQ_SAMPLE_ROWS_DEFAULT 1000
/* The core's message for a sample_rows out of range, for values beyond int. */
#define SQ_SAMPLE_ROWS_RANGE_MSG "sample_rows %lld is out of range (1 to 10000000)"

/* Module client data: the connection state plus which function this is. */
typedef struct sq_modaux
{
	sq_conn    *conn;
	const struct sq_vtab_def *def;
} sq_modaux;

/* One cursor over the rows of one call. */
typedef struct sq_cursor sq_cursor;

/* Descriptor of one table-valued function. */
typedef struct sq_vtab_def
{
	const char *name;
	const char *schema;			/* result columns, then HIDDEN arguments */
	int			ncols;			/* result columns */
	int			nargs;			/* HIDDEN argument columns */
	int			nrequired;		/* leading arguments without default */
	const char *argnames[SQ_MAX_ARGS];
	bool		set_returning;	/* NULL argument: no row (else a NULL row) */
	sp_status	(*run) (sq_cursor *cur, sp_ctx *ctx);
	void		(*column) (sq_cursor *cur, sqlite3_context *out, int col);
} sq_vtab_def;

#define SQ_NMODULES 7

struct sq_conn
{
	int			refs;			/* one per registration, one for init */
	bool		native_interrupt;
	char	   *root;			/* canonical SPARSE_ROOT, or "" */
	sq_modaux	modaux[SQ_NMODULES];
};

/* A connected virtual table. */
typedef struct sq_vtab
{
	sqlite3_vtab base;
	sq_call		call;
	const sq_modaux *aux;
} sq_vtab;

struct sq_cursor
{
	sqlite3_vtab_cursor base;
	sqlite3_value *args[SQ_MAX_ARGS];	/* copies; NULL if not given */
	sqlite3_int64 row;
	sqlite3_int64 nrows;
	bool		null_row;		/* STRICT: a NULL argument was given */
	union
	{
		sp_estimate est;
		sp_dataset_est dest;
		sp_compress_result cmp;
		sp_apply_result app;
		sp_info		info;
	}			r;
};

/* ---- hooks and errors ---------------------------------------------------- */

/* Allocation hook: SQLite's allocator, so blob results can be handed over. */
static void *
sq_alloc(void *user, size_t size)
{
	(void) user;
	return sqlite3_malloc64(size);
}

/* Free hook: sqlite3_free. */
static void
sq_free(void *user, void *ptr)
{
	(void) user;
	sqlite3_free(ptr);
}

/*
 * Interrupt hook: has sqlite3_interrupt() been called on this connection?
 *
 * SQLite >= 3.41 answers directly with sqlite3_is_interrupted() (used when
 * both the headers we were built with and the library we run in have it).
 * Older versions (Debian bookworm ships 3.40.1) have no public way to read
 * the flag, and a progress handler cannot help: SQLite calls it only
 * between VDBE opcodes, never while our xFilter or scalar runs, and setting
 * one would replace the application's.  What sqlite3_interrupt() does
 * document is that statements started while an interrupted one is still
 * running are interrupted too; concretely the tokenizer checks the flag, so
 * sqlite3_prepare() of a blank statement fails with SQLITE_INTERRUPT.  We
 * use that as the probe.  It touches no schema and no state but the
 * connection's last error, which SQLite overwrites with ours when the call
 * ends; it costs well under a microsecond, and the core calls it about once
 * per MiB of work.  test/sqlite/run.sh checks that SIGINT in the sqlite3
 * shell (which calls sqlite3_interrupt) stops delta_compress and
 * delta_compress_blob at level 19 within 1 s (measured: 10-190 ms).
 */
int
sq_interrupted(void *user)
{
	const sq_call *call = user;
	sqlite3_stmt *stmt = NULL;
	int			rc;

#if SQLITE_VERSION_NUMBER >= SQ_IS_INTERRUPTED_SQLITE
	if (call->native_interrupt)
		return sqlite3_is_interrupted(call->db);
#endif
	rc = sqlite3_prepare_v2(call->db, " ", -1, &stmt, NULL);
	sqlite3_finalize(stmt);
	return rc == SQLITE_INTERRUPT;
}

/* Set up a core context for one call on a connection. */
void
sq_ctx_init(sp_ctx *ctx, sq_call *call, const sq_conn *conn)
{
	sp_ctx_init(ctx);
	ctx->hooks.alloc = sq_alloc;
	ctx->hooks.free = sq_free;
	ctx->hooks.interrupted = sq_interrupted;
	ctx->hooks.progress = NULL;
	ctx->hooks.user = call;
	ctx->root = conn->root;
}

/* Record an argument error found by the binding, as the core would. */
static sp_status
sq_bad_arg(sp_ctx *ctx, const char *fmt,...)
{
	va_list		ap;

	ctx->err.code = SP_ERR_INVALID_ARG;
	ctx->err.sys_errno = 0;
	va_start(ap, fmt);
	vsnprintf(ctx->err.msg, sizeof(ctx->err.msg), fmt, ap);
	va_end(ap);
	return SP_ERR_INVALID_ARG;
}

/* Record an out-of-memory failure of the binding. */
static sp_status
sq_nomem(sp_ctx *ctx)
{
	ctx->err.code = SP_ERR_NOMEM;
	ctx->err.sys_errno = 0;
	snprintf(ctx->err.msg, sizeof(ctx->err.msg), "out of memory");
	return SP_ERR_NOMEM;
}

/* Is errno the kind that means "could not open or resolve this path"? */
static bool
sq_errno_is_open(int e)
{
	return e == ENOENT || e == ENOTDIR || e == EACCES || e == EPERM ||
		e == EISDIR || e == ELOOP || e == ENAMETOOLONG || e == EROFS ||
		e == EEXIST;
}

/*
 * The one translator from a core status to an SQLite result code.
 *
 * Two SQLite codes are deliberately avoided because they describe the
 * database file itself and SQLite acts on them (checked with SQLite 3.40):
 * plain SQLITE_CORRUPT makes the connection refuse further writes in the
 * current transaction ("database disk image is malformed"), and
 * SQLITE_IOERR / SQLITE_FULL roll back the whole transaction of a writing
 * statement.  A broken delta or a full disk under an output file says
 * nothing about the database, so a bad input gets SQLITE_CORRUPT_VTAB
 * (primary code still SQLITE_CORRUPT) and an I/O failure that is not about
 * opening a path gets SQLITE_ERROR.
 */
int
sq_status_code(const sp_error *err)
{
	switch (err->code)
	{
		case SP_OK:
			return SQLITE_OK;
		case SP_ERR_NOMEM:
			return SQLITE_NOMEM;
		case SP_ERR_CANCELLED:
			return SQLITE_INTERRUPT;
		case SP_ERR_IO:
			return sq_errno_is_open(err->sys_errno) ? SQLITE_CANTOPEN : SQLITE_ERROR;
		case SP_ERR_EXISTS:
			return SQLITE_CANTOPEN;
		case SP_ERR_OUTSIDE_ROOT:
			return SQLITE_PERM;
		case SP_ERR_TOO_LARGE:
			return SQLITE_TOOBIG;
		case SP_ERR_NOT_SAFETENSORS:
		case SP_ERR_HEADER_TOO_LARGE:
		case SP_ERR_BAD_JSON:
		case SP_ERR_BAD_OFFSETS:
		case SP_ERR_UNKNOWN_DTYPE:
		case SP_ERR_SHAPE_MISMATCH:
		case SP_ERR_NOT_DELTA:
		case SP_ERR_UNSUPPORTED_VERSION:
		case SP_ERR_TRUNCATED:
		case SP_ERR_CORRUPT:
		case SP_ERR_VERIFY_FAILED:
			return SQLITE_CORRUPT_VTAB;
		case SP_ERR_WRONG_BASE:
			return SQLITE_CONSTRAINT;
		case SP_ERR_INVALID_ARG:
		case SP_ERR_INTERNAL:
			return SQLITE_ERROR;
	}
	return SQLITE_ERROR;
}

/* Report a failed core call as the error of a scalar function. */
static void
sq_result_fail(sqlite3_context *out, const sp_ctx *ctx)
{
	sqlite3_result_error(out, ctx->err.msg, -1);
	sqlite3_result_error_code(out, sq_status_code(&ctx->err));
}

/* Report a failed core call as the error of a virtual table; return code. */
static int
sq_vtab_fail(sqlite3_vtab *vt, const sp_ctx *ctx)
{
	sqlite3_free(vt->zErrMsg);
	vt->zErrMsg = sqlite3_mprintf("%s", ctx->err.msg);
	return sq_status_code(&ctx->err);
}

/* ---- argument helpers ---------------------------------------------------- */

/* Argument j as a path: text, not a blob. */
static sp_status
sq_arg_path(sq_cursor *cur, sp_ctx *ctx, int j, const char **path)
{
	const sq_vtab_def *def = ((sq_vtab *) cur->base.pVtab)->aux->def;
	sqlite3_value *v = cur->args[j];

	if (sqlite3_value_type(v) == SQLITE_BLOB)
		return sq_bad_arg(ctx, "argument \"%s\" of %s() must be a path (text), not a blob",
						  def->argnames[j], def->name);
	*path = (const char *) sqlite3_value_text(v);
	return *path != NULL ? SP_OK : sq_nomem(ctx);
}

/* A compression level from an SQL value: an integer (the core checks range). */
static sp_status
sq_value_level(sp_ctx *ctx, sqlite3_value *v, const char *fname, int *level)
{
	sqlite3_int64 l;

	if (v == NULL)
	{
		*level = SP_LEVEL_DEFAULT;
		return SP_OK;
	}
	if (sqlite3_value_numeric_type(v) != SQLITE_INTEGER)
		return sq_bad_arg(ctx, "argument \"level\" of %s() must be an integer", fname);
	l = sqlite3_value_int64(v);
	if (l < INT_MIN || l > INT_MAX)
		return sq_bad_arg(ctx, "compression level %lld is out of range (%d to %d)",
						  (long long) l, SP_LEVEL_MIN, SP_LEVEL_MAX);
	*level = (int) l;
	return SP_OK;
}

/* sample_rows from an SQL value: an integer (the core checks range). */
static sp_status
sq_value_sample_rows(sp_ctx *ctx, sqlite3_value *v, int *rows)
{
	sqlite3_int64 n;

	if (v == NULL)
	{
		*rows = SQ_SAMPLE_ROWS_DEFAULT;
		return SP_OK;
	}
	if (sqlite3_value_numeric_type(v) != SQLITE_INTEGER)
		return sq_bad_arg(ctx, "argument \"sample_rows\" of dataset_delta_estimate() must be an integer");
	n = sqlite3_value_int64(v);
	if (n < INT_MIN || n > INT_MAX)
		return sq_bad_arg(ctx, SQ_SAMPLE_ROWS_RANGE_MSG, (long long) n);
	*rows = (int) n;
	return SP_OK;
}

/* ---- the table-valued functions: run and column -------------------------- */

/* delta_estimate(base, ft, sample_fraction DEFAULT 0.01) */
static sp_status
est_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *ft = NULL;
	double		fraction = 0.01;
	sqlite3_value *f = cur->args[2];
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &ft)) != SP_OK)
		return rc;
	if (f != NULL)
	{
		int			t = sqlite3_value_numeric_type(f);

		if (t != SQLITE_INTEGER && t != SQLITE_FLOAT)
			return sq_bad_arg(ctx, "argument \"sample_fraction\" of delta_estimate() must be a number");
		fraction = sqlite3_value_double(f);
	}
	return sp_delta_estimate(ctx, base, ft, fraction, &cur->r.est);
}

/* Columns of delta_estimate. */
static void
est_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	const sp_estimate *e = &cur->r.est;

	switch (col)
	{
		case 0: sqlite3_result_int64(out, (sqlite3_int64) e->base_bytes); break;
		case 1: sqlite3_result_int64(out, (sqlite3_int64) e->ft_bytes); break;
		case 2: sqlite3_result_int64(out, (sqlite3_int64) e->est_delta_bytes); break;
		case 3: sqlite3_result_double(out, e->est_compression); break;
		case 4: sqlite3_result_double(out, e->savings_pct); break;
		case 5: sqlite3_result_int64(out, e->tensors_total); break;
		case 6: sqlite3_result_int64(out, e->tensors_identical); break;
		case 7: sqlite3_result_int64(out, e->tensors_changed); break;
		case 8: sqlite3_result_int64(out, e->tensors_unpaired); break;
		case 9: sqlite3_result_double(out, e->elapsed_ms); break;
	}
}

/* delta_compress(base, ft, out, level DEFAULT 3) */
static sp_status
cmp_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *ft = NULL,
			   *out = NULL;
	int			level = SP_LEVEL_DEFAULT;
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &ft)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 2, &out)) != SP_OK ||
		(rc = sq_value_level(ctx, cur->args[3], "delta_compress", &level)) != SP_OK)
		return rc;
	return sp_delta_compress(ctx, base, ft, out, level, &cur->r.cmp);
}

/* Columns of delta_compress. */
static void
cmp_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	const sp_compress_result *c = &cur->r.cmp;

	switch (col)
	{
		case 0: sqlite3_result_text(out, c->delta_path, -1, SQLITE_TRANSIENT); break;
		case 1: sqlite3_result_int64(out, (sqlite3_int64) c->ft_bytes); break;
		case 2: sqlite3_result_int64(out, (sqlite3_int64) c->delta_bytes); break;
		case 3: sqlite3_result_double(out, c->compression_ratio); break;
		case 4: sqlite3_result_double(out, c->savings_pct); break;
		case 5: sqlite3_result_text(out, c->ft_sha256, -1, SQLITE_TRANSIENT); break;
		case 6: sqlite3_result_text(out, c->base_sha256, -1, SQLITE_TRANSIENT); break;
		case 7: sqlite3_result_double(out, c->elapsed_ms); break;
	}
}

/* dataset_delta_estimate(base, derived, sample_rows DEFAULT 1000) */
static sp_status
dest_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *derived = NULL;
	int			sample_rows = SQ_SAMPLE_ROWS_DEFAULT;
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &derived)) != SP_OK ||
		(rc = sq_value_sample_rows(ctx, cur->args[2], &sample_rows)) != SP_OK)
		return rc;
	return sp_dataset_estimate(ctx, base, derived, sample_rows, &cur->r.dest);
}

/* Columns of dataset_delta_estimate. */
static void
dest_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	const sp_dataset_est *e = &cur->r.dest;

	switch (col)
	{
		case 0: sqlite3_result_int64(out, (sqlite3_int64) e->base_bytes); break;
		case 1: sqlite3_result_int64(out, (sqlite3_int64) e->derived_bytes); break;
		case 2: sqlite3_result_int64(out, e->rows_sampled); break;
		case 3: sqlite3_result_double(out, e->rows_shared_pct); break;
		case 4: sqlite3_result_int64(out, (sqlite3_int64) e->est_delta_bytes); break;
		case 5: sqlite3_result_double(out, e->savings_pct); break;
		case 6: sqlite3_result_text(out, e->format, -1, SQLITE_TRANSIENT); break;
		case 7: sqlite3_result_double(out, e->elapsed_ms); break;
	}
}

/* dataset_delta_compress(base, derived, out, level DEFAULT 3) */
static sp_status
dcmp_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *derived = NULL,
			   *out = NULL;
	int			level = SP_LEVEL_DEFAULT;
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &derived)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 2, &out)) != SP_OK ||
		(rc = sq_value_level(ctx, cur->args[3], "dataset_delta_compress", &level)) != SP_OK)
		return rc;
	return sp_dataset_compress(ctx, base, derived, out, level, &cur->r.cmp);
}

/* Columns of dataset_delta_compress: those of delta_compress, then row counts. */
static void
dcmp_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	switch (col)
	{
		case 8: sqlite3_result_int64(out, cur->r.cmp.rows_total); break;
		case 9: sqlite3_result_int64(out, cur->r.cmp.rows_shared); break;
		default: cmp_column(cur, out, col); break;
	}
}

/* delta_apply(base, delta, out) */
static sp_status
app_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *delta = NULL,
			   *out = NULL;
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &delta)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 2, &out)) != SP_OK)
		return rc;
	return sp_delta_apply(ctx, base, delta, out, &cur->r.app);
}

/* delta_verify(base, delta) */
static sp_status
ver_run(sq_cursor *cur, sp_ctx *ctx)
{
	const char *base = NULL,
			   *delta = NULL;
	sp_status	rc;

	if ((rc = sq_arg_path(cur, ctx, 0, &base)) != SP_OK ||
		(rc = sq_arg_path(cur, ctx, 1, &delta)) != SP_OK)
		return rc;
	return sp_delta_verify(ctx, base, delta, &cur->r.app);
}

/* Columns of delta_apply and delta_verify (out_path NULL when empty). */
static void
app_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	const sp_apply_result *a = &cur->r.app;

	switch (col)
	{
		case 0:
			if (a->out_path[0] != '\0')
				sqlite3_result_text(out, a->out_path, -1, SQLITE_TRANSIENT);
			else
				sqlite3_result_null(out);
			break;
		case 1: sqlite3_result_int64(out, (sqlite3_int64) a->bytes); break;
		case 2: sqlite3_result_text(out, a->sha256, -1, SQLITE_TRANSIENT); break;
		case 3: sqlite3_result_int(out, a->verified ? 1 : 0); break;
		case 4: sqlite3_result_double(out, a->elapsed_ms); break;
	}
}

/* delta_info(delta): a path, or a BLOB holding the delta itself. */
static sp_status
info_run(sq_cursor *cur, sp_ctx *ctx)
{
	sqlite3_value *v = cur->args[0];
	const char *path = NULL;
	sp_status	rc;

	if (sqlite3_value_type(v) == SQLITE_BLOB)
	{
		const void *p = sqlite3_value_blob(v);
		int			n = sqlite3_value_bytes(v);

		rc = sp_delta_info_mem(ctx, p ? p : "", (size_t) n, &cur->r.info);
	}
	else if ((rc = sq_arg_path(cur, ctx, 0, &path)) == SP_OK)
		rc = sp_delta_info(ctx, path, &cur->r.info);
	if (rc == SP_OK)
		cur->nrows = (sqlite3_int64) cur->r.info.n;
	return rc;
}

/* Columns of delta_info: one row per stored file. */
static void
info_column(sq_cursor *cur, sqlite3_context *out, int col)
{
	const sp_info_row *r = &cur->r.info.rows[cur->row];

	switch (col)
	{
		case 0: sqlite3_result_text(out, r->name, -1, SQLITE_TRANSIENT); break;
		case 1: sqlite3_result_int64(out, (sqlite3_int64) r->bytes); break;
		case 2: sqlite3_result_int64(out, (sqlite3_int64) r->delta_bytes); break;
		case 3: sqlite3_result_text(out, r->sha256, -1, SQLITE_TRANSIENT); break;
		case 4: sqlite3_result_text(out, r->method, -1, SQLITE_STATIC); break;
	}
}

/* The table-valued functions; their order is that of sq_conn.modaux. */
static const sq_vtab_def sq_vtab_defs[SQ_NMODULES] = {
	{"delta_estimate",
		"CREATE TABLE x(base_bytes INTEGER, ft_bytes INTEGER, est_delta_bytes INTEGER,"
		" est_compression REAL, savings_pct REAL, tensors_total INTEGER,"
		" tensors_identical INTEGER, tensors_changed INTEGER, tensors_unpaired INTEGER,"
		" elapsed_ms REAL, base HIDDEN, ft HIDDEN, sample_fraction HIDDEN)",
	10, 3, 2, {"base", "ft", "sample_fraction"}, false, est_run, est_column},
	{"delta_compress",
		"CREATE TABLE x(delta_path TEXT, ft_bytes INTEGER, delta_bytes INTEGER,"
		" compression_ratio REAL, savings_pct REAL, ft_sha256 TEXT, base_sha256 TEXT,"
		" elapsed_ms REAL, base HIDDEN, ft HIDDEN, out HIDDEN, level HIDDEN)",
	8, 4, 3, {"base", "ft", "out", "level"}, false, cmp_run, cmp_column},
	{"delta_apply",
		"CREATE TABLE x(out_path TEXT, bytes INTEGER, sha256 TEXT, verified INTEGER,"
		" elapsed_ms REAL, base HIDDEN, delta HIDDEN, out HIDDEN)",
	5, 3, 3, {"base", "delta", "out"}, false, app_run, app_column},
	{"delta_verify",
		"CREATE TABLE x(out_path TEXT, bytes INTEGER, sha256 TEXT, verified INTEGER,"
		" elapsed_ms REAL, base HIDDEN, delta HIDDEN)",
	5, 2, 2, {"base", "delta"}, false, ver_run, app_column},
	{"delta_info",
		"CREATE TABLE x(name TEXT, bytes INTEGER, delta_bytes INTEGER, sha256 TEXT,"
		" method TEXT, delta HIDDEN)",
	5, 1, 1, {"delta"}, true, info_run, info_column},
	{"dataset_delta_estimate",
		"CREATE TABLE x(base_bytes INTEGER, derived_bytes INTEGER, rows_sampled INTEGER,"
		" rows_shared_pct REAL, est_delta_bytes INTEGER, savings_pct REAL, format TEXT,"
		" elapsed_ms REAL, base HIDDEN, derived HIDDEN, sample_rows HIDDEN)",
	8, 3, 2, {"base", "derived", "sample_rows"}, false, dest_run, dest_column},
	{"dataset_delta_compress",
		"CREATE TABLE x(delta_path TEXT, ft_bytes INTEGER, delta_bytes INTEGER,"
		" compression_ratio REAL, savings_pct REAL, ft_sha256 TEXT, base_sha256 TEXT,"
		" elapsed_ms REAL, rows_total INTEGER, rows_shared INTEGER,"
		" base HIDDEN, derived HIDDEN, out HIDDEN, level HIDDEN)",
	10, 4, 3, {"base", "derived", "out", "level"}, false, dcmp_run, dcmp_column},
};

/* ---- the generic virtual table ------------------------------------------- */

/* xConnect: declare the columns and forbid use from the schema. */
static int
sq_connect(sqlite3 *db, void *paux, int argc, const char *const *argv,
		   sqlite3_vtab **out, char **errmsg)
{
	const sq_modaux *aux = paux;
	sq_vtab    *vt;
	int			rc;

	(void) argc;
	(void) argv;
	if ((rc = sqlite3_declare_vtab(db, aux->def->schema)) != SQLITE_OK)
		return rc;

	/*
	 * Security: these functions read and create files as the process's user.
	 * SQLITE_VTAB_DIRECTONLY makes SQLite refuse them inside views, triggers
	 * and other schema objects, so merely opening a hostile database file and
	 * querying one of its views cannot make them run; only SQL the
	 * application itself submits can.
	 */
	if ((rc = sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY)) != SQLITE_OK)
	{
		*errmsg = sqlite3_mprintf("%s: could not mark the virtual table direct-only",
								  aux->def->name);
		return rc;
	}
	if ((vt = sqlite3_malloc(sizeof(*vt))) == NULL)
		return SQLITE_NOMEM;
	memset(vt, 0, sizeof(*vt));
	vt->call.db = db;
	vt->call.native_interrupt = aux->conn->native_interrupt;
	vt->aux = aux;
	*out = &vt->base;
	return SQLITE_OK;
}

/* xDisconnect. */
static int
sq_disconnect(sqlite3_vtab *vt)
{
	sqlite3_free(vt);
	return SQLITE_OK;
}

/*
 * xBestIndex of a table-valued function: every usable "=" on an argument
 * column becomes an argument (table-valued function syntax f(a, b) is such
 * "=" constraints); idxNum is the bit mask of the arguments given.  A plan
 * where an argument's "=" is not yet usable (a join column not yet
 * evaluated) is refused, so SQLite picks an order that supplies it.  Other
 * operators on argument columns are left to SQLite, which checks them
 * against what xColumn returns.
 */
int
sq_best_index_args(sqlite3_index_info *info, int ncols, int nargs, bool set_returning)
{
	int			at[32];
	int			mask = 0,
				unusable = 0,
				next = 1;

	for (int i = 0; i < info->nConstraint; i++)
	{
		const struct sqlite3_index_constraint *c = &info->aConstraint[i];
		int			j = c->iColumn - ncols;

		if (j < 0 || j >= nargs || j >= 32 || c->op != SQLITE_INDEX_CONSTRAINT_EQ)
			continue;
		if (!c->usable)
			unusable |= 1 << j;
		else
		{
			mask |= 1 << j;
			at[j] = i;
		}
	}
	if (unusable & ~mask)
		return SQLITE_CONSTRAINT;
	for (int j = 0; j < nargs && j < 32; j++)
	{
		if (!(mask & (1 << j)))
			continue;
		info->aConstraintUsage[at[j]].argvIndex = next++;
		info->aConstraintUsage[at[j]].omit = 1;
	}
	info->idxNum = mask;
	info->estimatedCost = 1e6;
	info->estimatedRows = set_returning ? 10 : 1;
	if (!set_returning)
		info->idxFlags = SQLITE_INDEX_SCAN_UNIQUE;
	return SQLITE_OK;
}

/* xBestIndex of the file functions. */
static int
sq_best_index(sqlite3_vtab *pvt, sqlite3_index_info *info)
{
	const sq_vtab_def *def = ((sq_vtab *) pvt)->aux->def;

	return sq_best_index_args(info, def->ncols, def->nargs, def->set_returning);
}

/* xOpen. */
static int
sq_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
	sq_cursor  *cur = sqlite3_malloc(sizeof(*cur));

	(void) vt;
	if (cur == NULL)
		return SQLITE_NOMEM;
	memset(cur, 0, sizeof(*cur));
	*out = &cur->base;
	return SQLITE_OK;
}

/* Drop the arguments and rows of the previous call. */
static void
sq_cursor_reset(sq_cursor *cur)
{
	sq_vtab    *vt = (sq_vtab *) cur->base.pVtab;

	for (int j = 0; j < SQ_MAX_ARGS; j++)
		sqlite3_value_free(cur->args[j]);
	if (vt->aux->def->run == info_run)
	{
		sp_ctx		ctx;

		sq_ctx_init(&ctx, &vt->call, vt->aux->conn);
		sp_info_free(&ctx, &cur->r.info);
	}
	memset((char *) cur + sizeof(cur->base), 0, sizeof(*cur) - sizeof(cur->base));
}

/* xClose. */
static int
sq_close(sqlite3_vtab_cursor *base)
{
	sq_cursor_reset((sq_cursor *) base);
	sqlite3_free(base);
	return SQLITE_OK;
}

/* Copy the arguments of this call; check the required ones are there. */
static sp_status
sq_take_args(sq_cursor *cur, sp_ctx *ctx, int mask, int argc, sqlite3_value **argv)
{
	const sq_vtab_def *def = ((sq_vtab *) cur->base.pVtab)->aux->def;
	int			k = 0;

	for (int j = 0; j < def->nargs && k < argc; j++)
	{
		if (!(mask & (1 << j)))
			continue;
		if ((cur->args[j] = sqlite3_value_dup(argv[k++])) == NULL)
			return sq_nomem(ctx);
		if (sqlite3_value_type(cur->args[j]) == SQLITE_NULL)
			cur->null_row = true;
	}
	for (int j = 0; j < def->nrequired; j++)
		if (cur->args[j] == NULL)
			return sq_bad_arg(ctx, "missing argument \"%s\" of %s()",
							  def->argnames[j], def->name);
	return SP_OK;
}

/* xFilter: run the function with the arguments SQLite passes. */
static int
sq_filter(sqlite3_vtab_cursor *base, int idxnum, const char *idxstr,
		  int argc, sqlite3_value **argv)
{
	sq_cursor  *cur = (sq_cursor *) base;
	sq_vtab    *vt = (sq_vtab *) base->pVtab;
	const sq_vtab_def *def = vt->aux->def;
	sp_ctx		ctx;

	(void) idxstr;
	sq_cursor_reset(cur);
	sq_ctx_init(&ctx, &vt->call, vt->aux->conn);
	if (sq_take_args(cur, &ctx, idxnum, argc, argv) != SP_OK)
		return sq_vtab_fail(&vt->base, &ctx);
	/* STRICT, as in PostgreSQL: a NULL argument means a NULL result */
	if (cur->null_row)
	{
		cur->nrows = def->set_returning ? 0 : 1;
		return SQLITE_OK;
	}
	cur->nrows = 1;
	if (def->run(cur, &ctx) != SP_OK)
	{
		cur->nrows = 0;
		return sq_vtab_fail(&vt->base, &ctx);
	}
	return SQLITE_OK;
}

/* xNext. */
static int
sq_next(sqlite3_vtab_cursor *base)
{
	((sq_cursor *) base)->row++;
	return SQLITE_OK;
}

/* xEof. */
static int
sq_eof(sqlite3_vtab_cursor *base)
{
	const sq_cursor *cur = (const sq_cursor *) base;

	return cur->row >= cur->nrows;
}

/* xColumn: a result column, or the value of an argument column. */
static int
sq_column(sqlite3_vtab_cursor *base, sqlite3_context *out, int col)
{
	sq_cursor  *cur = (sq_cursor *) base;
	const sq_vtab_def *def = ((sq_vtab *) base->pVtab)->aux->def;

	if (col >= def->ncols)
	{
		if (cur->args[col - def->ncols] != NULL)
			sqlite3_result_value(out, cur->args[col - def->ncols]);
	}
	else if (!cur->null_row)
		def->column(cur, out, col);
	return SQLITE_OK;
}

/* xRowid: the row number. */
static int
sq_rowid(sqlite3_vtab_cursor *base, sqlite_int64 *rowid)
{
	*rowid = ((sq_cursor *) base)->row;
	return SQLITE_OK;
}

/* Eponymous-only: no xCreate/xDestroy, so CREATE VIRTUAL TABLE is refused. */
static sqlite3_module sq_module = {
	.iVersion = 0,
	.xCreate = NULL,
	.xConnect = sq_connect,
	.xBestIndex = sq_best_index,
	.xDisconnect = sq_disconnect,
	.xDestroy = NULL,
	.xOpen = sq_open,
	.xClose = sq_close,
	.xFilter = sq_filter,
	.xNext = sq_next,
	.xEof = sq_eof,
	.xColumn = sq_column,
	.xRowid = sq_rowid,
};

/* ---- scalar functions ---------------------------------------------------- */

/* The call hooks of a scalar on its connection. */
static sq_call
sq_scalar_call(sqlite3_context *out)
{
	const sq_conn *conn = sqlite3_user_data(out);
	sq_call		call = {sqlite3_context_db_handle(out), conn->native_interrupt};

	return call;
}

/* Bytes of a blob argument (never a NULL pointer). */
static const void *
sq_blob(sqlite3_value *v, size_t *len)
{
	const void *p = sqlite3_value_blob(v);

	*len = (size_t) sqlite3_value_bytes(v);
	return p ? p : "";
}

/* The largest string or blob this connection accepts. */
static size_t
sq_max_len(sqlite3_context *out)
{
	int			lim = sqlite3_limit(sqlite3_context_db_handle(out), SQLITE_LIMIT_LENGTH, -1);

	return lim > 0 ? (size_t) lim : 0;
}

/* sparse_version(): version of the core library. */
static void
sq_version_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	(void) argc;
	(void) argv;
	sqlite3_result_text(out, sp_version(), -1, SQLITE_STATIC);
}

/*
 * delta_compress(base, ft [, level]) and its alias delta_compress_blob: the
 * delta of ft against base.  fname is the name called, for messages.
 */
static void
sq_compress_mem(sqlite3_context *out, int argc, sqlite3_value **argv, const char *fname)
{
	sq_call		call = sq_scalar_call(out);
	sp_ctx		ctx;
	const void *base,
			   *ft;
	size_t		base_len,
				ft_len,
				res_len = 0;
	void	   *res = NULL;
	int			level = SP_LEVEL_DEFAULT;

	for (int i = 0; i < argc; i++)
		if (sqlite3_value_type(argv[i]) == SQLITE_NULL)
			return;				/* STRICT: NULL in, NULL out */
	sq_ctx_init(&ctx, &call, sqlite3_user_data(out));
	base = sq_blob(argv[0], &base_len);
	ft = sq_blob(argv[1], &ft_len);
	if (sq_value_level(&ctx, argc > 2 ? argv[2] : NULL, fname, &level) != SP_OK ||
		sp_delta_compress_mem(&ctx, base, base_len, ft, ft_len, level,
							  sq_max_len(out), &res, &res_len) != SP_OK)
	{
		sq_result_fail(out, &ctx);
		return;
	}
	/* res came from sq_alloc (sqlite3_malloc64): SQLite takes it over */
	sqlite3_result_blob64(out, res, res_len, sqlite3_free);
}

/* delta_compress(base, ft [, level]) as a scalar (BLOB arguments). */
static void
sq_compress_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	sq_compress_mem(out, argc, argv, "delta_compress");
}

/* delta_compress_blob(base, ft [, level]): the alias of the scalar delta_compress. */
static void
sq_compress_blob_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	sq_compress_mem(out, argc, argv, "delta_compress_blob");
}

/*
 * delta_apply(base, delta) as a scalar, and its alias delta_apply_blob: the
 * fine-tune rebuilt and verified.
 */
static void
sq_apply_blob_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	sq_call		call = sq_scalar_call(out);
	sp_ctx		ctx;
	const void *base,
			   *delta;
	size_t		base_len,
				delta_len,
				res_len = 0;
	void	   *res = NULL;

	for (int i = 0; i < argc; i++)
		if (sqlite3_value_type(argv[i]) == SQLITE_NULL)
			return;				/* STRICT: NULL in, NULL out */
	sq_ctx_init(&ctx, &call, sqlite3_user_data(out));
	base = sq_blob(argv[0], &base_len);
	delta = sq_blob(argv[1], &delta_len);
	if (sp_delta_apply_mem(&ctx, base, base_len, delta, delta_len,
						   sq_max_len(out), &res, &res_len) != SP_OK)
	{
		sq_result_fail(out, &ctx);
		return;
	}
	sqlite3_result_blob64(out, res, res_len, sqlite3_free);
}

/*
 * The scalar functions.  They touch no file, so they are INNOCUOUS (usable
 * from views, triggers and CHECK constraints).  delta_apply (alias
 * delta_apply_blob) is also DETERMINISTIC: its result is by definition the
 * exact fine-tune the delta was made from, verified by SHA-256.
 * delta_compress (alias delta_compress_blob) is not: a newer zstd may
 * produce other (equally valid) delta bytes for the same inputs, and SQLite
 * lets DETERMINISTIC functions into indexes and generated columns, which
 * would then silently disagree with their table.  delta_compress and
 * delta_apply share their names with the eponymous virtual tables
 * registered below: SQLite keeps functions and modules apart, so the scalar
 * is what an expression calls and the table is what FROM reads.
 */
static const struct
{
	const char *name;
	int			nargs;
	int			flags;
	void		(*fn) (sqlite3_context *, int, sqlite3_value **);
}			sq_scalars[] = {
	{"sparse_version", 0, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, sq_version_fn},
	{"delta_compress", 2, SQLITE_INNOCUOUS, sq_compress_fn},
	{"delta_compress", 3, SQLITE_INNOCUOUS, sq_compress_fn},
	{"delta_apply", 2, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, sq_apply_blob_fn},
	{"delta_compress_blob", 2, SQLITE_INNOCUOUS, sq_compress_blob_fn},
	{"delta_compress_blob", 3, SQLITE_INNOCUOUS, sq_compress_blob_fn},
	{"delta_apply_blob", 2, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, sq_apply_blob_fn},
};

/* ---- registration -------------------------------------------------------- */

/* Drop one reference to the connection state (the destructor SQLite calls). */
void
sq_conn_release(void *p)
{
	sq_conn    *conn = p;

	if (conn != NULL && --conn->refs == 0)
	{
		sqlite3_free(conn->root);
		sqlite3_free(conn);
	}
}

/* Take one more reference to the connection state. */
void
sq_conn_ref(sq_conn *conn)
{
	conn->refs++;
}

/* The destructor of a module's client data. */
static void
sq_modaux_release(void *p)
{
	sq_conn_release(((sq_modaux *) p)->conn);
}

/*
 * Create the connection state.  Security: the confinement root comes from
 * the environment variable SPARSE_ROOT, read once here, so no SQL can
 * change it.  It is resolved now (symlinks and all) and the load fails if
 * it is not a directory: a typo must not silently mean "no confinement",
 * and swapping the path for a symlink later cannot move the root.
 */
static int
sq_conn_new(sq_conn **out, char **errmsg)
{
	const char *env = getenv("SPARSE_ROOT");
	sq_conn    *conn = sqlite3_malloc(sizeof(*conn));
	char	   *canon = NULL;
	struct stat st;

	if (conn == NULL)
		return SQLITE_NOMEM;
	memset(conn, 0, sizeof(*conn));
	conn->refs = 1;
	conn->native_interrupt = sqlite3_libversion_number() >= SQ_IS_INTERRUPTED_SQLITE;
	if (env != NULL && env[0] != '\0' &&
		((canon = realpath(env, NULL)) == NULL || stat(canon, &st) != 0 || !S_ISDIR(st.st_mode)))
	{
		*errmsg = sqlite3_mprintf("SPARSE_ROOT \"%s\" is not a directory", env);
		free(canon);
		sqlite3_free(conn);
		return SQLITE_ERROR;
	}
	conn->root = sqlite3_mprintf("%s", canon ? canon : "");
	free(canon);
	if (conn->root == NULL)
	{
		sqlite3_free(conn);
		return SQLITE_NOMEM;
	}
	for (int i = 0; i < SQ_NMODULES; i++)
	{
		conn->modaux[i].conn = conn;
		conn->modaux[i].def = &sq_vtab_defs[i];
	}
	*out = conn;
	return SQLITE_OK;
}

/* Register every scalar and module; stop at the first failure. */
static int
sq_register_all(sqlite3 *db, sq_conn *conn, char **errmsg)
{
	int			rc = SQLITE_OK;
	const char *what = NULL;

	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(sq_scalars) / sizeof(sq_scalars[0]); i++)
	{
		conn->refs++;			/* released by SQLite, even on failure */
		rc = sqlite3_create_function_v2(db, sq_scalars[i].name, sq_scalars[i].nargs,
										SQLITE_UTF8 | sq_scalars[i].flags, conn,
										sq_scalars[i].fn, NULL, NULL, sq_conn_release);
		what = sq_scalars[i].name;
	}
	for (int i = 0; rc == SQLITE_OK && i < SQ_NMODULES; i++)
	{
		conn->refs++;
		rc = sqlite3_create_module_v2(db, sq_vtab_defs[i].name, &sq_module,
									  &conn->modaux[i], sq_modaux_release);
		what = sq_vtab_defs[i].name;
	}
	if (rc != SQLITE_OK)
		*errmsg = sqlite3_mprintf("sparse: could not register %s: %s",
								  what, sqlite3_errstr(rc));
	return rc;
}

#ifdef _WIN32
__declspec(dllexport)
#endif
/* Entry point: ".load ./sparse" or sqlite3_load_extension(db, "./sparse", 0, &err). */
int
sqlite3_sparse_init(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api)
{
	sq_conn    *conn = NULL;
	int			rc;

	SQLITE_EXTENSION_INIT2(api);
	/* Security: without DIRECTONLY the file functions would be reachable
	 * from an untrusted schema, so refuse to load on older SQLite. */
	if (sqlite3_libversion_number() < SQ_MIN_SQLITE)
	{
		*errmsg = sqlite3_mprintf("sparse needs SQLite 3.31.0 or later (this is %s)",
								  sqlite3_libversion());
		return SQLITE_ERROR;
	}
	if ((rc = sq_conn_new(&conn, errmsg)) != SQLITE_OK)
		return rc;
	rc = sq_register_all(db, conn, errmsg);
	if (rc == SQLITE_OK)
		rc = sq_store_register(db, conn, errmsg);	/* store_sqlite.c */
	sq_conn_release(conn);
	if (rc == SQLITE_OK)
		rc = sq_route_register(db, errmsg);	/* route_sqlite.c */
	return rc;
}
