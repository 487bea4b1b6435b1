/*
 * route_sqlite.c -- smart routing (docs/ROUTING.md) in the SQLite extension.
 *
 * Usage (sqlite3 shell, after ".load ./sparse"):
 *
 *   SELECT sparse_install();                 -- tables, triggers, view
 *   INSERT INTO sparse_route_catalog VALUES ('small', 'llama', 'L4', 0.2, 8192, 0.9, 0.7, 0.4, 1);
 *   SELECT * FROM route_classify('Prove that sqrt(2) is irrational.');
 *   SELECT recommended_model, routed, reason
 *     FROM route_decision('big', 'hello', 100, 0.85, 1, 'req-42');
 *   INSERT OR REPLACE INTO sparse_settings VALUES ('sparse.route_log', 'on');
 *   SELECT * FROM route_train();
 *   SELECT route_predict('hello', 'small'), route_hash('hello');
 *   SELECT * FROM sparse_routing_report;
 *
 * Objects have the names and columns of the PostgreSQL extension.
 * route_classify, route_decision and route_train are eponymous table-valued
 * functions (arguments are HIDDEN columns; one generic virtual table, rt_*,
 * driven by the descriptors in rt_defs).  The argument column of
 * route_decision's requested model is named requested_model_arg, because a
 * virtual table cannot have two columns named requested_model and the
 * result has one.  route_predict, route_hash and sparse_install are scalars.
 *
 * sparse_install() creates, idempotently and in one SAVEPOINT, the
 * statements of rt_install_sql: the four tables, sparse_settings,
 * sparse_route_version (one row), the triggers that change
 * sparse_route_version.v whenever the catalog, the predictors or the
 * settings change, and the sparse_routing_report view; then the storage
 * objects of sq_store_install_sql (store_sqlite.c).
 *
 * Caching: each connection keeps one rt_conn (the user data of every
 * routing function) holding the catalog, the learned predictors and the
 * settings, loaded into an sp_route_catalog.  Every call first steps a
 * statement kept prepared on the connection, "SELECT v FROM
 * main.sparse_route_version", and reloads everything only when v differs
 * from the value it loaded with.  A statement kept prepared past the end of
 * a call would make sqlite3_close() fail ("unable to close due to
 * unfinalized statements"), and SQLite calls no destructor of ours before
 * that check, except xDisconnect of virtual tables.  So the cached
 * statements live only while an internal eponymous virtual table,
 * sparse_route_cache (no rows, direct-only), is connected: the first cache
 * use connects it, and its xDisconnect, which sqlite3_close() calls before
 * its check, finalizes them.  It is a table of its own because a cached
 * statement may hold a reference to any table it reads through a trigger
 * (a TEMP trigger on sparse_route_log calling route_decision, say), and a
 * referenced table is disconnected only after that statement is finalized.
 *
 * Settings: the rows of sparse_settings named sparse.routing_percentage
 * (a number, or numeric text, from 0 to 100), sparse.route_log and
 * sparse.route_log_prompts (0/1, or on/off, true/false, yes/no in any
 * case).  A missing row or a NULL value means the default; anything else
 * is an error naming the setting.  They are cached with the catalog (the
 * triggers on sparse_settings change v too).
 *
 * route_decision with sparse.route_log on inserts the decision into
 * sparse_route_log with a statement also kept prepared: features as a BLOB
 * of little-endian u32, the prompt only with sparse.route_log_prompts on.
 * route_train reads the catalog itself (not the cache), runs the two
 * ordered queries of docs/ROUTING.md once per epoch (sqlite3_reset), and
 * replaces sparse_route_model inside a SAVEPOINT; SQLite allows no
 * SAVEPOINT while a writing statement runs, so route_train (like
 * sparse_install) refuses to run inside INSERT ... SELECT.
 *
 * Every core call gets an sp_ctx with SQLite's allocator and the interrupt
 * hook of sparse_sqlite.c; core failures go through its translator
 * (sq_status_code) with the core's message unchanged; failures of SQL we
 * run keep SQLite's own result code.  Names of tables in our own statements
 * are qualified with "main." so that a TEMP table of the same name cannot
 * stand in for them.
 *
 * Security: functions that read or write the routing tables
 * (route_decision, route_train, route_predict, sparse_install) are direct
 * only, so the schema of a database someone else wrote (its views and
 * triggers) cannot make them run; see rt_connect and rt_scalars.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "route.h"
#include "sparse.h"
#include "sparse_sqlite.h"

#define RT_MAX_ARGS 6
#define RT_NMODULES 4
#define RT_DEFAULT_MAX_TOKENS 100
#define RT_DEFAULT_THRESHOLD 0.85
#define RT_SAVEPOINT_TRAIN "sparse_route_train"

/* ---- types --------------------------------------------------------------- */

/* The routing settings, as read from sparse_settings. */
typedef struct rt_settings
{
	double		routing_percentage; /* sparse.routing_percentage, 0..100 */
	bool		route_log;		/* sparse.route_log */
	bool		route_log_prompts;	/* sparse.route_log_prompts */
} rt_settings;

typedef struct rt_conn rt_conn;

/* Module client data: the connection state plus which function this is. */
typedef struct rt_modaux
{
	rt_conn    *conn;
	const struct rt_def *def;
} rt_modaux;

/* Per-connection state shared by every routing function. */
struct rt_conn
{
	int			refs;			/* one per registration, one for init */
	bool		native_interrupt;
	int			anchored;		/* sparse_route_cache is connected */
	sqlite3_stmt *version_stmt; /* cached while anchored */
	sqlite3_stmt *log_stmt;		/* cached while anchored */
	bool		loaded;			/* cat and set hold version's content */
	sqlite3_int64 version;
	sp_route_catalog cat;
	rt_settings set;
	sp_route_features feats;	/* scratch: features of one request */
	rt_modaux	modaux[RT_NMODULES];
};

/* One call: the core context, its hooks, and an SQLite failure if any. */
typedef struct rt_call
{
	sq_call		hook;			/* hooks.user of ctx */
	sp_ctx		ctx;
	int			sql_rc;			/* result code of a failed SQL call, else 0 */
	rt_conn    *conn;
} rt_call;

typedef struct rt_cursor rt_cursor;

/* Descriptor of one table-valued function. */
typedef struct rt_def
{
	const char *name;
	const char *schema;			/* result columns, then HIDDEN arguments */
	int			ncols;			/* result columns */
	int			nargs;			/* HIDDEN argument columns */
	int			nrequired;		/* leading arguments without default */
	const char *argnames[RT_MAX_ARGS];
	bool		directonly;		/* else innocuous */
	sp_status	(*run) (rt_cursor *cur, rt_call *c);
	void		(*column) (rt_cursor *cur, sqlite3_context *out, int col);
} rt_def;

/* A connected virtual table. */
typedef struct rt_vtab
{
	sqlite3_vtab base;
	sqlite3    *db;
	const rt_modaux *aux;
} rt_vtab;

/* What route_decision returns (strings copied: the catalog may reload). */
typedef struct rt_decision_row
{
	sp_route_decision d;
	char	   *requested;
	char	   *recommended;
	char	   *hardware;		/* NULL: SQL NULL */
} rt_decision_row;

/* One cursor over the (single) row of one call. */
struct rt_cursor
{
	sqlite3_vtab_cursor base;
	sqlite3_value *args[RT_MAX_ARGS];	/* copies; NULL if not given */
	sqlite3_int64 row;
	sqlite3_int64 nrows;
	union
	{
		sp_route_class cls;
		rt_decision_row dec;
		sp_route_train_result train;
	}			r;
};

/* ---- hooks and errors ---------------------------------------------------- */

/* Allocation hook: SQLite's allocator. */
static void *
rt_alloc(void *user, size_t size)
{
	(void) user;
	return sqlite3_malloc64(size);
}

/* Free hook: sqlite3_free. */
static void
rt_free(void *user, void *ptr)
{
	(void) user;
	sqlite3_free(ptr);
}

/* Set up one call on a connection. */
static void
rt_call_init(rt_call *c, sqlite3 *db, rt_conn *conn)
{
	memset(c, 0, sizeof(*c));
	c->hook.db = db;
	c->hook.native_interrupt = conn->native_interrupt;
	c->conn = conn;
	sp_ctx_init(&c->ctx);
	c->ctx.hooks.alloc = rt_alloc;
	c->ctx.hooks.free = rt_free;
	c->ctx.hooks.interrupted = sq_interrupted;
	c->ctx.hooks.progress = NULL;
	c->ctx.hooks.user = &c->hook;
}

/* Record an error found by the binding (code: the core status it is). */
static sp_status
rt_fail(rt_call *c, sp_status code, const char *fmt,...)
{
	va_list		ap;

	c->ctx.err.code = code;
	c->ctx.err.sys_errno = 0;
	va_start(ap, fmt);
	vsnprintf(c->ctx.err.msg, sizeof(c->ctx.err.msg), fmt, ap);
	va_end(ap);
	return code;
}

/*
 * Record the failure of SQL we ran (SQLite's code and message, after what
 * we were doing).  A missing table means sparse_install() was not run.
 */
