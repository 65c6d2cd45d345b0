#!/usr/bin/env bash
# Training throughput over MPI on one machine (issue 9): configs/mohge.toml (or CONFIG) for STEPS
# steps as one process with 2 threads and with 1, then as `mpirun -np 2` with one thread per rank:
# data parallel (DP 2), expert parallel (EP 2) and DP 2 with ZeRO-1. Prints one JSON object per run:
# mean tokens/s and step time over the steps after the first two (warm-up), and from the per-rank
# step log the share of the step the slowest rank spent in the token exchange and in the gradient
# collectives, and the AdamW state per rank.
#
#   DATA=data/default bench/mpi_scaling.sh
#
# Environment: MOHGE (binary, default build/mohge), CONFIG (configs/mohge.toml), DATA (a prepared
# data dir with its tokenizer.model, default data/default: scripts/demo.sh makes it), STEPS (12),
# WORK (scratch directory, default a fresh mktemp -d, removed at exit).
set -euo pipefail

cd "$(dirname "$0")/.."
MOHGE=$(realpath "${MOHGE:-build/mohge}")
CONFIG=${CONFIG:-configs/mohge.toml}
DATA=$(realpath "${DATA:-data/default}")
STEPS=${STEPS:-12}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT
[[ -x $MOHGE ]] || { echo "error: $MOHGE missing; run: ninja -C build -j2 mohge" >&2; exit 1; }
[[ -f $DATA/train.bin ]] || { echo "error: no prepared data in $DATA (run scripts/demo.sh or set DATA)" >&2; exit 1; }

common=(--set "data.dir=$DATA" --set "data.tokenizer=$DATA/tokenizer.model" --set "train.steps=$STEPS"
        --set train.eval_every=0 --set train.eval_batches=1 --set train.checkpoint_every=0)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# run LABEL NP THREADS [--set ...]: NP = 0 runs one process without mpirun
run() {
  local label=$1 np=$2 threads=$3 out="$WORK/$1"
  shift 3
  local cmd=("$MOHGE" train -q "$CONFIG" "${common[@]}" --set "run.threads=$threads" --set "train.out_dir=$out" "$@")
  if [[ $np -gt 0 ]]; then cmd=(mpirun --oversubscribe -np "$np" "${cmd[@]}"); fi
  OMP_NUM_THREADS=$threads "${cmd[@]}" >/dev/null
  jq -s -c --arg name "$label" --arg cmd "${cmd[*]}" '
    [.[] | select(.tokens_per_s != null and .step > 2)] as $s | ($s | length) as $n |
    def share(f): if $s[0].ranks then ([$s[] | (.ranks | f | max) * .tokens_per_s / (.tokens / .step)] | add / $n * 1000 | round / 1000) else null end;
    {run: $name, steps_measured: $n,
     tokens_per_s: ([$s[].tokens_per_s] | add / $n | round),
     step_s: ([$s[] | (.tokens / .step) / .tokens_per_s] | add / $n * 1000 | round / 1000),
     exchange_share: share(.exchange_s), gradient_collectives_share: share(.allreduce_s),
     optimizer_state_bytes: (if $s[0].ranks then $s[0].ranks.optimizer_state_bytes else null end),
     command: $cmd}' "$out/log.jsonl"
}

run one_process_2_threads 0 2
run one_process_1_thread 0 1
run dp2 2 1 --set parallel.data_parallel=2
run ep2 2 1 --set parallel.expert_parallel=2
run dp2_zero1 2 1 --set parallel.data_parallel=2 --set parallel.zero1=true
