#!/usr/bin/env bash
# test/cli/run.sh -- tests of the command-line tool bin/sparse.
#
# Usage (from the repository root):  make cli-test
#    or:  SPARSE_DATA=/path/to/shared/data bash test/cli/run.sh
#
# How it works: every case runs bin/sparse with its stdout, stderr and exit
# status captured (run), then asserts on them; each assertion prints
# "ok N - desc" or "not ok N - desc" (with what was seen), and the script
# ends with "N passed, N failed" and exits 1 if anything failed.  Work files
# go to a fresh build/cli-test.XXXXXX, removed if every case passed and kept
# for inspection otherwise.
#
# Covered: a round trip (compress, apply, cmp, sha256sum, verify) of every
# base/ft pair and every consecutive chain step under $SPARSE_DATA/models;
# a model directory; --json output parsed by python3 with its fields checked
# against stat and sha256sum; exit status 1 (missing file, corrupted and
# truncated delta, wrong base, existing output, --root) and 2 (usage
# errors) with the exact messages; existing outputs left untouched; no
# temporary file left after a failure; Ctrl-C (SIGINT) and SIGTERM; --quiet;
# escaping of control characters in messages.  Dataset deltas: a round trip
# (dataset-compress, apply, cmp, sha256sum, verify, info, dataset-estimate)
# of every pair under $SPARSE_DATA/datasets, a directory of shards, a
# dataset against itself, and their failures and usage errors.  Routing:
# "sparse route" (test/cli/route.sh, sourced near the end).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SPARSE=${SPARSE_BIN:-$ROOT/bin/sparse}   # SPARSE_BIN: test another build
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make cli-test does)}"
DATA=$(realpath "$SPARSE_DATA")
M="$DATA/models"
# A fresh directory per run, so two runs at once cannot disturb each other.
mkdir -p "$ROOT/build"
W=$(realpath "$(mktemp -d "$ROOT/build/cli-test.XXXXXX")")

n=0
failed=0

# ---- helpers ----------------------------------------------------------------

# ok DESC / notok DESC [DETAIL]: record one result.
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ $# -gt 1 ] && printf '#   %s\n' "$2" | head -20
	return 0
}

# check DESC CMD...: ok when CMD succeeds.
check() { local d=$1; shift; if "$@"; then ok "$d"; else notok "$d"; fi; }

# run ARGS...: run bin/sparse; sets $rc, $out (stdout), $err (stderr).
run() {
	"$SPARSE" "$@" >"$W/.stdout" 2>"$W/.stderr"
	rc=$?
	out=$(cat "$W/.stdout")
	err=$(cat "$W/.stderr")
}

# expect_rc N DESC: the last run exited with N.
expect_rc() {
	if [ "$rc" -eq "$1" ]; then ok "$2"; else notok "$2" "exit $rc, stderr: $err"; fi
}

# expect_err TEXT DESC: the last run's stderr is exactly TEXT.
expect_err() {
	if [ "$err" = "$1" ]; then ok "$2"; else notok "$2" "stderr was: $err | expected: $1"; fi
}

# json EXPR: evaluate a python expression over the last stdout parsed as j.
json() {
	python3 -c 'import json, sys; j = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <"$W/.stdout"
}

# expect_json EXPR DESC: the python expression over the last JSON is True.
expect_json() {
	local v
	v=$(json "$1" 2>&1)
	if [ "$v" = "True" ]; then ok "$2"; else notok "$2" "$1 -> $v; stdout: $out"; fi
}

# sha FILE: its SHA-256 as sha256sum prints it.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# tensors FILE: number of tensors in a safetensors header.
tensors() {
	python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(len([k for k in json.loads(f.read(n)) if k != "__metadata__"]))' "$1"
}

# differ A B: true when the two files differ.
differ() { ! cmp -s "$1" "$2"; }

# listing DIR: every entry of DIR, hidden ones too, on one line.
listing() { ls -A "$1" | tr '\n' ' '; }