static sp_status
rt_sql_fail(rt_call *c, int rc, const char *what)
{
	const char *msg = sqlite3_errmsg(c->hook.db);

	if (rc == SQLITE_INTERRUPT)
		return rt_fail(c, SP_ERR_CANCELLED, "canceling statement due to user request");
	c->sql_rc = rc;
	if (strncmp(msg, "no such table", 13) == 0)
		return rt_fail(c, SP_ERR_INVALID_ARG,
					   "%s: %s (run SELECT sparse_install() to create the routing tables)",
					   what, msg);
	return rt_fail(c, SP_ERR_INVALID_ARG, "%s: %s", what, msg);
}

/* The SQLite result code of a failed call. */
static int
rt_code(const rt_call *c)
{
	return c->sql_rc != 0 ? c->sql_rc : sq_status_code(&c->ctx.err);
}

/* Report a failed call as the error of a scalar function. */
static void
rt_result_fail(sqlite3_context *out, const rt_call *c)
{
	sqlite3_result_error(out, c->ctx.err.msg, -1);
	sqlite3_result_error_code(out, rt_code(c));
}

/* Report a failed call as the error of a virtual table; return the code. */
static int
rt_vtab_fail(sqlite3_vtab *vt, const rt_call *c)
{
	sqlite3_free(vt->zErrMsg);
	vt->zErrMsg = sqlite3_mprintf("%s", c->ctx.err.msg);
	return rt_code(c);
}

/* ---- sparse_install ------------------------------------------------------ */

/* Now as ISO-8601 text in UTC (the SQLite form of timestamptz). */
#define RT_NOW "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

/* Body of a trigger: a new change token, so every cache reloads. */
#define RT_BUMP " BEGIN UPDATE sparse_route_version SET v = random(); END"

/* Three triggers (insert, update, delete) on a table that caches depend on. */
#define RT_WATCH(t) \
	"CREATE TRIGGER IF NOT EXISTS " t "_ins AFTER INSERT ON " t RT_BUMP, \
	"CREATE TRIGGER IF NOT EXISTS " t "_upd AFTER UPDATE ON " t RT_BUMP, \
	"CREATE TRIGGER IF NOT EXISTS " t "_del AFTER DELETE ON " t RT_BUMP

/* The aggregates of one row of sparse_routing_report, over the "costs" rows. */
#define RT_REPORT_AGGREGATES \
	" count(*) AS requests, count(*) FILTER (WHERE routed) AS routed," \
	" sum(requested_cost) AS requested_cost," \
	" sum(recommended_cost) AS recommended_cost," \
	" sum(served_cost) AS served_cost," \
	" avg(observed_quality) FILTER (WHERE routed) AS quality_routed," \
	" avg(observed_quality) FILTER (WHERE NOT routed) AS quality_not_routed," \
	" count(observed_quality) FILTER (WHERE routed) AS observed_routed," \
	" count(observed_quality) FILTER (WHERE NOT routed) AS observed_not_routed" \
	" FROM costs"

/* A savings percentage of cost c against the requested cost (as PostgreSQL). */
#define RT_REPORT_SAVINGS(c) \
	" CASE WHEN requested_cost > 0 THEN 100.0 * (1 - " c " / requested_cost)" \
	"  WHEN requested_cost = 0 THEN 0.0 END"

/*
 * What sparse_install() runs, in order; each statement is idempotent.  Add
 * new objects at the end.  Types are SQLite's spelling of docs/ROUTING.md;
 * typeof() checks keep text out of numeric columns (which SQLite would
 * otherwise store and compare as greater than any number).
 *
 * sparse_route_version.v is a change token, not a counter: a trigger sets
 * it to a new random value.  With "v = v + 1", a connection that loaded a
 * catalog change inside a transaction later rolled back would hold v + 1,
 * and would miss another connection's committed change that also made it
 * v + 1; a random 64-bit token cannot come back.
 *
 * The report is PostgreSQL's view (pg/sparse--0.1.0.sql) in SQLite's
 * dialect: the same arithmetic, in REAL (100.0 *, / 1e6, never integer
 * division), CASE instead of a division by zero (NULL without requests or
 * without priced requests, 0 savings when the requested cost is 0), and a
 * UNION ALL total row where PostgreSQL has GROUPING SETS; the total row
 * (requested_model NULL) exists even for an empty log, as there.
 */
static const char *const rt_install_sql[] = {
	"CREATE TABLE IF NOT EXISTS sparse_route_catalog ("
	" model_id TEXT PRIMARY KEY NOT NULL,"
	" family TEXT,"
	" hardware TEXT,"
	" cost_per_1m_tokens REAL NOT NULL"
	"  CHECK (typeof(cost_per_1m_tokens) = 'real' AND cost_per_1m_tokens >= 0),"
	" context_window INTEGER NOT NULL"
	"  CHECK (typeof(context_window) = 'integer' AND context_window > 0),"
	" quality_simple REAL NOT NULL CHECK (quality_simple BETWEEN 0 AND 1),"
	" quality_moderate REAL NOT NULL CHECK (quality_moderate BETWEEN 0 AND 1),"
	" quality_complex REAL NOT NULL CHECK (quality_complex BETWEEN 0 AND 1),"
	" enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)))",

	"CREATE TABLE IF NOT EXISTS sparse_route_feedback ("
	" id INTEGER PRIMARY KEY,"
	" prompt TEXT NOT NULL,"
	" model_id TEXT NOT NULL,"
	" quality REAL NOT NULL CHECK (quality BETWEEN 0 AND 1),"
	" at TEXT NOT NULL DEFAULT " RT_NOW ")",

	"CREATE TABLE IF NOT EXISTS sparse_route_log ("
	" id INTEGER PRIMARY KEY,"
	" at TEXT NOT NULL DEFAULT " RT_NOW ","
	" request_id TEXT,"
	" prompt_hash INTEGER NOT NULL,"
	" prompt TEXT,"
	" features BLOB NOT NULL,"
	" requested_model TEXT NOT NULL,"
	" recommended_model TEXT NOT NULL,"
	" served_model TEXT NOT NULL,"
	" routed INTEGER NOT NULL CHECK (routed IN (0, 1)),"
	" complexity TEXT NOT NULL,"
	" est_tokens INTEGER NOT NULL,"
	" requested_cost_per_1m_tokens REAL,"
	" recommended_cost_per_1m_tokens REAL,"
	" served_cost_per_1m_tokens REAL,"
	" predicted_quality REAL,"
	" observed_quality REAL CHECK (observed_quality BETWEEN 0 AND 1))",

	"CREATE TABLE IF NOT EXISTS sparse_route_model ("
	" model_id TEXT PRIMARY KEY NOT NULL,"
	" feature_version INTEGER NOT NULL,"
	" rows INTEGER NOT NULL,"
	" epochs INTEGER NOT NULL,"
	" train_loss REAL NOT NULL,"
	" trained_at TEXT NOT NULL DEFAULT " RT_NOW ","
	" weights BLOB NOT NULL)",

	"CREATE TABLE IF NOT EXISTS sparse_settings (name TEXT PRIMARY KEY NOT NULL, value)",

	"CREATE TABLE IF NOT EXISTS sparse_route_version (v INTEGER NOT NULL)",
	"INSERT INTO sparse_route_version SELECT random()"
	" WHERE NOT EXISTS (SELECT 1 FROM sparse_route_version)",

	RT_WATCH("sparse_route_catalog"),
	RT_WATCH("sparse_route_model"),
	RT_WATCH("sparse_settings"),

	"CREATE VIEW IF NOT EXISTS sparse_routing_report AS"
	" WITH costs AS ("
	"  SELECT requested_model, routed, observed_quality,"
	"   est_tokens * requested_cost_per_1m_tokens / 1e6 AS requested_cost,"
	"   est_tokens * recommended_cost_per_1m_tokens / 1e6 AS recommended_cost,"
	"   est_tokens * served_cost_per_1m_tokens / 1e6 AS served_cost"
	"  FROM sparse_route_log),"
	" sums AS ("
	"  SELECT requested_model," RT_REPORT_AGGREGATES " GROUP BY requested_model"
	"  UNION ALL"
	"  SELECT NULL," RT_REPORT_AGGREGATES ")"
	" SELECT requested_model, requests, routed,"
	"  CASE WHEN requests > 0 THEN 100.0 * routed / requests END AS routed_pct,"
	"  requested_cost, recommended_cost, served_cost,"
	RT_REPORT_SAVINGS("served_cost") " AS savings_pct,"
	RT_REPORT_SAVINGS("recommended_cost") " AS potential_savings_pct,"
	"  quality_routed, quality_not_routed, observed_routed, observed_not_routed"
	" FROM sums ORDER BY requested_model IS NULL, requested_model",
};

