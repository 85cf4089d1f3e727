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
