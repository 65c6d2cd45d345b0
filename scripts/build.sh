#!/usr/bin/env bash
# Configures (once) and builds mohge in build/. Usage: scripts/build.sh [extra ninja targets]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$(nproc)" "$@"
