/*
 * store_pg.c -- PostgreSQL side of hub storage decisions and jobs.
 *
 * The settings (sparse.model_min_savings_pct, sparse.dataset_min_savings_pct,
 * sparse.strict, sparse.delta_dir, sparse.storage_cost_per_gb_month,
 * sparse.retry_delay) and
 * sparse_setting(name), which the SQL code reads them with (calling it loads
 * this library, so the settings are defined even in a fresh session where
 * current_setting would not know them yet), and three functions over
 * common/store.c:
 *   sparse_store_estimate(kind, base, path)   the estimate behind a decision;
 *   sparse_delta_path(object_id, kind, path)  where its delta goes;
 *   sparse_store_run(kind, base, path, out, level)
 *                                             clear, compress, verify.
 * The tables, the trigger function, the queue functions and
 * sparse_run_jobs() are SQL and PL/pgSQL in the install script: they only
 * orchestrate, and every file is touched here, through the core, with the
 * same privilege checks as delta_compress.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "sparse.h"
#include "sparse_pg.h"

static double store_model_min_pct = 60.0;
static double store_dataset_min_pct = 70.0;
static bool store_strict = false;
static char *store_delta_dir = NULL;
static double store_cost_per_gb_month = 0.023;
static int	store_retry_delay = 60;

PG_FUNCTION_INFO_V1(sparse_store_estimate);
PG_FUNCTION_INFO_V1(sparse_delta_path);
PG_FUNCTION_INFO_V1(sparse_store_run);
PG_FUNCTION_INFO_V1(sparse_setting);

/* Define one percentage setting (0..100). */
static void
define_pct(const char *name, const char *desc, double *var, double dflt)
{
	DefineCustomRealVariable(name, desc,
							 "A 'delta' decision needs an estimated saving of at least this many percent.",
							 var, dflt, 0.0, 100.0, PGC_USERSET, 0, NULL, NULL, NULL);
}

