#!/usr/bin/env bash
# Reproduces docs/EXPERIMENTS.md: trains every config in configs/experiments/ (resuming finished or
# interrupted runs), evaluates each (validation loss, cloze), analyzes the MoE runs, copies the
# report charts to docs/experiments/ and prints the tables.
# Needs the default data (scripts/demo.sh builds it). Usage: scripts/experiments.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh mohge
mohge=build/mohge
data=data/default
[[ -f $data/val.bin && -f $data/corpus.txt ]] || { echo "error: run scripts/demo.sh first (needs $data)" >&2; exit 1; }
names=("$@")
if ((${#names[@]} == 0)); then
  for f in configs/experiments/*.toml; do names+=("$(basename "$f" .toml)"); done
fi
for name in "${names[@]}"; do
  cfg=configs/experiments/$name.toml
  out=$($mohge config "$cfg" --get train.out_dir)
  echo "=== $name ($out)"
  $mohge train "$cfg" --resume -q
  $mohge eval --checkpoint "$out" --data $data > "$out/eval_loss.json"
  $mohge eval --checkpoint "$out" --task cloze --data $data --n 300 > "$out/eval_cloze.json"
  if [[ $($mohge config "$cfg" --get model.ffn_kind) != dense ]]; then
    $mohge analyze "$out" --data $data --out "$out/analysis" --batches 16 --devices 4 > /dev/null
  fi
done
python3 tools/experiments_table.py runs/exp --charts docs/experiments
