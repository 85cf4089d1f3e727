#!/usr/bin/env bash
# HTTP/2 proxy benchmark: Ringway vs nginx, h2c (prior knowledge) and h2 over TLS (ALPN h2).
#
# Method (as proxy-compare.sh): the proxy alone on CPU 1 with one worker, the backend (nginx,
# 1 worker, a fixed 64-byte response over HTTP/1.1 keep-alive) and h2load on CPU 0. Each
# (proxy, transport) pair runs RUNS times; the table shows medians. h2load is closed loop here
# (-n N -c C -m M: as fast as the proxy answers), so req/s is a throughput figure; the proxy's
# CPU time per request (utime+stime from /proc/<pid>/stat, all threads, nginx master+workers)
# is the figure that compares across machines. Latency columns are h2load's "time for request"
# mean and sd (it prints no percentiles) plus p99 from its per-request log (--log-file).
#
# Env: REQUESTS (200000) CLIENTS (32) STREAMS (10, -m) RUNS (3) WARMUP_REQUESTS (20000)
#      BACKEND_PORT (18090) PROXY_PORT (18091, h2c) TLS_PORT (18092) PROXIES ("nginx ringway")
#      MODES ("h2c tls") SKIP_BUILD=1 REQUIRE_ALL=1 KEEP_DIR=1
set -euo pipefail

REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-32}
STREAMS=${STREAMS:-10}
RUNS=${RUNS:-3}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-20000}
BACKEND_PORT=${BACKEND_PORT:-18090}
PROXY_PORT=${PROXY_PORT:-18091}
TLS_PORT=${TLS_PORT:-18092}
PROXIES=${PROXIES:-"nginx ringway"}
MODES=${MODES:-"h2c tls"}
REQUIRE_ALL=${REQUIRE_ALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGWAY=$ROOT/target/release/ringway
WORK=$(mktemp -d /tmp/h2-compare.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
BODY=$(printf 'x%.0s' $(seq 1 63))

PIDS=()

log() { printf '[h2-compare] %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

build() {
    [[ $SKIP_BUILD == 1 ]] && return 0
    log "building ringway (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway) || log "ringway build failed: its rows will be n/a"
}

write_configs() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
    write_backend_conf "$WORK/backend.conf"
    # keepalive_requests also bounds requests per HTTP/2 connection in nginx >= 1.19.7.
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
    http2_max_concurrent_streams 128;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT http2 backlog=4096;
        listen 127.0.0.1:$TLS_PORT ssl http2 backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    local hcm_body
    # One HCM shared by both listeners; the TLS listener adds a DownstreamTlsContext with ALPN.
    hcm_body=$(cat <<'EOF'
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: STATPREFIX
          codec_type: AUTO
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
EOF
)
    cat >"$WORK/ringway.yaml" <<EOF
static_resources:
  listeners:
  - name: h2c
    address:
      socket_address: { address: 127.0.0.1, port_value: $PROXY_PORT }
    filter_chains:
    - filters:
${hcm_body//STATPREFIX/h2c}
  - name: h2tls
    address:
      socket_address: { address: 127.0.0.1, port_value: $TLS_PORT }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: "$WORK/cert.pem" }
              private_key: { filename: "$WORK/key.pem" }
      filters:
${hcm_body//STATPREFIX/h2tls}
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

STARTED_PID=""
start_proxy() {
    STARTED_PID=""
    case $1 in
        nginx) taskset -c 1 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.out" 2>&1 & ;;
        ringway)
            [[ -x $RINGWAY ]] || return 1
            taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 >"$WORK/ringway.out" 2>&1 &
            ;;
        *) return 1 ;;
    esac
    STARTED_PID=$!
}

# Wait until the proxy answers 200 over h2c while process $1 lives (max ~5 s).
wait_h2() {
    local pid=$1 i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(curl -s --http2-prior-knowledge -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/" || true) == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

url_for() {
    case $1 in
        h2c) echo "http://127.0.0.1:$PROXY_PORT/" ;;
        tls) echo "https://127.0.0.1:$TLS_PORT/" ;;
    esac
}

# h2load run; prints "completed rps mean_ms sd_ms p99_ms errors" (mean/sd from its summary,
# p99 from the per-request log: column 3 is the request time in microseconds).
h2load_run() {
    local url=$1 n=$2 out=$3
    taskset -c 0 h2load -n "$n" -c "$CLIENTS" -m "$STREAMS" --log-file="$out.log" "$url" >"$out" 2>&1 || return 1
    local completed rps mean sd p99 errored unit_mean unit_sd
    completed=$(awk '/^requests:/ { print $8 }' "$out")
    errored=$(awk '/^requests:/ { print $12 }' "$out")
    rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$out")
    read -r mean unit_mean sd unit_sd < <(awk '/^time for request:/ { print $6+0, $6, $7+0, $7 }' "$out")
    mean=$(to_ms "$mean" "$unit_mean")
    sd=$(to_ms "$sd" "$unit_sd")
    p99=$(awk '{ print $3 }' "$out.log" | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.3f", a[int(NR * 0.99)] / 1000; else print "nan" }')
    echo "$completed $rps $mean $sd $p99 $errored"
}

# h2load prints times as e.g. 1.23ms, 456us, 1.2s.
to_ms() {
    local v=$1 unit=$2
    case $unit in
        *us) awk -v v="$v" 'BEGIN { printf "%.3f", v / 1000 }' ;;
        *ms) awk -v v="$v" 'BEGIN { printf "%.3f", v }' ;;
        *s) awk -v v="$v" 'BEGIN { printf "%.3f", v * 1000 }' ;;
        *) echo nan ;;
    esac
}

