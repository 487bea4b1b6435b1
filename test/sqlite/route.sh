#!/usr/bin/env bash
# route.sh -- tests of smart routing (docs/ROUTING.md) in the SQLite
# extension, through the real sqlite3 shell with ".load ./sparse".
#
#   make sqlite-test              (test/sqlite/run.sh sources this file, so
#                                  its checks count with the others)
#   bash test/sqlite/route.sh     (alone: its own counts and exit status)
#
# Each check runs a fresh "sqlite3 -batch -bail DB" on a database file
# under a temporary directory, unless it needs one connection for several
# steps (same-connection cache reloads) or two at once (a FIFO keeps the
# second shell open while another process trains).
#
# Covered: sparse_install() (objects, idempotence, the names and columns of
# the doc); the "not installed" errors; classification in English, German,
# French, Chinese, Japanese and Russian, and of a JSON chat transcript;
# every decision rule (cheapest qualifying, cost_priority 0, nothing
# qualifies, context window, missing model, disabled model); the rollout
# share and its determinism; the decision log and its columns; the report,
# column by column against sums computed here with awk; training
# determinism (same rows in another insertion order give the same weights)
# and the refresh after route_train in the same and in another connection;
# caches that follow a rolled-back catalog change; bad input and settings
# with their exact messages; DIRECTONLY (views and triggers cannot call
# route_decision, route_train, route_predict or sparse_install);
# route_hash against xxhsum; sqlite3_interrupt stops route_train and
# leaves the predictors as they were; the cache (".auth on" shows 200
# decisions read no table, and one catalog change one reload); the cached
# statements are kept prepared and the shell still closes cleanly, also
# when a TEMP trigger on the log calls route_decision again.

