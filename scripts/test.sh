#!/usr/bin/env bash
# Installs what the tests need, builds everything, runs the whole test suite (CTest), then each
# fuzz harness for 20 s (scripts/fuzz.sh: fails on any crash, hang or sanitizer report).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
scripts/build.sh
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 600
scripts/fuzz.sh 20
