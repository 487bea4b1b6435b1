/*
 * store_sqlite.c -- hub storage decisions and jobs in SQLite, the embedded
 * twin of the PostgreSQL objects (pg/sparse--0.1.0.sql, docs/STORAGE.md).
 *
 * Usage (sqlite3 shell, after ".load ./sparse" and SELECT sparse_install()):
 *   SELECT sparse_watch('models', 'id', 'path', 'base_path', 'model');
 *   INSERT INTO models ...;                 -- decided as rows arrive
 *   SELECT sparse_run_jobs();               -- deltas written and verified
 *   SELECT * FROM sparse_savings_report;
 *
 * sparse_install() creates sparse_storage, sparse_jobs and the
 * sparse_savings_report view (sq_store_install_sql).  Settings are rows of
 * sparse_settings with PostgreSQL's names and defaults:
 * sparse.model_min_savings_pct (60), sparse.dataset_min_savings_pct (70),
 * sparse.strict (off), sparse.delta_dir (empty: next to the original),
 * sparse.storage_cost_per_gb_month (0.023) and sparse.retry_delay (60:
 * seconds before a failed job may run again, doubled at each further
 * failure, at most a day).
 *
 * sparse_watch() creates TEMP triggers on the hub's table that call
 * sparse_decide() for each inserted row (and each row whose id, path or
 * base changes).  TEMP, because the decision reads files: sparse_decide is
 * SQLITE_DIRECTONLY like every file function, which SQLite allows in the
 * connection's own TEMP triggers but not in a trigger stored in the
 * database, so a database someone else wrote cannot make this extension
 * read a file.  The triggers last as long as the connection (as the
 * loaded extension does); an application calls sparse_watch once after
 * loading.  SQLite has one writer at a time, so sparse_run_jobs() needs no
 * lease: it claims queued jobs one by one inside the caller's transaction,
 * and a crash rolls the claims back with everything else.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparse.h"
#include "sparse_sqlite.h"

/* Now as ISO-8601 text in UTC, as route_sqlite.c stores timestamps. */
#define ST_NOW "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

/* One row of the report over "o" (the objects), for kind expression k. */
#define ST_REPORT_ROW(k) \
	" SELECT " k " AS kind, count(*) AS objects, sum(is_delta) AS objects_delta," \
	"  sum(is_open) AS objects_open, coalesce(sum(original_bytes), 0) AS original_bytes," \
	"  coalesce(sum(stored_bytes), 0) AS stored_bytes FROM o"

