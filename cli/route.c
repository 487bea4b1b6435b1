/*
 * route.c -- "sparse route": which model should serve a prompt.
 *
 * Usage:
 *   sparse route --model gpt-4o --prompt "What is 2+2?"
 *   sparse route --model M --prompt-file req.txt --catalog models.csv --json
 *   sparse route --classify --prompt-file - <req.txt
 *
 * How it works: the command checks its option values (a bad one is a usage
 * error, exit 2), reads the prompt (--prompt, or --prompt-file FILE or "-"
 * for standard input), builds an sp_route_catalog from --catalog FILE.csv or
 * from the built-in example catalog (builtin_models), calls sp_route_decide
 * (or sp_route_classify with --classify) once, and hands the result to
 * cli_emit under the column names of the SQL functions route_decision and
 * route_classify, so "sparse --json route" and "SELECT * FROM
 * route_decision(...)" carry the same keys.  The CLI has no database, so no
 * learned predictors: predicted quality is each model's prior for the
 * prompt's complexity.
 *
 * The catalog CSV (RFC 4180: fields may be quoted, "" is a quote, a quoted
 * field may hold commas and newlines) is parsed in place by csv_field and
 * checked column by column; a bad row is an error (exit 1) naming the file,
 * the line the row starts on and the column.
 *
 * Security: the prompt file and the catalog are read whole into memory, so
 * both are bounded (CLI_PROMPT_MAX, CLI_CATALOG_MAX) before anything is
 * allocated; both paths go through sp_path_input, so --root confines them as
 * it does every other path of the tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "files.h"				/* sp_path_input: --root for our two files */
#include "route.h"

#define NFIELDS(a) ((int) (sizeof(a) / sizeof((a)[0])))

/* Defaults of route_decision's arguments (docs/ROUTING.md). */
#define CLI_MAX_TOKENS_DEFAULT 100
#define CLI_MAX_TOKENS_MAX 2147483647L	/* the SQL argument is an int */
#define CLI_THRESHOLD_DEFAULT 0.85
#define CLI_PERCENTAGE_DEFAULT 100.0

/* Largest prompt file and catalog read (each is held in memory whole). */
#define CLI_PROMPT_MAX ((size_t) 64 << 20)
#define CLI_CATALOG_MAX ((size_t) 16 << 20)

/* Columns of a catalog CSV, in the order of its header. */
enum
{
	COL_MODEL_ID, COL_FAMILY, COL_HARDWARE, COL_COST, COL_CONTEXT,
	COL_Q_SIMPLE, COL_Q_MODERATE, COL_Q_COMPLEX, COL_ENABLED, CATALOG_NCOLS
};
static const char *const catalog_cols[CATALOG_NCOLS] = {
	"model_id", "family", "hardware", "cost_per_1m_tokens", "context_window",
	"quality_simple", "quality_moderate", "quality_complex", "enabled"
};

/*
 * The example catalog used without --catalog (also listed by "sparse route
 * --help"): open models at rented-GPU cost, and two APIs at their list
 * prices blended 3:1 input:output (gpt-4o $2.50/$10, claude-3-5-sonnet
 * $3/$15 per 1M tokens).
 */
static const sp_route_model builtin_models[] = {
	{"llama-3.2-3b-instruct", "llama", "nvidia-l4", 0.06, 131072, {0.80, 0.55, 0.30}, true},
	{"llama-3.1-8b-instruct", "llama", "nvidia-l4", 0.10, 131072, {0.88, 0.68, 0.45}, true},
	{"qwen2.5-32b-instruct", "qwen", "nvidia-a100-80gb", 0.45, 32768, {0.93, 0.83, 0.65}, true},
	{"llama-3.1-70b-instruct", "llama", "2x nvidia-h100-80gb", 0.90, 131072, {0.95, 0.88, 0.74}, true},
	{"gpt-4o", "openai", "api", 4.38, 128000, {0.97, 0.93, 0.86}, true},
	{"claude-3-5-sonnet", "anthropic", "api", 6.00, 200000, {0.97, 0.94, 0.88}, true},
};

/* The route options, checked: what sp_route_request needs besides the prompt. */
typedef struct route_params
{
	int64_t		max_tokens;
	double		threshold;
	double		percentage;
} route_params;

