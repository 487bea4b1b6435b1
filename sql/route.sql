-- route.sql -- smart routing (docs/ROUTING.md), without learning:
-- classification in six languages and of chat transcripts, every decision
-- rule, context windows, unknown and disabled models, the rollout share,
-- route_hash, and bad input with the exact message and SQLSTATE (\echo
-- :SQLSTATE after each error).  route_learn.sql covers training, the
-- per-connection cache, the decision log and the report.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

TRUNCATE sparse_route_catalog, sparse_route_feedback, sparse_route_log,
         sparse_route_model RESTART IDENTITY;

-- ==== classification ====
-- a short greeting is simple; a long multi-step proof and code request is
-- complex, in every language
CREATE TEMP TABLE prompts (lang text, kind text, prompt text);
INSERT INTO prompts VALUES
 ('en', 'greeting', 'Hello, how are you?'),
 ('de', 'greeting', 'Hallo, wie geht es dir?'),
 ('fr', 'greeting', 'Bonjour, comment ça va ?'),
 ('zh', 'greeting', '你好，今天怎么样？'),
 ('ja', 'greeting', 'こんにちは、元気ですか？'),
 ('ru', 'greeting', 'Привет, как дела?'),
 ('en', 'proof+code', 'Prove step by step that there are infinitely many prime numbers, then implement a Python function that returns the first n primes using a segmented sieve, analyze its time and memory complexity, and write unit tests for edge cases.'),
 ('de', 'proof+code', 'Beweise Schritt für Schritt, dass es unendlich viele Primzahlen gibt, implementiere dann eine Python-Funktion, die die ersten n Primzahlen mit einem segmentierten Sieb berechnet, analysiere ihre Zeit- und Speicherkomplexität und schreibe Unit-Tests für Randfälle.'),
 ('fr', 'proof+code', 'Démontrez étape par étape qu''il existe une infinité de nombres premiers, puis implémentez une fonction Python qui renvoie les n premiers nombres premiers avec un crible segmenté, analysez sa complexité en temps et en mémoire, et écrivez des tests unitaires pour les cas limites.'),
 ('zh', 'proof+code', '请逐步证明存在无穷多个素数，然后用Python实现一个使用分段筛法返回前n个素数的函数，分析其时间和空间复杂度，并为边界情况编写单元测试。'),
 ('ja', 'proof+code', '素数が無限に存在することを段階的に証明し、次に分割ふるいを使って最初のn個の素数を返すPython関数を実装し、その時間計算量と空間計算量を分析し、境界ケースの単体テストを書いてください。'),
 ('ru', 'proof+code', 'Докажи шаг за шагом, что простых чисел бесконечно много, затем реализуй функцию на Python, которая возвращает первые n простых чисел с помощью сегментированного решета, проанализируй её временную и пространственную сложность и напиши модульные тесты для граничных случаев.');
SELECT kind, lang, c.complexity,
       c.complexity = CASE kind WHEN 'greeting' THEN 'simple' ELSE 'complex' END AS as_expected,
       c.score >= 0 AND c.score <= 1 AS score_in_range,
       c.est_prompt_tokens > 0 AS has_tokens
  FROM prompts, route_classify(prompt) c
 ORDER BY kind, lang;

-- the signals name what was seen
SELECT signals FROM route_classify('Prove that sqrt(2) is irrational, step by step.', 0);

-- a chat transcript: only the last user message counts, however long and
-- demanding the system prompt and the earlier turns are
SELECT complexity, signals LIKE '%chat:last_user%' AS chat
  FROM route_classify(json_build_array(
         json_build_object('role', 'system', 'content',
           repeat('You are a meticulous assistant. Prove every claim step by step, implement algorithms carefully and analyze their complexity. ', 40)),
         json_build_object('role', 'user', 'content',
           'Prove step by step that sqrt(2) is irrational and implement a checker.'),
         json_build_object('role', 'assistant', 'content', 'Done.'),
         json_build_object('role', 'user', 'content', 'Thanks! Hi again.'))::text);
-- the same as {"messages": [...]} with content parts
SELECT complexity, signals LIKE '%chat:last_user%' AS chat
  FROM route_classify(json_build_object('messages', json_build_array(
         json_build_object('role', 'system', 'content',
           repeat('Prove every claim step by step and analyze the complexity. ', 40)),
         json_build_object('role', 'user', 'content', json_build_array(
           json_build_object('type', 'text', 'text', 'hello')))))::text);
-- text that only looks like JSON is classified as it is
SELECT complexity FROM route_classify('[{"role": "user", "content": "hi"}');

-- the same text always gives the same answer (IMMUTABLE)
SELECT count(DISTINCT (c.complexity, c.score, c.est_prompt_tokens, c.signals)) AS answers
  FROM generate_series(1, 50), route_classify('Hallo, wie geht es dir?') c;

-- ==== an empty catalog is an error ====
SELECT * FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE

