#!/usr/bin/env bash
# Serves the README's OpenResty recipe (its ```nginx block, as written but for its listen port
# and error page root) with nginx's Lua module, and checks that a down canary is rolled back:
# its requests fail with 502, which the recipe's error_page redirects internally to /50x.html
# (emptying ngx.ctx, logging in that location), and each must still be recorded as the
# canary's failure. One nginx process (master_process off), on free ports of 127.0.0.1, in a
# temporary directory; the canary is a unix socket nothing listens on; each request gives up
# after 5 s. nginx is stopped by its pid on exit. Usage: openresty.sh LIBRARY (test.sh passes
# the library it built). Installs nginx, libnginx-mod-http-lua and curl with .ci/apt-install when missing
# (which starts no service: no default site on :80).
set -euo pipefail
cd "$(dirname "$0")/../.." # the repository root
lib=$(realpath "$1")

modules=/usr/lib/nginx/modules
if ! command -v nginx >/dev/null || [ ! -f "$modules/ngx_http_lua_module.so" ]; then
  .ci/apt-install nginx libnginx-mod-http-lua
fi

tmp=$(mktemp -d)
mkdir -p "$tmp/conf" "$tmp/logs" "$tmp/html"
echo "the error page" >"$tmp/html/50x.html"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -n 20 "$tmp/logs/error.log" >&2 || true
  exit 1
}

# shellcheck source=../free_port.sh
. bindings/free_port.sh
need_curl
port=$(free_port)
stable_port=$(free_port)
control_port=$(free_port)

# The README's recipe, with this test's port and error page.
recipe=$(awk '/^## In OpenResty/ { section = 1 } section && /^```nginx$/ { block = 1; next }
              block && /^```$/ { exit } block' bindings/lua/README.md)
grep -q "listen 80;" <<<"$recipe" || fail "the README's nginx block has no 'listen 80;'"
grep -q "error_page 500 502 503 504 /50x.html;" <<<"$recipe" || fail "the README's nginx block has no error_page"
recipe=${recipe/listen 80;/listen 127.0.0.1:$port;}
recipe=${recipe//\/usr\/share\/nginx\/html/$tmp/html}

cat >"$tmp/conf/nginx.conf" <<CONF
load_module $modules/ndk_http_module.so;
load_module $modules/ngx_http_lua_module.so;
daemon off;
master_process off;
pid logs/nginx.pid;
error_log logs/error.log notice;
env PGATE_LIB;
events { worker_connections 64; }
http {
    access_log off;
    lua_package_path "$PWD/bindings/lua/?.lua;;";
    # The recipe's documents: half the traffic to a canary, judged from 10 samples on.
    init_by_lua_block {
        CONFIG_JSON = '{"environment": {"canary": {"traffic_percent": 50}}}'
        SLO_JSON = '{"min_samples": 10, "evaluation_interval_ms": 1}'
    }
    upstream checkout_v1 { server 127.0.0.1:$stable_port; }
    upstream checkout_v2 { server unix:$tmp/canary.sock; }  # down: nothing listens there
    server {
        listen 127.0.0.1:$stable_port;
        location / { return 200 "stable\n"; }
    }
    server { # the worker's gate, as this test reads it
        listen 127.0.0.1:$control_port;
        location / {
            content_by_lua_block {
                ngx.say(GATE:state().environment, " ", GATE:rollback_history_json())
            }
        }
    }
$recipe
}
CONF

nginx -p "$tmp" -c conf/nginx.conf -t -q || fail "nginx -t refused the README's recipe"
PGATE_LIB="$lib" nginx -p "$tmp" -c conf/nginx.conf &
pid=$!
for _ in $(seq 100); do
  curl -m 5 -fs -o /dev/null "http://127.0.0.1:$control_port/" && break
  kill -0 "$pid" 2>/dev/null || fail "nginx exited"
  sleep 0.1
done
[ "$(curl -m 5 -fs "http://127.0.0.1:$control_port/")" = "canary []" ] || fail "the gate did not start in canary"

# 60 requests, each with a session of its own: about half reach the canary (502) until the
# gate rolls it back, every later one reaches the stable version.
codes=()
for i in $(seq 60); do
  codes+=("$(curl -m 5 -s -o /dev/null -w '%{http_code}' -b "session=user-$i" "http://127.0.0.1:$port/")")
done
failures=$(printf '%s\n' "${codes[@]}" | grep -c '^502$' || true)
others=$(printf '%s\n' "${codes[@]}" | grep -cv '^\(200\|502\)$' || true)
[ "$others" -eq 0 ] || fail "answers neither 200 nor 502: ${codes[*]}"
[ "$failures" -gt 0 ] || fail "no request reached the down canary: ${codes[*]}"
state=$(curl -m 5 -fs "http://127.0.0.1:$control_port/")
[[ "$state" == "production [{"* && "$state" != *'"trigger":"manual"'* ]] ||
  fail "the down canary was not rolled back (gate: $state) after $failures failures: ${codes[*]}"
[ "$(printf '%s\n' "${codes[@]: -20}" | grep -cv '^200$' || true)" -eq 0 ] ||
  fail "requests reached the canary after its rollback: ${codes[*]}"
echo "openresty recipe: the down canary rolled back after $failures failures (502 behind error_page)"