/* ---- option values ------------------------------------------------------- */


/* Parse --max-tokens: an integer in 0..CLI_MAX_TOKENS_MAX; -1 or exit status. */
static int
parse_max_tokens(const cli_command *cmd, const char *text, int64_t *value)
{
	char	   *end;
	long long	v;

	if (text == NULL)
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < 0 || v > CLI_MAX_TOKENS_MAX)
		return cli_usage_error(cmd, "invalid max tokens \"%s\": expected an integer"
							   " from 0 to %ld", text, CLI_MAX_TOKENS_MAX);
	*value = v;
	return -1;
}

/* Options that --classify does not take: the first one given, or NULL. */
static const char *
classify_extra_option(const cli_args *args)
{
	if (args->model)
		return "--model";
	if (args->threshold)
		return "--threshold";
	if (args->quality_first)
		return "--quality-first";
	if (args->request_id)
		return "--request-id";
	if (args->percentage)
		return "--percentage";
	if (args->catalog)
		return "--catalog";
	return NULL;
}

/* Check the options of sparse route and fill p; -1 or exit status. */
static int
check_route_args(const cli_command *cmd, const cli_args *args, route_params *p)
{
	const char *extra;
	int			rc;

	p->max_tokens = CLI_MAX_TOKENS_DEFAULT;
	p->threshold = CLI_THRESHOLD_DEFAULT;
	p->percentage = CLI_PERCENTAGE_DEFAULT;
	if (args->prompt != NULL && args->prompt_file != NULL)
		return cli_usage_error(cmd, "give --prompt or --prompt-file, not both");
	if (args->prompt == NULL && args->prompt_file == NULL)
		return cli_usage_error(cmd, "missing --prompt TEXT or --prompt-file FILE");
	if (args->classify && (extra = classify_extra_option(args)) != NULL)
		return cli_usage_error(cmd, "option \"%s\" does not apply with --classify", extra);
	if (!args->classify && args->model == NULL)
		return cli_usage_error(cmd, "missing --model MODEL");
	if ((rc = parse_max_tokens(cmd, args->max_tokens, &p->max_tokens)) >= 0 ||
		(rc = cli_parse_number(cmd, "quality threshold", args->threshold, 0.0, true, 1.0,
						   "a number greater than 0 and at most 1", &p->threshold)) >= 0 ||
		(rc = cli_parse_number(cmd, "routing percentage", args->percentage, 0.0, false, 100.0,
						   "a number from 0 to 100", &p->percentage)) >= 0)
		return rc;
	return -1;
}

/* ---- files ----------------------------------------------------------------- */

/* Record an error of ours in ctx, as the core would (for cli_core_error). */
static sp_status
route_fail(sp_ctx *ctx, sp_status code, int err, const char *fmt,...)
__attribute__((format(printf, 4, 5)));

static sp_status
route_fail(sp_ctx *ctx, sp_status code, int err, const char *fmt,...)
{
	va_list		ap;
	size_t		n;

	va_start(ap, fmt);
	vsnprintf(ctx->err.msg, sizeof(ctx->err.msg), fmt, ap);
	va_end(ap);
	n = strlen(ctx->err.msg);
	if (err != 0)
		snprintf(ctx->err.msg + n, sizeof(ctx->err.msg) - n, ": %s", strerror(err));
	ctx->err.code = code;
	ctx->err.sys_errno = err;
	return code;
}

