-- route_learn.sql -- smart routing with learning (docs/ROUTING.md):
-- route_train and its determinism, the per-connection cache (no SQL while
-- nothing changed, one reload after a change, rollback, stale and corrupt
-- predictors), the privilege check on a warm cache, the decision log and
-- every column of sparse_routing_report against hand-computed values.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sparse;
RESET client_min_messages;

TRUNCATE sparse_route_catalog, sparse_route_feedback, sparse_route_log,
         sparse_route_model RESTART IDENTITY;

-- training needs a catalog
SELECT * FROM route_train();
\echo :SQLSTATE

INSERT INTO sparse_route_catalog VALUES
 ('premium', 'frontier', 'h100x8', 15.0, 200000, 0.97, 0.95, 0.93, true),
 ('mid',     'frontier', 'a100',    3.0, 128000, 0.93, 0.88, 0.80, true),
 ('mini',    'open',     'l4',      0.6,  16000, 0.90, 0.75, 0.55, true),
 ('tiny',    'open',     'cpu',     0.1,   4096, 0.85, 0.60, 0.30, true),
 ('offline', 'open',     'h100',    0.01, 200000, 0.99, 0.99, 0.99, false);

-- no feedback yet: nothing to learn, no predictor stored
SELECT * FROM route_train();
SELECT count(*) AS predictors FROM sparse_route_model;

-- ==== before training: the priors decide ====
SELECT recommended_model, predicted_quality, routed
  FROM route_decision('premium', 'Hello, how are you?');
SELECT route_predict('Hello, how are you?', 'tiny') AS tiny, route_predict('Hello, how are you?', 'premium') AS premium;

-- ==== feedback: tiny answers greetings badly, premium and mini well ====
-- (rows for a model outside the catalog are skipped)
INSERT INTO sparse_route_feedback (prompt, model_id, quality)
SELECT g.greeting || ' (' || n || ')', m.model_id,
       CASE m.model_id WHEN 'tiny' THEN 0.1 WHEN 'mini' THEN 0.95
                       WHEN 'premium' THEN 0.98 ELSE 0.9 END
  FROM (VALUES ('Hello, how are you?'), ('Hi, how are you doing?'),
               ('Hello there, how is it going?'), ('Hey, how are you today?')) g(greeting),
       generate_series(1, 15) n,
       (VALUES ('tiny'), ('mini'), ('premium'), ('gpt-unknown')) m(model_id);
SELECT count(*) AS feedback_rows FROM sparse_route_feedback;

SELECT rows, models, epochs, train_loss > 0 AND train_loss < 0.69 AS learned
  FROM route_train();
SELECT model_id, feature_version, rows, epochs, train_loss < 0.69 AS learned,
       length(weights) AS bytes, substr(weights, 1, 4) = 'SPRW'::bytea AS magic
  FROM sparse_route_model ORDER BY model_id;

-- ==== retraining on the same rows gives bit-identical predictors ====
CREATE TEMP TABLE first_weights AS
  SELECT model_id, md5(weights) AS md5 FROM sparse_route_model;
SELECT rows, models, epochs FROM route_train();
SELECT m.model_id, md5(m.weights) = f.md5 AS identical
  FROM sparse_route_model m JOIN first_weights f USING (model_id) ORDER BY 1;
-- the order of insertion does not matter: route_train sorts the rows
CREATE TEMP TABLE fb AS SELECT prompt, model_id, quality FROM sparse_route_feedback;
TRUNCATE sparse_route_feedback;
INSERT INTO sparse_route_feedback (prompt, model_id, quality)
  SELECT * FROM fb ORDER BY md5(prompt || model_id) DESC;
SELECT rows FROM route_train();
SELECT m.model_id, md5(m.weights) = f.md5 AS identical
  FROM sparse_route_model m JOIN first_weights f USING (model_id) ORDER BY 1;

-- ==== the same session sees the retrained predictors at once ====
-- tiny is now predicted to answer greetings badly, so it is no longer chosen
SELECT route_predict('Hello, how are you?', 'tiny') < 0.5 AS tiny_bad,
       route_predict('Hello, how are you?', 'premium') > 0.9 AS premium_good,
       route_predict('Hello, how are you?', 'mid') AS mid_prior;
SELECT recommended_model, routed FROM route_decision('premium', 'Hello, how are you?');
-- removing the predictors brings the priors back
DELETE FROM sparse_route_model;
SELECT recommended_model, predicted_quality FROM route_decision('premium', 'Hello, how are you?');
SELECT rows FROM route_train();
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');