/* What sparse_install() adds, in order; each statement is idempotent. */
SQ_HIDDEN const char *const sq_store_install_sql[] = {
	"CREATE TABLE IF NOT EXISTS sparse_storage ("
	" object_id TEXT NOT NULL,"
	" kind TEXT NOT NULL CHECK (kind IN ('model', 'dataset')),"
	" path TEXT NOT NULL,"
	" base_object_id TEXT,"
	" base_path TEXT,"
	" decision TEXT NOT NULL CHECK (decision IN ('delta', 'full', 'pending', 'error')),"
	" est_savings_pct REAL,"
	" original_bytes INTEGER CHECK (original_bytes >= 0),"
	" stored_bytes INTEGER CHECK (stored_bytes >= 0),"
	" delta_path TEXT,"
	" ft_sha256 TEXT,"
	" decided_at TEXT NOT NULL DEFAULT " ST_NOW ","
	" compressed_at TEXT,"
	" error TEXT,"
	" PRIMARY KEY (object_id, kind))",

	"CREATE TABLE IF NOT EXISTS sparse_jobs ("
	" job_id INTEGER PRIMARY KEY,"
	" object_id TEXT NOT NULL,"
	" kind TEXT NOT NULL,"
	" state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts > 0),"
	" lease_holder TEXT,"
	" lease_expires TEXT,"
	" last_error TEXT,"
	" retry_at TEXT,"
	" created_at TEXT NOT NULL DEFAULT " ST_NOW ","
	" started_at TEXT,"
	" finished_at TEXT,"
	" FOREIGN KEY (object_id, kind) REFERENCES sparse_storage ON DELETE CASCADE)",

	"CREATE UNIQUE INDEX IF NOT EXISTS sparse_jobs_active ON sparse_jobs (object_id, kind)"
	" WHERE state IN ('queued', 'running')",

	/* PostgreSQL's view: UNION ALL for its GROUPING SETS, GiB and REAL arithmetic */
	"CREATE VIEW IF NOT EXISTS sparse_savings_report AS"
	" WITH o AS ("
	"  SELECT kind, coalesce(original_bytes, 0) AS original_bytes,"
	"   CASE WHEN compressed_at IS NOT NULL THEN stored_bytes ELSE coalesce(original_bytes, 0) END"
	"    AS stored_bytes,"
	"   compressed_at IS NOT NULL AS is_delta,"
	"   (decision IN ('pending', 'error') OR (decision = 'delta' AND compressed_at IS NULL)) AS is_open"
	"  FROM sparse_storage),"
	" sums AS (" ST_REPORT_ROW("kind") " GROUP BY kind UNION ALL" ST_REPORT_ROW("'all'") "),"
	" cost AS (SELECT coalesce((SELECT CAST(value AS REAL) FROM sparse_settings"
	"  WHERE name = 'sparse.storage_cost_per_gb_month'), 0.023) AS per_gib)"
	" SELECT kind, objects, coalesce(objects_delta, 0) AS objects_delta,"
	"  coalesce(objects_open, 0) AS objects_open, original_bytes, stored_bytes,"
	"  original_bytes - stored_bytes AS saved_bytes,"
	"  CASE WHEN original_bytes > 0 THEN 100.0 * (original_bytes - stored_bytes) / original_bytes END"
	"   AS savings_pct,"
	"  (original_bytes - stored_bytes) / 1073741824.0 * per_gib AS saved_per_month"
	" FROM sums, cost ORDER BY kind = 'all', kind",
};
SQ_HIDDEN const int sq_store_install_n =
	(int) (sizeof(sq_store_install_sql) / sizeof(sq_store_install_sql[0]));

/*
 * Bring a sparse_jobs table made by an older sparse_install() up to date
 * (CREATE TABLE IF NOT EXISTS left it as it was): add retry_at.
 */
SQ_HIDDEN int
sq_store_upgrade(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int			rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('sparse_jobs', 'main')"
										" WHERE name = 'retry_at'", -1, &st, NULL);
	bool		has = false;

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
	{
		has = sqlite3_column_int(st, 0) > 0;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK && !has)
		rc = sqlite3_exec(db, "ALTER TABLE main.sparse_jobs ADD COLUMN retry_at TEXT", NULL, NULL, NULL);
	return rc;
}

/* The storage settings, as read from sparse_settings. */
typedef struct st_settings
{
	double		model_min_pct;
	double		dataset_min_pct;
	double		retry_delay;	/* seconds; doubled per earlier attempt */
	bool		strict;
	char		delta_dir[SP_PATH_MAX];
} st_settings;

/* One call: the connection, the core context and the first error. */
typedef struct st_call
{
	sqlite3    *db;
	sq_call		hook;
	sp_ctx		ctx;
	int			rc;				/* SQLite code of the failure, or SQLITE_OK */
	char		msg[1024];
} st_call;

/* Start a call from a function's context. */
static void
st_call_init(st_call *c, sqlite3_context *fn)
{
	memset(c, 0, sizeof(*c));
	c->db = sqlite3_context_db_handle(fn);
	c->hook.db = c->db;
	c->hook.native_interrupt = sqlite3_libversion_number() >= SQ_IS_INTERRUPTED_SQLITE;
	sq_ctx_init(&c->ctx, &c->hook, sqlite3_user_data(fn));
}

/* Record a failure (the first one wins); returns false for chaining. */
static bool
st_fail(st_call *c, int rc, const char *fmt,...)
{
	va_list		ap;

	if (c->rc != SQLITE_OK)
		return false;
	c->rc = rc;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return false;
}

/* Record a failed SQL step, naming what we did and hinting at sparse_install. */
static bool
st_sql_fail(st_call *c, int rc, const char *what)
{
	const char *m = sqlite3_errmsg(c->db);

	if (strstr(m, "no such table: ") != NULL && strstr(m, "sparse_") != NULL)
		return st_fail(c, rc, "%s: %s (run SELECT sparse_install() first)", what, m);
	return st_fail(c, rc, "%s: %s", what, m);
}

