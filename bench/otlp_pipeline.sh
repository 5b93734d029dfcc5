#!/usr/bin/env bash
# Benchmark: vigil-loadgen → vigil (otlp → batch → otlp) → sink vigil (otlp → debug basic).
# For each rate, reports the middle agent's CPU (as cores used), spans/s per core, and peak RSS.
# Usage: bench/otlp_pipeline.sh [seconds] [rates...]   (release build; loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}; shift || true
rates=("${@:-10000 50000 100000}")
[ $# -eq 0 ] && rates=(10000 50000 100000)
# VIGIL_BIN / LOADGEN_BIN run given binaries instead (A/B runs of two builds in one sitting).
T=${CARGO_TARGET_DIR:-target}
if [ -z "${VIGIL_BIN:-}" ]; then cargo build --release -q -p vigil -p vigil-loadgen; fi
V=${VIGIL_BIN:-$T/release/vigil}; L=${LOADGEN_BIN:-$T/release/vigil-loadgen}
# MID_EXTRA adds YAML keys to the middle agent's otlp exporter (e.g. "sending_queue: {batch: {}}").
MID_EXTRA=${MID_EXTRA:-}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(port); MID=$(port)
cat > "$tmp/sink.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$SINK", max_recv_msg_size_mib: 64}}}}
exporters: {debug: {verbosity: basic}}
service:
  pipelines: {traces: {receivers: [otlp], exporters: [debug]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
cat > "$tmp/mid.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$MID"}}}}
processors: {batch: {}}
exporters: {otlp: {endpoint: "127.0.0.1:$SINK", tls: {insecure: true}, compression: none${MID_EXTRA:+, $MID_EXTRA}}}
service:
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
$V --config "$tmp/sink.yaml" 2>/dev/null &
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "| offered spans/s | accepted spans/s | middle CPU (cores) | spans/s per core | peak RSS (MiB) |"
echo "|---|---|---|---|---|"
for rate in "${rates[@]}"; do
  $V --config "$tmp/mid.yaml" 2>"$tmp/mid.log" & pid=$!
  sleep 1
  t0=$(cpu_ticks $pid)
  out=$($L traces --otlp-endpoint "127.0.0.1:$MID" --rate "$rate" --duration "${secs}s" --workers 4 --batch 100 --json)
  t1=$(cpu_ticks $pid)
  hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  python3 - "$out" "$t0" "$t1" "$clk" "$secs" "$rate" "$hwm" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); t0, t1, clk, secs, rate, hwm = map(float, sys.argv[2:])
cores = (t1 - t0) / clk / o["elapsed_s"]
acc = o["sent"] / o["elapsed_s"]
print(f"| {int(rate)} | {acc:.0f} | {cores:.3f} | {acc / cores if cores else float('nan'):.0f} | {hwm/1024:.1f} |")
PY
done
