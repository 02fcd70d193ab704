#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh
# machine, then runs every test. Safe to run again (installs are cached).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --locked --all-targets

echo "== helm chart (lint, template, schema, waybill check on rendered configs)"
cargo build --locked --quiet
WAYBILL_BIN="${CARGO_TARGET_DIR:-target}/debug/waybill" WAYBILL_REQUIRE_CHECK=1 bash ci/helm.sh