/* Read all of f (at most max bytes; what names it in messages) into *out. */
static sp_status
read_stream(sp_ctx *ctx, FILE *f, const char *what, size_t max, char **out, size_t *len)
{
	size_t		cap = 0;
	size_t		n = 0;
	char	   *buf = NULL;

	for (;;)
	{
		if (n == cap)
		{
			/* grow up to max + 1 bytes: one more than max tells "too large" */
			size_t		want = cap == 0 ? 64 * 1024 : cap * 2 > max + 1 ? max + 1 : cap * 2;
			char	   *grown = realloc(buf, want + 1);	/* + 1: the final NUL */

			if (grown == NULL)
			{
				free(buf);
				return route_fail(ctx, SP_ERR_NOMEM, 0, "out of memory reading %s", what);
			}
			buf = grown;
			cap = want;
		}
		size_t		got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (n > max || (got == 0 && ferror(f)))
		{
			int			err = errno;

			free(buf);
			if (n > max)
				return route_fail(ctx, SP_ERR_TOO_LARGE, 0, "%s is larger than %zu MiB",
								  what, max >> 20);
			return route_fail(ctx, SP_ERR_IO, err, "could not read %s", what);
		}
		if (got == 0)
			break;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return SP_OK;
}

/* Read a whole file ("-": standard input) into *out, NUL-terminated. */
static sp_status
read_file(sp_ctx *ctx, const char *path, const char *kind, size_t max,
		  char **out, size_t *len)
{
	char		what[4096 + 64];
	char	   *canon;
	FILE	   *f;
	sp_status	rc;
	int			fd,
				err;

	if (strcmp(path, "-") == 0)
	{
		snprintf(what, sizeof(what), "standard input");
		return read_stream(ctx, stdin, what, max, out, len);
	}
	snprintf(what, sizeof(what), "%s \"%s\"", kind, path);
	if ((rc = sp_path_input(ctx, path, &canon)) != SP_OK)
		return rc;
	/* opened as checked: a link swapped into the path since is refused */
	fd = sp_open_canon(canon, O_RDONLY | O_CLOEXEC, 0, sp_confined(ctx));
	f = fd >= 0 ? fdopen(fd, "rb") : NULL;
	err = errno;
	if (f == NULL && fd >= 0)
		close(fd);
	if (f == NULL && err == ELOOP && sp_confined(ctx))
		rc = sp_fail_open(ctx, err, "could not open", canon);
	ctx->hooks.free(ctx->hooks.user, canon);
	if (f == NULL)
		return err == ELOOP && sp_confined(ctx) ? rc
			: route_fail(ctx, SP_ERR_IO, err, "could not open %s", what);
	rc = read_stream(ctx, f, what, max, out, len);
	fclose(f);
	return rc;
}

/* ---- catalog CSV --------------------------------------------------------- */

/* A CSV being cut in place: the unread bytes and the current line number. */
typedef struct csv_in
{
	char	   *p;
	char	   *end;
	int			line;
} csv_in;

/* Consume the record end at in->p (\n, \r\n or \r); true if there was one. */
static bool
csv_eol(csv_in *in)
{
	if (in->p >= in->end || (*in->p != '\n' && *in->p != '\r'))
		return false;
	in->p += (*in->p == '\r' && in->p + 1 < in->end && in->p[1] == '\n') ? 2 : 1;
	in->line++;
	return true;
}

/*
 * Cut the next field at in->p in place: quotes removed, NUL-terminated
 * (the buffer holds one byte past its end for the last field).  *eor is set
 * when the field ends its record.  NULL and *why on malformed input.
 */
static char *
csv_field(csv_in *in, bool *eor, const char **why)
{
	char	   *field = in->p;
	char	   *out = in->p;
	bool		quoted = in->p < in->end && *in->p == '"';

	in->p += quoted;
	for (;;)
	{
		if (in->p >= in->end && quoted)
			return (*why = "a quoted field is not closed", NULL);
		if (in->p >= in->end || (!quoted && csv_eol(in)))
			break;
		if (!quoted && *in->p == ',')
		{
			in->p++;
			*out = '\0';
			*eor = false;
			return field;
		}
		if (*in->p == '"' && !quoted)
			return (*why = "a quote inside an unquoted field", NULL);
		if (*in->p == '"' && in->p + 1 < in->end && in->p[1] == '"')
			in->p++;			/* "" inside quotes: one quote */
		else if (*in->p == '"')
		{
			quoted = false;		/* the closing quote: a separator must follow */
			if (++in->p < in->end && *in->p != ',' && *in->p != '\n' && *in->p != '\r')
				return (*why = "text after a closing quote", NULL);
			continue;
		}
		in->line += *in->p == '\n';
		*out++ = *in->p++;
	}
	*out = '\0';
	*eor = true;
	return field;
}

/* Cut one record into f[] (at most CATALOG_NCOLS kept); returns the field count or -1. */
static int
csv_record(csv_in *in, char **f, const char **why)
{
	int			n = 0;
	bool		eor = false;

	while (!eor)
	{
		char	   *v = csv_field(in, &eor, why);

		if (v == NULL)
			return -1;
		if (n < CATALOG_NCOLS)
			f[n] = v;
		n++;
	}
	return n;
}

/* Parse a cell holding a finite number in [lo, hi]; false if it does not. */
static bool
cell_number(const char *text, double lo, double hi, double *v)
{
	char	   *end;

	errno = 0;
	*v = strtod(text, &end);
	return errno == 0 && end != text && *end == '\0' && isfinite(*v) && *v >= lo && *v <= hi;
}

/* Parse an "enabled" cell; false if it is not a boolean. */
static bool
cell_bool(const char *text, bool *v)
{
	static const char *const yes[] = {"", "true", "t", "1", "yes", "y"};
	static const char *const no[] = {"false", "f", "0", "no", "n"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(text, yes[i]) == 0)
		{
			*v = true;
			return true;
		}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcasecmp(text, no[i]) == 0)
		{
			*v = false;
			return true;
		}
	return false;
}

