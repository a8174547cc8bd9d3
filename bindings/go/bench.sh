#!/usr/bin/env bash
# Paired benchmark (not run by CI) of the Go reverse-proxy middleware, for issue 12's budget:
# the proxy's CPU per request at most 1.02x that of the same proxy splitting by FNV and
# recording nothing. A proxy process of its own (the program e2e/, mode `bench`, see
# e2e/bench.go) serves on two loopback ports:
#   A: the baseline (internal/fnvsplit): two httputil.ReverseProxys, the routing key read as
#      canaryproxy reads it (the X-Request-Id header, else the client's address), split by
#      FNV-1a of the key, nothing recorded;
#   B: canaryproxy.Proxy over a gate (in memory; PGATE_BENCH_STORE=1 gives it a SQLite store
#      with sync_interval_ms ${PGATE_BENCH_SYNC_MS:-250}, as the e2e test's): routes by the
#      gate, records every outcome. No request log, nothing else on the request path.
# Both send 20 % of keys to a canary upstream and the rest to a stable one, each variant
# through its own connection pool (64 idle connections per upstream); both upstreams are
# served by a second process (e2e upstreams: 200 and a 7-byte body). Each run is
# `wrk -t1 -c32 -d1s` with a new X-Request-Id per request (a wrk Lua script) against one
# port; the rounds run A then B, or B then A (alternating by round), after one warm-up run
# each. Per run: the throughput (wrk's requests/s) and the proxy process's CPU per request
# (its CPU-time clock, in nanoseconds, every thread: the runtime's, the GC's, the gate's
# sync thread's, over the run, divided by wrk's request count). Prints each round, then the
# median and range of the B/A ratios of both, against the budget (CPU per request B/A at
# most 1.02x; throughput is reported, no budget). The load average before and after is
# printed: on a busy host the rounds scatter, and the A/A control says by how much.
# Usage: bench.sh [rounds] (default 121; ~4.5 min with the builds done); PGATE_BENCH_SECONDS
# (per run, default 1: the host's speed drifts within seconds, so short adjacent runs and many
# rounds give the tighter median), PGATE_BENCH_CONNECTIONS (default 32);
# PGATE_BENCH_CONTROL=1 makes B a second FNV-split proxy (the A/A noise floor, measured the
# same way); PGATE_BENCH_TWO_PROCESSES=1 serves A and B from two proxy processes instead of
# one (by default one process serves both: the same runtime, the same GC state, the same
# scheduler, so nothing differs between them but the handler; the gate, and its store's
# thread, then exist during A's runs too; with two processes, A's holds an idle gate too);
# PGATE_BENCH_CPUPROFILE=DIR writes a CPU profile of
# each proxy process (DIR/AB.pprof, or DIR/A.pprof and DIR/B.pprof) and the program
# (DIR/e2e), for `go tool pprof -top DIR/e2e DIR/B.pprof`. PGATE_BENCH_PIN=0 turns off the
# pinning described below. As root, every process runs at
# nice -20 (fewer preemptions by other work). Every process started here is stopped by its
# pid on exit; all on 127.0.0.1; every load run is bounded by wrk's -d (and a timeout).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-121}
seconds=${PGATE_BENCH_SECONDS:-1}
connections=${PGATE_BENCH_CONNECTIONS:-32}
sync_ms=${PGATE_BENCH_SYNC_MS:-250}
percent=20
profile_dir=${PGATE_BENCH_CPUPROFILE:-}

# shellcheck source=loopback.sh
. "$here/loopback.sh"
# shellcheck source=../ab_rounds.sh
. "$here/../ab_rounds.sh"
install_wrk
need_curl

tmp=$(mktemp -d)
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build the library and bindings/go/e2e"
build_e2e "$tmp/e2e"

