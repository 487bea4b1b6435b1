/*
 * commands.c -- the commands of bin/sparse, one function each.
 *
 * Each command checks its option values (a bad value is a usage error,
 * exit 2, caught before any file is touched), builds an sp_ctx with
 * cli_ctx_init, calls one core function, and turns the result into a cJSON
 * object whose keys are the column names of the SQL functions (so
 * "sparse --json estimate" and "SELECT * FROM delta_estimate(...)" agree,
 * as do dataset-estimate and dataset_delta_estimate), which cli_emit prints
 * as JSON or as aligned lines.  A failed core call is
 * reported once, by cli_core_error.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cli.h"

#define NFIELDS(a) ((int) (sizeof(a) / sizeof((a)[0])))

/* Default sample fraction of estimate (as the SQL function's default). */
#define CLI_SAMPLE_DEFAULT 0.01

/* Default and range of dataset-estimate's --sample-rows (as in sparse.h). */
#define CLI_SAMPLE_ROWS_DEFAULT 1000
#define CLI_SAMPLE_ROWS_MAX 10000000

/* Parse the value of option WHAT: an integer in lo..hi; -1 or exit status. */
static int
parse_int_option(const cli_command *cmd, const char *what, const char *text,
				 long lo, long hi, int *value)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi)
		return cli_usage_error(cmd, "invalid %s \"%s\": expected an integer from %ld to %ld",
							   what, text, lo, hi);
	*value = (int) v;
	return -1;
}

/* Parse --level: an integer in SP_LEVEL_MIN..SP_LEVEL_MAX; -1 or exit status. */
static int
parse_level(const cli_command *cmd, const char *text, int *level)
{
	*level = SP_LEVEL_DEFAULT;
	if (text == NULL)
		return -1;
	return parse_int_option(cmd, "level", text, SP_LEVEL_MIN, SP_LEVEL_MAX, level);
}

/* Parse --threads: an integer in 1..SP_POOL_THREADS_MAX (0 when absent: one per core). */
static int
parse_threads(const cli_command *cmd, const char *text, int *threads)
{
	*threads = 0;
	if (text == NULL)
		return -1;
	return parse_int_option(cmd, "threads", text, 1, 16, threads);
}

/* Parse --sample-rows: an integer in 1..CLI_SAMPLE_ROWS_MAX; -1 or exit status. */
static int
parse_sample_rows(const cli_command *cmd, const char *text, int *rows)
{
	*rows = CLI_SAMPLE_ROWS_DEFAULT;
	if (text == NULL)
		return -1;
	return parse_int_option(cmd, "number of sample rows", text, 1, CLI_SAMPLE_ROWS_MAX, rows);
}

/* Parse a number option value in [lo, hi] (see cli.h); -1 or exit status. */
int
cli_parse_number(const cli_command *cmd, const char *what, const char *text,
				 double lo, bool open, double hi, const char *range, double *value)
{
	char	   *end;
	double		v;

	if (text == NULL)
		return -1;
	errno = 0;
	v = strtod(text, &end);
	/* The comparisons are written so that NaN fails them. */
	if (errno != 0 || end == text || *end != '\0' ||
		!(open ? v > lo : v >= lo) || !(v <= hi))
		return cli_usage_error(cmd, "invalid %s \"%s\": expected %s", what, text, range);
	*value = v;
	return -1;
}

/* Parse --sample: a number in (0, 1]; -1 or exit status. */
static int
parse_sample(const cli_command *cmd, const char *text, double *fraction)
{
	*fraction = CLI_SAMPLE_DEFAULT;
	return cli_parse_number(cmd, "sample fraction", text, 0.0, true, 1.0,
							"a number greater than 0 and at most 1", fraction);
}

/* Add a uint64 as a JSON number (exact below 2^53, far above any file here). */
static void
add_u64(cJSON *obj, const char *key, uint64_t v)
{
	cJSON_AddNumberToObject(obj, key, (double) v);
}

/* Milliseconds rounded to the microsecond (the clock's honest precision). */
static double
round_us(double ms)
{
	return round(ms * 1000.0) / 1000.0;
}

