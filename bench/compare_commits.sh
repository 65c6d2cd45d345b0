#!/usr/bin/env bash
# Training tokens/s and peak RSS of the presets in fp32 and bf16 at a base commit and at the
# working tree, measured back to back in one run (the "must not regress" check of a refactor:
# these machines are noisy, so only ratios from one run are compared).
#
#   bench/compare_commits.sh BASE_REV [CONFIG ...]     # CONFIG: names from configs/, default all five
#
# Environment: STEPS (timed steps, default 10), WARMUP (default 2), ROUNDS (alternating base/new
# runs per cell, default 2; the table shows each side's best), PRECISIONS (default "fp32 bf16").
# Builds BASE_REV's bench_train in a temporary worktree (removed at exit; BASE_TREE=dir reuses a
# checkout of BASE_REV with its build/) and this tree's in build/.
# Prints one Markdown row per config and precision: tokens/s base → new (ratio), peak RSS base → new.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { echo "error: usage: bench/compare_commits.sh BASE_REV [CONFIG ...]" >&2; exit 2; }
base_rev=$1; shift
if [[ $# -gt 0 ]]; then CONFIGS=("$@"); else CONFIGS=(dense moe hmoe_topk hmoe_topp mohge); fi
read -r -a PRECS <<<"${PRECISIONS:-fp32 bf16}"
STEPS=${STEPS:-10} WARMUP=${WARMUP:-2} ROUNDS=${ROUNDS:-2}
py=/usr/bin/python3

if [[ -n ${BASE_TREE:-} ]]; then
  wt=$BASE_TREE  # a checkout of BASE_REV with bench_train built in $BASE_TREE/build (reused)
else
  wt=$(mktemp -d /tmp/mohge_base.XXXXXX)
  cleanup() { git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"; }
  trap cleanup EXIT
  git worktree add --detach "$wt" "$base_rev" >/dev/null
  cmake -S "$wt" -B "$wt/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOHGE_CUDA=OFF -DMOHGE_MPI=OFF >/dev/null
fi
ninja -C "$wt/build" mohge bench_train >&2
[[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build mohge bench_train >&2

# the key that selects the matmul precision in a tree's configs (it moved to [run])
prec_key() {
  if "$1/mohge" config --set run.matmul_precision=fp32 >/dev/null 2>&1; then echo run.matmul_precision
  else echo model.matmul_precision; fi
}
declare -A KEY=([base]=$(prec_key "$wt/build") [new]=$(prec_key build))
declare -A BIN=([base]="$wt/build/bench/bench_train" [new]=build/bench/bench_train)
declare -A CFG=([base]="$wt/configs" [new]=configs)

field() { $py -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
best() { printf '%s\n' "$@" | sort -g | tail -n 1; }
least() { printf '%s\n' "$@" | sort -g | head -n 1; }

echo "| config | precision | tokens/s base → new | new/base | peak RSS MB base → new |"
echo "|---|---|---|---|---|"
for c in "${CONFIGS[@]}"; do
  for p in "${PRECS[@]}"; do
    declare -A TPS=() RSS=()
    for ((r = 0; r < ROUNDS; r++)); do
      for side in base new; do
        out=$("${BIN[$side]}" "${CFG[$side]}/$c.toml" --set "${KEY[$side]}=$p" --steps "$STEPS" --warmup "$WARMUP")
        TPS[$side]+="$(field tokens_per_s <<<"$out") "
        RSS[$side]+="$(field peak_rss_mb <<<"$out") "
      done
    done
    # shellcheck disable=SC2086
    tb=$(best ${TPS[base]}) tn=$(best ${TPS[new]}) rb=$(least ${RSS[base]}) rn=$(least ${RSS[new]})
    printf '| %s | %s | %.0f → %.0f | %.3f | %.0f → %.0f |\n' "$c" "$p" "$tb" "$tn" \
      "$($py -c "print($tn / $tb)")" "$rb" "$rn"
  done
done
