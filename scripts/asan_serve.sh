#!/usr/bin/env bash
# The server under AddressSanitizer + LeakSanitizer: builds `mohge`, its HTTP module and the serve
# tests with -O1 -fsanitize=address in build-asan/ (-O1 builds quicker; this test is not about speed) and
# runs the load test (200 requests from 16 clients, then a SIGTERM drain) and the limit tests
# (full queue, disconnects, loading, SIGTERM mid-stream). Any ASan or
# LSan report makes a process exit non-zero, and the tests assert exit 0 of the server.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE= -DMOHGE_CUDA=OFF -DMOHGE_MPI=OFF -DMOHGE_BENCH=OFF \
  "${launcher[@]}" "-DCMAKE_CXX_FLAGS=-O1 -fsanitize=address -fno-omit-frame-pointer" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address" "-DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=address" >/dev/null
ninja -C build-asan mohge test_serve
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 build-asan/tests/test_serve --gtest_filter='ServeLoad.*:ServeLimits.*'
