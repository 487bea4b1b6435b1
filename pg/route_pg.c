/*
 * route_pg.c -- PostgreSQL binding of smart routing (common/route.h,
 * docs/ROUTING.md).
 *
 * Usage (after CREATE EXTENSION sparse and rows in sparse_route_catalog):
 *   SELECT * FROM route_classify('Prove that sqrt(2) is irrational.');
 *   SELECT recommended_model, routed, reason
 *     FROM route_decision('gpt-4o', 'hi there', 50, request_id => 'req-17');
 *   SELECT route_predict('hi there', 'llama-3-8b');
 *   SELECT * FROM route_train();     -- learn predictors from the feedback
 *   SELECT route_hash('abc');
 *   SET sparse.routing_percentage = 10;  SET sparse.route_log = on;
 *
 * How it works:
 *   - Each backend keeps the catalog and the learned predictors in one
 *     sp_route_catalog, built with SPI and allocated (through the core's
 *     hooks) in a memory context of its own under TopMemoryContext.  While
 *     nothing changes, route_decision runs no SQL at all: it checks the
 *     caller may read the two tables (syscache only), calls
 *     sp_route_decide() and forms the row.
 *   - Statement triggers on sparse_route_catalog and sparse_route_model call
 *     sparse_route_invalidate(), which queues a relcache invalidation of the
 *     table.  Every backend (this one at its next command, the others after
 *     the commit) runs route_relcache_cb(), which marks the cache stale; the
 *     next call reloads it.  A rollback replays the invalidation locally, so
 *     rolled-back rows never stay cached.  The reload reads with the latest
 *     snapshot, so even a REPEATABLE READ transaction sees a committed
 *     change as soon as it received the invalidation.
 *   - The tables are found in the schema of the function being called (the
 *     extension is not relocatable, so all its objects share one schema),
 *     and every statement names them schema-qualified, whatever the
 *     search_path.
 *   - With sparse.route_log on, route_decision inserts one row into
 *     sparse_route_log through a saved SPI plan.
 *   - route_train drives the core trainer over the feedback with one SPI
 *     cursor per epoch (fetched in batches, interruptible between batches),
 *     then replaces the rows of sparse_route_model.  The trainer is
 *     allocated through the hooks in the call's memory context and ended by
 *     that context's reset callback, so an error or a cancel cannot leak it.
 *
 * Core statuses become errors only through sparse_raise() (pg/sparse_pg.c).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "route.h"
#include "sparse_pg.h"

/* Rows fetched per cursor batch while training. */
#define ROUTE_TRAIN_BATCH 1000

/* max_tokens route_predict classifies with (route_decision's default). */
#define ROUTE_PREDICT_MAX_TOKENS 100

/* Columns of a sparse_route_log row, in the order of the saved INSERT. */
#define ROUTE_LOG_COLS 14

/* ---- settings ------------------------------------------------------------ */

static double route_percentage = 100.0;
static bool route_log_on = false;
static bool route_log_prompts = false;

/* ---- per-backend state --------------------------------------------------- */

/* Catalog and predictors of this backend; everything lives in cxt. */
typedef struct route_cache
{
	MemoryContext cxt;			/* holds this struct and call.mcxt */
	sparse_call call;			/* hooks allocate the catalog in call.mcxt */
	sp_route_catalog cat;
} route_cache;

/* Where the routing tables are, and the statements that name them. */
typedef struct route_place
{
	bool		valid;			/* false: look the relids up again */
	Oid			nsp;			/* schema of the extension */
	Oid			catalog_relid;
	Oid			model_relid;
	Oid			sql_nsp;		/* schema the strings and the plan name */
	char	   *q_catalog;
	char	   *q_learned;
	char	   *q_feedback;
	char	   *q_log_train;
	char	   *q_log_insert;
	char	   *q_model_delete;
	char	   *q_model_insert;
	SPIPlanPtr	log_plan;		/* saved INSERT INTO sparse_route_log */
} route_place;

static route_cache *route_current = NULL;
static bool route_current_valid = false;
static uint64 route_inval_count = 0;
static route_place route_where;
static MemoryContext route_sql_cxt = NULL;	/* holds route_where's strings */