stable_port=$(free_port)
canary_port=$(free_port)
declare -A port=([A]=$(free_port) [B]=$(free_port))
nice=()
[ "$(id -u)" -ne 0 ] || nice=(nice -n -20) # fewer preemptions by other work on the host
# Pinning (default on with 2 or more CPUs; PGATE_BENCH_PIN=0 turns it off): the proxy
# processes on CPU 0 with GOMAXPROCS=1, the upstreams and wrk on CPU 1, so the load generator
# never competes with the proxy measured, and the proxy's scheduler has no idle core to spin on.
pin_proxy=()
pin_load=()
if [ "${PGATE_BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  pin_proxy=(taskset -c 0 env GOMAXPROCS=1)
  pin_load=(taskset -c 1)
fi

store=""
gate="in memory"
if [ "${PGATE_BENCH_STORE:-0}" = 1 ]; then
  store=', "store": {"sqlite": {"path": "'"$tmp/bench.db"'", "sync_interval_ms": '"$sync_ms"'}}'
  gate="SQLite store, sync_interval_ms $sync_ms"
fi
echo '{"gate": "bench", "environment": {"canary": {"traffic_percent": '"$percent"'}}'"$store"'}' >"$tmp/gate.json"
b_what="canaryproxy.Proxy, gate $gate"
control=()
if [ -n "${PGATE_BENCH_CONTROL:-}" ]; then # the noise floor: B is A again
  control=(-control)
  b_what="a second FNV-split proxy (A/A control)"
fi
write_ids_lua "$tmp/ids.lua"

"${nice[@]}" "${pin_load[@]}" env GOMAXPROCS=1 "$tmp/e2e" upstreams -stable "127.0.0.1:$stable_port" -canary "127.0.0.1:$canary_port" \
  -fail-file "$tmp/never" 2>"$tmp/upstreams.err" &
pids+=($!)
# proxy <name> <flags>: one bench process, its pid in proxy_pid[name]
declare -A proxy_pid
proxy() {
  local name=$1 profile=()
  shift
  [ -z "$profile_dir" ] || profile=(-cpuprofile "$tmp/$name.pprof")
  "${nice[@]}" "${pin_proxy[@]}" "$tmp/e2e" bench "$@" "${control[@]}" -percent "$percent" -config "$tmp/gate.json" \
    -stable "http://127.0.0.1:$stable_port" -canary "http://127.0.0.1:$canary_port" "${profile[@]}" \
    2>"$tmp/$name.err" &
  pids+=($!)
  proxy_pid[$name]=$!
}
if [ -z "${PGATE_BENCH_TWO_PROCESSES:-}" ]; then
  harness="one proxy process serving A and B"
  proxy AB -a "127.0.0.1:${port[A]}" -b "127.0.0.1:${port[B]}"
  declare -A pid=([A]=${proxy_pid[AB]} [B]=${proxy_pid[AB]})
else
  harness="two proxy processes, one per variant"
  proxy A -a "127.0.0.1:${port[A]}"
  proxy B -b "127.0.0.1:${port[B]}"
  declare -A pid=([A]=${proxy_pid[A]} [B]=${proxy_pid[B]})
fi
for p in "$stable_port" "${port[A]}" "${port[B]}"; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
  curl -fs -o /dev/null "http://127.0.0.1:$p/" || { echo "nothing answers on port $p" >&2; cat "$tmp"/*.err >&2; exit 1; }
done
# load <variant> <file>: one wrk run against the variant's port, its output into file
load() {
  "${nice[@]}" "${pin_load[@]}" timeout $((seconds + 30)) wrk -t1 -c"$connections" -d"${seconds}s" -s "$tmp/ids.lua" \
    "http://127.0.0.1:${port[$1]}/" >"$2"
}
# run <variant>: prints "<requests/s> <CPU microseconds per request>"
run() {
  local before after
  before=$(cpu_ns "${pid[$1]}")
  load "$1" "$tmp/wrk.out"
  after=$(cpu_ns "${pid[$1]}")
  wrk_figures "$1" "$tmp/wrk.out" $((after - before))
}
echo "== go bench.sh, $(date -u '+%Y-%m-%d %H:%M:%S') UTC, $(nproc) CPUs, $(go version | awk '{print $3}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: FNV-split proxy; B: $b_what; $percent % canary; $harness${nice[*]:+; ${nice[*]}}${pin_proxy[*]:+; proxy: ${pin_proxy[*]}, upstreams and wrk: ${pin_load[*]}}"
echo "== warm-up"
run A >/dev/null
run B >/dev/null
echo "== $rounds rounds, wrk -t1 -c$connections -d${seconds}s, a new X-Request-Id per request"
echo "cpu us/req: the proxy process's CPU time (its CPU-time clock, every thread) over the run / wrk's requests"
ab_rounds "$rounds"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
stop_all
# gate_at <start|exit>: where B's gate stood then, as its proxy process wrote it
gate_at() { cat "$tmp"/*B.err | sed -n "s/.*bench: gate at $1: //p"; }
if [ -n "$profile_dir" ]; then
  mkdir -p "$profile_dir"
  cp "$tmp"/*.pprof "$tmp/e2e" "$profile_dir/"
  echo "CPU profiles: $(cd "$profile_dir" && ls ./*.pprof | tr '\n' ' ')in $profile_dir (go tool pprof -top $profile_dir/e2e <profile>)"
fi

# summary <column>: "median (min – max), 95 % CI of the median lo – hi" of a column of the
# ratios (the interval by a seeded bootstrap: 4 000 resamples of the rounds)
summary() {
  printf '%s\n' "${ratios[@]}" | awk -v c="$1" '{print $c}' | python3 -c '
import random, sys
r = sorted(float(x) for x in sys.stdin)
med = lambda v: (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
rng = random.Random(1)
m = sorted(med(sorted(rng.choice(r) for _ in r)) for _ in range(4000))
print("%.3f (%.3f – %.3f), 95 %% CI of the median %.3f – %.3f" % (med(r), r[0], r[-1], m[100], m[3899]))'
}
tput=$(summary 1)
cpu=$(summary 2)
echo "load average after: $load_after"
echo "B/A over $rounds rounds, median (range): CPU per request ${cpu}"
echo "                                       throughput ${tput}"
if [ -n "${PGATE_BENCH_CONTROL:-}" ]; then
  echo "A/A control: B is A again, so the medians' distance from 1.000 and the ranges are the noise floor"
  exit 0
fi
if [ "$(gate_at exit)" != "$(gate_at start)" ]; then
  echo "B's gate moved during the run (at start: $(gate_at start); at exit: $(gate_at exit)): its split changed, the figures do not compare" >&2
  exit 1
fi
echo "B's gate at start and at exit: $(gate_at exit) (its split never changed)"
hi=${cpu##* }
verdict=$(awk -v c="${cpu%% *}" -v hi="$hi" 'BEGIN {print (hi <= 1.02) ? "met (the whole interval)" : (c <= 1.02) ? "met by the median, not by the interval" : "NOT met"}')
echo "budget: CPU per request B/A at most 1.02x: $verdict (median ${cpu%% *}x, upper bound ${hi}x)"
echo "(read it beside an A/A control, PGATE_BENCH_CONTROL=1 $0 $rounds: a median no further from 1 than the control's is noise)"
