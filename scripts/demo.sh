#!/usr/bin/env bash
# The main job on a built-in default: build, check the machine, round-trip text through the real
# Qwen/DeepSeek-R1-Distill tokenizer, then write a small randomly initialised R1-shaped model with
# that vocabulary, convert it to GGUF (bf16 and q8_0) and generate from each. (No pretrained
# weights can be downloaded here: the words are random; point `retort run` at a real checkpoint.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
RETORT=build/release/retort
SHARED_DATA=${RETORT_SHARED_DATA:-../shared/data}

echo "== retort doctor"
$RETORT doctor

TOKENIZER=.cache/tokenizers/qwen
TEMPLATE=(--template deepseek-r1)
if [ -d "$SHARED_DATA/r1-distill-qwen" ]; then
  node scripts/make-r1-tokenizer.mjs "$SHARED_DATA"
  TOKENIZER=.cache/tokenizers/r1-distill-qwen
  TEMPLATE=()
fi

echo "== tokenizer round trip ($TOKENIZER)"
TEXT='Hello, world! 你好，世界。 Reasoning models think first: <think> 12345 </think>'
IDS=$(printf '%s' "$TEXT" | $RETORT tokenize "$TOKENIZER/tokenizer.json")
echo "ids:  $IDS"
BACK=$(printf '%s' "$IDS" | $RETORT tokenize --decode "$TOKENIZER/tokenizer.json")
echo "text: $BACK"
[ "$BACK" = "$TEXT" ] && echo "round trip: exact" || { echo "round trip: MISMATCH" >&2; exit 1; }

MODEL=.cache/demo/r1-tiny
echo "== retort init: $MODEL (random weights, real vocabulary)"
$RETORT init --config configs/models/demo-qwen2-tiny.json --out "$MODEL" --seed 1 --tokenizer "$TOKENIZER"
$RETORT info "$MODEL" > .cache/demo/info.txt   # (not piped into head: pipefail would see SIGPIPE)
head -n 12 .cache/demo/info.txt
for type in bf16 q8_0; do
  echo "== retort convert --type $type"
  $RETORT convert "$MODEL" -o ".cache/demo/r1-tiny-$type.gguf" --type "$type"
  echo "== retort run (GGUF $type, greedy, 24 tokens)"
  $RETORT run ".cache/demo/r1-tiny-$type.gguf" "${TEMPLATE[@]}" -p "What is 17 * 23?" -n 24 --temperature 0
done
echo "== done: try 'build/release/retort chat $MODEL${TEMPLATE:+ ${TEMPLATE[*]}}'"
