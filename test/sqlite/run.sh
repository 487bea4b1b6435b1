#!/usr/bin/env bash
# run.sh -- tests of the SQLite extension (./sparse.so) through the real
# sqlite3 shell.
#
#   make sqlite-test            (sets SPARSE_DATA, builds sparse.so first)
#   SPARSE_DATA=../shared/data bash test/sqlite/run.sh
#
# Every statement runs in a fresh "sqlite3 -batch -bail" that first does
# ".load ./sparse" (the script cd's to the repository root; SPARSE_EXT
# names another build, e.g. one with sanitizers).  Each check
# prints "ok N - what" or "not ok N - what" (with "# got/want" lines), the
# last line is "N passed, N failed", and the exit status is 1 if any failed.
#
# Covered: round trip of every real model pair in $SPARSE_DATA/models
# (sha256 from delta_apply = sha256sum, cmp, verify, info, estimate within 3
# points of the real savings, the in-memory scalars under both names); the
# scalars delta_compress/delta_apply next to the table-valued functions of
# the same names; a model directory; every error with its exact message and
# SQLite result code (malformed safetensors headers crafted with python3, a
# delta of an unknown format version); NULL arguments;
# DIRECTONLY (views and triggers cannot call the file functions) and
# INNOCUOUS/DETERMINISTIC on the blob functions; SPARSE_ROOT confinement;
# errors leave the surrounding transaction usable; sqlite3_interrupt (the
# shell calls it on SIGINT) stops a long call.  Dataset deltas: the
# synthetic pairs of scripts/dataset-fixtures.sh (CSV, JSONL, 2 -> 3 shards,
# a malformed CSV) through dataset_delta_estimate / dataset_delta_compress
# and back through delta_apply (sha256sum of the rebuilt file = that of the
# derived one), their argument errors, DIRECTONLY and SPARSE_ROOT.  Hub
# storage: test/sqlite/store.sh; smart routing: test/sqlite/route.sh, both
# sourced at the end.  All files go to a temporary
# directory under build/, removed on exit.
set -u

cd "$(dirname "$0")/../.." || exit 1
: "${SPARSE_DATA:?set SPARSE_DATA to the shared test data directory}"
# The core reports paths after resolving symbolic links, so expected
# messages must name the canonical path (SPARSE_DATA may be a symlink).
SPARSE_DATA=$(realpath "$SPARSE_DATA") || exit 1
MODELS=$SPARSE_DATA/models
VERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" sparse.control)

EXT=${SPARSE_EXT:-./sparse}
if [ ! -f "$EXT.so" ]; then
	echo "$EXT.so is missing: run make sparse.so" >&2
	exit 1
fi
mkdir -p build
T=$(mktemp -d "$PWD/build/sqlite-test.XXXXXX") || exit 1
T=$(cd -P "$T" && pwd)
trap 'rm -rf "$T"' EXIT

n=0
passed=0
failed=0

# Report a passing check.
ok() {
	n=$((n + 1)); passed=$((passed + 1))
	echo "ok $n - $1"
}

# Report a failing check, with what we got and wanted.
not_ok() {
	n=$((n + 1)); failed=$((failed + 1))
	echo "not ok $n - $1"
	[ $# -ge 2 ] && printf '#   got:  %s\n' "$2"
	[ $# -ge 3 ] && printf '#   want: %s\n' "$3"
	return 0
}

# is DESC GOT WANT: pass if the two strings are equal.
is() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "$2" "$3"; fi
}

# check DESC CMD...: pass if the command succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc" "command failed: $*"; fi
}

# Quote a string as an SQL literal.
q() {
	printf "'%s'" "${1//\'/\'\'}"
}

# Run SQL (stdin of the shell) after loading the extension; stdout+stderr.
sql() {
	printf '.load %s\n%s\n' "$EXT" "$1" | sqlite3 -batch -bail 2>&1
}

# The error of SQL, without the shell's "Runtime error near line N: ".
sql_error() {
	sql "$1" | sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p' | tail -n 1
}

# expect_error DESC SQL WANT: the SQL fails with exactly this message.
expect_error() {
	is "$1" "$(sql_error "$2")" "$3"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# abs_le A B LIMIT: |A - B| <= LIMIT (decimals).
abs_le() {
	awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= l) }'
}

