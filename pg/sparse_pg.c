/*
 * sparse_pg.c -- PostgreSQL binding of the sparse core (extension "sparse").
 *
 * Usage (after CREATE EXTENSION sparse):
 *   SELECT * FROM delta_estimate('/m/base.safetensors', '/m/ft.safetensors');
 *   SELECT * FROM delta_compress('/m/base.safetensors', '/m/ft.safetensors',
 *                                '/m/ft.delta', 19);
 *   SELECT * FROM delta_apply('/m/base.safetensors', '/m/ft.delta', '/m/ft2');
 *   SELECT * FROM delta_verify('/m/base.safetensors', '/m/ft.delta');
 *   SELECT * FROM delta_info('/m/ft.delta');
 *   SELECT * FROM dataset_delta_estimate('/d/base.csv', '/d/derived.csv');
 *   SELECT * FROM dataset_delta_compress('/d/base.csv', '/d/derived.csv',
 *                                        '/d/derived.delta');
 *   SELECT delta_apply(base_bytes, delta_compress(base_bytes, ft_bytes));
 *   SELECT sparse_version();
 *
 * How it works: every SQL function is a thin wrapper that
 *   1. checks the caller may touch server files (file functions only),
 *   2. builds an sp_ctx whose hooks allocate in a memory context private to
 *      the call, report a pending query cancel to the core, and never
 *      longjmp (so the core always gets to clean up its files),
 *   3. calls one core function from common/ (no PostgreSQL code there), and
 *   4. turns the result into a composite row, or the failure into exactly one
 *      ereport via sparse_raise(), which picks the SQLSTATE for each status.
 *
 * The core never calls back into PostgreSQL except through the hooks below,
 * and all of them are called from this backend's own thread.  Because no
 * hook can throw, nothing the core owns (zstd contexts, open descriptors,
 * half-written temporary files) can leak through an error: the core releases
 * it and returns a status before we raise anything.  Memory the core
 * allocated through the hooks lives in the per-call context, which is a
 * child of the function's context and so is reclaimed even on error.
 *
 * The GUC sparse.root (superuser only) confines every path to one directory.
 * The routing functions (route_decision and friends) are in pg/route_pg.c;
 * they share sparse_call and sparse_raise() through pg/sparse_pg.h.
 */
#include "postgres.h"

#include <errno.h>
#include <string.h>

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "sparse.h"
#include "sparse_pg.h"

PG_MODULE_MAGIC;

/* 15.0-15.? named the materialized-SRF helper SetSingleFuncCall. */
#ifndef MAT_SRF_USE_EXPECTED_DESC
#define InitMaterializedSRF SetSingleFuncCall
#endif

/* Value of sparse.root: empty means paths are not confined. */
static char *sparse_root = NULL;
static int	sparse_threads = 0;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(sparse_version);
PG_FUNCTION_INFO_V1(sparse_delta_estimate);
PG_FUNCTION_INFO_V1(sparse_delta_compress);
PG_FUNCTION_INFO_V1(sparse_delta_apply);
PG_FUNCTION_INFO_V1(sparse_delta_verify);
PG_FUNCTION_INFO_V1(sparse_delta_info);
PG_FUNCTION_INFO_V1(sparse_dataset_delta_estimate);
PG_FUNCTION_INFO_V1(sparse_dataset_delta_compress);
PG_FUNCTION_INFO_V1(sparse_delta_info_bytea);
PG_FUNCTION_INFO_V1(sparse_delta_compress_bytea);
PG_FUNCTION_INFO_V1(sparse_delta_apply_bytea);