/* Report the call's failure as the function's error. */
static void
st_result_fail(sqlite3_context *fn, const st_call *c)
{
	sqlite3_result_error(fn, c->msg, -1);
	sqlite3_result_error_code(fn, c->rc);
}

/*
 * Run sql with text parameters (NULL pointers bind NULL) and, if col is
 * not NULL, copy the first column of the first row into col (cap bytes;
 * "" for none or NULL).
 */
static bool
st_exec(st_call *c, const char *what, const char *sql, int n, const char *const *params,
		char *col, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int			rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);

	if (col)
		col[0] = '\0';
	for (int i = 0; rc == SQLITE_OK && i < n; i++)
		rc = params[i] ? sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT)
			: sqlite3_bind_null(st, i + 1);
	if (rc == SQLITE_OK)
	{
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			if (col && col[0] == '\0' && sqlite3_column_text(st, 0))
				snprintf(col, cap, "%s", (const char *) sqlite3_column_text(st, 0));
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
	}
	if (rc != SQLITE_OK)
		st_sql_fail(c, rc, what);
	sqlite3_finalize(st);
	return rc == SQLITE_OK;
}

/* Value of setting name from sparse_settings into out ("" when unset or NULL). */
static bool
st_setting(st_call *c, const char *name, char *out, size_t cap)
{
	const char *p[1] = {name};

	return st_exec(c, "reading sparse_settings",
				   "SELECT value FROM main.sparse_settings WHERE name = ?1", 1, p, out, cap);
}

/* A number setting from 0 to hi, or dflt when unset. */
static bool
st_setting_num(st_call *c, const char *name, double dflt, double hi, double *out)
{
	char		v[64];
	char	   *end;

	if (!st_setting(c, name, v, sizeof(v)))
		return false;
	*out = dflt;
	if (v[0] == '\0')
		return true;
	*out = strtod(v, &end);
	if (*end != '\0' || !(*out >= 0 && *out <= hi))
		return st_fail(c, SQLITE_ERROR,
					   "invalid value for setting \"%s\" in sparse_settings: '%s' (a number from 0 to %g)",
					   name, v, hi);
	return true;
}

