#!/usr/bin/env bash
# Resident memory over a long run: starts `fleetbench run SCENARIO` (release build), samples the
# process's resident memory every INTERVAL seconds, prints one line per sample, and fails
# (exit 1) when memory grew by more than 5% from WARM (seconds) to the end of publishing, or when
# the end of the run (report, series, interval log) peaked more than 10% above the steady
# state.
#
#   benches/soak-memory.sh [SCENARIO [INTERVAL [WARM]]]
#       SCENARIO  default scenarios/long/soak.toml (30 minutes)
#       INTERVAL  seconds between samples, default 60
#       WARM      seconds of warm-up before the growth is measured, default 300
#   BROKER=mosquitto benches/soak-memory.sh ...
#       the same against a mosquitto started here on a free loopback port (Debian's package;
#       installed with apt-get when run as root), ended by its PID afterwards; the scenario's
#       [broker] is replaced with --broker-url.
#
# Each sample line: elapsed seconds, RSS of fleetbench (MiB), and of mosquitto when it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-scenarios/long/soak.toml}
interval=${2:-60}
warm=${3:-300}
work=$(mktemp -d)
fleet_pid=""
broker_pid=""
cleanup() {
    if [[ -n "$fleet_pid" ]]; then kill "$fleet_pid" 2>/dev/null || true; fi
    if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet
bin=target/release/fleetbench
extra=()
if [[ "${BROKER:-embedded}" == mosquitto ]]; then
    if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
        if [[ $(id -u) -eq 0 ]]; then
            apt-get install -y -qq mosquitto >/dev/null
        else
            echo "mosquitto is not installed: sudo apt-get install mosquitto" >&2
            exit 1
        fi
    fi
    mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nlog_type error\n' "$port" \
        >"$work/mosquitto.conf"
    "$mosquitto_bin" -c "$work/mosquitto.conf" &
    broker_pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
    extra=(--broker-url "mqtt://127.0.0.1:$port")
fi

# A /proc/PID/status figure (VmRSS: resident now; VmHWM: the most so far) in MiB.
mib() { awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

ulimit -n 20000 2>/dev/null || true
"$bin" run "$scenario" --no-tui --quiet --report "$work/report.json" "${extra[@]}" >"$work/summary" 2>&1 &
fleet_pid=$!
start=$(date +%s)
samples=()
echo "seconds  fleetbench_MiB${broker_pid:+  mosquitto_MiB}"
while kill -0 "$fleet_pid" 2>/dev/null; do
    sleep "$interval"
    kill -0 "$fleet_pid" 2>/dev/null || break
    t=$(( $(date +%s) - start ))
    rss=$(mib "$fleet_pid" VmRSS)
    samples+=("$t $rss $(mib "$fleet_pid" VmHWM)")
    if [[ -n "$broker_pid" ]]; then
        echo "$t  $rss  $(mib "$broker_pid" VmRSS)"
    else
        echo "$t  $rss"
    fi
done
wait "$fleet_pid" || true
fleet_pid=""
head -n 3 "$work/summary"
peak=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"]["peak_rss_bytes"] / 2**20)' \
    "$work/report.json")
printf '%s\n' "${samples[@]}" | python3 -c '
import sys
warm, peak = float(sys.argv[1]), float(sys.argv[2])
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
after = [r for r in rows if r[0] >= warm]
if len(after) < 2:
    sys.exit(f"too few samples after {warm:.0f} s: run longer or sample more often")
first, last = after[0][1], after[-1][1]
# The high-water mark at the last sample holds everything before the end; the report peak,
# what the end (report, series, interval log) added to it.
steady = after[-1][2]
growth = (last - first) / first
print(f"from {after[0][0]:.0f} s to {after[-1][0]:.0f} s: {first:.1f} -> {last:.1f} MiB ({growth:+.1%})")
print(f"end of run: peak {peak:.1f} MiB against {steady:.1f} MiB before it ({peak / steady - 1:+.1%})")
bad = []
if growth > 0.05:
    bad.append(f"memory grew {growth:.1%} after the warm-up (limit 5%)")
if peak > steady * 1.10:
    bad.append(f"the end of the run peaked {peak / steady - 1:.1%} above the steady state (limit 10%)")
if bad:
    sys.exit("FAIL: " + "; ".join(bad))
print("PASS")
' "$warm" "$peak"
