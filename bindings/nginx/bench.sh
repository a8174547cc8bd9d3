#!/usr/bin/env bash
# Paired benchmark (not run by CI): the same nginx proxying through a server block that splits
# by `split_clients` (A) and through one that splits by the promotion-gates module (B), alternated in one run (A B, then B A, ...), each run a
# `wrk` load of a few seconds. Measures each run's throughput (wrk's requests/s) and the CPU
# time of the proxy's workers per request (each worker's CPU-time clock, in nanoseconds, all
# threads, so the gate's sync thread counts). Prints each round and the medians of the B/A ratios,
# against the budget of at least 0.95x throughput at no more than 1.05x CPU per request. Fails
# when a port answers nothing within 10 s or a wrk run fails or sees non-2xx answers or socket
# errors (fast 5xx answers would count as throughput).
# Both route 20 % to a canary upstream and 80 % to a stable one, both served by a second nginx
# (one worker); B's gate keeps its state in a SQLite store (sync_interval_ms
# ${PGATE_BENCH_SYNC_MS:-250}). As root, every process runs at nice -20 (fewer preemptions).
# Usage: bench.sh [rounds] (default 7); PGATE_BENCH_WORKERS (proxy workers, default 1),
# PGATE_BENCH_SECONDS (per run, default 4), PGATE_BENCH_CONNECTIONS (default 32);
# PGATE_BENCH_CONTROL=1 makes B a second split_clients proxy (the A/A noise floor). B's gate
# always has its store: the module refuses a gate without one. A and B are two server blocks
# of one nginx (the same workers, so nothing differs between them but the split; the gate and
# its sync thread exist during A's runs too); PGATE_BENCH_TWO_NGINX=1 makes them two nginx.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../ab_rounds.sh
. "$here/../ab_rounds.sh"
rounds=${1:-7}
workers=${PGATE_BENCH_WORKERS:-1}
seconds=${PGATE_BENCH_SECONDS:-4}
connections=${PGATE_BENCH_CONNECTIONS:-32}
sync_ms=${PGATE_BENCH_SYNC_MS:-250}
module=$("$here/build.sh" | tail -n 1)

tmp=$(mktemp -d)
chmod 755 "$tmp"
masters=()
cleanup() {
  for pid in "${masters[@]}"; do kill -QUIT "$pid" 2>/dev/null || true; done
  for pid in "${masters[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=../free_port.sh
. "$here/../free_port.sh"
need_curl
command -v pgrep >/dev/null || "$here/../../.ci/apt-install" procps # nginx's workers
app_port=$(free_port)
declare -A port=([A]=$(free_port) [B]=$(free_port))
user_line=""
nice=()
if [ "$(id -u)" -eq 0 ]; then # fewer preemptions by other work on the host
  user_line="user nobody nogroup;"
  nice=(nice -n -20)
fi

# start <name> <worker count> <http block>: one nginx, its master's pid in masters[]
start() {
  mkdir -p "$tmp/$1/conf" "$tmp/$1/logs"
  cat >"$tmp/$1/conf/nginx.conf" <<CONF
$user_line
load_module $module;
worker_processes $2;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream app_stable { server 127.0.0.1:$app_port; keepalive 64; }
    upstream app_canary { server 127.0.0.1:$app_port; keepalive 64; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    $3
}
CONF
  "${nice[@]}" nginx -p "$tmp/$1" -c conf/nginx.conf &
  masters+=($!)
}

mkdir -p "$tmp/store"
[ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$tmp/store"
store=', "store": {"sqlite": {"path": "'"$tmp/store/bench.db"'", "sync_interval_ms": '"$sync_ms"', "fleet_judging": false}}'
echo '{"gate": "bench", "environment": {"canary": {"traffic_percent": 20}}'"$store"'}' >"$tmp/gate.json"
a_conf="split_clients \"\$request_id\" \$variant_a { 20% canary; * stable; }
    server { listen 127.0.0.1:${port[A]}; location / { proxy_pass http://app_\$variant_a; } }"
if [ -n "${PGATE_BENCH_CONTROL:-}" ]; then # the noise floor: B is A again
  b_conf="split_clients \"\$request_id\" \$variant_b { 20% canary; * stable; }
    server { listen 127.0.0.1:${port[B]}; location / { proxy_pass http://app_\$variant_b; } }"
else
  b_conf="promotion_gate bench $tmp/gate.json;
    server { listen 127.0.0.1:${port[B]}; location / { proxy_pass http://app_\$promotion_gate_bench; } }"
fi
start app 1 "server { listen 127.0.0.1:$app_port; location / { return 200 \"ok\n\"; } }"
if [ -z "${PGATE_BENCH_TWO_NGINX:-}" ]; then # A and B are two server blocks of one nginx
  start AB "$workers" "$a_conf
    $b_conf"
  declare -A master=([A]=${masters[1]} [B]=${masters[1]})
else
  start A "$workers" "$a_conf"
  start B "$workers" "$b_conf"
  declare -A master=([A]=${masters[1]} [B]=${masters[2]})
fi
for p in "$app_port" "${port[A]}" "${port[B]}"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
  curl -fs -o /dev/null "http://127.0.0.1:$p/" ||
    { echo "nothing answers on port $p" >&2; tail -n 20 "$tmp"/*/logs/error.log >&2; exit 1; }
done
# workers_cpu_ns <variant>: the CPU time of its workers so far, in nanoseconds
workers_cpu_ns() {
  # shellcheck disable=SC2046 # one pid per word
  cpu_ns $(pgrep -P "${master[$1]}")
}
# run <variant>: prints "<requests/s> <CPU microseconds per request>"; exits when wrk failed
# or saw errors (wrk_figures)
run() {
  local before after
  before=$(workers_cpu_ns "$1")
  "${nice[@]}" timeout $((seconds + 30)) wrk -t1 -c"$connections" -d"${seconds}s" \
    "http://127.0.0.1:${port[$1]}/" >"$tmp/wrk.out" || { echo "variant $1: wrk failed" >&2; cat "$tmp/wrk.out" >&2; exit 1; }
  after=$(workers_cpu_ns "$1")
  wrk_figures "$1" "$tmp/wrk.out" $((after - before))
}

echo "== warm-up"
run A >/dev/null
run B >/dev/null
echo "== $rounds rounds, $workers proxy worker(s), wrk -t1 -c$connections -d${seconds}s"
ab_rounds "$rounds"

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
tput=$(printf '%s\n' "${ratios[@]}" | awk '{print $1}' | median)
cpu=$(printf '%s\n' "${ratios[@]}" | awk '{print $2}' | median)
verdict=$(awk -v t="$tput" -v c="$cpu" 'BEGIN {print (t >= 0.95 && c <= 1.05) ? "met" : "NOT met"}')
echo "median B/A: throughput ${tput}x, CPU per request ${cpu}x (budget >= 0.95x at <= 1.05x: $verdict)"
