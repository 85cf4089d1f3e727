#!/usr/bin/env bash
# The README's first command: build Ringway, start two local upstreams and Ringway on Envoy's
# front-proxy configuration (examples/front-proxy.yaml), send requests through it, show the stats.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
cargo build --release -q -p ringway

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 examples/hello_upstream.py 8081 "service 1" & pids+=($!)
python3 examples/hello_upstream.py 8082 "service 2" & pids+=($!)
target/release/ringway -c examples/front-proxy.yaml --log-level warning & pids+=($!)

for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8001/ready 2>/dev/null && break
  sleep 0.1
done

echo "== GET http://127.0.0.1:8080/service/1"
curl -sS -i http://127.0.0.1:8080/service/1
echo "== GET http://127.0.0.1:8080/service/2"
curl -sS -i http://127.0.0.1:8080/service/2
echo "== GET http://127.0.0.1:8080/nowhere (no route: 404)"
curl -sS -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/nowhere
echo "== 200 requests over keep-alive"
urls=(); for _ in $(seq 100); do urls+=(http://127.0.0.1:8080/service/1 http://127.0.0.1:8080/service/2); done
curl -sS -o /dev/null "${urls[@]}"
echo "== admin /stats (excerpt)"
curl -sS http://127.0.0.1:8001/stats | grep -E '^(cluster\.service[12]\.(upstream_rq_total|upstream_rq_200|upstream_cx_total)|http\.ingress_http\.downstream_rq_total|server\.concurrency):'
