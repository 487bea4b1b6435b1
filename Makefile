# Makefile -- builds every face of sparse from one core.
#
#   make deps          install missing Debian packages (apt-get; needs root)
#   make               PostgreSQL extension (PGXS), SQLite extension, CLI
#   make install       install the PostgreSQL extension (PGXS) and bin/sparse
#   make installcheck  pg_regress against a running server (use pg_virtualenv)
#   make test          every test: unit (plain and ASan+UBSan), pg_regress in a
#                      throwaway cluster, the hub workers (hub-test), SQLite
#                      scripts, CLI, the demo (demo-test), routing eval, fuzzing
#   make demo          the SQLite hub demo over ../shared/data
#   make bench         sparse next to zstd --patch-from, xdelta3 (and bsdiff
#                      on datasets): models, then datasets
#   make bench-datasets  the dataset section of make bench only
#   make bench-route   routing: microseconds per call, pgbench vs SELECT 1
#   make route-eval    routing quality on the RouteLLM labels (APGR, SVG)
#
# The PostgreSQL module is sparse_pg.so (module_pathname in sparse.control) so
# that ./sparse.so can be the SQLite loadable extension (".load ./sparse") and
# bin/sparse the command-line tool.

EXTVERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" sparse.control)
DATA_DIR ?= $(abspath ../shared/data)

