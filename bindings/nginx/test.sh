#!/usr/bin/env bash
# Builds the nginx module (build.sh), checks that `nginx -t` names the directive, the field and
# the value of bad configurations, then runs the end-to-end test under load (e2e.sh, ~30 s).
# Installs what it lacks with apt-get (nginx, nginx-dev, wrk; prometheus for promtool).
# Run from anywhere.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS
module=$("$here/build.sh" | tail -n 1)

if ! command -v promtool >/dev/null; then
  apt_get=(apt-get)
  [ "$(id -u)" -eq 0 ] || apt_get=(sudo apt-get)
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq --no-install-recommends prometheus ||
    echo "prometheus not installable: the exposition is checked without promtool"
fi

echo "== nginx -t names what is wrong"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/conf" "$tmp/logs"
echo '{"gate": "g", "environment": {"canary": {"traffic_percent": 150}}}' >"$tmp/conf/bad.json"
echo '{"gate": "g", "environment": {"canary": {"traffic_percent": 5}}}' >"$tmp/conf/good.json"
echo '{"gate": "g", "store": {"sqlite": {"path": "/nonexistent/dir/g.db"}}}' >"$tmp/conf/store.json"
mkdir -m 777 "$tmp/fleet" # nginx -t opens the store as the workers' user
echo "{\"gate\": \"g\", \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/g.db\"}}}" >"$tmp/conf/fleet.json"
echo '{"min_samples": 1}' >"$tmp/conf/slo.json"
# expect_refusal <expected text> <http block lines>
expect_refusal() {
  cat >"$tmp/conf/nginx.conf" <<CONF
load_module $module;
error_log logs/error.log;
pid logs/nginx.pid;
events {}
http {
    $2
    server { listen 127.0.0.1:1; location = /s { promotion_gate_status g; } }
}
CONF
  local out
  if out=$(nginx -p "$tmp" -c conf/nginx.conf -t 2>&1); then
    echo "FAIL: nginx -t accepted: $2" >&2
    exit 1
  fi
  if ! grep -qF -- "$1" <<<"$out"; then
    echo "FAIL: nginx -t did not say '$1' for: $2" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "refused: $(grep -F -- "$1" <<<"$out" | head -n 1 | cut -c1-200)"
}
expect_refusal 'invalid environment.traffic_percent = 150' 'promotion_gate g bad.json;'
expect_refusal 'state store /nonexistent/dir/g.db' 'promotion_gate g store.json;'
expect_refusal 'invalid store fleet_judging = true' 'promotion_gate g fleet.json;'
expect_refusal 'min_samples = 1' 'promotion_gate g good.json slo=slo.json;'
expect_refusal 'invalid gate name "g-1" in "promotion_gate" directive' 'promotion_gate g-1 good.json;'
expect_refusal 'invalid parameter "keys=$http_x" in "promotion_gate" directive' 'promotion_gate g good.json keys=$http_x;'
expect_refusal 'duplicate gate "g" in "promotion_gate" directive' 'promotion_gate g good.json; promotion_gate g good.json;'
expect_refusal 'missing.json' 'promotion_gate g missing.json;'
expect_refusal 'unknown gate "g" in "promotion_gate_status" directive' ''

echo "== e2e.sh"
"$here/e2e.sh" "$module"
echo "== nginx module: $((SECONDS - start)) s"
