#!/usr/bin/env bash
# HTTP/2 conformance: runs h2spec (../shared/tools/h2spec, the suite hyper and the h2 crate run)
# against Ringway's h2c listener (codec_type HTTP2, prior knowledge) and its TLS listener (ALPN h2)
# in front of an nginx backend, prints the pass/fail counts of each, and exits non-zero on any
# failure (or when a run could not produce counts).
#
# Env: H2SPEC (../shared/tools/h2spec) BACKEND_PORT (18190) PROXY_PORT (18191, h2c)
#      TLS_PORT (18192) H2SPEC_ARGS (extra h2spec arguments, e.g. --strict or a section such as
#      http2/5.1) SKIP_BUILD=1 KEEP_DIR=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
H2SPEC=${H2SPEC:-$ROOT/../shared/tools/h2spec}
BACKEND_PORT=${BACKEND_PORT:-18190}
PROXY_PORT=${PROXY_PORT:-18191}
TLS_PORT=${TLS_PORT:-18192}
H2SPEC_ARGS=${H2SPEC_ARGS:-}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DIR=${KEEP_DIR:-0}
RINGWAY=$ROOT/target/release/ringway
WORK=$(mktemp -d /tmp/h2spec.XXXXXX)
BODY=hello

PIDS=()

log() { printf '[h2spec] %s\n' "$*" >&2; }

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

for tool in "$H2SPEC" nginx openssl curl; do
    if ! command -v "$tool" >/dev/null 2>&1 && ! [[ -x /usr/sbin/$tool ]]; then
        log "missing $tool"
        exit 1
    fi
done

if [[ $SKIP_BUILD != 1 ]]; then
    log "building ringway (release)"
    (cd "$ROOT" && cargo build --release -q -p ringway)
fi
[[ -x $RINGWAY ]] || { log "no $RINGWAY"; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
write_backend_conf "$WORK/backend.conf"

hcm() {
    cat <<EOF
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          codec_type: $2
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
}

cat >"$WORK/ringway.yaml" <<EOF
static_resources:
  listeners:
  - name: h2c
    address:
      socket_address: { address: 127.0.0.1, port_value: $PROXY_PORT }
    filter_chains:
    - filters:
$(hcm h2c HTTP2)
  - name: h2tls
    address:
      socket_address: { address: 127.0.0.1, port_value: $TLS_PORT }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2"]
            tls_certificates:
            - certificate_chain: { filename: "$WORK/cert.pem" }
              private_key: { filename: "$WORK/key.pem" }
      filters:
$(hcm h2tls AUTO)
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

nginx -c "$WORK/backend.conf" -e "$WORK/backend-error.log" >"$WORK/backend.out" 2>&1 &
PIDS+=($!)
wait_http "$BACKEND_PORT" "${PIDS[-1]}" || { log "backend did not start"; exit 1; }

"$RINGWAY" -c "$WORK/ringway.yaml" --concurrency 2 --no-pin -l warning >"$WORK/ringway.out" 2>&1 &
PIDS+=($!)
ringway_pid=${PIDS[-1]}
ready=0
for _ in $(seq 1 100); do
    kill -0 "$ringway_pid" 2>/dev/null || break
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' --http2-prior-knowledge "http://127.0.0.1:$PROXY_PORT/" || true)
    [[ $code == 200 ]] && { ready=1; break; }
    sleep 0.1
done
if [[ $ready != 1 ]]; then
    log "ringway did not answer over h2c; its output:"
    cat "$WORK/ringway.out" >&2
    exit 1
fi

failed=0
rows=()
run() {
    local name=$1 port=$2 line passed failed_n total
    shift 2
    log "h2spec $name (127.0.0.1:$port)"
    # h2spec exits non-zero when a test fails; the summary line decides here.
    # shellcheck disable=SC2086
    "$H2SPEC" -h 127.0.0.1 -p "$port" "$@" $H2SPEC_ARGS -o 5 >"$WORK/h2spec-$name.txt" 2>&1 || true
    line=$(grep -E '^[0-9]+ tests, [0-9]+ passed, [0-9]+ skipped, [0-9]+ failed' "$WORK/h2spec-$name.txt" | tail -1 || true)
    if [[ -z $line ]]; then
        log "$name: no summary from h2spec; its output:"
        tail -n 30 "$WORK/h2spec-$name.txt" >&2
        rows+=("$(printf '%-5s %6s %6s %7s %6s' "$name" '?' '?' '?' '?')")
        failed=1
        return
    fi
    read -r total _ passed _ skipped _ failed_n _ <<<"$line"
    rows+=("$(printf '%-5s %6s %6s %7s %6s' "$name" "$total" "$passed" "$skipped" "$failed_n")")
    if [[ $failed_n != 0 ]]; then
        failed=1
        log "$name: failures:"
        sed -n '/^Failures:/,$p' "$WORK/h2spec-$name.txt" >&2
    fi
}
run h2c "$PROXY_PORT"
run tls "$TLS_PORT" -t -k

if ! kill -0 "$ringway_pid" 2>/dev/null; then
    log "ringway exited during the run; its output:"
    cat "$WORK/ringway.out" >&2
    failed=1
fi

printf '%-5s %6s %6s %7s %6s\n' mode tests passed skipped failed
printf '%s\n' "${rows[@]}"
exit "$failed"
