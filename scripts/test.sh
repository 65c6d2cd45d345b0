#!/usr/bin/env bash
# Installs what the tests need, builds everything and runs the whole test suite (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
scripts/build.sh
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 600
