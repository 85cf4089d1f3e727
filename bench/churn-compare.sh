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
# Each proxy runs RUNS times, interleaved (ringway, nginx, haproxy, ringway, ...), so a slow
# patch of the machine hits every proxy alike; the table shows medians and, for the churn p99.9,
# the spread (min-max). Ringway runs with `enable_dispatcher_stats`, and after each run its
# worker's loop figures (loop_duration_us and poll_delay_us p99/max, watchdog misses) are
# printed, so a tail can be told apart from a slow loop. The host's other load is measured per
# run (all CPU time on the machine minus that of the proxy, fleet and load generator, from
# /proc): a run where anything else used more than MAX_FOREIGN_CPU (0.10 CPU) is reported and
# the table is refused (exit 1) unless ALLOW_NOISE=1.
#
# Env: RATE (2000) DURATION (30s) WARMUP (2s) CONNECTIONS (64) CHURN_EVERY (2s) CHURN_DRAIN
#      (500ms) FLEET_PORTS (19101-19106) CONTROL_PORT (19100) PROXY_PORT (19081) ADMIN_PORT
#      (19901) PROXIES ("ringway nginx haproxy") RUNS (5) MAX_FOREIGN_CPU (0.10) ALLOW_NOISE=1
#      MODE (http; https = TLS 1.3 at the edge, as the seed benchmark has it: each proxy
#      terminates TLS with the same ECDSA P-256 certificate, the load generator resumes
#      sessions on reconnect; h2 = HTTP/2 with prior knowledge (h2c) at the edge, STREAMS (10)
#      per connection; upstreams stay plain HTTP/1.1 in every mode)
#      SKIP_BUILD=1 (use existing release binaries) KEEP_DIR=1 (keep configs, logs, per-run JSON
#      and SVG reports)
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
RUNS=${RUNS:-5}
MODE=${MODE:-http}
STREAMS=${STREAMS:-10}
MAX_FOREIGN_CPU=${MAX_FOREIGN_CPU:-0.10}
ALLOW_NOISE=${ALLOW_NOISE:-0}
CLK_TCK=$(getconf CLK_TCK)

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
    case $MODE in
        http | h2) ;;
        https) command -v openssl >/dev/null || die "MODE=https needs openssl" ;;
        *) die "MODE must be http, https or h2, not $MODE" ;;
    esac
}

# The edge certificate for MODE=https (one for every proxy; HAProxy wants key and chain in one
# file).
write_certificate() {
    [[ $MODE == https ]] || return 0
    # A CA and a leaf signed by it (webpki refuses a self-signed CA certificate as the leaf).
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=churn-compare-ca -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -subj /CN=localhost -keyout "$WORK/edge-key.pem" -out "$WORK/edge.csr" &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$WORK/edge.ext" &&
            openssl x509 -req -in "$WORK/edge.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
                -CAcreateserial -days 2 -extfile "$WORK/edge.ext" -out "$WORK/edge-crt.pem"
    } >/dev/null 2>&1 || die "openssl could not make the edge certificate"
    cat "$WORK/edge-crt.pem" "$WORK/edge-key.pem" >"$WORK/edge.pem"
}

# The URL the load generator sends to, and its TLS arguments.
target_url() {
    case $MODE in
        http) echo "http://127.0.0.1:$PROXY_PORT/" ;;
        https) echo "https://localhost:$PROXY_PORT/" ;;
    esac
}
# wait_http (bench/lib.sh), in the edge's scheme.
wait_proxy() {
    local port=$1 pid=$2 i
    local how=(-k "https://127.0.0.1:$port/")
    case $MODE in
        http) wait_http "$port" "$pid"; return ;;
        h2) how=(--http2-prior-knowledge "http://127.0.0.1:$port/") ;;
    esac
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "${how[@]}" || true) == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}
tls_args() {
    case $MODE in
        https) echo "--cacert $WORK/ca.pem" ;;
        h2) echo "--http2 --streams $STREAMS" ;;
    esac
}

