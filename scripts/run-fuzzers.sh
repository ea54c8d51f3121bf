#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan) and runs each fuzz_*
# binary for SECONDS (default 10) from its seed corpus, printing executions per second.
# Exits non-zero when a target crashes; the crashing input is left in build/fuzz/findings/.
#   usage: scripts/run-fuzzers.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
jobs="${RETORT_BUILD_JOBS:-2}"

cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j"$jobs"

work=build/fuzz/corpus    # libFuzzer adds new inputs here, never to the seeds in fuzz/corpus
findings=build/fuzz/findings
mkdir -p "$work" "$findings"

# Extra seeds that must not be copied into the repository: the fixture configs and the shipped
# model configs, added to the working corpus of the config fuzzer at run time.
seed_extras() {
  case "$1" in
    fuzz_model_config)
      cp -f configs/models/*.json "$work/$1/" 2>/dev/null || true
      for config in ../shared/fixtures/*/config.json; do
        [ -f "$config" ] && cp -f "$config" "$work/$1/fixture-$(basename "$(dirname "$config")").json"
      done
      ;;
  esac
  return 0
}

failed=()
for binary in build/fuzz/fuzz/fuzz_*; do
  [ -x "$binary" ] || continue
  name="$(basename "$binary")"
  mkdir -p "$work/$name"
  seed_extras "$name"
  seeds=()
  [ -d "fuzz/corpus/$name" ] && seeds=("fuzz/corpus/$name")
  log="build/fuzz/$name.log"
  status=0
  "$binary" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/$name-" "$work/$name" "${seeds[@]}" >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  time_s="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
  if [ "$status" -ne 0 ]; then
    echo "$name: FAILED (exit $status) after ${runs:-?} runs; see $log and $findings/"
    grep -m1 -E "ERROR: (libFuzzer|AddressSanitizer|UndefinedBehaviorSanitizer)|runtime error" "$log" || true
    failed+=("$name")
  else
    echo "$name: ${runs:-0} runs in ${time_s:-$seconds} s, $(( ${runs:-0} / (${time_s:-$seconds} > 0 ? ${time_s:-$seconds} : 1) )) execs/s"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
