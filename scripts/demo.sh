#!/usr/bin/env bash
# scripts/demo.sh -- sparse in a small SQLite hub, on real data: storage
# decisions on insert, jobs, verified rebuilds, savings, and routing.
#
# Usage (from the repository root):  make demo
#    or:  SPARSE_DATA=/path/to/shared/data bash scripts/demo.sh
#
# What it does, all inside one sqlite3 shell with ".load ./sparse":
#   1. creates build/demo/hub.db with the hub's own tables "models" (id,
#      name, path, base_path, sha256) and "datasets" (id, name, path,
#      parent_path, sha256), runs sparse_install() and points
#      sparse.delta_dir at build/demo/deltas;
#   2. sparse_watch() attaches the storage triggers to both tables;
#   3. inserts the real models of $SPARSE_DATA/models (bases and
#      fine-tunes, F32 and BF16, LoRA adapters, a checkpoint-chain step) and
#      the real dataset pairs of $SPARSE_DATA/datasets (parents and derived
#      versions: CSV updates, a JSON filter, rewritten answers, a
#      translation, a Parquet file); sha256 is what sha256sum prints; the
#      triggers estimate each row and decide delta or full (thresholds 60%
#      for models, 70% for datasets) and queue the deltas;
#   4. SELECT sparse_run_jobs() writes every delta and checks it by
#      rebuilding it in memory;
#   5. delta_apply() rebuilds every stored object into build/demo/rebuilt;
#      sha256sum of each rebuilt file is compared in SQL with the original's
#      and with the SHA-256 sparse recorded;
#   6. prints the decisions, sparse_savings_report, then a routing round:
#      the GSM8K labels of $SPARSE_DATA/routing/routellm split in half by
#      route_hash, route_train() on one half, route_decision() (quality
#      threshold 0.75) on the other with the log on, the observed correctness filled in, and
#      sparse_routing_report.
# It wipes build/demo first, so it can be run again; exits 1 if any object
# fails to rebuild exactly.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make demo does)}"
DATA=$(realpath "$SPARSE_DATA")
M=$DATA/models
D=$DATA/datasets
DEMO="$ROOT/build/demo"

if [ ! -f "$ROOT/sparse.so" ]; then
	echo "demo: ./sparse.so is missing: run 'make sparse.so' first" >&2
	exit 1
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/deltas" "$DEMO/rebuilt"

# sql_str TEXT: TEXT as an SQL string literal (single quotes doubled).
sql_str() { printf "'%s'" "${1//\'/\'\'}"; }

# The hub's models: NAME FILE BASE (relative to $M; BASE "-" for none).
MODELS=(
	"gpt2-base              gpt2-lora-r8/base.safetensors             -"
	"gpt2-lora-r8           gpt2-lora-r8/ft.safetensors               gpt2-lora-r8/base.safetensors"
	"gpt2-lora-r8@7500      gpt2-lora-r8/chain/ckpt-7500.safetensors  gpt2-lora-r8/chain/ckpt-7000.safetensors"
	"roberta-lora-r4        roberta-lora-r4-biasall/ft.safetensors    roberta-lora-r4-biasall/base.safetensors"
	"mlp-base.f32           mlp-trained/base.f32.safetensors          -"
	"mlp-ft.f32             mlp-trained/ft.f32.safetensors            mlp-trained/base.f32.safetensors"
	"mlp-ft_frozen.f32      mlp-trained/ft_frozen.f32.safetensors     mlp-trained/base.f32.safetensors"
	"mlp-base.bf16          mlp-trained/base.bf16.safetensors         -"
	"mlp-ft.bf16            mlp-trained/ft.bf16.safetensors           mlp-trained/base.bf16.safetensors"
	"mlp-ft_frozen.bf16     mlp-trained/ft_frozen.bf16.safetensors    mlp-trained/base.bf16.safetensors"
)