/* sparse estimate BASE FT [--sample F] */
int
cmd_estimate(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"base_bytes", "base size", CLI_BYTES},
		{"ft_bytes", "fine-tune size", CLI_BYTES},
		{"est_delta_bytes", "estimated delta", CLI_BYTES},
		{"est_compression", "estimated ratio", CLI_RATIO},
		{"savings_pct", "estimated savings", CLI_PCT},
		{"tensors_total", "tensors", CLI_COUNT},
		{"tensors_identical", "identical", CLI_COUNT},
		{"tensors_changed", "changed", CLI_COUNT},
		{"tensors_unpaired", "unpaired", CLI_COUNT},
		{"sample_fraction", "sample fraction", CLI_NUMBER},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_estimate e;
	double		fraction;
	int			rc;
	cJSON	   *o;

	if ((rc = parse_sample(cmd, args->sample, &fraction)) >= 0)
		return rc;
	cli_ctx_init(&ctx, opts);
	rc = sp_delta_estimate(&ctx, args->pos[0], args->pos[1], fraction, &e);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	o = cJSON_CreateObject();
	add_u64(o, "base_bytes", e.base_bytes);
	add_u64(o, "ft_bytes", e.ft_bytes);
	add_u64(o, "est_delta_bytes", e.est_delta_bytes);
	cJSON_AddNumberToObject(o, "est_compression", e.est_compression);
	cJSON_AddNumberToObject(o, "savings_pct", e.savings_pct);
	cJSON_AddNumberToObject(o, "tensors_total", (double) e.tensors_total);
	cJSON_AddNumberToObject(o, "tensors_identical", (double) e.tensors_identical);
	cJSON_AddNumberToObject(o, "tensors_changed", (double) e.tensors_changed);
	cJSON_AddNumberToObject(o, "tensors_unpaired", (double) e.tensors_unpaired);
	cJSON_AddNumberToObject(o, "sample_fraction", fraction);
	cJSON_AddNumberToObject(o, "elapsed_ms", round_us(e.elapsed_ms));
	return cli_emit(opts, o, fields, NFIELDS(fields));
}

/* The result of compress or dataset-compress as a JSON object (NULL: no memory). */
static cJSON *
compress_result_json(const sp_compress_result *r, int level)
{
	cJSON	   *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "delta_path", r->delta_path);
	add_u64(o, "ft_bytes", r->ft_bytes);
	add_u64(o, "delta_bytes", r->delta_bytes);
	cJSON_AddNumberToObject(o, "compression_ratio", r->compression_ratio);
	cJSON_AddNumberToObject(o, "savings_pct", r->savings_pct);
	cJSON_AddNumberToObject(o, "level", level);
	cJSON_AddStringToObject(o, "ft_sha256", r->ft_sha256);
	cJSON_AddStringToObject(o, "base_sha256", r->base_sha256);
	cJSON_AddNumberToObject(o, "elapsed_ms", round_us(r->elapsed_ms));
	return o;
}

/* sparse compress BASE FT -o DELTA [--level N] [--threads N] */
int
cmd_compress(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"delta_path", "delta", CLI_TEXT},
		{"ft_bytes", "fine-tune size", CLI_BYTES},
		{"delta_bytes", "delta size", CLI_BYTES},
		{"compression_ratio", "ratio", CLI_RATIO},
		{"savings_pct", "savings", CLI_PCT},
		{"level", "level", CLI_COUNT},
		{"ft_sha256", "fine-tune sha256", CLI_TEXT},
		{"base_sha256", "base sha256", CLI_TEXT},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_compress_result r;
	int			level,
				threads;
	int			rc;

	if (args->out == NULL)
		return cli_usage_error(cmd, "missing -o DELTA");
	if ((rc = parse_level(cmd, args->level, &level)) >= 0 ||
		(rc = parse_threads(cmd, args->threads, &threads)) >= 0)
		return rc;
	cli_ctx_init(&ctx, opts);
	ctx.threads = threads;
	rc = sp_delta_compress(&ctx, args->pos[0], args->pos[1], args->out, level, &r);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	return cli_emit(opts, compress_result_json(&r, level), fields, NFIELDS(fields));
}