# le64 N: N as 8 little-endian bytes (the safetensors length prefix).
le64() {
	local v=$1 i
	for i in 0 1 2 3 4 5 6 7; do
		printf "\\$(printf '%03o' $((v & 255)))"
		v=$((v >> 8))
	done
}
# mk_raw OUT HEADER NBYTES: a safetensors-like file: HEADER (any text, padded
# with spaces to a multiple of 8) after its length prefix, then NBYTES zeros.
mk_raw() {
	python3 -c 'import struct, sys
h = sys.argv[2].encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(int(sys.argv[3])))' "$@"
}
# mk_st OUT DATA: a safetensors file holding DATA as one F32 tensor.
mk_st() {
	local len hdr
	len=$(size "$2")
	hdr="{\"w\":{\"dtype\":\"F32\",\"shape\":[$((len / 4))],\"data_offsets\":[0,$len]}}"
	while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
	{ le64 ${#hdr}; printf '%s' "$hdr"; cat "$2"; } > "$1"
}

# ---- basics ---------------------------------------------------------------

is "sparse_version() is the version in sparse.control" "$(sql "SELECT sparse_version();")" "$VERSION"
is "the scalar functions (name/arguments) and the five modules are registered" \
	"$(sql "SELECT group_concat(f, ' ') FROM (SELECT name || '/' || narg AS f FROM pragma_function_list
  WHERE name = 'sparse_version' OR name LIKE 'delta%' ORDER BY name, narg);
SELECT group_concat(name, ' ') FROM (SELECT name FROM pragma_module_list WHERE name LIKE 'delta%' ORDER BY name);")" \
	"$(printf '%s\n%s' 'delta_apply/2 delta_apply_blob/2 delta_compress/2 delta_compress/3 delta_compress_blob/2 delta_compress_blob/3 sparse_version/0' \
		'delta_apply delta_compress delta_estimate delta_info delta_verify')"

# ---- round trip of every real pair ----------------------------------------

# roundtrip LABEL BASE FT: compress, apply, verify, info, estimate, blobs.
roundtrip() {
	local label=$1 base=$2 ft=$3 d=$T/rt-$4
	local delta=$d.delta out=$d.out want_sha got est real
	want_sha=$(sha "$ft")

	got=$(sql "SELECT ft_sha256 || ' ' || base_sha256 || ' ' || delta_bytes || ' ' || delta_path
FROM delta_compress($(q "$base"), $(q "$ft"), $(q "$delta"));")
	is "$label: delta_compress reports both SHA-256, the delta size and path" \
		"$got" "$want_sha $(sha "$base") $(size "$delta" 2>/dev/null) $delta"

	got=$(sql "SELECT sha256 || ' ' || verified || ' ' || bytes || ' ' || out_path
FROM delta_apply($(q "$base"), $(q "$delta"), $(q "$out"));")
	is "$label: delta_apply sha256 equals sha256sum of ft, verified" \
		"$got" "$want_sha 1 $(size "$ft") $out"
	check "$label: rebuilt file is identical to ft (cmp)" cmp -s "$out" "$ft"

	got=$(sql "SELECT sha256 || ' ' || verified || ' ' || bytes || ' ' || (out_path IS NULL)
FROM delta_verify($(q "$base"), $(q "$delta"));")
	is "$label: delta_verify checks every digest, out_path NULL" \
		"$got" "$want_sha 1 $(size "$ft") 1"

	got=$(sql "SELECT count(*), name, bytes, sha256, method IN ('tensor-delta','zstd-ref','zstd','copy'),
	delta_bytes > 0 AND delta_bytes <= $(size "$delta") FROM delta_info($(q "$delta"));")
	is "$label: delta_info lists the file, its size, SHA-256 and method" \
		"$got" "1|$(basename "$ft")|$(size "$ft")|$want_sha|1|1"

	est=$(sql "SELECT printf('%.3f', savings_pct) FROM delta_estimate($(q "$base"), $(q "$ft"));")
	real=$(sql "SELECT printf('%.3f', savings_pct) FROM delta_compress($(q "$base"), $(q "$ft"), $(q "$d.2.delta"));")
	if abs_le "$est" "$real" 3; then ok "$label: estimate $est% within 3 points of real savings $real%"
	else not_ok "$label: estimate within 3 points of real savings" "estimate $est, real $real" "|difference| <= 3"; fi

	got=$(sql "SELECT delta_apply_blob(readfile($(q "$base")),
	delta_compress_blob(readfile($(q "$base")), readfile($(q "$ft")), 19)) = readfile($(q "$ft"));")
	is "$label: delta_apply_blob(delta_compress_blob()) gives ft back" "$got" "1"

	got=$(sql "SELECT delta_apply_blob(readfile($(q "$base")), readfile($(q "$delta"))) = readfile($(q "$ft"));")
	is "$label: delta_apply_blob reads a delta file made by delta_compress" "$got" "1"

	got=$(sql "SELECT delta_apply(readfile($(q "$base")), readfile($(q "$delta"))) = readfile($(q "$ft"));")
	is "$label: the scalar delta_apply reads a delta file made by the table delta_compress" "$got" "1"
}

roundtrip "gpt2-lora-r8" "$MODELS/gpt2-lora-r8/base.safetensors" "$MODELS/gpt2-lora-r8/ft.safetensors" gpt2
roundtrip "roberta-lora-r4-biasall" "$MODELS/roberta-lora-r4-biasall/base.safetensors" \
	"$MODELS/roberta-lora-r4-biasall/ft.safetensors" roberta
for dt in f32 bf16; do
	for ft in ft ft_frozen; do
		roundtrip "mlp-trained $ft.$dt" "$MODELS/mlp-trained/base.$dt.safetensors" \
			"$MODELS/mlp-trained/$ft.$dt.safetensors" "mlp-$ft-$dt"
	done
done

# ---- a model directory ----------------------------------------------------

mkdir -p "$T/dir/base" "$T/dir/ft"
cp "$MODELS/gpt2-lora-r8/base.safetensors" "$T/dir/base/adapter_model.safetensors"
cp "$MODELS/gpt2-lora-r8/ft.safetensors" "$T/dir/ft/adapter_model.safetensors"
cp "$MODELS/gpt2-lora-r8/adapter_config.json" "$T/dir/base/"
sed 's/"r": 8/"r": 8, "note": "fine-tuned"/' "$MODELS/gpt2-lora-r8/adapter_config.json" > "$T/dir/ft/adapter_config.json"
got=$(sql "SELECT c.ft_sha256 = a.sha256, a.verified, (SELECT count(*) FROM delta_info($(q "$T/dir.delta")))
FROM delta_compress($(q "$T/dir/base"), $(q "$T/dir/ft"), $(q "$T/dir.delta")) AS c,
     delta_apply($(q "$T/dir/base"), $(q "$T/dir.delta"), $(q "$T/dir/out")) AS a;")
is "directory: compress then apply in one query, manifest digests agree, two files" "$got" "1|1|2"
check "directory: rebuilt directory is identical (diff -r)" diff -r "$T/dir/ft" "$T/dir/out"

# ---- scalars named as in PostgreSQL, beside the tables of the same names ----

G=$MODELS/gpt2-lora-r8
GB=$(q "$G/base.safetensors")
GF=$(q "$G/ft.safetensors")
got=$(sql "SELECT length(delta_compress(readfile($GB), readfile($GF))) > 0,
	length(delta_compress(readfile($GB), readfile($GF))) = length(delta_compress_blob(readfile($GB), readfile($GF))),
	delta_compress(readfile($GB), readfile($GF), 19) = delta_compress_blob(readfile($GB), readfile($GF), 19);")
is "scalar delta_compress(base, ft[, level]) in an expression: the same delta as delta_compress_blob" "$got" "1|1|1"
# Write the scalar's delta out, check it with the file functions, rebuild
# with the scalar delta_apply and compare digests with sha256sum.
got=$(sql "SELECT writefile($(q "$T/scalar.delta"), delta_compress(readfile($GB), readfile($GF), 19)) > 0;
SELECT sha256, verified FROM delta_verify($GB, $(q "$T/scalar.delta"));
SELECT writefile($(q "$T/scalar.out"), delta_apply(readfile($GB), readfile($(q "$T/scalar.delta")))) > 0;")
is "scalar delta_compress writes a delta that delta_verify (table) accepts" \
	"$got" "$(printf '1\n%s|1\n1' "$(sha "$G/ft.safetensors")")"
is "round trip through the scalar delta_apply: sha256 of the result = sha256 of ft" \
	"$(sha "$T/scalar.out" 2>/dev/null)" "$(sha "$G/ft.safetensors")"
got=$(sql "SELECT delta_path, ft_sha256, delta_bytes > 0 FROM delta_compress($GB, $GF, $(q "$T/from.delta"), 19);")
is "delta_compress in FROM is still the file function (writes the delta, reports its columns)" \
	"$got" "$T/from.delta|$(sha "$G/ft.safetensors")|1"
check "delta_compress in FROM created its output" test -s "$T/from.delta"
got=$(sql "SELECT a.sha256 = c.ft_sha256, a.out_path, length(delta_apply(readfile($GB), delta_compress(readfile($GB), readfile($GF)))) = a.bytes
FROM delta_compress($GB, $GF, $(q "$T/mixed.delta")) AS c, delta_apply($GB, $(q "$T/mixed.delta"), $(q "$T/mixed.out")) AS a;")
is "one query uses the tables in FROM and the scalars of the same names in SELECT" "$got" "1|$T/mixed.out|1"
expect_error "scalar delta_compress: a bad level names the function called" \
	"SELECT delta_compress(readfile($GB), readfile($GF), 'max');" \
	"argument \"level\" of delta_compress() must be an integer"
expect_error "scalar delta_compress_blob: a bad level names the alias" \
	"SELECT delta_compress_blob(readfile($GB), readfile($GF), 'max');" \
	"argument \"level\" of delta_compress_blob() must be an integer"
expect_error "scalar delta_apply with the table's three arguments is refused by SQLite" \
	"SELECT delta_apply($GB, $(q "$T/from.delta"), $(q "$T/never.out"));" \
	"wrong number of arguments to function delta_apply()"
check "the refused call wrote nothing" test ! -e "$T/never.out"
expect_error "table delta_apply with the scalar's two arguments: the output argument is missing" \
	"SELECT * FROM delta_apply($GB, $(q "$T/from.delta"));" \
	"missing argument \"out\" of delta_apply()"

# ---- SQL shape: joins, hidden columns, NULL ---------------------------------

got=$(sql "CREATE TABLE pairs(name, base, ft);
INSERT INTO pairs VALUES ('gpt2', $(q "$G/base.safetensors"), $(q "$G/ft.safetensors")),
  ('roberta', $(q "$MODELS/roberta-lora-r4-biasall/base.safetensors"), $(q "$MODELS/roberta-lora-r4-biasall/ft.safetensors"));
SELECT p.name, e.tensors_total FROM pairs AS p, delta_estimate(p.base, p.ft) AS e ORDER BY p.name;")
is "delta_estimate takes its arguments from a joined table" "$got" "$(printf 'gpt2|24\nroberta|177')"
is "argument columns read back as given" \
	"$(sql "SELECT base = $(q "$G/base.safetensors"), sample_fraction FROM delta_estimate($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), 0.5);")" \
	"1|0.5"
is "a NULL argument gives one row of NULLs (STRICT, as in PostgreSQL)" \
	"$(sql "SELECT count(*), count(savings_pct) FROM delta_estimate(NULL, $(q "$G/ft.safetensors"));")" "1|0"
is "delta_info(NULL) gives no row" "$(sql "SELECT count(*) FROM delta_info(NULL);")" "0"
is "blob functions return NULL for NULL" \
	"$(sql "SELECT delta_apply_blob(NULL, x'00') IS NULL, delta_compress_blob(x'00', NULL) IS NULL, delta_compress_blob(x'00', x'00', NULL) IS NULL;")" "1|1|1"
is "the scalars delta_apply and delta_compress return NULL for NULL" \
	"$(sql "SELECT delta_apply(NULL, x'00') IS NULL, delta_compress(x'00', NULL) IS NULL, delta_compress(x'00', x'00', NULL) IS NULL;")" "1|1|1"
is "delta_info accepts a BLOB holding the delta" \
	"$(sql "SELECT name, method FROM delta_info(readfile($(q "$T/rt-gpt2.delta")));")" "ft.safetensors|tensor-delta"

# ---- errors, with their exact messages --------------------------------------

printf 'short' > "$T/short.safetensors"
printf '\004\000\000\000\000\000\000\000abcd' > "$T/nobrace.safetensors"
printf 'hello world, not a model at all' > "$T/text.safetensors"
head -c 1000 "$T/rt-gpt2.delta" > "$T/trunc.delta"
cp "$T/rt-gpt2.delta" "$T/corrupt.delta"
printf '\377\377\377\377' | dd of="$T/corrupt.delta" bs=1 seek=500000 conv=notrunc status=none
R=$MODELS/roberta-lora-r4-biasall/base.safetensors

expect_error "missing file" \
	"SELECT * FROM delta_estimate($(q "$T/missing.safetensors"), $(q "$G/ft.safetensors"));" \
	"could not open \"$T/missing.safetensors\": No such file or directory (14)"
expect_error "not safetensors: too short" \
	"SELECT * FROM delta_estimate($(q "$G/base.safetensors"), $(q "$T/short.safetensors"));" \
	"\"$T/short.safetensors\" is not a safetensors file: it is too short (11)"
expect_error "not safetensors: header does not start with '{'" \
	"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$T/nobrace.safetensors"), $(q "$T/x.delta"));" \
	"\"$T/nobrace.safetensors\" is not a safetensors file: its header does not start with '{' (11)"
expect_error "not safetensors: header length larger than the file" \
	"SELECT * FROM delta_estimate($(q "$G/base.safetensors"), $(q "$T/text.safetensors"));" \
	"safetensors header length 8031924123371070824 in \"$T/text.safetensors\" is larger than the file (31 bytes) (11)"
expect_error "output exists" \
	"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/rt-gpt2.delta"));" \
	"output \"$T/rt-gpt2.delta\" already exists (14)"
expect_error "apply: output exists" \
	"SELECT * FROM delta_apply($(q "$G/base.safetensors"), $(q "$T/rt-gpt2.delta"), $(q "$T/rt-gpt2.out"));" \
	"output \"$T/rt-gpt2.out\" already exists (14)"
expect_error "output directory missing" \
	"SELECT * FROM delta_apply($(q "$G/base.safetensors"), $(q "$T/rt-gpt2.delta"), $(q "$T/nodir/x.out"));" \
	"could not open directory of output \"$T/nodir/x.out\": No such file or directory (14)"
expect_error "empty output path" \
	"SELECT * FROM delta_apply($(q "$G/base.safetensors"), $(q "$T/rt-gpt2.delta"), '');" \
	"output path must not be empty"
WRONG="wrong base: \"$R\" has 3698480 bytes, the delta was made against 1182680 bytes (sha256 $(sha "$G/base.safetensors")) (19)"
expect_error "apply: wrong base" \
	"SELECT * FROM delta_apply($(q "$R"), $(q "$T/rt-gpt2.delta"), $(q "$T/wrong.out"));" "$WRONG"
expect_error "verify: wrong base" \
	"SELECT * FROM delta_verify($(q "$R"), $(q "$T/rt-gpt2.delta"));" "$WRONG"
CORRUPT="delta \"$T/corrupt.delta\" is corrupted: checksum mismatch in record at byte 496525 (11)"
expect_error "verify: corrupted delta" \
	"SELECT * FROM delta_verify($(q "$G/base.safetensors"), $(q "$T/corrupt.delta"));" "$CORRUPT"
expect_error "apply: corrupted delta" \
	"SELECT * FROM delta_apply($(q "$G/base.safetensors"), $(q "$T/corrupt.delta"), $(q "$T/corrupt.out"));" "$CORRUPT"
check "apply: a corrupted delta leaves no output or temporary file" \
	test -z "$(ls -A "$T" | grep corrupt.out)"
expect_error "verify: truncated delta" \
	"SELECT * FROM delta_verify($(q "$G/base.safetensors"), $(q "$T/trunc.delta"));" \
	"delta \"$T/trunc.delta\" is truncated at byte 1000 (11)"
expect_error "info: truncated delta" \
	"SELECT * FROM delta_info($(q "$T/trunc.delta"));" \
	"delta \"$T/trunc.delta\" is truncated at byte 1000 (11)"
expect_error "info: not a delta" \
	"SELECT * FROM delta_info($(q "$G/base.safetensors"));" \
	"\"$G/base.safetensors\" is not a sparse delta: bad magic (11)"
expect_error "info: a directory is not a delta" \
	"SELECT * FROM delta_verify($(q "$G/base.safetensors"), $(q "$T/dir"));" \
	"\"$T/dir\" is a directory, not a sparse delta (11)"
for level in 0 20 -1; do
	expect_error "bad level $level" \
		"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/l.delta"), $level);" \
		"compression level $level is out of range (1 to 19)"
done
expect_error "bad level: beyond int" \
	"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/l.delta"), 99999999999);" \
	"compression level 99999999999 is out of range (1 to 19)"
expect_error "bad level: not an integer" \
	"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/l.delta"), 2.5);" \
	"argument \"level\" of delta_compress() must be an integer"
