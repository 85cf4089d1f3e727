#!/usr/bin/env bash
# Side-by-side proxy benchmark: Ringway vs nginx vs HAProxy vs direct (no proxy).
#
# Method (see bench/README.md): a fixed open-loop rate through each proxy on a 2-core box, the
# backend and the load generator pinned to CPU 0, the proxy alone on CPU 1. The headline number
# is the proxy's CPU time per request (utime+stime from /proc, all threads/processes), because
# at a fixed rate every proxy does the same work and the one that burns less CPU for it wins;
# latency percentiles come from ringway-loadgen (latency from scheduled time, no coordinated
# omission). Every configuration runs RUNS times; the table shows medians.
#
# Env: RATE (8000) DURATION (20s) RUNS (3) CONNECTIONS (64) WARMUP (2s, a separate unrecorded
#      run) BACKEND_PORT (18080) PROXY_PORT (18081) PROXIES ("direct nginx haproxy ringway")
#      SKIP_BUILD=1 (use existing release binaries) REQUIRE_ALL=1 (fail if a proxy cannot start)
#      KEEP_DIR=1 (keep configs, logs and per-run JSON)
set -euo pipefail

RATE=${RATE:-8000}
DURATION=${DURATION:-20s}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-2s}
BACKEND_PORT=${BACKEND_PORT:-18080}
PROXY_PORT=${PROXY_PORT:-18081}
PROXIES=${PROXIES:-"direct nginx haproxy ringway"}
REQUIRE_ALL=${REQUIRE_ALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGWAY=$ROOT/target/release/ringway
LOADGEN=$ROOT/target/release/ringway-loadgen
WORK=$(mktemp -d /tmp/proxy-compare.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
# 64-byte body: small enough that the proxies' per-request overhead dominates.
BODY=$(printf 'x%.0s' $(seq 1 63))

PIDS=()

log() { printf '[proxy-compare] %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

build() {
    [[ $SKIP_BUILD == 1 ]] && return 0
    log "building ringway-loadgen (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway-loadgen)
    log "building ringway (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway) || log "ringway build failed: its rows will be n/a"
}

write_configs() {
    write_backend_conf "$WORK/backend.conf"
    cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity 10;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    cpu-map 1/1 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$PROXY_PORT
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND_PORT
EOF
    cat >"$WORK/ringway.yaml" <<EOF
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
}

# Start proxy $1 in the background pinned to CPU 1; sets STARTED_PID. Not called in a
# subshell, so the proxy stays our child and can be waited for.
STARTED_PID=""
start_proxy() {
    STARTED_PID=""
    case $1 in
        nginx) taskset -c 1 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.out" 2>&1 & ;;
        haproxy) taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 & ;;
        ringway)
            [[ -x $RINGWAY ]] || return 1
            taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 >"$WORK/ringway.out" 2>&1 &
            ;;
        *) return 1 ;;
    esac
    STARTED_PID=$!
}

loadgen() {
    local port=$1 duration=$2 json=$3
    taskset -c 0 "$LOADGEN" --rate "$RATE" --duration "$duration" --warmup 0s \
        --connections "$CONNECTIONS" --threads 1 --cpu-set 0 --json "$json" \
        "http://127.0.0.1:$port/" >"$json.txt" 2>&1
}