-- ==== the cache: no SQL while nothing changed, one reload after a change ====
-- pg_stat_get_xact_numscans counts the scans of a table not yet reported to
-- the statistics system; inside one transaction block its growth is the
-- number of scans the statements in between made
BEGIN;
SELECT pg_stat_get_xact_numscans('sparse_route_catalog'::regclass) AS c0,
       pg_stat_get_xact_numscans('sparse_route_model'::regclass) AS m0 \gset
SELECT count(*) AS decisions FROM generate_series(1, 200) g,
       route_decision('premium', 'Hello, how are you?', request_id => g::text);
SELECT pg_stat_get_xact_numscans('sparse_route_catalog'::regclass) - :c0 AS catalog_scans,
       pg_stat_get_xact_numscans('sparse_route_model'::regclass) - :m0 AS model_scans;
COMMIT;
UPDATE sparse_route_catalog SET hardware = 'a100x2' WHERE model_id = 'mini';
BEGIN;
SELECT pg_stat_get_xact_numscans('sparse_route_catalog'::regclass) AS c0,
       pg_stat_get_xact_numscans('sparse_route_model'::regclass) AS m0 \gset
SELECT count(*) AS decisions FROM generate_series(1, 200) g,
       route_decision('premium', 'Hello, how are you?', request_id => g::text);
SELECT pg_stat_get_xact_numscans('sparse_route_catalog'::regclass) - :c0 AS catalog_scans,
       pg_stat_get_xact_numscans('sparse_route_model'::regclass) - :m0 AS model_scans;
COMMIT;
SELECT recommended_model, recommended_hardware
  FROM route_decision('premium', 'Hello, how are you?');

-- a change inside a transaction is seen at once, and forgotten on rollback
BEGIN;
UPDATE sparse_route_catalog SET enabled = false WHERE model_id <> 'premium';
SELECT recommended_model, routed FROM route_decision('premium', 'Hello, how are you?');
ROLLBACK;
SELECT recommended_model, routed FROM route_decision('premium', 'Hello, how are you?');
-- TRUNCATE invalidates too
BEGIN;
TRUNCATE sparse_route_catalog;
SELECT * FROM route_decision('premium', 'Hello, how are you?');
ROLLBACK;
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');

-- ==== damaged or outdated predictors ====
-- a predictor of another feature version is left out: priors until retrained
UPDATE sparse_route_model SET feature_version = 99 WHERE model_id = 'tiny';
SELECT route_predict('Hello, how are you?', 'tiny') AS tiny_prior;
-- a damaged predictor is an error naming the model, until route_train
UPDATE sparse_route_model SET feature_version = 1, weights = '\x00' WHERE model_id = 'tiny';
SELECT * FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE
SELECT rows FROM route_train();
UPDATE sparse_route_model SET weights = overlay(weights PLACING 'XXXX'::bytea FROM 1)
 WHERE model_id = 'tiny';
SELECT * FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE
SELECT rows FROM route_train();
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');

-- ==== privileges are checked on every call, even with a warm cache ====
CREATE ROLE regress_route_app;
SET ROLE regress_route_app;
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE
SELECT route_predict('Hello, how are you?', 'tiny');
\echo :SQLSTATE
SELECT * FROM route_train();
\echo :SQLSTATE
RESET ROLE;
GRANT SELECT ON sparse_route_catalog TO regress_route_app;
SET ROLE regress_route_app;
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE
RESET ROLE;
GRANT SELECT ON sparse_route_model TO regress_route_app;
SET ROLE regress_route_app;
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');
-- logging needs INSERT on the log
SET sparse.route_log = on;
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');
\echo :SQLSTATE
RESET sparse.route_log;
RESET ROLE;
REVOKE ALL ON sparse_route_catalog, sparse_route_model FROM regress_route_app;
DROP ROLE regress_route_app;

-- ==== the decision log ====
TRUNCATE sparse_route_log RESTART IDENTITY;
DELETE FROM sparse_route_model;     -- priors only: known decisions
SELECT recommended_model FROM route_decision('premium', 'Hello, how are you?');
SELECT count(*) AS logged FROM sparse_route_log;   -- off by default
SET sparse.route_log = on;
SELECT recommended_model, routed
  FROM route_decision('premium', 'Hello, how are you?', 50, request_id => 'req-1');
SET sparse.route_log_prompts = on;
SELECT recommended_model, routed
  FROM route_decision('gpt-unknown', 'Bonjour, comment ca va ?', 50);