expect_error "bad level: text" \
	"SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/l.delta"), 'max');" \
	"argument \"level\" of delta_compress() must be an integer"
check "bad levels create no file" test ! -e "$T/l.delta"
expect_error "bad sample fraction 0" \
	"SELECT * FROM delta_estimate($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), 0);" \
	"sample fraction 0 is out of range (greater than 0, at most 1)"
expect_error "bad sample fraction 1.5" \
	"SELECT * FROM delta_estimate($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), 1.5);" \
	"sample fraction 1.5 is out of range (greater than 0, at most 1)"
expect_error "bad sample fraction: text" \
	"SELECT * FROM delta_estimate($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), 'all');" \
	"argument \"sample_fraction\" of delta_estimate() must be a number"
expect_error "a path must be text, not a blob" \
	"SELECT * FROM delta_verify(readfile($(q "$G/base.safetensors")), $(q "$T/rt-gpt2.delta"));" \
	"argument \"base\" of delta_verify() must be a path (text), not a blob"
expect_error "missing argument" \
	"SELECT * FROM delta_apply($(q "$G/base.safetensors"), $(q "$T/rt-gpt2.delta"));" \
	"missing argument \"out\" of delta_apply()"
expect_error "too many arguments (SQLite's own check)" \
	"SELECT * FROM delta_verify('a', 'b', 'c');" \
	"too many arguments on delta_verify() - max 2"
