/*
 * main.c -- bin/sparse: entry point, option parsing and command dispatch.
 *
 * Usage: sparse [--json] [--quiet] [--root DIR] COMMAND ARGS...  (see
 * cli_print_main_help or README.md, "Command line").  main() parses the global
 * options up to the command name, looks the command up in cli_commands,
 * parses the command's own options and positional arguments with one
 * getopt_long table (global options are accepted after the command too),
 * checks their count, and calls the command's run function.
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage error, 128+N when
 * stopped by signal N (130 for Ctrl-C).  SIGINT and SIGTERM only set a flag
 * (cli_interrupted) that the core polls through hooks.interrupted about
 * every MiB of work; the core then removes its temporary output and returns
 * SP_ERR_CANCELLED, and we exit 128+N.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Signal number that asked us to stop (0: none); set only by on_signal. */
static volatile sig_atomic_t cli_interrupted = 0;

/* The commands, in the order "sparse --help" lists them. */
static const cli_command cli_commands[] = {
	{"estimate", cmd_estimate, CLI_OPT_SAMPLE, 2, 2, "BASE FT [--sample F]",
		"estimate the delta size of FT against BASE from a sample",
		"Encodes about F (default 0.01, 0 < F <= 1) of the tensor bytes of FT\n"
		"against BASE and extrapolates the size of the full delta. Writes nothing.\n"
		"BASE and FT are .safetensors files or model directories.\n"
		"\n"
		"  -s, --sample F     fraction of the tensor bytes to encode (default 0.01)\n"},
	{"compress", cmd_compress, CLI_OPT_OUT | CLI_OPT_LEVEL | CLI_OPT_THREADS, 2, 2,
		"BASE FT -o DELTA [--level N] [--threads N]",
		"store FT as a delta against BASE",
		"Writes the delta of FT against BASE to DELTA, which must not exist. The\n"
		"file is written under a temporary name and renamed into place, so a\n"
		"failure or Ctrl-C leaves nothing behind.\n"
		"\n"
		"  -o, --output DELTA  the delta file to create (required)\n"
		"  -l, --level N       level 1..19 (default 3). Float tensors are context-\n"
		"                      modelled (smaller, slower to code and apply) from 3 on\n"
		"                      for fine-tunes up to 256 MiB, from 10 on for any size\n"
		"  --threads N         threads coding tensor chunks, 1..16 (default: one per\n"
		"                      core; 1 codes on the main thread); same delta either way\n"},
	{"dataset-estimate", cmd_dataset_estimate, CLI_OPT_SAMPLE_ROWS, 2, 2,
		"BASE DERIVED [--sample-rows N]",
		"estimate the delta size of a derived dataset against its parent",
		"Codes N rows of DERIVED (default 1000, 1 <= N <= 10000000), spread over\n"
		"its files, against the rows of BASE, and extrapolates the size of the\n"
		"full delta. Writes nothing. BASE and DERIVED are dataset files (CSV, TSV,\n"
		"JSON Lines, a JSON array, Parquet, any text or binary file) or directories\n"
		"of shards.\n"
		"\n"
		"  --sample-rows N    derived rows to code (default 1000)\n"},
	{"dataset-compress", cmd_dataset_compress, CLI_OPT_OUT | CLI_OPT_LEVEL, 2, 3,
		"BASE DERIVED OUT [--level N]",
		"store a derived dataset as a delta against its parent",
		"Writes the delta of DERIVED against BASE to OUT, which must not exist.\n"
		"Rows found in BASE become references, other rows are coded field by\n"
		"field against a similar BASE row, Parquet files page by page, other\n"
		"files with zstd against the same-named BASE file. 'sparse apply',\n"
		"'verify' and 'info' read the result like any delta. The file is written\n"
		"under a temporary name and renamed into place, so a failure or Ctrl-C\n"
		"leaves nothing behind.\n"
		"\n"
		"  -o, --output OUT    the delta file to create (instead of the third argument)\n"
		"  -l, --level N       zstd level 1..19 (default 3; 19 is smallest, slowest)\n"},
	{"apply", cmd_apply, CLI_OPT_OUT, 2, 2, "BASE DELTA -o OUT",
		"rebuild the fine-tune or dataset from BASE and DELTA",
		"Rebuilds the fine-tune byte for byte into OUT (a file, or a directory for\n"
		"a directory delta), which must not exist, and checks each rebuilt file\n"
		"against the SHA-256 recorded in DELTA. Fails if BASE is not the base\n"
		"DELTA was made from (checked by the fingerprint DELTA records).\n"
		"\n"
		"  -o, --output OUT    the file or directory to create (required)\n"},
	{"verify", cmd_verify, 0, 2, 2, "BASE DELTA",
		"rebuild in memory and check every digest; write nothing",
		"Does what apply does, chunk by chunk in memory, without writing a file.\n"
		"Exit status 0 means the delta rebuilds the recorded fine-tune exactly.\n"},
	{"info", cmd_info, 0, 1, 1, "DELTA",
		"list the files a delta rebuilds",
		"Prints one row per file: name, size, delta bytes spent on it, method\n"
		"(tensor-delta; rows-csv, rows-tsv, rows-jsonl, rows-json-array or\n"
		"rows-lines for dataset rows; parquet-pages; zstd-ref, zstd or copy) and\n"
		"SHA-256. With --json, an array.\n"},
	{"route", cmd_route, CLI_OPT_ROUTE, 0, 0,
		"--model M (--prompt TEXT | --prompt-file FILE) [OPTIONS]",
		"choose the cheapest model good enough for a prompt",
		"Decides which model should serve a request, as the SQL function\n"
		"route_decision does, and prints its columns. Candidates are the enabled\n"
		"catalog models whose context window holds the prompt plus N output\n"
		"tokens; one qualifies when its predicted quality is at least X times\n"
		"that of M. The cheapest qualifying model is recommended (with\n"
		"--quality-first: the best qualifying model cheaper than M). Predicted\n"
		"quality here is the catalog's prior for the prompt's complexity: learned\n"
		"predictors live in a database (route_train). With --classify, prints\n"
		"the columns of route_classify instead (no model, no catalog).\n"
		"\n"
		"  --model M            the model the request asked for (unless --classify)\n"
		"  --prompt TEXT        the prompt\n"
		"  --prompt-file FILE   read the prompt from FILE ('-': standard input)\n"
		"  --max-tokens N       output tokens asked for (default 100)\n"
		"  --threshold X        quality threshold, 0 < X <= 1 (default 0.85)\n"
		"  --quality-first      best quality among cheaper models, not lowest cost\n"
		"  --request-id ID      rollout key (default: the prompt)\n"
		"  --percentage P       share of requests routed, 0 to 100 (default 100)\n"
		"  --catalog FILE.csv   the catalog (default: the built-in one below)\n"
		"  --classify           only classify the prompt\n"
		"\n"
		"A catalog CSV starts with the header\n"
		"  model_id,family,hardware,cost_per_1m_tokens,context_window,\n"
		"  quality_simple,quality_moderate,quality_complex,enabled\n"
		"(one line), then one model per line; fields may be quoted as in RFC\n"
		"4180; an empty family or hardware is NULL; enabled is true, false, t,\n"
		"f, 1, 0, yes or no (empty: true).\n"
		"\n"
		"Built-in catalog ($ per 1M tokens, list prices blended 3:1 input:output\n"
		"for the APIs, rented-GPU throughput for the open models):\n"
		"  model_id                hardware            $/1M  context  priors s/m/c\n"
		"  llama-3.2-3b-instruct   nvidia-l4           0.06   131072  0.80 0.55 0.30\n"
		"  llama-3.1-8b-instruct   nvidia-l4           0.10   131072  0.88 0.68 0.45\n"
		"  qwen2.5-32b-instruct    nvidia-a100-80gb    0.45    32768  0.93 0.83 0.65\n"
		"  llama-3.1-70b-instruct  2x nvidia-h100-80gb 0.90   131072  0.95 0.88 0.74\n"
		"  gpt-4o                  api                 4.38   128000  0.97 0.93 0.86\n"
		"  claude-3-5-sonnet       api                 6.00   200000  0.97 0.94 0.88\n"},
	{"worker", cmd_worker, CLI_OPT_DB | CLI_OPT_WORKER | CLI_OPT_LEVEL, 0, 0,
		"--db CONNSTR [--concurrency N] [--once] [--out-root DIR] [--lease S] [--level N]",
		"drain a hub database's storage job queue",
		"Claims jobs from sparse_jobs in the PostgreSQL database CONNSTR (a libpq\n"
		"connection string or URI; the extension must be installed there), one\n"
		"at a time per process: decides pending objects from an estimate, writes\n"
		"each delta on this machine (the hub's files must be at the same paths),\n"
		"rebuilds it to check its SHA-256, and records the result in\n"
		"sparse_storage in the transaction that completes the job. Many workers\n"
		"on many machines can share one database. Originals are never deleted:\n"
		"each verified one is printed as one that could go.\n"
		"\n"
		"  --db CONNSTR        the hub database (required)\n"
		"  --concurrency N     worker processes, 1..64 (default 1)\n"
		"  --once              stop when no job is due (default: wait for more)\n"
		"  --out-root DIR      write deltas under DIR (default: the server's\n"
		"                      sparse.delta_dir, or next to the original)\n"
		"  --lease S           seconds a claimed job is ours before another worker\n"
		"                      may take it over, renewed while working (default 600)\n"
		"  -l, --level N       zstd level 1..19 (default 3)\n"},
	{"migrate", cmd_migrate, CLI_OPT_DB | CLI_OPT_MIGRATE, 0, 0,
		"--db CONNSTR --table T --id-col C --path-col C --base-col C --kind K [--batch-size N]",
		"enqueue a hub table's existing rows for storage decisions",
		"Adds every row of table T (schema.table allowed) that sparse_storage does\n"
		"not hold yet as a 'pending' object with a job, N rows per transaction;\n"
		"workers then estimate, decide and compress. Running it again enqueues\n"
		"nothing new.\n"
		"\n"
		"  --db CONNSTR        the hub database (required)\n"
		"  --table T           the hub table\n"
		"  --id-col C          its id column\n"
		"  --path-col C        the column with the object's path\n"
		"  --base-col C        the column with the base's path (NULL: no base)\n"
		"  --kind K            model or dataset\n"
		"  --batch-size N      rows per transaction, 1..1000000 (default 1000)\n"},
	{"report", cmd_report, CLI_OPT_DB, 0, 0, "--db CONNSTR",
		"print a hub database's storage savings",
		"Prints sparse_savings_report: per kind and overall, objects, objects\n"
		"stored as a verified delta, open ones, original, stored and saved bytes,\n"
		"and money saved per month at sparse.storage_cost_per_gb_month. On a\n"
		"terminal, a bar per row follows the table; --json prints an array.\n"
		"\n"
		"  --db CONNSTR        the hub database (required)\n"},
	{"version", cmd_version, 0, 0, 0, "",
		"print the version of sparse and of its delta format", ""},
	{"help", cmd_help, 0, 0, 1, "[COMMAND]",
		"show the help of sparse or of one command", ""},
};