# ---- when run alone: the helpers run.sh would provide -----------------------
if ! declare -F ok > /dev/null; then
	set -u
	cd "$(dirname "$0")/../.." || exit 1
	ROUTE_ALONE=1
	VERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" sparse.control)
	EXT=${SPARSE_EXT:-./sparse}
	if [ ! -f "$EXT.so" ]; then
		echo "$EXT.so is missing: run make sparse.so" >&2
		exit 1
	fi
	mkdir -p build
	T=$(mktemp -d "$PWD/build/sqlite-route.XXXXXX") || exit 1
	trap 'rm -rf "$T"' EXIT
	n=0 passed=0 failed=0
	ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
	not_ok() {
		n=$((n + 1)); failed=$((failed + 1))
		echo "not ok $n - $1"
		[ $# -ge 2 ] && printf '#   got:  %s\n' "$2"
		[ $# -ge 3 ] && printf '#   want: %s\n' "$3"
		return 0
	}
	is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "$2" "$3"; fi; }
	q() { printf "'%s'" "${1//\'/\'\'}"; }
fi

R=$T/route
mkdir -p "$R"

# rt_sql DB SQL: run SQL on the database file DB after loading the extension.
rt_sql() {
	printf '.load %s\n%s\n' "$EXT" "$2" | sqlite3 -batch -bail "$1" 2>&1
}

# rt_err DB SQL: the error message of SQL (without "Runtime error near line N: ").
rt_err() {
	rt_sql "$1" "$2" | sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p' | tail -n 1
}

# rt_expect_error DESC DB SQL WANT: SQL fails with exactly this message.
rt_expect_error() {
	is "$1" "$(rt_err "$2" "$3")" "$4"
}

# rt_between DESC VALUE LOW HIGH: LOW <= VALUE <= HIGH (integers).
rt_between() {
	if [ -n "$2" ] && [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then ok "$1 ($2)"
	else not_ok "$1" "$2" "between $3 and $4"; fi
}

# A fresh database with sparse_install() run and the test catalog loaded.
CATALOG="INSERT INTO sparse_route_catalog VALUES
 ('small', 'llama', 'L4', 0.2, 8192, 0.9, 0.7, 0.4, 1),
 ('mid', 'llama', 'A10', 1.0, 32768, 0.95, 0.85, 0.6, 1),
 ('big', 'gpt', 'H100', 10.0, 128000, 0.97, 0.95, 0.9, 1),
 ('cheap-off', 'llama', 'CPU', 0.01, 128000, 0.99, 0.99, 0.99, 0);"
rt_fresh() {
	rm -f "$1"
	rt_sql "$1" "SELECT sparse_install(); $CATALOG" > /dev/null
}

# The length of a stored predictor, from route.h: 16 + 4 * 2^SP_ROUTE_DIM_BITS.
DIM_BITS=$(sed -n 's/^#define SP_ROUTE_DIM_BITS \([0-9]*\).*/\1/p' common/route.h)
BLOB_LEN=$((16 + 4 * (1 << DIM_BITS)))

SIMPLE='What is the capital of France?'
COMPLEX='Prove step by step that there are infinitely many primes. Then write a Python function implementing the sieve of Eratosthenes, analyze its time complexity, and optimize the algorithm for large inputs.'
NOT_INSTALLED='sparse routing is not installed in this database: run SELECT sparse_install() first'

# ---- before sparse_install --------------------------------------------------

DB0=$R/empty.db
rt_expect_error "route_decision before sparse_install() says to run it" "$DB0" \
	"SELECT * FROM route_decision('big', 'hi');" "$NOT_INSTALLED"
rt_expect_error "route_predict before sparse_install() says to run it" "$DB0" \
	"SELECT route_predict('hi', 'big');" "$NOT_INSTALLED"
rt_expect_error "route_train before sparse_install() says to run it" "$DB0" \
	"SELECT * FROM route_train();" "$NOT_INSTALLED"
is "route_classify needs no tables" "$(rt_sql "$DB0" "SELECT complexity FROM route_classify('hi');")" "simple"

# ---- sparse_install ---------------------------------------------------------

DB=$R/route.db
is "sparse_install() creates the objects and says so" "$(rt_sql "$DB" "SELECT sparse_install();")" \
	"sparse $VERSION installed"
is "sparse_install() is idempotent" "$(rt_sql "$DB" "SELECT sparse_install(); SELECT sparse_install();")" \
	"$(printf 'sparse %s installed\nsparse %s installed' "$VERSION" "$VERSION")"
is "the tables, the views and sparse_route_version's single row" \
	"$(rt_sql "$DB" "SELECT group_concat(type || ':' || name, ' ') FROM (SELECT type, name FROM sqlite_schema
  WHERE type IN ('table', 'view') ORDER BY name); SELECT count(*) FROM sparse_route_version;")" \
	"$(printf '%s\n1' 'table:sparse_jobs table:sparse_route_catalog table:sparse_route_feedback table:sparse_route_log table:sparse_route_model table:sparse_route_version view:sparse_routing_report view:sparse_savings_report table:sparse_settings table:sparse_storage')"
is "nine triggers: insert, update, delete on catalog, model and settings" \
	"$(rt_sql "$DB" "SELECT count(*), count(DISTINCT tbl_name) FROM sqlite_schema WHERE type = 'trigger';")" "9|3"
cols() { rt_sql "$DB" "SELECT group_concat(name, ' ') FROM pragma_table_info('$1');"; }
is "sparse_route_catalog columns" "$(cols sparse_route_catalog)" \
	"model_id family hardware cost_per_1m_tokens context_window quality_simple quality_moderate quality_complex enabled"
is "sparse_route_feedback columns" "$(cols sparse_route_feedback)" "id prompt model_id quality at"
is "sparse_route_log columns" "$(cols sparse_route_log)" \
	"id at request_id prompt_hash prompt features requested_model recommended_model served_model routed complexity est_tokens requested_cost_per_1m_tokens recommended_cost_per_1m_tokens served_cost_per_1m_tokens predicted_quality observed_quality"
is "sparse_route_model columns" "$(cols sparse_route_model)" \
	"model_id feature_version rows epochs train_loss trained_at weights"
is "sparse_routing_report columns" "$(cols sparse_routing_report)" \
	"requested_model requests routed routed_pct requested_cost recommended_cost served_cost savings_pct potential_savings_pct quality_routed quality_not_routed observed_routed observed_not_routed"
is "route_classify, route_decision and route_train columns" \
	"$(cols route_classify; cols route_decision; cols route_train)" \
	"$(printf '%s\n%s\n%s' 'complexity score est_prompt_tokens signals' \
		'complexity complexity_score requested_model recommended_model recommended_hardware estimated_cost_per_1m_tokens requested_cost_per_1m_tokens cost_savings_pct predicted_quality requested_predicted_quality routed reason' \
		'rows models epochs train_loss')"
is "the version changes with each catalog, predictor or settings change" \
	"$(rt_sql "$DB" "CREATE TEMP TABLE seen(v);
INSERT INTO seen SELECT v FROM sparse_route_version;
INSERT INTO sparse_settings VALUES ('x', 1); INSERT INTO seen SELECT v FROM sparse_route_version;
UPDATE sparse_settings SET value = 2; INSERT INTO seen SELECT v FROM sparse_route_version;
DELETE FROM sparse_settings; INSERT INTO seen SELECT v FROM sparse_route_version;
INSERT INTO sparse_route_model VALUES ('m', 1, 1, 1, 0, '', x''); INSERT INTO seen SELECT v FROM sparse_route_version;
DELETE FROM sparse_route_model; INSERT INTO seen SELECT v FROM sparse_route_version;
SELECT count(*), count(DISTINCT v) FROM seen;")" "6|6"
rt_expect_error "the catalog refuses a price that is not a number" "$DB" \
	"INSERT INTO sparse_route_catalog VALUES ('x', NULL, NULL, 'cheap', 100, 0.5, 0.5, 0.5, 1);" \
	"CHECK constraint failed: typeof(cost_per_1m_tokens) = 'real' AND cost_per_1m_tokens >= 0 (19)"
rt_expect_error "the catalog refuses a fractional context window" "$DB" \
	"INSERT INTO sparse_route_catalog VALUES ('x', NULL, NULL, 1, 100.5, 0.5, 0.5, 0.5, 1);" \
	"CHECK constraint failed: typeof(context_window) = 'integer' AND context_window > 0 (19)"

# ---- empty catalog ----------------------------------------------------------

rt_expect_error "route_decision on an empty catalog" "$DB" \
	"SELECT * FROM route_decision('big', 'hi');" "the routing catalog is empty"
rt_expect_error "route_train on an empty catalog" "$DB" \
	"SELECT * FROM route_train();" "the routing catalog is empty"
is "route_predict on an empty catalog is NULL" "$(rt_sql "$DB" "SELECT quote(route_predict('hi', 'big'));")" "NULL"
rt_sql "$DB" "$CATALOG" > /dev/null

# ---- classification ---------------------------------------------------------

# classify PROMPT: "complexity" of route_classify(PROMPT).
classify() { rt_sql "$DB" "SELECT complexity FROM route_classify($(q "$1"));"; }
for g in 'Hello, how are you?' 'Hallo, wie geht es dir?' 'Bonjour, comment ça va ?' '你好，你今天怎么样？' \
	'こんにちは、お元気ですか？' 'Привет, как дела?'; do
	is "a greeting is simple: $g" "$(classify "$g")" "simple"
done
is "English: a long multi-step proof and code request is complex" "$(classify "$COMPLEX")" "complex"
is "German: a long multi-step proof and code request is complex" \
	"$(classify 'Beweise Schritt für Schritt, dass es unendlich viele Primzahlen gibt. Implementiere danach das Sieb des Eratosthenes in Python, analysiere die Laufzeit, vergleiche es mit dem segmentierten Sieb und optimiere den Algorithmus für große Eingaben.')" "complex"
is "French: a long multi-step proof and code request is complex" \
	"$(classify "Démontrez étape par étape qu'il existe une infinité de nombres premiers. Ensuite, implémenter le crible d'Ératosthène en Python, analysez sa complexité, comparer avec le crible segmenté et optimiser l'algorithme pour de grandes entrées.")" "complex"
is "Chinese: a long multi-step proof and code request is complex" \
	"$(classify '请逐步证明存在无穷多个素数。然后编写一个实现埃拉托斯特尼筛法的Python函数，分析其时间复杂度，并针对大规模输入优化该算法，最后给出完整的代码和证明。')" "complex"
is "Japanese: a long multi-step proof and code request is complex" \
	"$(classify '素数が無限に存在することを段階的に証明してください。次に、エラトステネスの篩を実装するPython関数を書き、その計算量を分析し、大きな入力に対してアルゴリズムを最適化してください。')" "complex"
is "Russian: a long multi-step proof and code request is complex" \
	"$(classify 'Докажите пошагово, что простых чисел бесконечно много. Затем реализуйте решето Эратосфена на Python, проанализируйте его сложность, сравните с сегментированным решетом и оптимизируй алгоритм для больших входных данных.')" "complex"
SYSTEM=$(printf 'You are a meticulous assistant. %.0s' $(seq 40))
CHAT="[{\"role\": \"system\", \"content\": \"$SYSTEM $COMPLEX\"}, {\"role\": \"user\", \"content\": \"$COMPLEX\"}, {\"role\": \"assistant\", \"content\": \"Done.\"}, {\"role\": \"user\", \"content\": \"Thanks! What is 2 + 2?\"}]"
is "a JSON chat transcript is classified by its last user message (simple)" "$(classify "$CHAT")" "simple"
is "... while the system prompt alone is not simple" "$(classify "$SYSTEM $COMPLEX")" "complex"
is "the {\"messages\": [...]} form with content parts counts the last user message too" \
	"$(rt_sql "$DB" "SELECT complexity, signals LIKE '%chat:last_user%' FROM route_classify(json_object('messages', json_array(
  json_object('role', 'system', 'content', replace(hex(zeroblob(40)), '00', 'Prove every claim step by step and analyze the complexity. ')),
  json_object('role', 'user', 'content', json_array(json_object('type', 'text', 'text', 'hello'))))));")" "simple|1"
is "text that only looks like JSON is classified as it is" \
	"$(rt_sql "$DB" "SELECT complexity, signals LIKE '%chat%' FROM route_classify('[{\"role\": \"user\", \"content\": \"hi\"}');")" "simple|0"
is "route_classify: score, tokens and signals of a complex prompt" \
	"$(rt_sql "$DB" "SELECT score >= 0.6 AND score <= 1, est_prompt_tokens > 20, signals LIKE 'tokens=%keyword:prove%' FROM route_classify($(q "$COMPLEX"));")" "1|1|1"
is "route_classify: max_tokens defaults to 100" \
	"$(rt_sql "$DB" "SELECT (SELECT score FROM route_classify('hi')) = (SELECT score FROM route_classify('hi', 100));")" "1"

# ---- decisions --------------------------------------------------------------

# decide ARGS: the main columns of route_decision(ARGS).
decide() {
	rt_sql "$DB" "SELECT recommended_model, routed, reason FROM route_decision($1);"
}
is "cheapest qualifying model: every column" \
	"$(rt_sql "$DB" "SELECT complexity, complexity_score < 0.3, requested_model, recommended_model, recommended_hardware,
  estimated_cost_per_1m_tokens, requested_cost_per_1m_tokens, cost_savings_pct, predicted_quality,
  requested_predicted_quality, routed, reason FROM route_decision('big', $(q "$SIMPLE"));")" \
	"simple|1|big|small|L4|0.2|10.0|98.0|0.9|0.97|1|cheapest model meeting 0.85 of the requested model's predicted quality (0.900 vs 0.970)"
is "cost_priority 0: the best quality among cheaper qualifying models" \
	"$(decide "'big', $(q "$SIMPLE"), 100, 0.85, 0")" \
	"mid|1|best predicted quality among cheaper models meeting 0.85 of the requested model's (0.950 vs 0.970)"
is "nothing qualifies: the requested model is kept" \
	"$(decide "'big', $(q "$COMPLEX")")" \
	"big|0|the requested model is already the cheapest that meets 0.85 of its predicted quality"
is "a higher threshold leaves only the requested model" \
	"$(decide "'big', $(q "$SIMPLE"), 100, 0.99")" \
	"big|0|the requested model is already the cheapest that meets 0.99 of its predicted quality"
is "context window: 10000 output tokens do not fit small (8192), mid serves" \
	"$(decide "'big', $(q "$SIMPLE"), 10000")" \
	"mid|1|cheapest model meeting 0.85 of the requested model's predicted quality (0.950 vs 0.970)"
is "context window: 40000 output tokens fit only big" \
	"$(decide "'big', $(q "$SIMPLE"), 40000")" \
	"big|0|the requested model is already the cheapest that meets 0.85 of its predicted quality"
is "missing model: returned unchanged, not routed, NULL prices and qualities, a reason" \
	"$(rt_sql "$DB" "SELECT requested_model, recommended_model, quote(recommended_hardware), quote(estimated_cost_per_1m_tokens),
  quote(requested_cost_per_1m_tokens), quote(cost_savings_pct), quote(predicted_quality), quote(requested_predicted_quality),
  routed, reason FROM route_decision('nope', $(q "$SIMPLE"));")" \
	"nope|nope|NULL|NULL|NULL|NULL|NULL|NULL|0|model \"nope\" is not in the routing catalog; returned unchanged"
is "a disabled model is never chosen, even cheaper and better" \
	"$(decide "'big', $(q "$SIMPLE")"; decide "'big', $(q "$SIMPLE"), 100, 0.85, 0"; decide "'big', 'hi', 40000")" \
	"$(printf '%s\n%s\n%s' "small|1|cheapest model meeting 0.85 of the requested model's predicted quality (0.900 vs 0.970)" \
		"mid|1|best predicted quality among cheaper models meeting 0.85 of the requested model's (0.950 vs 0.970)" \
		"big|0|the requested model is already the cheapest that meets 0.85 of its predicted quality")"
is "requesting the disabled model itself routes away from it" \
	"$(decide "'cheap-off', $(q "$SIMPLE")")" \
	"small|1|the requested model is disabled; cheapest model meeting 0.85 of the requested model's predicted quality (0.900 vs 0.990)"
is "no enabled model holds the request: the requested model is kept" \
	"$(decide "'big', 'hi', 250000")" \
	"big|0|no enabled model has a context window of 250001 tokens; keeping the requested model"
is "... and is chosen once enabled (same connection: the cache follows the catalog)" \
	"$(rt_sql "$DB" "SELECT recommended_model FROM route_decision('big', $(q "$SIMPLE"));
BEGIN; UPDATE sparse_route_catalog SET enabled = 1 WHERE model_id = 'cheap-off';
SELECT recommended_model FROM route_decision('big', $(q "$SIMPLE"));
ROLLBACK;
SELECT recommended_model FROM route_decision('big', $(q "$SIMPLE"));")" "$(printf 'small\ncheap-off\nsmall')"
is "named arguments through the hidden columns" \
	"$(rt_sql "$DB" "SELECT recommended_model FROM route_decision WHERE requested_model_arg = 'big' AND prompt = $(q "$SIMPLE") AND cost_priority = 0;")" "mid"
is "route_predict: the prior of a model without a predictor; NULL for others" \
	"$(rt_sql "$DB" "SELECT route_predict($(q "$SIMPLE"), 'small'), route_predict($(q "$COMPLEX"), 'big'),
  quote(route_predict('hi', 'nope')), quote(route_predict(NULL, 'big')), quote(route_predict('hi', NULL));")" \
	"0.9|0.9|NULL|NULL|NULL"

# ---- rollout ----------------------------------------------------------------

# rollout: how many of 10,000 request ids are routed, and a digest of which.
ROLLOUT="WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 10000)
SELECT sum(d.routed), sum(CASE WHEN d.routed THEN x END), sum(d.recommended_model = 'small'),
  sum(d.reason LIKE 'outside rollout%')
FROM i, route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'req-' || x) AS d;"
is "rollout 100 (default): every request is routed" "$(rt_sql "$DB" "$ROLLOUT")" "10000|50005000|10000|0"
rt_sql "$DB" "INSERT INTO sparse_settings VALUES ('sparse.routing_percentage', 10);" > /dev/null
r1=$(rt_sql "$DB" "$ROLLOUT")
rt_between "rollout 10: 8-12% of 10,000 request ids are routed" "${r1%%|*}" 800 1200
is "rollout 10: the others still report the recommendation, reason 'outside rollout'" \
	"$(echo "$r1" | cut -d'|' -f3,4)" "10000|$((10000 - ${r1%%|*}))"
is "rollout is deterministic: the same ids are routed in another connection" "$(rt_sql "$DB" "$ROLLOUT")" "$r1"
is "outside the rollout: not routed, the recommendation still reported, reason" \
	"$(rt_sql "$DB" "SELECT d.recommended_model, d.routed, d.reason FROM (
  WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 100)
  SELECT min(x) AS x FROM i, route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'req-' || x) AS o WHERE NOT o.routed) AS f,
  route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'req-' || f.x) AS d;")" \
	'small|0|outside rollout (10% routed); would route to "small"'
