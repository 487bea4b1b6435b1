# test/cli/route.sh -- tests of "sparse route" (sourced by test/cli/run.sh).
#
# Usage: make cli-test (run.sh sources this file near its end, so its cases
# share run.sh's helpers -- run, expect_rc, expect_err, expect_json, check --,
# its counters and its work directory $W; not meant to be run alone).
#
# Covered: help; the exact human output of a decision and of --classify on
# the built-in catalog; --json (parsed by python3: the route_decision and
# route_classify columns in order, NULLs for a model missing from the
# catalog, cost_savings_pct consistent with the prices); --prompt-file FILE
# and "-" (standard input) agreeing with --prompt; --max-tokens, --threshold,
# --quality-first, --percentage and --request-id changing the decision as
# the spec says; a catalog CSV with quoted fields (comma, doubled quote,
# newline), empty family/hardware, a disabled model; every kind of bad
# catalog (exit 1, exact message naming the line and the column); a missing
# prompt file or catalog, --root; usage errors (exit 2, exact messages); and,
# when ./sparse.so has route_decision, that the CLI and SQLite agree on
# every column for the same catalog and prompts.

RW="$W/route"
mkdir -p "$RW"
HDR="model_id,family,hardware,cost_per_1m_tokens,context_window,quality_simple,quality_moderate,quality_complex,enabled"
SIMPLE="What is 2+2?"
HARD="Prove that there are infinitely many primes, then write a Python function that implements the sieve of Eratosthenes with complexity analysis, and compare to Miller-Rabin."

# builtin_rows: the model rows of the built-in catalog that route --help lists.
builtin_rows() {
	sed -n '/^Built-in catalog/,$p' "$RW/help.txt" | awk 'NR > 3 && /^  [a-z]/ && $NF ~ /^[0-9.]+$/'
}

# expect_out TEXT DESC: the last run's stdout is exactly TEXT.
expect_out() {
	if [ "$out" = "$1" ]; then ok "$2"; else notok "$2" "stdout was: $out | expected: $1"; fi
}

