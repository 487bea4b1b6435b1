/*
 * output.c -- how bin/sparse prints: results, errors, sizes, progress.
 *
 * A command hands cli_emit a cJSON object plus a table of fields
 * (cli_field: JSON key, human label, kind).  With --json the object is
 * printed as is, on one line, by cJSON (so strings are escaped by the
 * library, never by hand); otherwise each field becomes one aligned
 * "label: value" line, sizes shown as "1.13 MiB (1182680 bytes)".
 * cli_emit_table does the same for a list of rows (sparse info).
 *
 * Errors go to stderr as "sparse: COMMAND: MESSAGE" (message from the core,
 * unchanged except for escaping); with --json an {"error": ...} object is
 * also printed on stdout so a script always gets one JSON value.
 *
 * Security: file names inside a delta are data from a possibly hostile
 * file, and paths can hold any byte but NUL, so every string printed for a
 * human passes through cli_sanitize, which escapes control characters: a
 * crafted name cannot move the cursor, rewrite earlier lines or send escape
 * sequences to the terminal.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Longest human rendering of one value (a sanitized path may be 4x its length). */
#define CLI_VALUE_MAX (4 * 4096 + 64)

/* Progress bar state: the last percentage drawn, -1 if nothing is drawn. */
static int	cli_progress_pct = -1;

/* Copy src to dst, escaping control characters and DEL as \xHH. */
void
cli_sanitize(char *dst, size_t len, const char *src)
{
	size_t		o = 0;

	for (const unsigned char *p = (const unsigned char *) src; *p && o + 5 < len; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			o += (size_t) snprintf(dst + o, len - o, "\\x%02x", *p);
		else
			dst[o++] = (char) *p;
	}
	dst[o] = '\0';
}

/* Format a size as "1.13 MiB" (binary units), or "512 B". */
static void
format_human(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double		v = (double) bytes;
	int			u = 0;

	while (v >= 1024.0 && u < 5)
	{
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long) bytes);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
}

/* Format a size as "1.13 MiB (1182680 bytes)". */
void
cli_format_bytes(char *buf, size_t len, uint64_t bytes)
{
	char		human[32];

	format_human(human, sizeof(human), bytes);
	if (bytes < 1024)
		snprintf(buf, len, "%s", human);
	else
		snprintf(buf, len, "%s (%llu bytes)", human, (unsigned long long) bytes);
}

/* Render one JSON value for a human, according to kind. */
static void
format_value(char *buf, size_t len, const cJSON *v, cli_kind kind)
{
	double		d = cJSON_IsNumber(v) ? v->valuedouble : 0.0;

	if (v == NULL || cJSON_IsNull(v))
		snprintf(buf, len, "-");
	else if (cJSON_IsString(v))
		cli_sanitize(buf, len, v->valuestring);
	else if (kind == CLI_BYTES)
		cli_format_bytes(buf, len, (uint64_t) d);
	else if (kind == CLI_COUNT)
		snprintf(buf, len, "%.0f", d);
	else if (kind == CLI_PCT)
		snprintf(buf, len, "%.2f%%", d);
	else if (kind == CLI_RATIO && !isfinite(d))
		snprintf(buf, len, "-");
	else if (kind == CLI_RATIO)
		snprintf(buf, len, "%.3fx", d);
	else if (kind == CLI_MS)
		snprintf(buf, len, "%.1f ms", d);
	else if (kind == CLI_BOOL)
		snprintf(buf, len, cJSON_IsTrue(v) ? "yes" : "no");
	else
		snprintf(buf, len, "%g", d);
}

/* Print a JSON value on one line of stdout; frees nothing. */
static int
print_json(const cJSON *value)
{
	char	   *text = cJSON_PrintUnformatted(value);

	if (text == NULL)
	{
		fprintf(stderr, "sparse: out of memory printing JSON\n");
		return CLI_EXIT_FAIL;
	}
	puts(text);
	cJSON_free(text);
	return CLI_EXIT_OK;
}

/* Check that stdout took everything (a full disk or closed pipe is a failure). */
static int
finish_stdout(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout))
	{
		fprintf(stderr, "sparse: could not write the result to standard output\n");
		return CLI_EXIT_FAIL;
	}
	return rc;
}

/* Print a result object as JSON or as aligned lines; frees value. */
int
cli_emit(const cli_opts *opts, cJSON *value, const cli_field *fields, int nfields)
{
	static char buf[CLI_VALUE_MAX];
	int			width = 0;
	int			rc = CLI_EXIT_OK;

	if (value == NULL)
	{
		fprintf(stderr, "sparse: out of memory building the result\n");
		return CLI_EXIT_FAIL;
	}
	for (int i = 0; i < nfields; i++)
		if ((int) strlen(fields[i].label) > width)
			width = (int) strlen(fields[i].label);
	if (opts->json)
		rc = print_json(value);
	else if (!opts->quiet)
		for (int i = 0; i < nfields; i++)
		{
			format_value(buf, sizeof(buf),
						 cJSON_GetObjectItemCaseSensitive(value, fields[i].key),
						 fields[i].kind);
			printf("%s:%*s %s\n", fields[i].label,
				   width - (int) strlen(fields[i].label), "", buf);
		}
	cJSON_Delete(value);
	return finish_stdout(rc);
}

