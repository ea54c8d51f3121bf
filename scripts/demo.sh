#!/usr/bin/env bash
# The main job on a built-in default: build, check the machine, and round-trip text through the
# real DeepSeek-R1-Distill-Qwen tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
RETORT=build/release/retort
echo "== retort doctor"
$RETORT doctor
echo "== tokenizer round trip (Qwen2.5 / DeepSeek-R1-Distill-Qwen vocabulary)"
TEXT='Hello, world! 你好，世界。 Reasoning models think first: <think> 12345 </think>'
IDS=$(printf '%s' "$TEXT" | $RETORT tokenize .cache/tokenizers/qwen/tokenizer.json)
echo "ids:  $IDS"
BACK=$(printf '%s' "$IDS" | $RETORT tokenize --decode .cache/tokenizers/qwen/tokenizer.json)
echo "text: $BACK"
[ "$BACK" = "$TEXT" ] && echo "round trip: exact" || { echo "round trip: MISMATCH" >&2; exit 1; }
