#!/usr/bin/env bash
# The main job on the built-in default: install, build, fetch the default corpus, train the
# tokenizer, prepare shards, train the mohge preset, evaluate it and generate text.
# Usage: scripts/demo.sh [CONFIG] [--set key=value ...]   (default configs/mohge.toml)
# Re-running skips finished data steps; training resumes from the run's last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/mohge.toml
if [[ $# -gt 0 && "$1" != --* ]]; then config=$1; shift; fi
scripts/install_deps.sh
scripts/build.sh mohge
mohge=build/mohge
data=data/default
[[ -f $data/corpus.txt ]] || $mohge data fetch --out $data
[[ -f $data/tokenizer.model ]] || $mohge tokenizer train --input $data/corpus.txt --out $data/tokenizer --vocab-size 8192
[[ -f $data/val.bin ]] || $mohge data prepare --input $data/corpus.txt --tokenizer $data/tokenizer.model --out $data
out=$($mohge config "$config" --get train.out_dir "$@")
$mohge train "$config" --resume "$@"
$mohge eval --checkpoint "$out" --data $data --max-batches 50
$mohge eval --checkpoint "$out" --task cloze --data $data --n 200
for prompt in "The President said" "In the morning, the"; do
  $mohge generate --checkpoint "$out" --prompt "$prompt" --max-tokens 60 --temperature 0.8 --top-p 0.95 --seed 1
done