-- ==== the catalog ====
INSERT INTO sparse_route_catalog VALUES
 ('premium', 'frontier', 'h100x8', 15.0, 200000, 0.97, 0.95, 0.93, true),
 ('mid',     'frontier', 'a100',    3.0, 128000, 0.93, 0.88, 0.80, true),
 ('mini',    'open',     'l4',      0.6,  16000, 0.90, 0.75, 0.55, true),
 ('tiny',    'open',     'cpu',     0.1,   4096, 0.85, 0.60, 0.30, true),
 ('offline', 'open',     'h100',    0.01, 200000, 0.99, 0.99, 0.99, false);

-- the table's CHECKs
INSERT INTO sparse_route_catalog VALUES ('bad', NULL, NULL, -1, 1000, 0.5, 0.5, 0.5);
INSERT INTO sparse_route_catalog VALUES ('bad', NULL, NULL, 1, 0, 0.5, 0.5, 0.5);
INSERT INTO sparse_route_catalog VALUES ('bad', NULL, NULL, 1, 1000, 1.5, 0.5, 0.5);

-- ==== decision rules ====
-- cost_priority (default): the cheapest model within 0.85 of premium's
-- predicted quality: tiny (0.85 >= 0.85 * 0.97); offline is cheaper and
-- better but disabled
SELECT complexity, requested_model, recommended_model, recommended_hardware,
       estimated_cost_per_1m_tokens, requested_cost_per_1m_tokens,
       round(cost_savings_pct::numeric, 3) AS savings_pct,
       predicted_quality, requested_predicted_quality, routed, reason
  FROM route_decision('premium', 'Hello, how are you?');

-- cost_priority false: the best predicted quality among cheaper qualifying
-- models (mid)
SELECT recommended_model, round(cost_savings_pct::numeric, 3) AS savings_pct,
       predicted_quality, routed, reason
  FROM route_decision('premium', 'Hello, how are you?', cost_priority => false);

-- a threshold nothing cheaper meets keeps the requested model, with either rule
SELECT recommended_model, cost_savings_pct, routed, reason
  FROM route_decision('premium', 'Hello, how are you?', quality_threshold => 1);
SELECT recommended_model, cost_savings_pct, routed, reason
  FROM route_decision('premium', 'Hello, how are you?', quality_threshold => 1,
                      cost_priority => false);