RESET sparse.route_log_prompts;
SELECT id, request_id, prompt_hash = route_hash('Hello, how are you?') AS hash_ok, prompt,
       cardinality(features) > 0 AS has_features, requested_model, recommended_model,
       served_model, routed, complexity,
       est_tokens = 50 + (SELECT est_prompt_tokens FROM route_classify('Hello, how are you?', 50)) AS tokens_ok,
       requested_cost_per_1m_tokens, recommended_cost_per_1m_tokens,
       served_cost_per_1m_tokens, predicted_quality, observed_quality
  FROM sparse_route_log WHERE id = 1;
SELECT id, request_id, prompt_hash = route_hash(prompt) AS hash_ok, prompt, requested_model,
       recommended_model, served_model, routed, requested_cost_per_1m_tokens,
       recommended_cost_per_1m_tokens, served_cost_per_1m_tokens, predicted_quality
  FROM sparse_route_log WHERE id = 2;
-- the logged features are what the prompt gives: learning from a logged
-- request with an observed quality gives the same predictor as learning
-- from that prompt as feedback
TRUNCATE sparse_route_log RESTART IDENTITY;
DELETE FROM sparse_route_feedback;
SELECT recommended_model, routed FROM route_decision('tiny', 'Hallo, wie geht es dir?');
UPDATE sparse_route_log SET observed_quality = 0.3 RETURNING served_model, observed_quality;
SELECT rows, models FROM route_train();
CREATE TEMP TABLE from_log AS SELECT model_id, md5(weights) AS md5 FROM sparse_route_model;
TRUNCATE sparse_route_log RESTART IDENTITY;
INSERT INTO sparse_route_feedback (prompt, model_id, quality)
  VALUES ('Hallo, wie geht es dir?', 'tiny', 0.3);
SELECT rows, models FROM route_train();
SELECT m.model_id, md5(m.weights) = l.md5 AS identical
  FROM sparse_route_model m JOIN from_log l USING (model_id);

-- ==== the report ====
-- requests with known token counts (est_tokens = prompt tokens + max_tokens)
TRUNCATE sparse_route_log RESTART IDENTITY;
CREATE TEMP TABLE reqs (n int, model text, prompt text, tokens int, threshold float8);
INSERT INTO reqs VALUES
 (1, 'premium', 'Hello, how are you?', 100, 0.85),        -- routed to tiny
 (2, 'premium', 'Prove step by step that there are infinitely many prime numbers, then implement a Python function that returns the first n primes using a segmented sieve, analyze its time and memory complexity, and write unit tests for edge cases.', 500, 0.85),  -- routed to mid
 (3, 'premium', 'Hello, how are you?', 200, 1.0),         -- kept
 (4, 'mid', 'Hello, how are you?', 100, 0.85),            -- routed to tiny
 (5, 'gpt-unknown', 'Hello, how are you?', 100, 0.85);    -- not in the catalog
SELECT r.n, d.recommended_model, d.routed
  FROM reqs r,
       LATERAL route_decision(r.model, r.prompt,
                              r.tokens - (SELECT est_prompt_tokens FROM route_classify(r.prompt)),
                              r.threshold, request_id => 'rep-' || r.n) d
 ORDER BY r.n;
-- outside the rollout: recommended tiny, served premium
SET sparse.routing_percentage = 0;
SELECT recommended_model, routed
  FROM route_decision('premium', 'Hello, how are you?',
                      300 - (SELECT est_prompt_tokens FROM route_classify('Hello, how are you?')),
                      request_id => 'rep-6');
RESET sparse.routing_percentage;
SET sparse.route_log = off;
UPDATE sparse_route_log SET observed_quality = v.q
  FROM (VALUES (1, 0.8), (2, 0.9), (3, 1.0), (4, 0.7), (6, 0.95)) v(id, q)
 WHERE sparse_route_log.id = v.id;
SELECT id, request_id, requested_model, recommended_model, served_model, routed, est_tokens,
       requested_cost_per_1m_tokens AS req_price, recommended_cost_per_1m_tokens AS rec_price,
       served_cost_per_1m_tokens AS srv_price, observed_quality
  FROM sparse_route_log ORDER BY id;
SELECT requested_model, requests, routed, round(routed_pct::numeric, 4) AS routed_pct,
       round(requested_cost::numeric, 8) AS requested_cost,
       round(recommended_cost::numeric, 8) AS recommended_cost,
       round(served_cost::numeric, 8) AS served_cost,
       round(savings_pct::numeric, 4) AS savings_pct,
       round(potential_savings_pct::numeric, 4) AS potential_savings_pct,
       round(quality_routed::numeric, 4) AS quality_routed,
       round(quality_not_routed::numeric, 4) AS quality_not_routed,
       observed_routed, observed_not_routed
  FROM sparse_routing_report;