/* Run one statement of ours with sqlite3_exec; record a failure. */
static sp_status
rt_exec(rt_call *c, const char *sql, const char *what)
{
	int			rc = sqlite3_exec(c->hook.db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? SP_OK : rt_sql_fail(c, rc, what);
}

/*
 * Open a savepoint for fname().  SQLite refuses one while a statement that
 * writes is running, so a call from INSERT ... SELECT or CREATE TABLE ...
 * AS SELECT cannot be atomic: say so rather than write outside it.
 */
static sp_status
rt_savepoint_begin(rt_call *c, const char *name, const char *fname)
{
	char	   *sql = sqlite3_mprintf("SAVEPOINT %s", name);
	int			rc;

	if (sql == NULL)
		return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	rc = sqlite3_exec(c->hook.db, sql, NULL, NULL, NULL);
	sqlite3_free(sql);
	if (rc == SQLITE_BUSY)
		return rt_fail(c, SP_ERR_INVALID_ARG,
					   "%s() cannot run inside a statement that writes (such as INSERT ... SELECT): call it in a SELECT of its own",
					   fname);
	return rc == SQLITE_OK ? SP_OK : rt_sql_fail(c, rc, fname);
}

/* Undo and end a savepoint after a failure (keeping the first error). */
static void
rt_savepoint_abort(sqlite3 *db, const char *name)
{
	char	   *sql = sqlite3_mprintf("ROLLBACK TO %s; RELEASE %s", name, name);

	if (sql != NULL)
		sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_free(sql);
}

/* sparse_install(): create the routing objects (idempotent). */
static void
rt_install_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	rt_conn    *conn = sqlite3_user_data(out);
	rt_call		c;
	sp_status	rc = SP_OK;
	int			irc;
	char	   *msg;

	(void) argc;
	(void) argv;
	rt_call_init(&c, sqlite3_context_db_handle(out), conn);
	if (rt_savepoint_begin(&c, "sparse_install", "sparse_install") != SP_OK)
	{
		rt_result_fail(out, &c);
		return;
	}
	for (size_t i = 0; rc == SP_OK && i < sizeof(rt_install_sql) / sizeof(rt_install_sql[0]); i++)
		rc = rt_exec(&c, rt_install_sql[i], "sparse_install()");
	for (int i = 0; rc == SP_OK && i < sq_store_install_n; i++)
		rc = rt_exec(&c, sq_store_install_sql[i], "sparse_install()");
	if (rc == SP_OK && (irc = sq_store_upgrade(c.hook.db)) != SQLITE_OK)
		rc = rt_sql_fail(&c, irc, "sparse_install()");
	if (rc == SP_OK)
		rc = rt_exec(&c, "RELEASE sparse_install", "sparse_install()");
	if (rc != SP_OK)
	{
		rt_savepoint_abort(c.hook.db, "sparse_install");
		rt_result_fail(out, &c);
		return;
	}
	msg = sqlite3_mprintf("sparse %s installed", sp_version());
	if (msg == NULL)
		sqlite3_result_error_nomem(out);
	else
		sqlite3_result_text(out, msg, -1, sqlite3_free);
}

/* ---- statements kept prepared per connection ----------------------------- */

/* Finalize the cached statements (sparse_route_cache is going away). */
static void
rt_drop_cached(rt_conn *conn)
{
	sqlite3_finalize(conn->version_stmt);
	sqlite3_finalize(conn->log_stmt);
	conn->version_stmt = NULL;
	conn->log_stmt = NULL;
}

/*
 * Make sure sparse_route_cache is connected, so that its xDisconnect will
 * finalize the cached statements before sqlite3_close() checks for
 * unfinalized ones.  Preparing a statement that names an eponymous virtual
 * table connects it (it stays connected until the connection closes); the
 * statement itself is not run.  "main." keeps a TEMP table of that name
 * from hiding ours (eponymous tables live in main).
 */
static void
rt_anchor(rt_call *c)
{
	sqlite3_stmt *stmt = NULL;

	if (c->conn->anchored > 0)
		return;
	sqlite3_prepare_v2(c->hook.db, "SELECT 1 FROM main.sparse_route_cache", -1, &stmt, NULL);
	sqlite3_finalize(stmt);
}

/*
 * The statement sql, kept in *slot when it can be (see rt_anchor: if a
 * table named sparse_route_cache hides ours, nothing is kept and every call
 * prepares its own).  A kept statement still running (a TEMP trigger on
 * sparse_route_log calling route_decision again) is not handed out twice:
 * the nested call gets one of its own.  Give it back with rt_stmt_done.
 */
static sp_status
rt_stmt_get(rt_call *c, sqlite3_stmt **slot, const char *sql, const char *what,
			sqlite3_stmt **out)
{
	int			rc;

	if (*slot != NULL && !sqlite3_stmt_busy(*slot))
	{
		*out = *slot;
		return SP_OK;
	}
	rt_anchor(c);
	rc = sqlite3_prepare_v3(c->hook.db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, what);
	if (*slot == NULL && c->conn->anchored > 0)
		*slot = *out;
	return SP_OK;
}

/* Give back a statement from rt_stmt_get: reset it, or finalize it. */
static void
rt_stmt_done(sqlite3_stmt **slot, sqlite3_stmt *stmt)
{
	if (stmt == *slot)
	{
		sqlite3_reset(stmt);
		sqlite3_clear_bindings(stmt);
	}
	else
		sqlite3_finalize(stmt);
}

/* ---- loading the catalog, the predictors and the settings ----------------- */

/* Is column i of the current row a number? */
static bool
rt_col_is_number(sqlite3_stmt *stmt, int i)
{
	int			t = sqlite3_column_type(stmt, i);

	return t == SQLITE_INTEGER || t == SQLITE_FLOAT;
}

/* One sparse_route_catalog row into the catalog. */
static sp_status
rt_catalog_row(rt_call *c, sqlite3_stmt *stmt, sp_route_catalog *cat)
{
	static const char *const names[] = {"cost_per_1m_tokens", "context_window",
	"quality_simple", "quality_moderate", "quality_complex", "enabled"};
	const char *id = (const char *) sqlite3_column_text(stmt, 0);
	sp_route_model m;

	for (int i = 3; i <= 8; i++)
		if (!rt_col_is_number(stmt, i))
			return rt_fail(c, SP_ERR_INVALID_ARG,
						   "sparse_route_catalog: column \"%s\" of model \"%s\" is not a number",
						   names[i - 3], id ? id : "");
	memset(&m, 0, sizeof(m));
	m.model_id = id;
	m.family = (const char *) sqlite3_column_text(stmt, 1);
	m.hardware = (const char *) sqlite3_column_text(stmt, 2);
	m.cost_per_1m_tokens = sqlite3_column_double(stmt, 3);
	m.context_window = sqlite3_column_int64(stmt, 4);
	for (int k = 0; k < 3; k++)
		m.quality[k] = sqlite3_column_double(stmt, 5 + k);
	m.enabled = sqlite3_column_int64(stmt, 8) != 0;
	if (m.model_id == NULL)
		m.model_id = "";		/* the core refuses an empty model_id */
	return sp_route_catalog_add(&c->ctx, cat, &m);
}

/* Read sparse_route_catalog into cat. */
static sp_status
rt_load_catalog(rt_call *c, sp_route_catalog *cat)
{
	static const char sql[] =
		"SELECT model_id, family, hardware, cost_per_1m_tokens, context_window,"
		" quality_simple, quality_moderate, quality_complex, enabled"
		" FROM main.sparse_route_catalog ORDER BY model_id";
	sqlite3_stmt *stmt = NULL;
	sp_status	st = SP_OK;
	int			rc = sqlite3_prepare_v2(c->hook.db, sql, -1, &stmt, NULL);

	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, "reading sparse_route_catalog");
	while (st == SP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW)
		st = rt_catalog_row(c, stmt, cat);
	if (st == SP_OK && rc != SQLITE_DONE)
		st = rt_sql_fail(c, rc, "reading sparse_route_catalog");
	sqlite3_finalize(stmt);
	return st;
}

/* Learned predictors read from sparse_route_model (copies of the rows). */
typedef struct rt_learned
{
	size_t		n,
				cap;
	char	  **ids;
	void	  **blobs;
	size_t	   *lens;
} rt_learned;

/* Free what rt_learned_add collected. */
static void
rt_learned_free(rt_learned *l)
{
	for (size_t i = 0; i < l->n; i++)
	{
		sqlite3_free(l->ids[i]);
		sqlite3_free(l->blobs[i]);
	}
	sqlite3_free(l->ids);
	sqlite3_free(l->blobs);
	sqlite3_free(l->lens);
	memset(l, 0, sizeof(*l));
}

/* Copy one sparse_route_model row (model_id, weights). */
static sp_status
rt_learned_add(rt_call *c, rt_learned *l, sqlite3_stmt *stmt)
{
	int			len = sqlite3_column_bytes(stmt, 1);
	const void *blob = sqlite3_column_blob(stmt, 1);

	if (l->n == l->cap)
	{
		size_t		cap = l->cap ? 2 * l->cap : 16;
		char	  **ids = sqlite3_realloc64(l->ids, cap * sizeof(*ids));
		void	  **blobs = ids ? sqlite3_realloc64(l->blobs, cap * sizeof(*blobs)) : NULL;
		size_t	   *lens = blobs ? sqlite3_realloc64(l->lens, cap * sizeof(*lens)) : NULL;

		if (ids != NULL)
			l->ids = ids;
		if (blobs != NULL)
			l->blobs = blobs;
		if (lens == NULL)
			return rt_fail(c, SP_ERR_NOMEM, "out of memory");
		l->lens = lens;
		l->cap = cap;
	}
	l->ids[l->n] = sqlite3_mprintf("%s", (const char *) sqlite3_column_text(stmt, 0));
	l->blobs[l->n] = sqlite3_malloc64(len > 0 ? (size_t) len : 1);
	l->lens[l->n] = (size_t) len;
	if (l->ids[l->n] == NULL || l->blobs[l->n] == NULL)
	{
		sqlite3_free(l->ids[l->n]);
		sqlite3_free(l->blobs[l->n]);
		return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	}
	if (len > 0)
		memcpy(l->blobs[l->n], blob, (size_t) len);
	l->n++;
	return SP_OK;
}