expect_error "eponymous only: CREATE VIRTUAL TABLE is refused" \
	"CREATE VIRTUAL TABLE t USING delta_info;" "no such module: delta_info"
expect_error "blob: not safetensors" \
	"SELECT delta_compress_blob(x'00', x'00');" \
	"\"base.safetensors\" is not a safetensors file: it is too short (11)"
expect_error "blob: bad level" \
	"SELECT delta_compress_blob(readfile($(q "$G/base.safetensors")), readfile($(q "$G/ft.safetensors")), 42);" \
	"compression level 42 is out of range (1 to 19)"
expect_error "blob: not a delta" \
	"SELECT delta_apply_blob(readfile($(q "$G/base.safetensors")), x'0011223344556677');" \
	"\"delta\" is not a sparse delta: it is too short (11)"
expect_error "blob: wrong base" \
	"SELECT delta_apply_blob(readfile($(q "$R")), readfile($(q "$T/rt-gpt2.delta")));" \
	"wrong base: \"base.safetensors\" has 3698480 bytes, the delta was made against 1182680 bytes (sha256 $(sha "$G/base.safetensors")) (19)"

# Malformed safetensors headers (each after a valid length prefix and '{'),
# as the file functions and the in-memory scalar (which names its fine-tune
# "model.safetensors") report them.
mk_raw "$T/badjson.safetensors" '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}' 8
mk_raw "$T/dtype.safetensors" '{"w":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}' 8
mk_raw "$T/offsets.safetensors" '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
mk_raw "$T/shape.safetensors" '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8
# bad_header NAME MESSAGE: MESSAGE has %s where the file name goes.
bad_header() {
	local f=$T/$1.safetensors msg=$2
	expect_error "$1: delta_estimate" \
		"SELECT * FROM delta_estimate($GB, $(q "$f"));" "$(printf "$msg" "$f") (11)"
	expect_error "$1: delta_compress (table) as the base" \
		"SELECT * FROM delta_compress($(q "$f"), $GF, $(q "$T/$1.delta"));" "$(printf "$msg" "$f") (11)"
	check "$1: delta_compress (table) created no output" test ! -e "$T/$1.delta"
	expect_error "$1: delta_compress (scalar)" \
		"SELECT delta_compress(readfile($GB), readfile($(q "$f")));" "$(printf "$msg" model.safetensors) (11)"
}
bad_header badjson 'invalid safetensors header in "%s": not a JSON object'
bad_header dtype 'unknown dtype "F128" for tensor "w" in "%s"'
bad_header offsets 'data_offsets of tensor "w" in "%s" point past the end of the file'
bad_header shape 'tensor "w" in "%s" has 8 bytes but its shape and dtype need 12'