/* Turn the cells of one catalog row into m; NULL, or what is wrong with column *col. */
static const char *
catalog_row(char **f, sp_route_model *m, int *col)
{
	double		ctxw;

	m->model_id = f[COL_MODEL_ID];
	m->family = f[COL_FAMILY][0] ? f[COL_FAMILY] : NULL;
	m->hardware = f[COL_HARDWARE][0] ? f[COL_HARDWARE] : NULL;
	if (!cell_number(f[*col = COL_COST], 0.0, INFINITY, &m->cost_per_1m_tokens))
		return "is not a number of at least 0";
	/* context_window is an int in SQL: an integer from 1 to 2147483647 */
	if (!cell_number(f[*col = COL_CONTEXT], 1.0, 2147483647.0, &ctxw) || ctxw != floor(ctxw))
		return "is not an integer from 1 to 2147483647";
	m->context_window = (int64_t) ctxw;
	for (int q = 0; q < 3; q++)
		if (!cell_number(f[*col = COL_Q_SIMPLE + q], 0.0, 1.0, &m->quality[q]))
			return "is not a number from 0 to 1";
	if (!cell_bool(f[*col = COL_ENABLED], &m->enabled))
		return "is not a boolean (true, false, t, f, 1, 0, yes, no)";
	*col = COL_MODEL_ID;
	return f[COL_MODEL_ID][0] ? NULL : "is empty";
}

/* Check the header record: exactly the catalog columns, in order. */
static sp_status
catalog_header(sp_ctx *ctx, csv_in *in, const char *path)
{
	char	   *f[CATALOG_NCOLS];
	const char *why = NULL;
	int			n = csv_record(in, f, &why);
	bool		ok = n == CATALOG_NCOLS;

	if (n < 0)
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0, "catalog \"%s\" line 1: %s", path, why);
	for (int i = 0; ok && i < CATALOG_NCOLS; i++)
		ok = strcmp(f[i], catalog_cols[i]) == 0;
	if (!ok)
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0,
						  "catalog \"%s\" line 1: expected the header model_id,family,"
						  "hardware,cost_per_1m_tokens,context_window,quality_simple,"
						  "quality_moderate,quality_complex,enabled", path);
	return SP_OK;
}

/* Add the record starting on line to cat; an error names the line and column. */
static sp_status
catalog_add_record(sp_ctx *ctx, sp_route_catalog *cat, const char *path, int line,
				   char **f, int n)
{
	sp_route_model m;
	const char *why;
	char		cell[96];
	int			col;

	if (n != CATALOG_NCOLS)
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0,
						  "catalog \"%s\" line %d: expected %d fields, found %d",
						  path, line, CATALOG_NCOLS, n);
	if ((why = catalog_row(f, &m, &col)) != NULL)
	{
		cli_sanitize(cell, sizeof(cell), f[col]);
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0,
						  "catalog \"%s\" line %d, column %s: \"%s\" %s",
						  path, line, catalog_cols[col], cell, why);
	}
	if (sp_route_catalog_add(ctx, cat, &m) != SP_OK)
	{
		char		core[sizeof(ctx->err.msg)];

		memcpy(core, ctx->err.msg, sizeof(core));
		return route_fail(ctx, ctx->err.code, 0, "catalog \"%s\" line %d: %s",
						  path, line, core);
	}
	return SP_OK;
}

