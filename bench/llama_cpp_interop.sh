#!/usr/bin/env bash
# Interop with llama.cpp: each golden fixture checkpoint is converted by retort (f32, q8_0, q4_0),
# run greedily by llama.cpp's llama-simple and by `retort run --raw` (f32 continuations must be
# identical), and scored by llama-perplexity and `retort eval perplexity` on the same text.
#   bench/llama_cpp_interop.sh LLAMA_CPP_BIN_DIR [BUILD_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=${1:?usage: bench/llama_cpp_interop.sh LLAMA_CPP_BIN_DIR [BUILD_DIR] [THREADS]}
BUILD=${2:-build/release}
THREADS=${3:-2}
RETORT=$BUILD/retort
WORK=.cache/llama-compare
mkdir -p "$WORK"

echo "## Interop: GGUF files written by retort, evaluated by llama.cpp and by retort"
# Greedy continuations must be identical for f32. For every type, perplexity over the same windows
# (llama-perplexity's rule, which retort eval perplexity follows) must agree closely: llama.cpp
# keeps the activations' block scales in f16 and the KV cache in f16, retort both in f32.
status=0
head -c 20000 ../shared/data/tinyshakespeare/input.txt > "$WORK/text.txt" 2>/dev/null || true
echo "| fixture | type | greedy continuation | llama.cpp PPL | retort PPL | Δ |"
echo "|---|---|---|---:|---:|---:|"
for fixture in tiny-r1-qwen tiny-r1-llama; do
  dir=../shared/fixtures/$fixture
  [ -d "$dir" ] || { echo "skip $fixture: $dir is absent"; continue; }
  prompt="The quick brown fox jumps over the lazy dog. Once upon a time"
  for type in f32 q8_0 q4_0; do
    gguf=$WORK/$fixture-$type.gguf
    "$RETORT" convert "$dir" -o "$gguf" --type "$type" >/dev/null 2>&1
    theirs=$("$LLAMA/llama-simple" -m "$gguf" -n 24 "$prompt" 2>/dev/null)
    ours=$("$RETORT" run "$gguf" --raw -p "$prompt" -n 24 --temperature 0 -q 2>/dev/null)
    # llama-simple prints the prompt, then every token's bytes as they come; retort prints the
    # continuation and holds back a UTF-8 sequence cut off at the end. Compare without that tail.
    same=$(THEIRS="$theirs" OURS="$ours" node -e '
      const tidy = s => s.replace(/[\uFFFD\s]+$/u, "");
      const ours = tidy(process.env.OURS);
      console.log(ours.length > 0 && tidy(process.env.THEIRS).endsWith(ours) ? "identical" : "different");')
    [ "$type" = f32 ] && [ "$same" != identical ] && status=1
    # Six windows of 128 tokens. llama-perplexity prints through an asynchronous logger that does
    # not always flush its last lines before exit, so it is asked again when the value is missing.
    their_ppl=""
    for attempt in 1 2 3 4 5; do
      their_ppl=$("$LLAMA/llama-perplexity" -m "$gguf" -f "$WORK/text.txt" -c 128 --chunks 6 -t "$THREADS" 2>&1 |
        grep -a -o '\[6\][0-9.]*' | cut -d']' -f2 || true)
      [ -n "$their_ppl" ] && break
    done
    our_ppl=$("$RETORT" eval perplexity "$gguf" --file "$WORK/text.txt" --ctx 128 --chunks 6 --json 2>/dev/null |
      node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).perplexity.toFixed(4))')
    awk -v f="$fixture" -v t="$type" -v s="$same" -v a="$their_ppl" -v b="$our_ppl" \
      'BEGIN { printf "| %s | %s | %s | %.4f | %.4f | %+.3f%% |\n", f, t, s, a, b, 100 * (b - a) / a }'
  done
done

exit $status
