#!/usr/bin/env bash
# Run a scenario as N shard processes against one `fleetbench broker` process on loopback, the
# way `fleetbench deploy kubernetes` runs it on a cluster: every shard is started with the same
# command line and environment but JOB_COMPLETION_INDEX, waits for one common start, prints its
# report in its log (--report -), and the logs are merged with `fleetbench merge --shards`.
#
#   benches/shards-local.sh SCENARIO [SHARDS]        (default 4)
#
# Environment: LISTENERS=N gives the broker N ports and shard i the port i mod N (default 1: one
# URL for all, as a Kubernetes Service gives; rumqttd serves all of one listener's connections
# on one thread); OUT=DIR (default target/shards-local); FLEETBENCH=binary (default the release
# build). Needs an open-file limit above the broker's connections (`ulimit -n 20000`).
# Prints each shard's peak RSS and CPU (from /usr/bin/time) and the merged summary.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=$(realpath "${1:?usage: benches/shards-local.sh SCENARIO [SHARDS]}")
SHARDS=${2:-4}
LISTENERS=${LISTENERS:-1}
OUT=${OUT:-target/shards-local}
FLEETBENCH=${FLEETBENCH:-target/release/fleetbench}
[ -x "$FLEETBENCH" ] || cargo build --release -p fleetbench
FLEETBENCH=$(realpath "$FLEETBENCH")
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 2; }
mkdir -p "$OUT"; rm -f "$OUT"/shard*.log "$OUT"/shard*.err "$OUT"/shard*.time
"$FLEETBENCH" check --shards "$SHARDS" "$SCENARIO"

# Free loopback ports for the broker, picked by the kernel.
PORTS=$(python3 -c "
import socket
s=[socket.socket() for _ in range($LISTENERS)]
[x.bind(('127.0.0.1',0)) for x in s]
print(' '.join(str(x.getsockname()[1]) for x in s))")
read -r -a PORT <<<"$PORTS"
LISTEN=(); for p in "${PORT[@]}"; do LISTEN+=(--listen "127.0.0.1:$p"); done
"$FLEETBENCH" broker "${LISTEN[@]}" --max-connections 20000 >"$OUT/broker.out" 2>&1 &
BROKER=$!
trap 'kill -INT $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "listening" "$OUT/broker.out" && break; sleep 0.2; done

START=$(date -u -d '+8 sec' +%Y-%m-%dT%H:%M:%SZ)
PIDS=()
for ((i = 0; i < SHARDS; i++)); do
  PORT_I=${PORT[$((i % LISTENERS))]}
  JOB_COMPLETION_INDEX=$i FLEETBENCH_START_AT=$START FLEETBENCH_BROKER_URL="mqtt://127.0.0.1:$PORT_I" \
    /usr/bin/time -v -o "$OUT/shard$i.time" "$FLEETBENCH" run "$SCENARIO" --shards "$SHARDS" \
    --report - --no-tui --progress-every 10 >"$OUT/shard$i.log" 2>"$OUT/shard$i.err" &
  PIDS+=($!)
done
FAILED=0
for p in "${PIDS[@]}"; do wait "$p" || FAILED=$((FAILED + 1)); done
# The broker's own peak memory and CPU before it stops.
echo "broker: peak RSS $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$BROKER/status)," \
  "CPU $(awk '{printf "%.1f s", ($14+$15)/100}' /proc/$BROKER/stat)"
kill -INT $BROKER; wait $BROKER || true; trap - EXIT
for ((i = 0; i < SHARDS; i++)); do
  rss=$(awk -F': ' '/Maximum resident/{printf "%.1f MiB", $2/1024}' "$OUT/shard$i.time")
  cpu=$(awk -F': ' '/Percent of CPU/{print $2}' "$OUT/shard$i.time")
  echo "shard $i: peak RSS $rss, CPU $cpu of its lifetime"
done
[ "$FAILED" = 0 ] || echo "$FAILED shard processes exited non-zero (see $OUT/shard*.err)"
cat "$OUT"/shard*.log >"$OUT/job.log"
"$FLEETBENCH" merge --shards "$OUT/job.log" -o "$OUT/merged.json"