/* Define sparse.root and reserve the "sparse." prefix. */
void
_PG_init(void)
{
	/*
	 * PGC_SUSET: only a superuser may move or lift the confinement, so a role
	 * granted pg_read_server_files plus EXECUTE cannot widen its own reach.
	 */
	DefineCustomStringVariable("sparse.root",
							   "Directory that every path given to sparse functions must resolve under.",
							   "Empty means no confinement beyond the role checks.",
							   &sparse_root,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	/*
	 * PGC_USERSET: the workers only compute (no PostgreSQL call, every
	 * signal blocked) and are joined before the function returns.
	 */
	DefineCustomIntVariable("sparse.threads",
							"Threads that code tensor chunks in delta_compress.",
							"0 means one per core; 1 codes in the backend alone. The delta is the same bytes either way.",
							&sparse_threads,
							0, 0, 16,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
	sparse_route_init();
	sparse_store_init();
	MarkGUCPrefixReserved("sparse");
}

/* ---- hooks handed to the core ------------------------------------------ */

/* Allocate in the per-call context; NULL on failure, never an ERROR. */
static void *
sparse_hook_alloc(void *user, size_t size)
{
	MemoryContext mcxt = ((sparse_call *) user)->mcxt;

	/* MemoryContextAllocExtended elogs (even with NO_OOM) past this size. */
	if (size > MaxAllocHugeSize)
		return NULL;
	return MemoryContextAllocExtended(mcxt, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

/* Free what sparse_hook_alloc returned. */
static void
sparse_hook_free(void *user, void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

/*
 * Tell the core a cancel or termination is pending.  This only reads the
 * flags the signal handlers set: calling CHECK_FOR_INTERRUPTS() here could
 * longjmp out of the core and leak its descriptors and temporary files.
 * Other interrupts (e.g. catchup, barriers) do not stop the call; they are
 * served at the next CHECK_FOR_INTERRUPTS() after the core returns.
 */
static int
sparse_hook_interrupted(void *user)
{
	return InterruptPending && (QueryCancelPending || ProcDiePending);
}

/* ---- setup, privilege checks, errors ----------------------------------- */

/* Prepare a call: default hooks replaced by ours, root from sparse.root. */
void
sparse_call_init(sparse_call *call)
{
	sp_ctx_init(&call->ctx);
	call->mcxt = AllocSetContextCreate(CurrentMemoryContext, "sparse call",
									   ALLOCSET_DEFAULT_SIZES);
	call->ctx.hooks.alloc = sparse_hook_alloc;
	call->ctx.hooks.free = sparse_hook_free;
	call->ctx.hooks.interrupted = sparse_hook_interrupted;
	call->ctx.hooks.progress = NULL;
	call->ctx.hooks.user = call;
	call->ctx.root = sparse_root != NULL ? sparse_root : "";
	call->ctx.threads = sparse_threads;
}

/* Release the per-call memory (the core has released everything else). */
void
sparse_call_done(sparse_call *call)
{
	MemoryContextDelete(call->mcxt);
}

/*
 * Refuse callers that may not touch server files.
 *
 * Security: these functions read (and for compress/apply create) arbitrary
 * files with the server's OS identity, exactly like pg_read_binary_file()
 * and COPY ... TO 'file'.  As PostgreSQL does in genfile.c and file_fdw, we
 * require what those require: superuser or the privileges of
 * pg_read_server_files to read, and of pg_write_server_files as well to
 * write.  The install script also REVOKEs EXECUTE from PUBLIC; this check
 * still holds if an administrator GRANTs EXECUTE to a role too freely.
 * has_privs_of_role() is true for superusers.
 */
void
sparse_check_access(sparse_access access)
{
	Oid			user = GetUserId();

	if (!has_privs_of_role(user, ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read server files"),
				 errdetail("Only roles with privileges of the \"%s\" role may read server files.",
						   "pg_read_server_files")));
	if (access == SPARSE_READ_WRITE &&
		!has_privs_of_role(user, ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to write server files"),
				 errdetail("Only roles with privileges of the \"%s\" role may write server files.",
						   "pg_write_server_files")));
}

/*
 * SQLSTATE for a core status (SP_ERR_IO and SP_ERR_CANCELLED are special).
 * A model file that does not parse is the caller's bad input (class 22,
 * "invalid binary representation", as for a malformed binary value); a delta
 * that fails its own checks is damaged stored data (XX001, as PostgreSQL
 * reports damaged pages); the wrong base is neither, so it alone gets the
 * generic 22000.  Clients can thus tell the cases apart by code alone.
 */
static int
sparse_sqlstate(sp_status code)
{
	switch (code)
	{
		case SP_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case SP_ERR_INVALID_ARG:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case SP_ERR_EXISTS:
			return ERRCODE_DUPLICATE_FILE;
		case SP_ERR_OUTSIDE_ROOT:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case SP_ERR_NOT_SAFETENSORS:
		case SP_ERR_HEADER_TOO_LARGE:
		case SP_ERR_BAD_JSON:
		case SP_ERR_BAD_OFFSETS:
		case SP_ERR_UNKNOWN_DTYPE:
		case SP_ERR_SHAPE_MISMATCH:
			/* the caller handed us a file that is not valid safetensors */
			return ERRCODE_INVALID_BINARY_REPRESENTATION;
		case SP_ERR_NOT_DELTA:
		case SP_ERR_TRUNCATED:
		case SP_ERR_CORRUPT:
		case SP_ERR_VERIFY_FAILED:
			return ERRCODE_DATA_CORRUPTED;
		case SP_ERR_UNSUPPORTED_VERSION:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case SP_ERR_WRONG_BASE:
			return ERRCODE_DATA_EXCEPTION;
		case SP_ERR_TOO_LARGE:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}

/* Extra sentence for the statuses where the message alone is not enough. */
static const char *
sparse_hint(sp_status code)
{
	switch (code)
	{
		case SP_ERR_EXISTS:
			return "Choose a new output path; sparse never replaces an existing file.";
		case SP_ERR_OUTSIDE_ROOT:
			return "Every path must resolve under the directory named by sparse.root.";
		case SP_ERR_WRONG_BASE:
			return "Pass the base model the delta was made from.";
		case SP_ERR_TOO_LARGE:
			return "Use the file variant of the function for results of 1 GB or more.";
		default:
			return NULL;
	}
}

/*
 * Raise the one error that a failed core call stands for.  This is the only
 * place a core status becomes a PostgreSQL error.
 */
void
sparse_raise(sparse_call *call, sp_status st)
{
	const sp_error *err = &call->ctx.err;
	const char *hint = sparse_hint(st);

	if (st == SP_ERR_CANCELLED)
	{
		/* raises "canceling statement due to ..." or terminates */
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("%s", err->msg)));
	}
	if (st == SP_ERR_INTERNAL)
		elog(ERROR, "sparse internal error: %s", err->msg);
	if (st == SP_ERR_IO)
	{
		/* errcode_for_file_access() reads errno: ENOENT -> 58P01 etc. */
		errno = err->sys_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("%s", err->msg)));
	}
	ereport(ERROR,
			(errcode(sparse_sqlstate(st)),
			 errmsg("%s", err->msg),
			 hint != NULL ? errhint("%s", hint) : 0));
	pg_unreachable();
}

/* Raise unless st is SP_OK. */
static void
sparse_check(sparse_call *call, sp_status st)
{
	if (st != SP_OK)
		sparse_raise(call, st);
}

/* ---- result rows -------------------------------------------------------- */

/* Tuple descriptor of the function's OUT columns. */
static TupleDesc
sparse_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(tupdesc);
}

/* Form the composite result from values[] and nulls[]. */
Datum
sparse_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc = sparse_result_desc(fcinfo);

	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* A core byte count as bigint (sizes beyond 8 EiB do not happen). */
static Datum
sparse_bytes(uint64_t n)
{
	return Int64GetDatum((int64) n);
}

/* Text datum, or NULL (via *isnull) when s is empty. */
static Datum
sparse_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* Row of delta_apply / delta_verify. */
static Datum
sparse_apply_row(FunctionCallInfo fcinfo, const sp_apply_result *res)
{
	Datum		values[5];
	bool		nulls[5] = {false};

	values[0] = sparse_text_or_null(res->out_path, &nulls[0]);
	values[1] = sparse_bytes(res->bytes);
	values[2] = CStringGetTextDatum(res->sha256);
	values[3] = BoolGetDatum(res->verified);
	values[4] = Float8GetDatum(res->elapsed_ms);
	return sparse_result(fcinfo, values, nulls);
}

/* The first eight columns of delta_compress / dataset_delta_compress. */
static void
sparse_compress_values(const sp_compress_result *res, Datum *values, bool *nulls)
{
	values[0] = sparse_text_or_null(res->delta_path, &nulls[0]);
	values[1] = sparse_bytes(res->ft_bytes);
	values[2] = sparse_bytes(res->delta_bytes);
	values[3] = Float8GetDatum(res->compression_ratio);
	values[4] = Float8GetDatum(res->savings_pct);
	values[5] = CStringGetTextDatum(res->ft_sha256);
	values[6] = CStringGetTextDatum(res->base_sha256);
	values[7] = Float8GetDatum(res->elapsed_ms);
}

/* ---- file functions ----------------------------------------------------- */

/* delta_estimate(base, ft, sample_fraction): predicted savings. */
Datum
sparse_delta_estimate(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *ft = text_to_cstring(PG_GETARG_TEXT_PP(1));
	float8		fraction = PG_GETARG_FLOAT8(2);
	sparse_call call;
	sp_estimate est;
	Datum		values[10];
	bool		nulls[10] = {false};

	sparse_check_access(SPARSE_READ);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_estimate(&call.ctx, base, ft, fraction, &est));
	sparse_call_done(&call);

	values[0] = sparse_bytes(est.base_bytes);
	values[1] = sparse_bytes(est.ft_bytes);
	values[2] = sparse_bytes(est.est_delta_bytes);
	values[3] = Float8GetDatum(est.est_compression);
	values[4] = Float8GetDatum(est.savings_pct);
	values[5] = Int64GetDatum(est.tensors_total);
	values[6] = Int64GetDatum(est.tensors_identical);
	values[7] = Int64GetDatum(est.tensors_changed);
	values[8] = Int64GetDatum(est.tensors_unpaired);
	values[9] = Float8GetDatum(est.elapsed_ms);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/* delta_compress(base, ft, out, level): write the delta file. */
Datum
sparse_delta_compress(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *ft = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *out = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int32		level = PG_GETARG_INT32(3);
	sparse_call call;
	sp_compress_result *res = palloc(sizeof(sp_compress_result));
	Datum		values[8];
	bool		nulls[8] = {false};

	sparse_check_access(SPARSE_READ_WRITE);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_compress(&call.ctx, base, ft, out, level, res));
	sparse_call_done(&call);

	sparse_compress_values(res, values, nulls);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/* delta_apply(base, delta, out): rebuild the fine-tune into out. */
Datum
sparse_delta_apply(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *delta = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *out = text_to_cstring(PG_GETARG_TEXT_PP(2));
	sparse_call call;
	sp_apply_result *res = palloc(sizeof(sp_apply_result));

	sparse_check_access(SPARSE_READ_WRITE);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_apply(&call.ctx, base, delta, out, res));
	sparse_call_done(&call);
	PG_RETURN_DATUM(sparse_apply_row(fcinfo, res));
}