# ---- PostgreSQL (PGXS) ---------------------------------------------------
EXTENSION = sparse
MODULE_big = sparse_pg
CORE_SRCS = $(sort $(wildcard common/*.c))
OBJS = $(CORE_SRCS:.c=.o) $(patsubst %.c,%.o,$(sort $(wildcard pg/*.c)))
DATA = pg/sparse--$(EXTVERSION).sql
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --outputdir=build/regress
REGRESS_PREP = pg-fixtures
PG_CPPFLAGS = -Icommon -DSPARSE_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -O3 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-declaration-after-statement
SHLIB_LINK = -lzstd -lxxhash -lcrypto -lcjson -lsnappy -lpthread
EXTRA_CLEAN = build bin sparse.so

ifneq ($(wildcard /usr/lib/postgresql/15/bin/pg_config),)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
else
PG_CONFIG ?= pg_config
endif
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all:
	@echo "PostgreSQL server headers are missing: run 'make deps' first" >&2; exit 1
endif

# ---- everything outside PostgreSQL ---------------------------------------
CC ?= cc
SP_CFLAGS = -std=gnu11 -O3 -g -fPIC -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-parameter -Icommon -DSPARSE_VERSION='"$(EXTVERSION)"'
SP_LIBS = -lzstd -lxxhash -lcrypto -lcjson -lsnappy -lpthread -lm
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# ThreadSanitizer: the core's helper threads (coding pool, hash writer, base
# hasher, delta stage writer, detached closes) against the caller's thread
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
CORE_HDRS = $(wildcard common/*.h)

# PGXS objects do not track headers: rebuild them when a header changes.
$(OBJS): $(CORE_HDRS) $(wildcard pg/*.h)

build/core/%.o: common/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) -c $< -o $@
build/san/%.o: common/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) $(SAN_FLAGS) -c $< -o $@
build/tsan/%.o: common/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) $(TSAN_FLAGS) -c $< -o $@
# The context model's coder is one thread's pure computation on buffers
# handed over under the pool's lock (instrumented): left uninstrumented, it
# makes the TSan build about as fast as before it existed (every probability
# update was a tracked access); ASan+UBSan and the fuzzers still check it.
build/tsan/tensorcm.o: common/tensorcm.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) -c $< -o $@

CORE_OBJS = $(patsubst common/%.c,build/core/%.o,$(CORE_SRCS))
SAN_OBJS = $(patsubst common/%.c,build/san/%.o,$(CORE_SRCS))
TSAN_OBJS = $(patsubst common/%.c,build/tsan/%.o,$(CORE_SRCS))

all: sparse.so bin/sparse

# SQLite loadable extension: ".load ./sparse" finds sqlite3_sparse_init.
SQLITE_SRCS = $(sort $(wildcard sqlite/*.c))
sparse.so: $(CORE_OBJS) $(SQLITE_SRCS) $(wildcard sqlite/*.h) $(CORE_HDRS)
	$(CC) $(SP_CFLAGS) -shared -o $@ $(SQLITE_SRCS) $(CORE_OBJS) $(SP_LIBS)

# The CLI talks to hub databases (worker, migrate, report) through libpq.
PQ_INC = $(shell $(PG_CONFIG) --includedir 2>/dev/null)
bin/sparse: $(CORE_OBJS) $(wildcard cli/*.c cli/*.h) $(CORE_HDRS)
	@mkdir -p bin
	$(CC) $(SP_CFLAGS) -I$(PQ_INC) -o $@ $(sort $(wildcard cli/*.c)) $(CORE_OBJS) $(SP_LIBS) -lpq

build/unit_tests: $(CORE_OBJS) $(wildcard test/unit/*.c test/unit/*.h)
	$(CC) $(SP_CFLAGS) -Itest/unit -o $@ $(wildcard test/unit/*.c) $(CORE_OBJS) $(SP_LIBS)

build/unit_tests_san: $(SAN_OBJS) $(wildcard test/unit/*.c test/unit/*.h)
	$(CC) $(SP_CFLAGS) $(SAN_FLAGS) -Itest/unit -o $@ $(wildcard test/unit/*.c) $(SAN_OBJS) $(SP_LIBS)

build/unit_tests_tsan: $(TSAN_OBJS) $(wildcard test/unit/*.c test/unit/*.h)
	$(CC) $(SP_CFLAGS) $(TSAN_FLAGS) -Itest/unit -o $@ $(wildcard test/unit/*.c) $(TSAN_OBJS) $(SP_LIBS)

# libFuzzer targets (clang): one per parser/decoder in fuzz/.
FUZZ_SRCS = $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS = $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
build/fuzz/%: fuzz/%.c $(wildcard fuzz/*.h) $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -g -O1 -Icommon -DSPARSE_VERSION='"$(EXTVERSION)"' \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ $< $(CORE_SRCS) $(SP_LIBS)

.PHONY: demo-test hub-test route-eval bench-route pg-fixtures deps unit unit-san unit-tsan sqlite-test cli-test pg-test fuzz fuzz-build test test-all demo bench bench-datasets bench-scale install-cli

deps:
	@bash scripts/deps.sh

unit: build/unit_tests
	SPARSE_DATA=$(DATA_DIR) ./build/unit_tests

unit-san: build/unit_tests_san
	SPARSE_DATA=$(DATA_DIR) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build/unit_tests_san

# Every unit test under ThreadSanitizer but the 300 MB one (a minute there,
# and its memory bound means nothing under TSan's shadow memory).  A data
# race is reported in the log (scripts/test-all.sh fails the layer on it)
# and makes the run exit 66.  TESTS=substring runs only the matching tests.
unit-tsan: build/unit_tests_tsan
	SPARSE_DATA=$(DATA_DIR) SPARSE_SKIP_BIG=1 TSAN_OPTIONS="exitcode=66 second_deadlock_stack=1" \
		./build/unit_tests_tsan $(TESTS)

sqlite-test: sparse.so
	SPARSE_DATA=$(DATA_DIR) bash test/sqlite/run.sh

cli-test: bin/sparse
	SPARSE_DATA=$(DATA_DIR) bash test/cli/run.sh

# Files the pg_regress tests read and write (under /tmp/sparse_regress).
demo-test: deps
	@$(MAKE) --no-print-directory sparse.so bin/sparse
	@SPARSE_DATA=$(DATA_DIR) bash test/demo/run.sh

hub-test:
	@$(MAKE) --no-print-directory sparse_pg.so bin/sparse
	@SPARSE_DATA=$(DATA_DIR) bash test/hub/run.sh

pg-fixtures:
	@SPARSE_DATA=$(DATA_DIR) bash scripts/pg-fixtures.sh

# pg_regress in a throwaway cluster (pg_virtualenv from postgresql-common).
pg-test:
	SPARSE_DATA=$(DATA_DIR) bash scripts/pg-test.sh

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# The README's test command: installs what is missing, then runs every layer.
test: deps
	@$(MAKE) --no-print-directory test-all

test-all:
	@bash scripts/test-all.sh

demo: deps
	@$(MAKE) --no-print-directory sparse.so bin/sparse
	@SPARSE_DATA=$(DATA_DIR) bash scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory bin/sparse
	@SPARSE_DATA=$(DATA_DIR) bash bench/run.sh

bench-datasets: deps
	@$(MAKE) --no-print-directory bin/sparse
	@SPARSE_DATA=$(DATA_DIR) BENCH_SECTIONS=datasets bash bench/run.sh

# Generated 7B-shaped pairs of 0.5, 2 and 8 GB (BENCH_SCALE_GB) next to zstd --patch-from.
bench-scale: deps
	@$(MAKE) --no-print-directory bin/sparse
	@SPARSE_DATA=$(DATA_DIR) BENCH_SECTIONS=scale bash bench/run.sh

# Routing evaluation on the RouteLLM labels (APGR table and SVG under build/route-eval).
route-eval: deps
	@$(MAKE) --no-print-directory sparse.so
	@SPARSE_DATA=$(DATA_DIR) bash bench/route_eval.sh

# Routing speed: microseconds per call in C, and pgbench against SELECT 1.
bench-route: deps
	@$(MAKE) --no-print-directory sparse.so bin/sparse build/route_bench
	@SPARSE_DATA=$(DATA_DIR) bash bench/route_bench.sh

build/route_bench: bench/route_bench.c $(CORE_OBJS) $(CORE_HDRS)
	@mkdir -p build
	$(CC) $(SP_CFLAGS) -o $@ bench/route_bench.c $(CORE_OBJS) $(SP_LIBS)

install-cli: bin/sparse
	install -D -m 755 bin/sparse $(DESTDIR)/usr/local/bin/sparse
