#!/usr/bin/env bash
# The prefix cache's effect on `retort serve`: bench/prefix_cache_load.mjs (a shared ~1,000-token
# system prompt, and 3-turn chats) at 1, 4 and 16 clients against the server with the cache on,
# then with --no-prefix-cache; time to first token and prompt tokens evaluated, side by side. With
# LLAMA_SERVER (the path of a llama-server binary built beside the project), the same workload against
# llama-server with the same slots, context per slot and threads: its prompt cache on (the default
# cache_prompt, --cache-reuse 256 and its cross-slot --cache-ram store) and off (--no-cache-prompt,
# --cache-ram 0).
#   bench/run_prefix_cache_bench.sh [MODEL] [BUILD_DIR]
# MODEL: a GGUF or HF folder with a chat template (default: the R1-Distill-Qwen-1.5B-shaped q4_0
# file bench/compare_llama_cpp.sh makes). env: THREADS (all cores), CLIENTS (1,4,16),
# SYSTEM_TOKENS (1000), MAX_TOKENS (16), TEMPLATE (deepseek-r1: the converted file keeps no template;
# llama-server gets its built-in deepseek3 template, the same R1 turns), LLAMA_SERVER (unset: retort only).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
MODEL=${1:-.cache/llama-compare/DeepSeek-R1-Distill-Qwen-1.5B-q4_0.gguf}
BUILD=${2:-build/release}
THREADS=${THREADS:-$(nproc)}
CLIENTS=${CLIENTS:-1,4,16}
SYSTEM_TOKENS=${SYSTEM_TOKENS:-1000}
MAX_TOKENS=${MAX_TOKENS:-16}
[ -e "$MODEL" ] || { echo "no model at $MODEL: run bench/compare_llama_cpp.sh first or pass one" >&2; exit 1; }
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT

for mode in on off; do
  port=18441
  flag=$([ "$mode" = on ] && echo --prefix-cache || echo --no-prefix-cache)
  "$BUILD/retort" serve "$MODEL" --port $port --threads "$THREADS" --parallel 16 --ctx 2048 --kv-tokens 40000 \
    --queue 256 --access-log "" --template "${TEMPLATE:-deepseek-r1}" $flag > "/tmp/retort-prefix-$mode.log" 2>&1 &
  pid=$!
  wait_healthy "http://127.0.0.1:$port" "$pid" "/tmp/retort-prefix-$mode.log"
  node bench/prefix_cache_load.mjs --url "http://127.0.0.1:$port" --clients "$CLIENTS" \
    --system-tokens "$SYSTEM_TOKENS" --max-tokens "$MAX_TOKENS" --label "retort serve, prefix cache $mode"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done

[ -n "${LLAMA_SERVER:-}" ] || exit 0
for mode in on off; do
  port=18442
  flags=(--cache-reuse 256)
  [ "$mode" = off ] && flags=(--no-cache-prompt --cache-ram 0)
  "$LLAMA_SERVER" -m "$MODEL" --port $port --threads "$THREADS" --parallel 16 --ctx-size $((16 * 2048)) \
    --metrics --no-jinja --chat-template deepseek3 "${flags[@]}" > "/tmp/llama-prefix-$mode.log" 2>&1 &
  pid=$!
  wait_healthy "http://127.0.0.1:$port" "$pid" "/tmp/llama-prefix-$mode.log"
  node bench/prefix_cache_load.mjs --url "http://127.0.0.1:$port" --clients "$CLIENTS" \
    --system-tokens "$SYSTEM_TOKENS" --max-tokens "$MAX_TOKENS" --label "llama-server, prompt cache $mode" \
    --evaluated-metric llamacpp:prompt_tokens_total --hit-metric none
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
