/*
 * hub.c -- the commands that work on a hub's PostgreSQL database through
 * libpq: `sparse worker`, `sparse migrate` and `sparse report`.
 *
 * worker: claims jobs with the extension's sparse_claim_job (FOR UPDATE SKIP
 * LOCKED plus a lease), decides a 'pending' object from a local estimate,
 * writes and verifies the delta with the core's sp_store_run on this
 * machine (the hub's files must be at the same paths here), and records the
 * result with sparse_complete_job, which completes the job and updates
 * sparse_storage in one transaction.  While the core works, its progress
 * hook renews the lease every third of its length, so only a dead or
 * stalled worker loses a job.  A failed attempt is recorded with
 * sparse_fail_job; Ctrl-C hands the job back (sparse_release_job).  With
 * --concurrency N it forks N such processes, each with its own connection.
 * It never deletes an original: it prints the ones whose delta it verified.
 * With --once it stops when no job is queued or running: it waits out jobs
 * other workers hold, since their lease may expire and leave them to us,
 * but not a failed job's retry time (sparse.retry_delay, a minute or more:
 * a later run or a long-running worker takes it).
 *
 * migrate: enqueues the rows of a hub table that sparse_storage does not
 * know yet, as 'pending' objects with a job each, a batch per transaction;
 * running it again enqueues nothing new.
 *
 * report: prints sparse_savings_report, with bars on a terminal, or --json.
 */
#include <errno.h>
#include <langinfo.h>
#include <libpq-fe.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* One worker process: its connection and the job it holds. */
typedef struct hub_worker
{
	PGconn	   *conn;
	char		name[160];		/* lease holder: "host:pid" */
	int			lease;			/* seconds */
	int			level;
	const char *out_root;		/* NULL: the server's sparse_delta_path */
	const char *job_id;			/* the claimed job (text), or NULL */
	double		renewed_ms;		/* when the lease was last renewed */
	int			done;
	int			failed;
} hub_worker;

/* Milliseconds on a monotonic clock. */
static double
hub_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Print a database error for cmd (its first line) and return the failure status. */
static int
hub_db_error(const cli_command *cmd, PGconn *conn, const char *what)
{
	char		line[1024];
	char		safe[4096];
	const char *msg = PQerrorMessage(conn);

	if (strncmp(msg, "ERROR:  ", 8) == 0)
		msg += 8;
	snprintf(line, sizeof(line), "%.*s", (int) strcspn(msg, "\n"), msg);
	cli_sanitize(safe, sizeof(safe), line);
	fprintf(stderr, "sparse: %s: %s: %s\n", cmd->name, what, safe);
	return CLI_EXIT_FAIL;
}