PG_FUNCTION_INFO_V1(sparse_route_classify);
PG_FUNCTION_INFO_V1(sparse_route_decision);
PG_FUNCTION_INFO_V1(sparse_route_predict);
PG_FUNCTION_INFO_V1(sparse_route_train);
PG_FUNCTION_INFO_V1(sparse_route_hash);
PG_FUNCTION_INFO_V1(sparse_route_invalidate);

/*
 * Mark the cache stale when one of our tables (or everything: InvalidOid)
 * is invalidated.  Called from invalidation processing, so it only sets
 * flags: no catalog access, no freeing of memory someone may be using.
 * The relids are looked up again too, in case the table was dropped.
 */
static void
route_relcache_cb(Datum arg, Oid relid)
{
	if (relid != InvalidOid &&
		relid != route_where.catalog_relid &&
		relid != route_where.model_relid)
		return;
	route_current_valid = false;
	route_inval_count++;
	route_where.valid = false;
}

/* Define the routing settings and register the invalidation callback. */
void
sparse_route_init(void)
{
	DefineCustomRealVariable("sparse.routing_percentage",
							 "Share (0-100) of route_decision requests that are routed.",
							 "The others are served by the requested model; fractions are allowed.",
							 &route_percentage,
							 100.0, 0.0, 100.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("sparse.route_log",
							 "Logs every route_decision call to sparse_route_log.",
							 NULL,
							 &route_log_on,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	/*
	 * Privacy: by default the log keeps only the prompt's hash and hashed
	 * feature slots, from which the text cannot be read back; storing the
	 * raw prompt is an explicit choice.
	 */
	DefineCustomBoolVariable("sparse.route_log_prompts",
							 "Also stores the raw prompt in sparse_route_log.",
							 "Otherwise only its hash and hashed feature slots are stored.",
							 &route_log_prompts,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(route_relcache_cb, (Datum) 0);
}

/* ---- finding the tables -------------------------------------------------- */

/*
 * A statement naming our objects schema-qualified: every %s in fmt (at most
 * two) is the quoted schema name.  Kept until the schema changes.
 */
static char *
route_sql(const char *fmt, const char *schema)
{
	return MemoryContextStrdup(route_sql_cxt, psprintf(fmt, schema, schema));
}

/* Build the statements for the extension's schema (quoted identifier). */
static void
route_build_sql(Oid nsp)
{
	const char *s = quote_identifier(get_namespace_name(nsp));

	if (route_where.log_plan != NULL)
		SPI_freeplan(route_where.log_plan);
	route_where.log_plan = NULL;
	route_where.sql_nsp = InvalidOid;	/* until every string below is built */
	if (route_sql_cxt == NULL)
		route_sql_cxt = AllocSetContextCreate(TopMemoryContext, "sparse route sql",
											  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(route_sql_cxt);
	route_where.q_catalog = route_sql(
		"SELECT model_id, family, hardware, cost_per_1m_tokens, context_window,"
		" quality_simple, quality_moderate, quality_complex, enabled"
		" FROM %s.sparse_route_catalog ORDER BY model_id COLLATE \"C\"", s);
	route_where.q_learned = route_sql(
		"SELECT model_id, weights FROM %s.sparse_route_model"
		" WHERE feature_version = $1 ORDER BY model_id COLLATE \"C\"", s);
	route_where.q_feedback = route_sql(
		"SELECT prompt, model_id, quality FROM %s.sparse_route_feedback"
		" ORDER BY %s.route_hash(prompt), prompt COLLATE \"C\","
		" model_id COLLATE \"C\", quality", s);
	route_where.q_log_train = route_sql(
		"SELECT features, served_model, observed_quality, id"
		" FROM %s.sparse_route_log WHERE observed_quality IS NOT NULL"
		" ORDER BY prompt_hash, served_model COLLATE \"C\", observed_quality, id", s);
	route_where.q_log_insert = route_sql(
		"INSERT INTO %s.sparse_route_log (request_id, prompt_hash, prompt,"
		" features, requested_model, recommended_model, served_model, routed,"
		" complexity, est_tokens, requested_cost_per_1m_tokens,"
		" recommended_cost_per_1m_tokens, served_cost_per_1m_tokens,"
		" predicted_quality) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
		" $11, $12, $13, $14)", s);
	route_where.q_model_delete = route_sql("DELETE FROM %s.sparse_route_model", s);
	route_where.q_model_insert = route_sql(
		"INSERT INTO %s.sparse_route_model (model_id, feature_version, rows,"
		" epochs, train_loss, weights) VALUES ($1, $2, $3, $4, $5, $6)", s);
	route_where.sql_nsp = nsp;
}

/* Relid of one of our tables in schema nsp, or an error. */
static Oid
route_relid(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist",
						get_namespace_name(nsp), name)));
	return relid;
}

/*
 * Look the tables up in the schema of the function being called, unless
 * that is known already.  Only syscache lookups: no SQL.
 */
static void
route_locate(FunctionCallInfo fcinfo)
{
	Oid			nsp;

	if (route_where.valid)
		return;
	nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	route_where.catalog_relid = route_relid("sparse_route_catalog", nsp);
	route_where.model_relid = route_relid("sparse_route_model", nsp);
	route_where.nsp = nsp;
	if (route_where.sql_nsp != nsp || route_where.q_catalog == NULL)
		route_build_sql(nsp);
	route_where.valid = true;
}

/*
 * Security: the cache is shared by everything this backend runs, under any
 * role (SET ROLE, SECURITY DEFINER functions).  Check on every call that the
 * current role may read both tables, as the SQL that fills the cache would,
 * so a cache loaded by one role never answers for a role without access.
 */
static void
route_check_read(void)
{
	Oid			user = GetUserId();

	if (pg_class_aclcheck(route_where.catalog_relid, user, ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "sparse_route_catalog");
	if (pg_class_aclcheck(route_where.model_relid, user, ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "sparse_route_model");
}

/* ---- loading the catalog ------------------------------------------------- */

/* Text column i (1-based) of an SPI row as a C string, or NULL. */
static char *
route_spi_text(HeapTuple tup, TupleDesc desc, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, i, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Float8 column i (1-based) of an SPI row (NOT NULL in the table). */
static double
route_spi_float(HeapTuple tup, TupleDesc desc, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, i, &isnull);

	return isnull ? NAN : DatumGetFloat8(d);
}

/* Run a read-only statement with snapshot snap (InvalidSnapshot: active). */
static void
route_spi_read(const char *sql, int nargs, Oid *types, Datum *args, Snapshot snap)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);
	int			rc;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	rc = SPI_execute_snapshot(plan, args, NULL, snap, InvalidSnapshot,
							  true, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
	SPI_freeplan(plan);
}

/* Read every sparse_route_catalog row into cat (through call's hooks). */
static void
route_read_catalog(sparse_call *call, sp_route_catalog *cat, Snapshot snap)
{
	route_spi_read(route_where.q_catalog, 0, NULL, NULL, snap);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		sp_route_model m;
		bool		isnull;
		sp_status	st;

		m.model_id = route_spi_text(tup, desc, 1);
		m.family = route_spi_text(tup, desc, 2);
		m.hardware = route_spi_text(tup, desc, 3);
		m.cost_per_1m_tokens = route_spi_float(tup, desc, 4);
		m.context_window = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		m.quality[SP_SIMPLE] = route_spi_float(tup, desc, 6);
		m.quality[SP_MODERATE] = route_spi_float(tup, desc, 7);
		m.quality[SP_COMPLEX] = route_spi_float(tup, desc, 8);
		m.enabled = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
		st = sp_route_catalog_add(&call->ctx, cat, &m);
		if (st != SP_OK)
			sparse_raise(call, st);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Install the predictors of sparse_route_model into cat.  Rows of another
 * feature version are left out (those models use their priors until the
 * next route_train), so upgrading the core never breaks routing.
 */
static void
route_read_learned(sparse_call *call, sp_route_catalog *cat, Snapshot snap)
{
	Oid			type = INT4OID;
	Datum		version = Int32GetDatum(SP_ROUTE_FEATURE_VERSION);
	const char **ids;
	const void **blobs;
	size_t	   *lens;
	uint64		n;
	sp_status	st;

	route_spi_read(route_where.q_learned, 1, &type, &version, snap);
	n = SPI_processed;
	ids = palloc0(sizeof(*ids) * (n + 1));
	blobs = palloc0(sizeof(*blobs) * (n + 1));
	lens = palloc0(sizeof(*lens) * (n + 1));
	for (uint64 r = 0; r < n; r++)
	{
		bool		isnull;
		bytea	   *w;

		ids[r] = route_spi_text(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		w = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[r],
										  SPI_tuptable->tupdesc, 2, &isnull));
		blobs[r] = VARDATA_ANY(w);
		lens[r] = VARSIZE_ANY_EXHDR(w);
	}
	st = sp_route_catalog_set_learned(&call->ctx, cat, n, ids, blobs, lens);
	if (st != SP_OK)
		sparse_raise(call, st);
	SPI_freetuptable(SPI_tuptable);
}

/* Error context line of a failed reload. */
static void
route_reload_context(void *arg)
{
	errcontext("while loading the routing catalog and predictors of the sparse extension");
}

/* A new, empty cache whose memory is reclaimed if the current call fails. */
static route_cache *
route_cache_new(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "sparse route cache",
											  ALLOCSET_SMALL_SIZES);
	route_cache *cache = MemoryContextAllocZero(cxt, sizeof(route_cache));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	sparse_call_init(&cache->call);
	MemoryContextSwitchTo(old);
	/* the cache outlives the value of sparse.root it was given (unused here) */
	cache->call.ctx.root = "";
	cache->cxt = cxt;
	sp_route_catalog_init(&cache->cat);
	return cache;
}

/*
 * Load the catalog and predictors, then replace the cache.  The new cache
 * is built under the call's memory context and moved under
 * TopMemoryContext only when complete, so a failed load leaks nothing and
 * keeps the old cache stale.  An invalidation that arrives while loading
 * (the SQL takes locks, which processes invalidations) leaves the new cache
 * stale, so it is used once and then reloaded.
 */
static void
route_reload(void)
{
	uint64		seen = route_inval_count;
	route_cache *fresh = route_cache_new();
	ErrorContextCallback errcb;
	Snapshot	snap;

	errcb.callback = route_reload_context;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	snap = RegisterSnapshot(GetLatestSnapshot());
	route_read_catalog(&fresh->call, &fresh->cat, snap);
	route_read_learned(&fresh->call, &fresh->cat, snap);
	UnregisterSnapshot(snap);
	SPI_finish();
	error_context_stack = errcb.previous;

	MemoryContextSetParent(fresh->cxt, TopMemoryContext);
	if (route_current != NULL)
		MemoryContextDelete(route_current->cxt);
	route_current = fresh;
	route_current_valid = (route_inval_count == seen);
	elog(DEBUG1, "sparse: loaded the routing catalog (%zu models, %zu learned)",
		 fresh->cat.n, fresh->cat.n_learned);
}

/*
 * The catalog for this call: checked against the caller's privileges and
 * reloaded only when stale.  Valid until the next call into this file.
 * Invalidations are read first, so a change another session committed is
 * used from the next call on, even inside a long transaction (while the
 * queue is empty this is one unlocked read of shared memory).
 */
static const sp_route_catalog *
route_catalog(FunctionCallInfo fcinfo)
{
	AcceptInvalidationMessages();
	route_locate(fcinfo);
	route_check_read();
	if (route_current == NULL || !route_current_valid)
		route_reload();
	return &route_current->cat;
}

/* ---- arguments and results ----------------------------------------------- */

/* Refuse a NULL argument the core has no meaning for. */
static void
route_require(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/* Tuple descriptor of the function's result columns, blessed once per call site. */
static TupleDesc
route_result_desc(FunctionCallInfo fcinfo)
{
	MemoryContext old;
	TupleDesc	desc;

	if (fcinfo->flinfo->fn_extra != NULL)
		return (TupleDesc) fcinfo->flinfo->fn_extra;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = desc;
	return desc;
}

/* A core double as float8, NULL (via *isnull) when it is NaN. */
static Datum
route_float(double v, bool *isnull)
{
	*isnull = isnan(v);
	return *isnull ? (Datum) 0 : Float8GetDatum(v);
}

/* Text datum of s, NULL (via *isnull) when s is NULL. */
static Datum
route_text(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* ---- route_classify, route_hash ------------------------------------------ */

/* route_classify(prompt, max_tokens): complexity, score, tokens, signals. */
Datum
sparse_route_classify(PG_FUNCTION_ARGS)
{
	text	   *prompt = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	sparse_call call;
	sp_route_class cls;
	sp_status	st;
	Datum		values[4];
	bool		nulls[4] = {false};

	route_require(fcinfo, 1, "max_tokens");
	sparse_call_init(&call);
	st = sp_route_classify(&call.ctx,
						   prompt != NULL ? VARDATA_ANY(prompt) : NULL,
						   prompt != NULL ? VARSIZE_ANY_EXHDR(prompt) : 0,
						   PG_GETARG_INT32(1), &cls);
	if (st != SP_OK)
		sparse_raise(&call, st);
	sparse_call_done(&call);

	values[0] = CStringGetTextDatum(sp_complexity_name(cls.complexity));
	values[1] = Float8GetDatum(cls.score);
	values[2] = Int32GetDatum((int32) Min(cls.est_prompt_tokens, PG_INT32_MAX));
	values[3] = CStringGetTextDatum(cls.signals);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(route_result_desc(fcinfo),
													  values, nulls)));
}

/* route_hash(text): XXH3-64 of the bytes as a signed bigint. */
Datum
sparse_route_hash(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64((int64) sp_route_hash(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

/* ---- route_predict ------------------------------------------------------- */

/*
 * route_predict(prompt, model_id): the predicted quality route_decision
 * uses for that model (classified with route_decision's default max_tokens
 * of 100); NULL for a model not in the catalog.  STRICT in SQL.
 */
Datum
sparse_route_predict(PG_FUNCTION_ARGS)
{
	text	   *prompt = PG_GETARG_TEXT_PP(0);
	char	   *model_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const sp_route_catalog *cat = route_catalog(fcinfo);
	int			i = sp_route_catalog_find(cat, model_id);
	sp_route_features *feats = NULL;
	sparse_call call;
	sp_route_class cls;
	sp_status	st;

	if (i < 0)
		PG_RETURN_NULL();
	sparse_call_init(&call);
	st = sp_route_classify(&call.ctx, VARDATA_ANY(prompt), VARSIZE_ANY_EXHDR(prompt),
						   ROUTE_PREDICT_MAX_TOKENS, &cls);
	if (st == SP_OK && cat->n_learned > 0)
	{
		feats = palloc(sizeof(sp_route_features));
		st = sp_route_featurize(&call.ctx, VARDATA_ANY(prompt),
								VARSIZE_ANY_EXHDR(prompt), feats);
	}
	if (st != SP_OK)
		sparse_raise(&call, st);
	sparse_call_done(&call);
	PG_RETURN_FLOAT8(sp_route_predict(cat, i, &cls, feats));
}

/* ---- route_decision ------------------------------------------------------ */

/* What a decision means in names and prices, copied out of the catalog. */
typedef struct route_outcome
{
	const char *recommended;	/* recommended model, or the requested name */
	const char *hardware;		/* of the recommended model, or NULL */
	const char *served;			/* served model, or the requested name */
	double		served_cost;	/* NaN: served model not in the catalog */
	double		served_quality; /* predicted quality of the served model */
} route_outcome;

/* Read route_decision's arguments into req (pointers into the arguments). */
static void
route_request_args(FunctionCallInfo fcinfo, sp_route_request *req)
{
	memset(req, 0, sizeof(*req));
	route_require(fcinfo, 2, "max_tokens");
	route_require(fcinfo, 3, "quality_threshold");
	route_require(fcinfo, 4, "cost_priority");
	if (!PG_ARGISNULL(0))
		req->requested_model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
	{
		text	   *prompt = PG_GETARG_TEXT_PP(1);

		req->prompt = VARDATA_ANY(prompt);
		req->prompt_len = VARSIZE_ANY_EXHDR(prompt);
	}
	req->max_tokens = PG_GETARG_INT32(2);
	req->quality_threshold = PG_GETARG_FLOAT8(3);
	req->cost_priority = PG_GETARG_BOOL(4);
	if (!PG_ARGISNULL(5))
	{
		text	   *rid = PG_GETARG_TEXT_PP(5);

		req->request_id = VARDATA_ANY(rid);
		req->request_id_len = VARSIZE_ANY_EXHDR(rid);
	}
	req->routing_percentage = route_percentage;
}

/* Names and prices of a decision, copied so no later reload can move them. */
static void
route_outcome_of(const sp_route_catalog *cat, const sp_route_request *req,
				 const sp_route_decision *out, route_outcome *oc)
{
	const sp_route_model *rec = out->recommended >= 0 ? &cat->models[out->recommended] : NULL;
	const sp_route_model *srv = out->served >= 0 ? &cat->models[out->served] : NULL;

	oc->recommended = pstrdup(rec != NULL ? rec->model_id : req->requested_model);
	oc->hardware = (rec != NULL && rec->hardware != NULL) ? pstrdup(rec->hardware) : NULL;
	oc->served = pstrdup(srv != NULL ? srv->model_id : req->requested_model);
	oc->served_cost = srv != NULL ? srv->cost_per_1m_tokens : NAN;
	if (srv == NULL)
		oc->served_quality = NAN;
	else if (out->served == out->recommended)
		oc->served_quality = out->predicted_quality;
	else if (out->served == out->requested)
		oc->served_quality = out->requested_predicted_quality;
	else
		oc->served_quality = NAN;
}

/* The route_decision row. */
static Datum
route_decision_row(FunctionCallInfo fcinfo, const sp_route_request *req,
				   const sp_route_decision *out, const route_outcome *oc)
{
	Datum		v[12];
	bool		n[12] = {false};

	v[0] = CStringGetTextDatum(sp_complexity_name(out->cls.complexity));
	v[1] = Float8GetDatum(out->cls.score);
	v[2] = CStringGetTextDatum(req->requested_model);
	v[3] = CStringGetTextDatum(oc->recommended);
	v[4] = route_text(oc->hardware, &n[4]);
	v[5] = route_float(out->estimated_cost_per_1m_tokens, &n[5]);
	v[6] = route_float(out->requested_cost_per_1m_tokens, &n[6]);
	v[7] = route_float(out->cost_savings_pct, &n[7]);
	v[8] = route_float(out->predicted_quality, &n[8]);
	v[9] = route_float(out->requested_predicted_quality, &n[9]);
	v[10] = BoolGetDatum(out->routed);
	v[11] = CStringGetTextDatum(out->reason);
	return HeapTupleGetDatum(heap_form_tuple(route_result_desc(fcinfo), v, n));
}

/* The saved INSERT INTO sparse_route_log (inside an SPI connection). */
static SPIPlanPtr
route_log_plan(void)
{
	Oid			types[ROUTE_LOG_COLS] = {
		TEXTOID, INT8OID, TEXTOID, INT4ARRAYOID, TEXTOID, TEXTOID, TEXTOID,
		BOOLOID, TEXTOID, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID
	};
	SPIPlanPtr	plan;

	if (route_where.log_plan != NULL)
		return route_where.log_plan;
	plan = SPI_prepare(route_where.q_log_insert, ROUTE_LOG_COLS, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	route_where.log_plan = plan;
	return plan;
}

/* The feature slots of a decision as int4[] (slots are < 2^16). */
static Datum
route_features_array(const sp_route_features *f)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(f->n, 1));

	for (uint32 i = 0; i < f->n; i++)
		d[i] = Int32GetDatum((int32) f->idx[i]);
	return PointerGetDatum(construct_array(d, (int) f->n, INT4OID,
										   sizeof(int32), true, TYPALIGN_INT));
}

/* Insert the decision into sparse_route_log (sparse.route_log is on). */
static void
route_log_write(FunctionCallInfo fcinfo, const sp_route_request *req,
				const sp_route_decision *out, const sp_route_features *feats,
				const route_outcome *oc)
{
	Datum		v[ROUTE_LOG_COLS];
	bool		n[ROUTE_LOG_COLS] = {false};
	char		nc[ROUTE_LOG_COLS];
	int			rc;

	v[0] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
	n[0] = PG_ARGISNULL(5);
	v[1] = Int64GetDatum((int64) sp_route_hash(req->prompt, req->prompt_len));
	v[2] = PG_GETARG_DATUM(1);
	n[2] = !route_log_prompts;
	v[3] = route_features_array(feats);
	v[4] = CStringGetTextDatum(req->requested_model);
	v[5] = CStringGetTextDatum(oc->recommended);
	v[6] = CStringGetTextDatum(oc->served);
	v[7] = BoolGetDatum(out->routed);
	v[8] = CStringGetTextDatum(sp_complexity_name(out->cls.complexity));
	v[9] = Int64GetDatum(out->cls.context_tokens + req->max_tokens);
	v[10] = route_float(out->requested_cost_per_1m_tokens, &n[10]);
	v[11] = route_float(out->estimated_cost_per_1m_tokens, &n[11]);
	v[12] = route_float(oc->served_cost, &n[12]);
	v[13] = route_float(oc->served_quality, &n[13]);
	for (int i = 0; i < ROUTE_LOG_COLS; i++)
		nc[i] = n[i] ? 'n' : ' ';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_plan(route_log_plan(), v, nc, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * route_decision(requested_model, prompt, max_tokens, quality_threshold,
 * cost_priority, request_id): the routing decision for one request.  Not
 * STRICT: a NULL model or prompt reaches the core, which names it.
 */
Datum
sparse_route_decision(PG_FUNCTION_ARGS)
{
	sp_route_request req;
	sp_route_decision *out = palloc0(sizeof(sp_route_decision));
	sp_route_features *feats = NULL;
	const sp_route_catalog *cat;
	route_outcome oc;
	sparse_call call;
	sp_status	st;
	Datum		row;

	route_request_args(fcinfo, &req);
	cat = route_catalog(fcinfo);
	if (route_log_on)
		feats = palloc(sizeof(sp_route_features));
	sparse_call_init(&call);
	st = sp_route_decide(&call.ctx, cat, &req, out, feats);
	if (st != SP_OK)
		sparse_raise(&call, st);
	sparse_call_done(&call);

	route_outcome_of(cat, &req, out, &oc);
	row = route_decision_row(fcinfo, &req, out, &oc);
	if (route_log_on)
		route_log_write(fcinfo, &req, out, feats, &oc);
	PG_RETURN_DATUM(row);
}

/* ---- route_train --------------------------------------------------------- */

/* A training run: the call, its catalog and the trainer, all in call->mcxt. */
typedef struct route_train_run
{
	MemoryContextCallback cb;
	sparse_call *call;
	sp_route_catalog cat;
	sp_route_trainer *t;		/* NULL once ended */
} route_train_run;

/*
 * Reset callback of the call's memory context: end a trainer still alive
 * (an error or cancel escaped the loop).  It runs before the context's
 * memory is released, so the trainer is still intact.
 */
static void
route_train_release(void *arg)
{
	route_train_run *run = (route_train_run *) arg;

	if (run->t != NULL)
		sp_route_train_end(&run->call->ctx, run->t, NULL);
	run->t = NULL;
}

/*
 * Prepare a training run before SPI_connect, so that its memory context is
 * a child of the function's context and outlives SPI_finish.
 */
static route_train_run *
route_train_prepare(void)
{
	sparse_call *call = palloc(sizeof(sparse_call));
	route_train_run *run;

	sparse_call_init(call);
	run = MemoryContextAllocZero(call->mcxt, sizeof(route_train_run));
	run->call = call;
	sp_route_catalog_init(&run->cat);
	run->cb.func = route_train_release;
	run->cb.arg = run;
	MemoryContextRegisterResetCallback(call->mcxt, &run->cb);
	return run;
}

/* Read the catalog (the statement's snapshot, like the feedback) and begin. */
static void
route_train_begin(route_train_run *run)
{
	sp_status	st;

	route_read_catalog(run->call, &run->cat, InvalidSnapshot);
	st = sp_route_train_begin(&run->call->ctx, &run->cat, NULL, &run->t);
	if (st != SP_OK)
		sparse_raise(run->call, st);
}

/* The features of a sparse_route_log row, checked to be a plain int4[]. */
static void
route_train_log_features(Datum d, int64 id, sp_route_sample *s)
{
	ArrayType  *a = DatumGetArrayTypeP(d);

	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != INT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("features of sparse_route_log row %lld are not a one-dimensional int4 array without nulls",
						(long long) id)));
	s->features = (const uint32_t *) ARR_DATA_PTR(a);
	s->n_features = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
}

/* Feed row r of the current SPI batch to the trainer. */
static void
route_train_row(route_train_run *run, uint64 r, bool from_log)
{
	HeapTuple	tup = SPI_tuptable->vals[r];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	sp_route_sample s = {0};
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, 1, &isnull);
	sp_status	st;

	if (from_log)
		route_train_log_features(d, DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull)), &s);
	else
	{
		text	   *prompt = DatumGetTextPP(d);

		s.prompt = VARDATA_ANY(prompt);
		s.prompt_len = VARSIZE_ANY_EXHDR(prompt);
	}
	s.model_id = route_spi_text(tup, desc, 2);
	s.quality = route_spi_float(tup, desc, 3);
	st = sp_route_train_add(&run->call->ctx, run->t, &s);
	if (st != SP_OK)
		sparse_raise(run->call, st);
}

