#!/usr/bin/env bash
# Benchmark: the loadbalancing exporter's cost against a direct otlp exporter, in one sitting.
# vigil-loadgen → vigil (otlp → batch → EXPORTER) → sink vigils (otlp → debug basic), where EXPORTER
# is, per round: `otlp` to one sink; `loadbalancing` over that one sink (routing and the per-backend
# stack, no fan-out); `loadbalancing` over three sinks (traces cut by trace id into three requests).
# The three are interleaved `rounds` times; each row is the middle agent's CPU per span.
# Usage: bench/loadbalancing.sh [seconds] [rate] [rounds]   (release build; loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}; rate=${2:-20000}; rounds=${3:-3}
T=${CARGO_TARGET_DIR:-target}
if [ -z "${VIGIL_BIN:-}" ]; then cargo build --release -q -p vigil -p vigil-loadgen; fi
V=${VIGIL_BIN:-$T/release/vigil}; L=${LOADGEN_BIN:-$T/release/vigil-loadgen}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINKS=($(port) $(port) $(port)); MID=$(port)
for s in "${SINKS[@]}"; do
  cat > "$tmp/sink-$s.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$s", max_recv_msg_size_mib: 64}}}}
exporters: {debug: {verbosity: basic}}
service:
  pipelines: {traces: {receivers: [otlp], exporters: [debug]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
  $V --config "$tmp/sink-$s.yaml" 2>/dev/null &
done
exporter() {
  case $1 in
    otlp) echo "{otlp: {endpoint: \"127.0.0.1:${SINKS[0]}\", tls: {insecure: true}, compression: none}}" ;;
    lb1) echo "{loadbalancing: {protocol: {otlp: {tls: {insecure: true}, compression: none}}, resolver: {static: {hostnames: [\"127.0.0.1:${SINKS[0]}\"]}}}}" ;;
    lb3) echo "{loadbalancing: {protocol: {otlp: {tls: {insecure: true}, compression: none}}, resolver: {static: {hostnames: [\"127.0.0.1:${SINKS[0]}\", \"127.0.0.1:${SINKS[1]}\", \"127.0.0.1:${SINKS[2]}\"]}}}}" ;;
  esac
}
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "| round | exporter | accepted spans/s | middle CPU (cores) | µs CPU per span | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
  for mode in otlp lb1 lb3; do
    e=$(exporter $mode); name=${e#\{}; name=${name%%:*}
    cat > "$tmp/mid.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$MID"}}}}
processors: {batch: {}}
exporters: $e
service:
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [$name]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
    $V --config "$tmp/mid.yaml" 2>"$tmp/mid.log" & pid=$!
    sleep 2
    t0=$(cpu_ticks $pid)
    out=$($L traces --otlp-endpoint "127.0.0.1:$MID" --rate "$rate" --duration "${secs}s" --workers 4 --batch 100 --json)
    t1=$(cpu_ticks $pid)
    hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
    kill -TERM $pid; wait $pid || true
    python3 - "$out" "$t0" "$t1" "$clk" "$r" "$mode" "$hwm" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); t0, t1, clk = map(float, sys.argv[2:5]); r, mode, hwm = sys.argv[5], sys.argv[6], float(sys.argv[7])
cores = (t1 - t0) / clk / o["elapsed_s"]
acc = o["sent"] / o["elapsed_s"]
print(f"| {r} | {mode} | {acc:.0f} | {cores:.3f} | {cores * 1e6 / acc if acc else float('nan'):.2f} | {hwm/1024:.1f} |")
PY
  done
done
