#!/usr/bin/env bash
# Where Ringway's HTTP/1.1 CPU goes: the repository's own profile of one worker under a fixed
# open-loop load, so a change to the request path can be judged by what it removes.
#
# Setup (as bench/proxy-compare.sh): nginx backend answering 64 bytes and the load generator
# (oha, --latency-correction) on CPU 0, Ringway with one worker on CPU 1. Prints:
#   1. CPU per request (utime+stime of the process over the load);
#   2. syscalls per request (strace -c -f over the middle of the run);
#   3. perf's flat profile of the worker (perf record -g at 4999 Hz, children off), top
#      symbols above 0.5%, and the share of Ringway's own code (ringway:: symbols).
#
# Env: RATE (2000) DURATION (20s) CONNECTIONS (64) IO_DRIVER (uring|epoll) SKIP_BUILD=1
#      BACKEND_PORT (18080) PROXY_PORT (18081) KEEP_DIR=1 (keep perf.data and reports)
# Needs nginx, oha, perf, strace, jq, taskset. Exits non-zero when the load saw errors or
# completed nothing.
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
IO_DRIVER=${IO_DRIVER:-uring}
BACKEND_PORT=${BACKEND_PORT:-18080}
PROXY_PORT=${PROXY_PORT:-18081}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGWAY=$ROOT/target/release/ringway
WORK=$(mktemp -d /tmp/ringway-profile.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
BODY=$(printf 'x%.0s' $(seq 1 63))
PIDS=()

log() { printf '[profile] %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

for tool in nginx oha perf strace jq taskset curl; do
    command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
done
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] && ((secs >= 10)) || { log "DURATION must be whole seconds, at least 10s"; exit 2; }

if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringway (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway)
fi

write_backend_conf "$WORK/backend.conf"
taskset -c 0 nginx -c "$WORK/backend.conf" -e "$WORK/backend-error.log" >"$WORK/backend.out" 2>&1 &
PIDS+=($!)
wait_http "$BACKEND_PORT" "${PIDS[-1]}" || { log "backend did not start"; exit 1; }

write_ringway_conf "$WORK/ringway.yaml"
taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 \
    --io-driver "$IO_DRIVER" >"$WORK/ringway.out" 2>&1 &
RW=$!
PIDS+=("$RW")
wait_http "$PROXY_PORT" "$RW" || { log "ringway did not start"; cat "$WORK/ringway.out" >&2; exit 1; }

# Warm the pools, then the measured run with the profilers attached in its middle part.
taskset -c 0 oha --no-tui -z 2s -q "$RATE" -c "$CONNECTIONS" "http://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1 || true
log "load: oha $RATE req/s for $DURATION, $CONNECTIONS connections, driver $IO_DRIVER"
taskset -c 0 oha --no-tui --output-format json -z "$DURATION" -q "$RATE" -c "$CONNECTIONS" \
    --latency-correction "http://127.0.0.1:$PROXY_PORT/" >"$WORK/oha.json" 2>"$WORK/oha.err" &
OHA=$!
# Three windows of a third of the run each (after 1 s of ramp): CPU with nothing attached,
# then strace, then perf (each tracer distorts what the others measure).
window=$(((secs - 2) / 3))
sleep 1
before=$(cpu_ticks "$RW")
sleep "$window"
after=$(cpu_ticks "$RW")
timeout $((window + 5)) strace -c -f -p "$RW" -o "$WORK/strace.txt" >/dev/null 2>&1 &
STRACE=$!
sleep "$window"
kill -INT "$STRACE" 2>/dev/null || true
wait "$STRACE" 2>/dev/null || true
taskset -c 0 perf record -q -F 4999 -g -p "$RW" -o "$WORK/perf.data" -- sleep "$window" >/dev/null 2>&1
wait "$OHA"

completed=$(jq '[.statusCodeDistribution // {} | to_entries[] | .value] | add // 0' "$WORK/oha.json")
bad=$(jq '[.statusCodeDistribution // {} | to_entries[] | select(.key != "200") | .value] | add // 0' "$WORK/oha.json")
if ((completed == 0)) || ((bad > 0)); then
    log "load failed: $completed completed, $bad not 200"
    exit 1
fi
us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n=$((RATE * window)) 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
p50=$(jq '.latencyPercentiles.p50 * 1e6 | floor' "$WORK/oha.json")
echo "== CPU: ${us} µs per request over ${window}s with nothing attached ($completed requests in all, oha p50 ${p50} µs)"

# Requests in the strace window: the rate times the window (the load is open loop).
reqs=$((RATE * window))
echo "== syscalls per request (strace -c over ${window}s, ~$reqs requests)"
awk -v n="$reqs" '
    /^-+/ { seen++; next }
    seen == 1 && NF >= 5 {
        calls = $4; name = $NF
        if ($5 ~ /^[0-9]+$/) { errs = $5 } else { errs = 0 }
        printf "  %-18s %8.2f per request%s\n", name, calls / n, (errs > 0 ? sprintf("  (%d errors)", errs) : "")
    }' "$WORK/strace.txt" | sort -k2 -nr | head -12

echo "== perf: top symbols (self time, ${window}s at 4999 Hz)"
perf report -i "$WORK/perf.data" --no-children --percent-limit 0.5 --stdio --sort symbol \
    -g none 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30
own=$(perf report -i "$WORK/perf.data" --no-children --stdio --sort symbol -g none 2>/dev/null \
    | awk '/^ +[0-9.]+%/ && /ringway::/ { sub("%", "", $1); s += $1 } END { printf "%.1f", s }')
echo "== Ringway's own code (ringway:: symbols): ${own}% of the worker's samples"