/* delta_verify(base, delta): rebuild in memory and check every digest. */
Datum
sparse_delta_verify(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *delta = text_to_cstring(PG_GETARG_TEXT_PP(1));
	sparse_call call;
	sp_apply_result *res = palloc(sizeof(sp_apply_result));

	sparse_check_access(SPARSE_READ);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_verify(&call.ctx, base, delta, res));
	sparse_call_done(&call);
	PG_RETURN_DATUM(sparse_apply_row(fcinfo, res));
}

/* Put the rows of a delta listing into the SRF's tuplestore. */
static void
sparse_info_rows(FunctionCallInfo fcinfo, const sp_info *info)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	for (size_t i = 0; i < info->n; i++)
	{
		const sp_info_row *row = &info->rows[i];
		Datum		values[5];
		bool		nulls[5] = {false};

		values[0] = CStringGetTextDatum(row->name);
		values[1] = sparse_bytes(row->bytes);
		values[2] = sparse_bytes(row->delta_bytes);
		values[3] = CStringGetTextDatum(row->sha256);
		values[4] = CStringGetTextDatum(row->method);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* delta_info(delta text): one row per file the delta rebuilds. */
Datum
sparse_delta_info(PG_FUNCTION_ARGS)
{
	char	   *delta = text_to_cstring(PG_GETARG_TEXT_PP(0));
	sparse_call call;
	sp_info		info = {0};

	sparse_check_access(SPARSE_READ);
	InitMaterializedSRF(fcinfo, 0);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_info(&call.ctx, delta, &info));
	sparse_info_rows(fcinfo, &info);
	sp_info_free(&call.ctx, &info);
	sparse_call_done(&call);
	return (Datum) 0;
}

