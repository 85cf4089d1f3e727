#!/usr/bin/env bash
# The README's first command: build Ringway, start two local upstreams and Ringway on Envoy's
# front-proxy configuration (examples/front-proxy.yaml), send requests through it, show the stats.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
cargo build --release -q --workspace

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 examples/hello_upstream.py 8081 "service 1" & pids+=($!)
python3 examples/hello_upstream.py 8082 "service 2" & pids+=($!)
target/release/ringway -c examples/front-proxy.yaml --log-level warning & pids+=($!)

wait_for() { # URL: poll until it answers 200, or give up loudly after 10 s
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $1 did not come up" >&2
  exit 1
}
wait_for http://127.0.0.1:8081/
wait_for http://127.0.0.1:8082/
wait_for http://127.0.0.1:8001/ready

echo "== GET http://127.0.0.1:8080/service/1"
curl -sS -i http://127.0.0.1:8080/service/1
echo "== GET http://127.0.0.1:8080/service/2"
curl -sS -i http://127.0.0.1:8080/service/2
echo "== GET http://127.0.0.1:8080/nowhere (no route: 404)"
curl -sS -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/nowhere
echo "== 200 requests over keep-alive"
args=(); for _ in $(seq 100); do
  args+=(-o /dev/null http://127.0.0.1:8080/service/1 -o /dev/null http://127.0.0.1:8080/service/2)
done
curl -sS -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | awk '{print "  " $1 " responses with status " $2}'
echo "== admin /stats (excerpt)"
curl -sS http://127.0.0.1:8001/stats | grep -E '^(cluster\.service[12]\.(upstream_rq_total|upstream_rq_200|upstream_cx_total)|http\.ingress_http\.downstream_rq_total|server\.concurrency):'

# Stop the front-proxy part before the churn part.
cleanup
pids=()

echo
echo "== load with endpoint churn: ringway-loadgen demo (6 upstreams, 2000 req/s open loop, graceful churn every 2 s)"
target/release/ringway-loadgen demo --duration "${DEMO_DURATION:-20s}" --json target/demo.json --report target/demo.svg
echo "report: target/demo.svg, target/demo.json"
