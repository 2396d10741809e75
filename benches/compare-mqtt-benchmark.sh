#!/usr/bin/env bash
# fleetbench beside mqtt-benchmark (crates.io) on one workload, in one sitting: the same number
# of clients publishing the same number of QoS 1 messages to one mosquitto on a loopback port of
# its own. Prints, for each tool and run, the messages it accounted for and the CPU time (user +
# system) of its process, and the messages per CPU-second.
#
# mqtt-benchmark publishes as fast as it can and measures nothing else. fleetbench publishes on
# its open-loop schedule (RATE per client) and, in the same process, receives every message
# through a QoS 1 observer, times it and accounts for it: its figure counts delivered messages.
#
# fleetbench's process also calibrates the machine and probes the broker before every run: a
# fixed cost, measured once with a 100 ms run and printed; the figures above include it.
#
# Usage: benches/compare-mqtt-benchmark.sh [RUNS]
# Environment: CLIENTS (10), MESSAGES per client (50000), RATE per client in msg/s (5000),
# FLEETBENCH (a fleetbench binary to use instead of building target/release/fleetbench).
# Installs mqtt-benchmark into target/tools with cargo; needs mosquitto (installed with apt-get
# when run as root, otherwise named as missing).
set -euo pipefail

runs=${1:-3}
clients=${CLIENTS:-10}
messages=${MESSAGES:-50000}
rate=${RATE:-5000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

need_mosquitto() {
    if command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]]; then return; fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y -qq mosquitto >/dev/null
    else
        echo "mosquitto is missing: install Debian's mosquitto package (apt-get install mosquitto)" >&2
        exit 1
    fi
}

need_mosquitto
command -v python3 >/dev/null || { echo "python3 is missing (it reads fleetbench's report)" >&2; exit 1; }
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
mqb="$root/target/tools/bin/mqtt-benchmark"
if [[ ! -x "$mqb" ]]; then
    echo "installing mqtt-benchmark from crates.io into target/tools" >&2
    cargo install --quiet --locked --root "$root/target/tools" mqtt-benchmark
fi
if [[ -n "${FLEETBENCH:-}" ]]; then
    fleetbench=$FLEETBENCH
else
    (cd "$root" && cargo build --quiet --release -p fleetbench)
    fleetbench="$root/target/release/fleetbench"
fi

# A free loopback port, and mosquitto on it with no queue or in-flight limits (its defaults drop
# QoS 1 messages queued for a subscriber beyond 1,000).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 0
persistence false
log_dest none
EOF
"$mosquitto_bin" -c "$work/mosquitto.conf" &
broker_pid=$!
for _ in $(seq 50); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
    sleep 0.1
done

duration_ms=$(( (messages * 1000 + rate - 1) / rate ))
cat >"$work/scenario.toml" <<EOF
name = "compare-mqtt-benchmark"
description = "$clients clients x $messages QoS 1 messages at $rate msg/s, one QoS 1 observer"
seed = 7
duration = "${duration_ms}ms"
drain_timeout = "10s"
[broker]
url = "mqtt://127.0.0.1:$port"
[[group]]
name = "pub"
count = $clients
topic = "cmp/{index}"
rate = $rate.0
qos = 1
payload_size = 64
[[observer]]
name = "all"
filters = ["cmp/#"]
qos = 1
EOF

# CPU seconds (user + system) of one command, written to $work/cpu. Exit 3 (a run that
# finished and failed an expectation, such as a generator behind its schedule at full speed)
# still measured its cost.
cpu_of() {
    local TIMEFORMAT='%U %S' code=0
    { time "$@" >"$work/out" 2>&1; } 2>"$work/time" || code=$?
    if [[ $code -ne 0 && $code -ne 3 ]]; then cat "$work/out" >&2; return 1; fi
    awk '{printf "%.3f", $1 + $2}' "$work/time" >"$work/cpu"
}

# The fixed cost of a fleetbench run: one device, 100 ms.
cat >"$work/fixed.toml" <<EOF
name = "fixed-cost"
seed = 7
duration = "100ms"
drain_timeout = "1s"
[broker]
url = "mqtt://127.0.0.1:$port"
[[group]]
name = "pub"
count = 1
topic = "cmp/{index}"
rate = 1.0
qos = 1
[[observer]]
name = "all"
filters = ["cmp/#"]
qos = 1
[expect]
delivered_ratio = 0.0
EOF
cpu_of "$fleetbench" run "$work/fixed.toml" --report "$work/fixed.json" --no-tui --quiet
echo "fleetbench start-up (calibration, probe, one device for 100 ms): $(cat "$work/cpu") CPU-s per run"

printf '%-14s %4s %12s %9s %14s  %s\n' tool run messages "cpu s" "msg per cpu-s" "notes"
for run in $(seq "$runs"); do
    cpu_of "$mqb" -b "127.0.0.1:$port" -q 1 -C "$clients" -s "$messages" -P "$(head -c 64 /dev/zero | tr '\0' x)" \
        -c "mqb-$run"
    cpu=$(cat "$work/cpu")
    sent=$((clients * messages))
    printf '%-14s %4d %12d %9.3f %14.0f  %s\n' mqtt-benchmark "$run" "$sent" "$cpu" \
        "$(awk -v n="$sent" -v c="$cpu" 'BEGIN { print n / c }')" "published (not received, not timed)"

    cpu_of "$fleetbench" run "$work/scenario.toml" --report "$work/report.json" --no-tui --quiet
    cpu=$(cat "$work/cpu")
    read -r delivered notes < <(python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
p99 = r["latency"]["from_intended"]["p99_us"] / 1000
late = r["generator"]["late_sends"] / max(t["sent"], 1) * 100
print(t["delivered"], f'delivered of {t["expected"]}, lost {t["lost"]}, p99 from intended {p99:.2f} ms, late sends {late:.1f}%')
PY
)
    printf '%-14s %4d %12d %9.3f %14.0f  %s\n' fleetbench "$run" "$delivered" "$cpu" \
        "$(awk -v n="$delivered" -v c="$cpu" 'BEGIN { print n / c }')" "$notes"
done