# route_usage ARGS... -- MESSAGE: exit 2 and the exact usage message.
route_usage() {
	local args=() msg
	while [ "$1" != "--" ]; do args+=("$1"); shift; done
	msg=$2
	run route "${args[@]}"
	local desc="route ${args[*]}"
	desc=${desc//$RW\//}		# work paths make long names
	if [ "$rc" -eq 2 ] && [ "$err" = "sparse: route: $msg (see 'sparse route --help')" ]; then
		ok "$desc: exit 2, exact message"
	else
		notok "$desc: exit 2, exact message" "exit $rc, stderr: $err | expected: $msg"
	fi
}

# bad_catalog DESC MESSAGE ROW...: a catalog of HDR and ROWs fails with MESSAGE.
bad_catalog() {
	local desc=$1 msg=$2 f="$RW/bad-$n.csv"
	shift 2
	{ echo "$HDR"; printf '%s\n' "$@"; } >"$f"
	run route --model a --prompt "$SIMPLE" --catalog "$f"
	if [ "$rc" -eq 1 ] && [ "$err" = "sparse: route: catalog \"$f\" $msg" ]; then
		ok "bad catalog, $desc: exit 1, exact message"
	else
		notok "bad catalog, $desc: exit 1, exact message" "exit $rc, stderr: $err | expected: catalog \"$f\" $msg"
	fi
}

# ---- help ---------------------------------------------------------------------

run --help
check "--help lists route" grep -q "^  route " "$W/.stdout"
run route --help
expect_rc 0 "route --help exits 0"
check "route --help prints its usage" \
	grep -qx "usage: sparse route --model M (--prompt TEXT | --prompt-file FILE) \[OPTIONS\]" "$W/.stdout"
for o in --model --prompt --prompt-file --max-tokens --threshold --quality-first \
	--request-id --percentage --catalog --classify; do
	check "route --help describes $o" grep -q "^  $o " "$W/.stdout"
done
check "route --help shows the catalog header" grep -q "^  model_id,family,hardware," "$W/.stdout"
cp "$W/.stdout" "$RW/help.txt"
# Every model the help lists is in the built-in catalog (not "not in the routing catalog").
for m in $(builtin_rows | awk '{print $1}'); do
	run --json route --model "$m" --prompt "$SIMPLE"
	expect_json "j['requested_cost_per_1m_tokens'] is not None" "the built-in catalog holds $m (listed by --help)"
done
check "route --help lists six built-in models" \
	[ "$(builtin_rows | wc -l)" -eq 6 ]

# ---- decisions on the built-in catalog ----------------------------------------

run route --model gpt-4o --prompt "$SIMPLE"
expect_rc 0 "route: exit 0"
expect_out "complexity:                   simple
complexity_score:             0.0193157
requested_model:              gpt-4o
recommended_model:            llama-3.1-8b-instruct
recommended_hardware:         nvidia-l4
estimated_cost_per_1m_tokens: 0.1
requested_cost_per_1m_tokens: 4.38
cost_savings_pct:             97.72%
predicted_quality:            0.88
requested_predicted_quality:  0.97
routed:                       yes
reason:                       cheapest model meeting 0.85 of the requested model's predicted quality (0.880 vs 0.970)" \
	"route: exact output for a simple prompt"

run --json route --model gpt-4o --prompt "$HARD"
expect_json "list(j) == ['complexity', 'complexity_score', 'requested_model', 'recommended_model', 'recommended_hardware', 'estimated_cost_per_1m_tokens', 'requested_cost_per_1m_tokens', 'cost_savings_pct', 'predicted_quality', 'requested_predicted_quality', 'routed', 'reason']" \
	"route --json: the route_decision columns, in order"
expect_json "j['complexity'] == 'complex' and j['recommended_model'] == 'llama-3.1-70b-instruct' and j['routed'] is True" \
	"route --json: a complex prompt goes to the 70B model"
expect_json "abs(j['cost_savings_pct'] - 100 * (1 - 0.90 / 4.38)) < 1e-9 and j['predicted_quality'] == 0.74 and j['requested_predicted_quality'] == 0.86" \
	"route --json: cost_savings_pct and qualities from the catalog"
expect_json "j['predicted_quality'] >= 0.85 * j['requested_predicted_quality']" \
	"route --json: the recommendation meets the threshold"

run route --model gpt-4o --prompt "$SIMPLE" --json
cp "$W/.stdout" "$RW/simple.json"
printf '%s' "$SIMPLE" >"$RW/simple.txt"
run --json route --model gpt-4o --prompt-file "$RW/simple.txt"
check "--prompt-file gives the same result as --prompt" cmp -s "$W/.stdout" "$RW/simple.json"
"$SPARSE" --json route --model gpt-4o --prompt-file - <"$RW/simple.txt" >"$RW/stdin.json" 2>&1
check "--prompt-file - reads standard input" cmp -s "$RW/stdin.json" "$RW/simple.json"

head -c $((64 * 1024 * 1024 + 1)) /dev/zero | "$SPARSE" route --classify --prompt-file - >/dev/null 2>"$RW/big.err"
rc=$?
err=$(cat "$RW/big.err")
expect_rc 1 "a prompt over 64 MiB on standard input: exit 1"
expect_err "sparse: route: standard input is larger than 64 MiB" \
	"a prompt over 64 MiB on standard input: exact message"
head -c $((64 * 1024 * 1024)) /dev/zero | "$SPARSE" --json route --classify --prompt-file - >"$W/.stdout" 2>&1
expect_json "j['complexity'] in ('simple', 'moderate', 'complex')" "a prompt of exactly 64 MiB is read"

run --json route --model nope --prompt "$SIMPLE"
expect_rc 0 "a model missing from the catalog: exit 0"
expect_json "j['recommended_model'] == 'nope' and j['routed'] is False and j['recommended_hardware'] is None" \
	"missing model: recommended is the requested name, not routed"
expect_json "[j[k] for k in ('estimated_cost_per_1m_tokens', 'requested_cost_per_1m_tokens', 'cost_savings_pct', 'predicted_quality', 'requested_predicted_quality')] == [None] * 5" \
	"missing model: cost and quality columns are null"
expect_json "j['reason'] == 'model \"nope\" is not in the routing catalog; returned unchanged'" \
	"missing model: exact reason"
run route --model nope --prompt "$SIMPLE"
check "missing model: human output shows '-' for nulls" \
	grep -qx "estimated_cost_per_1m_tokens: -" "$W/.stdout"

run --json route --model gpt-4o --prompt "$SIMPLE" --percentage 0
expect_json "j['routed'] is False and j['recommended_model'] == 'llama-3.1-8b-instruct' and j['reason'].startswith('outside rollout')" \
	"--percentage 0: not routed, recommendation kept, reason 'outside rollout'"
routed=0
for i in $(seq 1 200); do
	"$SPARSE" --json route --model gpt-4o --prompt "$SIMPLE" --percentage 50 --request-id "req-$i" >"$RW/p.json"
	grep -q '"routed":true' "$RW/p.json" && routed=$((routed + 1))
done
check "--percentage 50: 200 request ids are routed about half the time ($routed)" \
	[ "$routed" -ge 70 -a "$routed" -le 130 ]
run --json route --model gpt-4o --prompt "$SIMPLE" --percentage 50 --request-id req-1
cp "$W/.stdout" "$RW/r1.json"
run --json route --model gpt-4o --prompt "$SIMPLE" --percentage 50 --request-id req-1
check "--request-id: the same id gets the same rollout side" cmp -s "$W/.stdout" "$RW/r1.json"
run --json route --model gpt-4o --prompt "$SIMPLE" --percentage 0.0001 --request-id req-1
expect_json "j['routed'] is False" "--percentage 0.0001: a fraction is accepted"

run --json route --model claude-3-5-sonnet --prompt "$SIMPLE" --quality-first
expect_json "j['recommended_model'] == 'gpt-4o' and j['routed'] is True" \
	"--quality-first: the best cheaper model (gpt-4o), not the cheapest"
run --json route --model claude-3-5-sonnet --prompt "$SIMPLE" --threshold 1
expect_json "j['recommended_model'] == 'gpt-4o' and j['predicted_quality'] == 0.97" \
	"--threshold 1: only a model as good as the requested one"
run --json route --model gpt-4o --prompt "$SIMPLE" --max-tokens 140000
expect_json "j['recommended_model'] == 'claude-3-5-sonnet'" \
	"--max-tokens 140000: only the 200k-context model holds the request"
run --json route --model llama-3.2-3b-instruct --prompt "$SIMPLE"
expect_json "j['routed'] is False and j['recommended_model'] == 'llama-3.2-3b-instruct'" \
	"the cheapest model requested: not routed"

# ---- --classify ---------------------------------------------------------------

run route --classify --prompt "Prove that there are infinitely many primes"
expect_rc 0 "route --classify: exit 0"
expect_out "complexity:        moderate
score:             0.369316
est_prompt_tokens: 12
signals:           tokens=12, keyword:prove" "route --classify: exact output"
run --json route --classify --prompt "$HARD" --max-tokens 2000
expect_json "list(j) == ['complexity', 'score', 'est_prompt_tokens', 'signals'] and j['complexity'] == 'complex' and 0.6 <= j['score'] <= 1" \
	"route --classify --json: the route_classify columns, a complex prompt"
run --json route --classify --prompt '[{"role":"system","content":"You are terse"},{"role":"user","content":"Prove the theorem rigorously"}]'
expect_json "'chat:last_user' in j['signals'] and 'keyword:prove' in j['signals']" \
	"route --classify: a JSON chat transcript classifies its last user message"

# ---- a catalog CSV ------------------------------------------------------------

cat >"$RW/cat.csv" <<EOF
$HDR
"big, model",fam,"rack ""A""",10,100000,0.95,0.9,0.85,true
small,,gpu,0.5,100000,0.9,0.7,0.5,1
tiny,fam,"multi
line",0.1,100000,0.5,0.4,0.3,
off,,,0.01,100000,1,1,1,FALSE
EOF
run --json route --model "big, model" --prompt "$SIMPLE" --catalog "$RW/cat.csv"
expect_json "j['requested_model'] == 'big, model' and j['requested_cost_per_1m_tokens'] == 10" \
	"catalog CSV: a quoted model_id with a comma"
expect_json "j['recommended_model'] == 'small' and j['recommended_hardware'] == 'gpu' and j['estimated_cost_per_1m_tokens'] == 0.5" \
	"catalog CSV: the cheapest qualifying enabled model (the disabled one is skipped)"
run --json route --model small --prompt "$SIMPLE" --catalog "$RW/cat.csv" --threshold 0.5
expect_json "j['recommended_model'] == 'tiny' and j['recommended_hardware'] == 'multi\\nline'" \
	"catalog CSV: a quoted newline; an empty enabled is true"
run route --model small --prompt "$SIMPLE" --catalog "$RW/cat.csv" --threshold 0.5
check "catalog CSV: human output escapes the newline" grep -qx 'recommended_hardware:         multi\\x0aline' "$W/.stdout"
run --json route --model small --prompt "$SIMPLE" --catalog "$RW/cat.csv" --threshold 0.5 --quality-first
expect_json "j['recommended_model'] == 'tiny'" "catalog CSV: --quality-first among cheaper models"
run --json route --model "big, model" --prompt "$SIMPLE" --catalog "$RW/cat.csv" --threshold 1
expect_json "j['recommended_model'] == 'big, model' and j['routed'] is False" \
	"catalog CSV: a requested model better than all others stays"
printf '%s\r\n%s\r\n' "$HDR" "crlf,,,1,10,0.5,0.5,0.5,yes" >"$RW/crlf.csv"
run --json route --model crlf --prompt "$SIMPLE" --catalog "$RW/crlf.csv"
expect_json "j['requested_cost_per_1m_tokens'] == 1" "catalog CSV: CRLF line ends"
run --json route --model big --prompt "$SIMPLE" --catalog "$RW/cat.csv"
expect_json "j['requested_cost_per_1m_tokens'] is None and j['recommended_model'] == 'big'" \
	"catalog CSV: a model missing from the file is returned unchanged"

bad_catalog "a number that is not one" \
	'line 3, column cost_per_1m_tokens: "abc" is not a number of at least 0' \
	"a,,,1,10,0.5,0.5,0.5,true" "b,,,abc,10,0.5,0.5,0.5,true"
bad_catalog "a negative cost" 'line 2, column cost_per_1m_tokens: "-1" is not a number of at least 0' \
	"a,,,-1,10,0.5,0.5,0.5,true"
bad_catalog "a NaN cost" 'line 2, column cost_per_1m_tokens: "nan" is not a number of at least 0' \
	"a,,,nan,10,0.5,0.5,0.5,true"
bad_catalog "a quality above 1, after a row spanning two lines" \
	'line 4, column quality_moderate: "1.5" is not a number from 0 to 1' \
	'a,,"two' 'lines",1,10,0.5,0.5,0.5,true' "b,,,1,10,0.5,1.5,0.5,true"
bad_catalog "a context window of 0" 'line 2, column context_window: "0" is not an integer from 1 to 2147483647' \
	"a,,,1,0,0.5,0.5,0.5,true"
bad_catalog "a fractional context window" 'line 2, column context_window: "1.5" is not an integer from 1 to 2147483647' \
	"a,,,1,1.5,0.5,0.5,0.5,true"
bad_catalog "an enabled that is not a boolean" \
	'line 2, column enabled: "maybe" is not a boolean (true, false, t, f, 1, 0, yes, no)' \
	"a,,,1,10,0.5,0.5,0.5,maybe"
bad_catalog "an empty model_id" 'line 2, column model_id: "" is empty' ",,,1,10,0.5,0.5,0.5,true"
bad_catalog "too few fields" "line 2: expected 9 fields, found 8" "a,,,1,10,0.5,0.5,0.5"
bad_catalog "too many fields" "line 2: expected 9 fields, found 10" "a,,,1,10,0.5,0.5,0.5,true,x"
bad_catalog "an unclosed quote" "line 2: a quoted field is not closed" 'a,,"gpu,1,10,0.5,0.5,0.5,true'
bad_catalog "text after a closing quote" "line 2: text after a closing quote" 'a,,"gpu"x,1,10,0.5,0.5,0.5,true'
bad_catalog "a quote in an unquoted field" "line 2: a quote inside an unquoted field" 'a,,g"pu,1,10,0.5,0.5,0.5,true'
bad_catalog "a model twice" "line 3: catalog model \"a\" appears twice" \
	"a,,,1,10,0.5,0.5,0.5,true" "a,,,2,10,0.5,0.5,0.5,true"
bad_catalog "no models" "has no models"
printf '%s\nok,,,1,10,0.5,0.5,0.5,true\na\0b,,,1,10,0.5,0.5,0.5,true\n' "$HDR" >"$RW/nul.csv"
run route --model a --prompt "$SIMPLE" --catalog "$RW/nul.csv"
expect_err "sparse: route: catalog \"$RW/nul.csv\" line 3: a NUL byte" "bad catalog, a NUL byte: exact message"
printf 'model_id,family,hardware,cost,context_window,quality_simple,quality_moderate,quality_complex,enabled\n' >"$RW/hdr.csv"
run route --model a --prompt "$SIMPLE" --catalog "$RW/hdr.csv"
expect_err "sparse: route: catalog \"$RW/hdr.csv\" line 1: expected the header $HDR" \
	"bad catalog header: exact message"
run --json route --model a --prompt "$SIMPLE" --catalog "$RW/hdr.csv"
expect_json "j['error']['command'] == 'route' and j['error']['code'] == 'SP_ERR_INVALID_ARG' and 'line 1' in j['error']['message']" \
	"bad catalog --json: an error object on stdout"
run route --model a --prompt "$SIMPLE" --catalog "$RW/missing.csv"
expect_rc 1 "missing catalog: exit 1"
expect_err "sparse: route: could not open \"$RW/missing.csv\": No such file or directory" \
	"missing catalog: exact message"
run route --model a --prompt-file "$RW/missing.txt"
expect_rc 1 "missing prompt file: exit 1"
expect_err "sparse: route: could not open \"$RW/missing.txt\": No such file or directory" \
	"missing prompt file: exact message"
run route --model a --prompt-file "$RW"
expect_rc 1 "a directory as prompt file: exit 1"
expect_err "sparse: route: could not read prompt file \"$RW\": Is a directory" \
	"a directory as prompt file: exact message"
run --root "$RW" route --model a --prompt "$SIMPLE" --catalog "$M/../README.md"
expect_err "sparse: route: path \"$M/../README.md\" is outside the allowed root \"$RW\"" \
	"--root confines --catalog"
run --root "$RW" route --model small --prompt-file "$RW/simple.txt" --catalog "$RW/cat.csv"
expect_rc 0 "--root: files inside the root are read"

# ---- usage errors: exit 2 ------------------------------------------------------

route_usage --prompt "$SIMPLE" -- "missing --model MODEL"
route_usage --model a -- "missing --prompt TEXT or --prompt-file FILE"
route_usage --model a --prompt x --prompt-file "$RW/simple.txt" -- "give --prompt or --prompt-file, not both"
route_usage --classify --prompt x --model a -- 'option "--model" does not apply with --classify'
route_usage --classify --prompt x --catalog "$RW/cat.csv" -- 'option "--catalog" does not apply with --classify'
for t in 0 1.5 -0.1 abc nan 0.5x; do
	route_usage --model a --prompt x --threshold "$t" -- \
		"invalid quality threshold \"$t\": expected a number greater than 0 and at most 1"
done
for p in -1 100.5 x inf; do
	route_usage --model a --prompt x --percentage "$p" -- \
		"invalid routing percentage \"$p\": expected a number from 0 to 100"
done
for mt in -1 x 2147483648 1.5; do
	route_usage --model a --prompt x --max-tokens "$mt" -- \
		"invalid max tokens \"$mt\": expected an integer from 0 to 2147483647"
done
route_usage --model a --prompt x extra -- 'unexpected argument "extra"'
route_usage --model a --prompt x --level 3 -- 'unknown option "--level"'
route_usage --model -- 'option "--model" needs a value'
run estimate a b --model x
expect_err "sparse: estimate: unknown option \"--model\" (see 'sparse estimate --help')" \
	"estimate does not take --model: exact message"

# ---- the CLI and SQLite agree ---------------------------------------------------

# When ./sparse.so has the routing functions, load the built-in catalog (as
# listed by --help) into SQLite and compare every column for a few prompts.
if command -v sqlite3 >/dev/null && [ -f "$ROOT/sparse.so" ] &&
	sqlite3 :memory: ".load $ROOT/sparse" "SELECT sparse_install()" \
		"INSERT INTO sparse_route_catalog (model_id, cost_per_1m_tokens, context_window,
		 quality_simple, quality_moderate, quality_complex) VALUES ('a', 1, 10, 1, 1, 1)" \
		"SELECT count(*) FROM route_decision('a', 'b')" >/dev/null 2>&1; then
	{
		echo ".load $ROOT/sparse"
		echo ".output /dev/null"
		echo "SELECT sparse_install();"
		echo ".output stdout"
		builtin_rows | while read -r id rest; do
			# hardware may be two words ("2x nvidia-h100-80gb"): the last six fields are numbers
			hw=$(echo "$rest" | awk '{for (i = 1; i <= NF - 5; i++) printf "%s%s", (i > 1 ? " " : ""), $i}')
			nums=$(echo "$rest" | awk '{print $(NF-4) "," $(NF-3) "," $(NF-2) "," $(NF-1) "," $NF}')
			echo "INSERT INTO sparse_route_catalog (model_id, hardware, cost_per_1m_tokens, context_window, quality_simple, quality_moderate, quality_complex) VALUES ('$id', '$hw', $nums);"
		done
	} >"$RW/cat.sql"
	agree=0
	total=0
	for prompt in "$SIMPLE" "$HARD" "Summarize the causes of World War I in three paragraphs." "hi"; do
		for model in gpt-4o claude-3-5-sonnet llama-3.1-8b-instruct; do
			total=$((total + 1))
			p_sql=${prompt//\'/\'\'}
			sq=$( { cat "$RW/cat.sql"; echo ".mode json"
				echo "SELECT * FROM route_decision('$model', '$p_sql', 100, 0.85);"; } |
				sqlite3 :memory: 2>"$RW/sq.err")
			"$SPARSE" --json route --model "$model" --prompt "$prompt" >"$RW/cli.json" 2>&1
			if python3 -c '
import json, sys
sq = json.loads(sys.argv[1])[0]
cli = json.load(open(sys.argv[2]))
for k, v in cli.items():
    s = sq[k]
    if k == "routed":
        s = bool(s)
    if isinstance(v, float) or isinstance(s, float):
        assert s is not None and v is not None and abs(s - v) < 1e-9, (k, s, v)
    else:
        assert s == v, (k, s, v)
' "$sq" "$RW/cli.json" 2>"$RW/agree.err"; then
				agree=$((agree + 1))
			else
				echo "#   $model / ${prompt:0:30}: $(tail -1 "$RW/agree.err")"
			fi
		done
	done
	check "the CLI and SQLite route_decision agree on every column ($agree of $total)" [ "$agree" -eq "$total" ]
else
	ok "the CLI and SQLite route_decision agree # SKIP ./sparse.so has no route_decision yet"
fi