build() {
    [[ $SKIP_BUILD == 1 ]] && return 0
    log "cargo build --release --workspace"
    (cd "$ROOT" && cargo build --release -q --workspace)
}

ports() { seq "$FIRST_PORT" "$LAST_PORT"; }

# The `- ` item's first key: Envoy's DownstreamTlsContext for MODE=https, else a no-op key.
ringway_transport_socket() {
    if [[ $MODE != https ]]; then
        echo "name: plain"
        return
    fi
    cat <<EOF
transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: $WORK/edge-crt.pem }
              private_key: { filename: $WORK/edge-key.pem }
EOF
}

write_ringway_config() {
    {
        cat <<EOF
enable_dispatcher_stats: true
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: { address: 127.0.0.1, port_value: $PROXY_PORT }
    filter_chains:
    - $(ringway_transport_socket)
      filters:
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
        listen 127.0.0.1:$PROXY_PORT backlog=4096$([[ $MODE == https ]] && echo " ssl")$([[ $MODE == h2 ]] && echo " http2");
$([[ $MODE == https ]] && printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n        ssl_protocols TLSv1.3;\n        ssl_session_cache shared:SSL:10m;\n' "$WORK/edge-crt.pem" "$WORK/edge-key.pem")
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
    bind 127.0.0.1:$PROXY_PORT$([[ $MODE == https ]] && echo " ssl crt $WORK/edge.pem ssl-min-ver TLSv1.3")$([[ $MODE == h2 ]] && echo " proto h2")
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
        ringway) echo "--admin http://127.0.0.1:$ADMIN_PORT --churn-cluster fleet --loop-stats http://127.0.0.1:$ADMIN_PORT" ;;
        nginx) echo "--churn-cmd $WORK/nginx-churn.sh" ;;
        haproxy) echo "--churn-cmd $WORK/haproxy-churn.sh" ;;
    esac
}

# Busy CPU ticks of the whole machine (user+nice+system+irq+softirq+steal).
host_busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }

# CPU ticks of the given processes and their live children, including children they reaped
# (nginx's workers replaced by a reload, the churn commands the load generator ran).
tree_ticks() {
    local p c total=0
    for p in "$@"; do
        # This shell: itself and what it reaped (the load generator); its live children (the
        # proxy, the fleet) are named on their own.
        local kids=""
        [[ $p == "$$" ]] || kids=$(pgrep -P "$p" 2>/dev/null || true)
        for c in "$p" $kids; do
            [[ -r /proc/$c/stat ]] || continue
            total=$((total + $(awk '{sub(/^.*\) /, ""); print $12+$13+$14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
        done
    done
    echo "$total"
}

# The proxy's loop figures after a Ringway run, from its admin: "loop p99/max us, poll delay
# p99/max us, watchdog misses".
ringway_loop_stats() {
    local body
    body=$(curl -s "http://127.0.0.1:$ADMIN_PORT/stats" 2>/dev/null) || { echo "n/a"; return; }
    awk '
        function q(line, label,   re, m) {
            re = label "\\(nan,[^)]*\\)"
            if (match(line, re)) { m = substr(line, RSTART, RLENGTH); sub(/^.*,/, "", m); sub(/\)$/, "", m); return m }
            return "?"
        }
        /dispatcher.loop_duration_us:/ { loop = q($0, "P99") "/" q($0, "P100") }
        /dispatcher.poll_delay_us:/ { poll = q($0, "P99") "/" q($0, "P100") }
        /^workers.watchdog_miss:/ { miss = $2 }
        /^workers.watchdog_mega_miss:/ { mega = $2 }
        END { printf "loop_duration_us p99/max %s, poll_delay_us p99/max %s, watchdog miss %s mega %s\n", loop, poll, miss, mega }
    ' <<<"$body"
}

# One proxy: start it, one churn run, stop it. Appends a TSV row to results.tsv.
run_one() {
    local name=$1 run=$2 pid json rc=0 host0 ours0 host1 ours1 lp
    start_proxy "$name" && [[ -n $STARTED_PID ]] || { log "$name: cannot start"; return 1; }
    pid=$STARTED_PID
    PIDS+=("$pid")
    if ! wait_proxy "$PROXY_PORT" "$pid"; then
        log "$name: did not answer 200 on :$PROXY_PORT"
        tail -n 5 "$WORK/$name.out" >&2 2>/dev/null || true
        stop "$pid"
        return 1
    fi
    json=$WORK/$name-$run.json
    log "$name run $run/$RUNS: $RATE req/s for $DURATION (+$WARMUP warmup), graceful churn every $CHURN_EVERY"
    local t0 t1
    t0=$(date +%s.%N)
    host0=$(host_busy_ticks)
    ours0=$(tree_ticks "$pid" "$FLEET_PID" $$)
    # shellcheck disable=SC2046 # churn_args is a word list on purpose (paths have no spaces)
    taskset -c 0 "$LOADGEN" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
        --connections "$CONNECTIONS" --threads 1 --cpu-set 0 \
        --json "$json" --report "$WORK/$name-$run.svg" "$(target_url)" $(tls_args) \
        --churn-every "$CHURN_EVERY" --churn-mode graceful --churn-drain "$CHURN_DRAIN" \
        --churn-ports "$FLEET_PORTS" --fleet-control "http://127.0.0.1:$CONTROL_PORT" \
        $(churn_args "$name") >"$WORK/$name.txt" 2>&1 || rc=$?
    host1=$(host_busy_ticks)
    t1=$(date +%s.%N)
    # The load generator has exited by now: its ticks are in this shell's reaped children.
    ours1=$(tree_ticks "$pid" "$FLEET_PID" $$)
    local secs foreign
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    foreign=$(awk -v h=$((host1 - host0)) -v o=$((ours1 - ours0)) -v t="$CLK_TCK" -v d="${secs:-0}" \
        'BEGIN { f = (h - o) / t; if (d > 0) printf "%.3f", f / d; else print "nan" }')
    echo -e "$name\t$run\t$foreign" >>"$WORK/load.tsv"
    if [[ $name == ringway ]]; then
        lp=$(ringway_loop_stats)
        log "ringway run $run loop: $lp"
        echo -e "$run\t$lp" >>"$WORK/loops.tsv"
    fi
    stop "$pid"
    if [[ ! -s $json ]]; then
        log "$name: loadgen failed (exit $rc): $(tail -n 5 "$WORK/$name.txt")"
        return 1
    fi
    [[ $rc == 0 ]] || log "$name: loadgen exit $rc: $(grep -m3 'FAILED' "$WORK/$name.txt" || tail -n 3 "$WORK/$name.txt")"
    jq -r --arg p "$name" --arg r "$run" '[$p, $r,
        .phases.steady.p99_ms, .phases.steady.p99_9_ms, .phases.churn.p99_ms, .phases.churn.p99_9_ms,
        .latency_ms.max, .errors.total, .phases.steady.errors, .phases.churn.errors,
        .churn.actions, .churn.failed_actions, .completed,
        ([.errors | to_entries[] | select(.key != "total" and .key != "status" and (.value|type) == "number" and .value > 0) | "\(.key)=\(.value)"] | join(","))] | @tsv' \
        "$json" >>"$WORK/results.tsv"
    log "$name: $(tail -n 1 "$WORK/results.tsv" | tr '\t' ' ')"
}

print_table() {
    echo
    echo "ringway $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), ringway-loadgen, $MODE at the edge; graceful churn every $CHURN_EVERY (drain $CHURN_DRAIN) over ${FLEET_PORTS}, $RATE req/s open loop, $CONNECTIONS connections, $DURATION; proxy on CPU 1, fleet+loadgen on CPU 0; latency in ms, median of $RUNS runs (interleaved); churn p99.9 spread is min-max"
    awk -F'\t' -v proxies="$PROXIES" '
        function median(p, col,   n, i, j, t, a) {
            n = cnt[p]
            for (i = 1; i <= n; i++) a[i] = v[p, i, col] + 0
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            lo = a[1]; hi = a[n]
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { c = ++cnt[$1]; for (i = 3; i <= NF; i++) v[$1, c, i] = $i; seen[$1] = 1 }
        END {
            fmt = "%-8s | %4s | %10s | %12s | %9s | %11s | %-15s | %8s | %11s | %s\n"
            printf fmt, "proxy", "runs", "steady p99", "steady p99.9", "churn p99", "churn p99.9", "churn p99.9 min-max", "max", "errors sum", "churn actions (failed), sum"
            print "---------|------|------------|--------------|-----------|-------------|-----------------|----------|-------------|---------------------------"
            n = split(proxies, order, " ")
            for (k = 1; k <= n; k++) {
                p = order[k]
                if (!(p in seen)) { printf fmt, p, 0, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"; continue }
                errs = 0; acts = 0; failed = 0
                for (r = 1; r <= cnt[p]; r++) { errs += v[p, r, 8]; acts += v[p, r, 11]; failed += v[p, r, 12] }
                s99 = median(p, 3); s999 = median(p, 4); c99 = median(p, 5); c999 = median(p, 6)
                spread = sprintf("%.3f-%.3f", lo, hi)
                mx = median(p, 7)
                printf fmt, p, cnt[p], sprintf("%.3f", s99), sprintf("%.3f", s999), sprintf("%.3f", c99), sprintf("%.3f", c999), spread, sprintf("%.3f", mx), errs, acts " (" failed ")"
            }
        }' "$WORK/results.tsv"
    if [[ -s $WORK/loops.tsv ]]; then
        echo
        echo "ringway's worker loop after each run (cumulative over the run, from /stats):"
        sed 's/^/  run /' "$WORK/loops.tsv"
    fi
    echo
    echo "foreign CPU per run (machine busy time minus the proxy, fleet and load generator, in CPUs;"
    echo "about -0.1 on an idle host: the kernel charges some softirq work to both the processes and"
    echo "the irq/softirq columns, so only a positive figure means someone else ran):"
    awk -F'\t' '{ printf "  %s run %s: %s\n", $1, $2, $3 }' "$WORK/load.tsv"
}

main() {
    need_tools
    build
    [[ -x $LOADGEN ]] || die "no $LOADGEN (build it or drop SKIP_BUILD)"
    write_certificate
    write_ringway_config
    write_nginx_config
    write_haproxy_config
    : >"$WORK/results.tsv"
    log "fleet: ringway-loadgen upstream --ports $FLEET_PORTS --control-port $CONTROL_PORT (CPU 0)"
    taskset -c 0 "$LOADGEN" upstream --ports "$FLEET_PORTS" --response-bytes 64 \
        --control-port "$CONTROL_PORT" >"$WORK/fleet.out" 2>&1 &
    local fleet=$! p r
    FLEET_PID=$fleet
    PIDS+=("$fleet")
    wait_http "$FIRST_PORT" "$fleet" || die "fleet did not start: $(cat "$WORK/fleet.out")"
    : >"$WORK/load.tsv"
    for r in $(seq 1 "$RUNS"); do
        for p in $PROXIES; do
            run_one "$p" "$r" || log "$p run $r: no result"
        done
    done
    local noisy
    noisy=$(awk -F'\t' -v max="$MAX_FOREIGN_CPU" '$3 == "nan" || $3 + 0 > max + 0 { print $1 " run " $2 ": " $3 " CPU" }' "$WORK/load.tsv")
    if [[ -n $noisy ]]; then
        log "other processes used more than $MAX_FOREIGN_CPU CPU during: $(echo "$noisy" | paste -sd';' -)"
        if [[ $ALLOW_NOISE != 1 ]]; then
            print_table >&2
            die "the host was not quiet: no table (ALLOW_NOISE=1 prints it anyway, marked)"
        fi
        echo "WARNING: host not quiet during some runs (see foreign CPU below)"
    fi
    print_table
}

main "$@"