# One proxy: RUNS measured runs; appends "proxy run cpu_us_per_req p50 p99 p999 errors completed".
bench_one() {
    local name=$1 port=$PROXY_PORT pid="" run json t0 t1 cpu
    if [[ $name == direct ]]; then
        port=$BACKEND_PORT
    else
        if ! start_proxy "$name" || [[ -z $STARTED_PID ]]; then
            log "$name: cannot start"
            return 1
        fi
        pid=$STARTED_PID
        PIDS+=("$pid")
        if ! wait_http "$PROXY_PORT" "$pid"; then
            log "$name: did not answer 200 on :$PROXY_PORT (see $WORK/$name.out)"
            tail -n 5 "$WORK/$name.out" >&2 2>/dev/null || true
            stop "$pid"
            return 1
        fi
    fi
    log "$name: warmup $WARMUP"
    loadgen "$port" "$WARMUP" "$WORK/$name-warmup.json" || true
    for run in $(seq 1 "$RUNS"); do
        json=$WORK/$name-$run.json
        t0=0
        [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
        if ! loadgen "$port" "$DURATION" "$json"; then
            log "$name run $run: loadgen failed: $(tail -n 3 "$json.txt")"
            continue
        fi
        t1=0
        [[ -n $pid ]] && t1=$(cpu_ticks "$pid")
        read -r completed p50 p99 p999 errors < <(jq -r \
            '[.completed, .latency_ms.p50, .latency_ms.p99, .latency_ms["p99.9"], .errors.total] | @tsv' "$json")
        if [[ -n $pid && $completed -gt 0 ]]; then
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
        else
            cpu=nan
        fi
        log "$name run $run: completed $completed  cpu/req ${cpu}us  p50 ${p50}ms  p99 ${p99}ms  p99.9 ${p999}ms  errors $errors"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$run" "$cpu" "$p50" "$p99" "$p999" "$errors" "$completed" >>"$WORK/results.tsv"
    done
    [[ -n $pid ]] && stop "$pid"
    return 0
}

main() {
    for tool in nginx haproxy taskset jq curl awk; do
        command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
    done
    if [[ $(nproc) -lt 2 ]]; then log "needs 2 CPUs (backend+loadgen on 0, proxy on 1)"; exit 1; fi
    build
    write_configs
    : >"$WORK/results.tsv"
    log "backend: nginx on CPU 0, :$BACKEND_PORT, 64-byte body"
    local backend
    taskset -c 0 nginx -c "$WORK/backend.conf" -e "$WORK/backend-error.log" >"$WORK/backend.out" 2>&1 &
    backend=$!
    PIDS+=("$backend")
    wait_http "$BACKEND_PORT" "$backend" || { log "backend did not start: $(cat "$WORK/backend.out")"; exit 1; }
    log "rate $RATE req/s, $CONNECTIONS connections, $DURATION x $RUNS runs"
    local failed=()
    for p in $PROXIES; do
        bench_one "$p" || failed+=("$p")
    done
    print_table
    if [[ $REQUIRE_ALL == 1 && ${#failed[@]} -gt 0 ]]; then
        log "REQUIRE_ALL=1 and these did not run: ${failed[*]}"
        exit 1
    fi
}

# Medians per proxy; CPU ratio against nginx's median.
print_table() {
    echo
    echo "rate $RATE req/s open loop, $CONNECTIONS connections, $DURATION, median of $RUNS runs; proxy on CPU 1, backend+loadgen on CPU 0"
    awk -F'\t' -v proxies="$PROXIES" '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            if (n == 0) return "n/a"
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            if ($3 != "nan") cpu[$1] = cpu[$1] " " $3
            p50[$1] = p50[$1] " " $4; p99[$1] = p99[$1] " " $5; p999[$1] = p999[$1] " " $6
            err[$1] += $7; seen[$1] = 1
        }
        END {
            base = ("nginx" in seen && cpu["nginx"] != "") ? median(cpu["nginx"]) : ""
            printf "%-8s | %12s | %8s | %8s | %9s | %6s | %s\n", "proxy", "us CPU/req", "p50 ms", "p99 ms", "p99.9 ms", "errors", "CPU vs nginx"
            printf "%s\n", "---------|--------------|----------|----------|-----------|--------|-------------"
            n = split(proxies, order, " ")
            for (i = 1; i <= n; i++) {
                p = order[i]
                if (!(p in seen)) {
                    printf "%-8s | %12s | %8s | %8s | %9s | %6s | %s\n", p, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"
                    continue
                }
                c = (cpu[p] != "") ? median(cpu[p]) : "-"
                ratio = (c != "-" && base != "" && base > 0) ? sprintf("%.2fx", c / base) : "-"
                if (c != "-") c = sprintf("%.2f", c)
                printf "%-8s | %12s | %8.3f | %8.3f | %9.3f | %6d | %s\n", p, c, median(p50[p]), median(p99[p]), median(p999[p]), err[p], ratio
            }
        }' "$WORK/results.tsv"
}

main "$@"
