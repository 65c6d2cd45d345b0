#!/usr/bin/env bash
# Installs what the tests need, builds everything, runs the whole test suite (CTest), then each
# fuzz harness on 30000 inputs from a fixed seed (scripts/fuzz.sh: fails on any crash, hang or
# sanitizer report; the same inputs every run, so only the commit under test can fail it), then
# the server's load test under AddressSanitizer / LeakSanitizer (scripts/asan_serve.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
scripts/build.sh
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 600
FUZZ_SEED=1 FUZZ_RUNS=30000 scripts/fuzz.sh 60
scripts/asan_serve.sh
