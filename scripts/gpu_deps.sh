#!/usr/bin/env bash
# Downloads (here, where apt works) the Debian packages of the libraries mohge builds on into
# .gpu_deps/ (git-ignored, about 10 MB), for a GPU machine that has CUDA, CMake and a C++ compiler
# but none of them and no network: scripts/gpu_check.sh unpacks them into a private prefix there
# (never into /) when its own system lacks them. Carry the folder with the run (carry: .gpu_deps).
# Idempotent: packages already downloaded are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# cpp-httplib's pkg-config file requires openssl, zlib and brotli: their -dev packages (and the
# runtime libraries their .so links point to) come along.
pkgs=(libdnnl-dev libdnnl2 ocl-icd-libopencl1 libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev
      libtomlplusplus-dev libtomlplusplus3 libcli11-dev libfmt-dev libfmt9 libgtest-dev libomp5-14
      libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 zlib1g-dev zlib1g libbrotli-dev libbrotli1)
mkdir -p .gpu_deps
cd .gpu_deps
for p in "${pkgs[@]}"; do
  compgen -G "${p}_*.deb" >/dev/null || apt-get download -q "$p"
done
printf '%s packages in .gpu_deps/ (%s)\n' "$(ls -1 *.deb | wc -l)" "$(du -sh . | cut -f1)"
