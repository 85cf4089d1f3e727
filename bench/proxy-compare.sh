#!/usr/bin/env bash
# Side-by-side proxy benchmark: Ringway (io_uring and epoll) vs nginx vs HAProxy (HTTP, and
# `mode tcp` as an L4 floor: no HTTP work at all) vs direct (no proxy).
#
# Method (see bench/README.md): a fixed open-loop rate through each proxy on a 2-core box, the
# backend and the load generator pinned to CPU 0, the proxy alone on CPU 1. The headline number
# is the proxy's CPU time per request (utime+stime from /proc, all threads/processes), because
# at a fixed rate every proxy does the same work and the one that burns less CPU for it wins;
# latency percentiles come from ringway-loadgen (latency from scheduled time, no coordinated
# omission). Every configuration runs RUNS times; the table shows medians, one table per load
# generator and rate. The load comes from ringway-loadgen and from oha (`--latency-correction`,
# an independent open-loop tool), so a bias of our own generator shows as a difference between
# the two tables.
#
# Env: RATES ("2000 8000"; RATE=n sets a single rate) DURATION (20s) RUNS (3) CONNECTIONS (64)
#      WARMUP (2s, a separate unrecorded run) BACKEND_PORT (18080) PROXY_PORT (18081)
#      PROXIES ("direct nginx haproxy haproxy-tcp ringway ringway-epoll")
#      LOADGENS ("loadgen oha"; oha must be installed: cargo install oha --locked)
#      SKIP_BUILD=1 (use existing release binaries) REQUIRE_ALL=1 (fail if a proxy cannot start)
#      KEEP_DIR=1 (keep configs, logs and per-run JSON)
# Exits non-zero when a run saw errors or completed nothing.
set -euo pipefail

RATES=${RATES:-${RATE:-"2000 8000"}}
LOADGENS=${LOADGENS:-"loadgen oha"}
DURATION=${DURATION:-20s}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-2s}
BACKEND_PORT=${BACKEND_PORT:-18080}
PROXY_PORT=${PROXY_PORT:-18081}
PROXIES=${PROXIES:-"direct nginx haproxy haproxy-tcp ringway ringway-epoll"}
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
    # The L4 floor: HAProxy splicing bytes between the client's connection and one backend
    # connection of its own, no HTTP parsing, no pooling.
    cat >"$WORK/haproxy-tcp.cfg" <<EOF
global
    nbthread 1
    cpu-map 1/1 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$PROXY_PORT
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND_PORT
EOF
    write_ringway_conf "$WORK/ringway.yaml"
}

# Start proxy $1 in the background pinned to CPU 1; sets STARTED_PID. Not called in a
# subshell, so the proxy stays our child and can be waited for.
STARTED_PID=""
start_proxy() {
    STARTED_PID=""
    case $1 in
        nginx) taskset -c 1 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.out" 2>&1 & ;;
        haproxy) taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 & ;;
        haproxy-tcp) taskset -c 1 haproxy -db -f "$WORK/haproxy-tcp.cfg" >"$WORK/haproxy-tcp.out" 2>&1 & ;;
        ringway | ringway-epoll)
            [[ -x $RINGWAY ]] || return 1
            local driver=uring
            [[ $1 == ringway-epoll ]] && driver=epoll
            taskset -c 1 "$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 1 --cpu-set 1 \
                --io-driver "$driver" >"$WORK/$1.out" 2>&1 &
            ;;
        *) return 1 ;;
    esac
    STARTED_PID=$!
}