# flip_byte FILE OFFSET: invert one byte in place (printf | dd conv=notrunc).
flip_byte() {
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---- the tool exists and describes itself -----------------------------------

if [ ! -x "$SPARSE" ]; then
	echo "not ok 1 - $SPARSE is not built (run make bin/sparse)"
	echo "0 passed, 1 failed"
	exit 1
fi

run version
expect_rc 0 "version exits 0"
want=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ROOT/sparse.control")
check "version prints the version of sparse.control ($want)" \
	grep -qx "sparse: *$want" "$W/.stdout"
run --json version
expect_json "j['version'] == '$want' and j['format_version'] == 1" "--json version fields"

run --help
expect_rc 0 "--help exits 0"
cp "$W/.stdout" "$W/help.txt"
for c in estimate compress dataset-estimate dataset-compress apply verify info version; do
	check "--help lists $c" grep -q "^  $c " "$W/help.txt"
	run "$c" --help
	if [ "$rc" -eq 0 ] && head -1 "$W/.stdout" | grep -q "^usage: sparse $c"; then
		ok "$c --help prints its usage"
	else
		notok "$c --help prints its usage" "exit $rc: $out"
	fi
done
run --version
expect_rc 0 "--version exits 0"
check "--version prints the version" grep -qx "sparse: *$want" "$W/.stdout"
run help compress
check "help compress is compress --help" grep -q '^usage: sparse compress BASE FT -o DELTA' "$W/.stdout"

# ---- round trip of every real pair ------------------------------------------

# roundtrip NAME BASE FT [LEVEL]: compress, apply, cmp, sha256sum, verify.
roundtrip() {
	local name=$1 base=$2 ft=$3 level=${4:-3}
	local d="$W/rt/$name.delta" o="$W/rt/$name.out"
	mkdir -p "$W/rt"
	run --json compress "$base" "$ft" -o "$d" --level "$level"
	if [ "$rc" -ne 0 ]; then notok "$name: compress" "exit $rc: $err"; return; fi
	local fsha; fsha=$(sha "$ft")
	expect_json "j['ft_sha256'] == '$fsha' and j['delta_bytes'] == $(stat -c %s "$d")" \
		"$name: compress -> ft_sha256 is sha256sum, delta_bytes is the file size"
	run --json apply "$base" "$d" -o "$o"
	if [ "$rc" -ne 0 ]; then notok "$name: apply" "exit $rc: $err"; return; fi
	check "$name: rebuilt file is identical (cmp)" cmp -s "$ft" "$o"
	check "$name: sha256sum of the rebuilt file matches" [ "$(sha "$o")" = "$fsha" ]
	expect_json "j['sha256'] == '$fsha' and j['verified'] is True" "$name: apply reports sha256 and verified"
	run verify "$base" "$d"
	expect_rc 0 "$name: verify exits 0"
}

roundtrip gpt2-lora-r8 "$M/gpt2-lora-r8/base.safetensors" "$M/gpt2-lora-r8/ft.safetensors"
roundtrip gpt2-lora-r8-l19 "$M/gpt2-lora-r8/base.safetensors" "$M/gpt2-lora-r8/ft.safetensors" 19
roundtrip roberta "$M/roberta-lora-r4-biasall/base.safetensors" "$M/roberta-lora-r4-biasall/ft.safetensors"
for p in f32 bf16; do
	for f in ft ft_frozen; do
		roundtrip "mlp-$f.$p" "$M/mlp-trained/base.$p.safetensors" "$M/mlp-trained/$f.$p.safetensors"
	done
done
# Consecutive checkpoints of each chain (sorted by step number).
for chain in gpt2-lora-r8 roberta-lora-r4-biasall; do
	prev=""
	for ck in $(ls "$M/$chain/chain" | sort -t- -k2 -n); do
		[ -n "$prev" ] && roundtrip "$chain-chain-${prev%.safetensors}-${ck%.safetensors}" \
			"$M/$chain/chain/$prev" "$M/$chain/chain/$ck"
		prev=$ck
	done
done

# ---- a model directory ----------------------------------------------------------

mkdir -p "$W/dir/base" "$W/dir/ft"
cp "$M/roberta-lora-r4-biasall/base.safetensors" "$W/dir/base/adapter_model.safetensors"
cp "$M/roberta-lora-r4-biasall/adapter_config.json" "$W/dir/base/"
cp "$M/roberta-lora-r4-biasall/ft.safetensors" "$W/dir/ft/adapter_model.safetensors"
sed 's/"r": 4/"r": 4 /' "$M/roberta-lora-r4-biasall/adapter_config.json" >"$W/dir/ft/adapter_config.json"
echo "trained for 200 more steps" >"$W/dir/ft/README.md"
run --json compress "$W/dir/base" "$W/dir/ft" -o "$W/dir/ft.delta"
expect_rc 0 "directory: compress exits 0"
manifest=$(cd "$W/dir/ft" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
expect_json "j['ft_sha256'] == '$manifest'" "directory: ft_sha256 is the SHA-256 of the manifest"
run apply "$W/dir/base" "$W/dir/ft.delta" -o "$W/dir/out"
expect_rc 0 "directory: apply exits 0"
check "directory: rebuilt directory is identical (diff -r)" diff -r "$W/dir/ft" "$W/dir/out"
run --json info "$W/dir/ft.delta"
expect_json "sorted(r['name'] for r in j) == ['README.md', 'adapter_config.json', 'adapter_model.safetensors']" \
	"directory: info lists the three files"
expect_json "all(r['method'] in ('tensor-delta', 'zstd-ref', 'zstd', 'copy') for r in j)" \
	"directory: info methods are known ones"
expect_json "[r['method'] for r in j if r['name'] == 'adapter_model.safetensors'] == ['tensor-delta']" \
	"directory: the safetensors file is stored as tensor-delta"

# ---- --json output of each command ------------------------------------------

B="$M/gpt2-lora-r8/base.safetensors"
F="$M/gpt2-lora-r8/ft.safetensors"
FSIZE=$(stat -c %s "$F")
D="$W/rt/gpt2-lora-r8.delta"

run --json estimate "$B" "$F" --sample 0.2
expect_rc 0 "estimate exits 0"
expect_json "j['ft_bytes'] == $FSIZE and j['base_bytes'] == $(stat -c %s "$B")" "estimate: ft_bytes and base_bytes are the file sizes"
expect_json "j['tensors_total'] == $(tensors "$F")" "estimate: tensors_total is the header's tensor count"
expect_json "j['tensors_identical'] + j['tensors_changed'] + j['tensors_unpaired'] == j['tensors_total']" \
	"estimate: identical + changed + unpaired = total"
expect_json "0 < j['est_delta_bytes'] < j['ft_bytes'] and j['sample_fraction'] == 0.2" \
	"estimate: est_delta_bytes below ft_bytes, sample_fraction echoed"
expect_json "abs(j['savings_pct'] - 100 * (1 - j['est_delta_bytes'] / j['ft_bytes'])) < 1e-6" \
	"estimate: savings_pct = 100 * (1 - est/ft)"
run --json estimate "$B" "$B"
expect_json "j['tensors_identical'] == j['tensors_total'] and j['tensors_changed'] == 0" \
	"estimate: a model against itself is all identical"

run --json info "$D"
expect_json "isinstance(j, list) and len(j) == 1" "info --json is an array of one row"
expect_json "j[0]['name'] == 'ft.safetensors' and j[0]['bytes'] == $FSIZE and j[0]['sha256'] == '$(sha "$F")'" \
	"info: name, bytes and sha256 of the fine-tune"
expect_json "j[0]['method'] == 'tensor-delta' and 0 < j[0]['delta_bytes'] <= $(stat -c %s "$D")" \
	"info: method tensor-delta, delta_bytes within the delta"

run --json verify "$B" "$D"
expect_json "j['out_path'] is None and j['verified'] is True and j['bytes'] == $FSIZE" \
	"verify --json: out_path null, verified true, bytes"

run --json compress "$B" "$F" -o "$W/json.delta" --level 1
expect_json "j['delta_path'] == '$W/json.delta' and j['level'] == 1 and j['ft_bytes'] == $FSIZE" \
	"compress --json: delta_path canonical, level and ft_bytes"
expect_json "abs(j['compression_ratio'] - j['ft_bytes'] / j['delta_bytes']) < 1e-9 and j['base_sha256'] == '$(sha "$B")'" \
	"compress --json: compression_ratio = ft/delta, base_sha256"

# ---- human output -------------------------------------------------------------

run compress "$B" "$F" -o "$W/human.delta"
check "compress prints 'delta size:' with the exact byte count" \
	grep -q "^delta size: .*($(stat -c %s "$W/human.delta") bytes)$" "$W/.stdout"
check "compress prints the fine-tune sha256" grep -q "^fine-tune sha256: $(sha "$F")$" "$W/.stdout"
check "no progress bar when stderr is not a terminal" [ -z "$err" ]
# On a terminal (script(1) gives it a pseudo-terminal) compress draws a bar.
RF="$M/roberta-lora-r4-biasall/ft.safetensors"
RB="$M/roberta-lora-r4-biasall/base.safetensors"
if command -v script >/dev/null; then
	script -qec "'$SPARSE' compress '$RB' '$RF' -o '$W/tty.delta'" /dev/null >"$W/tty.txt" 2>&1
	check "a progress bar is drawn when stderr is a terminal" grep -q '\] 100%' "$W/tty.txt"
	script -qec "'$SPARSE' -q compress '$RB' '$RF' -o '$W/tty-q.delta'" /dev/null >"$W/tty.txt" 2>&1
	check "--quiet: no progress bar on a terminal either" [ ! -s "$W/tty.txt" -a -s "$W/tty-q.delta" ]
fi
run -q apply "$B" "$W/human.delta" -o "$W/quiet.out"
check "--quiet apply prints nothing and succeeds" [ "$rc" -eq 0 -a -z "$out" -a -z "$err" ]
run info "$D" --quiet
check "--quiet is accepted after the command" [ "$rc" -eq 0 -a -z "$out" ]
run --json info "$D"
check "--json before the command gives JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$W/.stdout"
run info "$D" --json
check "--json after the command gives JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$W/.stdout"

# ---- --threads: coding threads change nothing in the delta ---------------------------

run compress "$RB" "$RF" -o "$W/th1.delta" --threads 1
expect_rc 0 "compress --threads 1 exits 0"
run compress "$RB" "$RF" -o "$W/th3.delta" --threads 3
expect_rc 0 "compress --threads 3 exits 0"
check "--threads 1 and --threads 3 write the same delta (cmp)" cmp -s "$W/th1.delta" "$W/th3.delta"
run compress "$RB" "$RF" -o "$W/th0.delta" --threads 0
expect_rc 2 "--threads 0: usage error, exit 2"
expect_err "sparse: compress: invalid threads \"0\": expected an integer from 1 to 16 (see 'sparse compress --help')" \
	"--threads 0: exact message"
check "--threads 0: nothing written" [ ! -e "$W/th0.delta" ]
run estimate "$RB" "$RF" --threads 2
expect_rc 2 "estimate does not take --threads (exit 2)"

# ---- failures: exit status 1, exact messages, nothing left behind ----------------

mkdir -p "$W/fail"
run verify "$B" "$W/fail/missing.delta"
expect_rc 1 "missing delta: exit 1"
expect_err "sparse: verify: could not open \"$W/fail/missing.delta\": No such file or directory" \
	"missing delta: exact message"
run estimate "$W/fail/missing.safetensors" "$F"
expect_rc 1 "missing base: exit 1"
expect_err "sparse: estimate: could not open \"$W/fail/missing.safetensors\": No such file or directory" \
	"missing base: exact message"

run --json verify "$B" "$W/fail/missing.delta"
expect_json "j['error']['code'] == 'SP_ERR_IO' and j['error']['errno'] == 2 and j['error']['command'] == 'verify'" \
	"--json failure: an error object with code and errno on stdout"

# corrupted delta: one byte flipped in the middle
cp "$D" "$W/fail/corrupt.delta"
flip_byte "$W/fail/corrupt.delta" $(($(stat -c %s "$D") / 2))
check "the corrupted copy differs from the delta" differ "$D" "$W/fail/corrupt.delta"
run apply "$B" "$W/fail/corrupt.delta" -o "$W/fail/corrupt.out"
expect_rc 1 "corrupted delta: apply exits 1"
check "corrupted delta: message names the delta and says corrupted" \
	grep -q "^sparse: apply: delta \"$W/fail/corrupt.delta\" is corrupted" "$W/.stderr"
check "corrupted delta: no output and no temporary file" \
	[ "$(listing "$W/fail")" = "corrupt.delta " ]
run verify "$B" "$W/fail/corrupt.delta"
expect_rc 1 "corrupted delta: verify exits 1"

# truncated delta
head -c $(($(stat -c %s "$D") - 10)) "$D" >"$W/fail/trunc.delta"
run apply "$B" "$W/fail/trunc.delta" -o "$W/fail/trunc.out"
expect_rc 1 "truncated delta: apply exits 1"
check "truncated delta: no output and no temporary file" \
	[ "$(listing "$W/fail")" = "corrupt.delta trunc.delta " ]

# not a delta
run apply "$B" "$F" -o "$W/fail/x.out"
expect_rc 1 "not a delta: exit 1"
expect_err "sparse: apply: \"$F\" is not a sparse delta: bad magic" "not a delta: exact message"

# wrong base
run apply "$RB" "$D" -o "$W/fail/wrongbase.out"
expect_rc 1 "wrong base: apply exits 1"
check "wrong base: message says wrong base and names the base" \
	grep -q "^sparse: apply: wrong base: \"$RB\"" "$W/.stderr"
check "wrong base: nothing written" [ ! -e "$W/fail/wrongbase.out" ]
run verify "$M/gpt2-lora-r8/chain/ckpt-2000.safetensors" "$D"
expect_rc 1 "wrong base of the same size: verify exits 1"

# existing output: failure, original untouched, no temporary file
echo "precious" >"$W/fail/exists"
before=$(sha "$W/fail/exists")
run compress "$B" "$F" -o "$W/fail/exists"
expect_rc 1 "compress onto an existing file: exit 1"
expect_err "sparse: compress: output \"$W/fail/exists\" already exists" "existing output: exact message"
check "existing output: the file is untouched" [ "$(sha "$W/fail/exists")" = "$before" ]
run apply "$B" "$D" -o "$W/fail/exists"
expect_rc 1 "apply onto an existing file: exit 1"
check "existing output: still untouched after apply" [ "$(sha "$W/fail/exists")" = "$before" ]
check "existing output: no temporary file left" \
	[ "$(listing "$W/fail")" = "corrupt.delta exists trunc.delta " ]

# output directory missing
run compress "$B" "$F" -o "$W/fail/nodir/x.delta"
expect_rc 1 "output in a missing directory: exit 1"
expect_err "sparse: compress: could not open directory of output \"$W/fail/nodir/x.delta\": No such file or directory" \
	"output in a missing directory: exact message"

# --root confines every path
run --root "$W" compress "$B" "$F" -o "$W/fail/root.delta"
expect_rc 1 "--root: an input outside the root fails"
expect_err "sparse: compress: path \"$B\" is outside the allowed root \"$W\"" "--root: exact message"
run --root "$M" compress "$B" "$F" -o "$W/fail/root.delta"
expect_rc 1 "--root: an output outside the root fails"
check "--root: nothing written" [ ! -e "$W/fail/root.delta" ]
run --root "$M" verify "$B" "$M/../models/gpt2-lora-r8/../../models/gpt2-lora-r8/ft.safetensors"
check "--root: '..' inside the root is resolved, not refused (fails later as not a delta)" \
	grep -q 'is not a sparse delta' "$W/.stderr"

# a control character in a path: the core's message stays on one line
nl_name="$W/fail/a
b"
echo x >"$nl_name"
run compress "$B" "$F" -o "$nl_name"
expect_err "sparse: compress: output \"$W/fail/a?b\" already exists" \
	"a newline in a path does not break the message's line"
rm -f "$nl_name"

# a file name inside a delta is data: escape sequences are printed as \xHH
mkdir -p "$W/esc/base" "$W/esc/ft"
cp "$B" "$W/esc/base/model.safetensors"
cp "$F" "$W/esc/ft/model.safetensors"
echo hi >"$W/esc/ft/evil$(printf '\033')[31mred
x"
run compress "$W/esc/base" "$W/esc/ft" -o "$W/esc/ft.delta"
run info "$W/esc/ft.delta"
check "info escapes ESC and newline in file names (\\x1b, \\x0a)" \
	grep -q '^evil\\x1b\[31mred\\x0ax  ' "$W/.stdout"
check "info's output holds no raw ESC byte" [ -z "$(tr -cd '\033' <"$W/.stdout")" ]
run --json info "$W/esc/ft.delta"
expect_json "sorted(r['name'] for r in j)[0] == 'evil\\x1b[31mred\\nx'" "--json info keeps the exact name (escaped by JSON)"

# ---- usage errors: exit status 2 ------------------------------------------------

run
expect_rc 2 "no command: exit 2"
expect_err "sparse: missing command (see 'sparse --help')" "no command: exact message"
run frobnicate
expect_rc 2 "unknown command: exit 2"
expect_err "sparse: unknown command \"frobnicate\" (see 'sparse --help')" "unknown command: exact message"
run compress "$B" "$F"
expect_rc 2 "compress without -o: exit 2"
expect_err "sparse: compress: missing -o DELTA (see 'sparse compress --help')" "missing -o: exact message"
run apply "$B" "$D"
expect_rc 2 "apply without -o: exit 2"
for lv in 0 20 abc 3x -1; do
	run compress "$B" "$F" -o "$W/usage.delta" --level "$lv"
	expect_rc 2 "--level $lv: exit 2"
done
expect_err "sparse: compress: invalid level \"-1\": expected an integer from 1 to 19 (see 'sparse compress --help')" \
	"bad --level: exact message"
check "bad --level: nothing written" [ ! -e "$W/usage.delta" ]
for s in 0 1.5 nan x; do
	run estimate "$B" "$F" --sample "$s"
	expect_rc 2 "--sample $s: exit 2"
done
run compress "$B" "$F" -o "$W/usage.delta" --frob
expect_rc 2 "unknown option: exit 2"
expect_err "sparse: compress: unknown option \"--frob\" (see 'sparse compress --help')" "unknown option: exact message"
run verify "$B" "$D" -o "$W/usage.out"
expect_rc 2 "an option the command does not take: exit 2"
expect_err "sparse: verify: unknown option \"-o\" (see 'sparse verify --help')" "option not taken: exact message"
run verify "$B"
expect_rc 2 "too few arguments: exit 2"
expect_err "sparse: verify: expected BASE DELTA (see 'sparse verify --help')" "too few arguments: exact message"
run compress "$B" -o "$W/usage.delta"
expect_err "sparse: compress: expected BASE FT (see 'sparse compress --help')" \
	"compress with one input: exact message"
run info "$D" "$D"
expect_rc 2 "too many arguments: exit 2"
expect_err "sparse: info: unexpected argument \"$D\" (see 'sparse info --help')" "too many arguments: exact message"
run compress "$B" "$F" -o
expect_rc 2 "-o without a value: exit 2"
expect_err "sparse: compress: option \"-o\" needs a value (see 'sparse compress --help')" "-o without a value: exact message"

# ---- dataset deltas -------------------------------------------------------------

DS="$DATA/datasets"

# ds_format FILE: the format dataset-estimate should report for FILE ("" if
# its shape decides: a .json file that is not an array).
ds_format() {
	case $1 in
		*.csv) echo csv ;;
		*.jsonl) echo jsonl ;;
		*.parquet) echo parquet ;;
		*.json) [ "$(head -c1 "$1")" = "[" ] && echo json-array || echo "" ;;
	esac
}

