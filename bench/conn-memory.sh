#!/usr/bin/env bash
# Memory per idle connection: Ringway (one worker) in front of an nginx backend, N idle
# HTTP/1.1 keep-alive connections (each served one request) and M idle h2c connections (each
# served one stream); RSS before, with the connections open, and after they close.
# Goals (Core v2): at most 10 KiB per idle HTTP/1.1 connection at 10,000, at most 32 KiB per
# idle h2c connection at 2,000, and RSS back near where it started after they close. Exits
# non-zero when a goal is missed or a connection was not served.
#
# Env: H1_CONNS (10000) H2_CONNS (2000) BACKEND_PORT (18090) PROXY_PORT (18091) KEEP_DIR (0)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H1_CONNS=${H1_CONNS:-10000}
H2_CONNS=${H2_CONNS:-2000}
BACKEND_PORT=${BACKEND_PORT:-18090}
PROXY_PORT=${PROXY_PORT:-18091}
KEEP_DIR=${KEEP_DIR:-0}
BODY=hello
WORK=$(mktemp -d /tmp/ringway-connmem.XXXXXX)
PIDS=()
log() { printf '[conn-memory] %s\n' "$*" >&2; }
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
PYTHON=${RINGWAY_PYTHON:-/usr/bin/python3}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[[ $(ulimit -n) -ge $((H1_CONNS + 1000)) ]] || { log "fd limit $(ulimit -n) too low for $H1_CONNS connections"; exit 1; }

log "building ringway (release)"
(cd "$ROOT" && cargo build --release -q -p ringway)
RINGWAY=$ROOT/target/release/ringway

write_backend_conf "$WORK/backend.conf"
nginx -c "$WORK/backend.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
write_ringway_conf "$WORK/ringway.yaml"
"$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --no-pin -l warning >"$WORK/ringway.out" 2>&1 &
RW=$!
PIDS+=($RW)
wait_http "$PROXY_PORT" "$RW" || { log "ringway did not start"; cat "$WORK/ringway.out" >&2; exit 1; }
wait_http "$BACKEND_PORT" "${PIDS[0]}" || { log "nginx backend did not start"; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Warm up: one request, so steady-state allocations (pool, first buffers) are in the baseline.
curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/"
sleep 0.5
fail=0
declare -a ROWS
measure() {
    local mode=$1 n=$2 goal_kib=$3 base held after per ok
    base=$(rss_kib "$RW")
    coproc HOLD { "$PYTHON" "$ROOT/bench/conn_hold.py" --port "$PROXY_PORT" --count "$n" --mode "$mode"; }
    read -r word ok <&"${HOLD[0]}"
    [[ $word == READY ]] || { log "$mode client failed"; fail=1; return; }
    sleep 1
    held=$(rss_kib "$RW")
    echo >&"${HOLD[1]}"
    read -r word <&"${HOLD[0]}" || true
    wait "$HOLD_PID" 2>/dev/null || true
    # The worker hands freed memory back on its housekeeping tick once its connections are gone;
    # wait until RSS stops falling (at most 10 s) rather than a fixed time.
    local prev=0 i
    after=$(rss_kib "$RW")
    for i in $(seq 1 20); do
        sleep 0.5
        prev=$after
        after=$(rss_kib "$RW")
        [[ $after -ge $prev ]] && [[ $i -ge 4 ]] && break
    done
    per=$(awk -v a="$held" -v b="$base" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
    ROWS+=("| $mode | $n | $ok | $base | $held | $per | $goal_kib | $after |")
    [[ $ok == "$n" ]] || { log "$mode: only $ok of $n connections were served"; fail=1; }
    awk -v p="$per" -v g="$goal_kib" 'BEGIN { exit !(p <= g) }' || { log "$mode: $per KiB per connection is over the $goal_kib KiB goal"; fail=1; }
    # RSS returns: within 15% of the held growth above the baseline, plus 4 MiB for what a worker
    # keeps by design (its pool of up to 256 lent 16 KiB buffers; the runtime's operation slab).
    awk -v a="$after" -v b="$base" -v h="$held" 'BEGIN { exit !(a - b <= (h - b) * 0.15 + 4096) }' ||
        { log "$mode: RSS stayed at $after KiB after the connections closed (baseline $base)"; fail=1; }
}
measure h1 "$H1_CONNS" 10
measure h2c "$H2_CONNS" 32

echo "Ringway $(git -C "$ROOT" rev-parse --short HEAD), one worker, release build; client: bench/conn_hold.py"
echo
echo "| mode | connections | served | RSS before KiB | RSS held KiB | KiB per connection | goal KiB | RSS after close KiB |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit "$fail"