/* Read every storage setting. */
static bool
st_load_settings(st_call *c, st_settings *s)
{
	char		v[16];

	if (!st_setting_num(c, "sparse.model_min_savings_pct", 60, 100, &s->model_min_pct) ||
		!st_setting_num(c, "sparse.dataset_min_savings_pct", 70, 100, &s->dataset_min_pct) ||
		!st_setting_num(c, "sparse.retry_delay", 60, 86400, &s->retry_delay) ||
		!st_setting(c, "sparse.delta_dir", s->delta_dir, sizeof(s->delta_dir)) ||
		!st_setting(c, "sparse.strict", v, sizeof(v)))
		return false;
	if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
		s->strict = true;
	else if (v[0] == '\0' || strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		s->strict = false;
	else
		return st_fail(c, SQLITE_ERROR,
					   "invalid value for setting \"sparse.strict\" in sparse_settings: '%s' (on or off)", v);
	return true;
}

/* Text of argument i, or NULL. */
static const char *
st_arg(sqlite3_value **argv, int i)
{
	return (const char *) sqlite3_value_text(argv[i]);
}

/* Parse a kind, recording the core's message on failure. */
static bool
st_kind(st_call *c, const char *s, sp_kind *kind)
{
	if (sp_kind_parse(&c->ctx, s, kind) == SP_OK)
		return true;
	return st_fail(c, SQLITE_ERROR, "%s", c->ctx.err.msg);
}

/* ---- decisions -------------------------------------------------------------- */

/*
 * Record the decision for an object from its estimate (est NULL: the
 * estimate failed with err) and queue a job for a delta; *dec gets it.
 */
static bool
st_record(st_call *c, const st_settings *s, sp_kind kind, const char *id, const char *path,
		  const char *base, const sp_store_est *est, const char *err, const char **dec)
{
	char		pct[32] = "",
				bytes[32] = "";
	double		min = kind == SP_KIND_MODEL ? s->model_min_pct : s->dataset_min_pct;
	const char *p[8];

	*dec = est == NULL ? "error" : base == NULL ? "full" : est->savings_pct >= min ? "delta" : "full";
	if (est)
	{
		snprintf(pct, sizeof(pct), "%.17g", est->savings_pct);
		snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long) est->original_bytes);
	}
	p[0] = id;
	p[1] = sp_kind_name(kind);
	p[2] = path;
	p[3] = base;
	p[4] = *dec;
	p[5] = est ? pct : NULL;
	p[6] = est ? bytes : NULL;
	p[7] = err;
	return st_exec(c, "recording the decision",
				   "INSERT INTO main.sparse_storage (object_id, kind, path, base_object_id, base_path,"
				   " decision, est_savings_pct, original_bytes, stored_bytes, error)"
				   " VALUES (?1, ?2, ?3, (SELECT b.object_id FROM main.sparse_storage b"
				   "  WHERE b.kind = ?2 AND b.path = ?4 ORDER BY b.object_id LIMIT 1),"
				   " ?4, ?5, CAST(?6 AS REAL), CAST(?7 AS INTEGER),"
				   " CASE WHEN ?5 = 'full' THEN CAST(?7 AS INTEGER) END, ?8)"
				   " ON CONFLICT (object_id, kind) DO UPDATE SET path = excluded.path,"
				   " base_object_id = excluded.base_object_id, base_path = excluded.base_path,"
				   " decision = excluded.decision, est_savings_pct = excluded.est_savings_pct,"
				   " original_bytes = excluded.original_bytes, stored_bytes = excluded.stored_bytes,"
				   " delta_path = NULL, ft_sha256 = NULL, decided_at = " ST_NOW ","
				   " compressed_at = NULL, error = excluded.error", 8, p, NULL, 0) &&
		(strcmp(*dec, "delta") != 0 ||
		 st_exec(c, "queueing the job",
				 "INSERT INTO main.sparse_jobs (object_id, kind) VALUES (?1, ?2)"
				 " ON CONFLICT (object_id, kind) WHERE state IN ('queued', 'running') DO NOTHING",
				 2, p, NULL, 0));
}

/*
 * Estimate and decide one object.  A failed estimate is recorded as
 * 'error' unless strict (then it is the call's failure); a cancel always
 * fails the call.
 */
static bool
st_decide(st_call *c, const st_settings *s, sp_kind kind, const char *id, const char *path,
		  const char *base, bool strict, const char **dec)
{
	sp_store_est est;

	if (sp_store_estimate(&c->ctx, kind, base, path, &est) == SP_OK)
		return st_record(c, s, kind, id, path, base, &est, NULL, dec);
	if (strict || c->ctx.err.code == SP_ERR_CANCELLED || c->ctx.err.code == SP_ERR_NOMEM)
		return st_fail(c, sq_status_code(&c->ctx.err), "%s", c->ctx.err.msg);
	return st_record(c, s, kind, id, path, base, NULL, c->ctx.err.msg, dec);
}

/* sparse_decide(kind, object_id, path, base_path): decide and record; the decision. */
static void
st_decide_fn(sqlite3_context *fn, int argc, sqlite3_value **argv)
{
	st_call		c;
	st_settings s;
	sp_kind		kind;
	const char *dec = NULL;

	(void) argc;
	st_call_init(&c, fn);
	if (st_arg(argv, 1) == NULL || st_arg(argv, 2) == NULL)
	{
		sqlite3_result_null(fn);	/* no id or no path yet: nothing to decide */
		return;
	}
	if (st_kind(&c, st_arg(argv, 0), &kind) && st_load_settings(&c, &s))
		st_decide(&c, &s, kind, st_arg(argv, 1), st_arg(argv, 2), st_arg(argv, 3), s.strict, &dec);
	if (c.rc != SQLITE_OK)
		st_result_fail(fn, &c);
	else
		sqlite3_result_text(fn, dec, -1, SQLITE_STATIC);
}

/* ---- watching a hub table ---------------------------------------------------- */

/* Does table (in main) have column col? */
static bool
st_has_column(st_call *c, const char *table, const char *col)
{
	const char *p[2] = {table, col};
	char		found[8];

	return st_exec(c, "reading the table's columns",
				   "SELECT 1 FROM pragma_table_info(?1, 'main') WHERE name = ?2", 2, p,
				   found, sizeof(found)) && found[0] == '1';
}