/* ---- dataset file functions --------------------------------------------- */

/* dataset_delta_estimate(base, derived, sample_rows): predicted savings. */
Datum
sparse_dataset_delta_estimate(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *derived = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		sample_rows = PG_GETARG_INT32(2);
	sparse_call call;
	sp_dataset_est est;
	Datum		values[8];
	bool		nulls[8] = {false};

	sparse_check_access(SPARSE_READ);
	sparse_call_init(&call);
	/* the core checks sample_rows (1..10,000,000) and reports it by name */
	sparse_check(&call, sp_dataset_estimate(&call.ctx, base, derived,
											sample_rows, &est));
	sparse_call_done(&call);

	values[0] = sparse_bytes(est.base_bytes);
	values[1] = sparse_bytes(est.derived_bytes);
	values[2] = Int64GetDatum(est.rows_sampled);
	values[3] = Float8GetDatum(est.rows_shared_pct);
	values[4] = sparse_bytes(est.est_delta_bytes);
	values[5] = Float8GetDatum(est.savings_pct);
	values[6] = CStringGetTextDatum(est.format);
	values[7] = Float8GetDatum(est.elapsed_ms);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/*
 * dataset_delta_compress(base, derived, out, level): write the delta file;
 * the columns of delta_compress plus the row counts.
 */
Datum
sparse_dataset_delta_compress(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *derived = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *out = text_to_cstring(PG_GETARG_TEXT_PP(2));
	int32		level = PG_GETARG_INT32(3);
	sparse_call call;
	sp_compress_result *res = palloc(sizeof(sp_compress_result));
	Datum		values[10];
	bool		nulls[10] = {false};

	sparse_check_access(SPARSE_READ_WRITE);
	sparse_call_init(&call);
	sparse_check(&call, sp_dataset_compress(&call.ctx, base, derived, out,
											level, res));
	sparse_call_done(&call);

	sparse_compress_values(res, values, nulls);
	values[8] = Int64GetDatum(res->rows_total);
	values[9] = Int64GetDatum(res->rows_shared);
	PG_RETURN_DATUM(sparse_result(fcinfo, values, nulls));
}

/* ---- in-memory functions (no file access) ------------------------------- */

/* Copy a core buffer into a new bytea in the caller's memory context. */
static bytea *
sparse_to_bytea(const void *data, size_t len)
{
	bytea	   *result = palloc(len + VARHDRSZ);

	SET_VARSIZE(result, len + VARHDRSZ);
	memcpy(VARDATA(result), data, len);
	return result;
}

/* delta_info(delta bytea): the listing of a delta held in the database. */
Datum
sparse_delta_info_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *delta = PG_GETARG_BYTEA_PP(0);
	sparse_call call;
	sp_info		info = {0};

	InitMaterializedSRF(fcinfo, 0);
	sparse_call_init(&call);
	sparse_check(&call, sp_delta_info_mem(&call.ctx, VARDATA_ANY(delta),
										  VARSIZE_ANY_EXHDR(delta), &info));
	sparse_info_rows(fcinfo, &info);
	sp_info_free(&call.ctx, &info);
	sparse_call_done(&call);
	return (Datum) 0;
}

