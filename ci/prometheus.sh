#!/usr/bin/env bash
# Installs Prometheus and promtool (the Debian `prometheus` package) when
# missing, then checks the alert rules:
#
#   ci/prometheus.sh            install if needed, promtool check rules + test rules
#   ci/prometheus.sh install    install if needed, nothing else
#
# Installing goes through ci/apt.sh (root and apt; the package's own service
# is kept from starting: tests/prometheus.rs starts its own Prometheus on a
# free port with a temporary storage directory).
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/apt.sh prometheus prometheus promtool
[[ "${1:-}" == install ]] && exit 0

echo "== promtool $(promtool --version 2>&1 | head -1 | awk '{print $3}')"
shopt -s nullglob
promtool check rules alerts/*.yaml
for t in alerts/tests/*.yaml; do
  promtool test rules "$t"
done
