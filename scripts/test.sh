#!/usr/bin/env bash
# Sets everything up and runs every test: the unit, golden and integration tests (ctest), then each
# libFuzzer target briefly. Tests that need ../shared skip when it is absent, except under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build/release && ctest --output-on-failure -j"$(nproc)" --timeout 900)
if [ -x scripts/run-fuzzers.sh ]; then
  bash scripts/run-fuzzers.sh "${RETORT_FUZZ_SECONDS:-10}"
fi
