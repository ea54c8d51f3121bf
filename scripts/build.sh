#!/usr/bin/env bash
# Configures and builds retort (Release preset) after making sure the dependencies are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release -j"$(nproc)"