/*
 * sparse_watch(table, id_col, path_col, base_col, kind): TEMP triggers on
 * main.table that decide each new row and each row whose id, path or base
 * changes, and forget (sparse_storage row and jobs; a delta file stays on
 * disk) each deleted row and the old id of a row whose id changes.  Every
 * name is checked against the table and quoted (%w), never pasted as SQL.
 * Returns 3 (the triggers created or replaced).
 */
static void
st_watch_fn(sqlite3_context *fn, int argc, sqlite3_value **argv)
{
	const char *t = st_arg(argv, 0),
			   *id = st_arg(argv, 1),
			   *path = st_arg(argv, 2),
			   *base = st_arg(argv, 3);
	st_call		c;
	sp_kind		kind;
	char	   *sql;

	(void) argc;
	st_call_init(&c, fn);
	if (!t || !id || !path || !base)
		st_fail(&c, SQLITE_ERROR, "sparse_watch(table, id_col, path_col, base_col, kind): no argument may be NULL");
	else if (st_kind(&c, st_arg(argv, 4), &kind))
	{
		const char *cols[3] = {id, path, base};

		for (int i = 0; i < 3 && c.rc == SQLITE_OK; i++)
			if (!st_has_column(&c, t, cols[i]) && c.rc == SQLITE_OK)
				st_fail(&c, SQLITE_ERROR, "sparse_watch: table main.\"%s\" has no column \"%s\"", t, cols[i]);
	}
	if (c.rc != SQLITE_OK)
	{
		st_result_fail(fn, &c);
		return;
	}
	/*
	 * ids are stored as text (sparse_decide reads them so): compared the same
	 * way.  Jobs are deleted by name: SQLite enforces their foreign key's
	 * ON DELETE CASCADE only under PRAGMA foreign_keys.  A trigger may not
	 * qualify the table it deletes from: the names resolve to main's tables
	 * (the only ones sparse_install creates).
	 */
	sql = sqlite3_mprintf(
		"DROP TRIGGER IF EXISTS temp.\"sparse_watch_%w_ins\";"
		"DROP TRIGGER IF EXISTS temp.\"sparse_watch_%w_upd\";"
		"DROP TRIGGER IF EXISTS temp.\"sparse_watch_%w_del\";"
		"CREATE TEMP TRIGGER \"sparse_watch_%w_ins\" AFTER INSERT ON main.\"%w\""
		" BEGIN SELECT sparse_decide(%Q, NEW.\"%w\", NEW.\"%w\", NEW.\"%w\"); END;"
		"CREATE TEMP TRIGGER \"sparse_watch_%w_upd\" AFTER UPDATE ON main.\"%w\""
		" WHEN NEW.\"%w\" IS NOT OLD.\"%w\" OR NEW.\"%w\" IS NOT OLD.\"%w\" OR NEW.\"%w\" IS NOT OLD.\"%w\""
		" BEGIN DELETE FROM sparse_jobs WHERE NEW.\"%w\" IS NOT OLD.\"%w\""
		"  AND object_id = CAST(OLD.\"%w\" AS TEXT) AND kind = %Q;"
		" DELETE FROM sparse_storage WHERE NEW.\"%w\" IS NOT OLD.\"%w\""
		"  AND object_id = CAST(OLD.\"%w\" AS TEXT) AND kind = %Q;"
		" SELECT sparse_decide(%Q, NEW.\"%w\", NEW.\"%w\", NEW.\"%w\"); END;"
		"CREATE TEMP TRIGGER \"sparse_watch_%w_del\" AFTER DELETE ON main.\"%w\""
		" BEGIN DELETE FROM sparse_jobs WHERE object_id = CAST(OLD.\"%w\" AS TEXT) AND kind = %Q;"
		" DELETE FROM sparse_storage WHERE object_id = CAST(OLD.\"%w\" AS TEXT) AND kind = %Q; END;",
		t, t, t, t, t, sp_kind_name(kind), id, path, base,
		t, t, id, id, path, path, base, base,
		id, id, id, sp_kind_name(kind), id, id, id, sp_kind_name(kind),
		sp_kind_name(kind), id, path, base,
		t, t, id, sp_kind_name(kind), id, sp_kind_name(kind));
	if (sql == NULL)
		st_fail(&c, SQLITE_NOMEM, "out of memory");
	else if (sqlite3_exec(c.db, sql, NULL, NULL, NULL) != SQLITE_OK)
		st_sql_fail(&c, sqlite3_errcode(c.db), "creating the triggers");
	sqlite3_free(sql);
	if (c.rc != SQLITE_OK)
		st_result_fail(fn, &c);
	else
		sqlite3_result_int(fn, 3);
}

