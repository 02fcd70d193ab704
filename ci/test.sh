#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh
# machine, then runs every test. Safe to run again (installs are cached).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== make for building jemalloc (tikv-jemalloc-sys, the binary's allocator), when missing"
bash ci/apt.sh make make

echo "== alert rules (installs the Debian prometheus package when missing)"
bash ci/prometheus.sh

echo "== redis-server for tests/shared.rs and tests/prometheus.rs (the Debian redis-server package, when missing)"
bash ci/apt.sh redis-server redis-server

echo "== cargo test"
cargo test --locked --lib --bins --tests

echo "== the proxy tests again against hyper's HTTP/1 engine (engine: hyper)"
# The run above serves every test listener as the default `engine: auto`
# does: natively where the native engine can. This one gives hyper every
# listener that does not choose an engine (tests/proxy_support), so both
# engines stay covered.
for test in proxy_conformance proxy_transparency proxy_tap proxy_failures proxy_headers proxy_upstream proxy_guard proxy_native sidecar otlp; do
  WAYBILL_TEST_ENGINE=hyper cargo test --locked --test "$test"
done

echo "== benchmarks build (they are run by hand: cargo bench)"
# The dev profile: this checks that every bench compiles and links, reusing
# the test build; the optimised build with LTO is what `cargo bench` makes.
cargo build --locked --benches --quiet

echo "== fuzz targets type-check (running them needs nightly: fuzz/run.sh)"
# Checked, not built: libFuzzer's instrumentation needs a nightly compiler,
# but a codec change that breaks a target shows here.
(cd fuzz && cargo check --locked --quiet)

echo "== helm chart (lint, template, schema, waybill check on rendered configs)"
cargo build --locked --quiet
WAYBILL_BIN="${CARGO_TARGET_DIR:-target}/debug/waybill" WAYBILL_REQUIRE_CHECK=1 bash ci/helm.sh