/* delta_compress(base bytea, ft bytea, level): the delta as bytea. */
Datum
sparse_delta_compress_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *base = PG_GETARG_BYTEA_PP(0);
	bytea	   *ft = PG_GETARG_BYTEA_PP(1);
	int32		level = PG_GETARG_INT32(2);
	sparse_call call;
	void	   *out = NULL;
	size_t		out_len = 0;
	bytea	   *result;

	sparse_call_init(&call);
	/* the result must fit in one bytea value, as a limit for the core */
	sparse_check(&call, sp_delta_compress_mem(&call.ctx,
											  VARDATA_ANY(base), VARSIZE_ANY_EXHDR(base),
											  VARDATA_ANY(ft), VARSIZE_ANY_EXHDR(ft),
											  level, MaxAllocSize - VARHDRSZ,
											  &out, &out_len));
	result = sparse_to_bytea(out, out_len);
	sparse_call_done(&call);
	PG_RETURN_BYTEA_P(result);
}

/* delta_apply(base bytea, delta bytea): the rebuilt fine-tune as bytea. */
Datum
sparse_delta_apply_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *base = PG_GETARG_BYTEA_PP(0);
	bytea	   *delta = PG_GETARG_BYTEA_PP(1);
	sparse_call call;
	void	   *out = NULL;
	size_t		out_len = 0;
	bytea	   *result;

	sparse_call_init(&call);
	sparse_check(&call, sp_delta_apply_mem(&call.ctx,
										   VARDATA_ANY(base), VARSIZE_ANY_EXHDR(base),
										   VARDATA_ANY(delta), VARSIZE_ANY_EXHDR(delta),
										   MaxAllocSize - VARHDRSZ,
										   &out, &out_len));
	result = sparse_to_bytea(out, out_len);
	sparse_call_done(&call);
	PG_RETURN_BYTEA_P(result);
}

/* sparse_version(): version of the linked core. */
Datum
sparse_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(sp_version()));
}
