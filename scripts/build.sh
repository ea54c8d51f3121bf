#!/usr/bin/env bash
# Configures and builds retort (Release preset) after making sure the dependencies are installed.
# Arguments name the targets to build (e.g. `retort`, the program alone); none builds everything
# (the program, the tests, the benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release -j"$(nproc)" ${1:+--target "$@"}
