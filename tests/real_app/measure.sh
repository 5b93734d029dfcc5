#!/usr/bin/env bash
# The long real-app measurement of issue #19, run by hand (CI runs one short round): twelve faults
# (4 rounds of latency, errors and a slow database, rotated over the services) and a long fault-free
# period, through tests/tests/real_app.rs. Writes the JSON summary, what vigil wrote (anomalies and
# incidents) and the machine's load to OUT (default target/real_app_measure/<UTC time>).
#
#   tests/real_app/measure.sh                 # 4 rounds, 600 s fault-free after warm-up
#   ROUNDS=2 QUIET_S=300 tests/real_app/measure.sh
#   LATENCY_SLO=0 tests/real_app/measure.sh   # availability SLOs only (CI has latency ones too)
set -u
cd "$(dirname "$0")/../.."
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=${OUT:-target/real_app_measure/$stamp}
mkdir -p "$out"
out=$(cd "$out" && pwd)
{
  echo "start $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) (uncommitted changes: $(git status --porcelain | wc -l) paths)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
} | tee "$out/run.txt"
# The agent under test is built once and copied: other work in the tree must not change it mid-run.
# BIN_DIR=<dir with a vigil binary> skips the build.
if [ -z "${BIN_DIR:-}" ]; then
  cargo build -p vigil --bin vigil >"$out/build.txt" 2>&1 || { echo "build failed: $out/build.txt"; exit 1; }
  mkdir -p "$out/bin" && cp target/debug/vigil "$out/bin/vigil"
  BIN_DIR=$out/bin
fi
echo "agent binary: $BIN_DIR/vigil" | tee -a "$out/run.txt"
# The test too, for the same reason.
cargo test -p vigil-tests --test real_app --no-run >"$out/build_test.txt" 2>&1 || { echo "test build failed: $out/build_test.txt"; exit 1; }
exe=$(grep -o 'target/debug/deps/real_app-[0-9a-f]*' "$out/build_test.txt" | tail -1)
mkdir -p "$out/bin" && cp "$exe" "$out/bin/real_app"
# Sample the load every 30 s: the figures depend on how busy the shared machine was.
( while sleep 30; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; done ) >"$out/load.txt" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null' EXIT
VIGIL_REAL_APP_ROUNDS=${ROUNDS:-4} \
VIGIL_REAL_APP_QUIET_S=${QUIET_S:-600} \
VIGIL_REAL_APP_LATENCY_SLO=${LATENCY_SLO:-1} \
VIGIL_REAL_APP_KEEP="$out/findings.jsonl" \
VIGIL_TEST_BIN_DIR="$BIN_DIR" \
  "$out/bin/real_app" --nocapture >"$out/test.txt" 2>&1
rc=$?
echo "end $(date -u +%FT%TZ) test exit $rc (an assertion failure still printed the summary)" | tee -a "$out/run.txt"
# The summary is the pretty-printed JSON object the test prints before it asserts.
awk '/^\{$/{p=1} p{print} /^\}$/{if(p) exit}' "$out/test.txt" >"$out/summary.json"
cat "$out/summary.json"
echo "written to $out"
