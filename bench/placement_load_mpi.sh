#!/usr/bin/env bash
# Expert-parallel load per rank, measured (issue 9): a small mohge model is trained in one process
# (STEPS_TRAIN steps on a synthetic Zipf-distributed corpus, so its router is no longer uniform),
# then resumed at P ranks (`mpirun -np P mohge train`, parallel.expert_parallel = P) for STEPS_MPI
# more steps under each placement. Every step's log record carries `ranks.expert_load`: Σ rows × width
# over the experts each rank actually ran. Prints one JSON object: per placement, the mean over steps
# of max/mean load per rank and of the step time, and the exchange's and all-reduces' share of it.
#
#   bench/placement_load_mpi.sh            # P = 4; P=8 bench/placement_load_mpi.sh for 8 ranks
#   P=16 EXPERTS_PER_GROUP=8 bench/placement_load_mpi.sh   # all_size needs 2+ experts per rank
#
# Environment: MOHGE (binary, default build/mohge), P (4), EXPERTS_PER_GROUP (4), STEPS_TRAIN (150),
# STEPS_MPI (20), WORK (scratch directory, default a fresh mktemp -d, removed at exit).
set -euo pipefail

cd "$(dirname "$0")/.."
MOHGE=$(realpath "${MOHGE:-build/mohge}")
P=${P:-4}
STEPS_TRAIN=${STEPS_TRAIN:-150}
STEPS_MPI=${STEPS_MPI:-20}
EXPERTS_PER_GROUP=${EXPERTS_PER_GROUP:-4}
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT
[[ -x $MOHGE ]] || { echo "error: $MOHGE missing; run: ninja -C build -j2 mohge" >&2; exit 1; }

# a corpus whose words follow Zipf's law over 2000 made-up words
python3 - "$WORK/corpus.txt" <<'PY'
import random, sys
random.seed(1)
syl = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "hi", "ja", "pe", "qu", "re", "zo"]
words = ["".join(random.choice(syl) for _ in range(random.randint(1, 3))) for _ in range(2000)]
weights = [1.0 / (i + 1) for i in range(len(words))]
with open(sys.argv[1], "w") as f:
    for d in range(3000):
        f.write(" ".join(random.choices(words, weights, k=60)) + ".\n\n")
PY
"$MOHGE" tokenizer train --input "$WORK/corpus.txt" --out "$WORK/tok" --vocab-size 1024 >/dev/null
"$MOHGE" data prepare --input "$WORK/corpus.txt" --tokenizer "$WORK/tok.model" --out "$WORK/data" >/dev/null

# 4 groups × EXPERTS_PER_GROUP experts, widths 64…160: all_size balances P ranks that hold 2 or 4 experts each
sets=(--set model.vocab_size=1024 --set model.hidden_size=64 --set model.num_layers=2 --set model.num_heads=4
      --set model.max_seq_len=64 --set model.ffn_kind=mohge --set moe.num_expert_groups=4 --set moe.experts_per_group=$EXPERTS_PER_GROUP
      --set "moe.group_widths=[64, 96, 128, 160]" --set moe.topk_group=2 --set moe.num_experts_per_tok=4
      --set moe.shared_expert_width=64 --set moe.group_coef=0.01 --set moe.intra_group_coef=0.01
      --set moe.global_batch_stats=true --set train.batch_size=16 --set train.seq_len=64 --set train.lr=3e-3
      --set train.warmup_steps=10 --set train.eval_every=0 --set train.eval_batches=2 --set run.threads=1
      --set "data.dir=$WORK/data" --set "data.tokenizer=$WORK/tok.model")
"$MOHGE" train -q "${sets[@]}" --set "train.steps=$STEPS_TRAIN" --set "train.out_dir=$WORK/trained" >/dev/null

results=()
for placement in contiguous pairing all_size; do
  run="$WORK/run_$placement"
  cp -r "$WORK/trained" "$run"
  cmd=(mpirun --oversubscribe -np "$P" "$MOHGE" train -q --resume "${sets[@]}"
       --set "train.steps=$((STEPS_TRAIN + STEPS_MPI))" --set "train.out_dir=$run"
       --set "parallel.expert_parallel=$P" --set "parallel.placement=$placement")
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "${cmd[@]}" >/dev/null
  results+=("$(jq -s --arg placement "$placement" --arg cmd "${cmd[*]}" '
    [.[] | select(.ranks != null)] as $s | ($s | length) as $n |
    {placement: $placement, steps: $n,
     max_over_mean_load: ([$s[].ranks.expert_load_max_over_mean] | add / $n * 1000 | round / 1000),
     worst_step_max_over_mean: ([$s[].ranks.expert_load_max_over_mean] | max * 1000 | round / 1000),
     load_per_rank: ([range(0; $s[0].ranks.expert_load | length) as $r | [$s[].ranks.expert_load[$r]] | add / $n | round]),
     step_s: ([$s[] | (.tokens / .step) / .tokens_per_s] | add / $n * 1000 | round / 1000),
     tokens_per_s: ([$s[].tokens_per_s] | add / $n | round),
     exchange_share: ([$s[] | (.ranks.exchange_s | max) * .tokens_per_s / (.tokens / .step)] | add / $n * 1000 | round / 1000),
     allreduce_share: ([$s[] | (.ranks.allreduce_s | max) * .tokens_per_s / (.tokens / .step)] | add / $n * 1000 | round / 1000),
     command: $cmd}' "$run/log.jsonl")")
done
printf '%s\n' "${results[@]}" | jq -s --argjson P "$P" '{ranks: $P, placements: .}'