bench_one() {
    local name=$1 pid run mode url res t0 t1 cpu completed rps mean sd p99 errored
    if ! start_proxy "$name" || [[ -z $STARTED_PID ]]; then
        log "$name: cannot start"
        return 1
    fi
    pid=$STARTED_PID
    PIDS+=("$pid")
    if ! wait_h2 "$pid"; then
        log "$name: did not answer 200 over h2c on :$PROXY_PORT (see $WORK/$name.out)"
        tail -n 5 "$WORK/$name.out" >&2 2>/dev/null || true
        stop "$pid"
        return 1
    fi
    for mode in $MODES; do
        url=$(url_for "$mode")
        log "$name/$mode: warmup $WARMUP_REQUESTS requests"
        h2load_run "$url" "$WARMUP_REQUESTS" "$WORK/$name-$mode-warmup.txt" >/dev/null || {
            log "$name/$mode: warmup failed: $(tail -n 3 "$WORK/$name-$mode-warmup.txt")"
            continue
        }
        for run in $(seq 1 "$RUNS"); do
            t0=$(cpu_ticks "$pid")
            if ! res=$(h2load_run "$url" "$REQUESTS" "$WORK/$name-$mode-$run.txt"); then
                log "$name/$mode run $run: h2load failed: $(tail -n 3 "$WORK/$name-$mode-$run.txt")"
                continue
            fi
            t1=$(cpu_ticks "$pid")
            read -r completed rps mean sd p99 errored <<<"$res"
            if [[ ${completed:-0} -gt 0 ]]; then
                cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
            else
                cpu=nan
            fi
            log "$name/$mode run $run: $completed ok, $rps req/s, cpu/req ${cpu}us, mean ${mean}ms sd ${sd}ms p99 ${p99}ms, errored $errored"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$run" "$rps" "$cpu" "$mean" "$sd" "$p99" "$errored" >>"$WORK/results.tsv"
        done
    done
    stop "$pid"
    return 0
}

print_table() {
    echo
    echo "h2load -n $REQUESTS -c $CLIENTS -m $STREAMS, median of $RUNS runs; proxy (1 worker) on CPU 1, backend + h2load on CPU 0"
    awk -F'\t' -v proxies="$PROXIES" -v modes="$MODES" '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            if (n == 0) return "nan"
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        {
            k = $1 "/" $2
            rps[k] = rps[k] " " $4
            if ($5 != "nan") cpu[k] = cpu[k] " " $5
            mean[k] = mean[k] " " $6; sd[k] = sd[k] " " $7; p99[k] = p99[k] " " $8
            err[k] += $9; seen[k] = 1
        }
        END {
            printf "%-14s | %10s | %10s | %9s | %9s | %9s | %6s | %s\n", "proxy/mode", "req/s", "us CPU/req", "mean ms", "sd ms", "p99 ms", "errors", "CPU vs nginx"
            printf "%s\n", "---------------|------------|------------|-----------|-----------|-----------|--------|-------------"
            np = split(proxies, P, " "); nm = split(modes, M, " ")
            for (j = 1; j <= nm; j++) for (i = 1; i <= np; i++) {
                k = P[i] "/" M[j]
                if (!(k in seen)) {
                    printf "%-14s | %10s | %10s | %9s | %9s | %9s | %6s | %s\n", k, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"
                    continue
                }
                c = (cpu[k] != "") ? median(cpu[k]) : "nan"
                b = ("nginx/" M[j] in seen && cpu["nginx/" M[j]] != "") ? median(cpu["nginx/" M[j]]) : ""
                ratio = (c != "nan" && b != "" && b > 0) ? sprintf("%.2fx", c / b) : "-"
                printf "%-14s | %10.0f | %10.2f | %9.3f | %9.3f | %9.3f | %6d | %s\n", k, median(rps[k]), c, median(mean[k]), median(sd[k]), median(p99[k]), err[k], ratio
            }
        }' "$WORK/results.tsv"
}

main() {
    for tool in nginx h2load taskset curl awk openssl; do
        command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
    done
    if [[ $(nproc) -lt 2 ]]; then log "needs 2 CPUs (backend+h2load on 0, proxy on 1)"; exit 1; fi
    build
    write_configs
    : >"$WORK/results.tsv"
    log "backend: nginx on CPU 0, :$BACKEND_PORT, 64-byte body"
    local backend
    taskset -c 0 nginx -c "$WORK/backend.conf" -e "$WORK/backend-error.log" >"$WORK/backend.out" 2>&1 &
    backend=$!
    PIDS+=("$backend")
    wait_http "$BACKEND_PORT" "$backend" || { log "backend did not start: $(cat "$WORK/backend.out")"; exit 1; }
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

main "$@"