/* Define the storage settings; called from _PG_init. */
void
sparse_store_init(void)
{
	define_pct("sparse.model_min_savings_pct",
			   "Least estimated saving for which a model is stored as a delta.",
			   &store_model_min_pct, 60.0);
	define_pct("sparse.dataset_min_savings_pct",
			   "Least estimated saving for which a dataset is stored as a delta.",
			   &store_dataset_min_pct, 70.0);
	DefineCustomBoolVariable("sparse.strict",
							 "Make a failed estimate fail the insert that triggered it.",
							 "Off: the decision is recorded as 'error' with the message, and the insert goes on.",
							 &store_strict, false, PGC_USERSET, 0, NULL, NULL, NULL);

	/*
	 * USERSET: the directory only names where deltas go; writing there
	 * still needs pg_write_server_files and stays under sparse.root.
	 */
	DefineCustomStringVariable("sparse.delta_dir",
							   "Directory where storage jobs write deltas.",
							   "Empty: next to the original, with the suffix .sdelta.",
							   &store_delta_dir, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("sparse.storage_cost_per_gb_month",
							 "Storage price per GiB and month used by sparse_savings_report.",
							 NULL, &store_cost_per_gb_month, 0.023, 0.0, 1e9,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sparse.retry_delay",
							"Seconds before a failed storage job is tried again, doubled at each further failure.",
							"At most a day; 0 retries at once.",
							&store_retry_delay, 60, 0, 86400, PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Text argument n as a C string, or NULL for SQL NULL. */
static char *
arg_cstring(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* Argument n, which must not be NULL (named what in the error). */
static char *
arg_required(FunctionCallInfo fcinfo, int n, const char *what)
{
	char	   *s = arg_cstring(fcinfo, n);

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
	return s;
}

/* Parse the kind argument or raise. */
static sp_kind
arg_kind(FunctionCallInfo fcinfo, int n)
{
	char	   *s = arg_required(fcinfo, n, "kind");
	sparse_call call;
	sp_kind		kind;
	sp_status	rc;

	sparse_call_init(&call);
	if ((rc = sp_kind_parse(&call.ctx, s, &kind)) != SP_OK)
		sparse_raise(&call, rc);
	sparse_call_done(&call);
	return kind;
}

/*
 * sparse_store_estimate(kind, base, path): original bytes, estimated delta
 * bytes and savings; with base NULL, the size and no savings.  Not STRICT
 * on base: a row without a base is decided 'full' from its size.
 */
Datum
sparse_store_estimate(PG_FUNCTION_ARGS)
{
	sp_kind		kind = arg_kind(fcinfo, 0);
	char	   *base = arg_cstring(fcinfo, 1);
	char	   *path = arg_required(fcinfo, 2, "path");
	sparse_call call;
	sp_store_est est;
	sp_status	rc;
	Datum		values[4];
	bool		nulls[4] = {false};

	sparse_check_access(SPARSE_READ);
	sparse_call_init(&call);
	if ((rc = sp_store_estimate(&call.ctx, kind, base, path, &est)) != SP_OK)
		sparse_raise(&call, rc);
	sparse_call_done(&call);
	values[0] = Int64GetDatum((int64) est.original_bytes);
	values[1] = Int64GetDatum((int64) est.est_delta_bytes);
	values[2] = Float8GetDatum(est.savings_pct);
	values[3] = Float8GetDatum(est.elapsed_ms);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/* sparse_delta_path(object_id, kind, path): where the object's delta goes. */
Datum
sparse_delta_path(PG_FUNCTION_ARGS)
{
	char	   *id = arg_required(fcinfo, 0, "object_id");
	sp_kind		kind = arg_kind(fcinfo, 1);
	char	   *path = arg_required(fcinfo, 2, "path");
	char		out[SP_PATH_MAX];
	sparse_call call;
	sp_status	rc;

	sparse_call_init(&call);
	rc = sp_store_delta_path(&call.ctx, store_delta_dir ? store_delta_dir : "", kind, id, path, out);
	if (rc != SP_OK)
		sparse_raise(&call, rc);
	sparse_call_done(&call);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/*
 * sparse_store_run(kind, base, path, out, level): remove what an earlier
 * attempt left at out, write the delta there and check it by rebuilding.
 */
Datum
sparse_store_run(PG_FUNCTION_ARGS)
{
	sp_kind		kind = arg_kind(fcinfo, 0);
	char	   *base = arg_required(fcinfo, 1, "base");
	char	   *path = arg_required(fcinfo, 2, "path");
	char	   *out = arg_required(fcinfo, 3, "out");
	int			level = PG_ARGISNULL(4) ? SP_LEVEL_DEFAULT : PG_GETARG_INT32(4);
	sparse_call call;
	sp_compress_result res;
	sp_status	rc;
	Datum		values[5];
	bool		nulls[5] = {false};

	/*
	 * Security: it reads both sides and creates a file at out, so it needs
	 * what delta_compress needs.  It may also remove a sparse delta and
	 * sparse temporaries at out (an interrupted attempt's leftovers): a
	 * role that may write server files can overwrite those with COPY ... TO
	 * anyway, so removing them grants nothing new, and a file that is not
	 * a sparse delta (or a symlink) is never removed.
	 */
	sparse_check_access(SPARSE_READ_WRITE);
	sparse_call_init(&call);
	if ((rc = sp_store_run(&call.ctx, kind, base, path, out, level, &res)) != SP_OK)
		sparse_raise(&call, rc);
	sparse_call_done(&call);
	values[0] = CStringGetTextDatum(res.delta_path);
	values[1] = Int64GetDatum((int64) res.ft_bytes);
	values[2] = Int64GetDatum((int64) res.delta_bytes);
	values[3] = CStringGetTextDatum(res.ft_sha256);
	values[4] = Float8GetDatum(res.elapsed_ms);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/*
 * sparse_setting(name): the value of one of our settings as text.  Being a
 * function of this library, calling it loads the library, which defines
 * the settings (and takes over values SET before it was loaded).
 */
Datum
sparse_setting(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *value;

	if (strncmp(name, "sparse.", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a sparse setting", name)));
	value = GetConfigOption(name, false, false);
	PG_RETURN_TEXT_P(cstring_to_text(value));
}
