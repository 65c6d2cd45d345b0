#!/usr/bin/env bash
# One command for a GPU machine (issue 10): configures and builds mohge with the CUDA backend,
# runs the GPU tests (test_cuda; the op table's cuda rows against the float64 reference; a
# training step on cuda against the cpu backend) and the benchmark (bench_train on the
# configs/gpu models, and bench/torch_gpu_bench.py — the same models in PyTorch — when torch sees
# the GPU), then prints a short table last. Designed to finish in < 8 minutes on an H200 with 16
# cores; every stage has a time limit.
#   scripts/gpu_check.sh                 (from anywhere; works in the repository root)
# Needs nvidia-smi, nvcc (CUDA 12+; CUDAToolkit_ROOT or /usr/local/cuda), CMake ≥ 3.25, ninja, a
# C++20 compiler. The libraries mohge builds on (oneDNN, SentencePiece, toml++, fmt, nlohmann-json,
# CLI11, GoogleTest) come from the system, or, where the system lacks them (a GPU machine without
# network), from the Debian packages that scripts/gpu_deps.sh downloads into .gpu_deps/, unpacked
# into a private prefix. Logs and JSON go to gpu_check/ (and, as one archive plus the table, to
# $OUT when that is set).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=gpu_check
rm -rf "$out" && mkdir -p "$out"
t_start=$(date +%s)
say() { printf '[gpu_check %4ss] %s\n' "$(($(date +%s) - t_start))" "$*"; }
die() { echo "error: $*"; exit 1; }

# ---- the machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1 ||
  die "nvidia-smi failed: no NVIDIA GPU or driver here ($(head -c 200 "$out/gpu.txt"))"
export PATH="${CUDAToolkit_ROOT:-/usr/local/cuda}/bin:$PATH"
command -v nvcc >/dev/null || die "nvcc not found (set CUDAToolkit_ROOT)"
say "GPU: $(head -1 "$out/gpu.txt"); $(nvcc --version | tail -1); $(nproc) cores"