#define CLI_NCOMMANDS ((int) (sizeof(cli_commands) / sizeof(cli_commands[0])))

/* Long options: global ones first, then the command-specific ones. */
enum
{
	OPT_JSON = 1000, OPT_QUIET, OPT_ROOT, OPT_HELP, OPT_SAMPLE_ROWS, OPT_THREADS,
	/* sparse route: OPT_MODEL .. OPT_CLASSIFY */
	OPT_MODEL, OPT_PROMPT, OPT_PROMPT_FILE, OPT_MAX_TOKENS, OPT_THRESHOLD,
	OPT_QUALITY_FIRST, OPT_REQUEST_ID, OPT_PERCENTAGE, OPT_CATALOG, OPT_CLASSIFY,
	OPT_DB,
	/* sparse worker: OPT_CONCURRENCY .. OPT_LEASE */
	OPT_CONCURRENCY, OPT_ONCE, OPT_OUT_ROOT, OPT_LEASE,
	/* sparse migrate: OPT_TABLE .. OPT_BATCH_SIZE */
	OPT_TABLE, OPT_ID_COL, OPT_PATH_COL, OPT_BASE_COL, OPT_KIND, OPT_BATCH_SIZE
};
static const struct option cli_longopts[] = {
	{"json", no_argument, NULL, OPT_JSON},
	{"quiet", no_argument, NULL, 'q'},
	{"root", required_argument, NULL, OPT_ROOT},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{"output", required_argument, NULL, 'o'},
	{"level", required_argument, NULL, 'l'},
	{"sample", required_argument, NULL, 's'},
	{"sample-rows", required_argument, NULL, OPT_SAMPLE_ROWS},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"model", required_argument, NULL, OPT_MODEL},
	{"prompt", required_argument, NULL, OPT_PROMPT},
	{"prompt-file", required_argument, NULL, OPT_PROMPT_FILE},
	{"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
	{"threshold", required_argument, NULL, OPT_THRESHOLD},
	{"quality-first", no_argument, NULL, OPT_QUALITY_FIRST},
	{"request-id", required_argument, NULL, OPT_REQUEST_ID},
	{"percentage", required_argument, NULL, OPT_PERCENTAGE},
	{"catalog", required_argument, NULL, OPT_CATALOG},
	{"classify", no_argument, NULL, OPT_CLASSIFY},
	{"db", required_argument, NULL, OPT_DB},
	{"concurrency", required_argument, NULL, OPT_CONCURRENCY},
	{"once", no_argument, NULL, OPT_ONCE},
	{"out-root", required_argument, NULL, OPT_OUT_ROOT},
	{"lease", required_argument, NULL, OPT_LEASE},
	{"table", required_argument, NULL, OPT_TABLE},
	{"id-col", required_argument, NULL, OPT_ID_COL},
	{"path-col", required_argument, NULL, OPT_PATH_COL},
	{"base-col", required_argument, NULL, OPT_BASE_COL},
	{"kind", required_argument, NULL, OPT_KIND},
	{"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
	{NULL, 0, NULL, 0}
};

/* Signal handler: only records the signal (async-signal-safe). */
static void
on_signal(int signo)
{
	cli_interrupted = signo;
}

/* hooks.interrupted: nonzero once SIGINT or SIGTERM arrived. */
static int
cli_interrupted_hook(void *user)
{
	(void) user;
	return cli_interrupted != 0;
}

/* True if a signal asked us to stop. */
bool
cli_was_interrupted(void)
{
	return cli_interrupted != 0;
}

/*
 * Install on_signal for SIGINT and SIGTERM.  SA_RESETHAND: a second Ctrl-C
 * kills the process at once, for the case where the core is blocked in a
 * system call that does not return (a hung network file system); the price
 * is that the temporary file may then stay behind, which the user asked for.
 */
static void
install_signal_handlers(void)
{
	static const int signals[] = {SIGINT, SIGTERM};
	struct sigaction sa;
	struct sigaction old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
	{
		/* A signal ignored by our parent (a background job, nohup) stays ignored. */
		if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			continue;
		sigaction(signals[i], &sa, NULL);
	}
}

/* Fill a core context with our hooks and options. */
void
cli_ctx_init(sp_ctx *ctx, const cli_opts *opts)
{
	sp_ctx_init(ctx);
	ctx->hooks.interrupted = cli_interrupted_hook;
	/* A progress bar only for a person watching: never into a pipe or log. */
	if (!opts->quiet && isatty(STDERR_FILENO))
		ctx->hooks.progress = cli_progress;
	ctx->root = opts->root ? opts->root : "";
}

/* Look a command up by name; NULL if there is none. */
const cli_command *
cli_find_command(const char *name)
{
	for (int i = 0; i < CLI_NCOMMANDS; i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	return NULL;
}

/* Print "sparse --help" on stdout. */
void
cli_print_main_help(void)
{
	printf("usage: sparse [--json] [--quiet] [--root DIR] COMMAND [ARGS...]\n\n"
		   "Store a fine-tuned model or a derived dataset as a lossless delta against\n"
		   "its base.\n\n"
		   "commands:\n");
	for (int i = 0; i < CLI_NCOMMANDS; i++)
		printf("  %-17s %s\n", cli_commands[i].name, cli_commands[i].summary);
	printf("\nglobal options (before or after the command):\n"
		   "  --json       print one JSON object (an array for info) on stdout\n"
		   "  --quiet, -q  no progress bar, and no output on success\n"
		   "  --root DIR   refuse any path that resolves outside DIR\n"
		   "  --help, -h   show this help, or a command's help after its name\n\n"
		   "exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted (Ctrl-C)\n"
		   "Run 'sparse COMMAND --help' for the options of a command.\n");
}

/* Print "sparse CMD --help" on stdout. */
void
cli_print_command_help(const cli_command *cmd)
{
	printf("usage: sparse %s%s%s\n\n%s.\n", cmd->name, cmd->synopsis[0] ? " " : "",
		   cmd->synopsis, cmd->summary);
	if (cmd->help[0])
		printf("\n%s", cmd->help);
	printf("\nglobal options: --json, --quiet, --root DIR (see 'sparse --help')\n");
}

/* Name the option getopt_long just rejected, for an error message. */
static const char *
bad_option_name(char **argv)
{
	static char name[128];
	const char *arg = argv[optind - 1];

	/* A short option is named by optopt; a long one by its word, sans "=value". */
	if (strncmp(arg, "--", 2) != 0 && optopt > 0 && optopt < 128)
		snprintf(name, sizeof(name), "-%c", optopt);
	else
		snprintf(name, sizeof(name), "%.*s", (int) strcspn(arg, "="), arg);
	return name;
}

/* Store one option of sparse route (c in OPT_MODEL..OPT_CLASSIFY) in args. */
static void
take_route_option(cli_args *args, int c)
{
	switch (c)
	{
		case OPT_MODEL: args->model = optarg; break;
		case OPT_PROMPT: args->prompt = optarg; break;
		case OPT_PROMPT_FILE: args->prompt_file = optarg; break;
		case OPT_MAX_TOKENS: args->max_tokens = optarg; break;
		case OPT_THRESHOLD: args->threshold = optarg; break;
		case OPT_QUALITY_FIRST: args->quality_first = true; break;
		case OPT_REQUEST_ID: args->request_id = optarg; break;
		case OPT_PERCENTAGE: args->percentage = optarg; break;
		case OPT_CATALOG: args->catalog = optarg; break;
		default: args->classify = true; break;	/* OPT_CLASSIFY */
	}
}

/* Store one option of worker, migrate or report (c in OPT_DB..OPT_BATCH_SIZE). */
static void
take_hub_option(cli_args *args, int c)
{
	switch (c)
	{
		case OPT_DB: args->db = optarg; break;
		case OPT_CONCURRENCY: args->concurrency = optarg; break;
		case OPT_ONCE: args->once = true; break;
		case OPT_OUT_ROOT: args->out_root = optarg; break;
		case OPT_LEASE: args->lease = optarg; break;
		case OPT_TABLE: args->table = optarg; break;
		case OPT_ID_COL: args->id_col = optarg; break;
		case OPT_PATH_COL: args->path_col = optarg; break;
		case OPT_BASE_COL: args->base_col = optarg; break;
		case OPT_KIND: args->kind = optarg; break;
		default: args->batch_size = optarg; break;	/* OPT_BATCH_SIZE */
	}
}

/* Map one option of a command to its field; returns -1, or an exit status. */
static int
take_option(const cli_command *cmd, cli_opts *opts, cli_args *args, int c,
			int longindex, char **argv)
{
	unsigned	need = c == 'o' ? CLI_OPT_OUT : c == 'l' ? CLI_OPT_LEVEL :
		c == 's' ? CLI_OPT_SAMPLE : c == OPT_SAMPLE_ROWS ? CLI_OPT_SAMPLE_ROWS :
		c == OPT_THREADS ? CLI_OPT_THREADS :
		c >= OPT_MODEL && c <= OPT_CLASSIFY ? CLI_OPT_ROUTE :
		c == OPT_DB ? CLI_OPT_DB :
		c >= OPT_CONCURRENCY && c <= OPT_LEASE ? CLI_OPT_WORKER :
		c >= OPT_TABLE && c <= OPT_BATCH_SIZE ? CLI_OPT_MIGRATE : 0;

	if (need != 0 && (cmd->allowed & need) == 0)
	{
		if (longindex >= 0)
			return cli_usage_error(cmd, "unknown option \"--%s\"", cli_longopts[longindex].name);
		return cli_usage_error(cmd, "unknown option \"-%c\"", c);
	}
	if (need == CLI_OPT_ROUTE)
	{
		take_route_option(args, c);
		return -1;
	}
	if (need == CLI_OPT_DB || need == CLI_OPT_WORKER || need == CLI_OPT_MIGRATE)
	{
		take_hub_option(args, c);
		return -1;
	}
	switch (c)
	{
		case OPT_JSON: opts->json = true; return -1;
		case 'q': opts->quiet = true; return -1;
		case OPT_ROOT: opts->root = optarg; return -1;
		case 'h': cli_print_command_help(cmd); return CLI_EXIT_OK;
		case 'o': args->out = optarg; return -1;
		case 'l': args->level = optarg; return -1;
		case 's': args->sample = optarg; return -1;
		case OPT_SAMPLE_ROWS: args->sample_rows = optarg; return -1;
		case OPT_THREADS: args->threads = optarg; return -1;
		case ':':
			return cli_usage_error(cmd, "option \"%s\" needs a value",
								   bad_option_name(argv));
		default:
			return cli_usage_error(cmd, "unknown option \"%s\"",
								   bad_option_name(argv));
	}
}

/* Parse a command's options and arguments (argv[0] is its name). */
static int
parse_command_args(const cli_command *cmd, cli_opts *opts, cli_args *args,
				   int argc, char **argv)
{
	int			c;
	int			longindex = -1;

	memset(args, 0, sizeof(*args));
	optind = 0;					/* glibc: fully reinitialize getopt */
	opterr = 0;					/* we print our own messages */
	/* longindex tells "-o" from "--output" when naming a rejected option. */
	while ((c = getopt_long(argc, argv, ":qho:l:s:", cli_longopts, &longindex)) != -1)
	{
		int			rc = take_option(cmd, opts, args, c, longindex, argv);

		if (rc >= 0)
			return rc;
		longindex = -1;
	}
	for (int i = optind; i < argc; i++)
	{
		if (args->npos >= cmd->max_pos)
			return cli_usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
		args->pos[args->npos++] = argv[i];
	}
	if (args->npos < cmd->min_pos)
	{
		/* Name the positional arguments: the synopsis up to its first option. */
		int			len = (int) strcspn(cmd->synopsis, "-[");

		while (len > 0 && cmd->synopsis[len - 1] == ' ')
			len--;
		return cli_usage_error(cmd, "expected %.*s", len, cmd->synopsis);
	}
	return -1;
}

/* Parse the global options before the command; returns -1 or an exit status. */
static int
parse_global_args(cli_opts *opts, int argc, char **argv)
{
	int			c;

	opterr = 0;
	/* "+": stop at the command name, whose options are parsed later. */
	while ((c = getopt_long(argc, argv, "+:qhV", cli_longopts, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_JSON: opts->json = true; break;
			case 'q': opts->quiet = true; break;
			case OPT_ROOT: opts->root = optarg; break;
			case 'h': cli_print_main_help(); return CLI_EXIT_OK;
			case 'V': return -2;
			case ':':
				return cli_usage_error(NULL, "option \"%s\" needs a value",
									   bad_option_name(argv));
			default:
				return cli_usage_error(NULL, "unknown option \"%s\"",
									   bad_option_name(argv));
		}
	}
	return -1;
}

/* Entry point: global options, command lookup, command options, run. */
int
main(int argc, char **argv)
{
	cli_opts	opts = {false, false, NULL};
	cli_args	args;
	const cli_command *cmd;
	int			rc;

	install_signal_handlers();
	rc = parse_global_args(&opts, argc, argv);
	if (rc == -2)				/* --version */
		return cmd_version(cli_find_command("version"), &opts, NULL);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return cli_usage_error(NULL, "missing command");
	if ((cmd = cli_find_command(argv[optind])) == NULL)
		return cli_usage_error(NULL, "unknown command \"%s\"", argv[optind]);
	rc = parse_command_args(cmd, &opts, &args, argc - optind, argv + optind);
	if (rc >= 0)
		return rc;
	rc = cmd->run(cmd, &opts, &args);
	if (cli_interrupted != 0)
		return CLI_EXIT_SIGNAL_BASE + cli_interrupted;
	return rc;
}