# A valid delta whose u16 format version (byte offset 8) says 2.
cp "$T/rt-gpt2.delta" "$T/v2.delta"
printf '\002\000' | dd of="$T/v2.delta" bs=1 seek=8 conv=notrunc status=none
V2="delta \"$T/v2.delta\" has format version 2; this build reads version 1 (11)"
expect_error "unsupported version: delta_verify" \
	"SELECT * FROM delta_verify($GB, $(q "$T/v2.delta"));" "$V2"
expect_error "unsupported version: delta_apply (table)" \
	"SELECT * FROM delta_apply($GB, $(q "$T/v2.delta"), $(q "$T/v2.out"));" "$V2"
check "unsupported version: delta_apply created no output" test ! -e "$T/v2.out"
expect_error "unsupported version: delta_info" \
	"SELECT * FROM delta_info($(q "$T/v2.delta"));" "$V2"
expect_error "unsupported version: delta_info on a BLOB" \
	"SELECT * FROM delta_info(readfile($(q "$T/v2.delta")));" \
	"delta \"delta\" has format version 2; this build reads version 1 (11)"
expect_error "unsupported version: delta_apply (scalar)" \
	"SELECT delta_apply(readfile($GB), readfile($(q "$T/v2.delta")));" \
	"delta \"delta\" has format version 2; this build reads version 1 (11)"

# A 64-byte base and a 1 MiB fine-tune of zeros: small inputs, big result.
head -c 64 /dev/zero > "$T/zeros64"
head -c 1048576 /dev/zero > "$T/zeros1m"
mk_st "$T/small_base.safetensors" "$T/zeros64"
mk_st "$T/zero_ft.safetensors" "$T/zeros1m"
expect_error "blob: result larger than SQLITE_LIMIT_LENGTH" \
	"CREATE TABLE m AS SELECT readfile($(q "$T/small_base.safetensors")) AS b,
	delta_compress_blob(readfile($(q "$T/small_base.safetensors")), readfile($(q "$T/zero_ft.safetensors"))) AS d;
.limit length 100000
SELECT length(b) < 100000, length(d) < 100000 FROM m;
SELECT delta_apply_blob(b, d) FROM m;" \
	"result would exceed the size limit of 100000 bytes (18)"

# An error about an input file must not spoil the caller's transaction
# (plain SQLITE_CORRUPT would make SQLite refuse further writes in it).
got=$(printf '.load %s\nCREATE TABLE t(x);\nBEGIN;\nINSERT INTO t VALUES (1);\nSELECT * FROM delta_verify(%s, %s);\nINSERT INTO t VALUES (2);\nCOMMIT;\nSELECT count(*) FROM t;\n' \
	"$EXT" "$(q "$G/base.safetensors")" "$(q "$T/corrupt.delta")" | sqlite3 -batch 2>/dev/null)
is "a corrupted delta does not spoil the open transaction" "$got" "2"

# ---- security: DIRECTONLY, INNOCUOUS, DETERMINISTIC --------------------------

expect_error "a view cannot call delta_estimate (DIRECTONLY)" \
	"CREATE VIEW v AS SELECT savings_pct FROM delta_estimate($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"));
SELECT * FROM v;" \
	"unsafe use of virtual table \"delta_estimate\""
expect_error "a trigger cannot call delta_compress (DIRECTONLY)" \
	"CREATE TABLE t(x);
CREATE TRIGGER tr AFTER INSERT ON t BEGIN
  SELECT * FROM delta_compress($(q "$G/base.safetensors"), $(q "$G/ft.safetensors"), $(q "$T/trigger.delta"));
END;
INSERT INTO t VALUES (1);" \
	"unsafe use of virtual table \"delta_compress\""