/*
 * Read sparse_route_model and install its predictors into cat.  Rows of
 * another feature version are left out (those models use their priors
 * until the next route_train), as in PostgreSQL.
 */
static sp_status
rt_load_learned(rt_call *c, sp_route_catalog *cat)
{
	static const char sql[] =
		"SELECT model_id, weights FROM main.sparse_route_model"
		" WHERE feature_version = ?1 ORDER BY model_id";
	sqlite3_stmt *stmt = NULL;
	rt_learned	l = {0};
	sp_status	st = SP_OK;
	int			rc = sqlite3_prepare_v2(c->hook.db, sql, -1, &stmt, NULL);

	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, "reading sparse_route_model");
	sqlite3_bind_int(stmt, 1, SP_ROUTE_FEATURE_VERSION);
	while (st == SP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW)
		if (sqlite3_column_type(stmt, 0) != SQLITE_NULL)
			st = rt_learned_add(c, &l, stmt);
	if (st == SP_OK && rc != SQLITE_DONE)
		st = rt_sql_fail(c, rc, "reading sparse_route_model");
	sqlite3_finalize(stmt);
	if (st == SP_OK)
		st = sp_route_catalog_set_learned(&c->ctx, cat, l.n,
										  (const char *const *) l.ids,
										  (const void *const *) l.blobs, l.lens);
	rt_learned_free(&l);
	return st;
}

/* The error of a bad value in sparse_settings. */
static sp_status
rt_bad_setting(rt_call *c, sqlite3_stmt *stmt, const char *expected)
{
	return rt_fail(c, SP_ERR_INVALID_ARG,
				   "invalid value for setting \"%s\" in sparse_settings: '%s' (%s)",
				   (const char *) sqlite3_column_text(stmt, 0),
				   (const char *) sqlite3_column_text(stmt, 1), expected);
}

/* sparse.routing_percentage: a number (or numeric text) from 0 to 100. */
static sp_status
rt_setting_percentage(rt_call *c, sqlite3_stmt *stmt, double *pct)
{
	const char *txt = (const char *) sqlite3_column_text(stmt, 1);
	char	   *end = NULL;
	double		v;

	if (rt_col_is_number(stmt, 1))
		v = sqlite3_column_double(stmt, 1);
	else if (sqlite3_column_type(stmt, 1) == SQLITE_TEXT && txt != NULL)
	{
		v = strtod(txt, &end);
		while (end != NULL && *end == ' ')
			end++;
		if (end == txt || end == NULL || *end != '\0')
			v = NAN;
	}
	else
		v = NAN;
	if (!(v >= 0 && v <= 100))	/* also NaN */
		return rt_bad_setting(c, stmt, "a number from 0 to 100");
	*pct = v;
	return SP_OK;
}

/* A boolean setting: 0/1, or on/off, true/false, yes/no in any case. */
static sp_status
rt_setting_bool(rt_call *c, sqlite3_stmt *stmt, bool *b)
{
	static const char *const on[] = {"on", "true", "yes", "1"};
	static const char *const off[] = {"off", "false", "no", "0"};
	const char *txt = (const char *) sqlite3_column_text(stmt, 1);

	if (sqlite3_column_type(stmt, 1) == SQLITE_INTEGER &&
		(sqlite3_column_int64(stmt, 1) == 0 || sqlite3_column_int64(stmt, 1) == 1))
	{
		*b = sqlite3_column_int64(stmt, 1) == 1;
		return SP_OK;
	}
	for (int i = 0; sqlite3_column_type(stmt, 1) == SQLITE_TEXT && txt != NULL && i < 4; i++)
	{
		if (strcasecmp(txt, on[i]) == 0 || strcasecmp(txt, off[i]) == 0)
		{
			*b = strcasecmp(txt, on[i]) == 0;
			return SP_OK;
		}
	}
	return rt_bad_setting(c, stmt, "on or off");
}

/*
 * Read the routing settings; a missing row, or a NULL value, means the
 * default.  Other names in sparse_settings are not ours to check.
 */
static sp_status
rt_load_settings(rt_call *c, rt_settings *set)
{
	static const char sql[] =
		"SELECT name, value FROM main.sparse_settings WHERE name IN"
		" ('sparse.routing_percentage', 'sparse.route_log', 'sparse.route_log_prompts')"
		" AND value IS NOT NULL";
	sqlite3_stmt *stmt = NULL;
	sp_status	st = SP_OK;
	int			rc = sqlite3_prepare_v2(c->hook.db, sql, -1, &stmt, NULL);

	set->routing_percentage = 100;
	set->route_log = false;
	set->route_log_prompts = false;
	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, "reading sparse_settings");
	while (st == SP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW)
	{
		const char *name = (const char *) sqlite3_column_text(stmt, 0);

		if (name == NULL)
			st = rt_fail(c, SP_ERR_NOMEM, "out of memory");
		else if (strcmp(name, "sparse.routing_percentage") == 0)
			st = rt_setting_percentage(c, stmt, &set->routing_percentage);
		else if (strcmp(name, "sparse.route_log") == 0)
			st = rt_setting_bool(c, stmt, &set->route_log);
		else
			st = rt_setting_bool(c, stmt, &set->route_log_prompts);
	}
	if (st == SP_OK && rc != SQLITE_DONE)
		st = rt_sql_fail(c, rc, "reading sparse_settings");
	sqlite3_finalize(stmt);
	return st;
}

/* Load catalog, predictors and settings into the connection's cache. */
static sp_status
rt_reload(rt_call *c, sqlite3_int64 version)
{
	rt_conn    *conn = c->conn;
	sp_route_catalog cat;
	rt_settings set;
	sp_status	st;

	sp_route_catalog_init(&cat);
	if ((st = rt_load_catalog(c, &cat)) != SP_OK ||
		(st = rt_load_learned(c, &cat)) != SP_OK ||
		(st = rt_load_settings(c, &set)) != SP_OK)
	{
		sp_route_catalog_free(&c->ctx, &cat);
		return st;
	}
	sp_route_catalog_free(&c->ctx, &conn->cat);
	conn->cat = cat;
	conn->set = set;
	conn->version = version;
	conn->loaded = true;
	return SP_OK;
}

/*
 * Check that sparse_install() ran, by preparing the version statement; on
 * success *stmt is it (give it back with rt_stmt_done).
 */
static sp_status
rt_version_stmt(rt_call *c, sqlite3_stmt **stmt)
{
	static const char sql[] = "SELECT v FROM main.sparse_route_version";

	if (rt_stmt_get(c, &c->conn->version_stmt, sql, "reading sparse_route_version",
					stmt) == SP_OK)
		return SP_OK;
	if (strncmp(sqlite3_errmsg(c->hook.db), "no such table", 13) == 0)
		return rt_fail(c, SP_ERR_INVALID_ARG,
					   "sparse routing is not installed in this database: run SELECT sparse_install() first");
	return c->ctx.err.code;
}

/*
 * Make the connection's cache current: read sparse_route_version.v (one
 * row) and reload when it is not the value the cache was loaded at.
 */
static sp_status
rt_cache_check(rt_call *c)
{
	rt_conn    *conn = c->conn;
	sqlite3_stmt *stmt = NULL;
	sqlite3_int64 v = 0;
	int			rc;

	if (rt_version_stmt(c, &stmt) != SP_OK)
		return c->ctx.err.code;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(stmt, 0);
	rt_stmt_done(&conn->version_stmt, stmt);
	if (rc == SQLITE_DONE)
		return rt_fail(c, SP_ERR_INVALID_ARG,
					   "sparse_route_version has no row: run SELECT sparse_install() to restore it");
	if (rc != SQLITE_ROW)
		return rt_sql_fail(c, rc, "reading sparse_route_version");
	if (conn->loaded && v == conn->version)
		return SP_OK;
	conn->loaded = false;
	return rt_reload(c, v);
}

/* ---- arguments ----------------------------------------------------------- */

/* The descriptor of the function a cursor belongs to. */
static const rt_def *
rt_cur_def(const rt_cursor *cur)
{
	return ((const rt_vtab *) cur->base.pVtab)->aux->def;
}

/* Argument j as text (bytes and length); absent or NULL gives NULL. */
static sp_status
rt_arg_text(rt_cursor *cur, rt_call *c, int j, const char **p, size_t *len)
{
	sqlite3_value *v = cur->args[j];

	*p = NULL;
	*len = 0;
	if (v == NULL || sqlite3_value_type(v) == SQLITE_NULL)
		return SP_OK;
	if ((*p = (const char *) sqlite3_value_text(v)) == NULL)
		return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	*len = (size_t) sqlite3_value_bytes(v);
	return SP_OK;
}

