#!/usr/bin/env bash
# End-to-end test of the nginx module under load, on loopback only. One nginx (2 workers)
# serves, on free ports of 127.0.0.1:
#   - proxies for gates `aa` (A/A: both of its upstreams are healthy), `checkout` and `abort`,
#     each routing by $promotion_gate_<name> to its canary or stable upstream{};
#   - the upstream servers themselves (extra server blocks): stable answers 200, checkout's
#     canary answers 500 while the file $tmp/canary-fails exists; abort's canary is a Python
#     server answering 500 after a second;
#   - /gate/status beside each proxy, /metrics beside checkout's.
# The gates keep their state in one SQLite store in the temporary directory. Checks, in order:
#   1. the split of a wrk run through `aa` matches its canary share; a request id always
#      reaches the same version (header and cookie keys);
#   2. once checkout's canary fails, it is rolled back: the canary failures counted in the
#      access log before every worker stopped routing there are at most $max_failures; the
#      rollback is in the error log; status and metrics say production (promtool checks the
#      exposition: without promtool the test fails, unless PGATE_NO_PROMTOOL=1);
#   3. after `nginx -s reload` (SIGHUP) and after a worker killed with SIGKILL, checkout
#      stays rolled back and routes nothing to the canary;
#   4. overrides (checkout's document names the header X-Canary and the cookie pgate_version):
#      after the rollback, `canary` still reaches the canary upstream and `stable` the stable
#      one, the header before the cookie; the forced outcomes are counted apart
#      (promotion_forced_outcomes_total), not in the cohorts (promotion_window_requests); a
#      config swap stored by another process that renames the header is followed;
#   5. client aborts (499) to a canary that would answer 500 are not counted as failures (no
#      rollback), the same requests answered are (rollback);
#   6. the A/A gate rolled nothing back.
# Usage: e2e.sh <module.so> (test.sh builds it). Every process started here is stopped by its
# pid on exit (PGATE_E2E_KEEP=1 keeps the temporary directory). A wrk run or a request of a
# check that fails fails the test. Last line:
#   e2e nginx: <N> canary failures before rollback across <W> workers; restart kept rollback: yes|no
set -euo pipefail

module=$(realpath "$1")
max_failures=${PGATE_E2E_MAX_FAILURES:-15}
workers=2
load_seconds=3
connections=${PGATE_E2E_CONNECTIONS:-16}

tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/conf" "$tmp/logs" "$tmp/store"
master=""
slow=""
cleanup() {
  if [ -n "$slow" ]; then kill "$slow" 2>/dev/null || true; fi
  if [ -n "$master" ]; then
    local workers_left
    workers_left=$(pgrep -P "$master" || true)
    kill -QUIT "$master" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    if kill -KILL "$master" 2>/dev/null; then # it did not stop: neither may its workers
      for pid in $workers_left; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    wait "$master" 2>/dev/null || true
  fi
  if [ -n "${PGATE_E2E_KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "-- error log (last 30 lines)" >&2
  tail -n 30 "$tmp/logs/error.log" >&2 || true
  exit 1
}

# shellcheck source=../free_port.sh
. "$(dirname "$0")/../free_port.sh"
need_curl
command -v pgrep >/dev/null || "$(dirname "$0")/../../.ci/apt-install" procps # nginx's workers
aa_port=$(free_port)
checkout_port=$(free_port)
stable_port=$(free_port)
canary_port=$(free_port)
abort_port=$(free_port)
slow_port=$(free_port)

user_line=""
if [ "$(id -u)" -eq 0 ]; then # workers run as nobody: the module opens the store as them
  user_line="user nobody nogroup;"
  chown nobody:nogroup "$tmp/store"
fi

for gate in aa:20 checkout:20 abort:100; do
  overrides=""
  [ "${gate%:*}" = checkout ] && overrides='"overrides": {"header": "X-Canary", "cookie": "pgate_version"},'
  cat >"$tmp/conf/${gate%:*}.json" <<JSON
{"gate": "${gate%:*}",
 "environment": {"canary": {"traffic_percent": ${gate#*:}}}, $overrides
 "store": {"sqlite": {"path": "$tmp/store/gates.db", "sync_interval_ms": 20,
                     "fleet_judging": false}}}
JSON
done

cat >"$tmp/conf/nginx.conf" <<CONF
$user_line
load_module $module;
worker_processes $workers;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    log_format aa '\$pid \$promotion_gate_aa \$upstream_status \$status';
    log_format checkout '\$pid \$promotion_gate_checkout \$upstream_status \$status';
    log_format abort '\$pid \$promotion_gate_abort \$upstream_status \$status \$upstream_response_time';

    promotion_gate aa aa.json;
    promotion_gate checkout checkout.json key=\$http_x_request_id key=\$cookie_uid;
    promotion_gate abort abort.json;

    upstream aa_stable { server 127.0.0.1:$stable_port; keepalive 16; }
    upstream aa_canary { server 127.0.0.1:$stable_port; keepalive 16; }
    upstream checkout_stable { server 127.0.0.1:$stable_port; keepalive 16; }
    upstream checkout_canary { server 127.0.0.1:$canary_port; keepalive 16; }
    upstream abort_stable { server 127.0.0.1:$stable_port; }
    upstream abort_canary { server 127.0.0.1:$slow_port; }

    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 127.0.0.1:$aa_port reuseport;
        access_log logs/aa.log aa;
        location / { proxy_pass http://aa_\$promotion_gate_aa; }
        location = /gate/status { promotion_gate_status aa; }
    }
    server {
        listen 127.0.0.1:$checkout_port reuseport;
        access_log logs/checkout.log checkout;
        location / { proxy_pass http://checkout_\$promotion_gate_checkout; }
        location = /gate/status { promotion_gate_status checkout; }
        location = /metrics { promotion_gate_metrics; }
    }
    server {
        listen 127.0.0.1:$abort_port;
        access_log logs/abort.log abort;
        location / { proxy_pass http://abort_\$promotion_gate_abort; }
        location = /gate/status { promotion_gate_status abort; }
    }
    server {
        listen 127.0.0.1:$stable_port;
        location / { return 200 "stable\n"; }
    }
    server {
        listen 127.0.0.1:$canary_port;
        location / {
            if (-f $tmp/canary-fails) { return 500 "canary fails\n"; }
            return 200 "canary\n";
        }
    }
}
CONF

nginx -p "$tmp" -c conf/nginx.conf -t -q || fail "nginx -t refused the configuration"
nginx -p "$tmp" -c conf/nginx.conf &
master=$!

worker_pids() { pgrep -P "$master" | sort || true; }
wait_workers() { # until $workers workers run, none of them in $1
  for _ in $(seq 100); do
    local pids
    pids=$(worker_pids)
    if [ "$(echo "$pids" | grep -c .)" -eq "$workers" ] && ! grep -qxF -f <(echo "${1:-none}") <<<"$pids"; then
      return 0
    fi
    sleep 0.1
  done
  fail "workers did not start (have: $(worker_pids | tr '\n' ' '))"
}
wait_workers
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$aa_port/gate/status" >/dev/null && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$aa_port/gate/status" || fail "nothing answers on port $aa_port"

# field <json> <name>: a top-level string or number field of the status document
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# Asks for the status over new connections until both workers answered; prints each answer.
statuses() {
  local port=$1 seen="" answer pid
  for _ in $(seq 200); do
    answer=$(curl -fs "http://127.0.0.1:$port/gate/status")
    pid=$(field "$answer" worker_pid)
    if ! grep -qw "$pid" <<<"$seen"; then
      seen="$seen $pid"
      echo "$answer"
    fi
    [ "$(wc -w <<<"$seen")" -ge "$workers" ] && return 0
  done
  fail "the status location was not answered by $workers workers (only$seen)"
}
# every worker's status answer from port $1, spaces removed, into the array `answers`: false
# (not an exit: callers say what failed) unless all $workers answered. Run in this shell, not in
# a $(...) list of a for loop, where a failure inside would be lost and the loop would check
# whichever answers came, or none.
answers=()
read_statuses() {
  local out
  out=$(statuses "$1") || return 1
  mapfile -t answers < <(tr -d ' ' <<<"$out")
  [ "${#answers[@]}" -eq "$workers" ]
}
# load <wrk arguments>...: one wrk run, its Requests/sec and Non-2xx lines shown; fails the test
# when wrk fails (a failed run sent less load, or none, than the checks after it assume)
load() {
  wrk "$@" >"$tmp/wrk.out" || fail "wrk $* failed: $(cat "$tmp/wrk.out")"
  grep -E 'Requests/sec|Non-2xx' "$tmp/wrk.out" || true
}
# canary lines / all lines of an access log from line $2 on
count() { tail -n +"$2" "$1" | awk -v v="$3" '$2 == v' | grep -c . || true; }

echo "== 1. split (gate aa, 20 % canary): wrk -t2 -c$connections -d${load_seconds}s"
load -t2 -c"$connections" -d${load_seconds}s "http://127.0.0.1:$aa_port/"
total=$(grep -c . "$tmp/logs/aa.log")
canary=$(count "$tmp/logs/aa.log" 1 canary)
share=$(python3 -c "print(round(100 * $canary / $total, 2))")
echo "aa: $canary of $total requests to the canary ($share %)"
[ "$total" -ge 1000 ] || fail "too few requests to judge the split: $total"
python3 -c "import sys; sys.exit(0 if 17 <= $share <= 23 else 1)" || fail "split $share % is not 20 +- 3 %"

for key in "-H X-Request-Id:order-42" "-b uid=user-7"; do
  # each of the 20 answers counts: a failed request fails the test (in a pipeline, it was lost)
  versions=""
  for _ in $(seq 20); do
    # shellcheck disable=SC2086
    version=$(curl -fs $key "http://127.0.0.1:$checkout_port/") || fail "curl $key failed after $(grep -c . <<<"$versions") answers"
    versions+="$version"$'\n'
  done
  versions=$(sort -u <<<"$versions" | sed '/^$/d')
  [ "$(echo "$versions" | grep -c .)" -eq 1 ] || fail "key '$key' reached more than one version: $versions"
  echo "key '$key' -> always $versions"
done

echo "== 2. checkout's canary fails: wrk -t2 -c$connections -d${load_seconds}s"
start=$(($(grep -c . "$tmp/logs/checkout.log") + 1))
touch "$tmp/canary-fails"
load -t2 -c"$connections" -d${load_seconds}s "http://127.0.0.1:$checkout_port/"
tail -n +"$start" "$tmp/logs/checkout.log" >"$tmp/phase2.log"
failures=$(awk '$2 == "canary" && $3 == "500"' "$tmp/phase2.log" | grep -c . || true)
canary_total=$(count "$tmp/phase2.log" 1 canary)
phase2_total=$(grep -c . "$tmp/phase2.log")
serving=$(awk '{print $1}' "$tmp/phase2.log" | sort -u | grep -c .)
per_worker=$(awk '$2 == "canary" && $3 == "500" {n[$1]++} END {for (p in n) printf "%s:%d ", p, n[p]}' "$tmp/phase2.log")
last_canary=$(awk '$2 == "canary" {n = NR} END {print n + 0}' "$tmp/phase2.log")
echo "checkout: $phase2_total requests by $serving workers, $canary_total to the canary," \
  "$failures failed (per worker pid: $per_worker); the last canary request is line $last_canary"
[ "$serving" -eq "$workers" ] || fail "only $serving of $workers workers served the load"
[ "$failures" -ge 1 ] || fail "no canary failure was seen: the canary never failed"
[ "$last_canary" -le $((phase2_total / 2)) ] || fail "the canary was still routed to late in the run"

read_statuses "$checkout_port" || fail "not every worker answered the status location"
for answer in "${answers[@]}"; do
  [ "$(field "$answer" environment)" = production ] || fail "a worker still routes to the canary: $answer"
done
echo "status: production on both workers"
history=$(curl -fs "http://127.0.0.1:$checkout_port/gate/status")
grep -q '"trigger":"automatic"' <<<"$history" || fail "no automatic rollback in the history: $history"
sleep 0.2 # the worker timer writes queued library lines every 50 ms
grep -q 'promotion.rollback' "$tmp/logs/error.log" || fail "no rollback line in the error log"
grep 'promotion.rollback' "$tmp/logs/error.log" | head -n 1 | cut -c1-220
# Each worker logs the gate's changes (its own rollback, or the other worker's from the store).
changes=$(grep -c 'promotion gate "checkout": state change: .*"kind":"rollback"' "$tmp/logs/error.log" || true)
[ "$changes" -ge "$workers" ] || fail "$changes of $workers workers logged the rollback as a state change"
echo "state change lines: $changes, e.g.:"
grep 'promotion gate "checkout": state change: .*"kind":"rollback"' "$tmp/logs/error.log" | head -n 1 | cut -c1-220

curl -fs "http://127.0.0.1:$checkout_port/metrics" >"$tmp/metrics.txt"
grep -q '^promotion_environment{gate="checkout",environment="production"} 1' "$tmp/metrics.txt" ||
  fail "the metrics do not say checkout is in production: $(grep promotion_environment "$tmp/metrics.txt")"
grep -q '^promotion_health_score{gate="aa"}' "$tmp/metrics.txt" || fail "no health score of gate aa"
if command -v promtool >/dev/null; then
  promtool check metrics <"$tmp/metrics.txt" || fail "promtool refused the exposition"
  echo "metrics: promtool check metrics passed"
elif [ "${PGATE_NO_PROMTOOL:-0}" = 1 ]; then
  echo "metrics: promtool not installed, format not checked (PGATE_NO_PROMTOOL=1)"
else
  fail "promtool is not installed (Debian's prometheus; test.sh installs it): install it, or set PGATE_NO_PROMTOOL=1 to skip the format check"
fi

# Sends a short load and fails if any request reached checkout's canary.
no_canary_after() {
  local from
  from=$(($(grep -c . "$tmp/logs/checkout.log") + 1))
  load -t1 -c8 -d1s "http://127.0.0.1:$checkout_port/" >/dev/null
  local n
  n=$(count "$tmp/logs/checkout.log" "$from" canary)
  [ "$n" -eq 0 ] || return 1
  read_statuses "$checkout_port" || return 1
  for answer in "${answers[@]}"; do
    [ "$(field "$answer" environment)" = production ] || return 1
  done
}

echo "== 3. reload and a killed worker"
kept=yes
old=$(worker_pids)
kill -HUP "$master"
wait_workers "$old"
no_canary_after || kept=no
echo "after reload (workers $(worker_pids | tr '\n' ' ')): kept=$kept"
victim=$(worker_pids | head -n 1)
kill -KILL "$victim"
wait_workers "$victim"
no_canary_after || kept=no
echo "after kill -9 of worker $victim (workers $(worker_pids | tr '\n' ' ')): kept=$kept"

echo "== 4. overrides after the rollback (checkout: header X-Canary, cookie pgate_version)"
# worker_counts: for each worker, "<pid> <forced outcomes> <cohort requests>" of checkout
# (promotion_forced_outcomes_total, promotion_window_requests summed over the cohorts): the
# status and the metrics asked over one connection, so both from one worker. The two workers'
# windows differ (the one started after the kill saw less), so each is compared with itself.
worker_counts() {
  local seen="" line
  for _ in $(seq 200); do
    line=$(curl -fs "http://127.0.0.1:$checkout_port/gate/status" "http://127.0.0.1:$checkout_port/metrics" |
      python3 -c '
import json, sys
lines = sys.stdin.read().split("\n")
sums = {"promotion_forced_outcomes_total": 0, "promotion_window_requests": 0}
for line in lines[1:]:
    name = line.split("{")[0]
    if name in sums and "gate=\"checkout\"" in line:
        sums[name] += int(float(line.split()[-1]))
print(json.loads(lines[0])["worker_pid"], *sums.values())')
    grep -qw "${line%% *}" <<<"$seen" || { seen="$seen ${line%% *}"; echo "$line"; }
    [ "$(wc -w <<<"$seen")" -ge "$workers" ] && return 0
  done
  fail "the metrics were not answered by $workers workers (only$seen)"
}
before=$(worker_counts | sort)
forced=0
# forced_to <version> <curl arguments>...: the answer must come from that version's upstream
forced_to() {
  local want=$1 body
  shift
  body=$(curl -s "$@" "http://127.0.0.1:$checkout_port/")
  case "$want:$body" in
    canary:canary*|stable:stable) forced=$((forced + 1)) ;;
    *) fail "curl $* reached '$body', not the $want upstream" ;;
  esac
}
for _ in $(seq 5); do
  forced_to canary -H "X-Canary: canary"
  forced_to stable -H "X-Canary: STABLE"
done
forced_to canary -b "pgate_version=canary"
forced_to canary -b "uid=user-7; pgate_version=Canary"
forced_to stable -H "X-Canary: stable" -b "pgate_version=canary" # the header first
sleep 0.3 # the other worker pools the outcomes in its timer, every 50 ms
after=$(worker_counts | sort)
echo "overrides: $forced forced requests reached their version; per worker (pid, forced" \
  "outcomes, cohort requests): before $(tr '\n' ' ' <<<"$before")after $(tr '\n' ' ' <<<"$after")"
while read -r pid forced_before cohorts_before && read -r pid_after forced_after cohorts_after <&3; do
  [ "$pid" = "$pid_after" ] || fail "the workers changed during the overrides check"
  [ $((forced_after - forced_before)) -eq "$forced" ] ||
    fail "worker $pid: promotion_forced_outcomes_total rose by $((forced_after - forced_before)), not $forced"
  [ "$cohorts_after" -eq "$cohorts_before" ] ||
    fail "worker $pid: forced outcomes were counted in the cohorts ($cohorts_before -> $cohorts_after)"
done <<<"$before" 3<<<"$after"
routed=$(curl -s -H "X-Canary: blue" "http://127.0.0.1:$checkout_port/")
[ "$routed" = stable ] || fail "an ignored forcing value reached '$routed' after the rollback"
echo "overrides: an ignored value (blue) is routed by its bucket: $routed"
# Another process (the Python binding) swaps checkout's config in the store to read X-Force
# instead: the workers apply the write (sync 20 ms) and read the names again (50 ms timer).
library=$(ldd "$module" | awk '/libpromotion_gates_ffi/ {print $3}')
PYTHONPATH="$(dirname "$0")/../python/src" PROMOTION_GATES_LIBRARY="$library" \
  python3 - "$tmp/conf/checkout.json" <<'PY' || fail "the config swap failed"
import sys
from promotion_gates import Gate
with open(sys.argv[1]) as document, Gate(document.read()) as gate:
    config = gate.config
    config["overrides"] = {"header": "X-Force"}
    gate.swap_config(config)
PY
renamed=0
for _ in $(seq 60); do # 6 answers in a row from the canary, over new connections
  if [ "$(curl -s -H "X-Force: canary" "http://127.0.0.1:$checkout_port/")" = "canary fails" ]; then
    renamed=$((renamed + 1))
    [ "$renamed" -ge 6 ] && break
  else
    renamed=0
    sleep 0.05
  fi
done
[ "$renamed" -ge 6 ] || fail "after a config swap naming X-Force, X-Force: canary did not reach the canary"
routed=$(curl -s -H "X-Canary: canary" "http://127.0.0.1:$checkout_port/")
[ "$routed" = stable ] || fail "X-Canary still forced a request after the swap renamed it: $routed"
echo "overrides: after a config swap in the store, X-Force: canary reaches the canary, X-Canary no longer"

echo "== 5. client aborts are not counted (gate abort: 100 % canary, answering 500 after 1 s)"
# A canary that answers 500 after a second: Python, since nginx cannot delay its headers.
python3 - "$slow_port" <<'PY' &
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(1)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
PY
slow=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$slow_port") 2>/dev/null && break; sleep 0.1; done
# 40 clients give up after 0.3 s, before the SLO's latency target (500 ms): 499, never an
# upstream answer, so nothing recorded; then 20 wait for the 500s
seq 40 | xargs -P 40 -I{} curl -s -o /dev/null --max-time 0.3 "http://127.0.0.1:$abort_port/" || true
sleep 0.5
read_statuses "$abort_port" || fail "not every worker answered the status location"
for answer in "${answers[@]}"; do
  [ "$(field "$answer" environment)" = canary ] || fail "client aborts rolled the canary back: $answer"
done
aborts=$(awk '$4 == 499' "$tmp/logs/abort.log" | grep -c . || true)
[ "$aborts" -eq 40 ] || fail "expected 40 client aborts (499) in the access log, found $aborts: $(sort "$tmp/logs/abort.log" | uniq -c)"
echo "abort: 40 client aborts (499) later, still canary"
seq 20 | xargs -P 20 -I{} curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$abort_port/" || true
read_statuses "$abort_port" || fail "not every worker answered the status location"
for answer in "${answers[@]}"; do
  [ "$(field "$answer" environment)" = production ] || fail "20 answered 500s did not roll back: $answer"
done
echo "abort: the same requests answered (500) rolled it back"
kill "$slow" && wait "$slow" 2>/dev/null || true
slow=""

echo "== 6. the A/A gate"
read_statuses "$aa_port" || fail "not every worker answered the status location"
for answer in "${answers[@]}"; do
  [ "$(field "$answer" environment)" = canary ] || fail "the A/A gate left its canary stage: $answer"
  [ "$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])["history"]))' "$answer")" -eq 0 ] ||
    fail "the A/A gate has history events: $answer"
done
echo "aa: still canary at 20 %, no history event"

[ "$kept" = yes ] || fail "the rollback did not survive a reload or a killed worker"
[ "$failures" -le "$max_failures" ] || fail "$failures canary failures before rollback (at most $max_failures)"
echo "e2e nginx: $failures canary failures before rollback across $serving workers; restart kept rollback: $kept"