check "the trigger wrote nothing" test ! -e "$T/trigger.delta"
# A database file from elsewhere, with a view that would read a file.
sqlite3 "$T/hostile.db" "CREATE VIEW innocent AS SELECT name FROM delta_info('/etc/passwd');"
got=$(printf '.load %s\nSELECT * FROM innocent;\n' "$EXT" | sqlite3 -batch -bail "$T/hostile.db" 2>&1 |
	sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p')
is "a view in an untrusted database file cannot call delta_info" "$got" "unsafe use of virtual table \"delta_info\""
is "blob functions and sparse_version work in views even with trusted_schema=OFF (INNOCUOUS)" \
	"$(sql "PRAGMA trusted_schema = OFF;
CREATE TABLE m(b BLOB, f BLOB);
INSERT INTO m VALUES (readfile($(q "$G/base.safetensors")), readfile($(q "$G/ft.safetensors")));
CREATE VIEW v AS SELECT delta_apply_blob(b, delta_compress_blob(b, f)) = f AS same,
  delta_apply(b, delta_compress(b, f)) = f AS same2, sparse_version() AS v FROM m;
SELECT * FROM v;")" "1|1|$VERSION"
is "delta_apply_blob is DETERMINISTIC: allowed in a generated column" \
	"$(sql "CREATE TABLE m(b BLOB, d BLOB, f BLOB AS (delta_apply_blob(b, d)));
INSERT INTO m(b, d) VALUES (readfile($(q "$G/base.safetensors")), readfile($(q "$T/rt-gpt2.delta")));
SELECT f = readfile($(q "$G/ft.safetensors")) FROM m;")" "1"
expect_error "delta_compress_blob is not DETERMINISTIC (zstd output may change): refused in a generated column" \
	"CREATE TABLE m(b BLOB, f BLOB, d BLOB AS (delta_compress_blob(b, f)));" \
	"non-deterministic functions prohibited in generated columns"
is "the scalar delta_apply is DETERMINISTIC: allowed in a generated column" \
	"$(sql "CREATE TABLE m(b BLOB, d BLOB, f BLOB AS (delta_apply(b, d)));
INSERT INTO m(b, d) VALUES (readfile($GB), readfile($(q "$T/rt-gpt2.delta")));
SELECT f = readfile($GF) FROM m;")" "1"
expect_error "the scalar delta_compress is not DETERMINISTIC: refused in a generated column" \
	"CREATE TABLE m(b BLOB, f BLOB, d BLOB AS (delta_compress(b, f)));" \
	"non-deterministic functions prohibited in generated columns"

# ---- SPARSE_ROOT confinement ------------------------------------------------

ROOT=$T/root
mkdir -p "$ROOT"
cp "$G/base.safetensors" "$G/ft.safetensors" "$ROOT/"
ln -s "$G/ft.safetensors" "$ROOT/link.safetensors"
# sql with SPARSE_ROOT set (read once, when the extension loads).
rsql() { SPARSE_ROOT=$ROOT sql "$1"; }
rerror() { SPARSE_ROOT=$ROOT sql_error "$1"; }
is "SPARSE_ROOT: paths inside the root work" \
	"$(rsql "SELECT verified FROM delta_compress($(q "$ROOT/base.safetensors"), $(q "$ROOT/ft.safetensors"), $(q "$ROOT/ft.delta")) AS c,
	delta_verify($(q "$ROOT/base.safetensors"), $(q "$ROOT/ft.delta"));")" "1"
is "SPARSE_ROOT: an input outside the root is refused" \
	"$(rerror "SELECT * FROM delta_estimate($(q "$ROOT/base.safetensors"), $(q "$G/ft.safetensors"));")" \
	"path \"$G/ft.safetensors\" is outside the allowed root \"$ROOT\" (3)"
is "SPARSE_ROOT: .. cannot climb out" \
	"$(rerror "SELECT * FROM delta_info($(q "$ROOT/../rt-gpt2.delta"));")" \
	"path \"$ROOT/../rt-gpt2.delta\" is outside the allowed root \"$ROOT\" (3)"
is "SPARSE_ROOT: a symlink leading out is refused" \
	"$(rerror "SELECT * FROM delta_estimate($(q "$ROOT/base.safetensors"), $(q "$ROOT/link.safetensors"));")" \
	"path \"$ROOT/link.safetensors\" is outside the allowed root \"$ROOT\" (3)"
is "SPARSE_ROOT: an output outside the root is refused" \
	"$(rerror "SELECT * FROM delta_compress($(q "$ROOT/base.safetensors"), $(q "$ROOT/ft.safetensors"), $(q "$T/escape.delta"));")" \
	"path \"$T/escape.delta\" is outside the allowed root \"$ROOT\" (3)"
check "SPARSE_ROOT: nothing was written outside the root" test ! -e "$T/escape.delta"
is "SPARSE_ROOT: blob functions touch no file and still work" \
	"$(rsql "SELECT delta_apply_blob(b, delta_compress_blob(b, f)) = f FROM (SELECT readfile($(q "$ROOT/base.safetensors")) AS b, readfile($(q "$ROOT/ft.safetensors")) AS f);")" "1"
is "SPARSE_ROOT that is not a directory: the extension refuses to load" \
	"$(SPARSE_ROOT=$T/no-such-root sql "SELECT 1;")" \
	"Error: error during initialization: SPARSE_ROOT \"$T/no-such-root\" is not a directory"

# ---- dataset deltas -----------------------------------------------------------

# The synthetic pairs of scripts/dataset-fixtures.sh: CSV and JSONL with rows
# removed, edited and appended, 2 -> 3 CSV shards, a CSV whose unbalanced
# quote leaves it without rows.
DS=$T/ds
bash scripts/dataset-fixtures.sh "$DS" || exit 1
DB=$(q "$DS/csv/base.csv")
DD=$(q "$DS/csv/derived.csv")
is "the two dataset modules are registered" \
	"$(sql "SELECT group_concat(name, ' ') FROM (SELECT name FROM pragma_module_list WHERE name LIKE 'dataset%' ORDER BY name);")" \
	"dataset_delta_compress dataset_delta_estimate"

# ds_estimate LABEL BASE DERIVED BASE_BYTES DERIVED_BYTES FORMAT: the
# estimate's sizes and format; shared rows make it small.
ds_estimate() {
	local got
	got=$(sql "SELECT base_bytes, derived_bytes, format, rows_sampled > 0, rows_shared_pct > 80, savings_pct > 50,
	abs(savings_pct - 100 * (1 - est_delta_bytes * 1.0 / derived_bytes)) < 1e-9, elapsed_ms >= 0
FROM dataset_delta_estimate($(q "$2"), $(q "$3"));")
	is "$1: dataset_delta_estimate sizes, format, shared rows > 80%, savings > 50%" \
		"$got" "$4|$5|$6|1|1|1|1|1"
}
ds_estimate "csv" "$DS/csv/base.csv" "$DS/csv/derived.csv" "$(size "$DS/csv/base.csv")" "$(size "$DS/csv/derived.csv")" csv
ds_estimate "jsonl" "$DS/jsonl/base.jsonl" "$DS/jsonl/derived.jsonl" "$(size "$DS/jsonl/base.jsonl")" "$(size "$DS/jsonl/derived.jsonl")" jsonl
ds_estimate "shards" "$DS/shards/base" "$DS/shards/derived" \
	"$(cat "$DS"/shards/base/* | wc -c)" "$(cat "$DS"/shards/derived/* | wc -c)" csv
is "malformed csv: dataset_delta_estimate still answers" \
	"$(sql "SELECT derived_bytes, est_delta_bytes > 0 FROM dataset_delta_estimate($(q "$DS/malformed/base.csv"), $(q "$DS/malformed/derived.csv"));")" \
	"$(size "$DS/malformed/derived.csv")|1"
is "dataset_delta_estimate: a smaller sample_rows looks at fewer rows; arguments read back" \
	"$(sql "SELECT s.rows_sampled BETWEEN 1 AND d.rows_sampled - 1, s.sample_rows, s.derived = $DD
FROM dataset_delta_estimate($DB, $DD, 10) AS s, dataset_delta_estimate($DB, $DD) AS d;")" "1|10|1"
is "dataset_delta_estimate: a file against itself shares every row" \
	"$(sql "SELECT rows_shared_pct, savings_pct > 90 FROM dataset_delta_estimate($DD, $DD);")" "100.0|1"

# ds_roundtrip LABEL BASE DERIVED NAME ROWS_TOTAL ROWS_SHARED METHOD: compress,
# apply (sha256sum of the rebuilt file = that of the derived file), verify, info.
ds_roundtrip() {
	local label=$1 base=$2 derived=$3 d=$T/ds-$4 want_sha got
	want_sha=$(sha "$derived")
	got=$(sql "SELECT delta_path, ft_bytes, delta_bytes, ft_sha256, base_sha256, rows_total, rows_shared,
	abs(compression_ratio - ft_bytes * 1.0 / delta_bytes) < 1e-9 * compression_ratio, elapsed_ms >= 0
FROM dataset_delta_compress($(q "$base"), $(q "$derived"), $(q "$d.delta"));")
	is "$label: dataset_delta_compress reports path, sizes, both SHA-256 and row counts" "$got" \
		"$d.delta|$(size "$derived")|$(size "$d.delta" 2>/dev/null)|$want_sha|$(sha "$base")|$5|$6|1|1"
	got=$(sql "SELECT sha256 || ' ' || verified || ' ' || bytes || ' ' || out_path
FROM delta_apply($(q "$base"), $(q "$d.delta"), $(q "$d.out"));")
	is "$label: delta_apply rebuilds it, verified" "$got" "$want_sha 1 $(size "$derived") $d.out"
	is "$label: sha256sum of the rebuilt file = sha256sum of the derived file" \
		"$(sha "$d.out" 2>/dev/null)" "$want_sha"
	check "$label: rebuilt file is identical (cmp)" cmp -s "$d.out" "$derived"
	is "$label: delta_verify checks it in memory" \
		"$(sql "SELECT sha256, verified, out_path IS NULL FROM delta_verify($(q "$base"), $(q "$d.delta"));")" \
		"$want_sha|1|1"
	is "$label: delta_info lists the file and its method" \
		"$(sql "SELECT count(*), name, bytes, sha256, method FROM delta_info($(q "$d.delta"));")" \
		"1|$(basename "$derived")|$(size "$derived")|$want_sha|$7"
}
ds_roundtrip "csv" "$DS/csv/base.csv" "$DS/csv/derived.csv" csv 201 193 rows-csv
ds_roundtrip "jsonl" "$DS/jsonl/base.jsonl" "$DS/jsonl/derived.jsonl" jsonl 200 192 rows-jsonl
ds_roundtrip "malformed csv" "$DS/malformed/base.csv" "$DS/malformed/derived.csv" malformed 0 0 zstd-ref
for f in csv jsonl; do
	real=$(size "$T/ds-$f.delta" 2>/dev/null)
	is "$f: the estimate is within a factor of 2 of the real delta ($real bytes)" \
		"$(sql "SELECT est_delta_bytes BETWEEN ${real:-0} / 2 AND ${real:-0} * 2
FROM dataset_delta_estimate($(q "$DS/$f/base.$f"), $(q "$DS/$f/derived.$f"));")" "1"
done
# a real pair: every gsm8k answer was rewritten, so no row is shared as a whole
ds_roundtrip "gsm8k (real JSONL)" "$SPARSE_DATA/datasets/gsm8k_socratic/base.jsonl" \
	"$SPARSE_DATA/datasets/gsm8k_socratic/derived.jsonl" gsm8k 1319 0 rows-jsonl
is "savings on the CSV and JSONL pairs are above 50%" \
	"$(sql "SELECT savings_pct > 50 FROM dataset_delta_compress($(q "$DS/csv/base.csv"), $(q "$DS/csv/derived.csv"), $(q "$T/ds-csv.2.delta"), 19);
SELECT savings_pct > 50 FROM dataset_delta_compress($(q "$DS/jsonl/base.jsonl"), $(q "$DS/jsonl/derived.jsonl"), $(q "$T/ds-jsonl.2.delta"), 1);")" \
	"$(printf '1\n1')"

got=$(sql "SELECT c.rows_total, c.rows_shared, c.ft_sha256 = a.sha256, a.verified, c.savings_pct > 50
FROM dataset_delta_compress($(q "$DS/shards/base"), $(q "$DS/shards/derived"), $(q "$T/ds-shards.delta")) AS c,
     delta_apply($(q "$DS/shards/base"), $(q "$T/ds-shards.delta"), $(q "$T/ds-shards.out")) AS a;")
is "shards 2 -> 3: compress then apply in one query, manifest digests agree" "$got" "253|200|1|1|1"
check "shards: the rebuilt directory is identical (diff -r)" diff -r "$DS/shards/derived" "$T/ds-shards.out"
got=$(sql "SELECT name, sha256, method FROM delta_info($(q "$T/ds-shards.delta")) ORDER BY name;")
is "shards: delta_info lists the three derived files with their SHA-256 and methods" "$got" \
	"$(for f in part-0 part-1 part-2; do printf '%s.csv|%s|%s\n' "$f" "$(sha "$DS/shards/derived/$f.csv")" rows-csv; done)"

# Argument errors and the errors of the core, with exact messages.
for rows in 0 -1 10000001; do
	expect_error "dataset_delta_estimate: sample_rows $rows" \
		"SELECT * FROM dataset_delta_estimate($DB, $DD, $rows);" \
		"sample_rows $rows is out of range (1 to 10000000)"
done
expect_error "dataset_delta_estimate: sample_rows beyond int" \
	"SELECT * FROM dataset_delta_estimate($DB, $DD, 99999999999);" \
	"sample_rows 99999999999 is out of range (1 to 10000000)"
expect_error "dataset_delta_estimate: sample_rows not an integer" \
	"SELECT * FROM dataset_delta_estimate($DB, $DD, 2.5);" \
	"argument \"sample_rows\" of dataset_delta_estimate() must be an integer"
expect_error "dataset_delta_estimate: sample_rows text" \
	"SELECT * FROM dataset_delta_estimate($DB, $DD, 'all');" \
	"argument \"sample_rows\" of dataset_delta_estimate() must be an integer"
is "dataset_delta_estimate: the largest sample_rows is accepted" \
	"$(sql "SELECT rows_sampled > 0 FROM dataset_delta_estimate($DB, $DD, 10000000);")" "1"
for level in 0 20; do
	expect_error "dataset_delta_compress: level $level" \
		"SELECT * FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-never.delta"), $level);" \
		"compression level $level is out of range (1 to 19)"
done
expect_error "dataset_delta_compress: level not an integer" \
	"SELECT * FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-never.delta"), 'max');" \
	"argument \"level\" of dataset_delta_compress() must be an integer"
expect_error "dataset_delta_compress: missing output argument" \
	"SELECT * FROM dataset_delta_compress($DB, $DD);" \
	"missing argument \"out\" of dataset_delta_compress()"
expect_error "dataset_delta_estimate: too many arguments (SQLite's own check)" \
	"SELECT * FROM dataset_delta_estimate($DB, $DD, 10, 4);" \
	"too many arguments on dataset_delta_estimate() - max 3"
expect_error "dataset_delta_compress: a path must be text, not a blob" \
	"SELECT * FROM dataset_delta_compress(readfile($DB), $DD, $(q "$T/ds-never.delta"));" \
	"argument \"base\" of dataset_delta_compress() must be a path (text), not a blob"
expect_error "dataset_delta_estimate: missing file" \
	"SELECT * FROM dataset_delta_estimate($(q "$DS/nope.csv"), $DD);" \
	"could not open \"$DS/nope.csv\": No such file or directory (14)"
expect_error "dataset_delta_compress: output exists" \
	"SELECT * FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-csv.delta"));" \
	"output \"$T/ds-csv.delta\" already exists (14)"