/* Width of each column of a human table (header included). */
static void
table_widths(const cJSON *rows, const cli_field *cols, int ncols, int *w)
{
	static char buf[CLI_VALUE_MAX];
	const cJSON *row;

	for (int c = 0; c < ncols; c++)
		w[c] = (int) strlen(cols[c].label);
	cJSON_ArrayForEach(row, rows)
		for (int c = 0; c < ncols; c++)
	{
		format_value(buf, sizeof(buf),
					 cJSON_GetObjectItemCaseSensitive(row, cols[c].key), cols[c].kind);
		if ((int) strlen(buf) > w[c])
			w[c] = (int) strlen(buf);
	}
}

/* Print one row of a human table; text left-aligned, numbers right-aligned. */
static void
table_row(const cJSON *row, const cli_field *cols, int ncols, const int *w)
{
	static char buf[CLI_VALUE_MAX];

	for (int c = 0; c < ncols; c++)
	{
		const char *text = cols[c].label;
		bool		left = cols[c].kind == CLI_TEXT;

		if (row != NULL)
		{
			format_value(buf, sizeof(buf),
						 cJSON_GetObjectItemCaseSensitive(row, cols[c].key), cols[c].kind);
			text = buf;
		}
		if (c == ncols - 1 && left)
			printf("%s%s\n", c ? "  " : "", text);	/* no trailing blanks */
		else
			printf("%s%*s%s", c ? "  " : "", left ? -w[c] : w[c], text,
				   c == ncols - 1 ? "\n" : "");
	}
}

/* Print an array of row objects as JSON or as an aligned table; frees rows. */
int
cli_emit_table(const cli_opts *opts, cJSON *rows, const cli_field *cols, int ncols)
{
	int			w[16];
	int			rc = CLI_EXIT_OK;
	const cJSON *row;

	if (rows == NULL || ncols > 16)
	{
		fprintf(stderr, "sparse: out of memory building the result\n");
		cJSON_Delete(rows);
		return CLI_EXIT_FAIL;
	}
	if (opts->json)
		rc = print_json(rows);
	else if (!opts->quiet)
	{
		table_widths(rows, cols, ncols, w);
		table_row(NULL, cols, ncols, w);
		cJSON_ArrayForEach(row, rows)
			table_row(row, cols, ncols, w);
	}
	cJSON_Delete(rows);
	return finish_stdout(rc);
}

/* Print "sparse: [COMMAND: ]MESSAGE (see ...)" and return the usage status. */
int
cli_usage_error(const cli_command *cmd, const char *fmt,...)
{
	char		msg[1024];
	char		safe[4 * 1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cli_sanitize(safe, sizeof(safe), msg);
	if (cmd != NULL)
		fprintf(stderr, "sparse: %s: %s (see 'sparse %s --help')\n",
				cmd->name, safe, cmd->name);
	else
		fprintf(stderr, "sparse: %s (see 'sparse --help')\n", safe);
	return CLI_EXIT_USAGE;
}

/* Report a failed core call on stderr (and as JSON); return the failure status. */
int
cli_core_error(const cli_command *cmd, const cli_opts *opts, const sp_ctx *ctx)
{
	char		safe[4 * sizeof(ctx->err.msg)];
	const char *msg = ctx->err.msg;
	cJSON	   *obj;
	cJSON	   *err;

	cli_progress_end();
	/* The core words cancellation for a database; on a terminal say what happened. */
	if (ctx->err.code == SP_ERR_CANCELLED && cli_was_interrupted())
		msg = "interrupted";
	cli_sanitize(safe, sizeof(safe), msg);
	fprintf(stderr, "sparse: %s: %s\n", cmd->name, safe);
	if (opts->json && (obj = cJSON_CreateObject()) != NULL)
	{
		err = cJSON_AddObjectToObject(obj, "error");
		if (err != NULL &&
			cJSON_AddStringToObject(err, "command", cmd->name) &&
			cJSON_AddStringToObject(err, "code", sp_status_name(ctx->err.code)) &&
			cJSON_AddStringToObject(err, "message", msg) &&
			cJSON_AddNumberToObject(err, "errno", ctx->err.sys_errno))
			print_json(obj);
		cJSON_Delete(obj);
		fflush(stdout);
	}
	return CLI_EXIT_FAIL;
}

/* hooks.progress: redraw a bar on stderr when the whole percentage changes. */
void
cli_progress(void *user, uint64_t done, uint64_t total)
{
	char		d[32];
	char		t[32];
	char		bar[41];
	int			pct;

	(void) user;
	if (total == 0)
		return;
	pct = done >= total ? 100 : (int) ((double) done * 100.0 / (double) total);
	if (pct == cli_progress_pct)
		return;
	cli_progress_pct = pct;
	memset(bar, ' ', 40);
	memset(bar, '#', (size_t) (pct * 40 / 100));
	bar[40] = '\0';
	format_human(d, sizeof(d), done);
	format_human(t, sizeof(t), total);
	fprintf(stderr, "\r[%s] %3d%%  %s / %s\033[K", bar, pct, d, t);
	fflush(stderr);
}

/* Erase the progress bar, if one is drawn, so the next line starts clean. */
void
cli_progress_end(void)
{
	if (cli_progress_pct < 0)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	cli_progress_pct = -1;
}
