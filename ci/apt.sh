#!/usr/bin/env bash
# Installs a Debian package when any of its commands is missing:
#
#   ci/apt.sh PACKAGE COMMAND...      e.g. ci/apt.sh prometheus prometheus promtool
#
# Needs root and apt (CI runs as root). `apt-get update` runs only when the
# install fails without it (a fresh machine has no package lists). The
# package's own service is neither needed nor wanted — the tests start their
# own servers on free ports — so policy-rc.d keeps it from starting, and one
# started anyway is stopped.
set -euo pipefail

package=$1
shift
missing=0
for command in "$@"; do
  command -v "$command" >/dev/null 2>&1 || missing=1
done
[[ $missing == 0 ]] && exit 0

echo "installing the Debian $package package"
export DEBIAN_FRONTEND=noninteractive
blocker=/usr/sbin/policy-rc.d created=0
if [[ ! -e "$blocker" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$blocker" && chmod +x "$blocker" && created=1
fi
if ! apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "$package" >/dev/null
fi
if [[ $created == 1 ]]; then rm -f "$blocker"; fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$package" 2>/dev/null; then
  systemctl stop "$package" || true
fi
for command in "$@"; do
  command -v "$command" >/dev/null || { echo "$command still missing after installing $package" >&2; exit 1; }
done
