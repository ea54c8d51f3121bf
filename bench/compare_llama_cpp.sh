#!/usr/bin/env bash
# retort beside llama.cpp on the same GGUF files, in one script:
#  1. interop: each golden fixture checkpoint is converted by retort (f32, q8_0, q4_0), run greedily
#     by llama.cpp's llama-simple and by `retort run --raw` (f32 continuations must be identical),
#     and scored by llama-perplexity and `retort eval perplexity` on the same text;
#  2. speed: the bench model shaped like DeepSeek-R1-Distill-Qwen-1.5B (random weights) is written
#     by retort as bf16, q8_0, q4_0 and q4_k GGUF; llama-bench and retort's bench_inference measure
#     prefill (-p tokens) and decode (-n tokens) at the same thread count; ratios retort ÷ llama.cpp.
#
#   bench/compare_llama_cpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR] [THREADS] [MODEL]
#
# llama.cpp is not part of retort: build it yourself beside the project (its llama-bench,
# llama-simple and llama-perplexity targets) and pass the folder holding those binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=${1:?usage: bench/compare_llama_cpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR] [THREADS] [MODEL]}
BUILD=${2:-build/release}
THREADS=${3:-2}
MODEL=${4:-DeepSeek-R1-Distill-Qwen-1.5B}
PROMPT=${PROMPT_TOKENS:-128}
DECODE=${DECODE_TOKENS:-32}
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

[ -n "${INTEROP_ONLY:-}" ] && exit $status
echo
echo "## Speed: $MODEL shape, $THREADS threads, prefill $PROMPT tokens, decode $DECODE tokens"
hf=.cache/bench-models/$MODEL
if [ ! -f "$hf/config.json" ]; then
  "$RETORT" init --config "configs/models/$MODEL.json" --out "$hf" --seed 1 --tokenizer .cache/tokenizers/qwen
fi
echo "| type | llama.cpp prefill | retort prefill | ratio | llama.cpp decode | retort decode | ratio | retort decode ÷ roofline |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for type in bf16 q8_0 q4_0 q4_k; do
  gguf=$WORK/$MODEL-$type.gguf
  [ -f "$gguf" ] || "$RETORT" convert "$hf" -o "$gguf" --type "$type" >/dev/null 2>&1
  json=$("$LLAMA/llama-bench" -m "$gguf" -t "$THREADS" -p "$PROMPT" -n "$DECODE" -r 3 -o json 2>/dev/null)
  read -r theirs_pp theirs_tg < <(node -e '
    const rows = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const pp = rows.find(r => r.n_prompt > 0 && r.n_gen === 0), tg = rows.find(r => r.n_gen > 0 && r.n_prompt === 0);
    console.log(pp.avg_ts.toFixed(2), tg.avg_ts.toFixed(2));' <<<"$json")
  row=$("$BUILD/bench/bench_inference" "$gguf" --threads "$THREADS" --prompt "$PROMPT" --decode "$DECODE" 2>/dev/null | tail -1)
  ours_pp=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
  ours_tg=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $6); print $6}')
  roofline=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $8); print $8}')
  awk -v t="$type" -v a="$theirs_pp" -v b="$ours_pp" -v c="$theirs_tg" -v d="$ours_tg" -v r="$roofline" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.2f× | %.2f | %.2f | %.2f× | %s |\n", t, a, b, b / a, c, d, d / c, r }'
done
exit $status