/* Connect to conninfo; NULL (after printing why) on failure. */
static PGconn *
hub_connect(const cli_command *cmd, const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		hub_db_error(cmd, conn, "could not connect");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Run a parameterized statement; the result, or NULL after PQclear on error. */
static PGresult *
hub_exec(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult   *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return r;
	PQclear(r);
	return NULL;
}

/* ---- worker --------------------------------------------------------------- */

/* Progress hook: renew the lease every third of its length (main thread). */
static void
hub_progress(void *user, uint64_t done, uint64_t total)
{
	hub_worker *w = user;
	char		lease[16];
	const char *p[3] = {w->job_id, w->name, lease};
	PGresult   *r;

	(void) done;
	(void) total;
	if (w->job_id == NULL || hub_now_ms() - w->renewed_ms < w->lease * 1000.0 / 3)
		return;
	snprintf(lease, sizeof(lease), "%d", w->lease);
	r = hub_exec(w->conn, "SELECT sparse_renew_lease($1, $2, $3)", 3, p);
	w->renewed_ms = hub_now_ms();
	PQclear(r);
}

/* Interrupt hook for the core: Ctrl-C or SIGTERM. */
static int
hub_interrupted(void *user)
{
	(void) user;
	return cli_was_interrupted();
}

/*
 * Record a failed attempt with its message; a permanent one (the core's
 * error would recur: sp_error_permanent) fails the job without retries.
 */
static void
hub_fail(hub_worker *w, const char *msg, bool permanent)
{
	const char *p[4] = {w->job_id, w->name, msg, permanent ? "true" : "false"};

	PQclear(hub_exec(w->conn, "SELECT sparse_fail_job($1, $2, $3, $4)", 4, p));
	w->failed++;
	fprintf(stderr, "sparse: worker %s: job %s failed%s: %s\n", w->name, w->job_id,
			permanent ? " (not retried)" : "", msg);
}

/* Decide a 'pending' object here; its new decision (static), or NULL (stopped, or a database error). */
static const char *
hub_decide(hub_worker *w, sp_kind kind, PGresult *job)
{
	static char dec[16];
	const char *base = PQgetisnull(job, 0, 4) ? NULL : PQgetvalue(job, 0, 4);
	char		pct[32] = "",
				bytes[32] = "";
	sp_ctx		ctx;
	sp_store_est est;
	const char *p[7];
	PGresult   *r;

	sp_ctx_init(&ctx);
	ctx.hooks.interrupted = hub_interrupted;
	if (sp_store_estimate(&ctx, kind, base, PQgetvalue(job, 0, 3), &est) != SP_OK &&
		ctx.err.code == SP_ERR_CANCELLED)
		return NULL;			/* stopped: the caller hands the job back */
	if (ctx.err.code == SP_OK)
	{
		snprintf(pct, sizeof(pct), "%.17g", est.savings_pct);
		snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long) est.original_bytes);
	}
	p[0] = PQgetvalue(job, 0, 1);
	p[1] = PQgetvalue(job, 0, 2);
	p[2] = PQgetvalue(job, 0, 3);
	p[3] = base;
	p[4] = pct[0] ? pct : NULL;
	p[5] = bytes[0] ? bytes : NULL;
	p[6] = pct[0] ? NULL : ctx.err.msg;
	r = hub_exec(w->conn, "SELECT sparse_set_decision($1, $2, $3, $4, $5, $6, $7)", 7, p);
	if (r == NULL)
		return NULL;
	snprintf(dec, sizeof(dec), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return dec;
}

