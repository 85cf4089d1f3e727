# Process helpers shared by the bench scripts (sourced, not run). The caller defines PIDS (the
# processes it started), WORK, KEEP_DIR, PROXY_PORT and log().

# Kill and reap everything we started; keep or remove the work directory.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP_DIR == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}

# Stop one process we started, wait for it and for the proxy port to be free again (nginx
# workers outlive their master briefly), and forget it.
stop() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        ss -Hltn "sport = :$PROXY_PORT" | grep -q . || break
        sleep 0.1
    done
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[$i]} == "$pid" ]] && unset 'PIDS[i]'
    done
    PIDS=("${PIDS[@]}")
    return 0
}

# Wait until http://127.0.0.1:$1/ answers 200 while process $2 lives (max ~5 s).
wait_http() {
    local port=$1 pid=$2 i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/" || true) == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Sum of utime+stime (clock ticks) of a process and its direct children (nginx workers).
cpu_ticks() {
    local root=$1 total=0 p stat rest
    for p in $root $(ps --ppid "$root" -o pid= 2>/dev/null || true); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }   # fields after "pid (comm) "; comm may contain spaces
        read -r -a f <<<"$rest"
        # rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12.
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# The backend both proxy benchmarks put behind the proxy: nginx, one worker, answering "$BODY"
# on BACKEND_PORT over HTTP/1.1 keep-alive. Writes its config to $1 (WORK must be set).
write_backend_conf() {
    cat >"$1" <<EOF
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { return 200 "$BODY\n"; }
    }
}
EOF
}

# The Ringway config the single-backend benchmarks put in front of that backend: one listener on
# PROXY_PORT routing everything to cluster `backend` at BACKEND_PORT. Writes it to $1.
write_ringway_conf() {
    cat >"$1" <<YAML
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
YAML
}