# One load run with generator $1 at rate $2 against port $3 for $4; writes JSON to $5 and
# prints "completed p50_ms p99_ms p999_ms errors" (tab-separated) on success.
drive() {
    local tool=$1 rate=$2 port=$3 duration=$4 json=$5
    case $tool in
        loadgen)
            taskset -c 0 "$LOADGEN" --rate "$rate" --duration "$duration" --warmup 0s \
                --connections "$CONNECTIONS" --threads 1 --cpu-set 0 --json "$json" \
                "http://127.0.0.1:$port/" >"$json.txt" 2>&1 || return 1
            jq -r '[.completed, .latency_ms.p50, .latency_ms.p99, .latency_ms["p99.9"], .errors.total] | @tsv' "$json"
            ;;
        oha)
            # -q: the open-loop rate; --latency-correction: latency from the scheduled send
            # time (no coordinated omission), as ringway-loadgen measures it. Requests still in
            # flight when -z ends are "aborted due to deadline" in oha's report: not errors.
            taskset -c 0 oha --no-tui --output-format json -z "$duration" -q "$rate" \
                -c "$CONNECTIONS" --latency-correction "http://127.0.0.1:$port/" \
                >"$json" 2>"$json.txt" || return 1
            jq -r '[
                ([.statusCodeDistribution // {} | to_entries[] | .value] | add // 0),
                (.latencyPercentiles.p50 * 1000), (.latencyPercentiles.p99 * 1000),
                (.latencyPercentiles["p99.9"] * 1000),
                (([.statusCodeDistribution // {} | to_entries[] | select(.key != "200") | .value] | add // 0)
                 + ([.errorDistribution // {} | to_entries[]
                     | select(.key | test("aborted due to deadline") | not) | .value] | add // 0))
            ] | @tsv' "$json"
            ;;
        *) return 1 ;;
    esac
}

# One proxy under generator $2 at rate $3: RUNS measured runs; appends
# "tool rate proxy run cpu_us_per_req p50 p99 p999 errors completed".
bench_one() {
    local name=$1 tool=$2 rate=$3 port=$PROXY_PORT pid="" run json t0 t1 cpu line
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
    log "$name ($tool, $rate req/s): warmup $WARMUP"
    drive "$tool" "$rate" "$port" "$WARMUP" "$WORK/$name-$tool-$rate-warmup.json" >/dev/null || true
    for run in $(seq 1 "$RUNS"); do
        json=$WORK/$name-$tool-$rate-$run.json
        t0=0
        [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
        if ! line=$(drive "$tool" "$rate" "$port" "$DURATION" "$json"); then
            log "$name run $run: $tool failed: $(tail -n 3 "$json.txt")"
            FAILED_RUNS=$((FAILED_RUNS + 1))
            continue
        fi
        t1=0
        [[ -n $pid ]] && t1=$(cpu_ticks "$pid")
        read -r completed p50 p99 p999 errors <<<"$line"
        completed=${completed%.*}
        errors=${errors%.*}
        if [[ -n $pid && $completed -gt 0 ]]; then
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
        else
            cpu=nan
        fi
        log "$name run $run ($tool, $rate req/s): completed $completed  cpu/req ${cpu}us  p50 ${p50}ms  p99 ${p99}ms  p99.9 ${p999}ms  errors $errors"
        if [[ $completed -le 0 || $errors -gt 0 ]]; then
            FAILED_RUNS=$((FAILED_RUNS + 1))
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$rate" "$name" "$run" "$cpu" "$p50" "$p99" "$p999" "$errors" "$completed" >>"$WORK/results.tsv"
    done
    [[ -n $pid ]] && stop "$pid"
    return 0
}

FAILED_RUNS=0

main() {
    for tool in nginx haproxy taskset jq curl awk; do
        command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
    done
    for tool in $LOADGENS; do
        case $tool in
            loadgen) ;;
            oha) command -v oha >/dev/null || { log "oha is not installed: cargo install oha --locked (or LOADGENS=loadgen)"; exit 1; } ;;
            *) log "unknown load generator $tool (loadgen, oha)"; exit 1 ;;
        esac
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
    log "rates $RATES req/s, load from $LOADGENS, $CONNECTIONS connections, $DURATION x $RUNS runs"
    local failed=() tool rate
    for tool in $LOADGENS; do
        for rate in $RATES; do
            for p in $PROXIES; do
                bench_one "$p" "$tool" "$rate" || failed+=("$p")
            done
        done
    done
    for tool in $LOADGENS; do
        for rate in $RATES; do
            print_table "$tool" "$rate"
        done
    done
    if [[ $REQUIRE_ALL == 1 && ${#failed[@]} -gt 0 ]]; then
        log "REQUIRE_ALL=1 and these did not run: ${failed[*]}"
        exit 1
    fi
    if [[ $FAILED_RUNS -gt 0 ]]; then
        log "$FAILED_RUNS run(s) failed, saw errors or completed nothing: the figures above are not clean"
        exit 1
    fi
}

# Medians per proxy for generator $1 at rate $2; CPU ratio against nginx's median.
print_table() {
    local tool=$1 rate=$2
    echo
    echo "$tool, $rate req/s open loop, $CONNECTIONS connections, $DURATION, median of $RUNS runs; proxy on CPU 1, backend+load on CPU 0; Ringway $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    awk -F'\t' -v proxies="$PROXIES" -v tool="$tool" -v rate="$rate" '
        function median(list,   a, n, i, j, t) {
            n = split(list, a, " ")
            if (n == 0) return "n/a"
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == tool && $2 == rate {
            k = $3
            if ($5 != "nan") cpu[k] = cpu[k] " " $5
            p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7; p999[k] = p999[k] " " $8
            err[k] += $9; seen[k] = 1
        }
        END {
            base = ("nginx" in seen && cpu["nginx"] != "") ? median(cpu["nginx"]) : ""
            printf "%-13s | %12s | %8s | %8s | %9s | %6s | %s\n", "proxy", "us CPU/req", "p50 ms", "p99 ms", "p99.9 ms", "errors", "CPU vs nginx"
            printf "%s\n", "--------------|--------------|----------|----------|-----------|--------|-------------"
            n = split(proxies, order, " ")
            for (i = 1; i <= n; i++) {
                p = order[i]
                if (!(p in seen)) {
                    printf "%-13s | %12s | %8s | %8s | %9s | %6s | %s\n", p, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"
                    continue
                }
                c = (cpu[p] != "") ? median(cpu[p]) : "-"
                ratio = (c != "-" && base != "" && base > 0) ? sprintf("%.2fx", c / base) : "-"
                if (c != "-") c = sprintf("%.2f", c)
                printf "%-13s | %12s | %8.3f | %8.3f | %9.3f | %6d | %s\n", p, c, median(p50[p]), median(p99[p]), median(p999[p]), err[p], ratio
            }
        }' "$WORK/results.tsv"
}

main "$@"
