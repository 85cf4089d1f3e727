#!/usr/bin/env bash
# Cross-check ringway-loadgen against established tools on the same nginx target. Not a test:
# it prints a table and says PASS/DIFF per row (exit 0 either way unless a tool cannot run).
#
#   1. closed loop, max throughput: ringway-loadgen --closed vs wrk, same connections and
#      duration; requests/s should agree within +-10%.
#   2. open loop at a fixed rate: ringway-loadgen --rate R vs `oha -q R --latency-correction`
#      (both measure from the scheduled time, i.e. correct for coordinated omission); p50 and
#      p99 should agree within +-20%.
#
# The open-loop pair runs twice: against nginx (~0.1 ms answers) and against
# `ringway-loadgen upstream --delay DELAY` (a fixed server latency both tools should see).
#
# Env: RATE (2000) DURATION (10s) CONNECTIONS (64) PORT (18090) DELAY (2ms) DELAY_PORT (18091)
#      SKIP_BUILD=1 (use the existing target/release/ringway-loadgen). Needs nginx, wrk, jq,
#      curl; oha is installed with `cargo install --locked oha` when missing (a loud message says so if that fails, and the open-loop
#      rows are skipped).
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18090}
DELAY=${DELAY:-2ms}
DELAY_PORT=${DELAY_PORT:-18091}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOADGEN=$ROOT/target/release/ringway-loadgen
WORK=$(mktemp -d /tmp/loadgen-crosscheck.XXXXXX)
URL=http://127.0.0.1:$PORT/
NGINX_PID=
UPSTREAM_PID=

log() { printf '[crosscheck] %s\n' "$*" >&2; }
loud() {
    printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' "$*" >&2
}

cleanup() {
    if [[ -n $NGINX_PID ]]; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n $UPSTREAM_PID ]]; then
        kill "$UPSTREAM_PID" 2>/dev/null || true
        wait "$UPSTREAM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]] || {
        loud "$1 is missing (tests/run installs it)"
        exit 1
    }
}
need wrk
need jq
need curl
need nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringway-loadgen (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway-loadgen)
fi

# Before looking for oha: `cargo install` puts it in ~/.cargo/bin, which may not be on PATH.
export PATH=$HOME/.cargo/bin:$PATH
HAVE_OHA=1
if ! command -v oha >/dev/null 2>&1; then
    # --locked: oha's own lockfile; without it cargo picks the newest dependencies, which may
    # need a newer rustc than the one installed (easy-cast 0.5.5 needs 1.96).
    log "oha not found; trying cargo install --locked oha (a few minutes)"
    if ! cargo install --locked oha >&2; then
        loud "could not install oha (cargo install --locked oha failed): open-loop cross-check SKIPPED"
        HAVE_OHA=0
    fi
fi

# nginx: one worker, fixed 64-byte 200.
BODY=$(printf 'x%.0s' $(seq 1 64))
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 200 '$BODY'; }
    }
}
CONF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$URL" 2>/dev/null && break
    sleep 0.05
done
curl -fsS -o /dev/null "$URL" || { loud "nginx did not start on $PORT"; exit 1; }

# Closed loop: wrk vs loadgen.
log "wrk -t1 -c$CONNECTIONS -d$DURATION"
WRK_RPS=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$URL" | awk '/Requests\/sec/ {print $2}')
log "ringway-loadgen --closed -c$CONNECTIONS --duration $DURATION"
"$LOADGEN" --closed -c "$CONNECTIONS" -t 1 --warmup 1s --duration "$DURATION" \
    --json "$WORK/closed.json" "$URL" >/dev/null
LG_RPS=$(jq -r .achieved_rate "$WORK/closed.json")

