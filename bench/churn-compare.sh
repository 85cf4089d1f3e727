#!/usr/bin/env bash
# Side-by-side churn run: Ringway (admin API) vs nginx (reload) vs HAProxy (runtime API), same
# open-loop rate, same upstream fleet, same churn schedule. Prints steady-state and churn-phase
# tail latency and errors per proxy (from each run's ringway-loadgen --json).
#
# Method (see bench/README.md): one `ringway-loadgen upstream` fleet of ENDPOINTS ports with a
# control port; for each proxy, `ringway-loadgen --rate RATE --duration DURATION --churn-every
# CHURN_EVERY --churn-mode graceful` takes one endpoint out per period (remove from the proxy,
# wait --churn-drain, stop it; later start it and add it back). Only the membership lever
# differs per proxy:
#   ringway  --admin http://127.0.0.1:ADMIN --churn-cluster fleet (POST /clusters/fleet/endpoints)
#   nginx    --churn-cmd: rewrite the upstream block without/with CHURN_ENDPOINT, `nginx -s reload`
#   haproxy  --churn-cmd: `set server be/pPORT state maint|ready` on the admin stats socket (socat)
# The proxy runs alone on CPU 1 (one worker); the fleet and the load generator share CPU 0.
#
# Env: RATE (2000) DURATION (30s) WARMUP (2s) CONNECTIONS (64) CHURN_EVERY (2s) CHURN_DRAIN
#      (500ms) FLEET_PORTS (19101-19106) CONTROL_PORT (19100) PROXY_PORT (19081) ADMIN_PORT
#      (19901) PROXIES ("ringway nginx haproxy") SKIP_BUILD=1 (use existing release binaries)
#      KEEP_DIR=1 (keep configs, logs, per-run JSON and SVG reports)
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
CHURN_EVERY=${CHURN_EVERY:-2s}
CHURN_DRAIN=${CHURN_DRAIN:-500ms}
FLEET_PORTS=${FLEET_PORTS:-19101-19106}
CONTROL_PORT=${CONTROL_PORT:-19100}
PROXY_PORT=${PROXY_PORT:-19081}
ADMIN_PORT=${ADMIN_PORT:-19901}
PROXIES=${PROXIES:-"ringway nginx haproxy"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGWAY=$ROOT/target/release/ringway
LOADGEN=$ROOT/target/release/ringway-loadgen
WORK=$(mktemp -d /tmp/churn-compare.XXXXXX)
FIRST_PORT=${FLEET_PORTS%-*}
LAST_PORT=${FLEET_PORTS#*-}

PIDS=()

log() { printf '[churn-compare] %s\n' "$*" >&2; }
die() {
    printf '\n!!! churn-compare: %s\n\n' "$*" >&2
    exit 1
}

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

need_tools() {
    local tool
    for tool in nginx haproxy taskset jq curl awk ss; do
        command -v "$tool" >/dev/null || die "missing $tool"
    done
    if [[ $PROXIES == *haproxy* ]] && ! command -v socat >/dev/null; then
        log "socat missing (HAProxy runtime API); installing with apt-get"
        if ! { apt-get install -y socat >&2 || { apt-get update >&2 && apt-get install -y socat >&2; }; }; then
            die "socat is needed for HAProxy's runtime API and apt-get could not install it"
        fi
        command -v socat >/dev/null || die "socat still missing after apt-get install"
    fi
    [[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (fleet+loadgen on 0, proxy on 1)"
}

build() {
    [[ $SKIP_BUILD == 1 ]] && return 0
    log "cargo build --release --workspace"
    (cd "$ROOT" && cargo build --release -q --workspace)
}

ports() { seq "$FIRST_PORT" "$LAST_PORT"; }

write_ringway_config() {
    {
        cat <<EOF
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
                route: { cluster: fleet }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: fleet
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: fleet
      endpoints:
      - lb_endpoints:
EOF
        for p in $(ports); do
            printf '        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }\n' "$p"
        done
        cat <<EOF
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT }
EOF
    } >"$WORK/ringway.yaml"
}

# nginx includes upstream.conf, which the churn script regenerates from the set of removed
# endpoints (nginx-down, one ip:port a line) before each reload.
write_nginx_config() {
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
    include $WORK/upstream.conf;
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://fleet;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    : >"$WORK/nginx-down"
    cat >"$WORK/nginx-churn.sh" <<EOF
#!/bin/sh
# CHURN_EVENT=remove|add CHURN_ENDPOINT=ip:port: update the removed set, rewrite the upstream
# block from it, validate and reload (old workers finish their in-flight requests).
set -eu
down=$WORK/nginx-down
case "\$CHURN_EVENT" in
    remove) echo "\$CHURN_ENDPOINT" >>"\$down" ;;
    add) grep -vxF "\$CHURN_ENDPOINT" "\$down" >"\$down.tmp" || true; mv "\$down.tmp" "\$down" ;;
    *) echo "unknown CHURN_EVENT \$CHURN_EVENT" >&2; exit 2 ;;
esac
{
    echo "upstream fleet {"
    for p in \$(seq $FIRST_PORT $LAST_PORT); do
        grep -qxF "127.0.0.1:\$p" "\$down" || echo "    server 127.0.0.1:\$p;"
    done
    echo "    keepalive 64;"
    echo "    keepalive_requests 10000000;"
    echo "}"
} >$WORK/upstream.conf.tmp
mv $WORK/upstream.conf.tmp $WORK/upstream.conf
nginx -q -t -c $WORK/nginx.conf -e $WORK/nginx-error.log
nginx -s reload -c $WORK/nginx.conf -e $WORK/nginx-error.log
EOF
    chmod +x "$WORK/nginx-churn.sh"
    # Initial upstream block: every endpoint (an "add" of an endpoint that is not down is a no-op
    # on the set, so this just writes the file; the reload is skipped since nginx is not up).
    {
        echo "upstream fleet {"
        for p in $(ports); do echo "    server 127.0.0.1:$p;"; done
        echo "    keepalive 64;"
        echo "    keepalive_requests 10000000;"
        echo "}"
    } >"$WORK/upstream.conf"
}