-- complexity changes the priors: a complex request to premium goes to mid
-- (0.80 >= 0.85 * 0.93; mini's 0.55 is not enough)
SELECT complexity, recommended_model, predicted_quality, requested_predicted_quality, routed
  FROM route_decision('premium', (SELECT prompt FROM prompts WHERE lang = 'en' AND kind = 'proof+code'), 500);

-- the cheapest requested model stays
SELECT recommended_model, routed, reason FROM route_decision('tiny', 'Hello, how are you?');

-- ==== context windows ====
-- 16,000 prompt tokens: with max_tokens 0 mini's 16,000-token window holds
-- the request; with 8,000 more it does not (nor does tiny's), so mid serves
SELECT est_prompt_tokens FROM route_classify(repeat('lorem ipsum dolor sit amet ', 2000), 0);
SELECT complexity, recommended_model, routed
  FROM route_decision('premium', repeat('lorem ipsum dolor sit amet ', 2000), 0, 0.75);
SELECT complexity, recommended_model, routed
  FROM route_decision('premium', repeat('lorem ipsum dolor sit amet ', 2000), 8000, 0.75);
-- only the window kept mini out: its quality (0.75) meets 0.75 * 0.95
UPDATE sparse_route_catalog SET context_window = 32000 WHERE model_id = 'mini';
SELECT complexity, recommended_model, routed
  FROM route_decision('premium', repeat('lorem ipsum dolor sit amet ', 2000), 8000, 0.75);
UPDATE sparse_route_catalog SET context_window = 16000 WHERE model_id = 'mini';
-- no enabled model holds the request: the requested model is kept
SELECT recommended_model, routed, reason
  FROM route_decision('premium', 'Hello, how are you?', 250000);

-- ==== unknown and disabled models ====
-- a model not in the catalog is not an error: returned unchanged, no prices
SELECT complexity, requested_model, recommended_model, recommended_hardware,
       estimated_cost_per_1m_tokens, requested_cost_per_1m_tokens, cost_savings_pct,
       predicted_quality, requested_predicted_quality, routed, reason
  FROM route_decision('gpt-unknown', 'Hello, how are you?');
SELECT route_predict('Hello, how are you?', 'gpt-unknown') AS unknown_quality;

-- a disabled model is never recommended: every prompt, requested model,
-- threshold and rule
SELECT count(*) AS decisions,
       count(*) FILTER (WHERE d.recommended_model = 'offline') AS offline_recommended
  FROM prompts p,
       (VALUES ('premium'), ('mid'), ('mini'), ('tiny')) r(model),
       (VALUES (0.5), (0.85), (1.0)) t(threshold),
       (VALUES (true), (false)) c(cost_priority),
       route_decision(r.model, p.prompt, 100, t.threshold, c.cost_priority) d;
-- requesting the disabled model itself routes away from it
SELECT recommended_model, routed FROM route_decision('offline', 'Hello, how are you?');

-- ==== rollout ====
-- the same request_id always falls on the same side
SELECT count(DISTINCT d.routed) AS sides
  FROM generate_series(1, 20), route_decision('premium', 'Hello, how are you?', request_id => 'req-42') d;
SET sparse.routing_percentage = 10;
CREATE TEMP TABLE rollout AS
  SELECT g, d.routed, d.recommended_model, d.reason
    FROM generate_series(1, 10000) g,
         route_decision('premium', 'Hello, how are you?', request_id => 'req-' || g) d;
-- about 10% of 10,000 distinct requests are routed
SELECT count(*) FILTER (WHERE routed) AS routed,
       count(*) FILTER (WHERE routed) BETWEEN 800 AND 1200 AS share_ok
  FROM rollout;
-- outside the rollout the recommendation is still reported
SELECT recommended_model, routed, reason, count(*)
  FROM rollout GROUP BY 1, 2, 3 ORDER BY 2, 1;
-- a second pass puts every request on the same side
SELECT count(*) AS changed
  FROM rollout r,
       route_decision('premium', 'Hello, how are you?', request_id => 'req-' || r.g) d
 WHERE d.routed IS DISTINCT FROM r.routed;
-- without request_id the prompt decides, so it is stable too
SELECT count(DISTINCT d.routed) AS sides
  FROM generate_series(1, 20), route_decision('premium', 'Hello, how are you?') d;
SET sparse.routing_percentage = 0;
SELECT count(*) FILTER (WHERE d.routed) AS routed,
       count(*) FILTER (WHERE d.reason LIKE 'outside rollout%') AS outside
  FROM generate_series(1, 1000) g,
       route_decision('premium', 'Hello, how are you?', request_id => 'req-' || g) d;
SET sparse.routing_percentage = 100;
SELECT count(*) FILTER (WHERE d.routed) AS routed
  FROM generate_series(1, 1000) g,
       route_decision('premium', 'Hello, how are you?', request_id => 'req-' || g) d;
SET sparse.routing_percentage = 12.5;
SHOW sparse.routing_percentage;
RESET sparse.routing_percentage;
SHOW sparse.routing_percentage;

-- ==== route_hash ====
-- XXH3-64 of the UTF-8 bytes, seed 0, as signed bigint: the same values as
-- `printf %s TEXT | xxhsum -H3` (78af5f94892f3950, 2d06800538d394c2,
-- cb61dd2a6ac9312d) and as the SQLite extension
SELECT route_hash('abc') AS abc, route_hash('') AS empty,
       route_hash('Привет, как дела?') AS utf8, route_hash(NULL) AS null_in;
SELECT to_hex(route_hash('abc')) AS abc_hex;

-- ==== bad input: exact messages ====
SELECT * FROM route_decision('premium', NULL);
\echo :SQLSTATE
SELECT * FROM route_decision(NULL, 'Hello, how are you?');
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', -1);
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', NULL);
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', 100, 0);
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', 100, 1.5);
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', 100, 'NaN');
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', 100, NULL);
\echo :SQLSTATE
SELECT * FROM route_decision('premium', 'Hello, how are you?', 100, 0.85, NULL);
\echo :SQLSTATE
SELECT * FROM route_classify(NULL);
\echo :SQLSTATE
SELECT * FROM route_classify('Hello', -5);
\echo :SQLSTATE
SELECT * FROM route_classify('Hello', NULL);
\echo :SQLSTATE
SET sparse.routing_percentage = 100.5;
\echo :SQLSTATE
SET sparse.routing_percentage = -1;
\echo :SQLSTATE
SET sparse.routing_percentage = 'half';
\echo :SQLSTATE
SHOW sparse.routing_percentage;
-- the "sparse." prefix is reserved: a mistyped setting is an error
SET sparse.route_logging = on;
\echo :SQLSTATE
-- the trigger function only runs as a trigger
SELECT sparse_route_invalidate();
\echo :SQLSTATE

-- ==== every routing object has a comment ====
SELECT p.proname, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.proname LIKE 'route\_%' OR p.proname = 'sparse_route_invalidate'
 ORDER BY 1;
SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class') IS NOT NULL AS commented
  FROM pg_class c
 WHERE c.relname LIKE 'sparse\_rout%' AND c.relkind IN ('r', 'v')
 ORDER BY 1;
SELECT t.tgname, obj_description(t.oid, 'pg_trigger') IS NOT NULL AS commented
  FROM pg_trigger t WHERE t.tgname LIKE 'sparse\_route%' ORDER BY 1;
-- pg_dump keeps the rows of the routing tables and the sequence positions
SELECT unnest(extconfig)::regclass::text AS dumped FROM pg_extension WHERE extname = 'sparse' ORDER BY 1;

DROP TABLE prompts, rollout;
TRUNCATE sparse_route_catalog RESTART IDENTITY;
