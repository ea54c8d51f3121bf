#!/usr/bin/env bash
# The bank scenario served: a BANKING77 classifier behind `retort serve`, the test queries sent by
# bench/bank_intent_load.mjs at 1, 4 and 16 clients, each answered with one of the 77 intents through
# guided_choice. Prints accuracy, requests/s (and per core), latency p50/p99 per client count.
#   bench/run_bank_serve_bench.sh MODEL [BUILD_DIR]
#   env: DATA (runs/banking77/test.csv, from scripts/prepare-banking77.mjs), LABELS
#        (../shared/data/banking77/categories.json), CLIENTS (1,4,16), LIMIT (all queries), THREADS (all
#        cores), SLOTS (16), SERVE_ARGS (extra flags for retort serve)
# MODEL is a checkpoint or GGUF trained to answer "<query>\nLabel:" (docs/distillation.md trains one).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
MODEL=${1:?usage: bench/run_bank_serve_bench.sh MODEL [BUILD_DIR]}
BUILD=${2:-build/release}
DATA=${DATA:-runs/banking77/test.csv}
LABELS=${LABELS:-../shared/data/banking77/categories.json}
THREADS=${THREADS:-$(nproc)}
SLOTS=${SLOTS:-16}
[ -f "$DATA" ] || { echo "no $DATA: run node scripts/prepare-banking77.mjs ../shared/data/banking77 runs/banking77" >&2; exit 2; }
[ -f "$LABELS" ] || { echo "no $LABELS: BANKING77's categories.json is in ../shared/data/banking77" >&2; exit 2; }

port=18433
"$BUILD/retort" serve "$MODEL" --port $port --threads "$THREADS" --parallel "$SLOTS" --ctx 128 \
  --kv-tokens $((SLOTS * 128)) --queue 256 --access-log "" ${SERVE_ARGS:-} > /tmp/retort-bank-serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_healthy "http://127.0.0.1:$port" $server /tmp/retort-bank-serve.log
node bench/bank_intent_load.mjs --url "http://127.0.0.1:$port" --data "$DATA" --labels "$LABELS" \
  --clients "${CLIENTS:-1,4,16}" --cores "$THREADS" ${LIMIT:+--limit "$LIMIT"}
