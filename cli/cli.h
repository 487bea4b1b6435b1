/*
 * cli.h -- shared declarations of the command-line tool bin/sparse.
 *
 * The tool is five files: main.c (global options, the command table,
 * signals, exit status), commands.c (one function per command: parse its
 * options, call the core, describe the result), route.c (the route
 * command, its catalog and CSV reader), hub.c (worker, migrate and report
 * over a hub's PostgreSQL database, through libpq) and output.c (human and JSON
 * rendering, sizes, the progress bar, error messages).  A command never
 * prints a result itself: it fills a cJSON object and names the fields to
 * show, and output.c prints either the JSON or aligned "key: value" lines,
 * so both forms always carry the same facts.
 */
#ifndef SPARSE_CLI_H
#define SPARSE_CLI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "sparse.h"

/* Exit statuses (documented in README.md, "Command line"). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_SIGNAL_BASE 128

/* Options shared by every command. */
typedef struct cli_opts
{
	bool		json;			/* one JSON value on stdout instead of text */
	bool		quiet;			/* no progress bar, no result on success */
	const char *root;			/* confine every path under this directory */
} cli_opts;

/* Command-specific options a command accepts (cli_command.allowed). */
#define CLI_OPT_OUT 0x1			/* -o, --output PATH */
#define CLI_OPT_LEVEL 0x2		/* -l, --level N */
#define CLI_OPT_SAMPLE 0x4		/* -s, --sample F */
#define CLI_OPT_SAMPLE_ROWS 0x8	/* --sample-rows N */
#define CLI_OPT_ROUTE 0x10		/* --model, --prompt, ... (sparse route) */
#define CLI_OPT_THREADS 0x20	/* --threads N */
#define CLI_OPT_DB 0x40			/* --db CONNSTR */
#define CLI_OPT_WORKER 0x80		/* --concurrency, --once, --out-root, --lease */
#define CLI_OPT_MIGRATE 0x100	/* --table, --id-col, --path-col, --base-col, --kind, --batch-size */

/* Arguments of one command after parsing (strings point into argv). */
typedef struct cli_args
{
	int			npos;			/* positional arguments found */
	const char *pos[3];			/* the first of them */
	const char *out;			/* -o, or NULL */
	const char *level;			/* --level, or NULL */
	const char *sample;			/* --sample, or NULL */
	const char *sample_rows;	/* --sample-rows, or NULL */
	const char *threads;		/* --threads, or NULL */
	/* sparse route (each NULL or false when not given) */
	const char *model;			/* --model */
	const char *prompt;			/* --prompt */
	const char *prompt_file;	/* --prompt-file ("-": standard input) */
	const char *max_tokens;		/* --max-tokens */
	const char *threshold;		/* --threshold */
	const char *request_id;		/* --request-id */
	const char *percentage;		/* --percentage */
	const char *catalog;		/* --catalog */
	bool		quality_first;	/* --quality-first */
	bool		classify;		/* --classify */
	/* worker, migrate, report */
	const char *db;				/* --db (libpq connection string) */
	const char *concurrency;	/* --concurrency */
	const char *out_root;		/* --out-root */
	const char *lease;			/* --lease (seconds) */
	bool		once;			/* --once */
	const char *table;			/* --table */
	const char *id_col;			/* --id-col */
	const char *path_col;		/* --path-col */
	const char *base_col;		/* --base-col */
	const char *kind;			/* --kind */
	const char *batch_size;		/* --batch-size */
} cli_args;

struct cli_command;

/* What a command runs once its arguments are parsed and counted. */
typedef int (*cli_run_fn) (const struct cli_command *cmd, const cli_opts *opts,
						   const cli_args *args);

/* One command of the dispatch table in main.c. */
typedef struct cli_command
{
	const char *name;
	cli_run_fn	run;
	unsigned	allowed;		/* CLI_OPT_* it accepts */
	int			min_pos;		/* positional arguments required */
	int			max_pos;		/* positional arguments allowed */
	const char *synopsis;		/* arguments after the command name */
	const char *summary;		/* one line for "sparse --help" */
	const char *help;			/* the body of "sparse CMD --help" */
} cli_command;

/* How output.c renders one field of a result in human form. */
typedef enum cli_kind
{
	CLI_TEXT,					/* string as is (control characters escaped) */
	CLI_BYTES,					/* "1.13 MiB (1182680 bytes)" */
	CLI_COUNT,					/* integer */
	CLI_NUMBER,					/* any number, "%g" */
	CLI_PCT,					/* "6.97%" */
	CLI_RATIO,					/* "1.075x" */
	CLI_MS,						/* "12.3 ms" */
	CLI_BOOL					/* "yes" / "no" */
} cli_kind;

/* One field: its JSON key, its human label, how to render it. */
typedef struct cli_field
{
	const char *key;
	const char *label;
	cli_kind	kind;
} cli_field;

/* ---- commands.c ---- */
int			cmd_estimate(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_compress(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_dataset_estimate(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_dataset_compress(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_apply(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_verify(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_info(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_version(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_help(const cli_command *cmd, const cli_opts *opts, const cli_args *args);

/* ---- route.c ---- */
int			cmd_route(const cli_command *cmd, const cli_opts *opts, const cli_args *args);

/* ---- hub.c ---- */
int			cmd_worker(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_migrate(const cli_command *cmd, const cli_opts *opts, const cli_args *args);
int			cmd_report(const cli_command *cmd, const cli_opts *opts, const cli_args *args);

/* ---- main.c ---- */
const cli_command *cli_find_command(const char *name);
void		cli_print_main_help(void);
void		cli_print_command_help(const cli_command *cmd);
void		cli_ctx_init(sp_ctx *ctx, const cli_opts *opts);
bool		cli_was_interrupted(void);

/* ---- output.c ---- */
int			cli_usage_error(const cli_command *cmd, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/*
 * Parse option value text as a number in [lo, hi] (lo excluded if open)
 * into *value; on a bad value print "invalid WHAT "text": expected RANGE"
 * and return the usage exit status; -1 when fine or text is NULL.
 */
int			cli_parse_number(const cli_command *cmd, const char *what, const char *text,
							 double lo, bool open, double hi, const char *range,
							 double *value);
int			cli_core_error(const cli_command *cmd, const cli_opts *opts, const sp_ctx *ctx);
int			cli_emit(const cli_opts *opts, cJSON *value, const cli_field *fields, int nfields);
int			cli_emit_table(const cli_opts *opts, cJSON *rows, const cli_field *cols, int ncols);
void		cli_progress(void *user, uint64_t done, uint64_t total);
void		cli_progress_end(void);
void		cli_format_bytes(char *buf, size_t len, uint64_t bytes);
void		cli_sanitize(char *dst, size_t len, const char *src);

#endif							/* SPARSE_CLI_H */