# HAProxy: one server per fleet port, named pPORT, and an admin-level stats socket.
write_haproxy_config() {
    {
        cat <<EOF
global
    nbthread 1
    cpu-map 1/1 1
    maxconn 4096
    stats socket $WORK/haproxy.sock mode 600 level admin
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
    balance roundrobin
EOF
        for p in $(ports); do echo "    server p$p 127.0.0.1:$p"; done
    } >"$WORK/haproxy.cfg"
    cat >"$WORK/haproxy-churn.sh" <<EOF
#!/bin/sh
# CHURN_EVENT=remove|add CHURN_ENDPOINT=ip:port: put the server in maintenance (no new
# requests, in-flight ones finish) or back to ready, through the runtime API.
set -eu
case "\$CHURN_EVENT" in
    remove) state=maint ;;
    add) state=ready ;;
    *) echo "unknown CHURN_EVENT \$CHURN_EVENT" >&2; exit 2 ;;
esac
port=\${CHURN_ENDPOINT##*:}
out=\$(echo "set server be/p\$port state \$state" | socat -t 2 stdio unix-connect:$WORK/haproxy.sock)
# The runtime API answers an empty line on success and an error text otherwise.
if [ -n "\$(printf '%s' "\$out" | tr -d '[:space:]')" ]; then
    echo "haproxy: \$out" >&2
    exit 1
fi
EOF
    chmod +x "$WORK/haproxy-churn.sh"
}

STARTED_PID=""
start_proxy() {
    STARTED_PID=""
    case $1 in
        nginx) taskset -c 1 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.out" 2>&1 & ;;
        haproxy) taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 & ;;
        ringway)
            [[ -x $RINGWAY ]] || return 1
            taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 -l warning \
                >"$WORK/ringway.out" 2>&1 &
            ;;
        *) return 1 ;;
    esac
    STARTED_PID=$!
}

churn_args() {
    case $1 in
        ringway) echo "--admin http://127.0.0.1:$ADMIN_PORT --churn-cluster fleet" ;;
        nginx) echo "--churn-cmd $WORK/nginx-churn.sh" ;;
        haproxy) echo "--churn-cmd $WORK/haproxy-churn.sh" ;;
    esac
}

