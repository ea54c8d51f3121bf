#!/usr/bin/env bash
# retort beside llama.cpp on the same GGUF files, in one script:
#  1. interop (INTEROP=1, the default): each golden fixture checkpoint is converted by retort (f32,
#     q8_0, q4_0), run greedily by llama.cpp's llama-simple and by `retort run --raw` (f32
#     continuations must be identical), and scored by llama-perplexity and `retort eval perplexity`;
#  2. speed, per model shape (random weights from `retort init`: speed does not depend on the
#     values), weight type and thread count, retort ÷ llama.cpp for
#       prefill of $PROMPT tokens            llama-bench -p $PROMPT          bench_inference --prompt
#       decode of $DECODE tokens, empty KV   llama-bench -n $DECODE          bench_inference --decode
#       decode at depth $DEPTH               llama-bench -d $DEPTH -n 32, KV f16, flash attention off
#                                            and on (retort: f16 KV, its only attention kernel)
#       one decode step of 8 and 16 seqs     llama-batched-bench -npp 128 -ntg 32 -npl 8,16 (S_TG)
#                                            bench_batched_decode --context 128 --batches 8,16
#     plus retort's decode as a share of the bandwidth roofline (bytes of weights and KV read per
#     token ÷ the bandwidth probe measured in the same process). Both engines run with what a user
#     gets by default: f16 KV cache; for bf16 weights, activations rounded to bf16 where the CPU has
#     AVX512-BF16 (retort's --act-type bf16, llama.cpp's vec_dot type for bf16).
#
#   bench/compare_llama_cpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR]
#   env: MODELS="DeepSeek-R1-Distill-Qwen-1.5B DeepSeek-R1-Distill-Llama-8B" THREADS="1 2"
#        TYPES="bf16 q8_0 q4_0 q4_k" PROMPT=512 DECODE=64 DEPTH=4096 BATCHES=8,16 REPS=2 INTEROP=1
#        LONG_THREADS="$THREADS" (the thread counts that also run the depth and batch tests, which
#        make llama.cpp prefill thousands of tokens first; DEPTH=0 or BATCHES="" skip them)
#        LLAMA_CACHE=.cache/llama-compare/llama-results.txt: llama.cpp's figures are kept there, one
#        "model type threads test value" line each, and reused by later runs (they do not change with
#        retort's build); delete the file, or set LLAMA_CACHE="", to measure llama.cpp again
#        (on a VM whose speed drifts, LLAMA_CACHE="" keeps each pair of figures minutes apart)
#        QUANTIZE="q4_k q8_0": also time `retort quantize` against `llama-quantize` (all cores each)
#        re-encoding the model's bf16 file in each of these types, wall seconds, best of $REPS
#        (QUANTIZE="" skips it)
#        LLAMA_MMAP=0: llama-bench reads the file into its own memory (-mmp 0) instead of mapping it
#        with 4 KiB pages that compete with the page cache; retort copies its weights into 2 MiB
#        pages, so this compares the kernels (unset: llama.cpp's default, what its users get)
#
# q4_k is llama-quantize's Q4_K_M recipe applied to the bf16 file (retort quantize when the binary
# is absent). llama.cpp is not part of retort: build it yourself beside the project (llama-bench,
# llama-batched-bench, llama-quantize, and llama-simple/llama-perplexity for the interop part) and
# pass the folder holding those binaries. Run it on a quiet machine: both engines use every core
# they are given.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=${1:?usage: bench/compare_llama_cpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR]}
BUILD=${2:-build/release}
MODELS=${MODELS:-DeepSeek-R1-Distill-Qwen-1.5B DeepSeek-R1-Distill-Llama-8B}
THREADS=${THREADS-1 2}
TYPES=${TYPES-bf16 q8_0 q4_0 q4_k}
PROMPT=${PROMPT:-512}
DECODE=${DECODE:-64}
DEPTH=${DEPTH:-4096}
BATCHES=${BATCHES:-8,16}
REPS=${REPS:-2}
LONG_THREADS=${LONG_THREADS-$THREADS}
LLAMA_CACHE=${LLAMA_CACHE-.cache/llama-compare/llama-results.txt}
QUANTIZE=${QUANTIZE-q4_k q8_0}
RETORT=$BUILD/retort
WORK=.cache/llama-compare
mkdir -p "$WORK"
status=0