/* sparse dataset-estimate BASE DERIVED [--sample-rows N] */
int
cmd_dataset_estimate(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"base_bytes", "base size", CLI_BYTES},
		{"derived_bytes", "derived size", CLI_BYTES},
		{"format", "format", CLI_TEXT},
		{"rows_sampled", "rows sampled", CLI_COUNT},
		{"rows_shared_pct", "rows shared", CLI_PCT},
		{"est_delta_bytes", "estimated delta", CLI_BYTES},
		{"savings_pct", "estimated savings", CLI_PCT},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_dataset_est e;
	int			sample_rows;
	int			rc;
	cJSON	   *o;

	if ((rc = parse_sample_rows(cmd, args->sample_rows, &sample_rows)) >= 0)
		return rc;
	cli_ctx_init(&ctx, opts);
	rc = sp_dataset_estimate(&ctx, args->pos[0], args->pos[1], sample_rows, &e);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	o = cJSON_CreateObject();
	add_u64(o, "base_bytes", e.base_bytes);
	add_u64(o, "derived_bytes", e.derived_bytes);
	cJSON_AddNumberToObject(o, "rows_sampled", (double) e.rows_sampled);
	cJSON_AddNumberToObject(o, "rows_shared_pct", e.rows_shared_pct);
	add_u64(o, "est_delta_bytes", e.est_delta_bytes);
	cJSON_AddNumberToObject(o, "savings_pct", e.savings_pct);
	cJSON_AddStringToObject(o, "format", e.format);
	cJSON_AddNumberToObject(o, "elapsed_ms", round_us(e.elapsed_ms));
	return cli_emit(opts, o, fields, NFIELDS(fields));
}

/* OUT of dataset-compress: its third argument or -o OUT, exactly one of them. */
static int
dataset_out(const cli_command *cmd, const cli_args *args, const char **out)
{
	if (args->npos == 3 && args->out != NULL)
		return cli_usage_error(cmd, "OUT given twice, as an argument and with -o");
	*out = args->npos == 3 ? args->pos[2] : args->out;
	if (*out == NULL)
		return cli_usage_error(cmd, "expected BASE DERIVED OUT");
	return -1;
}

/* sparse dataset-compress BASE DERIVED OUT [--level N] */
int
cmd_dataset_compress(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"delta_path", "delta", CLI_TEXT},
		{"ft_bytes", "derived size", CLI_BYTES},
		{"delta_bytes", "delta size", CLI_BYTES},
		{"compression_ratio", "ratio", CLI_RATIO},
		{"savings_pct", "savings", CLI_PCT},
		{"rows_total", "rows", CLI_COUNT},
		{"rows_shared", "rows shared", CLI_COUNT},
		{"level", "level", CLI_COUNT},
		{"ft_sha256", "derived sha256", CLI_TEXT},
		{"base_sha256", "base sha256", CLI_TEXT},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_compress_result r;
	const char *out;
	int			level;
	int			rc;
	cJSON	   *o;

	if ((rc = dataset_out(cmd, args, &out)) >= 0 ||
		(rc = parse_level(cmd, args->level, &level)) >= 0)
		return rc;
	cli_ctx_init(&ctx, opts);
	rc = sp_dataset_compress(&ctx, args->pos[0], args->pos[1], out, level, &r);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	o = compress_result_json(&r, level);
	cJSON_AddNumberToObject(o, "rows_total", (double) r.rows_total);
	cJSON_AddNumberToObject(o, "rows_shared", (double) r.rows_shared);
	return cli_emit(opts, o, fields, NFIELDS(fields));
}

/* The result of apply or verify as a JSON object (out_path null for verify). */
static cJSON *
apply_result_json(const sp_apply_result *r, bool wrote)
{
	cJSON	   *o = cJSON_CreateObject();

	if (wrote)
		cJSON_AddStringToObject(o, "out_path", r->out_path);
	else
		cJSON_AddNullToObject(o, "out_path");
	add_u64(o, "bytes", r->bytes);
	cJSON_AddStringToObject(o, "sha256", r->sha256);
	cJSON_AddBoolToObject(o, "verified", r->verified);
	cJSON_AddNumberToObject(o, "elapsed_ms", round_us(r->elapsed_ms));
	return o;
}

