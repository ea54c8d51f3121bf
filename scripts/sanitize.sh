#!/usr/bin/env bash
# Builds retort under a sanitizer and runs the chosen tests there. Under ASan + UBSan on 2 cores the
# build takes ~45 min from scratch and the whole suite 15 min (909 s, 2026-12-04, every test passing
# or skipped); a change to the server or a kernel needs only its own tests.
#   usage: scripts/sanitize.sh [--tsan] [--binary-only] [-R REGEX] [-E REGEX] [-- CTEST_ARGS...]
#     (default)      the `asan` preset: AddressSanitizer + UndefinedBehaviorSanitizer, build/asan
#     --tsan         the `tsan` preset: ThreadSanitizer, build/tsan (thread pool, scheduler, server)
#     --binary-only  builds only the retort program, not the test executable: enough for the
#                    node tests (-R server_node_...), which start the program as a real server
#     -R / -E        ctest's include / exclude regexes over test names, e.g.
#                    -R 'KvCache|Attention'  or  -R server_node_hardening
# Any sanitizer report fails the test that caused it (halt_on_error), so the exit status says it.
set -euo pipefail
cd "$(dirname "$0")/.."

preset=asan
targets=(retort retort_tests)
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tsan) preset=tsan ;;
    --binary-only) targets=(retort) ;;
    -R|-E) ctest_args+=("$1" "$2"); shift ;;
    --) shift; ctest_args+=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

bash scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build "build/$preset" -j"${RETORT_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
# Sanitized code runs 2-20x slower: give every test far longer than the release suite does.
cd "build/$preset"
ctest --output-on-failure -j"$(nproc)" --timeout 3600 "${ctest_args[@]}"
