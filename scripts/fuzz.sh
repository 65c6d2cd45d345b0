#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang with ASan + UBSan) in build-fuzz and runs each for
# SECONDS (default 60), starting from its committed seed corpus fuzz/corpus/<name>/. Fails on any
# crash, hang (an input running over 10 s), sanitizer report or unclean exception; the input that
# did it is left in build-fuzz/artifacts/. Prints inputs tried (libFuzzer's exec count) per harness.
# With FUZZ_SEED and FUZZ_RUNS set, each harness tries exactly FUZZ_RUNS inputs from that seed (still
# capped at SECONDS): the same inputs on every run, so CI is a reproducible regression check and
# never fails on a find that is not about the commit under test. Exploration runs leave them unset.
# Usage: [FUZZ_SEED=N FUZZ_RUNS=N] scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOHGE_FUZZ=ON \
  -DBUILD_TESTING=OFF -DMOHGE_BENCH=OFF "${launcher[@]}" >/dev/null
mkdir -p build-fuzz/logs
if ! nice ninja -C build-fuzz -j"$(nproc)" fuzzers >build-fuzz/logs/build.log 2>&1; then
  grep -E 'error|FAILED|undefined reference' build-fuzz/logs/build.log | head -20 >&2
  echo "error: building the fuzz harnesses failed (build-fuzz/logs/build.log)" >&2
  exit 1
fi
names=("$@")
if ((${#names[@]} == 0)); then
  for d in fuzz/corpus/*/; do names+=("$(basename "$d")"); done
fi
mkdir -p build-fuzz/artifacts build-fuzz/logs
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
repeat=()
if [[ -n "${FUZZ_SEED:-}" && -n "${FUZZ_RUNS:-}" ]]; then repeat=(-seed="$FUZZ_SEED" -runs="$FUZZ_RUNS"); fi
failed=0
printf '%-16s %10s %8s  %s\n' harness inputs corpus result
for n in "${names[@]}"; do
  work="build-fuzz/corpus/$n"
  if ((${#repeat[@]})); then work="build-fuzz/corpus-repeat/$n"; rm -rf "$work"; fi  # same start every time
  mkdir -p "$work"
  log="build-fuzz/logs/$n.log"
  if "build-fuzz/fuzz/fuzz_$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${repeat[@]}" \
       -artifact_prefix="build-fuzz/artifacts/$n-" "$work" "fuzz/corpus/$n" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    failed=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  printf '%-16s %10s %8s  %s\n' "$n" "$execs" "$(ls "$work" | wc -l)" "$result"
done
exit $failed
