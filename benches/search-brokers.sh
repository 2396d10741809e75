#!/usr/bin/env bash
# The capacity search of one scenario against the embedded broker and against mosquitto,
# REPEAT times each, alternating, in one sitting: each search's answer, bracket, knee, what
# limited it and how long it took, as one line; the results in target/search-brokers/.
#
#   benches/search-brokers.sh [SCENARIO [REPEAT [FLAGS...]]]
#       SCENARIO  default scenarios/search/fan-in-qos1.toml
#       REPEAT    default 2
#       FLAGS     more flags for `fleetbench search` (default: --vary rate --from 1 --to 320)
#
# mosquitto (Debian's package; installed with apt-get when run as root) listens on a free
# loopback port with no queue limits and runs pinned to the last core, fleetbench to the
# others (taskset), and is ended by its PID afterwards. The embedded broker runs inside
# fleetbench, so that search runs unpinned.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-scenarios/search/fan-in-qos1.toml}
repeat=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
flags=("$@")
if [[ ${#flags[@]} -eq 0 ]]; then flags=(--vary rate --from 1 --to 320); fi
out=target/search-brokers
mkdir -p "$out"
work=$(mktemp -d)
broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y -qq mosquitto >/dev/null
    else
        echo "mosquitto is not installed: sudo apt-get install mosquitto" >&2
        exit 2
    fi
fi
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cargo build --release --quiet -p fleetbench
bin=target/release/fleetbench
cores=$(nproc)
last=$((cores - 1))
rest="0-$((last > 0 ? last - 1 : 0))"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_type error\nlistener %s 127.0.0.1\n' \
    "$port" >"$work/mosquitto.conf"
taskset -c "$last" "$mosquitto_bin" -c "$work/mosquitto.conf" &
broker_pid=$!
for _ in $(seq 50); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

line() {
    python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:<22} answer {r['answer']} {r['unit']} (bracket {r['bracket']}), knee {r['knee']}, "
      f"limited by {r['limited_by']}, {len(r['steps'])} steps in {r['duration_s']:.0f} s")
PY
}

for k in $(seq "$repeat"); do
    "$bin" search "$scenario" "${flags[@]}" --quiet --report "$out/embedded.$k.json" \
        --html "$out/embedded.$k.html" >/dev/null || true
    line "embedded #$k" "$out/embedded.$k.json"
    taskset -c "$rest" "$bin" search "$scenario" "${flags[@]}" --quiet \
        --broker-url "mqtt://127.0.0.1:$port" --broker-pid "$broker_pid" \
        --report "$out/mosquitto.$k.json" --html "$out/mosquitto.$k.html" >/dev/null || true
    line "mosquitto #$k" "$out/mosquitto.$k.json"
done
"$bin" report html "$out/embedded.1.json" --baseline "$out/mosquitto.1.json" -o "$out/both.html" >/dev/null
echo "overlaid: $out/both.html"