-- every column against values computed by hand:
--   premium: 100 tok (15 -> 0.1 served 0.1), 500 (15 -> 3, 3), 200 (15, 15, 15),
--            300 outside the rollout (15 -> 0.1, served 15)
--   mid: 100 tok (3 -> 0.1, served 0.1); gpt-unknown: no prices
CREATE TEMP TABLE expected_report AS SELECT * FROM (VALUES
 ('premium', 4, 2, 50.0,
  1100 * 15 / 1e6, (100 * 0.1 + 500 * 3 + 200 * 15 + 300 * 0.1) / 1e6,
  (100 * 0.1 + 500 * 3 + 200 * 15 + 300 * 15) / 1e6,
  100 * (1 - 9010 / 16500.0), 100 * (1 - 4540 / 16500.0), 0.85, 0.975, 2, 2),
 ('mid', 1, 1, 100.0, 100 * 3 / 1e6, 100 * 0.1 / 1e6, 100 * 0.1 / 1e6,
  100 * (1 - 10 / 300.0), 100 * (1 - 10 / 300.0), 0.7, NULL, 1, 0),
 ('gpt-unknown', 1, 0, 0.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0),
 (NULL, 6, 3, 50.0, 16800 / 1e6, 4550 / 1e6, 9020 / 1e6,
  100 * (1 - 9020 / 16800.0), 100 * (1 - 4550 / 16800.0), 0.8, 0.975, 3, 2))
 e(requested_model, requests, routed, routed_pct, requested_cost, recommended_cost,
   served_cost, savings_pct, potential_savings_pct, quality_routed,
   quality_not_routed, observed_routed, observed_not_routed);
CREATE FUNCTION pg_temp.near(a float8, b numeric) RETURNS bool
LANGUAGE sql IMMUTABLE AS $$
  SELECT (a IS NULL AND b IS NULL) OR abs(a - b::float8) < 1e-9
$$;
SELECT coalesce(e.requested_model, 'total') AS model,
       r.requests = e.requests AS requests, r.routed = e.routed AS routed,
       pg_temp.near(r.routed_pct, e.routed_pct) AS routed_pct,
       pg_temp.near(r.requested_cost, e.requested_cost) AS requested_cost,
       pg_temp.near(r.recommended_cost, e.recommended_cost) AS recommended_cost,
       pg_temp.near(r.served_cost, e.served_cost) AS served_cost,
       pg_temp.near(r.savings_pct, e.savings_pct) AS savings_pct,
       pg_temp.near(r.potential_savings_pct, e.potential_savings_pct) AS potential,
       pg_temp.near(r.quality_routed, e.quality_routed) AS q_routed,
       pg_temp.near(r.quality_not_routed, e.quality_not_routed) AS q_not_routed,
       r.observed_routed = e.observed_routed AS obs_routed,
       r.observed_not_routed = e.observed_not_routed AS obs_not_routed
  FROM sparse_routing_report r
  JOIN expected_report e ON r.requested_model IS NOT DISTINCT FROM e.requested_model
 ORDER BY e.requested_model NULLS LAST;
SELECT count(*) AS report_rows FROM sparse_routing_report;

-- ==== training also learns from the log ====
-- logged requests with an observed quality count as rows of their served
-- model (gpt-unknown's is skipped; rows without observed quality are not read)
DELETE FROM sparse_route_feedback;
SELECT rows, models, epochs FROM route_train();
SELECT model_id, rows FROM sparse_route_model ORDER BY model_id;
-- a malformed feature array in the log is refused
INSERT INTO sparse_route_log (prompt_hash, features, requested_model, recommended_model,
                              served_model, routed, complexity, est_tokens, observed_quality)
VALUES (0, '{1,NULL}', 'tiny', 'tiny', 'tiny', false, 'simple', 1, 0.5);
SELECT * FROM route_train();
\echo :SQLSTATE
UPDATE sparse_route_log SET features = '{1,70000}' WHERE features = '{1,NULL}';
SELECT * FROM route_train();
\echo :SQLSTATE
-- the failed runs left the predictors as they were
SELECT model_id, rows FROM sparse_route_model ORDER BY model_id;

DROP TABLE first_weights, fb, from_log, reqs, expected_report;
TRUNCATE sparse_route_catalog, sparse_route_feedback, sparse_route_log,
         sparse_route_model RESTART IDENTITY;