is "without a request_id the prompt decides the rollout side (same answer twice)" \
	"$(rt_sql "$DB" "SELECT (SELECT routed FROM route_decision('big', 'p1')) = (SELECT routed FROM route_decision('big', 'p1'));")" "1"
rt_sql "$DB" "UPDATE sparse_settings SET value = 0 WHERE name = 'sparse.routing_percentage';" > /dev/null
is "rollout 0: no request is routed, every one still recommends small" "$(rt_sql "$DB" "$ROLLOUT")" "0||10000|10000"
rt_sql "$DB" "UPDATE sparse_settings SET value = 12.5 WHERE name = 'sparse.routing_percentage';" > /dev/null
is "a fractional percentage (12.5)" \
	"$(rt_sql "$DB" "SELECT DISTINCT reason FROM route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'req-' || (
  WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 100)
  SELECT min(x) FROM i, route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'req-' || x) AS d WHERE NOT d.routed));")" \
	'outside rollout (12.5% routed); would route to "small"'
rt_sql "$DB" "UPDATE sparse_settings SET value = '  100 ' WHERE name = 'sparse.routing_percentage';" > /dev/null
is "a percentage may be numeric text" "$(rt_sql "$DB" "SELECT routed FROM route_decision('big', $(q "$SIMPLE"));")" "1"

