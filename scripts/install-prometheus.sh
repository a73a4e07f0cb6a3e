#!/usr/bin/env bash
# Install Prometheus and promtool (Debian's `prometheus` package: /usr/bin/prometheus,
# /usr/bin/promtool) for tests/test_alerts.py and tests/test_prometheus_scrape.py.
# Idempotent: does nothing when promtool is already on the PATH. The tests start their
# own Prometheus on a free port; the service the package may start is stopped.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No recommends: they would add prometheus-node-exporter and its own service.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# The package enables a service on :9090; nothing here uses it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
  $SUDO service prometheus stop >/dev/null 2>&1 || true
fi

promtool --version | head -1