# ds_roundtrip NAME BASE DERIVED: dataset-compress, apply, cmp, sha256sum,
# verify, info and dataset-estimate on one real pair.
ds_roundtrip() {
	local name=$1 base=$2 der=$3
	local d="$W/ds/$name.delta" o="$W/ds/$name.out" fmt dsize dsha method
	mkdir -p "$W/ds"
	fmt=$(ds_format "$der")
	dsize=$(stat -c %s "$der")
	dsha=$(sha "$der")
	run --json dataset-compress "$base" "$der" "$d"
	if [ "$rc" -ne 0 ]; then notok "$name: dataset-compress" "exit $rc: $err"; return; fi
	expect_json "j['ft_sha256'] == '$dsha' and j['base_sha256'] == '$(sha "$base")' and j['ft_bytes'] == $dsize and j['delta_bytes'] == $(stat -c %s "$d")" \
		"$name: dataset-compress -> sha256s, ft_bytes and delta_bytes match the files"
	expect_json "0 <= j['rows_shared'] <= j['rows_total'] and j['level'] == 3 and j['delta_path'] == '$d'" \
		"$name: dataset-compress -> 0 <= rows_shared <= rows_total, level, delta_path"
	case $fmt in
		csv | jsonl) expect_json "j['rows_total'] == $(wc -l <"$der")" "$name: rows_total is the line count" ;;
		parquet) expect_json "j['rows_total'] == 0" "$name: a Parquet file has no rows" ;;
	esac
	run --json apply "$base" "$d" -o "$o"
	if [ "$rc" -ne 0 ]; then notok "$name: apply" "exit $rc: $err"; return; fi
	check "$name: rebuilt file is identical (cmp)" cmp -s "$der" "$o"
	check "$name: sha256sum of the rebuilt file matches" [ "$(sha "$o")" = "$dsha" ]
	expect_json "j['sha256'] == '$dsha' and j['verified'] is True and j['bytes'] == $dsize" \
		"$name: apply reports sha256, bytes and verified"
	run verify "$base" "$d"
	expect_rc 0 "$name: verify exits 0"
	case $fmt in
		parquet) method="r['method'] == 'parquet-pages'" ;;
		"") method="r['method'] in ('rows-json-array', 'rows-lines', 'zstd-ref', 'zstd')" ;;
		*) method="r['method'] == 'rows-$fmt'" ;;
	esac
	run --json info "$d"
	expect_json "len(j) == 1 and all(r['name'] == '$(basename "$der")' and r['bytes'] == $dsize and $method for r in j)" \
		"$name: info lists the file with its method (${fmt:-any})"
	run --json dataset-estimate "$base" "$der"
	if [ "$rc" -ne 0 ]; then notok "$name: dataset-estimate" "exit $rc: $err"; return; fi
	expect_json "j['derived_bytes'] == $dsize and j['base_bytes'] == $(stat -c %s "$base") and ('$fmt' == '' or j['format'] == '$fmt')" \
		"$name: dataset-estimate -> sizes and format ${fmt:-(any)}"
	expect_json "0 <= j['rows_shared_pct'] <= 100 and 0 <= j['rows_sampled'] <= 1000 and 0 < j['est_delta_bytes']" \
		"$name: dataset-estimate -> rows_sampled <= 1000, rows_shared_pct in 0..100"
	expect_json "abs(j['savings_pct'] - 100 * (1 - j['est_delta_bytes'] / j['derived_bytes'])) < 1e-6" \
		"$name: dataset-estimate -> savings_pct = 100 * (1 - est/derived)"
}