# ---- settings and arguments: exact errors -------------------------------------

rt_expect_error "routing percentage 150 in sparse_settings" "$DB" \
	"INSERT OR REPLACE INTO sparse_settings VALUES ('sparse.routing_percentage', 150);
SELECT * FROM route_decision('big', 'hi');" \
	"invalid value for setting \"sparse.routing_percentage\" in sparse_settings: '150' (a number from 0 to 100)"
rt_expect_error "routing percentage that is not a number" "$DB" \
	"INSERT OR REPLACE INTO sparse_settings VALUES ('sparse.routing_percentage', 'ten');
SELECT * FROM route_decision('big', 'hi');" \
	"invalid value for setting \"sparse.routing_percentage\" in sparse_settings: 'ten' (a number from 0 to 100)"
rt_expect_error "sparse.route_log that is not a boolean" "$DB" \
	"DELETE FROM sparse_settings; INSERT INTO sparse_settings VALUES ('sparse.route_log', 'maybe');
SELECT route_predict('hi', 'big');" \
	"invalid value for setting \"sparse.route_log\" in sparse_settings: 'maybe' (on or off)"
rt_sql "$DB" "DELETE FROM sparse_settings;" > /dev/null
rt_expect_error "NULL prompt" "$DB" "SELECT * FROM route_decision('big', NULL);" "prompt must not be null"
rt_expect_error "NULL model" "$DB" "SELECT * FROM route_decision(NULL, 'hi');" "requested_model must not be null"
rt_expect_error "negative max_tokens" "$DB" "SELECT * FROM route_decision('big', 'hi', -1);" \
	"max_tokens must be at least 0, not -1"
rt_expect_error "quality_threshold 0" "$DB" "SELECT * FROM route_decision('big', 'hi', 100, 0);" \
	"quality_threshold must be in (0, 1], not 0"
rt_expect_error "quality_threshold 1.5" "$DB" "SELECT * FROM route_decision('big', 'hi', 100, 1.5);" \
	"quality_threshold must be in (0, 1], not 1.5"
rt_expect_error "NULL max_tokens" "$DB" "SELECT * FROM route_decision('big', 'hi', NULL);" "max_tokens must not be null"
rt_expect_error "NULL quality_threshold" "$DB" "SELECT * FROM route_decision('big', 'hi', 100, NULL);" \
	"quality_threshold must not be null"
rt_expect_error "NULL cost_priority" "$DB" "SELECT * FROM route_decision('big', 'hi', 100, 0.85, NULL);" \
	"cost_priority must not be null"
rt_expect_error "max_tokens that is not an integer" "$DB" "SELECT * FROM route_decision('big', 'hi', 'many');" \
	"argument \"max_tokens\" of route_decision() must be an integer"
rt_expect_error "a missing prompt" "$DB" "SELECT * FROM route_decision('big');" \
	"missing argument \"prompt\" of route_decision()"
rt_expect_error "route_classify: NULL prompt" "$DB" "SELECT * FROM route_classify(NULL);" "prompt must not be null"
rt_expect_error "route_classify: NULL max_tokens" "$DB" "SELECT * FROM route_classify('hi', NULL);" \
	"max_tokens must not be null"
