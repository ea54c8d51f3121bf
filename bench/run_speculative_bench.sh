#!/usr/bin/env bash
# Speculative decoding: decode speed with each draft at each K, against the target alone, measured
# in the same script (`retort run --raw`, the same prompts, greedy and sampled).
#
#   bench/run_speculative_bench.sh TARGET DRAFT [DRAFT ...]
#   env: KS="1 2 4 6 8" TEMPS="0 0.6" TOKENS=128 THREADS=2 BUILD=build/release
#        PROMPTS_FILE=FILE (one prompt per line; default: three built-in lines)
# Prints a Markdown table: draft, temperature, K, acceptance, tokens per target forward, decode
# tok/s and the speed-up over the target alone (generated tokens ÷ decode seconds, all prompts).
# With LLAMA_SERVER (a llama-server binary built beside the project; TARGET and DRAFT GGUF files), a
# second table: the same prompts, temperatures and K through llama-server with -md DRAFT --spec-type
# draft-simple
# --spec-draft-n-max K (--spec-draft-n-min 0, --spec-draft-p-min 0: always K proposals, as retort
# makes), from the timings its /completion reports (predicted tokens and ms, drafted and accepted).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: bench/run_speculative_bench.sh TARGET DRAFT [DRAFT ...]}
shift
[ $# -ge 1 ] || { echo "give at least one DRAFT" >&2; exit 2; }
BUILD=${BUILD:-build/release}
KS=${KS:-1 2 4 6 8}
TEMPS=${TEMPS:-0 0.6}
TOKENS=${TOKENS:-128}
THREADS=${THREADS:-2}
if [ -n "${PROMPTS_FILE:-}" ]; then mapfile -t PROMPTS <"$PROMPTS_FILE"; else
  PROMPTS=("First Citizen:" "ROMEO: But soft, what light" "KING HENRY: Once more unto the breach")
fi

# Runs every prompt; prints "generated decode_seconds proposed accepted target_forwards" summed over them.
measure() {  # temperature [draft k]
  local temp=$1 draft=${2:-} k=${3:-} prompt line
  local args=(run "$TARGET" --raw -n "$TOKENS" -t "$THREADS" --temperature "$temp" --seed 1)
  [ -n "$draft" ] && args+=(--draft "$draft" --draft-tokens "$k")
  for prompt in "${PROMPTS[@]}"; do
    line=$("$BUILD/retort" "${args[@]}" -p "$prompt" 2>&1 >/dev/null | grep "generation:" | tail -1)
    echo "$line"
  done | awk '{
      for (i = 1; i <= NF; ++i) {
        if ($i == "generation:") { n = $(i + 1); rate = $(i + 3) }
        if ($i == "of" && $(i + 2) == "proposed") { proposed += $(i + 1); accepted += $(i - 2) * $(i + 1) / 100 }
        if ($i == "tokens" && $(i + 1) == "per" && $(i + 3) == "forward") forwards += n / $(i - 1)
      }
      gen += n; secs += n / rate
    } END { printf "%d %.4f %d %.1f %.2f\n", gen, secs, proposed, accepted, forwards }'
}

echo "| draft | temperature | K | acceptance | tokens / target forward | decode tok/s | speed-up |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for temp in $TEMPS; do
  read -r gen secs _ _ _ <<<"$(measure "$temp")"
  base=$(awk -v g="$gen" -v s="$secs" 'BEGIN { printf "%.2f", g / s }')
  echo "| (target alone) | $temp | — | — | 1.00 | $base | 1.00× |"
  for draft in "$@"; do
    for k in $KS; do
      read -r gen secs proposed accepted forwards <<<"$(measure "$temp" "$draft" "$k")"
      awk -v g="$gen" -v s="$secs" -v p="$proposed" -v a="$accepted" -v f="$forwards" -v b="$base" \
        -v d="$(basename "$(dirname "$draft")")/$(basename "$draft")" -v t="$temp" -v k="$k" \
        'BEGIN { printf "| %s | %s | %d | %.0f %% | %.2f | %.2f | %.2f× |\n", d, t, k, (p > 0 ? 100 * a / p : 0),
                 (f > 0 ? g / f : 0), g / s, (g / s) / b }'
    done
  done
done

[ -n "${LLAMA_SERVER:-}" ] || exit 0
source bench/lib.sh
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
# Starts llama-server on TARGET (with DRAFT and K when given); prints "generated decode_seconds
# drafted accepted" summed over the prompts at temperature $1.
llama_measure() {  # temperature [draft k]
  local temp=$1 draft=${2:-} k=${3:-} port=18443 prompt
  local args=(-m "$TARGET" --port $port --threads "$THREADS" --parallel 1 --ctx-size 2048 --no-cache-prompt)
  [ -n "$draft" ] && args+=(-md "$draft" --spec-type draft-simple --spec-draft-n-max "$k" --spec-draft-n-min 0
                             --spec-draft-p-min 0
                             --threads-draft "$THREADS")
  "$LLAMA_SERVER" "${args[@]}" > /tmp/llama-speculative.log 2>&1 &
  pid=$!
  wait_healthy "http://127.0.0.1:$port" "$pid" /tmp/llama-speculative.log >&2
  for prompt in "${PROMPTS[@]}"; do
    node -e '
      const [url, prompt, n, temp] = process.argv.slice(1);
      fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                   body: JSON.stringify({ prompt, n_predict: Number(n), temperature: Number(temp), seed: 1,
                                          ignore_eos: true, cache_prompt: false }) })
        .then((r) => r.json()).then((j) => { const t = j.timings;
          console.log(t.predicted_n, t.predicted_ms / 1000, t.draft_n ?? 0, t.draft_n_accepted ?? 0); });
    ' "http://127.0.0.1:$port/completion" "$prompt" "$TOKENS" "$temp"
  done | awk '{ gen += $1; secs += $2; drafted += $3; accepted += $4 }
              END { printf "%d %.4f %d %d\n", gen, secs, drafted, accepted }'
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

echo
echo "llama-server ($(basename "$LLAMA_SERVER")), the same prompts:"
echo "| draft | temperature | K | acceptance | decode tok/s | speed-up |"
echo "|---|---:|---:|---:|---:|---:|"
for temp in $TEMPS; do
  read -r gen secs _ _ <<<"$(llama_measure "$temp")"
  base=$(awk -v g="$gen" -v s="$secs" 'BEGIN { printf "%.2f", g / s }')
  echo "| (target alone) | $temp | — | — | $base | 1.00× |"
  for draft in "$@"; do
    for k in $KS; do
      read -r gen secs drafted accepted <<<"$(llama_measure "$temp" "$draft" "$k")"
      awk -v g="$gen" -v s="$secs" -v p="$drafted" -v a="$accepted" -v b="$base" -v t="$temp" -v k="$k" \
        -v d="$(basename "$(dirname "$draft")")/$(basename "$draft")" \
        'BEGIN { printf "| %s | %s | %d | %.0f %% | %.2f | %.2f× |\n", d, t, k, (p > 0 ? 100 * a / p : 0), g / s,
                 (g / s) / b }'
    done
  done
done