/* Argument j, which has a default: absent gives it, NULL is refused. */
static sp_status
rt_arg_present(rt_cursor *cur, rt_call *c, int j, int want, const char *what,
			   sqlite3_value **v)
{
	const rt_def *def = rt_cur_def(cur);

	*v = cur->args[j];
	if (*v == NULL)
		return SP_OK;
	if (sqlite3_value_type(*v) == SQLITE_NULL)
		return rt_fail(c, SP_ERR_INVALID_ARG, "%s must not be null", def->argnames[j]);
	if (sqlite3_value_numeric_type(*v) != want &&
		!(want == SQLITE_FLOAT && sqlite3_value_numeric_type(*v) == SQLITE_INTEGER))
		return rt_fail(c, SP_ERR_INVALID_ARG, "argument \"%s\" of %s() must be %s",
					   def->argnames[j], def->name, what);
	return SP_OK;
}

/* An integer argument with a default. */
static sp_status
rt_arg_int(rt_cursor *cur, rt_call *c, int j, int64_t dflt, int64_t *out)
{
	sqlite3_value *v;

	if (rt_arg_present(cur, c, j, SQLITE_INTEGER, "an integer", &v) != SP_OK)
		return c->ctx.err.code;
	*out = v ? sqlite3_value_int64(v) : dflt;
	return SP_OK;
}

/* A number argument with a default. */
static sp_status
rt_arg_double(rt_cursor *cur, rt_call *c, int j, double dflt, double *out)
{
	sqlite3_value *v;

	if (rt_arg_present(cur, c, j, SQLITE_FLOAT, "a number", &v) != SP_OK)
		return c->ctx.err.code;
	*out = v ? sqlite3_value_double(v) : dflt;
	return SP_OK;
}

/* A boolean argument (an integer, nonzero is true, as SQLite's TRUE/FALSE). */
static sp_status
rt_arg_bool(rt_cursor *cur, rt_call *c, int j, bool dflt, bool *out)
{
	sqlite3_value *v;

	if (rt_arg_present(cur, c, j, SQLITE_INTEGER, "a boolean (0 or 1)", &v) != SP_OK)
		return c->ctx.err.code;
	*out = v ? sqlite3_value_int64(v) != 0 : dflt;
	return SP_OK;
}

/* A double as an SQL value: NaN is NULL. */
static void
rt_result_double(sqlite3_context *out, double v)
{
	if (isnan(v))
		sqlite3_result_null(out);
	else
		sqlite3_result_double(out, v);
}

/* Text as an SQL value: a NULL pointer is NULL. */
static void
rt_result_text(sqlite3_context *out, const char *s)
{
	if (s == NULL)
		sqlite3_result_null(out);
	else
		sqlite3_result_text(out, s, -1, SQLITE_TRANSIENT);
}

/* ---- route_classify ------------------------------------------------------ */

/* route_classify(prompt, max_tokens DEFAULT 100) */
static sp_status
cls_run(rt_cursor *cur, rt_call *c)
{
	const char *prompt;
	size_t		len;
	int64_t		max_tokens = RT_DEFAULT_MAX_TOKENS;

	if (rt_arg_text(cur, c, 0, &prompt, &len) != SP_OK ||
		rt_arg_int(cur, c, 1, RT_DEFAULT_MAX_TOKENS, &max_tokens) != SP_OK)
		return c->ctx.err.code;
	return sp_route_classify(&c->ctx, prompt, len, max_tokens, &cur->r.cls);
}

/* Columns of route_classify (est_prompt_tokens capped to int, as PostgreSQL). */
static void
cls_column(rt_cursor *cur, sqlite3_context *out, int col)
{
	const sp_route_class *cls = &cur->r.cls;

	switch (col)
	{
		case 0: sqlite3_result_text(out, sp_complexity_name(cls->complexity), -1, SQLITE_STATIC); break;
		case 1: sqlite3_result_double(out, cls->score); break;
		case 2: sqlite3_result_int64(out, cls->est_prompt_tokens < INT32_MAX ?
									 cls->est_prompt_tokens : INT32_MAX); break;
		case 3: sqlite3_result_text(out, cls->signals, -1, SQLITE_TRANSIENT); break;
	}
}

/* ---- route_decision ------------------------------------------------------ */

/* Read route_decision's arguments into req (pointers into the arguments). */
static sp_status
dec_args(rt_cursor *cur, rt_call *c, sp_route_request *req)
{
	size_t		len;

	memset(req, 0, sizeof(*req));
	if (rt_arg_int(cur, c, 2, RT_DEFAULT_MAX_TOKENS, &req->max_tokens) != SP_OK ||
		rt_arg_double(cur, c, 3, RT_DEFAULT_THRESHOLD, &req->quality_threshold) != SP_OK ||
		rt_arg_bool(cur, c, 4, true, &req->cost_priority) != SP_OK ||
		rt_arg_text(cur, c, 0, &req->requested_model, &len) != SP_OK ||
		rt_arg_text(cur, c, 1, &req->prompt, &req->prompt_len) != SP_OK ||
		rt_arg_text(cur, c, 5, &req->request_id, &req->request_id_len) != SP_OK)
		return c->ctx.err.code;
	return SP_OK;
}

/* Copy the names of a decision out of the catalog (a reload may free it). */
static sp_status
dec_copy_names(rt_call *c, const sp_route_catalog *cat, const sp_route_request *req,
			   rt_decision_row *row)
{
	const sp_route_model *rec = row->d.recommended >= 0 ? &cat->models[row->d.recommended] : NULL;

	row->requested = sqlite3_mprintf("%s", req->requested_model);
	row->recommended = sqlite3_mprintf("%s", rec ? rec->model_id : req->requested_model);
	row->hardware = (rec && rec->hardware) ? sqlite3_mprintf("%s", rec->hardware) : NULL;
	if (row->requested == NULL || row->recommended == NULL ||
		(rec && rec->hardware && row->hardware == NULL))
		return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	return SP_OK;
}

/* Bind a double, NaN as NULL. */
static int
rt_bind_double(sqlite3_stmt *stmt, int i, double v)
{
	return isnan(v) ? sqlite3_bind_null(stmt, i) : sqlite3_bind_double(stmt, i, v);
}

/* Bind the feature slots as a BLOB of little-endian u32. */
static int
rt_bind_features(sqlite3_stmt *stmt, int i, const sp_route_features *f)
{
	unsigned char *b = sqlite3_malloc64(4 * (size_t) f->n + 1);

	if (b == NULL)
		return SQLITE_NOMEM;
	for (uint32_t k = 0; k < f->n; k++)
	{
		b[4 * k] = (unsigned char) f->idx[k];
		b[4 * k + 1] = (unsigned char) (f->idx[k] >> 8);
		b[4 * k + 2] = (unsigned char) (f->idx[k] >> 16);
		b[4 * k + 3] = (unsigned char) (f->idx[k] >> 24);
	}
	return sqlite3_bind_blob64(stmt, i, b, 4 * (sqlite3_uint64) f->n, sqlite3_free);
}

/* Bind what the log row says about the served model (index served, or -1). */
static void
dec_bind_served(sqlite3_stmt *stmt, const sp_route_catalog *cat, const rt_decision_row *row,
				const char *requested)
{
	const sp_route_decision *d = &row->d;
	double		quality = NAN;

	if (d->served >= 0 && d->served == d->recommended)
		quality = d->predicted_quality;
	else if (d->served >= 0 && d->served == d->requested)
		quality = d->requested_predicted_quality;
	sqlite3_bind_text(stmt, 7, d->served >= 0 ? cat->models[d->served].model_id : requested,
					  -1, SQLITE_TRANSIENT);
	rt_bind_double(stmt, 13, d->served >= 0 ? cat->models[d->served].cost_per_1m_tokens : NAN);
	rt_bind_double(stmt, 14, quality);
}

/* Insert the decision into sparse_route_log (sparse.route_log is on). */
static sp_status
dec_log(rt_call *c, const sp_route_request *req, const rt_decision_row *row,
		const sp_route_features *feats)
{
	static const char sql[] =
		"INSERT INTO main.sparse_route_log (request_id, prompt_hash, prompt,"
		" features, requested_model, recommended_model, served_model, routed,"
		" complexity, est_tokens, requested_cost_per_1m_tokens,"
		" recommended_cost_per_1m_tokens, served_cost_per_1m_tokens,"
		" predicted_quality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
		" ?11, ?12, ?13, ?14)";
	rt_conn    *conn = c->conn;
	const sp_route_decision *d = &row->d;
	int64_t		est = d->cls.context_tokens;
	sqlite3_stmt *stmt = NULL;
	int			rc;

	if (rt_stmt_get(c, &conn->log_stmt, sql, "writing sparse_route_log", &stmt) != SP_OK)
		return c->ctx.err.code;
	if (req->request_id != NULL)
		sqlite3_bind_text64(stmt, 1, req->request_id, req->request_id_len,
							SQLITE_TRANSIENT, SQLITE_UTF8);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64) sp_route_hash(req->prompt, req->prompt_len));
	if (conn->set.route_log_prompts)
		sqlite3_bind_text64(stmt, 3, req->prompt, req->prompt_len, SQLITE_TRANSIENT, SQLITE_UTF8);
	rc = rt_bind_features(stmt, 4, feats);
	sqlite3_bind_text(stmt, 5, row->requested, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 6, row->recommended, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(stmt, 8, d->routed ? 1 : 0);
	sqlite3_bind_text(stmt, 9, sp_complexity_name(d->cls.complexity), -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 10, req->max_tokens > INT64_MAX - est ? INT64_MAX : est + req->max_tokens);
	rt_bind_double(stmt, 11, d->requested_cost_per_1m_tokens);
	rt_bind_double(stmt, 12, d->estimated_cost_per_1m_tokens);
	dec_bind_served(stmt, &conn->cat, row, row->requested);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	rt_stmt_done(&conn->log_stmt, stmt);
	if (rc == SQLITE_NOMEM)
		return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	return rc == SQLITE_DONE ? SP_OK : rt_sql_fail(c, rc, "writing sparse_route_log");
}

