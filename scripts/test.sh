#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh Debian machine, builds the
# workspace, and runs every test. Safe to run again; each step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Debian packages: the real peers the end-to-end tests run against.
APT_PACKAGES=(python3-venv util-linux logrotate bsdutils prometheus prometheus-node-exporter prometheus-alertmanager)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. A Python venv with the real OpenTelemetry SDK (the client in the OTLP tests).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
  echo "== creating .venv with the OpenTelemetry SDK"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tests/requirements.txt
fi

# 3. Build every binary once, then run every test.
echo "== building"
cargo build --workspace --bins
echo "== testing"
cargo test --workspace "$@"
