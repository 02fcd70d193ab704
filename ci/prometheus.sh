#!/usr/bin/env bash
# Installs Prometheus and promtool (the Debian `prometheus` package) when
# missing, then checks the alert rules:
#
#   ci/prometheus.sh            install if needed, promtool check rules + test rules
#   ci/prometheus.sh install    install if needed, nothing else
#
# Installing needs root (CI runs as root) and apt; it runs `apt-get update`
# at most once. The package's own service is neither needed nor wanted: the
# tests start their own Prometheus on a free port with a temporary storage
# directory (tests/prometheus.rs), so policy-rc.d keeps the package from
# starting one, and any it started anyway is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

install_prometheus() {
  if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    return
  fi
  echo "installing the Debian prometheus package (prometheus, promtool)"
  export DEBIAN_FRONTEND=noninteractive
  local blocker=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$blocker" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$blocker" && chmod +x "$blocker" && created=1
  fi
  if ! apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends prometheus >/dev/null
  fi
  if [[ $created == 1 ]]; then rm -f "$blocker"; fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
  command -v promtool >/dev/null && command -v prometheus >/dev/null \
    || { echo "prometheus/promtool still missing after apt-get install" >&2; exit 1; }
}

install_prometheus
[[ "${1:-}" == install ]] && exit 0

echo "== promtool $(promtool --version 2>&1 | head -1 | awk '{print $3}')"
shopt -s nullglob
promtool check rules alerts/*.yaml
for t in alerts/tests/*.yaml; do
  promtool test rules "$t"
done