/* ---- jobs ----------------------------------------------------------------------- */

/*
 * The job being run and its object.  The id and paths are copied whole
 * (sqlite3_mprintf), never cut to a buffer: a cut path would name another
 * file.  kind and decision are short words the tables' CHECKs allow.
 */
typedef struct st_job
{
	char		id[32];
	char	   *object_id;
	char		kind[16];
	char	   *path;
	char	   *base;			/* NULL: no base */
	char		decision[16];
} st_job;

/* Free the copies a claim made. */
static void
st_job_free(st_job *j)
{
	sqlite3_free(j->object_id);
	sqlite3_free(j->path);
	sqlite3_free(j->base);
	j->object_id = j->path = j->base = NULL;
}

/* Claim the oldest queued job whose retry time has come; false with no error when there is none. */
static bool
st_claim(st_call *c, st_job *j)
{
	sqlite3_stmt *st = NULL;
	int			rc;

	memset(j, 0, sizeof(*j));
	if (!st_exec(c, "claiming a job",
				 "UPDATE main.sparse_jobs SET state = 'running', attempts = attempts + 1,"
				 " lease_holder = 'sqlite', started_at = " ST_NOW ", retry_at = NULL"
				 " WHERE job_id = (SELECT job_id FROM main.sparse_jobs"
				 "  WHERE state = 'queued' AND attempts < max_attempts"
				 "  AND (retry_at IS NULL OR retry_at <= " ST_NOW ") ORDER BY job_id LIMIT 1)"
				 " RETURNING job_id", 0, NULL, j->id, sizeof(j->id)) || j->id[0] == '\0')
		return false;
	rc = sqlite3_prepare_v2(c->db, "SELECT s.object_id, s.kind, s.path, s.base_path, s.decision"
							" FROM main.sparse_jobs j JOIN main.sparse_storage s"
							" USING (object_id, kind) WHERE j.job_id = ?1", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
	{
		j->object_id = sqlite3_mprintf("%s", (const char *) sqlite3_column_text(st, 0));
		snprintf(j->kind, sizeof(j->kind), "%s", (const char *) sqlite3_column_text(st, 1));
		j->path = sqlite3_mprintf("%s", (const char *) sqlite3_column_text(st, 2));
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			j->base = sqlite3_mprintf("%s", (const char *) sqlite3_column_text(st, 3));
		snprintf(j->decision, sizeof(j->decision), "%s", (const char *) sqlite3_column_text(st, 4));
		rc = !j->object_id || !j->path || (sqlite3_column_type(st, 3) != SQLITE_NULL && !j->base)
			? SQLITE_NOMEM : SQLITE_OK;
	}
	else if (rc == SQLITE_DONE)
		rc = SQLITE_CORRUPT;	/* the foreign key guarantees the object */
	sqlite3_finalize(st);
	if (rc == SQLITE_OK)
		return true;
	st_job_free(j);
	return rc == SQLITE_NOMEM ? st_fail(c, rc, "out of memory") : st_sql_fail(c, rc, "reading the job's object");
}

/* Mark the job done, recording the delta when res is given. */
static bool
st_complete(st_call *c, const st_job *j, const sp_compress_result *res)
{
	char		orig[32],
				stored[32];
	const char *p[6] = {j->id, NULL, NULL, NULL, NULL};

	if (res)
	{
		snprintf(orig, sizeof(orig), "%llu", (unsigned long long) res->ft_bytes);
		snprintf(stored, sizeof(stored), "%llu", (unsigned long long) res->delta_bytes);
		p[1] = res->delta_path;
		p[2] = orig;
		p[3] = stored;
		p[4] = res->ft_sha256;
	}
	return st_exec(c, "recording the delta",
				   "UPDATE main.sparse_storage SET"
				   " decision = CASE WHEN ?2 IS NOT NULL THEN 'delta' ELSE decision END,"
				   " delta_path = ?2, original_bytes = coalesce(CAST(?3 AS INTEGER), original_bytes),"
				   " stored_bytes = CASE WHEN ?2 IS NOT NULL THEN CAST(?4 AS INTEGER) ELSE stored_bytes END,"
				   " ft_sha256 = ?5, compressed_at = CASE WHEN ?2 IS NOT NULL THEN " ST_NOW " END, error = NULL"
				   " WHERE (object_id, kind) = (SELECT object_id, kind FROM main.sparse_jobs WHERE job_id = ?1)",
				   5, p, NULL, 0) &&
		st_exec(c, "completing the job",
				"UPDATE main.sparse_jobs SET state = 'done', finished_at = " ST_NOW
				" WHERE job_id = ?1", 1, p, NULL, 0);
}

/*
 * A failed attempt: queued again, not to run before retry_delay seconds
 * doubled once per earlier attempt (at most a day), or failed (and the
 * object 'error') after max_attempts, or at once when permanent (the
 * error would recur: sp_error_permanent).
 */
static bool
st_fail_job(st_call *c, const st_settings *s, const st_job *j, const char *msg, bool permanent)
{
	char		delay[32];
	const char *p[4] = {j->id, msg, delay, permanent ? "1" : "0"};

	snprintf(delay, sizeof(delay), "%.17g", s->retry_delay);
	return st_exec(c, "recording the failure",
				   "UPDATE main.sparse_jobs SET last_error = ?2,"
				   " state = CASE WHEN attempts >= max_attempts OR CAST(?4 AS INTEGER) THEN 'failed' ELSE 'queued' END,"
				   " retry_at = CASE WHEN attempts < max_attempts AND NOT CAST(?4 AS INTEGER) AND CAST(?3 AS REAL) > 0 THEN"
				   "  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('%+.3f seconds',"
				   "   min(CAST(?3 AS REAL) * (1 << min(max(attempts - 1, 0), 20)), 86400))) END,"
				   " finished_at = CASE WHEN attempts >= max_attempts OR CAST(?4 AS INTEGER) THEN " ST_NOW " END"
				   " WHERE job_id = ?1", 4, p, NULL, 0) &&
		st_exec(c, "recording the failure",
				"UPDATE main.sparse_storage SET decision = 'error',"
				" error = CASE WHEN CAST(?4 AS INTEGER) THEN printf('job %s failed and was not retried: %s', j.job_id, ?2)"
				"  ELSE printf('job %s failed %d times; last: %s', j.job_id, j.attempts, ?2) END"
				" FROM (SELECT job_id, object_id, kind, attempts FROM main.sparse_jobs"
				"  WHERE job_id = ?1 AND state = 'failed') j"
				" WHERE sparse_storage.object_id = j.object_id AND sparse_storage.kind = j.kind",
				4, p, NULL, 0);
}

/*
 * Run one claimed job; *done is set when it completed.  A failure of the
 * work is recorded on the job; only SQL errors and a cancel fail the call.
 */
static bool
st_run_one(st_call *c, const st_settings *s, int level, const st_job *j, bool *done)
{
	const char *dec = j->decision;
	const char *base = j->base;
	char		delta[SP_PATH_MAX];
	sp_compress_result res;
	sp_kind		kind;

	*done = false;
	if (!st_kind(c, j->kind, &kind))
		return false;
	if (strcmp(dec, "pending") == 0 && !st_decide(c, s, kind, j->object_id, j->path, base, false, &dec))
		return false;
	if (strcmp(dec, "delta") != 0)
		return (*done = st_complete(c, j, NULL));
	if (sp_store_delta_path(&c->ctx, s->delta_dir, kind, j->object_id, j->path, delta) != SP_OK ||
		sp_store_run(&c->ctx, kind, base, j->path, delta, level, &res) != SP_OK)
	{
		if (c->ctx.err.code == SP_ERR_CANCELLED || c->ctx.err.code == SP_ERR_NOMEM)
			return st_fail(c, sq_status_code(&c->ctx.err), "%s", c->ctx.err.msg);
		return st_fail_job(c, s, j, c->ctx.err.msg, sp_error_permanent(&c->ctx.err));
	}
	return (*done = st_complete(c, j, &res));
}

/* sparse_run_jobs([max_jobs]): run queued jobs in this connection; how many completed. */
static void
st_run_jobs_fn(sqlite3_context *fn, int argc, sqlite3_value **argv)
{
	sqlite3_int64 max = -1,
				tried = 0,
				done = 0;
	st_call		c;
	st_settings s;
	st_job		j;

	st_call_init(&c, fn);
	if (argc > 0 && sqlite3_value_type(argv[0]) != SQLITE_NULL &&
		(max = sqlite3_value_int64(argv[0])) < 0)
		st_fail(&c, SQLITE_ERROR, "max_jobs must be at least 0, not %lld", (long long) max);
	else if (st_load_settings(&c, &s))
	{
		while ((max < 0 || tried < max) && st_claim(&c, &j))
		{
			bool		ran,
						completed;

			tried++;
			ran = st_run_one(&c, &s, SP_LEVEL_DEFAULT, &j, &completed);
			st_job_free(&j);
			if (!ran)
				break;
			done += completed;
		}
	}
	if (c.rc != SQLITE_OK)
		st_result_fail(fn, &c);
	else
		sqlite3_result_int64(fn, done);
}

/* sparse_delta_path(object_id, kind, path): where a job writes the object's delta. */
static void
st_delta_path_fn(sqlite3_context *fn, int argc, sqlite3_value **argv)
{
	st_call		c;
	st_settings s;
	sp_kind		kind;
	char		out[SP_PATH_MAX];

	(void) argc;
	st_call_init(&c, fn);
	if (st_arg(argv, 0) == NULL || st_arg(argv, 2) == NULL)
	{
		sqlite3_result_null(fn);
		return;
	}
	if (st_kind(&c, st_arg(argv, 1), &kind) && st_load_settings(&c, &s) &&
		sp_store_delta_path(&c.ctx, s.delta_dir, kind, st_arg(argv, 0), st_arg(argv, 2), out) != SP_OK)
		st_fail(&c, SQLITE_ERROR, "%s", c.ctx.err.msg);
	if (c.rc != SQLITE_OK)
		st_result_fail(fn, &c);
	else
		sqlite3_result_text(fn, out, -1, SQLITE_TRANSIENT);
}

/* ---- registration --------------------------------------------------------------- */

/*
 * Security: all are SQLITE_DIRECTONLY.  sparse_decide and sparse_run_jobs
 * read and write files; sparse_watch changes the schema; sparse_delta_path
 * reads sparse_settings.  None may run from a view or a trigger stored in
 * a database (only from the connection's own TEMP triggers, which is how
 * sparse_watch uses sparse_decide).
 */
static const struct
{
	const char *name;
	int			nargs;
	void		(*fn) (sqlite3_context *, int, sqlite3_value **);
}			st_scalars[] = {
	{"sparse_decide", 4, st_decide_fn},
	{"sparse_watch", 5, st_watch_fn},
	{"sparse_run_jobs", 0, st_run_jobs_fn},
	{"sparse_run_jobs", 1, st_run_jobs_fn},
	{"sparse_delta_path", 3, st_delta_path_fn},
};

/* Register the storage functions, each holding a reference to conn. */
int
sq_store_register(sqlite3 *db, sq_conn *conn, char **errmsg)
{
	int			rc = SQLITE_OK;

	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(st_scalars) / sizeof(st_scalars[0]); i++)
	{
		sq_conn_ref(conn);		/* released by SQLite, even on failure */
		rc = sqlite3_create_function_v2(db, st_scalars[i].name, st_scalars[i].nargs,
										SQLITE_UTF8 | SQLITE_DIRECTONLY, conn,
										st_scalars[i].fn, NULL, NULL, sq_conn_release);
		if (rc != SQLITE_OK)
			*errmsg = sqlite3_mprintf("sparse: could not register %s: %s",
									  st_scalars[i].name, sqlite3_errstr(rc));
	}
	return rc;
}