# Open loop: oha with latency correction vs loadgen, on target URL $1; prints "lg_p50 lg_p99
# oha_p50 oha_p99" (ms; n/a without oha).
open_loop() {
    local url=$1 tag=$2 lg50 lg99 oha50=n/a oha99=n/a
    log "ringway-loadgen --rate $RATE -c$CONNECTIONS --duration $DURATION $url"
    "$LOADGEN" --rate "$RATE" -c "$CONNECTIONS" -t 1 --warmup 1s --duration "$DURATION" \
        --json "$WORK/open-$tag.json" "$url" >/dev/null
    lg50=$(jq -r .latency_ms.p50 "$WORK/open-$tag.json")
    lg99=$(jq -r .latency_ms.p99 "$WORK/open-$tag.json")
    if [[ $HAVE_OHA == 1 ]]; then
        log "oha -q $RATE --latency-correction -c$CONNECTIONS -z $DURATION $url"
        # Newer oha takes --output-format json, older ones --json.
        if ! oha -q "$RATE" --latency-correction -c "$CONNECTIONS" -z "$DURATION" --no-tui \
            --output-format json "$url" >"$WORK/oha-$tag.json" 2>/dev/null; then
            oha -q "$RATE" --latency-correction -c "$CONNECTIONS" -z "$DURATION" --no-tui \
                --json "$url" >"$WORK/oha-$tag.json"
        fi
        oha50=$(jq -r '.latencyPercentiles.p50 * 1e6 | round / 1000' "$WORK/oha-$tag.json")
        oha99=$(jq -r '.latencyPercentiles.p99 * 1e6 | round / 1000' "$WORK/oha-$tag.json")
    fi
    echo "$lg50 $lg99 $oha50 $oha99"
}

read -r LG_P50 LG_P99 OHA_P50 OHA_P99 < <(open_loop "$URL" nginx)

# The same against a server that answers after DELAY: nginx answers in ~0.1 ms, where each
# generator's own overhead (oha: hyper on a multi-threaded tokio runtime) is most of what is
# measured; with a fixed server delay both should see the server's latency.
"$LOADGEN" upstream --ports "$DELAY_PORT" --delay "$DELAY" >"$WORK/upstream.out" 2>&1 &
UPSTREAM_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$DELAY_PORT/" 2>/dev/null && break
    sleep 0.05
done
curl -fsS -o /dev/null "http://127.0.0.1:$DELAY_PORT/" || { loud "ringway-loadgen upstream did not start on $DELAY_PORT"; exit 1; }
read -r LGD_P50 LGD_P99 OHAD_P50 OHAD_P99 < <(open_loop "http://127.0.0.1:$DELAY_PORT/" delay)

# verdict VALUE REFERENCE TOLERANCE -> "+x.x% PASS|DIFF"
verdict() {
    awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN {
        if (b == "n/a" || a == "n/a" || b + 0 == 0) { print "n/a"; exit }
        d = (a - b) / b * 100; v = (d <= tol && d >= -tol) ? "PASS" : "DIFF";
        printf "%+.1f%% %s (+-%d%%)", d, v, tol }'
}

printf '\n%-28s | %14s | %14s | %s\n' "metric" "ringway-loadgen" "reference" "difference"
printf '%-28s-+-%14s-+-%14s-+-%s\n' "----------------------------" "--------------" "--------------" "----------------"
printf '%-28s | %14s | %14s | %s\n' "closed req/s (vs wrk)" "$LG_RPS" "$WRK_RPS" "$(verdict "$LG_RPS" "$WRK_RPS" 10)"
printf '%-28s | %14s | %14s | %s\n' "open p50 ms @$RATE (vs oha)" "$LG_P50" "$OHA_P50" "$(verdict "$LG_P50" "$OHA_P50" 20)"
printf '%-28s | %14s | %14s | %s\n' "open p99 ms @$RATE (vs oha)" "$LG_P99" "$OHA_P99" "$(verdict "$LG_P99" "$OHA_P99" 20)"
printf '%-28s | %14s | %14s | %s\n' "open p50 ms, $DELAY server" "$LGD_P50" "$OHAD_P50" "$(verdict "$LGD_P50" "$OHAD_P50" 20)"
printf '%-28s | %14s | %14s | %s\n' "open p99 ms, $DELAY server" "$LGD_P99" "$OHAD_P99" "$(verdict "$LGD_P99" "$OHAD_P99" 20)"
[[ $HAVE_OHA == 1 ]] || loud "oha unavailable: open-loop rows are n/a"
