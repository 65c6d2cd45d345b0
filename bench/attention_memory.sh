#!/usr/bin/env bash
# Peak resident memory of training against the sequence length (issue 8, item 3: attention must
# not hold T×T probabilities, so memory grows linearly in T). For each T, bench_train trains
# CONFIG for STEPS steps on synthetic tokens (forward, backward, AdamW) at batch BATCH with
# model.max_seq_len = train.seq_len = T, under `/usr/bin/time -v`; "Maximum resident set size"
# is the number. Prints one JSON object: the command of every run and its peak RSS in MiB.
#
#   bench/attention_memory.sh [CONFIG]          # default configs/dense.toml
#
# Environment: BENCH (bench_train binary, default build/bench/bench_train: point it at an older
# build to compare), SEQ_LENS (default "256 1024 2048 4096"), BATCH (default 2), STEPS (default 2).
# Exits non-zero if a run fails. bench_train also measures the sgemm rate at the end (a constant
# ~20 MiB of matrices on top of the training state, the same for every T).
set -euo pipefail

cd "$(dirname "$0")/.."
CONFIG=${1:-configs/dense.toml}
BENCH=${BENCH:-build/bench/bench_train}
read -r -a SEQ_LENS <<<"${SEQ_LENS:-256 1024 2048 4096}"
BATCH=${BATCH:-2}
STEPS=${STEPS:-2}
[[ -x $BENCH ]] || { echo "error: $BENCH missing; run: ninja -C build -j2 bench_train" >&2; exit 1; }
[[ -f $CONFIG ]] || { echo "error: no config $CONFIG" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
runs=()
for T in "${SEQ_LENS[@]}"; do
  cmd=("$BENCH" "$CONFIG" --steps "$STEPS" --warmup 0 --set "model.max_seq_len=$T"
       --set "train.seq_len=$T" --set "train.batch_size=$BATCH")
  if ! /usr/bin/time -v "${cmd[@]}" >/dev/null 2>"$log"; then
    echo "error: command failed: ${cmd[*]}" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  kib=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$log")
  runs+=("$(jq -cn --arg cmd "/usr/bin/time -v ${cmd[*]}" --argjson T "$T" --argjson kib "$kib" \
    '{seq_len: $T, peak_rss_mib: ($kib / 1024 | . * 10 | round / 10), command: $cmd}')")
done
printf '%s\n' "${runs[@]}" | jq -s --arg config "$CONFIG" --argjson batch "$BATCH" \
  --argjson steps "$STEPS" --arg cpu "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)" \
  --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  '{config: $config, batch_size: $batch, steps: $steps, cpu: $cpu, date: $date, runs: .}'