expect_error "dataset_delta_compress: empty output path" \
	"SELECT * FROM dataset_delta_compress($DB, $DD, '');" \
	"output path must not be empty"
check "dataset functions: the refused calls wrote nothing" test -z "$(ls -A "$T" | grep ds-never)"
expect_error "delta_apply: a dataset delta against another parent" \
	"SELECT * FROM delta_apply($(q "$DS/jsonl/base.jsonl"), $(q "$T/ds-csv.delta"), $(q "$T/ds-never.csv"));" \
	"wrong base: \"$DS/jsonl/base.jsonl\" has $(size "$DS/jsonl/base.jsonl") bytes, the delta was made against $(size "$DS/csv/base.csv") bytes (sha256 $(sha "$DS/csv/base.csv")) (19)"
is "dataset functions: a NULL argument gives one row of NULLs" \
	"$(sql "SELECT count(*), count(format) FROM dataset_delta_estimate(NULL, $DD);
SELECT count(*), count(delta_path) FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-never.delta"), NULL);")" \
	"$(printf '1|0\n1|0')"

# DIRECTONLY: neither function runs from a view or a trigger.
expect_error "a view cannot call dataset_delta_estimate (DIRECTONLY)" \
	"CREATE VIEW v AS SELECT savings_pct FROM dataset_delta_estimate($DB, $DD);
