#!/usr/bin/env bash
# Benchmark: vigil-loadgen → vigil (otlp → batch → kafka) → tansu, for each producer compression, and in
# the same run the baseline vigil (otlp → batch → otlp) → sink vigil (otlp → debug basic).
# Reports the middle agent's CPU (as cores used), spans/s per core, and the bytes it sent to the
# broker (or sink) per span: the kernel's bytes_acked of its connections (`ss -ti`), so Kafka's or
# gRPC's framing and metadata requests are counted with the payload.
# Usage: bench/kafka_export.sh [seconds] [rate]   (release build; loopback only; needs the tansu that
# scripts/test.sh installs and .venv's confluent-kafka to create the topic)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}; rate=${2:-50000}
T=${CARGO_TARGET_DIR:-target}
if [ -z "${VIGIL_BIN:-}" ]; then cargo build --release -q -p vigil -p vigil-loadgen; fi
V=${VIGIL_BIN:-$T/release/vigil}; L=${LOADGEN_BIN:-$T/release/vigil-loadgen}
TANSU=${TANSU:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil/tansu-0.6.0/bin/tansu}
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(port); MID=$(port); KAFKA=$(port)
(cd "$tmp" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA" --advertised-listener-url "tcp://127.0.0.1:$KAFKA" \
  --storage-engine sqlite://tansu.db 2>"$tmp/tansu.log") &
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$KAFKA) 2>/dev/null && break; sleep 0.2; done
.venv/bin/python tests/python/kafka_client.py create-topic --brokers "127.0.0.1:$KAFKA" --topic bench --partitions 3 >/dev/null
cat > "$tmp/sink.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$SINK", max_recv_msg_size_mib: 64}}}}
exporters: {debug: {verbosity: basic}}
service:
  pipelines: {traces: {receivers: [otlp], exporters: [debug]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
$V --config "$tmp/sink.yaml" 2>/dev/null &
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Bytes the process acknowledged-sent on its connections to port $2.
sent_bytes() { ss -tinp "dport = :$2" 2>/dev/null | awk -v pid="pid=$1," '
  /users:/ { mine = index($0, pid) > 0; next }
  mine { if (match($0, /bytes_acked:[0-9]+/)) { s += substr($0, RSTART + 12, RLENGTH - 12) } }
  END { print s + 0 }'; }
echo "| exporter | offered spans/s | accepted spans/s | middle CPU (cores) | spans/s per core | bytes sent per span |"
echo "|---|---|---|---|---|---|"
for mode in otlp none snappy lz4 zstd gzip; do
  if [ "$mode" = otlp ]; then
    exp="otlp: {endpoint: \"127.0.0.1:$SINK\", tls: {insecure: true}, compression: none}"; name=otlp; dport=$SINK
  else
    exp="kafka: {brokers: [\"127.0.0.1:$KAFKA\"], traces: {topic: bench}, producer: {compression: $mode}}"; name=kafka; dport=$KAFKA
  fi
  cat > "$tmp/mid.yaml" <<YAML
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$MID"}}}}
processors: {batch: {}}
exporters: {$exp}
service:
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [$name]}}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
YAML
  $V --config "$tmp/mid.yaml" 2>"$tmp/mid.log" & pid=$!
  sleep 1
  t0=$(cpu_ticks $pid); b0=$(sent_bytes $pid $dport)
  out=$($L traces --otlp-endpoint "127.0.0.1:$MID" --rate "$rate" --duration "${secs}s" --workers 4 --batch 100 --json)
  sleep 1  # the last batch and its delivery
  t1=$(cpu_ticks $pid); b1=$(sent_bytes $pid $dport)
  kill -TERM $pid; wait $pid || true
  python3 - "$out" "$t0" "$t1" "$clk" "$rate" "$b0" "$b1" "$mode" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); t0, t1, clk, rate, b0, b1 = map(float, sys.argv[2:8]); mode = sys.argv[8]
cores = (t1 - t0) / clk / o["elapsed_s"]
acc = o["sent"] / o["elapsed_s"]
label = "otlp (baseline)" if mode == "otlp" else f"kafka, {mode}"
print(f"| {label} | {int(rate)} | {acc:.0f} | {cores:.3f} | {acc / cores if cores else float('nan'):.0f} | {(b1 - b0) / o['sent'] if o['sent'] else float('nan'):.0f} |")
PY
done