if [ "${INTEROP:-1}" = 1 ]; then
  bash bench/llama_cpp_interop.sh "$LLAMA" "$BUILD" || status=1
fi

# Field `key` of the first `RESULT ... key=value` line of stdin that also has `filter`.
# Empty when there is none (a test that was not run).
result() { { grep "^RESULT" || true; } | { grep -- "$2" || true; } | head -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# llama-bench JSON on stdin → tokens/s of its first test.
llama_rate() { node -e 'try { const r = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(r[0].avg_ts.toFixed(3)) } catch { console.log("") }'; }
# llama.cpp's figure for `key` (model type threads test): from the cache, else measured by the rest
# of the arguments (a command printing one value) and cached.
llama_cached() {
  local key=$1 value=""
  shift
  [ -n "$LLAMA_CACHE" ] && [ -f "$LLAMA_CACHE" ] && value=$(awk -v k="$key" '$1" "$2" "$3" "$4 == k { v = $5 } END { print v }' "$LLAMA_CACHE")
  if [ -z "$value" ]; then
    value=$("$@")
    [ -n "$LLAMA_CACHE" ] && [ -n "$value" ] && echo "$key $value" >>"$LLAMA_CACHE"
  fi
  echo "$value"
}
llama_bench() { "$LLAMA/llama-bench" "$@" ${LLAMA_MMAP:+-mmp "$LLAMA_MMAP"} -o json 2>/dev/null | llama_rate; }
llama_batched() {  # aggregate decode tok/s of $2 sequences, 128 positions of context each
  "$LLAMA/llama-batched-bench" -m "$1" -t "$3" -c $((160 * 16 + 256)) -npp 128 -ntg 32 -npl "$2" 2>/dev/null |
    awk -F'|' '$2 ~ /^ *128 *$/ { gsub(/ /, "", $9); print $9 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×", a / b }'; }
# Wall seconds of the fastest of $REPS runs of a command (its output discarded).
best_seconds() {
  local best="" start end
  for _ in $(seq "$REPS"); do
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    best=$(awk -v b="$best" -v s="$start" -v e="$end" 'BEGIN { t = e - s; if (b == "" || t < b) b = t; printf "%.1f", b }')
  done
  echo "$best"
}
# retort quantize against llama-quantize on the same bf16 file, interleaved, for each $QUANTIZE type.
compare_quantize() {
  local model=$1 source=$WORK/$1-bf16.gguf type llama_type ours theirs
  echo
  echo "## $model: re-encoding the bf16 file (wall seconds, all cores; speed ratio retort ÷ llama-quantize)"
  echo
  echo "| type | retort quantize | llama-quantize | speed ratio |"
  echo "|---|---|---|---|"
  cat "$source" >/dev/null  # both start from a warm page cache
  for type in $QUANTIZE; do
    case $type in q4_k) llama_type=Q4_K_M ;; q8_0) llama_type=Q8_0 ;; q4_0) llama_type=Q4_0 ;; *) llama_type="" ;; esac
    [ -n "$llama_type" ] || { echo "| $type | — | — | (no llama-quantize type for $type) |"; continue; }
    ours=$(best_seconds "$RETORT" quantize "$source" "$WORK/quantize-retort.gguf" --type "$type")
    theirs=$(best_seconds "$LLAMA/llama-quantize" "$source" "$WORK/quantize-llama.gguf" "$llama_type" "$(nproc)")
    rm -f "$WORK/quantize-retort.gguf" "$WORK/quantize-llama.gguf"
    echo "| $type | $ours s | $theirs s | $(ratio "$theirs" "$ours") |"
  done
}

