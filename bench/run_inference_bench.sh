#!/usr/bin/env bash
# Decode/prefill tokens/s at 1 and 2 threads on random-initialised models shaped like Qwen2.5-0.5B
# and DeepSeek-R1-Distill-Qwen-1.5B (bf16), with a memory-bandwidth probe in the same process, and
# the time to first token of `retort run` from a cold process start.
#   bench/run_inference_bench.sh [BUILD_DIR]     (models are cached in .cache/bench-models)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
RETORT=$BUILD/retort
MODELS=.cache/bench-models
mkdir -p "$MODELS"
for name in Qwen2.5-0.5B DeepSeek-R1-Distill-Qwen-1.5B; do
  dir=$MODELS/$name
  if [ ! -f "$dir/config.json" ]; then
    "$RETORT" init --config "configs/models/$name.json" --out "$dir" --seed 1 --tokenizer .cache/tokenizers/qwen
  fi
done
for name in Qwen2.5-0.5B DeepSeek-R1-Distill-Qwen-1.5B; do
  echo "## $name (bf16, random weights)"
  "$BUILD/bench/bench_inference" "$MODELS/$name" --threads 1,2 --prompt 128 --decode 32
  # Cold start: a new process, mmap, first prompt, first token (page cache warm from the runs above).
  start=$(date +%s%N)
  "$RETORT" run "$MODELS/$name" -p "Hello" --raw -n 1 --temperature 0 -q >/dev/null
  end=$(date +%s%N)
  echo "time to first token from process start (retort run, 1 token): $(( (end - start) / 1000000 )) ms"
  echo
done
