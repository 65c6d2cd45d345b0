#!/usr/bin/env bash
# Training throughput of mohge vs PyTorch (autograd, AdamW) on the preset configs, in fp32 and in
# bf16 mixed precision (mohge: run.matmul_precision = "bf16"; PyTorch: CPU autocast).
#
#   bench/run_benchmarks.sh [CONFIG ...]      # names from configs/, default: all five presets
#
# Environment: STEPS (timed steps, default 10), WARMUP (default 2), PRECISIONS (default
# "fp32 bf16"; bf16 needs AVX512-BF16), CHECK=1 (torch_bench.py
# --check: first verify loss + gradients against tools/torch_ref.py), TORCH_ARGS (extra
# torch_bench.py arguments, e.g. "--threads 2"), OUT_DIR (raw JSON + logs, default
# /tmp/mohge_bench_results), BUILD=1 (run `ninja -C build mohge bench_train` first).
# For each config: `mohge init` a checkpoint, then per precision build/bench/bench_train and
# bench/torch_bench.py back to back (so both see the same machine state), then one Markdown
# table row per precision; "vs best torch" divides by PyTorch's faster precision for that config.
# Prints the table to stdout; exits non-zero if any command fails.
# shellcheck disable=SC2086  # the *_CMD strings are split into words on purpose
set -euo pipefail

cd "$(dirname "$0")/.."
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
OUT_DIR=${OUT_DIR:-/tmp/mohge_bench_results}
TORCH_ARGS=${TORCH_ARGS:-}
PY=/usr/bin/python3          # Debian's python3-torch lives here, not in the python3 on PATH
MOHGE=build/mohge
BENCH=build/bench/bench_train

if [[ $# -gt 0 ]]; then CONFIGS=("$@"); else CONFIGS=(dense moe hmoe_topk hmoe_topp mohge); fi
read -r -a PRECS <<<"${PRECISIONS:-fp32 bf16}"
for p in "${PRECS[@]}"; do
  [[ $p == fp32 || $p == bf16 ]] || { echo "error: PRECISIONS: unknown precision '$p' (fp32 | bf16)" >&2; exit 1; }
done

scripts/install_deps.sh --bench >&2  # PyTorch on OpenBLAS, as its users run it (torch_bench.py checks)
if [[ ${BUILD:-0} == 1 ]]; then ninja -C build -j2 mohge bench_train >&2; fi
for f in "$MOHGE" "$BENCH"; do
  [[ -x $f ]] || { echo "error: $f missing; run: ninja -C build -j2 mohge bench_train" >&2; exit 1; }
done
for c in "${CONFIGS[@]}"; do
  [[ -f configs/$c.toml ]] || { echo "error: no configs/$c.toml" >&2; exit 1; }
done
mkdir -p "$OUT_DIR"

# json_get FILE KEY: one top-level value of a JSON file
if command -v jq >/dev/null 2>&1; then
  json_get() { jq -er ".$2" "$1"; }
else
  json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
fi
fmt() { printf "%.${2}f" "$1"; }   # fmt NUMBER DECIMALS

# run NAME CMD...: run a command, stdout -> $OUT_DIR/NAME.json, stderr -> $OUT_DIR/NAME.log
run() {
  local name=$1; shift
  if ! "$@" >"$OUT_DIR/$name.json" 2>"$OUT_DIR/$name.log"; then
    echo "error: command failed: $*" >&2
    tail -n 30 "$OUT_DIR/$name.log" >&2
    exit 1
  fi
}

# Resolve batch/seq per config and build the exact commands up front (printed in the header).
declare -A INIT_CMD BENCH_CMD TORCH_CMD
for c in "${CONFIGS[@]}"; do
  B=$("$MOHGE" config "configs/$c.toml" --get train.batch_size)
  T=$("$MOHGE" config "configs/$c.toml" --get train.seq_len)
  INIT_CMD[$c]="$MOHGE init configs/$c.toml --out /tmp/mohge_bench_$c"
  for p in "${PRECS[@]}"; do
    BENCH_CMD[$c.$p]="$BENCH configs/$c.toml --steps $STEPS --warmup $WARMUP --set run.matmul_precision=$p"
    TORCH_CMD[$c.$p]="$PY bench/torch_bench.py --checkpoint /tmp/mohge_bench_$c --batch $B --seq $T --steps $STEPS --warmup $WARMUP"
    if [[ $p == bf16 ]]; then TORCH_CMD[$c.$p]+=" --bf16"; fi
    if [[ ${CHECK:-0} == 1 ]]; then TORCH_CMD[$c.$p]+=" --check"; fi
    if [[ -n $TORCH_ARGS ]]; then TORCH_CMD[$c.$p]+=" $TORCH_ARGS"; fi
  done
done

TORCH_VER=$("$PY" -c 'import torch; print(torch.__version__)')
CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
echo "## mohge vs PyTorch training throughput"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- nproc: $(nproc); CPU: ${CPU:-unknown}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)'); PyTorch $TORCH_VER (default threads unless noted in the commands)"
echo "- steps: $STEPS timed after $WARMUP warm-up, synthetic uniform tokens; raw JSON and logs in $OUT_DIR"
echo "- commands, per config, in this order:"
echo
echo '```'
for c in "${CONFIGS[@]}"; do
  echo "${INIT_CMD[$c]}"
  for p in "${PRECS[@]}"; do
    echo "${BENCH_CMD[$c.$p]}"
    echo "${TORCH_CMD[$c.$p]}"
  done
done
echo '```'
echo
echo "| config | precision | mohge tok/s | torch tok/s | mohge/torch | mohge vs best torch | mohge model GFLOP/s | fraction of fp32 sgemm | mohge peak RSS MB | torch peak RSS MB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"

for c in "${CONFIGS[@]}"; do
  echo "[$c] init, then bench_train and torch_bench per precision ..." >&2
  run "$c.init" ${INIT_CMD[$c]}
  best=0
  for p in "${PRECS[@]}"; do
    run "$c.$p.mohge" ${BENCH_CMD[$c.$p]}
    run "$c.$p.torch" ${TORCH_CMD[$c.$p]}
    best=$(awk -v a="$best" -v b="$(json_get "$OUT_DIR/$c.$p.torch.json" tokens_per_s)" 'BEGIN { print (b > a ? b : a) }')
  done
  for p in "${PRECS[@]}"; do
    m="$OUT_DIR/$c.$p.mohge.json" t="$OUT_DIR/$c.$p.torch.json"
    m_tps=$(json_get "$m" tokens_per_s)
    t_tps=$(json_get "$t" tokens_per_s)
    ratio=$(awk -v a="$m_tps" -v b="$t_tps" 'BEGIN { printf "%.2f", a / b }')
    vs_best=$(awk -v a="$m_tps" -v b="$best" 'BEGIN { printf "%.2f", a / b }')
    printf '| %s | %s | %s | %s | %s× | %s× | %s | %s | %s | %s |\n' "$c" "$p" "$(fmt "$m_tps" 0)" "$(fmt "$t_tps" 0)" \
      "$ratio" "$vs_best" "$(fmt "$(json_get "$m" model_gflops)" 1)" "$(fmt "$(json_get "$m" fraction_of_sgemm)" 3)" \
      "$(fmt "$(json_get "$m" peak_rss_mb)" 0)" "$(fmt "$(json_get "$t" peak_rss_mb)" 0)"
  done
done
