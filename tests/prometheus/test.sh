#!/usr/bin/env bash
# A real Prometheus scrapes a gate's exposition, served through the C ABI by the ffi crate's
# example `metrics_server`. Checks, in order:
#   1. `promtool check metrics` accepts the exposition (format and naming lints);
#   2. a Prometheus (Debian's package) started here on a free loopback port, with its own
#      config and data directory in a temporary directory, scraping every second, has
#      `promotion_health_score{gate="prometheus-test"}`, and `histogram_quantile` reads the
#      window's latency buckets (untyped series: a gauge histogram, see docs/telemetry.md);
#   3. after the gate is made to roll back by itself, `promotion_rollbacks_total` of the
#      gate has increased, and the alert of rollbacks.rules.yml, which this Prometheus
#      evaluates, fires.
# First, `promtool check rules` and `promtool test rules` check the rollback alert the docs
# recommend (rollbacks.rules.yml, rollbacks.test.yml: scrapes reaching nginx workers whose
# rollback counts differ, hosts sharing a store, counts that go down, and the rule's limits).
# Installs `prometheus` with .ci/apt-install when missing, which keeps the package from
# starting its service (on 0.0.0.0:9090). Starts no service: any system Prometheus is left
# alone (ours uses its own port, config and data). Every process started here is stopped by
# its pid on exit. Bounded: each wait gives up after 60 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  "$root/.ci/apt-install" prometheus
fi
echo "== $(prometheus --version 2>&1 | head -n 1)"

echo "== promtool check rules, promtool test rules (the rollback alert)"
(cd "$root/tests/prometheus" && promtool check rules rollbacks.rules.yml &&
  promtool test rules rollbacks.test.yml)

echo "== cargo build -p promotion-gates-ffi --example metrics_server"
(cd "$root" && cargo build -q -p promotion-gates-ffi --example metrics_server)
server_bin="$("$root/.ci/build-dir" debug)/examples/metrics_server" # (CARGO_BUILD_TARGET too)

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== promtool check metrics"
"$server_bin" --print >"$tmp/exposition.txt"
promtool check metrics <"$tmp/exposition.txt"

"$server_bin" "$tmp/server.port" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$tmp/server.port" ] && break; sleep 0.1; done
server_port=$(cat "$tmp/server.port")
prometheus_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat >"$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - "$root/tests/prometheus/rollbacks.rules.yml"
scrape_configs:
  - job_name: promotion-gates
    static_configs:
      - targets: ["127.0.0.1:$server_port"]
YAML
echo "== prometheus on 127.0.0.1:$prometheus_port scraping 127.0.0.1:$server_port"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prometheus_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

# query EXPR: the value of the instant query EXPR (its first sample), or nothing.
query() {
  python3 - "$prometheus_port" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
port, expr = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
except OSError:
    sys.exit(0)
if result:
    print(result[0]["value"][1])
PY
}

# wait_for WHAT EXPR: polls until EXPR has a sample; fails after 60 s.
wait_for() {
  local value
  for _ in $(seq 120); do
    value=$(query "$2")
    if [ -n "$value" ]; then
      echo "   $1: $2 = $value"
      return 0
    fi
    sleep 0.5
  done
  echo "FAIL: no $1 after 60 s ($2)" >&2
  tail -n 20 "$tmp/prometheus.log" "$tmp/server.log" >&2
  return 1
}

echo "== querying Prometheus"
wait_for "health score" 'promotion_health_score{gate="prometheus-test",job="promotion-gates"}'
wait_for "latency median" 'histogram_quantile(0.5, sum by (le) (promotion_window_latency_seconds_bucket{gate="prometheus-test"})) > 0'
wait_for "rollback counter" 'sum(promotion_rollbacks_total{gate="prometheus-test"}) == 0'

python3 -c 'import sys, urllib.request; print("   /fail:", urllib.request.urlopen(sys.argv[1], timeout=30).read().decode().strip())' \
  "http://127.0.0.1:$server_port/fail"
wait_for "rollback counted" 'promotion_rollbacks_total{gate="prometheus-test",trigger="automatic"} > 0'
wait_for "increase" 'sum(increase(promotion_rollbacks_total{gate="prometheus-test"}[1m])) > 0'
wait_for "environment" 'promotion_environment{gate="prometheus-test",environment="production"} == 1'
wait_for "the rollback alert" 'ALERTS{alertname="PromotionRollback",gate="prometheus-test",trigger="automatic",alertstate="firing"}'
echo "== prometheus test passed"