for pair in "$DS"/*/; do
	pair=${pair%/}
	ds_roundtrip "$(basename "$pair")" "$(ls "$pair"/base.*)" "$(ls "$pair"/derived.*)"
done
check "every dataset pair was tried (8 or more)" [ "$(ls "$DS" | wc -l)" -ge 8 ]

CB="$DS/covid_countries_1month/base.csv"
CD="$DS/covid_countries_1month/derived.csv"

# a dataset against itself: every row is a reference
run --json dataset-compress "$CD" "$CD" "$W/ds/self.delta"
expect_json "j['rows_shared'] == j['rows_total'] == $(wc -l <"$CD") and j['delta_bytes'] < j['ft_bytes'] / 100" \
	"a dataset against itself: every row shared, delta under 1%"
run --json dataset-estimate "$CD" "$CD" --sample-rows 50
expect_json "j['rows_sampled'] == 50 and j['rows_shared_pct'] == 100" \
	"dataset-estimate --sample-rows 50 against itself: 50 rows sampled, 100% shared"

# OUT with -o instead of the third argument; human output
run dataset-compress "$CB" "$CD" -o "$W/ds/o.delta"
expect_rc 0 "dataset-compress -o OUT exits 0"
check "dataset-compress prints 'delta size:' with the exact byte count" \
	grep -q "^delta size: .*($(stat -c %s "$W/ds/o.delta") bytes)$" "$W/.stdout"
check "dataset-compress prints the derived sha256 and the shared rows" \
	grep -q "^derived sha256: $(sha "$CD")$" "$W/.stdout"
check "dataset-compress prints the rows shared" grep -q "^rows shared: *[0-9][0-9]*$" "$W/.stdout"
run dataset-estimate "$CB" "$CD"
check "dataset-estimate prints the format" grep -q "^format: *csv$" "$W/.stdout"
check "dataset-estimate prints the estimated savings" grep -q "^estimated savings: *[0-9.-]*%$" "$W/.stdout"
run -q dataset-compress "$CB" "$CD" "$W/ds/q.delta"
check "--quiet dataset-compress prints nothing and succeeds" [ "$rc" -eq 0 -a -z "$out" -a -z "$err" -a -s "$W/ds/q.delta" ]
run dataset-compress "$CB" "$CD" "$W/ds/json.delta" --json
check "--json after dataset-compress gives JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$W/.stdout"
run dataset-estimate "$CB" "$CD" --json
check "--json after dataset-estimate gives JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$W/.stdout"

# a directory of shards: two CSV shards, a JSON Lines one (rows are coded
# for one row format per delta: the other is coded against its same-named
# parent file) and a file with no parent
mkdir -p "$W/shards/base" "$W/shards/derived"
cp "$CB" "$W/shards/base/countries.csv"
cp "$DS/owid_co2_update/base.csv" "$W/shards/base/co2.csv"
cp "$DS/gsm8k_socratic/base.jsonl" "$W/shards/base/train.jsonl"
cp "$CD" "$W/shards/derived/countries.csv"
cp "$DS/owid_co2_update/derived.csv" "$W/shards/derived/co2.csv"
cp "$DS/gsm8k_socratic/derived.jsonl" "$W/shards/derived/train.jsonl"
cp "$DS/ranked_dash_parquet/derived.parquet" "$W/shards/derived/extra.parquet"
run --json dataset-compress "$W/shards/base" "$W/shards/derived" "$W/shards/d.delta"
expect_rc 0 "shards: dataset-compress of a directory exits 0"
manifest=$(cd "$W/shards/derived" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
expect_json "j['ft_sha256'] == '$manifest' and j['ft_bytes'] == $(cat "$W/shards/derived"/* | wc -c)" \
	"shards: ft_sha256 is the manifest's, ft_bytes the total size"
expect_json "j['rows_total'] >= $(cat "$W/shards/derived"/*.csv | wc -l) and 0 < j['rows_shared'] <= j['rows_total']" \
	"shards: rows_total counts the rows of both CSV shards"
run apply "$W/shards/base" "$W/shards/d.delta" -o "$W/shards/out"
expect_rc 0 "shards: apply exits 0"
check "shards: rebuilt directory is identical (diff -r)" diff -r "$W/shards/derived" "$W/shards/out"
run verify "$W/shards/base" "$W/shards/d.delta"
expect_rc 0 "shards: verify exits 0"
run --json info "$W/shards/d.delta"
expect_json "len(j) == 4 and [r['method'] for r in j if r['name'].endswith('.csv')] == ['rows-csv', 'rows-csv']" \
	"shards: info lists the four files, the CSV shards as rows-csv"
expect_json "[r['method'] for r in j if r['name'] == 'train.jsonl'][0] in ('rows-jsonl', 'zstd-ref')" \
	"shards: the JSON Lines shard is coded as rows or against its parent file"
expect_json "[r['method'] for r in j if r['name'] == 'extra.parquet'][0] in ('parquet-pages', 'zstd')" \
	"shards: a file with no parent is stored as parquet-pages or zstd"
run --json dataset-estimate "$W/shards/base" "$W/shards/derived"
expect_json "j['format'] == 'mixed' and j['derived_bytes'] == $(cat "$W/shards/derived"/* | wc -c)" \
	"shards: dataset-estimate says mixed, derived_bytes is the total"

# a progress bar on a terminal (script(1) gives it a pseudo-terminal)
if command -v script >/dev/null; then
	script -qec "'$SPARSE' dataset-compress '$W/shards/base' '$W/shards/derived' '$W/shards/tty.delta'" \
		/dev/null >"$W/tty.txt" 2>&1
	check "dataset-compress draws a progress bar on a terminal" grep -q '\] 100%' "$W/tty.txt"
fi

# ds_interrupt SIGNAL STATUS: stop dataset-compress of the shards (level 19)
# after 0.3 s; skipped if it finished before (a fast machine).
ds_interrupt() {
	local sig=$1 want=$2 pid
	mkdir -p "$W/ds-sig-$sig"
	set -m
	"$SPARSE" dataset-compress "$W/shards/base" "$W/shards/derived" "$W/ds-sig-$sig/x.delta" \
		--level 19 2>"$W/.stderr" >/dev/null &
	pid=$!
	sleep 0.3
	if ! kill "-$sig" "$pid" 2>/dev/null; then
		wait "$pid"
		set +m
		echo "ok $((n + 1)) - dataset-compress SIG$sig # SKIP finished within 0.3 s"
		n=$((n + 1))
		return
	fi
	wait "$pid"
	rc=$?
	set +m
	err=$(cat "$W/.stderr")
	expect_rc "$want" "dataset-compress SIG$sig: exit $want"
	expect_err "sparse: dataset-compress: interrupted" "dataset-compress SIG$sig: message"
	check "dataset-compress SIG$sig: no output and no temporary file after" [ -z "$(listing "$W/ds-sig-$sig")" ]
}
ds_interrupt INT 130
ds_interrupt TERM 143

# failures: exit status 1, exact messages
echo "precious" >"$W/ds/exists"
before=$(sha "$W/ds/exists")
run dataset-compress "$CB" "$CD" "$W/ds/exists"
expect_rc 1 "dataset-compress onto an existing file: exit 1"
expect_err "sparse: dataset-compress: output \"$W/ds/exists\" already exists" \
	"dataset-compress onto an existing file: exact message"
check "dataset-compress: the existing file is untouched" [ "$(sha "$W/ds/exists")" = "$before" ]
run dataset-estimate "$W/ds/missing.csv" "$CD"
expect_rc 1 "dataset-estimate of a missing base: exit 1"
expect_err "sparse: dataset-estimate: could not open \"$W/ds/missing.csv\": No such file or directory" \
	"dataset-estimate of a missing base: exact message"
run --json dataset-compress "$CB" "$W/ds/missing.csv" "$W/ds/missing.delta"
expect_json "j['error']['code'] == 'SP_ERR_IO' and j['error']['errno'] == 2 and j['error']['command'] == 'dataset-compress'" \
	"dataset-compress --json failure: an error object with code and errno"
check "dataset-compress failure: nothing written" [ ! -e "$W/ds/missing.delta" ]
run --root "$W" dataset-estimate "$CB" "$CD"
expect_err "sparse: dataset-estimate: path \"$CB\" is outside the allowed root \"$W\"" \
	"dataset-estimate --root: exact message"

# usage errors: exit status 2, nothing written
run dataset-compress "$CB" "$CD"
expect_rc 2 "dataset-compress without OUT: exit 2"
expect_err "sparse: dataset-compress: expected BASE DERIVED OUT (see 'sparse dataset-compress --help')" \
	"dataset-compress without OUT: exact message"
run dataset-compress "$CB"
expect_err "sparse: dataset-compress: expected BASE DERIVED OUT (see 'sparse dataset-compress --help')" \
	"dataset-compress with one input: exact message"
run dataset-estimate "$CB"
expect_rc 2 "dataset-estimate with one input: exit 2"
expect_err "sparse: dataset-estimate: expected BASE DERIVED (see 'sparse dataset-estimate --help')" \
	"dataset-estimate with one input: exact message"
run dataset-compress "$CB" "$CD" "$W/ds/usage.delta" "$W/ds/usage2.delta"
expect_err "sparse: dataset-compress: unexpected argument \"$W/ds/usage2.delta\" (see 'sparse dataset-compress --help')" \
	"dataset-compress with four arguments: exact message"
run dataset-compress "$CB" "$CD" "$W/ds/usage.delta" -o "$W/ds/usage2.delta"
expect_rc 2 "dataset-compress with OUT and -o: exit 2"
expect_err "sparse: dataset-compress: OUT given twice, as an argument and with -o (see 'sparse dataset-compress --help')" \
	"dataset-compress with OUT and -o: exact message"
for s in 0 10000001 -5 abc 1e3; do
	run dataset-estimate "$CB" "$CD" --sample-rows "$s"
	expect_rc 2 "--sample-rows $s: exit 2"
done
run dataset-estimate "$CB" "$CD" --sample-rows 0
expect_err "sparse: dataset-estimate: invalid number of sample rows \"0\": expected an integer from 1 to 10000000 (see 'sparse dataset-estimate --help')" \
	"--sample-rows 0: exact message"
run dataset-estimate "$CB" "$CD" --sample-rows
expect_err "sparse: dataset-estimate: option \"--sample-rows\" needs a value (see 'sparse dataset-estimate --help')" \
	"--sample-rows without a value: exact message"
for lv in 0 20 x; do
	run dataset-compress "$CB" "$CD" "$W/ds/usage.delta" --level "$lv"
	expect_rc 2 "dataset-compress --level $lv: exit 2"
done
run dataset-compress "$CB" "$CD" "$W/ds/usage.delta" --level 20
expect_err "sparse: dataset-compress: invalid level \"20\": expected an integer from 1 to 19 (see 'sparse dataset-compress --help')" \
	"dataset-compress --level 20: exact message"
check "dataset-compress usage errors: nothing written" [ ! -e "$W/ds/usage.delta" -a ! -e "$W/ds/usage2.delta" ]
run dataset-estimate "$CB" "$CD" --sample 0.5
expect_err "sparse: dataset-estimate: unknown option \"--sample\" (see 'sparse dataset-estimate --help')" \
	"dataset-estimate does not take --sample: exact message"
run dataset-compress "$CB" "$CD" "$W/ds/usage.delta" --sample-rows 10
expect_err "sparse: dataset-compress: unknown option \"--sample-rows\" (see 'sparse dataset-compress --help')" \
	"dataset-compress does not take --sample-rows: exact message"
run estimate "$B" "$F" --sample-rows 10
expect_rc 2 "estimate does not take --sample-rows: exit 2"

# ---- Ctrl-C and SIGTERM: exit 128+N, no partial or temporary file --------------

# random_st PATH BYTES: a safetensors file of one F32 tensor of random bits.
random_st() {
	python3 -c 'import json, os, struct, sys
n = int(sys.argv[2])
h = json.dumps({"w": {"dtype": "F32", "shape": [n // 4], "data_offsets": [0, n]}}).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + os.urandom(n))' "$1" "$2"
}

# A pair slow to compress at level 19 (about 4 s here: the context model
# codes every chunk before byte planes win), for the signal tests.
random_st "$W/slow-base.safetensors" 67108864
random_st "$W/slow-ft.safetensors" 67108864

# interrupt SIGNAL STATUS: stop a slow compress (level 19) after 0.5 s.
interrupt() {
	local sig=$1 want=$2 start end
	mkdir -p "$W/sig-$sig"
	set -m						# own process group: background jobs get SIGINT
	start=$(date +%s%N)
	"$SPARSE" compress "$W/slow-base.safetensors" "$W/slow-ft.safetensors" \
		-o "$W/sig-$sig/x.delta" --level 19 2>"$W/.stderr" &
	local pid=$!
	sleep 0.5
	local during; during=$(listing "$W/sig-$sig")
	kill "-$sig" "$pid"
	wait "$pid"
	rc=$?
	end=$(date +%s%N)
	set +m
	err=$(cat "$W/.stderr")
	expect_rc "$want" "SIG$sig: exit $want"
	expect_err "sparse: compress: interrupted" "SIG$sig: message"
	check "SIG$sig: a temporary file existed while running ($during)" \
		[ "${during#.x.delta.sparse-tmp-}" != "$during" ]
	check "SIG$sig: no output and no temporary file after" [ -z "$(listing "$W/sig-$sig")" ]
	check "SIG$sig: stopped within 2 s" [ $(((end - start) / 1000000)) -lt 2500 ]
}
interrupt INT 130
interrupt TERM 143

# ---- sparse route (its cases share the helpers and counters above) -----------

. "$ROOT/test/cli/route.sh"

# ---- summary ------------------------------------------------------------------

echo "$((n - failed)) passed, $failed failed"
if [ "$failed" -eq 0 ]; then
	rm -rf "$W"
else
	echo "# work files kept in $W"
	exit 1
fi
