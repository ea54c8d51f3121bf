#!/usr/bin/env bash
# Training throughput, retort against PyTorch on the same ~31 M-parameter Qwen2-shaped model,
# batch 4 × sequence 256, forward + backward + clip + AdamW, at 1 and 2 threads; and retort's
# memory with and without activation checkpointing; and f32 against bf16 matrix products on one run
# (loss curve and tokens/s).
#   bench/run_train_bench.sh [BUILD_DIR] [STEPS]      (default build/release, 5 steps)
# PyTorch comes from Debian (python3-torch) and must run on OpenBLAS (libopenblas0-pthread): with
# the reference BLAS it is about 12× slower. Set INSTALL_TORCH=1 to apt-get them; CI never runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
STEPS=${2:-5}
BENCH="$BUILD/bench/bench_train"
[[ -x $BENCH ]] || { echo "build $BENCH first (ninja -C $BUILD bench/bench_train)" >&2; exit 1; }
PY=/usr/bin/python3
if ! $PY -c "import torch" 2>/dev/null; then
  if [[ ${INSTALL_TORCH:-0} == 1 ]]; then
    apt-get install -y --no-install-recommends python3-torch libopenblas0-pthread >/dev/null
  else
    echo "PyTorch missing: INSTALL_TORCH=1 $0 installs python3-torch and libopenblas0-pthread" >&2
  fi
fi
value() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" <<<"$1"; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
for threads in 1 2; do
  ours=$($BENCH --threads $threads --steps "$STEPS" 2>/dev/null)
  echo "$ours"
  if $PY -c "import torch" 2>/dev/null; then
    theirs=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads $PY bench/train_torch.py --threads $threads --steps "$STEPS")
    echo "$theirs"
    echo "threads $threads: retort $(value "$ours" tokens_per_s) tok/s, PyTorch $(value "$theirs" tokens_per_s) tok/s," \
         "ratio $(awk -v a="$(value "$ours" tokens_per_s)" -v b="$(value "$theirs" tokens_per_s)" 'BEGIN{printf "%.2f", a/b}')x"
  fi
done
plain=$($BENCH --threads 2 --steps "$STEPS" 2>/dev/null)
recompute=$($BENCH --threads 2 --steps "$STEPS" --checkpointing 2>/dev/null)
echo "$recompute"
echo "activation checkpointing (2 threads): activations $(value "$plain" activation_mib) -> $(value "$recompute" activation_mib) MiB," \
     "peak RSS $(value "$plain" peak_rss_mib) -> $(value "$recompute" peak_rss_mib) MiB," \
     "step $(value "$plain" ms_per_step) -> $(value "$recompute" ms_per_step) ms"

# Mixed precision: the same run (model, data, steps, threads, seed) with f32 and with bf16 matrix
# products, training on Tiny Shakespeare's bytes so the losses are a real curve. The first step is
# an untimed warm-up; its loss is listed as step 1. The table shows every 5th step.
TEXT=${TEXT:-../shared/data/tinyshakespeare/input.txt}
MP_STEPS=${MP_STEPS:-60}
MP_THREADS=${MP_THREADS:-2}
if [[ -f $TEXT ]]; then
  f32=$($BENCH --threads "$MP_THREADS" --steps "$MP_STEPS" --text "$TEXT" --lr 1e-3 2>/dev/null)
  bf16=$($BENCH --threads "$MP_THREADS" --steps "$MP_STEPS" --text "$TEXT" --lr 1e-3 --bf16 2>/dev/null)
  losses() { sed -n 's/.*"losses": \[\([^]]*\)\].*/\1/p' <<<"$1" | tr ',' '\n' | tr -d ' '; }
  echo "mixed precision ($MP_THREADS threads, batch 4 x 256, Tiny Shakespeare bytes, lr 1e-3):"
  paste <(losses "$f32") <(losses "$bf16") |
    awk -v last="$((MP_STEPS + 1))" 'NR == 1 || NR % 5 == 0 || NR == last {printf "| %d | %.4f | %.4f | %+.4f |\n", NR, $1, $2, $2 - $1}' |
    sed '1i | step | f32 loss | bf16 loss | bf16 - f32 |\n|---|---|---|---|'
  echo "tokens/s: f32 $(value "$f32" tokens_per_s), bf16 $(value "$bf16" tokens_per_s)," \
       "ratio $(awk -v a="$(value "$bf16" tokens_per_s)" -v b="$(value "$f32" tokens_per_s)" 'BEGIN{printf "%.2f", a/b}')x"
else
  echo "no $TEXT: skipping the mixed-precision comparison (set TEXT=...)"
fi