/*
 * route_decision(requested_model, prompt, max_tokens DEFAULT 100,
 * quality_threshold DEFAULT 0.85, cost_priority DEFAULT 1, request_id
 * DEFAULT NULL).  A NULL model or prompt reaches the core, which names it.
 */
static sp_status
dec_run(rt_cursor *cur, rt_call *c)
{
	rt_conn    *conn = c->conn;
	rt_decision_row *row = &cur->r.dec;
	sp_route_request req;
	sp_status	st;

	if (dec_args(cur, c, &req) != SP_OK || rt_cache_check(c) != SP_OK)
		return c->ctx.err.code;
	req.routing_percentage = conn->set.routing_percentage;
	st = sp_route_decide(&c->ctx, &conn->cat, &req, &row->d,
						 conn->set.route_log ? &conn->feats : NULL);
	if (st == SP_OK)
		st = dec_copy_names(c, &conn->cat, &req, row);
	if (st == SP_OK && conn->set.route_log)
		st = dec_log(c, &req, row, &conn->feats);
	return st;
}

/* Columns of route_decision. */
static void
dec_column(rt_cursor *cur, sqlite3_context *out, int col)
{
	const rt_decision_row *row = &cur->r.dec;
	const sp_route_decision *d = &row->d;

	switch (col)
	{
		case 0: sqlite3_result_text(out, sp_complexity_name(d->cls.complexity), -1, SQLITE_STATIC); break;
		case 1: sqlite3_result_double(out, d->cls.score); break;
		case 2: rt_result_text(out, row->requested); break;
		case 3: rt_result_text(out, row->recommended); break;
		case 4: rt_result_text(out, row->hardware); break;
		case 5: rt_result_double(out, d->estimated_cost_per_1m_tokens); break;
		case 6: rt_result_double(out, d->requested_cost_per_1m_tokens); break;
		case 7: rt_result_double(out, d->cost_savings_pct); break;
		case 8: rt_result_double(out, d->predicted_quality); break;
		case 9: rt_result_double(out, d->requested_predicted_quality); break;
		case 10: sqlite3_result_int(out, d->routed ? 1 : 0); break;
		case 11: sqlite3_result_text(out, d->reason, -1, SQLITE_TRANSIENT); break;
	}
}

/* ---- route_train --------------------------------------------------------- */

/* The rows route_train reads, in docs/ROUTING.md's order (BINARY = "C"). */
static const char rt_train_feedback_sql[] =
	"SELECT prompt, model_id, quality FROM main.sparse_route_feedback"
	" ORDER BY route_hash(prompt), prompt, model_id, quality";
static const char rt_train_log_sql[] =
	"SELECT features, served_model, observed_quality, id FROM main.sparse_route_log"
	" WHERE observed_quality IS NOT NULL"
	" ORDER BY prompt_hash, served_model, observed_quality, id";

/* One training run. */
typedef struct rt_train
{
	rt_call    *c;
	sp_route_catalog cat;		/* read for this run: the cache may reload */
	sp_route_trainer *t;
	sqlite3_stmt *feedback;
	sqlite3_stmt *logged;
	uint32_t   *feats;			/* decoded features of one logged row */
	size_t		feats_cap;
	int			epochs;
} rt_train;

/* A quality column: NaN unless it is a number (the core refuses NaN). */
static double
rt_col_quality(sqlite3_stmt *stmt, int i)
{
	return rt_col_is_number(stmt, i) ? sqlite3_column_double(stmt, i) : NAN;
}

/* A model_id column ("" for NULL: not in the catalog, so skipped). */
static const char *
rt_col_model(sqlite3_stmt *stmt, int i)
{
	const char *m = (const char *) sqlite3_column_text(stmt, i);

	return m ? m : "";
}

/* Feed one sparse_route_feedback row (prompt, model_id, quality). */
static sp_status
rt_train_feedback_row(rt_train *tr, sqlite3_stmt *stmt)
{
	sp_route_sample s = {0};

	s.prompt = (const char *) sqlite3_column_text(stmt, 0);
	s.prompt_len = (size_t) sqlite3_column_bytes(stmt, 0);
	s.model_id = rt_col_model(stmt, 1);
	s.quality = rt_col_quality(stmt, 2);
	return sp_route_train_add(&tr->c->ctx, tr->t, &s);
}

/* Feed one logged row (features, served_model, observed_quality, id). */
static sp_status
rt_train_log_row(rt_train *tr, sqlite3_stmt *stmt)
{
	const unsigned char *b = sqlite3_column_blob(stmt, 0);
	size_t		len = (size_t) sqlite3_column_bytes(stmt, 0),
				n = len / 4;
	sp_route_sample s = {0};

	if (sqlite3_column_type(stmt, 0) != SQLITE_BLOB || len % 4 != 0)
		return rt_fail(tr->c, SP_ERR_INVALID_ARG,
					   "features of sparse_route_log row %lld are not a blob of little-endian 4-byte slots",
					   (long long) sqlite3_column_int64(stmt, 3));
	/* the core's bound, checked here too: n sizes the allocation below */
	if (n > SP_ROUTE_MAX_FEATURES)
		return rt_fail(tr->c, SP_ERR_INVALID_ARG, "a training row has %zu features, more than %d",
					   n, SP_ROUTE_MAX_FEATURES);
	if (n > tr->feats_cap)
	{
		uint32_t   *f = sqlite3_realloc64(tr->feats, n * sizeof(*f));

		if (f == NULL)
			return rt_fail(tr->c, SP_ERR_NOMEM, "out of memory");
		tr->feats = f;
		tr->feats_cap = n;
	}
	for (size_t k = 0; k < n; k++)
		tr->feats[k] = (uint32_t) b[4 * k] | (uint32_t) b[4 * k + 1] << 8 |
			(uint32_t) b[4 * k + 2] << 16 | (uint32_t) b[4 * k + 3] << 24;
	s.features = tr->feats;
	s.n_features = n;
	s.model_id = rt_col_model(stmt, 1);
	s.quality = rt_col_quality(stmt, 2);
	return sp_route_train_add(&tr->c->ctx, tr->t, &s);
}

/*
 * Feed every row of one query, from the start (sqlite3_reset).  sqlite3_step
 * stops with SQLITE_INTERRUPT after sqlite3_interrupt(); the hook is also
 * asked every 1024 rows, since the core's work per row is ours to bound.
 */
static sp_status
rt_train_query(rt_train *tr, sqlite3_stmt *stmt, bool logged, const char *what)
{
	sp_status	st = SP_OK;
	int			rc;
	long long	n = 0;

	sqlite3_reset(stmt);
	while (st == SP_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW)
	{
		st = logged ? rt_train_log_row(tr, stmt) : rt_train_feedback_row(tr, stmt);
		if (st == SP_OK && (++n & 1023) == 0 && sq_interrupted(&tr->c->hook))
			st = rt_fail(tr->c, SP_ERR_CANCELLED, "canceling statement due to user request");
	}
	if (st == SP_OK && rc != SQLITE_DONE)
		st = rt_sql_fail(tr->c, rc, what);
	sqlite3_reset(stmt);
	return st;
}

/* Run every pass over the feedback and the logged rows. */
static sp_status
rt_train_passes(rt_train *tr)
{
	bool		more = true;

	while (more)
	{
		if (rt_train_query(tr, tr->feedback, false, "reading sparse_route_feedback") != SP_OK ||
			rt_train_query(tr, tr->logged, true, "reading sparse_route_log") != SP_OK ||
			sp_route_train_next_epoch(&tr->c->ctx, tr->t, &more) != SP_OK)
			return tr->c->ctx.err.code;
		tr->epochs++;
	}
	return SP_OK;
}