# One proxy: start it, one churn run, stop it. Appends a TSV row to results.tsv.
run_one() {
    local name=$1 pid json rc=0
    start_proxy "$name" && [[ -n $STARTED_PID ]] || { log "$name: cannot start"; return 1; }
    pid=$STARTED_PID
    PIDS+=("$pid")
    if ! wait_http "$PROXY_PORT" "$pid"; then
        log "$name: did not answer 200 on :$PROXY_PORT"
        tail -n 5 "$WORK/$name.out" >&2 2>/dev/null || true
        stop "$pid"
        return 1
    fi
    json=$WORK/$name.json
    log "$name: $RATE req/s for $DURATION (+$WARMUP warmup), graceful churn every $CHURN_EVERY"
    # shellcheck disable=SC2046 # churn_args is a word list on purpose (paths have no spaces)
    taskset -c 0 "$LOADGEN" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
        --connections "$CONNECTIONS" --threads 1 --cpu-set 0 \
        --json "$json" --report "$WORK/$name.svg" "http://127.0.0.1:$PROXY_PORT/" \
        --churn-every "$CHURN_EVERY" --churn-mode graceful --churn-drain "$CHURN_DRAIN" \
        --churn-ports "$FLEET_PORTS" --fleet-control "http://127.0.0.1:$CONTROL_PORT" \
        $(churn_args "$name") >"$WORK/$name.txt" 2>&1 || rc=$?
    stop "$pid"
    if [[ ! -s $json ]]; then
        log "$name: loadgen failed (exit $rc): $(tail -n 5 "$WORK/$name.txt")"
        return 1
    fi
    [[ $rc == 0 ]] || log "$name: loadgen exit $rc: $(grep -m3 'FAILED' "$WORK/$name.txt" || tail -n 3 "$WORK/$name.txt")"
    jq -r --arg p "$name" '[$p,
        .phases.steady.p99_ms, .phases.steady.p99_9_ms, .phases.churn.p99_ms, .phases.churn.p99_9_ms,
        .latency_ms.max, .errors.total, .phases.steady.errors, .phases.churn.errors,
        .churn.actions, .churn.failed_actions, .completed,
        ([.errors | to_entries[] | select(.key != "total" and .key != "status" and (.value|type) == "number" and .value > 0) | "\(.key)=\(.value)"] | join(","))] | @tsv' \
        "$json" >>"$WORK/results.tsv"
    log "$name: $(tail -n 1 "$WORK/results.tsv" | tr '\t' ' ')"
}

print_table() {
    echo
    echo "graceful churn every $CHURN_EVERY (drain $CHURN_DRAIN) over ${FLEET_PORTS}, $RATE req/s open loop, $CONNECTIONS connections, $DURATION; proxy on CPU 1, fleet+loadgen on CPU 0; latency in ms"
    awk -F'\t' -v proxies="$PROXIES" '
        { for (i = 2; i <= NF; i++) v[$1, i] = $i; seen[$1] = 1 }
        END {
            fmt = "%-8s | %10s | %12s | %9s | %11s | %8s | %6s | %-19s | %s\n"
            printf fmt, "proxy", "steady p99", "steady p99.9", "churn p99", "churn p99.9", "max", "errors", "errors steady/churn", "churn actions (failed)"
            print "---------|------------|--------------|-----------|-------------|----------|--------|---------------------|-----------------------"
            n = split(proxies, order, " ")
            for (k = 1; k <= n; k++) {
                p = order[k]
                if (!(p in seen)) { printf fmt, p, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"; continue }
                kinds = (v[p, 13] != "") ? " " v[p, 13] : ""
                printf fmt, p, v[p, 2], v[p, 3], v[p, 4], v[p, 5], v[p, 6], v[p, 7], v[p, 8] "/" v[p, 9] kinds, v[p, 10] " (" v[p, 11] ")"
            }
        }' "$WORK/results.tsv"
}

main() {
    need_tools
    build
    [[ -x $LOADGEN ]] || die "no $LOADGEN (build it or drop SKIP_BUILD)"
    write_ringway_config
    write_nginx_config
    write_haproxy_config
    : >"$WORK/results.tsv"
    log "fleet: ringway-loadgen upstream --ports $FLEET_PORTS --control-port $CONTROL_PORT (CPU 0)"
    taskset -c 0 "$LOADGEN" upstream --ports "$FLEET_PORTS" --response-bytes 64 \
        --control-port "$CONTROL_PORT" >"$WORK/fleet.out" 2>&1 &
    local fleet=$! p
    PIDS+=("$fleet")
    wait_http "$FIRST_PORT" "$fleet" || die "fleet did not start: $(cat "$WORK/fleet.out")"
    for p in $PROXIES; do
        run_one "$p" || log "$p: no result"
    done
    print_table
}

main "$@"