/* Where this job's delta goes: --out-root here, else the server's setting. */
static bool
hub_delta_path(hub_worker *w, sp_kind kind, PGresult *job, char out[SP_PATH_MAX])
{
	const char *p[3] = {PQgetvalue(job, 0, 1), PQgetvalue(job, 0, 2), PQgetvalue(job, 0, 3)};
	PGresult   *r;
	sp_ctx		ctx;

	sp_ctx_init(&ctx);
	if (w->out_root != NULL)
		return sp_store_delta_path(&ctx, w->out_root, kind, p[0], p[2], out) == SP_OK;
	if ((r = hub_exec(w->conn, "SELECT sparse_delta_path($1, $2, $3)", 3, p)) == NULL)
		return false;
	snprintf(out, SP_PATH_MAX, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return true;
}

/* Complete the job, with the delta's facts when res is given; say why not. */
static bool
hub_complete(hub_worker *w, PGresult *job, const sp_compress_result *res)
{
	char		orig[32],
				stored[32];
	const char *p[8] = {w->job_id, w->name, PQgetvalue(job, 0, 3),
		PQgetisnull(job, 0, 4) ? NULL : PQgetvalue(job, 0, 4), NULL, NULL, NULL, NULL};
	PGresult   *r;
	bool		ok;

	if (res != NULL)
	{
		snprintf(orig, sizeof(orig), "%llu", (unsigned long long) res->ft_bytes);
		snprintf(stored, sizeof(stored), "%llu", (unsigned long long) res->delta_bytes);
		p[4] = res->delta_path;
		p[5] = orig;
		p[6] = stored;
		p[7] = res->ft_sha256;
	}
	r = hub_exec(w->conn, "SELECT sparse_complete_job($1, $2, $3, $4, $5, $6, $7, $8)", 8, p);
	ok = r != NULL && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (r == NULL)
		fprintf(stderr, "sparse: worker %s: job %s: could not record the result: %.*s\n", w->name,
				w->job_id, (int) strcspn(PQerrorMessage(w->conn), "\n"), PQerrorMessage(w->conn));
	else if (!ok)
		fprintf(stderr, "sparse: worker %s: job %s is no longer ours (its lease expired, or the object"
				" changed); the result is not recorded\n", w->name, w->job_id);
	PQclear(r);
	return ok;
}

/* Write and verify the delta of a claimed job, then complete it. */
static void
hub_store(hub_worker *w, sp_kind kind, PGresult *job)
{
	char		delta[SP_PATH_MAX];
	sp_compress_result res;
	sp_ctx		ctx;

	if (!hub_delta_path(w, kind, job, delta))
	{
		hub_fail(w, "could not compute the delta path", false);
		return;
	}
	sp_ctx_init(&ctx);
	ctx.hooks.interrupted = hub_interrupted;
	ctx.hooks.progress = hub_progress;
	ctx.hooks.user = w;
	w->renewed_ms = hub_now_ms();
	if (sp_store_run(&ctx, kind, PQgetvalue(job, 0, 4), PQgetvalue(job, 0, 3), delta,
					 w->level, &res) != SP_OK)
	{
		if (ctx.err.code == SP_ERR_CANCELLED)
			return;				/* the caller hands the job back */
		hub_fail(w, ctx.err.msg, sp_error_permanent(&ctx.err));
		return;
	}
	if (!hub_complete(w, job, &res))
		return;
	w->done++;
	printf("job %s: %s %s stored as %s (%.1f%% saved, verified); the original %s could go\n",
		   w->job_id, sp_kind_name(kind), PQgetvalue(job, 0, 1), res.delta_path,
		   res.savings_pct, PQgetvalue(job, 0, 3));
	fflush(stdout);
}

/* Carry out one claimed job (row 0 of job). */
static void
hub_work(hub_worker *w, PGresult *job)
{
	const char *dec = PQgetvalue(job, 0, 5);
	sp_ctx		ctx;
	sp_kind		kind;

	sp_ctx_init(&ctx);
	if (sp_kind_parse(&ctx, PQgetvalue(job, 0, 2), &kind) != SP_OK)
	{
		hub_fail(w, ctx.err.msg, sp_error_permanent(&ctx.err));
		return;
	}
	if (strcmp(dec, "pending") == 0 && (dec = hub_decide(w, kind, job)) == NULL)
	{
		if (!cli_was_interrupted())
			hub_fail(w, PQerrorMessage(w->conn), false);
		return;
	}
	if (strcmp(dec, "delta") == 0)
		hub_store(w, kind, job);
	else if (hub_complete(w, job, NULL))
	{
		w->done++;
		printf("job %s: %s %s kept in full (decision %s)\n", w->job_id,
			   sp_kind_name(kind), PQgetvalue(job, 0, 1), dec);
		fflush(stdout);
	}
}

/* Claim one job; its row, NULL when none is queued (or on error, *err set). */
static PGresult *
hub_claim(hub_worker *w, bool *err)
{
	char		lease[16];
	const char *p[2] = {w->name, lease};
	PGresult   *r;

	snprintf(lease, sizeof(lease), "%d", w->lease);
	r = hub_exec(w->conn,
				 "SELECT job_id, object_id, kind, path, base_path, decision, attempts"
				 " FROM sparse_claim_job($1, $2)", 2, p);
	*err = r == NULL;
	if (r != NULL && PQntuples(r) == 0)
	{
		PQclear(r);
		r = NULL;
	}
	return r;
}

/* Are jobs still running (maybe on a worker that died) or queued and due? */
static bool
hub_jobs_open(hub_worker *w)
{
	PGresult   *r = hub_exec(w->conn, "SELECT EXISTS (SELECT 1 FROM sparse_jobs WHERE state = 'running'"
							 " OR state = 'queued' AND (retry_at IS NULL OR retry_at <= clock_timestamp()))",
							 0, NULL);
	bool		open = r != NULL && strcmp(PQgetvalue(r, 0, 0), "t") == 0;

	PQclear(r);
	return open;
}

/* Sleep up to ms, waking early on a signal. */
static void
hub_nap(int ms)
{
	for (int i = 0; i < ms / 50 && !cli_was_interrupted(); i++)
		usleep(50 * 1000);
}

/* One worker process: claim and work jobs until none (once) or stopped. */
static int
hub_worker_loop(const cli_command *cmd, const char *conninfo, hub_worker *w, bool once)
{
	char		host[64];

	if ((w->conn = hub_connect(cmd, conninfo)) == NULL)
		return CLI_EXIT_FAIL;
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(w->name, sizeof(w->name), "%s:%d", host, (int) getpid());
	while (!cli_was_interrupted())
	{
		bool		err;
		PGresult   *job = hub_claim(w, &err);

		if (err)
			return hub_db_error(cmd, w->conn, "claiming a job");
		if (job == NULL)
		{
			/* --once waits out running jobs: their worker may die and leave them to us */
			if (once && !hub_jobs_open(w))
				break;
			hub_nap(once ? 250 : 1000);
			continue;
		}
		w->job_id = PQgetvalue(job, 0, 0);
		hub_work(w, job);
		if (cli_was_interrupted())
		{
			const char *p[2] = {w->job_id, w->name};

			PQclear(hub_exec(w->conn, "SELECT sparse_release_job($1, $2)", 2, p));
		}
		w->job_id = NULL;
		PQclear(job);
	}
	PQfinish(w->conn);
	fprintf(stderr, "sparse: worker %s: %d jobs done, %d failed attempts\n", w->name, w->done, w->failed);
	return w->failed > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* Fork n workers and wait for them; the worst exit status wins. */
static int
hub_fork_workers(const cli_command *cmd, const char *conninfo, hub_worker *w, bool once, int n)
{
	pid_t		pids[64];
	int			rc = CLI_EXIT_OK;
	int			alive = 0;

	fflush(NULL);
	for (int i = 0; i < n; i++)
	{
		if ((pids[i] = fork()) == 0)
			_exit(hub_worker_loop(cmd, conninfo, w, once));
		if (pids[i] < 0)
		{
			fprintf(stderr, "sparse: %s: fork failed: %s\n", cmd->name, strerror(errno));
			rc = CLI_EXIT_FAIL;
			break;
		}
		alive++;
	}
	while (alive > 0)
	{
		int			status;
		pid_t		pid = waitpid(-1, &status, 0);

		if (pid < 0 && errno == EINTR)
		{
			/* a signal to us alone (kill PID) reaches the workers too */
			for (int i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGTERM);
			continue;
		}
		if (pid < 0)
			break;
		for (int i = 0; i < n; i++)
			if (pids[i] == pid)
				pids[i] = 0;
		alive--;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			rc = CLI_EXIT_FAIL;
	}
	return rc;
}

/* sparse worker --db CONNSTR [--concurrency N] [--once] [--out-root DIR] */
int
cmd_worker(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	hub_worker	w;
	double		conc = 1,
				lease = 600,
				level = SP_LEVEL_DEFAULT;
	int			rc;

	(void) opts;
	if (args->db == NULL)
		return cli_usage_error(cmd, "--db CONNSTR is required");
	if ((rc = cli_parse_number(cmd, "--concurrency", args->concurrency, 1, false, 64,
							   "an integer from 1 to 64", &conc)) >= 0 ||
		(rc = cli_parse_number(cmd, "--lease", args->lease, 1, false, 86400,
							   "seconds from 1 to 86400", &lease)) >= 0 ||
		(rc = cli_parse_number(cmd, "level", args->level, SP_LEVEL_MIN, false, SP_LEVEL_MAX,
							   "an integer from 1 to 19", &level)) >= 0)
		return rc;
	memset(&w, 0, sizeof(w));
	w.lease = (int) lease;
	w.level = (int) level;
	w.out_root = args->out_root;
	if (conc == 1)
		return hub_worker_loop(cmd, args->db, &w, args->once);
	return hub_fork_workers(cmd, args->db, &w, args->once, (int) conc);
}

/* ---- migrate -------------------------------------------------------------- */

/* "schema.table" or "table" as quoted identifiers into out; false on error. */
static bool
hub_quote_table(PGconn *conn, const char *table, char *out, size_t cap)
{
	const char *dot = strchr(table, '.');
	char		part[256];
	char	   *a,
			   *b = NULL;
	size_t		plen = dot ? (size_t) (dot - table) : strlen(table);

	/* PostgreSQL names are at most 63 bytes: a longer one is refused, never cut */
	if (plen >= sizeof(part) || strlen(table) >= 256)
		return false;
	snprintf(part, sizeof(part), "%.*s", (int) plen, table);
	if ((a = PQescapeIdentifier(conn, part, strlen(part))) == NULL ||
		(dot && (b = PQescapeIdentifier(conn, dot + 1, strlen(dot + 1))) == NULL))
	{
		PQfreemem(a);
		return false;
	}
	snprintf(out, cap, "%s%s%s", a, b ? "." : "", b ? b : "");
	PQfreemem(a);
	PQfreemem(b);
	return true;
}

/* Build the batch statement of migrate into sql (identifiers quoted). */
static bool
hub_migrate_sql(PGconn *conn, const cli_args *args, char *sql, size_t cap)
{
	char		table[600];
	char	   *id = PQescapeIdentifier(conn, args->id_col, strlen(args->id_col));
	char	   *path = PQescapeIdentifier(conn, args->path_col, strlen(args->path_col));
	char	   *base = PQescapeIdentifier(conn, args->base_col, strlen(args->base_col));
	bool		ok = id && path && base && hub_quote_table(conn, args->table, table, sizeof(table));

	/* every name from the command line is a quoted identifier, never SQL; a cut statement is refused */
	if (ok)
		ok = (size_t) snprintf(sql, cap,
				 "WITH src AS ("
				 " SELECT t.%s::text AS object_id, t.%s::text AS path, t.%s::text AS base_path"
				 " FROM %s t"
				 " WHERE t.%s IS NOT NULL AND t.%s IS NOT NULL AND NOT EXISTS"
				 " (SELECT 1 FROM sparse_storage s WHERE s.object_id = t.%s::text AND s.kind = $1)"
				 " ORDER BY 1 LIMIT $2),"
				 " ins AS (INSERT INTO sparse_storage (object_id, kind, path, base_path, decision)"
				 " SELECT object_id, $1, path, base_path, 'pending' FROM src"
				 " ON CONFLICT DO NOTHING RETURNING object_id)"
				 " INSERT INTO sparse_jobs (object_id, kind) SELECT object_id, $1 FROM ins"
				 " ON CONFLICT DO NOTHING",
				 id, path, base, table, id, path, id) < cap;
	PQfreemem(id);
	PQfreemem(path);
	PQfreemem(base);
	return ok;
}

/* sparse migrate: enqueue the table's rows not yet in sparse_storage. */
int
cmd_migrate(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	char		sql[4096],
				batch[16];
	double		size = 1000;
	const char *p[2] = {args->kind, batch};
	long long	total = 0;
	PGconn	   *conn;
	sp_ctx		ctx;
	sp_kind		kind;
	int			rc;

	if (!args->db || !args->table || !args->id_col || !args->path_col || !args->base_col || !args->kind)
		return cli_usage_error(cmd, "--db, --table, --id-col, --path-col, --base-col and --kind are required");
	sp_ctx_init(&ctx);
	if (sp_kind_parse(&ctx, args->kind, &kind) != SP_OK)
		return cli_usage_error(cmd, "--kind must be model or dataset, not \"%s\"", args->kind);
	if ((rc = cli_parse_number(cmd, "--batch-size", args->batch_size, 1, false, 1000000,
							   "an integer from 1 to 1000000", &size)) >= 0)
		return rc;
	snprintf(batch, sizeof(batch), "%d", (int) size);
	if ((conn = hub_connect(cmd, args->db)) == NULL)
		return CLI_EXIT_FAIL;
	if (!hub_migrate_sql(conn, args, sql, sizeof(sql)))
	{
		PQfinish(conn);
		return cli_usage_error(cmd, "a table or column name is too long");
	}
	for (;;)
	{
		PGresult   *r = hub_exec(conn, sql, 2, p);
		long long	n;

		if (r == NULL)
		{
			rc = hub_db_error(cmd, conn, "enqueuing");
			PQfinish(conn);
			return rc;
		}
		n = atoll(PQcmdTuples(r));
		PQclear(r);
		total += n;
		if (n == 0 || cli_was_interrupted())
			break;
	}
	PQfinish(conn);
	if (opts->json)
		printf("{\"enqueued\": %lld}\n", total);
	else if (!opts->quiet)
		printf("enqueued %lld %s%s from %s\n", total, args->kind, total == 1 ? "" : "s", args->table);
	return CLI_EXIT_OK;
}

/* ---- report --------------------------------------------------------------- */

/* A bar of width cells, filled in proportion to pct (0..100); blocks in UTF-8, else '#'. */
static void
hub_bar(char *out, size_t cap, double pct, int width, bool utf8)
{
	int			fill = (int) (pct / 100.0 * width + 0.5);
	size_t		n = 0;

	fill = fill < 0 ? 0 : fill > width ? width : fill;
	for (int i = 0; i < width && n + 4 < cap; i++)
		n += (size_t) snprintf(out + n, cap - n, "%s",
							   i < fill ? (utf8 ? "\u2588" : "#") : (utf8 ? "\u2591" : "."));
	out[n] = '\0';
}

/* Print the report rows as bars (a terminal) after the table. */
static void
hub_bars(PGresult *r)
{
	bool		utf8;

	/* the terminal's character set, from the environment's locale */
	setlocale(LC_CTYPE, "");
	utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	for (int i = 0; i < PQntuples(r); i++)
	{
		char		bar[256],
					orig[64],
					stored[64];
		double		pct = PQgetisnull(r, i, 7) ? 0 : atof(PQgetvalue(r, i, 7));

		hub_bar(bar, sizeof(bar), pct, 40, utf8);
		cli_format_bytes(orig, sizeof(orig), strtoull(PQgetvalue(r, i, 4), NULL, 10));
		cli_format_bytes(stored, sizeof(stored), strtoull(PQgetvalue(r, i, 5), NULL, 10));
		printf("%-8s %s %5.1f%% saved (%s stored of %s)\n", PQgetvalue(r, i, 0), bar, pct,
			   stored, orig);
	}
}

/* The report rows as a cJSON array. */
static cJSON *
hub_report_rows(PGresult *r)
{
	cJSON	   *rows = cJSON_CreateArray();

	for (int i = 0; rows && i < PQntuples(r); i++)
	{
		cJSON	   *o = cJSON_CreateObject();

		cJSON_AddItemToArray(rows, o);
		cJSON_AddStringToObject(o, "kind", PQgetvalue(r, i, 0));
		for (int c = 1; c < PQnfields(r); c++)
		{
			if (PQgetisnull(r, i, c))
				cJSON_AddNullToObject(o, PQfname(r, c));
			else
				cJSON_AddNumberToObject(o, PQfname(r, c), atof(PQgetvalue(r, i, c)));
		}
	}
	return rows;
}

/* sparse report --db CONNSTR: the savings report. */
int
cmd_report(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field cols[] = {
		{"kind", "kind", CLI_TEXT},
		{"objects", "objects", CLI_COUNT},
		{"objects_delta", "as delta", CLI_COUNT},
		{"objects_open", "open", CLI_COUNT},
		{"original_bytes", "original", CLI_BYTES},
		{"stored_bytes", "stored", CLI_BYTES},
		{"saved_bytes", "saved", CLI_BYTES},
		{"savings_pct", "saved %", CLI_PCT},
		{"saved_per_month", "saved $/month", CLI_NUMBER},
	};
	PGconn	   *conn;
	PGresult   *r;
	int			rc;

	if (args->db == NULL)
		return cli_usage_error(cmd, "--db CONNSTR is required");
	if ((conn = hub_connect(cmd, args->db)) == NULL)
		return CLI_EXIT_FAIL;
	r = hub_exec(conn, "SELECT kind, objects, objects_delta, objects_open, original_bytes,"
				 " stored_bytes, saved_bytes, savings_pct, round(saved_per_month::numeric, 2)"
				 " AS saved_per_month FROM sparse_savings_report", 0, NULL);
	if (r == NULL)
	{
		rc = hub_db_error(cmd, conn, "reading sparse_savings_report");
		PQfinish(conn);
		return rc;
	}
	rc = cli_emit_table(opts, hub_report_rows(r), cols, (int) (sizeof(cols) / sizeof(cols[0])));
	if (rc == CLI_EXIT_OK && !opts->json && !opts->quiet && isatty(STDOUT_FILENO))
	{
		printf("\n");
		hub_bars(r);
	}
	PQclear(r);
	PQfinish(conn);
	return rc;
}