/* Insert the trained predictors (sparse_route_model is empty by now). */
static sp_status
rt_train_insert(rt_train *tr)
{
	static const char sql[] =
		"INSERT INTO main.sparse_route_model (model_id, feature_version, rows,"
		" epochs, train_loss, weights) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
	sqlite3_stmt *stmt = NULL;
	int			rc = sqlite3_prepare_v2(tr->c->hook.db, sql, -1, &stmt, NULL);

	for (int k = 0; rc == SQLITE_OK && k < sp_route_train_count(tr->t); k++)
	{
		const char *id;
		const void *blob;
		size_t		len;
		int64_t		rows;
		double		loss;

		sp_route_train_model(tr->t, k, &id, &blob, &len, &rows, &loss);
		sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int(stmt, 2, SP_ROUTE_FEATURE_VERSION);
		sqlite3_bind_int64(stmt, 3, rows);
		sqlite3_bind_int(stmt, 4, tr->epochs);
		rt_bind_double(stmt, 5, loss);
		sqlite3_bind_blob64(stmt, 6, blob, len, SQLITE_STATIC);
		if ((rc = sqlite3_step(stmt)) == SQLITE_DONE)
			rc = sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_OK ? SP_OK : rt_sql_fail(tr->c, rc, "writing sparse_route_model");
}

/*
 * Replace the content of sparse_route_model, all or nothing: a SAVEPOINT
 * works both inside the caller's transaction and in autocommit mode.  An
 * sqlite3_interrupt() that lands inside it makes our write statements fail,
 * and SQLite then rolls the whole transaction back itself; the one window
 * it cannot cover is between the last INSERT and the RELEASE (both the
 * RELEASE and our ROLLBACK TO would fail as interrupted, leaving the
 * savepoint open), so the interrupt is checked just before opening it.
 */
static sp_status
rt_train_store(rt_train *tr)
{
	rt_call    *c = tr->c;

	if (sq_interrupted(&c->hook))
		return rt_fail(c, SP_ERR_CANCELLED, "canceling statement due to user request");
	if (rt_savepoint_begin(c, RT_SAVEPOINT_TRAIN, "route_train") != SP_OK)
		return c->ctx.err.code;
	if (rt_exec(c, "DELETE FROM main.sparse_route_model", "writing sparse_route_model") != SP_OK ||
		rt_train_insert(tr) != SP_OK ||
		rt_exec(c, "RELEASE " RT_SAVEPOINT_TRAIN, "route_train()") != SP_OK)
	{
		rt_savepoint_abort(c->hook.db, RT_SAVEPOINT_TRAIN);
		return c->ctx.err.code;
	}
	return SP_OK;
}

/* Prepare a run: check the install, read the catalog, prepare the queries. */
static sp_status
rt_train_open(rt_train *tr)
{
	rt_call    *c = tr->c;
	sqlite3_stmt *version = NULL;
	int			rc;

	if (rt_version_stmt(c, &version) != SP_OK)
		return c->ctx.err.code;
	rt_stmt_done(&c->conn->version_stmt, version);
	if (rt_load_catalog(c, &tr->cat) != SP_OK)
		return c->ctx.err.code;
	rc = sqlite3_prepare_v2(c->hook.db, rt_train_feedback_sql, -1, &tr->feedback, NULL);
	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, "reading sparse_route_feedback");
	rc = sqlite3_prepare_v2(c->hook.db, rt_train_log_sql, -1, &tr->logged, NULL);
	if (rc != SQLITE_OK)
		return rt_sql_fail(c, rc, "reading sparse_route_log");
	return sp_route_train_begin(&c->ctx, &tr->cat, NULL, &tr->t);
}

/*
 * route_train(): learn one predictor per catalog model from the feedback
 * and the logged rows with an observed quality, as route.h describes, and
 * replace sparse_route_model with them.
 */
static sp_status
train_run(rt_cursor *cur, rt_call *c)
{
	rt_train	tr;
	sp_status	st;
	sp_ctx		end_ctx;

	memset(&tr, 0, sizeof(tr));
	tr.c = c;
	sp_route_catalog_init(&tr.cat);
	st = rt_train_open(&tr);
	if (st == SP_OK)
		st = rt_train_passes(&tr);
	if (st == SP_OK)
		st = rt_train_store(&tr);
	end_ctx = c->ctx;			/* ending must not overwrite the error */
	if (tr.t != NULL)
		sp_route_train_end(&end_ctx, tr.t, st == SP_OK ? &cur->r.train : NULL);
	sqlite3_finalize(tr.feedback);
	sqlite3_finalize(tr.logged);
	sqlite3_free(tr.feats);
	sp_route_catalog_free(&end_ctx, &tr.cat);
	return st;
}

/* Columns of route_train. */
static void
train_column(rt_cursor *cur, sqlite3_context *out, int col)
{
	const sp_route_train_result *r = &cur->r.train;

	switch (col)
	{
		case 0: sqlite3_result_int64(out, r->rows); break;
		case 1: sqlite3_result_int(out, r->models); break;
		case 2: sqlite3_result_int(out, r->epochs); break;
		case 3: rt_result_double(out, r->train_loss); break;
	}
}

/* ---- sparse_route_cache -------------------------------------------------- */

/* sparse_route_cache: no rows; it exists to be connected (rt_anchor). */
static sp_status
anchor_run(rt_cursor *cur, rt_call *c)
{
	(void) c;
	cur->nrows = 0;
	return SP_OK;
}

/* Columns of sparse_route_cache (never called: no rows). */
static void
anchor_column(rt_cursor *cur, sqlite3_context *out, int col)
{
	(void) cur;
	(void) col;
	sqlite3_result_null(out);
}

/* The table-valued functions; their order is that of rt_conn.modaux. */
static const rt_def rt_defs[RT_NMODULES] = {
	{"route_classify",
		"CREATE TABLE x(complexity TEXT, score REAL, est_prompt_tokens INTEGER, signals TEXT,"
		" prompt HIDDEN, max_tokens HIDDEN)",
	4, 2, 1, {"prompt", "max_tokens"}, false, cls_run, cls_column},
	{"route_decision",
		"CREATE TABLE x(complexity TEXT, complexity_score REAL, requested_model TEXT,"
		" recommended_model TEXT, recommended_hardware TEXT,"
		" estimated_cost_per_1m_tokens REAL, requested_cost_per_1m_tokens REAL,"
		" cost_savings_pct REAL, predicted_quality REAL, requested_predicted_quality REAL,"
		" routed INTEGER, reason TEXT,"
		" requested_model_arg HIDDEN, prompt HIDDEN, max_tokens HIDDEN,"
		" quality_threshold HIDDEN, cost_priority HIDDEN, request_id HIDDEN)",
		12, 6, 2,
		{"requested_model", "prompt", "max_tokens", "quality_threshold", "cost_priority", "request_id"},
	true, dec_run, dec_column},
	{"route_train",
		"CREATE TABLE x(rows INTEGER, models INTEGER, epochs INTEGER, train_loss REAL)",
	4, 0, 0, {NULL}, true, train_run, train_column},
	{"sparse_route_cache", "CREATE TABLE x(cached INTEGER)",
	1, 0, 0, {NULL}, true, anchor_run, anchor_column},
};

/* ---- the generic virtual table ------------------------------------------- */

/* xConnect: declare the columns and say where the function may be used. */
static int
rt_connect(sqlite3 *db, void *paux, int argc, const char *const *argv,
		   sqlite3_vtab **out, char **errmsg)
{
	const rt_modaux *aux = paux;
	rt_vtab    *vt;
	int			rc;

	(void) argc;
	(void) argv;
	if ((rc = sqlite3_declare_vtab(db, aux->def->schema)) != SQLITE_OK)
		return rc;

	/*
	 * Security: route_decision (which writes sparse_route_log) and
	 * route_train (which replaces sparse_route_model inside a SAVEPOINT of
	 * its own) are SQLITE_VTAB_DIRECTONLY: inside a view or a trigger of a
	 * database someone else wrote, merely reading that view, or inserting
	 * a row, would write our tables with the application's rights (and a
	 * SAVEPOINT released inside a trigger would commit at the wrong time).
	 * Only SQL the application submits itself may call them.
	 * route_classify reads nothing but its arguments: it is innocuous, so
	 * views may use it even with trusted_schema off.  sparse_route_cache is
	 * internal: direct-only, so no view or trigger of a database file can
	 * hold it (see rt_anchor).
	 */
	rc = sqlite3_vtab_config(db, aux->def->directonly ? SQLITE_VTAB_DIRECTONLY
							 : SQLITE_VTAB_INNOCUOUS);
	if (rc != SQLITE_OK)
	{
		*errmsg = sqlite3_mprintf("%s: could not configure the virtual table", aux->def->name);
		return rc;
	}
	if ((vt = sqlite3_malloc(sizeof(*vt))) == NULL)
		return SQLITE_NOMEM;
	memset(vt, 0, sizeof(*vt));
	vt->db = db;
	vt->aux = aux;
	if (aux->def->run == anchor_run)
		aux->conn->anchored++;
	*out = &vt->base;
	return SQLITE_OK;
}

/* xDisconnect: sparse_route_cache takes the cached statements along. */
static int
rt_disconnect(sqlite3_vtab *base)
{
	const rt_modaux *aux = ((rt_vtab *) base)->aux;

	if (aux->def->run == anchor_run && --aux->conn->anchored == 0)
		rt_drop_cached(aux->conn);
	sqlite3_free(base);
	return SQLITE_OK;
}

/* xBestIndex: the arguments are the hidden columns (sparse_sqlite.c). */
static int
rt_best_index(sqlite3_vtab *pvt, sqlite3_index_info *info)
{
	const rt_def *def = ((rt_vtab *) pvt)->aux->def;

	return sq_best_index_args(info, def->ncols, def->nargs, false);
}

/* xOpen. */
static int
rt_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
	rt_cursor  *cur = sqlite3_malloc(sizeof(*cur));

	(void) vt;
	if (cur == NULL)
		return SQLITE_NOMEM;
	memset(cur, 0, sizeof(*cur));
	*out = &cur->base;
	return SQLITE_OK;
}

