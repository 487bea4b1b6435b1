#!/usr/bin/env bash
# pg-fixtures.sh -- lay out the files the pg_regress tests name.
#
# Usage: bash scripts/pg-fixtures.sh   (run by `make installcheck` through
#        REGRESS_PREP; SPARSE_DATA defaults to ../shared/data beside the repo)
# Copies the real model pairs from $SPARSE_DATA/models, and writes the small
# synthetic dataset pairs of scripts/dataset-fixtures.sh (under data/ds), into
# the fixed directory /tmp/sparse_regress/data (readable by the server's OS user
# "postgres") and makes /tmp/sparse_regress/out, writable by it, for the
# files the tests create.  A fixed path keeps the expected output the same on
# every machine, even in error messages that name a file.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${SPARSE_DATA:-$REPO/../shared/data}
MODELS=$DATA/models
REG=/tmp/sparse_regress

[ -f "$MODELS/gpt2-lora-r8/base.safetensors" ] || { echo "pg-fixtures: test data not found under $MODELS" >&2; exit 1; }
[ -f "$DATA/datasets/gsm8k_socratic/base.jsonl" ] || { echo "pg-fixtures: test data not found under $DATA/datasets" >&2; exit 1; }

# copy_models: lay out the fixtures the tests name by absolute path.
copy_models() {
  rm -rf "$REG" || return 1
  mkdir -p "$REG"/data/{gpt2,roberta,mlp,dirpair/base,dirpair/ft} "$REG"/out/cancel "$REG"/out/hub || return 1
  cp "$MODELS"/gpt2-lora-r8/{base,ft}.safetensors "$REG/data/gpt2/" || return 1
  cp "$MODELS"/roberta-lora-r4-biasall/{base,ft}.safetensors "$REG/data/roberta/" || return 1
  cp "$MODELS"/mlp-trained/*.safetensors "$REG/data/mlp/" || return 1
  # a model directory pair: adapter weights plus their JSON config
  for side in base ft; do
    cp "$MODELS/gpt2-lora-r8/$side.safetensors" "$REG/data/dirpair/$side/adapter_model.safetensors" || return 1
    cp "$MODELS/gpt2-lora-r8/adapter_config.json" "$REG/data/dirpair/$side/" || return 1
  done
  # files named .safetensors that are not: text, and a real file cut short
  printf 'this is a text file, not a safetensors file\n' > "$REG/data/text.safetensors"
  head -c 4096 "$MODELS/gpt2-lora-r8/ft.safetensors" > "$REG/data/truncated.safetensors"
  # a link that leaves data/gpt2, for the sparse.root confinement test
  ln -s ../roberta/base.safetensors "$REG/data/gpt2/escape.safetensors" || return 1
  # dataset pairs (CSV, JSONL, 2 -> 3 shards, a malformed CSV), for dataset.sql
  bash "$REPO/scripts/dataset-fixtures.sh" "$REG/data/ds" || return 1
  # a real JSONL pair (1.7 MB), slow enough at level 19 to be cancelled
  mkdir -p "$REG/data/ds/gsm8k" || return 1
  cp "$DATA"/datasets/gsm8k_socratic/{base,derived}.jsonl "$REG/data/ds/gsm8k/" || return 1
  chmod -R a+rX "$REG/data" && chmod 0755 "$REG" && chmod 0777 "$REG/out" "$REG/out/cancel" "$REG/out/hub"
}

copy_models || { echo "pg-fixtures: could not prepare $REG" >&2; exit 1; }