for model in $MODELS; do
  hf=.cache/bench-models/$model
  tokenizer=.cache/tokenizers/qwen
  case $model in *Llama*) tokenizer=.cache/tokenizers/llama3 ;; esac
  [ -f "$hf/config.json" ] || "$RETORT" init --config "configs/models/$model.json" --out "$hf" --seed 1 --tokenizer "$tokenizer"
  [ -f "$WORK/$model-bf16.gguf" ] || "$RETORT" convert "$hf" -o "$WORK/$model-bf16.gguf" --type bf16 >/dev/null
  if [ -n "$QUANTIZE" ] && [ -x "$LLAMA/llama-quantize" ]; then compare_quantize "$model"; fi
  echo
  echo "## $model: prefill $PROMPT, decode $DECODE, depth $DEPTH, batches $BATCHES (retort ÷ llama.cpp; tok/s in brackets)"
  echo
  header="| type | threads | prefill | decode | decode ÷ roofline | depth $DEPTH vs FA off | vs FA on |" rule="|---|---|---|---|---|---|---|"
  for b in ${BATCHES//,/ }; do header="$header batch $b |" rule="$rule---|"; done
  echo "$header"
  echo "$rule"
  for type in $TYPES; do
    gguf=$WORK/$model-$type.gguf
    if [ ! -f "$gguf" ]; then
      if [ "$type" = q4_k ] && [ -x "$LLAMA/llama-quantize" ]; then
        "$LLAMA/llama-quantize" "$WORK/$model-bf16.gguf" "$gguf" Q4_K_M "$(nproc)" >/dev/null 2>&1
      else
        "$RETORT" convert "$hf" -o "$gguf" --type "$type" >/dev/null
      fi
    fi
    for t in $THREADS; do
      key="$model $type $t"
      l_pp=$(llama_cached "$key pp$PROMPT" llama_bench -m "$gguf" -t "$t" -p "$PROMPT" -n 0 -r "$REPS")
      l_tg=$(llama_cached "$key tg$DECODE" llama_bench -m "$gguf" -t "$t" -p 0 -n "$DECODE" -r "$REPS")
      ours=$("$BUILD/bench/bench_inference" "$gguf" --threads "$t" --prompt "$PROMPT" --decode "$DECODE" --depth 0 --reps "$REPS" 2>/dev/null)
      l_d_off="" l_d_on="" ours_depth="" ours_batch=""
      if [[ " $LONG_THREADS " == *" $t "* ]]; then
        if [ "$DEPTH" -gt 0 ]; then
          l_d_off=$(llama_cached "$key d$DEPTH-fa-off" llama_bench -m "$gguf" -t "$t" -p 0 -n 32 -d "$DEPTH" -fa off -r 1)
          l_d_on=$(llama_cached "$key d$DEPTH-fa-on" llama_bench -m "$gguf" -t "$t" -p 0 -n 32 -d "$DEPTH" -fa on -r 1)
          ours_depth=$("$BUILD/bench/bench_inference" "$gguf" --threads "$t" --prompt 16 --decode 32 --depth "$DEPTH" --reps 1 2>/dev/null)
        fi
        if [ -n "$BATCHES" ]; then
          ours_batch=$("$BUILD/bench/bench_batched_decode" "$gguf" --threads "$t" --batches "$BATCHES" --context 128 --steps 8 2>/dev/null)
        fi
      fi
      # On stderr, beside the table: whether retort's weights got their 2 MiB pages (a large model
      # right after llama.cpp mapped the same file may not, and decodes slower for it).
      { grep -o "RSS after load.*" <<<"$ours" || true; } | sed "s/^/  retort $type, $t threads: /" >&2
      r_pp=$(result prefill_tps "depth=0" <<<"$ours")
      r_tg=$(result decode_tps "depth=0" <<<"$ours")
      r_roof=$(result roofline_share "depth=0" <<<"$ours")
      r_d=$(result decode_tps "depth=$DEPTH" <<<"$ours_depth")
      row="| $type | $t | $(ratio "$r_pp" "$l_pp") ($r_pp / $l_pp) | $(ratio "$r_tg" "$l_tg") ($r_tg / $l_tg) | $(awk -v s="$r_roof" 'BEGIN { printf "%.0f %%", 100 * s }')"
      row="$row | $(ratio "$r_d" "$l_d_off") ($r_d / $l_d_off) | $(ratio "$r_d" "$l_d_on") ($l_d_on)"
      for b in ${BATCHES//,/ }; do
        l_b=""
        [[ " $LONG_THREADS " == *" $t "* ]] && l_b=$(llama_cached "$key batch$b" llama_batched "$gguf" "$b" "$t")
        r_b=$(result aggregate_tps "batch=$b " <<<"$ours_batch")
        row="$row | $(ratio "$r_b" "$l_b") ($r_b / $l_b)"
      done
      echo "$row |"
    done
  done
done
exit $status
