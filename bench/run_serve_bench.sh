#!/usr/bin/env bash
# Serving throughput under load: `retort serve` on a random-initialised Qwen2.5-0.5B-shaped model
# (bf16 GGUF) with 1, 4, 16 and 32 concurrent streaming clients (bench/serve_load.mjs), then the
# same GGUF, threads and slot count on llama.cpp's llama-server when one is available, and the
# ratios. Nothing here builds llama.cpp: point LLAMA_SERVER at an existing binary.
#   bench/run_serve_bench.sh [BUILD_DIR]
#   env: THREADS (default: all cores), MAX_TOKENS (64), LEVELS (1,4,16,32), LLAMA_SERVER,
#        RETORT_ARGS / LLAMA_ARGS: extra flags for each server, to compare features side by side, e.g.
#        RETORT_ARGS="--no-prefix-cache" LLAMA_EXTRA='{"ignore_eos": true, "cache_prompt": false}' (LLAMA_EXTRA:
#        the JSON merged into each llama-server request; llama-server's prompt cache is per request), or with a
#        draft model (same tokenizer)
#        RETORT_ARGS="--draft D.gguf --draft-tokens 4"
#        LLAMA_ARGS="-md D.gguf --spec-type draft-simple --spec-draft-n-max 4" (llama.cpp of August 2026:
#        without --spec-type it loads the draft and drafts nothing; --draft-max was removed).
#        DRAFT_K=K does that for you with a random 2-layer draft of the same tokenizer
#        (configs/models/qwen2.5-tiny-draft.json, made here like the target): both servers draft K tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BUILD=${1:-build/release}
RETORT=$BUILD/retort
MODELS=.cache/bench-models
THREADS=${THREADS:-$(nproc)}
MAX_TOKENS=${MAX_TOKENS:-64}
LEVELS=${LEVELS:-1,4,16,32}
SLOTS=32
CTX_PER_SLOT=512
LLAMA_SERVER=${LLAMA_SERVER:-}
mkdir -p "$MODELS"

# random_bf16_gguf CONFIG_NAME SEED GGUF: a random-initialised checkpoint of configs/models/CONFIG_NAME.json
# with the Qwen tokenizer, converted to a bf16 GGUF; both are kept in $MODELS and reused.
random_bf16_gguf() {
  local dir=$MODELS/$1
  [ -f "$dir/config.json" ] ||
    "$RETORT" init --config "configs/models/$1.json" --out "$dir" --seed "$2" --tokenizer .cache/tokenizers/qwen
  [ -f "$3" ] || "$RETORT" convert "$dir" --out "$3" --type bf16
}

gguf=$MODELS/qwen2.5-0.5b-bf16.gguf
random_bf16_gguf Qwen2.5-0.5B 1 "$gguf"
if [ -n "${DRAFT_K:-}" ]; then
  draft=$MODELS/qwen2.5-tiny-draft-bf16.gguf
  random_bf16_gguf qwen2.5-tiny-draft 2 "$draft"
  RETORT_ARGS="${RETORT_ARGS:-} --draft $draft --draft-tokens $DRAFT_K"
  # --spec-draft-n-min 0 --spec-draft-p-min 0: llama-server proposes K tokens every step, as retort does
  LLAMA_ARGS="${LLAMA_ARGS:-} -md $draft --spec-type draft-simple --spec-draft-n-max $DRAFT_K"
  LLAMA_ARGS="$LLAMA_ARGS --spec-draft-n-min 0 --spec-draft-p-min 0"
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT


summary=()
port=18431
"$RETORT" serve "$gguf" --port $port --threads "$THREADS" --parallel $SLOTS --ctx $CTX_PER_SLOT \
  --kv-tokens $((SLOTS * CTX_PER_SLOT)) --queue 256 --access-log "" ${RETORT_ARGS:-} > /tmp/retort-serve-bench.log 2>&1 &
pids+=($!)
wait_healthy "http://127.0.0.1:$port"
node bench/serve_load.mjs --url "http://127.0.0.1:$port" --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" \
  --label "retort serve ($THREADS threads)" | tee /tmp/retort-serve-bench.out
# What the features did over the whole run (prefix-cache hits, draft acceptance).
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^retort_(prefix_cache|speculative)' || true
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
summary+=("$(grep '^JSON ' /tmp/retort-serve-bench.out | sed 's/^JSON //')")

if [ -x "$LLAMA_SERVER" ]; then
  lport=18432
  "$LLAMA_SERVER" -m "$gguf" --port $lport -t "$THREADS" -np $SLOTS -c $((SLOTS * CTX_PER_SLOT)) --metrics ${LLAMA_ARGS:-} \
    > /tmp/llama-server-bench.log 2>&1 &
  pids+=($!)
  wait_healthy "http://127.0.0.1:$lport"
  # ignore_eos keeps llama-server from stopping early where retort would not (random weights).
  node bench/serve_load.mjs --url "http://127.0.0.1:$lport" --concurrency "$LEVELS" --max-tokens "$MAX_TOKENS" \
    --extra "${LLAMA_EXTRA:-{\"ignore_eos\": true\}}" --label "llama-server ($THREADS threads, $SLOTS slots)" | tee /tmp/llama-server-bench.out
  curl -s "http://127.0.0.1:$lport/metrics" | grep -E '^llamacpp:(prompt_tokens_total|spec_decode_num_(draft|accepted)_tokens_total)' || true
  summary+=("$(grep '^JSON ' /tmp/llama-server-bench.out | sed 's/^JSON //')")
  node -e '
    const [ours, theirs] = process.argv.slice(1).map(JSON.parse);
    console.log("\nretort / llama-server: clients | tok/s ratio | TTFT p50 ratio | inter-token p50 ratio");
    for (const a of ours.results) {
      const b = theirs.results.find((r) => r.concurrency === a.concurrency);
      if (!b) continue;
      console.log(`${a.concurrency} | ${(a.tokens_per_second / b.tokens_per_second).toFixed(2)} | ` +
                  `${(a.ttft_p50_ms / b.ttft_p50_ms).toFixed(2)} | ${(a.itl_p50_ms / b.itl_p50_ms).toFixed(2)}`);
    }' "${summary[0]}" "${summary[1]}"
else
  echo "no llama-server at '$LLAMA_SERVER'; set LLAMA_SERVER to a built llama-server to compare"
fi
