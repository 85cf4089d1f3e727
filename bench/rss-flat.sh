#!/usr/bin/env bash
# Memory stays flat under steady load with nobody reading /stats.
#
# Runs release Ringway (one worker on CPU 1) in front of an nginx backend, with an admin listener
# that nobody scrapes and an access log, drives RATE req/s for DURATION seconds with
# ringway-loadgen (backend and load generator on CPU 0, as in proxy-compare.sh), samples the
# proxy's VmRSS from /proc/<pid>/status every INTERVAL seconds and prints a table. Exits non-zero
# when RSS after the warm-up (the first WARMUP seconds: buffer pools, pooled upstream connections
# and allocator arenas settle) grows by more than MAX_GROWTH_KIB. This is what caught the
# histogram hand-off that grew ~0.2 MB/s per worker per histogram while nobody read /stats.
#
# Env: RATE (3000) DURATION (60) INTERVAL (5) WARMUP (10) MAX_GROWTH_KIB (5120)
#      CONNECTIONS (32) BACKEND_PORT (18090) PROXY_PORT (18091) ADMIN_PORT (18092)
#      SKIP_BUILD=1 (use the existing release binaries) KEEP_DIR=1 (keep configs and logs)
set -euo pipefail

RATE=${RATE:-3000}
DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-10}
MAX_GROWTH_KIB=${MAX_GROWTH_KIB:-5120}
CONNECTIONS=${CONNECTIONS:-32}
BACKEND_PORT=${BACKEND_PORT:-18090}
PROXY_PORT=${PROXY_PORT:-18091}
ADMIN_PORT=${ADMIN_PORT:-18092}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGWAY=$ROOT/target/release/ringway
LOADGEN=$ROOT/target/release/ringway-loadgen
WORK=$(mktemp -d /tmp/rss-flat.XXXXXX)
BODY=$(printf 'x%.0s' $(seq 1 63))

PIDS=()

log() { printf '[rss-flat] %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringway and ringway-loadgen (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway -p ringway-loadgen)
fi
[[ -x $RINGWAY && -x $LOADGEN ]] || { log "missing $RINGWAY or $LOADGEN"; exit 2; }

write_backend_conf "$WORK/backend.conf"
cat >"$WORK/ringway.yaml" <<EOF
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT }
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: { address: 127.0.0.1, port_value: $PROXY_PORT }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $WORK/access.log
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: $BACKEND_PORT }
EOF

taskset -c 0 nginx -c "$WORK/backend.conf" -e "$WORK/backend-error.log" >"$WORK/backend.out" 2>&1 &
PIDS+=($!)
wait_http "$BACKEND_PORT" "${PIDS[0]}" || { log "backend did not start"; exit 2; }

taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 -l warning >"$WORK/ringway.out" 2>&1 &
RW=$!
PIDS+=("$RW")
wait_http "$PROXY_PORT" "$RW" || { log "ringway did not start (see $WORK/ringway.out)"; tail -n 5 "$WORK/ringway.out" >&2; exit 2; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

log "$RATE req/s for ${DURATION}s, nobody reading /stats; RSS every ${INTERVAL}s"
taskset -c 0 "$LOADGEN" --rate "$RATE" --duration "${DURATION}s" --warmup 0s \
    --connections "$CONNECTIONS" --threads 1 --cpu-set 0 --json "$WORK/load.json" \
    "http://127.0.0.1:$PROXY_PORT/" >"$WORK/load.txt" 2>&1 &
LG=$!
PIDS+=("$LG")

printf '%8s  %10s  %12s\n' "t (s)" "RSS (KiB)" "vs warm (KiB)"
base=""
max_after=0
t=0
while ((t <= DURATION)); do
    kill -0 "$RW" 2>/dev/null || { log "ringway exited (see $WORK/ringway.out)"; exit 2; }
    rss=$(rss_kib "$RW")
    if ((t >= WARMUP)) && [[ -z $base ]]; then base=$rss; fi
    if [[ -n $base ]]; then
        delta=$((rss - base))
        ((rss > max_after)) && max_after=$rss
        printf '%8d  %10d  %+12d\n' "$t" "$rss" "$delta"
    else
        printf '%8d  %10d  %12s\n' "$t" "$rss" "(warm-up)"
    fi
    ((t + INTERVAL > DURATION)) && break
    sleep "$INTERVAL"
    t=$((t + INTERVAL))
done
wait "$LG" || true

completed=$(jq -r '.completed' "$WORK/load.json" 2>/dev/null || echo "?")
errors=$(jq -r '.errors.total' "$WORK/load.json" 2>/dev/null || echo "?")
growth=$((max_after - base))
log "requests completed: $completed, errors: $errors, access log lines: $(wc -l <"$WORK/access.log")"
log "RSS after warm-up: $base KiB; highest later: $max_after KiB; growth $growth KiB (bound $MAX_GROWTH_KIB KiB)"
if ((growth > MAX_GROWTH_KIB)); then
    log "FAIL: RSS grew by more than $MAX_GROWTH_KIB KiB with nobody reading /stats"
    exit 1
fi
log "OK: RSS flat within $MAX_GROWTH_KIB KiB"
