#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh
# machine, then runs every test. Safe to run again (installs are cached).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== alert rules (installs the Debian prometheus package when missing)"
bash ci/prometheus.sh

echo "== redis-server for tests/shared.rs (the Debian redis-server package, when missing)"
# The tests start their own redis-server on a free port; the package's own
# service is neither needed nor wanted, so policy-rc.d keeps it from starting.
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  blocker=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$blocker" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$blocker" && chmod +x "$blocker" && created=1
  fi
  if ! apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends redis-server >/dev/null
  fi
  if [[ $created == 1 ]]; then rm -f "$blocker"; fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
  fi
  command -v redis-server >/dev/null || { echo "redis-server still missing after apt-get install" >&2; exit 1; }
fi

echo "== cargo test"
cargo test --locked --lib --bins --tests

echo "== benchmarks build (they are run by hand: cargo bench)"
# The dev profile: this checks that every bench compiles and links, reusing
# the test build; the optimised build with LTO is what `cargo bench` makes.
cargo build --locked --benches --quiet

echo "== helm chart (lint, template, schema, waybill check on rendered configs)"
cargo build --locked --quiet
WAYBILL_BIN="${CARGO_TARGET_DIR:-target}/debug/waybill" WAYBILL_REQUIRE_CHECK=1 bash ci/helm.sh