SELECT * FROM v;" \
	"unsafe use of virtual table \"dataset_delta_estimate\""
expect_error "a trigger cannot call dataset_delta_compress (DIRECTONLY)" \
	"CREATE TABLE t(x);
CREATE TRIGGER tr AFTER INSERT ON t BEGIN
  SELECT * FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-trigger.delta"));
END;
INSERT INTO t VALUES (1);" \
	"unsafe use of virtual table \"dataset_delta_compress\""
check "the trigger wrote nothing" test ! -e "$T/ds-trigger.delta"

# SPARSE_ROOT confines the dataset functions too.
DSROOT=$DS/csv
is "SPARSE_ROOT: dataset_delta_estimate inside the root works" \
	"$(SPARSE_ROOT=$DSROOT sql "SELECT format FROM dataset_delta_estimate($DB, $DD);")" "csv"
is "SPARSE_ROOT: dataset_delta_estimate with an input outside the root is refused" \
	"$(SPARSE_ROOT=$DSROOT sql_error "SELECT * FROM dataset_delta_estimate($DB, $(q "$DS/jsonl/derived.jsonl"));")" \
	"path \"$DS/jsonl/derived.jsonl\" is outside the allowed root \"$DSROOT\" (3)"
is "SPARSE_ROOT: dataset_delta_compress with an output outside the root is refused" \
	"$(SPARSE_ROOT=$DSROOT sql_error "SELECT * FROM dataset_delta_compress($DB, $DD, $(q "$T/ds-never.delta"));")" \
	"path \"$T/ds-never.delta\" is outside the allowed root \"$DSROOT\" (3)"
check "SPARSE_ROOT: nothing was written outside the root" test ! -e "$T/ds-never.delta"

# ---- sqlite3_interrupt ------------------------------------------------------

# A synthetic pair slow to compress at level 19: 64 MiB of noise each (8 MiB
# took 5 s on one machine of this project and 0.4 s on a faster one, so the
# pair is sized for the fast one); the shell calls sqlite3_interrupt() on
# SIGINT.
head -c 67108864 /dev/urandom > "$T/noise"
mk_st "$T/big_base.safetensors" "$T/noise"
head -c 67108864 /dev/urandom > "$T/noise2"
mk_st "$T/big_ft.safetensors" "$T/noise2"

# interrupt_after DESC SQL: start SQL, SIGINT after 1 s, check it stops fast.
interrupt_after() {
	local desc=$1 pid t0 t1 ms out
	printf '.load %s\n%s\n' "$EXT" "$2" | sqlite3 -batch -bail > "$T/int.out" 2>&1 &
	pid=$!
	sleep 1
	if ! kill -0 "$pid" 2>/dev/null; then
		not_ok "$desc" "finished before the interrupt: $(cat "$T/int.out")" "still running after 1 s"
		return
	fi
	t0=$(date +%s%N)
	kill -INT "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.005; done
	t1=$(date +%s%N)
	wait "$pid"
	ms=$(( (t1 - t0) / 1000000 ))
	out=$(sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p' "$T/int.out")
	if [ "$out" = "canceling statement due to user request (9)" ] && [ "$ms" -le 1000 ]; then
		ok "$desc (stopped $ms ms after sqlite3_interrupt)"
	else
		not_ok "$desc" "$out after $ms ms" "canceling statement due to user request (9) within 1000 ms"
	fi
}
interrupt_after "sqlite3_interrupt stops delta_compress" \
	"SELECT * FROM delta_compress($(q "$T/big_base.safetensors"), $(q "$T/big_ft.safetensors"), $(q "$T/big.delta"), 19);"
check "an interrupted delta_compress leaves no output or temporary file" \
	test -z "$(ls -A "$T" | grep -i 'big.delta')"
interrupt_after "sqlite3_interrupt stops delta_compress_blob" \
	"SELECT length(delta_compress_blob(readfile($(q "$T/big_base.safetensors")), readfile($(q "$T/big_ft.safetensors")), 19));"
# a CSV pair whose every row is new random text (8 MB): over 10 s at level 19
{ echo text; head -c 6000000 "$T/noise" | base64 -w 200; } > "$T/slow_base.csv"
{ echo text; head -c 6000000 "$T/noise2" | base64 -w 200; } > "$T/slow_derived.csv"
interrupt_after "sqlite3_interrupt stops dataset_delta_compress" \
	"SELECT * FROM dataset_delta_compress($(q "$T/slow_base.csv"), $(q "$T/slow_derived.csv"), $(q "$T/gsm8k-int.delta"), 19);"
check "an interrupted dataset_delta_compress leaves no output or temporary file" \
	test -z "$(ls -A "$T" | grep -i 'gsm8k-int')"

# ---- hub storage: test/sqlite/store.sh, sourced so its checks count here ----
. test/sqlite/store.sh

# ---- smart routing: test/sqlite/route.sh, sourced so its checks count here --
. test/sqlite/route.sh

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
