#!/usr/bin/env bash
# Data-parallel step time split into computation and the sums over ranks (communication), for
# 1, 2 and 4 ranks on this machine, flat and hierarchical allreduce (4 ranks as 2 simulated nodes of 2
# through RETORT_RANKS_PER_NODE), with threads × ranks = cores, with ZeRO-1 (Adam moments sharded: the
# moments rank 0 holds), with distributed.reproducible (gradients one sequence at a time, summed in
# f64: the cost of weights that do not depend on the number of ranks), and with distributed.bucket_mb
# (the model's gradients summed in buckets during the last backward: the "summing" column is then what
# the step still waits for after the backward). Prints one Markdown table row per setting.
#
#   bash bench/bench_data_parallel.sh [MODEL] [STEPS]
#
# MODEL: a config.json to train from random init (default: configs/models/banking77-r1-student.json, the
# BANKING77 student with the R1 tokenizer's 151,936-entry vocabulary: 40.5 M parameters, 38.9 M of them
# the embedding, so 162 MB of gradients per step) or an HF checkpoint directory to start from. Its token
# ids are drawn at random, so only the timing means anything. Run it on a quiet machine: other load shows
# up as communication (a rank waiting for a slower one). RETORT: the binary (default build/release/retort).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(realpath "${1:-configs/models/banking77-r1-student.json}")
if [ -d "$MODEL" ]; then MODEL_KEY="init: $MODEL"; else MODEL_KEY="config: $MODEL"; fi
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
run() {  # ranks allreduce zero reproducible bucket_mb env...
  local ranks=$1 allreduce=$2 zero=$3 reproducible=$4 bucket_mb=$5; shift 5
  local threads=$(( CORES / ranks > 0 ? CORES / ranks : 1 ))
  local dir="$WORK/run-$ranks-$allreduce-$zero-$reproducible-$bucket_mb"
  cat > "$dir.yaml" <<YAML
model: {$MODEL_KEY}
data: {train: $WORK/ids.txt, format: tokens, val_fraction: 0}
batch_size: $(( GLOBAL_BATCH / ranks ))
seq_len: 64
steps: $STEPS
grad_accum_steps: 2
threads: $threads
log_every: 1000
optimizer: {type: AdamW, lr: 1.0e-4}
checkpointing: {dir: $dir, every: 0, keep_last: 1}
distributed: {enable: $([ "$ranks" -gt 1 ] && echo true || echo false), device_num: $ranks, allreduce: $allreduce, zero: $zero, reproducible: $reproducible, bucket_mb: $bucket_mb}
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
  local moments
  moments=$(grep -o 'ZeRO-1: .*' "$log" | sed -E 's/.*: ([0-9.]+ MiB) on rank 0 instead of ([0-9.]+ MiB)/\1 of \2/' || echo "all")
  line=${line#data parallel: }
  echo "| $ranks | $allreduce | $zero | $reproducible | $bucket_mb | $threads | $tps | ${line%% after the backward*} | $moments |"
}

echo "model: $MODEL, $STEPS steps, global batch $GLOBAL_BATCH x 64 tokens x 2 micro-batches, $CORES cores"
echo "| ranks | allreduce | zero | reproducible | bucket MiB | threads/rank | tokens/s | step time and communication share | Adam moments on rank 0 |"
echo "|---|---|---|---|---|---|---|---|---|"
ONLY=${ONLY:-}  # ONLY=buckets: only the rows that compare bucket_mb 0 and 25
all_rows() { [ "$ONLY" != buckets ]; }
if all_rows; then
  run 1 flat 0 false 0
  run 1 flat 0 true 0
fi
for ranks in 2 4; do
  run "$ranks" flat 0 false 0
  run "$ranks" flat 0 false 25
  if all_rows; then
    run "$ranks" flat 0 true 0
    run "$ranks" hierarchical 0 false 0 RETORT_RANKS_PER_NODE=$(( ranks / 2 ))
    run "$ranks" flat 1 false 0
  fi
done