# ---- dependencies: the system's, else the carried Debian packages in a private prefix
cmake_deps=()
torch_env=()  # PyTorch runs on the caller's library path: the carried packages' libraries are not its own
if ! pkg-config --exists sentencepiece tomlplusplus 2>/dev/null || ! [[ -f /usr/include/dnnl.h || -f /usr/local/include/dnnl.h ]] ||
   ! ldconfig -p 2>/dev/null | grep -q 'libomp\.so\.5'; then
  compgen -G ".gpu_deps/*.deb" >/dev/null ||
    die "this machine lacks mohge's libraries (oneDNN, SentencePiece, toml++, LLVM's OpenMP ...): run scripts/gpu_deps.sh where apt works and carry .gpu_deps"
  prefix=/tmp/mohge_deps
  rm -rf "$prefix" && mkdir -p "$prefix"
  for f in .gpu_deps/*.deb; do dpkg -x "$f" "$prefix" || die "cannot unpack $f"; done
  arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  export PKG_CONFIG_SYSROOT_DIR=$prefix PKG_CONFIG_LIBDIR=$prefix/usr/lib/$arch/pkgconfig:$prefix/usr/share/pkgconfig
  if [[ -v LD_LIBRARY_PATH ]]; then torch_env=(LD_LIBRARY_PATH="$LD_LIBRARY_PATH"); else torch_env=(-u LD_LIBRARY_PATH); fi
  export LD_LIBRARY_PATH=$prefix/usr/lib/$arch:$prefix/usr/lib/llvm-14/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  cmake_deps=(-DCMAKE_PREFIX_PATH="$prefix/usr" -DLIBOMP="$prefix/usr/lib/llvm-14/lib/libomp.so.5")
  say "libraries: the carried packages, unpacked in $prefix"
fi

# ---- build (only what the check runs)
say "configure"
timeout 120 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOHGE_CUDA=ON -DMOHGE_MPI=OFF \
  "${cmake_deps[@]}" > "$out/configure.log" 2>&1 || die "configure failed: $(grep -m1 -i error "$out/configure.log")  (log: $out/configure.log)"
say "build"
timeout 360 ninja -C build-gpu -j"$(nproc)" test_cuda test_ops test_backend_model bench_train > "$out/build.log" 2>&1 ||
  die "build failed: $(grep -m1 -E 'error|FAILED' "$out/build.log")  (log: $out/build.log)"

# ---- tests: each a gtest binary with a filter; the summary counts come from gtest's own lines
declare -A test_result
run_test() {  # name, timeout, command...
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$? passed failed skipped
  passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$out/$name.log" | tail -1)
  failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?, listed)' "$out/$name.log" | tail -1)
  skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?, listed)' "$out/$name.log" | tail -1)
  test_result[$name]="rc=$rc passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}"
  say "test $name: ${test_result[$name]}"
}
# HonoursCudaVisibleDevices must be the first CUDA call of its process: a process of its own
run_test cuda_device 60 build-gpu/tests/test_cuda --gtest_filter='-CudaDevice.HonoursCudaVisibleDevices'
run_test cuda_visible 60 build-gpu/tests/test_cuda --gtest_filter='CudaDevice.HonoursCudaVisibleDevices'
run_test op_table 240 build-gpu/tests/test_ops --gtest_filter='Ops/OpTest.MatchesReference/cuda_*'
run_test training_step 120 build-gpu/tests/test_backend_model

# ---- benchmark: the engine on the GPU, peak GPU memory sampled by nvidia-smi
bench_engine() {  # config name
  local name=$1
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$out/mem_$name.log" 2>/dev/null &
  local smi=$!
  timeout 150 build-gpu/bench/bench_train "configs/gpu/$name.toml" --set run.backend=cuda --steps 5 --warmup 2 \
    > "$out/engine_$name.json" 2> "$out/engine_$name.err"
  say "engine $name: rc=$? $(head -c 300 "$out/engine_$name.err")"
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
}
for c in dense_3b moe_3b mohge_3b; do bench_engine "$c"; done

# ---- the same models in PyTorch, same GPU, same call
if timeout 60 env "${torch_env[@]}" python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for c in dense_3b moe_3b mohge_3b; do
    timeout 120 env "${torch_env[@]}" python3 bench/torch_gpu_bench.py "configs/gpu/$c.toml" --steps 8 --warmup 3 \
      > "$out/torch_$c.json" 2> "$out/torch_$c.err"
    say "torch $c: rc=$? $(tail -c 300 "$out/torch_$c.err")"
  done
else
  say "torch: not run (python3 has no torch that sees the GPU)"
fi

# ---- the table (last)
python3 - "$out" "$(($(date +%s) - t_start))" "${test_result[cuda_device]}" "${test_result[cuda_visible]}" \
  "${test_result[op_table]}" "${test_result[training_step]}" > "$out/summary.md" <<'PY'
import json, sys, os
out, secs, *tests = sys.argv[1:]
def load(path):
    try:
        with open(path) as f: return json.load(f)
    except Exception: return None
def peak_mem(name):
    try:
        vals = [int(l) for l in open(f"{out}/mem_{name}.log") if l.strip().isdigit()]
        return f"{(max(vals) - min(vals)) / 1024:.1f} GiB" if vals else "-"
    except Exception: return "-"
def err(path):
    try:
        lines = [l.strip() for l in open(path) if l.strip()]
        return lines[-1][:70] if lines else ""
    except Exception: return ""
gpu = open(f"{out}/gpu.txt").read().strip()
print(f"## gpu_check: {gpu}, {secs} s\n")
print("| test | result |\n|---|---|")
for name, r in zip(["test_cuda", "test_cuda (CUDA_VISIBLE_DEVICES)", "op table, cuda rows", "training step cuda vs cpu"], tests):
    print(f"| {name} | {r} |")
print("\n| model | engine tokens/s | engine MFU | engine peak GPU mem | engine matmul TFLOP/s | torch tokens/s | torch MFU | torch peak mem | engine / torch |")
print("|---|---|---|---|---|---|---|---|---|")
for c in ["dense_3b", "moe_3b", "mohge_3b"]:
    e, t = load(f"{out}/engine_{c}.json"), load(f"{out}/torch_{c}.json")
    es = f"{e['tokens_per_s']:,.0f}" if e else f"not run: {err(f'{out}/engine_{c}.err')}"
    em = f"{100 * e['mfu']:.1f}%" if e else "-"
    mm = f"{e['device_matmul_tflops']:.0f}" if e else "-"
    ts = f"{t['tokens_per_s']:,.0f} ({t.get('experts', '')})" if t else "-"
    tm = f"{100 * t['mfu']:.1f}%" if t else "-"
    tp = f"{t['peak_mem_gib']:.1f} GiB" if t else "-"
    ratio = f"{e['tokens_per_s'] / t['tokens_per_s']:.2f}x" if e and t else "-"
    print(f"| {c} | {es} | {em} | {peak_mem(c) if e else '-'} | {mm} | {ts} | {tm} | {tp} | {ratio} |")
print("\nMFU = tokens/s × (6 × activated matmul parameters + 6·L·d·T) / 989 TFLOP/s (H200 dense bf16).")
PY
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$out/summary.md" "$OUT/" && tar czf "$OUT/gpu_check_logs.tgz" "$out"
fi
echo
cat "$out/summary.md"