rt_expect_error "route_classify: negative max_tokens" "$DB" "SELECT * FROM route_classify('hi', -5);" \
	"max_tokens must be at least 0, not -5"
is "an error leaves the surrounding transaction usable (no -bail: COMMIT keeps the insert)" \
	"$(printf '.load %s\nCREATE TABLE kept(x);\nBEGIN;\nINSERT INTO kept VALUES (1);\nSELECT * FROM route_decision(NULL, %s);\nCOMMIT;\nSELECT count(*) FROM kept;\n' \
		"$EXT" "'x'" | sqlite3 -batch "$DB" 2>/dev/null)" "1"

# ---- route_hash -------------------------------------------------------------

is "route_hash('hello') is XXH3-64 as a signed integer (pinned)" \
	"$(rt_sql "$DB" "SELECT route_hash('hello');")" "-7685981735718036227"
if command -v xxhsum > /dev/null; then
	hex=$(printf 'smart routing, 路由' | xxhsum -H3 | sed 's/.* = //')
	is "route_hash of a UTF-8 string agrees with xxhsum -H3" \
		"$(rt_sql "$DB" "SELECT printf('%016x', route_hash('smart routing, 路由'));")" "$hex"
fi
is "route_hash(NULL) is NULL; it may index (DETERMINISTIC) and serve views (INNOCUOUS)" \
	"$(rt_sql "$DB" "PRAGMA trusted_schema = OFF; CREATE TABLE h(x); CREATE INDEX h_i ON h(route_hash(x));
CREATE VIEW hv AS SELECT route_hash('hello') AS v, (SELECT complexity FROM route_classify('hi')) AS c;
SELECT quote(route_hash(NULL)), v, c FROM hv;")" "NULL|-7685981735718036227|simple"

# ---- DIRECTONLY ---------------------------------------------------------------

# (in the main schema: SQLite trusts TEMP views and triggers, the application's own)
DDB=$R/direct.db
direct() { rm -f "$DDB"; rt_sql "$DDB" "SELECT sparse_install(); $CATALOG" > /dev/null; rt_err "$DDB" "$1"; }
is "a view cannot call route_decision (DIRECTONLY)" \
	"$(direct "CREATE VIEW v AS SELECT * FROM route_decision('big', 'hi'); SELECT * FROM v;")" \
	"unsafe use of virtual table \"route_decision\""