/* Parse a whole catalog CSV held in buf (len bytes, one spare byte after). */
static sp_status
catalog_parse(sp_ctx *ctx, sp_route_catalog *cat, const char *path, char *buf, size_t len)
{
	csv_in		in = {buf, buf + len, 1};
	char	   *f[CATALOG_NCOLS];
	const char *why = NULL;
	const char *nul = memchr(buf, '\0', len);
	sp_status	rc;

	/* Cells become C strings: a NUL byte would silently cut one short. */
	if (nul != NULL)
	{
		int			line = 1;

		for (const char *c = buf; c < nul; c++)
			line += *c == '\n';
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0, "catalog \"%s\" line %d: a NUL byte",
						  path, line);
	}
	if ((rc = catalog_header(ctx, &in, path)) != SP_OK)
		return rc;
	while (in.p < in.end)
	{
		int			line = in.line;
		int			n = csv_record(&in, f, &why);

		if (n < 0)
			return route_fail(ctx, SP_ERR_INVALID_ARG, 0, "catalog \"%s\" line %d: %s",
							  path, line, why);
		if (n == 1 && f[0][0] == '\0')
			continue;			/* a blank line */
		if ((rc = catalog_add_record(ctx, cat, path, line, f, n)) != SP_OK)
			return rc;
	}
	if (cat->n == 0)
		return route_fail(ctx, SP_ERR_INVALID_ARG, 0, "catalog \"%s\" has no models", path);
	return SP_OK;
}

/* Fill cat from the CSV file at path, or from builtin_models when path is NULL. */
static sp_status
catalog_load(sp_ctx *ctx, sp_route_catalog *cat, const char *path)
{
	char	   *buf;
	size_t		len;
	sp_status	rc = SP_OK;

	sp_route_catalog_init(cat);
	if (path == NULL)
	{
		for (int i = 0; rc == SP_OK && i < NFIELDS(builtin_models); i++)
			rc = sp_route_catalog_add(ctx, cat, &builtin_models[i]);
		return rc;
	}
	if ((rc = read_file(ctx, path, "catalog", CLI_CATALOG_MAX, &buf, &len)) != SP_OK)
		return rc;
	rc = catalog_parse(ctx, cat, path, buf, len);
	free(buf);
	return rc;
}

/* ---- results --------------------------------------------------------------- */

/* Add a double, or JSON null for NaN (SQL NULL). */
static void
add_double(cJSON *o, const char *key, double v)
{
	if (isnan(v))
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddNumberToObject(o, key, v);
}

/* Add a string, or JSON null. */
static void
add_string(cJSON *o, const char *key, const char *v)
{
	if (v == NULL)
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddStringToObject(o, key, v);
}

/* The columns of route_decision as a JSON object. */
static cJSON *
decision_json(const sp_route_catalog *cat, const char *requested,
			  const sp_route_decision *d)
{
	cJSON	   *o = cJSON_CreateObject();
	const sp_route_model *rec = d->recommended >= 0 ? &cat->models[d->recommended] : NULL;

	cJSON_AddStringToObject(o, "complexity", sp_complexity_name(d->cls.complexity));
	cJSON_AddNumberToObject(o, "complexity_score", d->cls.score);
	cJSON_AddStringToObject(o, "requested_model", requested);
	cJSON_AddStringToObject(o, "recommended_model", rec ? rec->model_id : requested);
	add_string(o, "recommended_hardware", rec ? rec->hardware : NULL);
	add_double(o, "estimated_cost_per_1m_tokens", d->estimated_cost_per_1m_tokens);
	add_double(o, "requested_cost_per_1m_tokens", d->requested_cost_per_1m_tokens);
	add_double(o, "cost_savings_pct", d->cost_savings_pct);
	add_double(o, "predicted_quality", d->predicted_quality);
	add_double(o, "requested_predicted_quality", d->requested_predicted_quality);
	cJSON_AddBoolToObject(o, "routed", d->routed);
	cJSON_AddStringToObject(o, "reason", d->reason);
	return o;
}