/* Drop the arguments and the result of the previous call. */
static void
rt_cursor_reset(rt_cursor *cur)
{
	for (int j = 0; j < RT_MAX_ARGS; j++)
		sqlite3_value_free(cur->args[j]);
	if (rt_cur_def(cur)->run == dec_run)
	{
		sqlite3_free(cur->r.dec.requested);
		sqlite3_free(cur->r.dec.recommended);
		sqlite3_free(cur->r.dec.hardware);
	}
	memset((char *) cur + sizeof(cur->base), 0, sizeof(*cur) - sizeof(cur->base));
}

/* xClose. */
static int
rt_close(sqlite3_vtab_cursor *base)
{
	rt_cursor_reset((rt_cursor *) base);
	sqlite3_free(base);
	return SQLITE_OK;
}

/* Copy the arguments of this call; check the required ones are there. */
static sp_status
rt_take_args(rt_cursor *cur, rt_call *c, int mask, int argc, sqlite3_value **argv)
{
	const rt_def *def = rt_cur_def(cur);
	int			k = 0;

	for (int j = 0; j < def->nargs && k < argc; j++)
	{
		if (!(mask & (1 << j)))
			continue;
		if ((cur->args[j] = sqlite3_value_dup(argv[k++])) == NULL)
			return rt_fail(c, SP_ERR_NOMEM, "out of memory");
	}
	for (int j = 0; j < def->nrequired; j++)
		if (cur->args[j] == NULL)
			return rt_fail(c, SP_ERR_INVALID_ARG, "missing argument \"%s\" of %s()",
						   def->argnames[j], def->name);
	return SP_OK;
}

/* xFilter: run the function with the arguments SQLite passes. */
static int
rt_filter(sqlite3_vtab_cursor *base, int idxnum, const char *idxstr,
		  int argc, sqlite3_value **argv)
{
	rt_cursor  *cur = (rt_cursor *) base;
	rt_vtab    *vt = (rt_vtab *) base->pVtab;
	rt_call		c;

	(void) idxstr;
	rt_cursor_reset(cur);
	rt_call_init(&c, vt->db, vt->aux->conn);
	cur->nrows = 1;				/* run may say otherwise */
	if (rt_take_args(cur, &c, idxnum, argc, argv) != SP_OK ||
		vt->aux->def->run(cur, &c) != SP_OK)
	{
		cur->nrows = 0;
		return rt_vtab_fail(&vt->base, &c);
	}
	return SQLITE_OK;
}

/* xNext. */
static int
rt_next(sqlite3_vtab_cursor *base)
{
	((rt_cursor *) base)->row++;
	return SQLITE_OK;
}

/* xEof. */
static int
rt_eof(sqlite3_vtab_cursor *base)
{
	const rt_cursor *cur = (const rt_cursor *) base;

	return cur->row >= cur->nrows;
}

/* xColumn: a result column, or the value of an argument column. */
static int
rt_column(sqlite3_vtab_cursor *base, sqlite3_context *out, int col)
{
	rt_cursor  *cur = (rt_cursor *) base;
	const rt_def *def = rt_cur_def(cur);

	if (col >= def->ncols)
	{
		if (cur->args[col - def->ncols] != NULL)
			sqlite3_result_value(out, cur->args[col - def->ncols]);
	}
	else
		def->column(cur, out, col);
	return SQLITE_OK;
}

/* xRowid: the row number. */
static int
rt_rowid(sqlite3_vtab_cursor *base, sqlite_int64 *rowid)
{
	*rowid = ((rt_cursor *) base)->row;
	return SQLITE_OK;
}

/* Eponymous-only: no xCreate/xDestroy, so CREATE VIRTUAL TABLE is refused. */
static sqlite3_module rt_module = {
	.iVersion = 0,
	.xCreate = NULL,
	.xConnect = rt_connect,
	.xBestIndex = rt_best_index,
	.xDisconnect = rt_disconnect,
	.xDestroy = NULL,
	.xOpen = rt_open,
	.xClose = rt_close,
	.xFilter = rt_filter,
	.xNext = rt_next,
	.xEof = rt_eof,
	.xColumn = rt_column,
	.xRowid = rt_rowid,
};

/* ---- scalar functions ---------------------------------------------------- */

/* route_hash(text): XXH3-64 of the bytes as a signed integer; NULL gives NULL. */
static void
rt_hash_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	const void *p;

	(void) argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL)
		return;
	p = sqlite3_value_text(argv[0]);
	if (p == NULL)
	{
		sqlite3_result_error_nomem(out);
		return;
	}
	sqlite3_result_int64(out, (sqlite3_int64) sp_route_hash(p, (size_t) sqlite3_value_bytes(argv[0])));
}

/*
 * route_predict(prompt, model_id): the predicted quality route_decision
 * uses for that model, classified with its default max_tokens (100); NULL
 * for a model not in the catalog, and for a NULL argument (STRICT, as in
 * PostgreSQL).
 */
static void
rt_predict_fn(sqlite3_context *out, int argc, sqlite3_value **argv)
{
	rt_conn    *conn = sqlite3_user_data(out);
	const char *prompt = (const char *) sqlite3_value_text(argv[0]);
	const char *model = (const char *) sqlite3_value_text(argv[1]);
	size_t		len = (size_t) sqlite3_value_bytes(argv[0]);
	sp_route_class cls;
	rt_call		c;
	int			i;

	(void) argc;
	if (prompt == NULL || model == NULL)
		return;
	rt_call_init(&c, sqlite3_context_db_handle(out), conn);
	if (rt_cache_check(&c) != SP_OK)
	{
		rt_result_fail(out, &c);
		return;
	}
	if ((i = sp_route_catalog_find(&conn->cat, model)) < 0)
		return;
	if (sp_route_classify(&c.ctx, prompt, len, RT_DEFAULT_MAX_TOKENS, &cls) != SP_OK ||
		(conn->cat.n_learned > 0 &&
		 sp_route_featurize(&c.ctx, prompt, len, &conn->feats) != SP_OK))
	{
		rt_result_fail(out, &c);
		return;
	}
	sqlite3_result_double(out, sp_route_predict(&conn->cat, i, &cls,
												conn->cat.n_learned > 0 ? &conn->feats : NULL));
}

/*
 * The scalar functions.  route_hash is a pure function of its argument:
 * DETERMINISTIC and INNOCUOUS (indexes, generated columns, views).
 * Security: sparse_install changes the schema and route_predict runs SQL
 * of its own over our tables (the version check, a reload), so both are
 * DIRECTONLY: the views and triggers of a database someone else wrote
 * cannot call them.  route_predict is not DETERMINISTIC either: its answer
 * changes with the catalog and the predictors.
 */
static const struct
{
	const char *name;
	int			nargs;
	int			flags;
	void		(*fn) (sqlite3_context *, int, sqlite3_value **);
}			rt_scalars[] = {
	{"route_hash", 1, SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, rt_hash_fn},
	{"route_predict", 2, SQLITE_DIRECTONLY, rt_predict_fn},
	{"sparse_install", 0, SQLITE_DIRECTONLY, rt_install_fn},
};

/* ---- registration -------------------------------------------------------- */

/* Drop one reference to the connection state (the destructor SQLite calls). */
static void
rt_conn_release(void *p)
{
	rt_conn    *conn = p;
	sp_ctx		ctx;

	if (conn == NULL || --conn->refs > 0)
		return;
	rt_drop_cached(conn);
	sp_ctx_init(&ctx);
	ctx.hooks.alloc = rt_alloc;
	ctx.hooks.free = rt_free;
	sp_route_catalog_free(&ctx, &conn->cat);
	sqlite3_free(conn);
}

/* The destructor of a module's client data. */
static void
rt_modaux_release(void *p)
{
	rt_conn_release(((rt_modaux *) p)->conn);
}

/* Register the routing scalars and table-valued functions on db. */
int
sq_route_register(sqlite3 *db, char **errmsg)
{
	rt_conn    *conn = sqlite3_malloc(sizeof(*conn));
	const char *what = NULL;
	int			rc = SQLITE_OK;

	if (conn == NULL)
		return SQLITE_NOMEM;
	memset(conn, 0, sizeof(*conn));
	conn->refs = 1;
	conn->native_interrupt = sqlite3_libversion_number() >= 3041000;
	sp_route_catalog_init(&conn->cat);
	for (int i = 0; i < RT_NMODULES; i++)
	{
		conn->modaux[i].conn = conn;
		conn->modaux[i].def = &rt_defs[i];
	}
	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(rt_scalars) / sizeof(rt_scalars[0]); i++)
	{
		conn->refs++;			/* released by SQLite, even on failure */
		rc = sqlite3_create_function_v2(db, rt_scalars[i].name, rt_scalars[i].nargs,
										SQLITE_UTF8 | rt_scalars[i].flags, conn,
										rt_scalars[i].fn, NULL, NULL, rt_conn_release);
		what = rt_scalars[i].name;
	}
	for (int i = 0; rc == SQLITE_OK && i < RT_NMODULES; i++)
	{
		conn->refs++;
		rc = sqlite3_create_module_v2(db, rt_defs[i].name, &rt_module,
									  &conn->modaux[i], rt_modaux_release);
		what = rt_defs[i].name;
	}
	if (rc != SQLITE_OK)
		*errmsg = sqlite3_mprintf("sparse: could not register %s: %s", what, sqlite3_errstr(rc));
	rt_conn_release(conn);
	return rc;
}