# rows TABLE ROOT NAME FILE BASE...: INSERT statements with each file's sha256sum.
rows() {
	local table=$1 dir=$2 id=0 name file base
	shift 2
	for row in "$@"; do
		read -r name file base <<<"$row"
		id=$((id + 1))
		echo "INSERT INTO $table VALUES ($id, $(sql_str "$name"), $(sql_str "$dir/$file")," \
			"$([ "$base" = - ] && echo NULL || sql_str "$dir/$base")," \
			"$(sql_str "$(sha256sum "$dir/$file" | cut -d' ' -f1)"));"
	done
}

# The hub's datasets: every shared pair, parent and derived version.
DATASETS=()
for pair in "$D"/*/; do
	pair=$(basename "$pair")
	base=$(cd "$D/$pair" && ls base.*)
	derived=$(cd "$D/$pair" && ls derived.*)
	DATASETS+=("$pair@parent $pair/$base -" "$pair $pair/$derived $pair/$base")
done

echo "== the hub: build/demo/hub.db (sqlite3 + .load ./sparse); rows are decided as they arrive"
sqlite3 "$DEMO/hub.db" <<EOF
.bail on
.load ./sparse
SELECT 'installed: ' || sparse_install();
INSERT INTO sparse_settings VALUES ('sparse.delta_dir', $(sql_str "$DEMO/deltas"));
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                     path TEXT NOT NULL, base_path TEXT, sha256 TEXT NOT NULL);
CREATE TABLE datasets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                       path TEXT NOT NULL, parent_path TEXT, sha256 TEXT NOT NULL);
-- storage triggers for this connection: estimate each new row, decide, queue deltas
SELECT 'watching models: ' || sparse_watch('models', 'name', 'path', 'base_path', 'model') || ' triggers';
SELECT 'watching datasets: ' || sparse_watch('datasets', 'name', 'path', 'parent_path', 'dataset') || ' triggers';
$(rows models "$M" "${MODELS[@]}")
$(rows datasets "$D" "${DATASETS[@]}")
.print
.print == decisions (sparse_storage; thresholds 60% for models, 70% for datasets)
.mode box
SELECT object_id AS object, kind, decision, printf('%.1f', est_savings_pct) AS "estimated %",
       printf('%,d', original_bytes) AS bytes FROM sparse_storage ORDER BY kind DESC, object_id;
.mode list
.print
.print == SELECT sparse_run_jobs(): every queued delta written and verified
SELECT printf('%d jobs done', sparse_run_jobs());
EOF

echo
echo "== rebuilding every stored object with delta_apply and checking sha256sum in SQL"
sqlite3 "$DEMO/hub.db" <<EOF
.bail on
.load ./sparse
CREATE TABLE rebuilt AS
	SELECT s.object_id, s.kind, a.out_path, a.sha256, a.verified, NULL AS file_sha256
	FROM sparse_storage s,
	     delta_apply(s.base_path, s.delta_path,
	                 $(sql_str "$DEMO/rebuilt/") || s.kind || '-' || s.object_id) a
	WHERE s.compressed_at IS NOT NULL;
EOF
{
	echo ".bail on"
	for f in "$DEMO"/rebuilt/*; do
		echo "UPDATE rebuilt SET file_sha256 = $(sql_str "$(sha256sum "$f" | cut -d' ' -f1)")" \
			"WHERE out_path = $(sql_str "$f");"
	done
} | sqlite3 "$DEMO/hub.db"

sqlite3 "$DEMO/hub.db" <<'EOF'
.bail on
CREATE VIEW checked AS
	SELECT s.object_id, s.kind, h.sha256 AS original,
	       (r.verified AND r.sha256 = h.sha256 AND s.ft_sha256 = h.sha256 AND r.file_sha256 = h.sha256) AS ok
	FROM sparse_storage s
	JOIN (SELECT name, 'model' AS kind, sha256 FROM models
	      UNION ALL SELECT name, 'dataset', sha256 FROM datasets) h
	  ON h.name = s.object_id AND h.kind = s.kind
	LEFT JOIN rebuilt r ON r.object_id = s.object_id AND r.kind = s.kind
	WHERE s.compressed_at IS NOT NULL;
.mode box
SELECT s.object_id AS object, s.kind, printf('%,d', s.original_bytes) AS original,
       printf('%,d', s.stored_bytes) AS delta,
       printf('%.1f', 100.0 * (1 - 1.0 * s.stored_bytes / s.original_bytes)) AS "saved %",
       CASE WHEN c.ok THEN 'yes' ELSE 'NO' END AS "rebuilt = sha256sum"
FROM sparse_storage s JOIN checked c USING (object_id, kind) ORDER BY s.kind DESC, s.object_id;
.print
.print == sparse_savings_report (stored: deltas once verified, full objects as they are)
SELECT kind, objects, objects_delta AS "as delta", printf('%,d', original_bytes) AS original,
       printf('%,d', stored_bytes) AS stored, printf('%.1f', savings_pct) AS "saved %",
       printf('%.6f', saved_per_month) AS "saved $/month"
FROM sparse_savings_report;
EOF

failed=$(sqlite3 "$DEMO/hub.db" "SELECT count(*) FROM checked WHERE NOT coalesce(ok, 0);")
stored=$(sqlite3 "$DEMO/hub.db" "SELECT count(*) FROM checked;")
if [ "$failed" -ne 0 ] || [ "$stored" -eq 0 ]; then
	echo "demo: $failed of $stored stored object(s) did not rebuild exactly" >&2
	exit 1
fi

echo
echo "== routing: GSM8K prompts (RouteLLM labels), learn on half, route the other half"
L=$DATA/routing/routellm/gsm8k_responses.csv
sqlite3 "$DEMO/hub.db" <<EOF
.bail on
.load ./sparse
.import --csv $(sql_str "$L") labels
INSERT INTO sparse_route_catalog VALUES
  ('gpt-4', 'gpt', 'api', 24.7, 128000, 0.95, 0.9, 0.85, 1),
  ('mixtral-8x7b', 'mistral', 'nvidia-a100-80gb', 0.24, 32768, 0.9, 0.75, 0.55, 1);
-- quality feedback: correctness of each model on the training half
INSERT INTO sparse_route_feedback (prompt, model_id, quality)
	SELECT prompt, 'gpt-4', "gpt-4-1106-preview" = 'True' FROM labels WHERE route_hash(prompt) & 1 = 0
	UNION ALL
	SELECT prompt, 'mixtral-8x7b', "mistralai/Mixtral-8x7B-Instruct-v0.1" = 'True' FROM labels
	WHERE route_hash(prompt) & 1 = 0;
SELECT printf('route_train(): %d feedback rows, %d models, %d epochs, loss %.3f', rows, models, epochs, train_loss)
FROM route_train();
-- route the test half with the decision log on, then record what was observed
INSERT INTO sparse_settings VALUES ('sparse.route_log', 'on');
CREATE TEMP TABLE decisions AS
	SELECT l.prompt, d.recommended_model, d.routed
	FROM labels l, route_decision('gpt-4', l.prompt, 300, 0.75) d WHERE route_hash(l.prompt) & 1 = 1;
UPDATE sparse_route_log SET observed_quality = (
	SELECT CASE served_model WHEN 'gpt-4' THEN "gpt-4-1106-preview" = 'True'
	       ELSE "mistralai/Mixtral-8x7B-Instruct-v0.1" = 'True' END
	FROM labels WHERE route_hash(labels.prompt) = sparse_route_log.prompt_hash);
.mode box
SELECT coalesce(requested_model, 'all') AS requested, requests, routed,
       printf('%.1f', savings_pct) AS "cost saved %",
       printf('%.3f', quality_routed) AS "quality routed", printf('%.3f', quality_not_routed) AS "quality kept"
FROM sparse_routing_report WHERE requested_model IS NULL;
.mode list
SELECT printf('always gpt-4 on the same prompts: quality %.3f; routed mix: %.3f',
              avg("gpt-4-1106-preview" = 'True'),
              (SELECT avg(observed_quality) FROM sparse_route_log))
FROM labels WHERE route_hash(prompt) & 1 = 1;
EOF
echo
echo "demo: $stored objects stored as deltas, every one rebuilt byte for byte (SHA-256 checked in SQL); database: build/demo/hub.db"