/* Feed every row of one query to the trainer, one cursor, in batches. */
static void
route_train_cursor(route_train_run *run, SPIPlanPtr plan, bool from_log,
				   MemoryContext batch)
{
	Portal		portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

	for (;;)
	{
		MemoryContext old;

		SPI_cursor_fetch(portal, true, ROUTE_TRAIN_BATCH);
		old = MemoryContextSwitchTo(batch);
		for (uint64 r = 0; r < SPI_processed; r++)
			route_train_row(run, r, from_log);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch);
		if (SPI_processed == 0)
			break;
		SPI_freetuptable(SPI_tuptable);

		/*
		 * Safe to throw here: the trainer lives in the call's memory
		 * context, whose reset callback ends it, and SPI and the portal are
		 * cleaned up by the transaction abort.
		 */
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
}

/* Run the passes over feedback then logged rows; returns the pass count. */
static int
route_train_passes(route_train_run *run)
{
	SPIPlanPtr	feedback = SPI_prepare(route_where.q_feedback, 0, NULL);
	SPIPlanPtr	logged = SPI_prepare(route_where.q_log_train, 0, NULL);
	MemoryContext batch = AllocSetContextCreate(CurrentMemoryContext,
												"sparse route train batch",
												ALLOCSET_DEFAULT_SIZES);
	int			passes = 0;
	bool		more = true;

	if (feedback == NULL || logged == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	while (more)
	{
		sp_status	st;

		route_train_cursor(run, feedback, false, batch);
		route_train_cursor(run, logged, true, batch);
		passes++;
		st = sp_route_train_next_epoch(&run->call->ctx, run->t, &more);
		if (st != SP_OK)
			sparse_raise(run->call, st);
	}
	MemoryContextDelete(batch);
	return passes;
}

/* Replace the rows of sparse_route_model by the trained predictors. */
static void
route_train_store(route_train_run *run, int epochs)
{
	Oid			types[6] = {TEXTOID, INT4OID, INT8OID, INT4OID, FLOAT8OID, BYTEAOID};
	SPIPlanPtr	plan;
	int			rc = SPI_execute(route_where.q_model_delete, false, 0);

	if (rc != SPI_OK_DELETE)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
	plan = SPI_prepare(route_where.q_model_insert, 6, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	for (int k = 0; k < sp_route_train_count(run->t); k++)
	{
		const char *id;
		const void *blob;
		size_t		len;
		int64_t		rows;
		double		loss;
		Datum		v[6];
		bytea	   *w;

		sp_route_train_model(run->t, k, &id, &blob, &len, &rows, &loss);
		w = palloc(len + VARHDRSZ);
		SET_VARSIZE(w, len + VARHDRSZ);
		memcpy(VARDATA(w), blob, len);
		v[0] = CStringGetTextDatum(id);
		v[1] = Int32GetDatum(SP_ROUTE_FEATURE_VERSION);
		v[2] = Int64GetDatum(rows);
		v[3] = Int32GetDatum(epochs);
		v[4] = Float8GetDatum(loss);
		v[5] = PointerGetDatum(w);
		rc = SPI_execute_plan(plan, v, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		pfree(w);
	}
}

/*
 * route_train(): learn one predictor per catalog model with feedback, from
 * sparse_route_feedback then the logged requests with an observed quality,
 * and replace sparse_route_model with them.
 */
Datum
sparse_route_train(PG_FUNCTION_ARGS)
{
	route_train_run *run;
	sp_route_train_result res;
	int			epochs;
	Datum		v[4];
	bool		n[4] = {false};

	route_locate(fcinfo);
	run = route_train_prepare();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	route_train_begin(run);
	epochs = route_train_passes(run);
	route_train_store(run, epochs);
	sp_route_train_end(&run->call->ctx, run->t, &res);
	run->t = NULL;
	SPI_finish();
	sparse_call_done(run->call);

	v[0] = Int64GetDatum(res.rows);
	v[1] = Int32GetDatum(res.models);
	v[2] = Int32GetDatum(res.epochs);
	v[3] = route_float(res.train_loss, &n[3]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(route_result_desc(fcinfo), v, n)));
}

/* ---- cache invalidation -------------------------------------------------- */

/*
 * Statement trigger on sparse_route_catalog and sparse_route_model: queue a
 * relcache invalidation of the table, so every backend's
 * route_relcache_cb() marks its routing cache stale (this backend at its
 * next command, the others once the transaction commits).
 */
Datum
sparse_route_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("sparse_route_invalidate() was not called by the trigger manager")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