/* sparse route --classify: the columns of route_classify. */
static int
route_classify_cmd(const cli_command *cmd, const cli_opts *opts, sp_ctx *ctx,
				   const char *prompt, size_t len, const route_params *p)
{
	static const cli_field fields[] = {
		{"complexity", "complexity", CLI_TEXT},
		{"score", "score", CLI_NUMBER},
		{"est_prompt_tokens", "est_prompt_tokens", CLI_COUNT},
		{"signals", "signals", CLI_TEXT},
	};
	sp_route_class cls;
	cJSON	   *o;

	if (sp_route_classify(ctx, prompt, len, p->max_tokens, &cls) != SP_OK)
		return cli_core_error(cmd, opts, ctx);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "complexity", sp_complexity_name(cls.complexity));
	cJSON_AddNumberToObject(o, "score", cls.score);
	cJSON_AddNumberToObject(o, "est_prompt_tokens", (double) cls.est_prompt_tokens);
	cJSON_AddStringToObject(o, "signals", cls.signals);
	return cli_emit(opts, o, fields, NFIELDS(fields));
}

/* sparse route --model M: the columns of route_decision. */
static int
route_decide_cmd(const cli_command *cmd, const cli_opts *opts, sp_ctx *ctx,
				 const cli_args *args, const char *prompt, size_t len,
				 const route_params *p)
{
	static const cli_field fields[] = {
		{"complexity", "complexity", CLI_TEXT},
		{"complexity_score", "complexity_score", CLI_NUMBER},
		{"requested_model", "requested_model", CLI_TEXT},
		{"recommended_model", "recommended_model", CLI_TEXT},
		{"recommended_hardware", "recommended_hardware", CLI_TEXT},
		{"estimated_cost_per_1m_tokens", "estimated_cost_per_1m_tokens", CLI_NUMBER},
		{"requested_cost_per_1m_tokens", "requested_cost_per_1m_tokens", CLI_NUMBER},
		{"cost_savings_pct", "cost_savings_pct", CLI_PCT},
		{"predicted_quality", "predicted_quality", CLI_NUMBER},
		{"requested_predicted_quality", "requested_predicted_quality", CLI_NUMBER},
		{"routed", "routed", CLI_BOOL},
		{"reason", "reason", CLI_TEXT},
	};
	sp_route_catalog cat;
	sp_route_request req;
	sp_route_decision d;
	int			rc;

	memset(&req, 0, sizeof(req));
	memset(&d, 0, sizeof(d));
	req.requested_model = args->model;
	req.prompt = prompt;
	req.prompt_len = len;
	req.max_tokens = p->max_tokens;
	req.quality_threshold = p->threshold;
	req.cost_priority = !args->quality_first;
	req.request_id = args->request_id;
	req.request_id_len = args->request_id ? strlen(args->request_id) : 0;
	req.routing_percentage = p->percentage;
	if (catalog_load(ctx, &cat, args->catalog) != SP_OK ||
		sp_route_decide(ctx, &cat, &req, &d, NULL) != SP_OK)
		rc = cli_core_error(cmd, opts, ctx);
	else
		rc = cli_emit(opts, decision_json(&cat, args->model, &d), fields, NFIELDS(fields));
	sp_route_catalog_free(ctx, &cat);
	return rc;
}

/* sparse route (--model M | --classify) (--prompt TEXT | --prompt-file FILE) [...] */
int
cmd_route(const cli_command *cmd, const cli_opts *opts, const cli_args *args)
{
	route_params p;
	sp_ctx		ctx;
	char	   *buf = NULL;
	const char *prompt = args->prompt;
	size_t		len = prompt ? strlen(prompt) : 0;
	int			rc;

	if ((rc = check_route_args(cmd, args, &p)) >= 0)
		return rc;
	cli_ctx_init(&ctx, opts);
	if (args->prompt_file != NULL)
	{
		if (read_file(&ctx, args->prompt_file, "prompt file", CLI_PROMPT_MAX,
					  &buf, &len) != SP_OK)
			return cli_core_error(cmd, opts, &ctx);
		prompt = buf;
	}
	if (args->classify)
		rc = route_classify_cmd(cmd, opts, &ctx, prompt, len, &p);
	else
		rc = route_decide_cmd(cmd, opts, &ctx, args, prompt, len, &p);
	free(buf);
	return rc;
}