/* sparse apply BASE DELTA -o OUT */
int
cmd_apply(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"out_path", "output", CLI_TEXT},
		{"bytes", "size", CLI_BYTES},
		{"sha256", "sha256", CLI_TEXT},
		{"verified", "verified", CLI_BOOL},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_apply_result r;
	int			rc;

	if (args->out == NULL)
		return cli_usage_error(cmd, "missing -o OUT");
	cli_ctx_init(&ctx, opts);
	rc = sp_delta_apply(&ctx, args->pos[0], args->pos[1], args->out, &r);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	return cli_emit(opts, apply_result_json(&r, true), fields, NFIELDS(fields));
}

/* sparse verify BASE DELTA */
int
cmd_verify(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"bytes", "size", CLI_BYTES},
		{"sha256", "sha256", CLI_TEXT},
		{"verified", "verified", CLI_BOOL},
		{"elapsed_ms", "elapsed", CLI_MS},
	};
	sp_ctx		ctx;
	sp_apply_result r;
	int			rc;

	cli_ctx_init(&ctx, opts);
	rc = sp_delta_verify(&ctx, args->pos[0], args->pos[1], &r);
	cli_progress_end();
	if (rc != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	rc = cli_emit(opts, apply_result_json(&r, false), fields, NFIELDS(fields));
	/* The core fails on any mismatch; this guards the contract all the same. */
	return r.verified ? rc : CLI_EXIT_FAIL;
}

/* sparse info DELTA */
int
cmd_info(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field cols[] = {
		{"name", "name", CLI_TEXT},
		{"bytes", "bytes", CLI_COUNT},
		{"delta_bytes", "delta_bytes", CLI_COUNT},
		{"method", "method", CLI_TEXT},
		{"sha256", "sha256", CLI_TEXT},
	};
	sp_ctx		ctx;
	sp_info		info;
	cJSON	   *rows;

	cli_ctx_init(&ctx, opts);
	if (sp_delta_info(&ctx, args->pos[0], &info) != SP_OK)
		return cli_core_error(cmd, opts, &ctx);
	rows = cJSON_CreateArray();
	for (size_t i = 0; rows != NULL && i < info.n; i++)
	{
		cJSON	   *row = cJSON_CreateObject();

		cJSON_AddStringToObject(row, "name", info.rows[i].name);
		add_u64(row, "bytes", info.rows[i].bytes);
		add_u64(row, "delta_bytes", info.rows[i].delta_bytes);
		cJSON_AddStringToObject(row, "sha256", info.rows[i].sha256);
		cJSON_AddStringToObject(row, "method", info.rows[i].method);
		cJSON_AddItemToArray(rows, row);
	}
	sp_info_free(&ctx, &info);
	return cli_emit_table(opts, rows, cols, NFIELDS(cols));
}

/* sparse version */
int
cmd_version(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	static const cli_field fields[] = {
		{"version", "sparse", CLI_TEXT},
		{"format_version", "delta format", CLI_COUNT},
		{"zstd", "zstd", CLI_TEXT},
	};
	cJSON	   *o = cJSON_CreateObject();

	(void) cmd;
	(void) args;
	cJSON_AddStringToObject(o, "version", sp_version());
	cJSON_AddNumberToObject(o, "format_version", SP_FORMAT_VERSION);
	cJSON_AddStringToObject(o, "zstd", ZSTD_versionString());
	return cli_emit(opts, o, fields, NFIELDS(fields));
}

/* sparse help [COMMAND] */
int
cmd_help(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	const cli_command *target;

	(void) opts;
	if (args->npos == 0)
	{
		cli_print_main_help();
		return CLI_EXIT_OK;
	}
	if ((target = cli_find_command(args->pos[0])) == NULL)
		return cli_usage_error(cmd, "unknown command \"%s\"", args->pos[0]);
	cli_print_command_help(target);
	return CLI_EXIT_OK;
}