is "a trigger cannot call route_decision (DIRECTONLY)" \
	"$(direct "CREATE TABLE t(x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT routed FROM route_decision('big', 'hi'); END;
INSERT INTO t VALUES (1);")" \
	"unsafe use of virtual table \"route_decision\""
is "a trigger cannot call route_train (DIRECTONLY)" \
	"$(direct "CREATE TABLE t(x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT * FROM route_train(); END;
INSERT INTO t VALUES (1);")" \
	"unsafe use of virtual table \"route_train\""
is "a view cannot call route_train (DIRECTONLY)" \
	"$(direct "CREATE VIEW v AS SELECT * FROM route_train(); SELECT * FROM v;")" \
	"unsafe use of virtual table \"route_train\""
is "a view cannot call sparse_install (DIRECTONLY)" \
	"$(direct "CREATE VIEW v AS SELECT sparse_install(); SELECT * FROM v;")" "unsafe use of sparse_install()"
is "a trigger cannot call sparse_install (DIRECTONLY)" \
	"$(direct "CREATE TABLE t(x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT sparse_install(); END;
INSERT INTO t VALUES (1);")" "unsafe use of sparse_install()"
is "a view cannot call route_predict (DIRECTONLY)" \
	"$(direct "CREATE VIEW v AS SELECT route_predict('hi', 'big'); SELECT * FROM v;")" "unsafe use of route_predict()"
is "a view may call route_classify (INNOCUOUS), even with trusted_schema off" \
	"$(direct "SELECT 1;"; rt_sql "$DDB" "CREATE VIEW v AS SELECT complexity FROM route_classify('hi');
PRAGMA trusted_schema = OFF; SELECT * FROM v;")" "simple"
rt_expect_error "route_train cannot run inside INSERT ... SELECT (no savepoint possible)" "$DB" \
	"CREATE TEMP TABLE t(a, b, c, d); INSERT INTO t SELECT * FROM route_train();" \
	"route_train() cannot run inside a statement that writes (such as INSERT ... SELECT): call it in a SELECT of its own"

# ---- the decision log ---------------------------------------------------------

rt_sql "$DB" "INSERT INTO sparse_settings VALUES ('sparse.route_log', 'on');" > /dev/null
is "with sparse.route_log on, one row per decision with every column" \
	"$(rt_sql "$DB" "SELECT routed FROM route_decision('big', $(q "$SIMPLE"), 50, 0.85, 1, 'log-1');
SELECT request_id, prompt_hash = route_hash($(q "$SIMPLE")), quote(prompt), length(features) > 0 AND length(features) % 4 = 0,
  requested_model, recommended_model, served_model, routed, complexity,
  est_tokens = 50 + (SELECT est_prompt_tokens FROM route_classify($(q "$SIMPLE"))),
  requested_cost_per_1m_tokens, recommended_cost_per_1m_tokens, served_cost_per_1m_tokens, predicted_quality,
  quote(observed_quality), at LIKE '____-__-__T__:__:__.___Z'
FROM sparse_route_log;")" \
	"$(printf '1\nlog-1|1|NULL|1|big|small|small|1|simple|1|10.0|0.2|0.2|0.9|NULL|1')"
# decode the blob here: little-endian u32 slots, ascending, each < 2^SP_ROUTE_DIM_BITS
is "features: the prompt's distinct hashed slots, ascending little-endian u32 below 2^$DIM_BITS" \
	"$(rt_sql "$DB" "SELECT hex(features) FROM sparse_route_log;" | awk -v lim=$((1 << DIM_BITS)) '{
	n = length($0) / 8; good = n > 3; prev = -1
	for (i = 0; i < n; i++) {
		v = 0
		for (b = 3; b >= 0; b--)
			v = v * 256 + 16 * (index("0123456789ABCDEF", substr($0, 8 * i + 2 * b + 1, 1)) - 1) \
				+ index("0123456789ABCDEF", substr($0, 8 * i + 2 * b + 2, 1)) - 1
		if (v >= lim || v <= prev) good = 0
		prev = v
	}
	print good }')" "1"
rt_sql "$DB" "INSERT INTO sparse_settings VALUES ('sparse.route_log_prompts', 'ON'), ('sparse.routing_percentage', 0);" > /dev/null
is "with route_log_prompts on the prompt is kept; outside the rollout the requested model serves" \
	"$(rt_sql "$DB" "SELECT routed FROM route_decision('big', $(q "$SIMPLE"));
SELECT quote(request_id), prompt, recommended_model, served_model, routed, served_cost_per_1m_tokens, predicted_quality
FROM sparse_route_log ORDER BY id DESC LIMIT 1;")" \
	"$(printf '0\nNULL|%s|small|big|0|10.0|0.97' "$SIMPLE")"
is "a missing model is logged with NULL prices" \
	"$(rt_sql "$DB" "SELECT routed FROM route_decision('nope', 'hi');
SELECT served_model, quote(requested_cost_per_1m_tokens), quote(served_cost_per_1m_tokens), quote(predicted_quality)
FROM sparse_route_log ORDER BY id DESC LIMIT 1;")" "$(printf '0\nnope|NULL|NULL|NULL')"
is "with sparse.route_log off nothing is logged" \
	"$(rt_sql "$DB" "UPDATE sparse_settings SET value = 'off' WHERE name = 'sparse.route_log';
SELECT count(*) FROM sparse_route_log; SELECT routed FROM route_decision('big', 'hi'); SELECT count(*) FROM sparse_route_log;")" \
	"$(printf '3\n0\n3')"
rt_sql "$DB" "DELETE FROM sparse_settings;" > /dev/null

# ---- the report ---------------------------------------------------------------

RDB=$R/report.db
rt_fresh "$RDB"
is "report of an empty log: only the total row, NULL where there is no data" \
	"$(rt_sql "$RDB" "SELECT quote(requested_model), requests, routed, quote(routed_pct), quote(requested_cost),
  quote(served_cost), quote(savings_pct), quote(potential_savings_pct), quote(quality_routed), observed_routed, observed_not_routed
FROM sparse_routing_report;")" "NULL|0|0|NULL|NULL|NULL|NULL|NULL|NULL|0|0"
rt_sql "$RDB" "INSERT INTO sparse_settings VALUES ('sparse.route_log', 1);
SELECT count(*) FROM route_decision('big', $(q "$SIMPLE"), 100, 0.85, 1, 'r1');
SELECT count(*) FROM route_decision('big', $(q "$COMPLEX"), 200, 0.85, 1, 'r2');
SELECT count(*) FROM route_decision('mid', 'Hello there, how are you?', 50, 0.85, 1, 'r3');
SELECT count(*) FROM route_decision('nope', 'hi', 100, 0.85, 1, 'r4');
SELECT count(*) FROM route_decision('big', 'Tell me a joke', 100, 0.85, 1, 'r5');
UPDATE sparse_route_log SET observed_quality = CASE request_id WHEN 'r1' THEN 0.8 WHEN 'r2' THEN 0.9
  WHEN 'r3' THEN 0.6 WHEN 'r4' THEN 0.5 END;" > /dev/null
is "report: the decisions behind it (routed r1, r3, r5)" \
	"$(rt_sql "$RDB" "SELECT group_concat(request_id || ':' || served_model || ':' || routed, ' ') FROM sparse_route_log;")" \
	"r1:small:1 r2:big:0 r3:small:1 r4:nope:0 r5:small:1"
# The report recomputed here from the log rows, printed as the view is below.
want=$(rt_sql "$RDB" ".mode list
.nullvalue N
SELECT requested_model, routed, est_tokens, requested_cost_per_1m_tokens, recommended_cost_per_1m_tokens,
  served_cost_per_1m_tokens, observed_quality FROM sparse_route_log;" | awk -F'|' '
function add(k) {
	req[k]++; rt[k] += $2
	if ($4 != "N") { rc[k] += $3 * $4 / 1e6; hasp[k] = 1 }
	if ($5 != "N") ec[k] += $3 * $5 / 1e6
	if ($6 != "N") sc[k] += $3 * $6 / 1e6
	if ($7 != "N") { if ($2) { qr[k] += $7; nr[k]++ } else { qn[k] += $7; nn[k]++ } }
}
function f(x) { return sprintf("%.9g", x) }
function row(k, name) {
	printf "%s|%d|%d|%s|%s|%s|%s|%s|%s|%s|%s|%d|%d\n", name, req[k], rt[k], f(100 * rt[k] / req[k]),
		hasp[k] ? f(rc[k]) : "N", hasp[k] ? f(ec[k]) : "N", hasp[k] ? f(sc[k]) : "N",
		hasp[k] ? f(100 * (1 - sc[k] / rc[k])) : "N", hasp[k] ? f(100 * (1 - ec[k] / rc[k])) : "N",
		nr[k] ? f(qr[k] / nr[k]) : "N", nn[k] ? f(qn[k] / nn[k]) : "N", nr[k], nn[k]
}
{ add($1); add("") ; names[$1] = 1 }
END { row("big", "big"); row("mid", "mid"); row("nope", "nope"); row("", "N") }')
g() { echo "CASE WHEN $1 IS NULL THEN 'N' ELSE printf('%.9g', $1) END"; }
got=$(rt_sql "$RDB" "SELECT ifnull(requested_model, 'N'), requests, routed, $(g routed_pct),
  $(g requested_cost), $(g recommended_cost), $(g served_cost), $(g savings_pct), $(g potential_savings_pct),
  $(g quality_routed), $(g quality_not_routed), observed_routed, observed_not_routed
FROM sparse_routing_report;")
is "report: every column of every row equals the sums recomputed from the log" "$got" "$want"
is "report: known values (total routed 60%, mid saves 80%, qualities 0.7/0.7, 2+2 observed)" \
	"$(rt_sql "$RDB" "SELECT quote(requested_model), requests, routed, routed_pct, round(savings_pct, 6), quality_routed, quality_not_routed,
  observed_routed, observed_not_routed FROM sparse_routing_report WHERE requested_model IS NULL OR requested_model = 'mid';")" \
	"$(printf "'mid'|1|1|100.0|80.0|0.6||1|0\nNULL|5|3|60.0|%s|0.7|0.7|2|2" \
		"$(rt_sql "$RDB" "SELECT round(100 * (1 - sum(est_tokens * served_cost_per_1m_tokens) / sum(est_tokens * requested_cost_per_1m_tokens)), 6) FROM sparse_route_log;")")"
is "report: a requested cost of 0 gives 0 savings, not a division by zero" \
	"$(rt_sql "$RDB" "UPDATE sparse_route_log SET requested_cost_per_1m_tokens = 0 WHERE request_id = 'r3';
SELECT savings_pct, potential_savings_pct FROM sparse_routing_report WHERE requested_model = 'mid';")" "0.0|0.0"

# ---- training -----------------------------------------------------------------

# FEEDBACK ORDER: 40 prompts x 3 models (small bad, mid good, big best), in ORDER.
feedback() {
	echo "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 40)
INSERT INTO sparse_route_feedback(prompt, model_id, quality)
SELECT 'What is the capital of country number ' || x || '?', m.model_id,
  CASE m.model_id WHEN 'small' THEN 0.1 WHEN 'mid' THEN 0.9 ELSE 1.0 END
FROM i, sparse_route_catalog AS m WHERE m.enabled ORDER BY $1;"
}
TA=$R/train-a.db
TB=$R/train-b.db
rt_fresh "$TA"
rt_fresh "$TB"
is "route_train: rows, models, epochs, train_loss (rows of a model not in the catalog skipped)" \
	"$(rt_sql "$TA" "$(feedback 'x, m.model_id')
INSERT INTO sparse_route_feedback(prompt, model_id, quality) VALUES ('hi', 'ghost', 0.5);
SELECT rows, models, epochs, train_loss > 0 AND train_loss < 1 FROM route_train();
DELETE FROM sparse_route_feedback WHERE model_id = 'ghost';")" \
	"120|3|8|1"
is "sparse_route_model: one row per model with feedback, SPRW blobs of the documented length" \
	"$(rt_sql "$TA" "SELECT group_concat(model_id || ':' || feature_version || ':' || rows || ':' || epochs || ':' || length(weights) || ':' || hex(substr(weights, 1, 4)), ' ') FROM sparse_route_model;")" \
	"big:1:40:8:$BLOB_LEN:53505257 mid:1:40:8:$BLOB_LEN:53505257 small:1:40:8:$BLOB_LEN:53505257"
WEIGHTS="SELECT hex(group_concat(hex(weights))) FROM (SELECT weights FROM sparse_route_model ORDER BY model_id);"
wa=$(rt_sql "$TA" "$WEIGHTS" | sha256sum | cut -c1-16)
is "training is deterministic: a second route_train gives identical weights" \
	"$(rt_sql "$TA" "SELECT count(*) FROM route_train(); $WEIGHTS" | tail -n 1 | sha256sum | cut -c1-16)" "$wa"
is "... and so does another database holding the same rows inserted in another order" \
	"$(rt_sql "$TB" "$(feedback 'm.model_id DESC, x DESC') SELECT count(*) FROM route_train(); $WEIGHTS" | tail -n 1 | sha256sum | cut -c1-16)" "$wa"
wb=$(rt_sql "$TB" "UPDATE sparse_route_feedback SET quality = 0.2 WHERE id = 1; SELECT count(*) FROM route_train(); $WEIGHTS" | tail -n 1 | sha256sum | cut -c1-16)
if [ -n "$wb" ] && [ "$wb" != "$wa" ]; then ok "one changed quality gives other weights"
else not_ok "one changed quality gives other weights" "$wb" "not $wa"; fi
is "logged requests with an observed quality are training rows too" \
	"$(rt_sql "$TA" "INSERT INTO sparse_settings VALUES ('sparse.route_log', 1);
SELECT count(*) FROM route_decision('big', 'What is the capital of country number 7?');
SELECT count(*) FROM route_decision('big', 'What is the capital of country number 8?');
UPDATE sparse_route_log SET observed_quality = 0.3 WHERE id = 1;
DELETE FROM sparse_settings;
SELECT rows FROM route_train();")" "$(printf '1\n1\n121')"
rt_expect_error "a corrupt predictor is refused, naming the model (SQLITE_CORRUPT_VTAB, shown as 11)" "$TA" \
	"UPDATE sparse_route_model SET weights = x'00' WHERE model_id = 'mid'; SELECT * FROM route_decision('big', 'hi');" \
	"predictor of \"mid\" is 1 bytes, expected $BLOB_LEN (11)"
rt_expect_error "... and so is one with a wrong magic" "$TA" \
	"UPDATE sparse_route_model SET weights = zeroblob($BLOB_LEN) WHERE model_id = 'mid'; SELECT route_predict('hi', 'big');" \
	"predictor of \"mid\" is not a sparse predictor (11)"
is "predictors of another feature version are left out (the prior is used)" \
	"$(rt_sql "$TA" "UPDATE sparse_route_model SET feature_version = 0 WHERE model_id = 'mid';
SELECT route_predict($(q "$SIMPLE"), 'mid');")" "0.95"

# ---- retraining refreshes the caches ---------------------------------------------

RT=$R/refresh.db
rt_fresh "$RT"
DECIDE="SELECT recommended_model FROM route_decision('big', $(q "$SIMPLE"));"
is "retrain in the same connection: the decision follows the new predictors" \
	"$(rt_sql "$RT" "$DECIDE $(feedback 'x') SELECT count(*) FROM route_train(); $DECIDE")" "$(printf 'small\n1\nmid')"
is "route_predict follows too (small learned to be bad at this)" \
	"$(rt_sql "$RT" "SELECT route_predict($(q "$SIMPLE"), 'small') < 0.5, route_predict($(q "$SIMPLE"), 'big') > 0.9;")" "1|1"

# Two connections: B keeps its cache loaded while A (another process) retrains.
RT2=$R/refresh2.db
rt_fresh "$RT2"
mkfifo "$R/fifo"
sqlite3 -batch "$RT2" < "$R/fifo" > "$R/b.out" 2>&1 &
bpid=$!
exec 7> "$R/fifo"
printf '.load %s\nSELECT %s, recommended_model FROM route_decision(%s, %s);\n.shell touch %s\n' \
	"$EXT" "'B1'" "'big'" "$(q "$SIMPLE")" "$R/b1.done" >&7
for _ in $(seq 200); do [ -e "$R/b1.done" ] && break; sleep 0.05; done
rt_sql "$RT2" "$(feedback 'x') SELECT count(*) FROM route_train();" > /dev/null
printf 'SELECT %s, recommended_model FROM route_decision(%s, %s);\n.quit\n' "'B2'" "'big'" "$(q "$SIMPLE")" >&7
exec 7>&-
wait "$bpid"
is "retrain in another process: a connection that had cached the catalog sees the new predictor" \
	"$(cat "$R/b.out")" "$(printf 'B1|small\nB2|mid')"

# ---- the cached statement and closing --------------------------------------------

is "the version statement stays prepared between calls" \
	"$(rt_sql "$RT" "SELECT route_predict('hi', 'big') > 0; SELECT count(*) FROM sqlite_stmt WHERE sql = 'SELECT v FROM main.sparse_route_version';")" \
	"$(printf '1\n1')"
is "a session that used only a scalar still closes cleanly (no unfinalized statement)" \
	"$(printf '.load %s\nSELECT route_predict(%s, %s) > 0;\n' "$EXT" "'hi'" "'big'" | sqlite3 -batch "$RT" 2>&1; echo "exit $?")" \
	"$(printf '1\nexit 0')"
# The shell's ".auth on" prints every read any prepare authorizes, ours too.
DECIDE200="WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 200)
SELECT count(*) FROM i, route_decision('big', 'hello', 100, 0.85, 1, x) AS d;"
is "the cache: 200 decisions read neither table; after a catalog change, one reload reads each once" \
	"$(rt_sql "$RT" "SELECT count(*) FROM route_decision('big', 'hello');
.auth on
.print phase warm
$DECIDE200
.print phase change
UPDATE sparse_route_catalog SET hardware = 'L4x2' WHERE model_id = 'small';
.print phase after
$DECIDE200
.auth off" | awk '/^phase/ { p = $2 } /READ "sparse_route_catalog" "quality_complex"/ { c[p]++ }
	/READ "sparse_route_model" "weights"/ { m[p]++ }
	END { printf "warm %d/%d change %d/%d after %d/%d", c["warm"], m["warm"], c["change"], m["change"], c["after"], m["after"] }')" \
	"warm 0/0 change 0/0 after 1/1"

ADB=$R/anchor.db
cp "$RT" "$ADB"
VSQL="'SELECT v FROM main.sparse_route_version'"
is "a table named sparse_route_cache (nothing to finalize a cached statement): nothing kept, clean close" \
	"$(printf '.load %s\nCREATE TABLE sparse_route_cache(x);\nSELECT route_predict(%s, %s) > 0;\nSELECT recommended_model FROM route_decision(%s, %s);\nSELECT count(*) FROM sqlite_stmt WHERE sql = %s;\n' \
		"$EXT" "'hi'" "'big'" "'big'" "$(q "$SIMPLE")" "$VSQL" | sqlite3 -batch "$ADB" 2>&1; echo "exit $?")" \
	"$(printf '1\nmid\n0\nexit 0')"
is "a TEMP table named sparse_route_cache does not hide ours (main.sparse_route_cache)" \
	"$(printf '.load %s\nCREATE TEMP TABLE sparse_route_cache(x);\nSELECT route_predict(%s, %s) > 0;\nSELECT count(*) FROM sqlite_stmt WHERE sql = %s;\n' \
		"$EXT" "'hi'" "'big'" "$VSQL" | sqlite3 -batch "$RT" 2>&1; echo "exit $?")" \
	"$(printf '1\n1\nexit 0')"
is "a TEMP trigger on the log calling route_decision again: both logged, clean close" \
	"$(printf '.load %s\nINSERT INTO sparse_settings VALUES (%s, 1);\nCREATE TEMP TRIGGER tt AFTER INSERT ON sparse_route_log WHEN NEW.request_id = %s BEGIN
  SELECT routed FROM route_decision(%s, %s, 100, 0.85, 1, %s); SELECT route_predict(%s, %s); END;
SELECT recommended_model FROM route_decision(%s, %s, 100, 0.85, 1, %s);\nSELECT group_concat(request_id) FROM sparse_route_log;\nDELETE FROM sparse_settings;\n' \
		"$EXT" "'sparse.route_log'" "'outer'" "'big'" "'nested'" "'inner'" "'hi'" "'big'" "'big'" "$(q "$SIMPLE")" "'outer'" \
		| sqlite3 -batch "$RT" 2>&1; echo "exit $?")" \
	"$(printf 'mid\nouter,inner\nexit 0')"

# ---- sqlite3_interrupt stops route_train -------------------------------------------

# 240,000 rows train for about 7 s here; CI once finished 60,000 in under 1 s,
# so the interrupt comes at 0.5 s, well inside even a machine 10x as fast.
IDB=$R/interrupt.db
rt_fresh "$IDB"
rt_sql "$IDB" "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 240000)
INSERT INTO sparse_route_feedback(prompt, model_id, quality)
SELECT 'Question ' || x || ': explain why ' || hex(randomblob(40)) || ' matters, step by step',
  CASE x % 3 WHEN 0 THEN 'small' WHEN 1 THEN 'mid' ELSE 'big' END, (x % 10) / 10.0 FROM i;
INSERT INTO sparse_route_model VALUES ('keep', 1, 1, 1, 0.5, '2000-01-01', x'00');" > /dev/null
printf '.load %s\nSELECT * FROM route_train();\n' "$EXT" | sqlite3 -batch "$IDB" > "$R/int.out" 2>&1 &
ipid=$!
sleep 0.5
if kill -0 "$ipid" 2> /dev/null; then
	t0=$(date +%s%N)
	kill -INT "$ipid"
	while kill -0 "$ipid" 2> /dev/null; do sleep 0.005; done
	t1=$(date +%s%N)
	wait "$ipid"
	ms=$(( (t1 - t0) / 1000000 ))
	out=$(sed -n 's/^\(Runtime\|Parse\) error near line [0-9]*: //p' "$R/int.out")
	if [ "$out" = "canceling statement due to user request (9)" ] && [ "$ms" -le 1000 ]; then
		ok "sqlite3_interrupt stops route_train ($ms ms)"
	else
		not_ok "sqlite3_interrupt stops route_train" "$out after $ms ms" "canceling statement due to user request (9) within 1000 ms"
	fi
	is "an interrupted route_train leaves sparse_route_model as it was" \
		"$(rt_sql "$IDB" "SELECT count(*), group_concat(model_id) FROM sparse_route_model;")" "1|keep"
else
	not_ok "sqlite3_interrupt stops route_train" "finished before the interrupt: $(cat "$R/int.out")" "still running after 0.5 s"
fi

if [ -n "${ROUTE_ALONE:-}" ]; then
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
fi
