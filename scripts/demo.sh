#!/usr/bin/env bash
# scripts/demo.sh -- sparse in a small SQLite model hub, on real fine-tunes.
#
# Usage (from the repository root):  make demo
#    or:  SPARSE_DATA=/path/to/shared/data bash scripts/demo.sh
#    (DEMO_LEVEL=19 for the smallest deltas; default 3.)
#
# What it does, all inside the sqlite3 shell with ".load ./sparse":
#   1. creates build/demo/hub.db with a "models" table (id, name, path,
#      base_path, ft_sha256) holding real base/fine-tune pairs from
#      $SPARSE_DATA/models (two LoRA adapters, a fully and a half-frozen
#      fine-tune of an MLP in F32 and BF16, and one step of a checkpoint
#      chain); ft_sha256 is what sha256sum prints for the original file;
#   2. runs delta_estimate(base_path, path) for every model (a sample);
#   3. delta_compress(...) stores each fine-tune as build/demo/deltas/NAME.delta;
#   4. delta_apply(...) rebuilds each into build/demo/rebuilt/NAME.safetensors;
#   5. sha256sum of each rebuilt file is recorded, and SQL checks that the
#      original's SHA-256, the one sparse recorded when compressing, the one
#      it checked when rebuilding and the rebuilt file's all agree;
#   6. prints a table (model, sizes, savings, estimate, verified) and a one
#      line summary.
# It wipes build/demo first, so it can be run again; exits 1 if any model
# fails to rebuild exactly.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make demo does)}"
M="$(realpath "$SPARSE_DATA")/models"
LEVEL=${DEMO_LEVEL:-3}
DEMO="$ROOT/build/demo"

if [ ! -f "$ROOT/sparse.so" ]; then
	echo "demo: ./sparse.so is missing: run 'make sparse.so' first" >&2
	exit 1
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/deltas" "$DEMO/rebuilt"

# sql_str TEXT: TEXT as an SQL string literal (single quotes doubled).
sql_str() { printf "'%s'" "${1//\'/\'\'}"; }

# The hub's models: NAME BASE FT (paths relative to $SPARSE_DATA/models).
MODELS=(
	"gpt2-lora-r8            gpt2-lora-r8/base.safetensors             gpt2-lora-r8/ft.safetensors"
	"gpt2-lora-r8@7500       gpt2-lora-r8/chain/ckpt-7000.safetensors  gpt2-lora-r8/chain/ckpt-7500.safetensors"
	"roberta-lora-r4-biasall roberta-lora-r4-biasall/base.safetensors  roberta-lora-r4-biasall/ft.safetensors"
	"mlp-ft.f32              mlp-trained/base.f32.safetensors          mlp-trained/ft.f32.safetensors"
	"mlp-ft_frozen.f32       mlp-trained/base.f32.safetensors          mlp-trained/ft_frozen.f32.safetensors"
	"mlp-ft.bf16             mlp-trained/base.bf16.safetensors         mlp-trained/ft.bf16.safetensors"
	"mlp-ft_frozen.bf16      mlp-trained/base.bf16.safetensors         mlp-trained/ft_frozen.bf16.safetensors"
)

# INSERT statements for the models table, with sha256sum of each original.
inserts() {
	local id=0 name base ft
	for row in "${MODELS[@]}"; do
		read -r name base ft <<<"$row"
		id=$((id + 1))
		echo "INSERT INTO models VALUES ($id, $(sql_str "$name"), $(sql_str "$M/$ft")," \
			"$(sql_str "$M/$base"), $(sql_str "$(sha256sum "$M/$ft" | cut -d' ' -f1)"));"
	done
}

echo "== building the hub in build/demo/hub.db (sqlite3 + .load ./sparse, level $LEVEL)"
sqlite3 "$DEMO/hub.db" <<EOF
.bail on
.load ./sparse
CREATE TABLE models (
	id        INTEGER PRIMARY KEY,
	name      TEXT NOT NULL UNIQUE,
	path      TEXT NOT NULL,     -- the fine-tune as uploaded
	base_path TEXT NOT NULL,     -- the model it was fine-tuned from
	ft_sha256 TEXT NOT NULL      -- sha256sum of the upload
);
$(inserts)

-- 1. how much would a delta save?  (encodes a 5% sample)
CREATE TABLE estimates AS
	SELECT m.id, e.est_delta_bytes, e.savings_pct, e.elapsed_ms
	FROM models m, delta_estimate(m.base_path, m.path, 0.05) e;

-- 2. store every fine-tune as a delta against its base
CREATE TABLE deltas AS
	SELECT m.id, c.delta_path, c.ft_bytes, c.delta_bytes, c.savings_pct,
	       c.ft_sha256, c.elapsed_ms
	FROM models m,
	     delta_compress(m.base_path, m.path,
	                    $(sql_str "$DEMO/deltas/") || m.name || '.delta', $LEVEL) c;

-- 3. rebuild every fine-tune from its base and its delta
CREATE TABLE rebuilt AS
	SELECT m.id, a.out_path, a.bytes, a.sha256, a.verified, a.elapsed_ms,
	       NULL AS file_sha256
	FROM models m JOIN deltas d USING (id),
	     delta_apply(m.base_path, d.delta_path,
	                 $(sql_str "$DEMO/rebuilt/") || m.name || '.safetensors') a;
EOF

# sha256sum of each rebuilt file, computed outside sparse, into the hub.
{
	echo ".bail on"
	for f in "$DEMO"/rebuilt/*.safetensors; do
		echo "UPDATE rebuilt SET file_sha256 = $(sql_str "$(sha256sum "$f" | cut -d' ' -f1)")" \
			"WHERE out_path = $(sql_str "$f");"
	done
} | sqlite3 "$DEMO/hub.db"

echo "== every model: stored as a delta, rebuilt, checked by SHA-256 in SQL"
sqlite3 "$DEMO/hub.db" <<'EOF'
.bail on
CREATE VIEW report AS
	SELECT m.name AS model,
	       d.ft_bytes, d.delta_bytes, d.savings_pct, e.savings_pct AS estimate_pct,
	       (r.verified AND r.sha256 = m.ft_sha256 AND d.ft_sha256 = m.ft_sha256
	        AND r.file_sha256 = m.ft_sha256 AND r.bytes = d.ft_bytes) AS ok
	FROM models m JOIN deltas d USING (id) JOIN estimates e USING (id)
	     LEFT JOIN rebuilt r USING (id)
	ORDER BY m.id;
.mode box
SELECT model,
       printf('%,9d', ft_bytes) AS "ft bytes",
       printf('%,11d', delta_bytes) AS "delta bytes",
       printf('%9.1f', savings_pct) AS "savings %",
       printf('%10.1f', estimate_pct) AS "estimate %",
       CASE WHEN ok THEN 'yes' ELSE 'NO' END AS verified
FROM report;
.mode list
SELECT printf('demo: %d fine-tunes, %.2f MB stored as %.2f MB of deltas (%.1f%% saved); '
              || '%d of %d rebuilt byte-for-byte, SHA-256 checked in SQL',
              count(*), sum(ft_bytes) / 1e6, sum(delta_bytes) / 1e6,
              100.0 * (1 - 1.0 * sum(delta_bytes) / sum(ft_bytes)),
              sum(coalesce(ok, 0)), count(*))
FROM report;
EOF

failed=$(sqlite3 "$DEMO/hub.db" "SELECT count(*) FROM report WHERE NOT coalesce(ok, 0);")
if [ "$failed" -ne 0 ]; then
	echo "demo: $failed model(s) did not rebuild exactly" >&2
	exit 1
fi
