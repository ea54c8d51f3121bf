#!/usr/bin/env bash
# Data-parallel step time split into computation and the sums over ranks (communication), for
# 1, 2 and 4 ranks on this machine, flat and hierarchical allreduce (4 ranks as 2 simulated nodes of 2
# through RETORT_RANKS_PER_NODE), with threads × ranks = cores. Prints one Markdown table row per setting.
#
#   bash bench/bench_data_parallel.sh [MODEL_DIR] [STEPS]
#
# MODEL_DIR: an HF checkpoint to train (default: ../shared/fixtures/tiny-r1-qwen); its token ids are drawn at
# random, so only the timing means anything. Run it on a quiet machine: other load shows up as communication
# (a rank waiting for a slower one). RETORT: the binary (default build/release/retort).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(realpath "${1:-../shared/fixtures/tiny-r1-qwen}")
STEPS=${2:-20}
RETORT=$(realpath "${RETORT:-build/release/retort}")
CORES=$(nproc)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

python3 - "$WORK/ids.txt" <<'PY'
import random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        f.write(" ".join(str(random.randrange(500)) for _ in range(64)) + "\n")
PY

# GLOBAL_BATCH rows per micro-batch whatever the ranks, so every setting does the same work per step.
GLOBAL_BATCH=4
run() {  # ranks allreduce env...
  local ranks=$1 allreduce=$2; shift 2
  local threads=$(( CORES / ranks > 0 ? CORES / ranks : 1 ))
  local dir="$WORK/run-$ranks-$allreduce"
  cat > "$dir.yaml" <<YAML
model: {init: $MODEL}
data: {train: $WORK/ids.txt, format: tokens, val_fraction: 0}
batch_size: $(( GLOBAL_BATCH / ranks ))
seq_len: 64
steps: $STEPS
grad_accum_steps: 2
threads: $threads
log_every: 1000
optimizer: {type: AdamW, lr: 1.0e-4}
checkpointing: {dir: $dir, every: 0, keep_last: 1}
distributed: {enable: $([ "$ranks" -gt 1 ] && echo true || echo false), device_num: $ranks, allreduce: $allreduce}
YAML
  local log="$dir.log"
  if [ "$ranks" -eq 1 ]; then
    "$RETORT" train "$dir.yaml" > "$log" 2>&1
  else
    env "$@" mpirun -np "$ranks" --oversubscribe "$RETORT" train "$dir.yaml" > "$log" 2>&1
  fi
  local tps
  tps=$(python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][1:]; print('%.0f' % (sum(x['tokens_per_second'] for x in r)/len(r)))" "$dir/metrics.jsonl")
  local line
  line=$(grep -o 'data parallel: .*' "$log" || echo "data parallel: 1 ranks, - ms per step, 0 ms of it summing over ranks (0 %)")
  echo "| $ranks | $allreduce | $threads | $tps | ${line#data parallel: } |"
}

echo "model: $MODEL, $STEPS steps, global batch $GLOBAL_BATCH x 64 tokens x 2 micro-batches, $CORES cores"
echo "| ranks | allreduce | threads/rank | tokens/s | step time and communication share |"
echo "|---|---|---|---|---|"
run 1 flat
run 2 flat
run 2 hierarchical RETORT_RANKS_PER_NODE=1
run 4 flat
run 4 hierarchical RETORT_RANKS_PER_NODE=2
