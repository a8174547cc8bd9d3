#!/usr/bin/env bash
# Builds the nginx module (build.sh), checks that `nginx -t` names the directive, the field and
# the value of bad configurations (a document without a store, a relative store path, a
# document that cannot be read, named by its gate and parameter: config or slo=; a key reading
# a declared gate's variable, or with no variable and empty once trimmed, while another variable
# named $promotion_gate_... is taken, and a constant key is warned of only when first, as each
# key after a constant one is) and that
# a declaration refused for its store's fleet_judging or for naming another declaration's gate,
# or a configuration refused after the declaration, leaves no store file behind, that as root
# the store is created as the workers' user (also with a `user` directive after http) and with
# its groups (refused where only the master's root group may write), that one
# request retried over 70 upstream servers is one outcome of its gate, that a canary failure
# redirected by error_page (to a static page or to a named location proxying to stable) is
# still the canary's outcome while a canary named by no upstream{} block (nginx tried no peer)
# is no outcome, that a dead canary pool ("no live upstreams") and a canary cutting its bodies
# short are failures (the dead pool's requests each with a latency above 0, and behind a slow
# error page timed to the upstream's end, not to the fallback's answer), that a gRPC canary's
# server-side grpc-status (in its header or its trailer) or a stream it ends without one is a
# failure while 0, a caller's error or a client leaving mid-stream or not reading past
# send_timeout is not, that a canary's invalid chunked body is its failure (buffering on and
# off) while a client that leaves a chunked body or stops reading is not (HTTP/1.1 and
# HTTP/2), that a request
# body the client cut short or malformed (HTTP/1.1 and HTTP/2, request buffering on and off)
# records nothing unless the canary had answered, also behind an error_page that proxies nginx's
# 400 to stable, while a gate read by `if` reaches its canary through an error page (`return
# 418`) and a second gate read in the error page's location is recorded (one read by
# proxy_pass is not credited with an error page's upstream resolved at run time), that a gate
# first read by a hash balancer's key records nothing, whatever attempts the request makes
# (also in an error page's upstream) and takes nothing from a gate read in its error page's
# location, that a gate first read while an upstream no gate chose is under way (by a mirror,
# by an error page's `set` after the not-modified filter's 412) records none of its attempts
# but the next upstream the request starts, as does one first read by a mirror's subrequest
# while the request's upstream waits for a slowly sent body or a cache lock (the upstream an
# error page starts after it, or after a malformed body's 400, is recorded, not a further
# error page's fallback; one a second gate read in the waiting upstream's proxy_set_header
# chose is not, also a cache lock's waiter's in an error page's location, and a gate an
# auth_request reads after a finalized upstream records the next, as do gates an
# auth_request and a try_files read in a malformed body's error page's location;
# each case checking its timing happened and its gates were read), that a
# granted upgrade is a success recorded and timed at its 101 (not the idle connection's life) and a refused
# one a failure, as are a 101 to a request that asked no upgrade and one to another protocol
# than asked (the Go middleware's rule, timed at the 101), that a
# status location holding an `if` answers and writes each gate's traffic_percent as the
# library's JSON does, that with master_process off the one process opens its gates and warns
# of a reload (which nginx does not support in that mode), that an override header with an underscore or a dot
# is warned of, that each request of tests/vectors/override_requests.tsv is forced by the value it lists
# (the forcing header and cookie read as the Go middleware reads them), that a key read from
# a header is taken with the tabs and spaces around it trimmed, that a key reading a gate's decision through a map is logged, that a client giving up on
# a hung canary is recorded as a slow success, that behind auth_request the main request's
# outcome is recorded (not the auth subrequest's), that an empty metrics body included by SSI
# raises no alert, that upstream latencies are timed in
# microseconds, that the library's threads in a worker block every signal (nginx's are the
# event loop's), that a worker that could not open its gate opens it once it can, and answers
# while a reopen attempt waits for a locked store, that a reload
# keeps the pooled evidence within the gate's window, that a reload refused (a document that
# cannot be read, a store that cannot be opened) leaves the running workers routing and
# recording, that a
# rollback one worker decided reaches the other within milliseconds, and one a scrape made
# (a preloaded shim) before the scraping worker's next timer tick, that
# the outcome counters read the same from both workers and never go down across a killed
# worker and a reload, that an outcome the library refuses is not shared and not logged a line
# each, nor a read of the override names that keeps failing a line a timer tick, that the
# ring's rules hold against a clock and ticks a test program sets (tests/ring_rules.c), that a ring slot claimed and never published holds up
# the pooling 100 ms at most, that one first seen at a stale cached time is waited for two
# timer ticks, that a reload finding a ring of another layout makes a new one and says so (the
# ring states made by a preloaded shim, tests/ring_shim.c), that each state change gets its own
# error log line, once, that a rollback made during a
# graceful exit is logged and that a worker draining after a reload still logs, and judges none
# of the new workers' outcomes by its old SLO while its own reach them, then runs the end-to-end test under load (e2e.sh, ~30 s;
# PGATE_NGINX_E2E=0 skips it). Installs what it lacks with .ci/apt-install, which starts no
# service (nginx, nginx-dev, wrk; prometheus for promtool; procps for ps and pgrep; curl). Run
# from anywhere.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS
module=$("$here/build.sh" | tail -n 1)
# module_cc <cc arguments>: compiles a program of tests/, which reads the module's own
# definitions (ngx_http_pgate.h), with the module's compiler flags and include paths (those of
# nginx's objs/Makefile), from the nginx sources build.sh configured
nginx_src=$(dirname "$(dirname "$module")")
module_flags=$(make -s -C "$nginx_src" -f objs/Makefile -f - pgate-flags <<<'pgate-flags: ; @echo $(CFLAGS) $(ALL_INCS)')
# shellcheck disable=SC2086 # the flags are words
module_cc() { (cd "$nginx_src" && cc $module_flags -I"$here" "$@"); }

# command:Debian package, for each tool this test calls that may be missing (ps and pgrep find
# the processes it started and nginx's workers)
missing=()
for need in promtool:prometheus ps:procps pgrep:procps; do
  command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
done
[ ${#missing[@]} -eq 0 ] || "$here/../../.ci/apt-install" "${missing[@]}" # (procps twice: no harm)

echo "== nginx -t names what is wrong"
tmp=$(mktemp -d)
# Every process this script starts in the background (nginx's master, the upstream servers, the
# clients) is recorded by `started $!` and stopped on exit, a failed check's too: the master
# with QUIT (its workers finish), the others with TERM (an upstream server accepts until
# killed, and a failure left it running under init, holding its port), each then waited for.
background=()
started() { background+=("$1"); }
stop_background() {
  local pid
  for pid in "${background[@]}"; do
    # (a pid no longer this shell's child is gone: it may have been reused since)
    [ "$(ps -o ppid= -p "$pid")" -eq $$ ] 2>/dev/null || continue
    if [ "$pid" = "${master:-}" ]; then kill -QUIT "$pid"; else kill "$pid"; fi 2>/dev/null || true
  done
  wait "${background[@]}" 2>/dev/null || true
}
trap 'stop_background; rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # as root, nginx -t opens a gate's store as the workers' user (nobody)
mkdir -p "$tmp/conf" "$tmp/logs"
mkdir -m 777 "$tmp/fleet" # the gates' stores: nginx -t and the workers open them as nobody
# gate_document <gate> <canary percent> [<more fields>, [<sync_interval_ms>]]: conf/<gate>.json,
# the gate's state kept in its own SQLite file (every gate needs a store)
gate_document() {
  echo "{\"gate\": \"$1\", \"environment\": {\"canary\": {\"traffic_percent\": $2}}, ${3:-}
 \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/$1.db\", \"sync_interval_ms\": ${4:-250},
                     \"fleet_judging\": false}}}" >"$tmp/conf/$1.json"
}
# canary_gates "<gate>..." <canary port> <stable port>: writes each gate's document (all its
# traffic to the canary) and prints its declaration and its upstream{} blocks <gate>_canary
# and <gate>_stable, one server each
canary_gates() {
  local gate
  for gate in $1; do
    gate_document "$gate" 100
    echo "promotion_gate $gate $gate.json;
    upstream ${gate}_canary { server 127.0.0.1:$2; }
    upstream ${gate}_stable { server 127.0.0.1:$3; }"
  done
}
echo '{"gate": "g", "environment": {"canary": {"traffic_percent": 150}}}' >"$tmp/conf/bad.json"
gate_document g 5
cp "$tmp/conf/g.json" "$tmp/conf/good.json"
echo '{"gate": "g", "store": {"sqlite": {"path": "/nonexistent/dir/g.db", "fleet_judging": false}}}' >"$tmp/conf/store.json"
# Refused declarations, each with a store of its own: a refusal opens nothing, so the store's
# file must not exist after nginx -t (the corrected configuration would start from its state)
echo "{\"gate\": \"g\", \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/refused-fleet.db\"}}}" >"$tmp/conf/fleet.json"
echo "{\"gate\": \"g\", \"environment\": {\"canary\": {\"traffic_percent\": 50}},
 \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/refused-twin.db\", \"fleet_judging\": false}}}" >"$tmp/conf/twin.json"
echo '{"gate": "g", "environment": {"canary": {"traffic_percent": 5}}}' >"$tmp/conf/nostore.json"
echo '{"gate": "g", "store": {"sqlite": {"path": "rel.db", "fleet_judging": false}}}' >"$tmp/conf/relative.json"
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
  if out=$(timeout 20 nginx -p "$tmp" -c conf/nginx.conf -t 2>&1); then
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
expect_refusal 'invalid environment.canary.traffic_percent = 150' 'promotion_gate g bad.json;'
expect_refusal 'state store /nonexistent/dir/g.db' 'promotion_gate g store.json;'
expect_refusal 'invalid store fleet_judging = true' 'promotion_gate g fleet.json;'
# no_store <path>: fails unless nginx -t left no store file at <path>
no_store() {
  [ ! -e "$1" ] || { echo "FAIL: the refused declaration opened its store $1" >&2; exit 1; }
  echo "no store written: $1"
}
no_store "$tmp/fleet/refused-fleet.db"
expect_refusal 'nostore.json" has no "store": each worker would keep a release state of its own' \
  'promotion_gate g nostore.json;'
# A relative store path is refused before anything opens it: nginx -t, run from a directory it
# may write, leaves no database there.
mkdir -m 777 "$tmp/cwd"
(cd "$tmp/cwd" && expect_refusal 'invalid store.sqlite.path = "rel.db" in' 'promotion_gate g relative.json;')
[ -z "$(ls -A "$tmp/cwd")" ] || { echo "FAIL: nginx -t left $(ls -A "$tmp/cwd") in its working directory" >&2; exit 1; }
expect_refusal 'min_samples = 1' 'promotion_gate g good.json slo=slo.json;'
# The SLO is checked against the gate's own config document, not the default config's 300 s
# window: a minute's interval fits an hour's window, the default 1 s interval no 5 s window.
gate_document hour 5 '"rollback_window_seconds": 3600,'
echo '{"evaluation_interval_ms": 60000}' >"$tmp/conf/minute.json"
gate_document short 5 '"rollback_window_seconds": 5,'
expect_refusal 'invalid evaluation_interval_ms = 1000: at most a tenth of rollback_window_seconds = 5' \
  'promotion_gate short short.json;'
no_store "$tmp/fleet/short.db"
expect_refusal 'good.json" names gate "g", as the document of promotion_gate "g" does' \
  'promotion_gate g good.json; promotion_gate h good.json;'
expect_refusal 'twin.json" names gate "g", as the document of promotion_gate "g" does' \
  'promotion_gate g good.json; promotion_gate h twin.json;'
no_store "$tmp/fleet/refused-twin.db"
expect_refusal 'invalid gate name "g-1" in "promotion_gate" directive' 'promotion_gate g-1 good.json;'
expect_refusal 'invalid parameter "keys=$http_x" in "promotion_gate" directive' 'promotion_gate g good.json keys=$http_x;'
# A key reading a declared gate's variable, its own or another's, declared before the key or
# after it, is refused with the parameter, the directive and its line (before any store is
# opened).
gate_document h 5
expect_refusal "invalid parameter \"key=\$promotion_gate_h\" in \"promotion_gate\" directive in $tmp/conf/nginx.conf:6: a key cannot read a gate's decision (\$promotion_gate_h is gate \"h\"'s)" \
  'promotion_gate g good.json key=$promotion_gate_h; promotion_gate h h.json;'
expect_refusal 'invalid parameter "key=${Promotion_Gate_h}-x" in "promotion_gate" directive in' \
  'promotion_gate h h.json; promotion_gate g good.json key=${Promotion_Gate_h}-x;'
expect_refusal 'invalid parameter "key=$promotion_gate_g" in "promotion_gate" directive in' \
  'promotion_gate g good.json key=$http_x_id key=$promotion_gate_g;'
no_store "$tmp/fleet/h.db"
# A first key with no variable is taken, with a warning (the configuration is refused by its
# status location naming gate g, which it does not declare, after the warning was written).
gate_document k 5
expect_refusal 'parameter "key=constant" of gate "k" in "promotion_gate" directive has no variable' \
  'promotion_gate k k.json key=constant;'
# One that is empty once trimmed is never taken (each request went on to the next key or
# $request_id, the constant's warning saying all reach one version): refused, a space or a tab,
# first or after a variable.
expect_refusal 'invalid parameter "key= " of gate "g" in "promotion_gate" directive: a key with no variable that is empty once its spaces and tabs are trimmed' \
  'promotion_gate g good.json "key= ";'
tab=$'\t'
expect_refusal "invalid parameter \"key= $tab \" of gate \"g\" in \"promotion_gate\" directive" \
  'promotion_gate g good.json key=$http_x_user "key= \t ";'
expect_refusal 'duplicate gate "g" in "promotion_gate" directive' 'promotion_gate g good.json; promotion_gate g good.json;'
# nginx variable names ignore case: $promotion_gate_G is $promotion_gate_g. Refused before the
# second gate's store is opened (it was refused at its variable, its store already made).
echo "{\"gate\": \"G\", \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/refused-case.db\",
 \"fleet_judging\": false}}}" >"$tmp/conf/case.json"
expect_refusal 'gate "G" in "promotion_gate" directive differs from gate "g" only in case' \
  'promotion_gate g good.json; promotion_gate G case.json;'
no_store "$tmp/fleet/refused-case.db"
# A map of the gate's variable's name, made first, lost its value to the gate's silently.
expect_refusal 'variable "$promotion_gate_g" of gate "g" in "promotion_gate" directive is already defined' \
  'map $uri $promotion_gate_g { default canary; } promotion_gate g good.json;'
# A document that cannot be read: the error names the directive, the gate, the parameter and
# the path (a build naming the path alone left the reader to guess which directive it was, and
# which of its documents), with the errno of the call that failed.
expect_refusal "promotion_gate \"g\": open() config \"$tmp/conf/missing.json\" failed (2: No such file or directory)" \
  'promotion_gate g missing.json;'
expect_refusal "promotion_gate \"g\": open() slo=\"$tmp/conf/missing.json\" failed (2: No such file or directory)" \
  'promotion_gate g good.json slo=missing.json;'
# Not a regular file: refused before it is opened (a FIFO blocked nginx -t for ever).
mkfifo "$tmp/conf/fifo.json"
expect_refusal "promotion_gate \"g\": config \"$tmp/conf/fifo.json\" is not a regular file" 'promotion_gate g fifo.json;'
expect_refusal "promotion_gate \"g\": slo=\"$tmp/conf/.\" is not a regular file" 'promotion_gate g good.json slo=.;'
# One content handler a location: a status location that also proxies lost one of the two.
expect_refusal '"promotion_gate_metrics" directive is in a location that already has a content handler' \
  'promotion_gate g good.json; server { listen 127.0.0.1:2; location / { promotion_gate_status g; promotion_gate_metrics; } }'
# ... and one written after it (proxy_pass replaced the handler silently), named by its line.
for directive in "promotion_gate_status g" promotion_gate_metrics; do
  expect_refusal "\"${directive%% *}\" in $tmp/conf/nginx.conf:6 is in a location whose content handler a later directive replaced" \
    "promotion_gate g good.json; server { listen 127.0.0.1:2; location / { $directive; proxy_pass http://127.0.0.1:1; } }"
done
: >"$tmp/conf/empty.json"
expect_refusal "promotion_gate \"g\": config \"$tmp/conf/empty.json\" is empty" 'promotion_gate g empty.json;'
expect_refusal "promotion_gate \"g\": slo=\"$tmp/conf/empty.json\" is empty" 'promotion_gate g good.json slo=empty.json;'
# A file holding less than its size says (sysfs says 4096 bytes): a short read, named so (a
# build reported "reading ... failed", with an errno that was no error's).
short=/sys/devices/system/cpu/online
if [ -r "$short" ] && [ "$(stat -c %s "$short")" -gt "$(wc -c <"$short")" ]; then
  expect_refusal "promotion_gate \"g\": slo=\"$short\": a short read, $(wc -c <"$short") of the $(stat -c %s "$short") bytes its size says" \
    "promotion_gate g good.json slo=$short;"
fi
# A document may be as large as the library reads (MAX_DOCUMENT_BYTES, 8 MiB): one of 2 MiB is
# taken (what refuses the configuration is then the status location's unknown gate), one
# past 8 MiB is refused.
gate_document large 5
python3 -c 'import sys; d = open(sys.argv[1]).read(); open(sys.argv[1], "w").write("{" + " " * (2 << 20) + d[1:])' \
  "$tmp/conf/large.json"
expect_refusal 'unknown gate "g" in "promotion_gate_status" directive' 'promotion_gate large large.json;'
truncate -s $(((8 << 20) + 1)) "$tmp/conf/large.json"
expect_refusal "promotion_gate \"large\": config \"$tmp/conf/large.json\" holds 8388609 bytes, more than a document may: at most 8388608" \
  'promotion_gate large large.json;'
expect_refusal 'duplicate parameter "slo=slo.json" in "promotion_gate" directive: the gate already has slo=' \
  'promotion_gate g good.json slo=good.json slo=slo.json;'
expect_refusal 'unknown gate "g" in "promotion_gate_status" directive' ''
# A configuration refused after the declaration (here at its key's unknown variable, which
# nginx finds once the http block is read) opens no store: the store is opened only when the
# whole configuration was accepted, when the gate's zone is made.
echo "{\"gate\": \"g\", \"store\": {\"sqlite\": {\"path\": \"$tmp/fleet/refused-late.db\",
 \"fleet_judging\": false}}}" >"$tmp/conf/late.json"
expect_refusal 'unknown "no_such_variable" variable' 'promotion_gate g late.json key=$no_such_variable;'
no_store "$tmp/fleet/refused-late.db"
# expect_accepted <http block lines> [<line before http>]: fails unless nginx -t accepts them
expect_accepted() {
  cat >"$tmp/conf/nginx.conf" <<CONF
load_module $module;
error_log logs/error.log;
pid logs/nginx.pid;
events {}
${2:-}
http {
    $1
    server { listen 127.0.0.1:1; location = /s { promotion_gate_status g; } }
}
${3:-}
CONF
  # (what nginx -t says, its warnings, kept in accepted_said)
  accepted_said=$(timeout 20 nginx -p "$tmp" -c conf/nginx.conf -t -q 2>&1) ||
    { echo "FAIL: nginx -t refused: $1 ${2:-} ${3:-}" >&2; echo "$accepted_said" >&2; exit 1; }
  echo "accepted: $1 ${2:-} ${3:-}"
}
# A key with no variable after one with a variable is a fallback: taken without a warning (a
# build warned that every request had that key). The keys after a constant one are never read:
# warned of, each.
expect_accepted 'promotion_gate g good.json key=$http_x_user key=anonymous;'
[ -z "$accepted_said" ] || { echo "FAIL: nginx -t warned of a fallback key: $accepted_said" >&2; exit 1; }
expect_accepted 'promotion_gate g good.json key=$http_x_user key=anonymous key=$cookie_uid key=other;'
for unread in '$cookie_uid' other; do
  grep -qF "parameter \"key=$unread\" of gate \"g\" in \"promotion_gate\" directive is never read: the parameter \"key=anonymous\" before it has no variable and is never empty" <<<"$accepted_said" ||
    { echo "FAIL: nginx -t did not warn that key=$unread is never read: $accepted_said" >&2; exit 1; }
done
! grep -q 'reach one version' <<<"$accepted_said" ||
  { echo "FAIL: nginx -t warned that a fallback key sends every request to one version: $accepted_said" >&2; exit 1; }
echo "warned of the keys after a fallback, not of the fallback: $(grep -c warn <<<"$accepted_said") lines"
# A header or a cookie whose name holds promotion_gate_ is a key like any other: only a
# declared gate's variable, $promotion_gate_<name>, is a gate's decision (a build searching the
# whole value refused these).
expect_accepted 'promotion_gate g good.json key=$http_x_promotion_gate_id key=$cookie_promotion_gate_user;'
# A minute's interval in an hour's window (checked against the gate's document, not against
# the default config's 300 s window).
expect_accepted 'promotion_gate g hour.json slo=minute.json;'
# ... and so is a variable named $promotion_gate_<name> when no gate has that name (a build
# refusing every $promotion_gate_... refused this map's variable, saying it was a gate's).
expect_accepted 'map $http_x_owner $promotion_gate_owner { default $http_x_owner; }
    promotion_gate g good.json key=${promotion_gate_owner};'
if [ "$(id -u)" -eq 0 ]; then
  # As root, nginx -t creates the store as the workers' user, or they could not open it:
  # without a `user` directive nginx's default user; with one, that user, written before http
  # or after it (the store is opened once the whole file was read).
  mkdir -m 777 "$tmp/owned"
  for placement in none before after; do
    echo "{\"gate\": \"g\", \"store\": {\"sqlite\": {\"path\": \"$tmp/owned/$placement.db\", \"fleet_judging\": false}}}" \
      >"$tmp/conf/owned.json"
    case $placement in
      none) expect_accepted 'promotion_gate g owned.json;' && expected=nobody ;;
      before) expect_accepted 'promotion_gate g owned.json;' 'user daemon;' && expected=daemon ;;
      after) expect_accepted 'promotion_gate g owned.json;' '' 'user daemon;' && expected=daemon ;;
    esac
    owner=$(stat -c %U "$tmp/owned/$placement.db")
    [ "$owner" = "$expected" ] ||
      { echo "FAIL: nginx -t (user directive: $placement) created the store as $owner, not as the workers' $expected" >&2; exit 1; }
    echo "nginx -t (user directive: $placement) created the store as the workers' user: $owner"
  done
  # ... with the workers' groups too: a master in root's group (here made sure of with
  # setpriv) could create a store in a directory only root's group may write, where the
  # workers, which take their user's groups (initgroups), could not write its journal.
  mkdir -m 775 "$tmp/rootgroup"
  echo "{\"gate\": \"g\", \"store\": {\"sqlite\": {\"path\": \"$tmp/rootgroup/g.db\", \"fleet_judging\": false}}}" \
    >"$tmp/conf/rootgroup.json"
  mkdir "$tmp/bin"
  printf '#!/bin/sh\nexec setpriv --groups 0 -- %s "$@"\n' "$(command -v nginx)" >"$tmp/bin/nginx"
  chmod +x "$tmp/bin/nginx"
  PATH="$tmp/bin:$PATH" expect_refusal "unable to open database file: $tmp/rootgroup/g.db" \
    'promotion_gate g rootgroup.json;'
  no_store "$tmp/rootgroup/g.db"
fi

# shellcheck source=../free_port.sh
. "$here/../free_port.sh"
need_curl
# serve <http block> [<workers>]: runs nginx (one worker, error log at notice, or at
# $error_level; with $main_lines in its main context) with that http block until
# stop_serving, once the server on $port answers its /metrics location.
serve() {
  cat >"$tmp/conf/nginx.conf" <<CONF
load_module $module;
daemon off;
${main_lines:-}
worker_processes ${2:-1};
error_log logs/error.log ${error_level:-notice};
pid logs/nginx.pid;
events {}
http {
$1
}
CONF
  nginx -p "$tmp" -c conf/nginx.conf &
  master=$!
  started "$master"
  for _ in $(seq 100); do curl -fs --max-time 1 "http://127.0.0.1:$port/metrics" >/dev/null && return 0; sleep 0.1; done
  echo "FAIL: nginx did not answer on port $port; its error log ends:" >&2
  tail -n 5 "$tmp/logs/error.log" >&2
  exit 1
}
# gate_params: a gate's own parameters, after serve_proxied's <params> (e.g. slo=<file>)
declare -A gate_params=()
# serve_proxied "<gate>..." <upstream port> [<workers> [<promotion_gate parameters>]]: serves
# $port (reuseport: new connections spread over the workers), proxying /<gate>/... to each
# gate's canary and stable (both that upstream) and logging each request's worker pid to
# logs/<gate>.log, with the metrics at /metrics and each gate's status at /<gate>/status, each
# answer naming its worker in X-Worker
serve_proxied() {
  local gate http=''
  for gate in $1; do
    http+="promotion_gate $gate $gate.json ${4:-} ${gate_params[$gate]:-};
    upstream ${gate}_canary { server 127.0.0.1:$2; }
    upstream ${gate}_stable { server 127.0.0.1:$2; }
    "
  done
  http+="server {
        listen 127.0.0.1:$port reuseport;
        location = /metrics { add_header X-Worker \$pid; promotion_gate_metrics; }"
  for gate in $1; do
    http+="
        location /$gate/ { access_log logs/$gate.log pid; proxy_pass http://${gate}_\$promotion_gate_$gate; }
        location = /$gate/status { add_header X-Worker \$pid; promotion_gate_status $gate; }"
  done
  serve "log_format pid '\$pid';
    $http
    }" "${3:-1}"
}
# from_worker <pid> <path>: what worker <pid> answers at <path> on $port (new connections until
# it answers one; with reuseport they spread over the workers)
from_worker() {
  local answer
  for _ in $(seq 200); do
    answer=$(curl -fsi "http://127.0.0.1:$port$2")
    if grep -q "^X-Worker: $1" <<<"$answer"; then
      sed '1,/^\r$/d' <<<"$answer"
      return 0
    fi
  done
  echo "FAIL: worker $1 never answered $2" >&2
  exit 1
}
stop_serving() {
  kill -QUIT "$master"
  wait "$master" || true
}
# await_rollbacks <what failed> <gate>...: waits up to 2 s for every gate to be rolled back
# (production in the metrics) and its rollback logged (the judge decides on record; the timer
# logs the change within 50 ms), then fails naming <what failed> or the gate not logged
await_rollbacks() {
  local what=$1 gate all
  shift
  for _ in $(seq 40); do
    metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
    all=yes
    for gate in "$@"; do
      grep -q "^promotion_environment{gate=\"$gate\",environment=\"production\"} 1" <<<"$metrics" &&
        grep -q "promotion gate \"$gate\": state change: .*\"kind\":\"rollback\"" "$tmp/logs/error.log" ||
        all=no
    done
    [ "$all" = yes ] && break
    sleep 0.05
  done
  for gate in "$@"; do
    grep "^promotion_environment{gate=\"$gate\",environment=\"\(canary\|production\)\"}" <<<"$metrics"
    grep -q "^promotion_environment{gate=\"$gate\",environment=\"production\"} 1" <<<"$metrics" ||
      { echo "FAIL: $what: gate $gate was not rolled back" >&2; exit 1; }
    grep -q "promotion gate \"$gate\": state change: .*\"kind\":\"rollback\"" "$tmp/logs/error.log" ||
      { echo "FAIL: no rollback of gate $gate in the error log" >&2; exit 1; }
  done
}

echo "== one request retried over many upstream servers is one outcome"
# A request contributes one outcome to each gate that routed it, whatever the number of upstream
# attempts proxy_next_upstream makes (the last attempt's status, timed from the first connect
# to the last release), so no request can fill the workers' shared ring (PGATE_RING_OUTCOMES).
# Here 70 servers that all refuse (distinct loopback addresses, one closed port) are each tried
# once by one request; the gate's canary window must hold 1 request, not one per attempt.
attempts=70
closed=$(free_port)
port=$(free_port)
servers=$(for i in $(seq 2 $((attempts + 1))); do printf 'server 127.0.0.%d:%d; ' "$i" "$closed"; done)
gate_document retry 100
serve "$(cat <<CONF
    log_format attempts '\$upstream_status';
    promotion_gate retry retry.json;
    upstream retry_canary { $servers }
    upstream retry_stable { $servers }
    server {
        listen 127.0.0.1:$port;
        access_log logs/attempts.log attempts;
        location / {
            proxy_next_upstream error;
            proxy_next_upstream_tries 0;
            proxy_pass http://retry_\$promotion_gate_retry;
        }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
# nginx writes the access log line just after the answer: wait for it
for _ in $(seq 50); do [ -s "$tmp/logs/attempts.log" ] && break; sleep 0.02; done
tried=$(tr ',' '\n' <"$tmp/logs/attempts.log" | grep -c 502 || true)
metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
recorded=$(sed -n 's/^promotion_window_requests{gate="retry",cohort="canary"} //p' <<<"$metrics")
in_canary=$(sed -n 's/^promotion_environment{gate="retry",environment="canary"} //p' <<<"$metrics")
echo "one request: HTTP $code after $tried upstream attempts; the gate's canary window holds $recorded"
[ "$code" = 502 ] && [ "$tried" -eq "$attempts" ] ||
  { echo "FAIL: expected 502 after $attempts attempts" >&2; exit 1; }
# An outcome per attempt would also let this one request roll the canary back (7 failures
# suffice for overwhelming_errors), emptying the window.
[ "$in_canary" = 1 ] || { echo "FAIL: one retried request rolled the canary back" >&2; exit 1; }
[ "$recorded" = 1 ] || { echo "FAIL: one request recorded $recorded outcomes, not 1" >&2; exit 1; }
stop_serving

echo "== a canary failure redirected by error_page is the canary's outcome"
# nginx zeroes every module's context on an internal redirect or a named location; the
# module finds its context again, so a request routed to a dead canary (connection refused:
# nginx's own 502) still records that failure after error_page sends it to a static page
# (gate `page`) or to a named location proxying to stable, whose 200 must not count as the
# canary's (gate `api`). A build losing the context records nothing and a build recording
# the fallback's status records successes: either way no canary is rolled back here. A third
# gate, never used, makes the array of gates grow past its first allocation (a build keeping
# a pointer into it for the zones crashed every worker at start). The
# canaries are on port 9 (discard), where nothing listens: a port freed by free_port could be
# handed out again, to a server of this very nginx.
port=$(free_port)
stable=$(free_port)
mkdir -p "$tmp/html"
chmod a+rx "$tmp" "$tmp/html" # the workers' user serves the page
echo 'the page is down' >"$tmp/html/50x.html"
for gate in page api idle; do gate_document "$gate" 100; done
serve "$(cat <<CONF
    log_format page '\$uri \$promotion_gate_page \$upstream_status';
    log_format api '\$uri \$promotion_gate_api \$upstream_status';
    promotion_gate page page.json;
    promotion_gate api api.json;
    promotion_gate idle idle.json;
    upstream page_canary { server 127.0.0.1:9; }
    upstream page_stable { server 127.0.0.1:$stable; }
    upstream api_canary { server 127.0.0.1:9; }
    upstream api_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        error_page 502 /50x.html;
        location = /50x.html { access_log logs/page.log page; root $tmp/html; }
        location /page { proxy_pass http://page_\$promotion_gate_page; }
        location /api {
            proxy_pass http://api_\$promotion_gate_api;
            error_page 502 = @stable;
        }
        location @stable { access_log logs/api.log api; proxy_pass http://api_stable; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
requests=20
for path in page api; do
  # the canary's failures (502 and the static page, or stable's 200 from the fallback) until
  # the rollback, then stable's 200
  answers=$(for _ in $(seq "$requests"); do
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$port/$path")
    echo "$(cat "$tmp/body") $code"
  done | sort | uniq -c | sed 's/^ *//')
  echo "/$path:" $answers
  if grep -qv '^[0-9]* \(the page is down 502\|stable 200\)$' <<<"$answers"; then
    echo "FAIL: /$path answered other than the error page or stable" >&2
    exit 1
  fi
done
await_rollbacks "a canary failing behind error_page" page api
# After the redirect the request still reads the version it was routed to (each log, in the
# redirect's target location, names one gate: evaluating the other would route it there).
[ "$(sort -u "$tmp/logs/page.log")" = '/50x.html canary 502' ] ||
  { echo "FAIL: /page logged as: $(sort -u "$tmp/logs/page.log")" >&2; exit 1; }
[ "$(sort -u "$tmp/logs/api.log")" = '/api canary 502 : 200' ] ||
  { echo "FAIL: /api logged as: $(sort -u "$tmp/logs/api.log")" >&2; exit 1; }
stop_serving

echo "== a canary that never reached a peer is no outcome, not its fallback's success"
# No upstream{} block is named x_canary (a typo, a canary not deployed): nginx takes the name
# for a host to resolve and, with no resolver, gives up before trying any peer (502), leaving
# r->upstream_states empty; error_page sends the request to stable. The fallback is not the
# routed upstream: nothing is recorded (the request never reached the canary), where a build
# taking the fallback for it counted every request as a canary success.
port=$(free_port)
stable=$(free_port)
gate_document x 100
serve "$(cat <<CONF
    promotion_gate x x.json;
    upstream x_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        location / { proxy_pass http://x_\$promotion_gate_x; error_page 502 = @stable; }
        location @stable { proxy_pass http://x_stable; }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
answers=$(for _ in $(seq 5); do curl -s "http://127.0.0.1:$port/"; done | sort | uniq -c | sed 's/^ *//')
metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
recorded=$(sed -n 's/^promotion_window_requests{gate="x",cohort="canary"} //p' <<<"$metrics")
echo "5 requests to a canary with no upstream: answered" $answers"; the canary window holds $recorded"
[ "$answers" = "5 stable" ] || { echo "FAIL: expected stable's answer 5 times" >&2; exit 1; }
[ "$recorded" = 0 ] || { echo "FAIL: the fallback's answers were recorded for the canary ($recorded)" >&2; exit 1; }
grep -q 'no resolver defined to resolve x_canary' "$tmp/logs/error.log" ||
  { echo "FAIL: nginx did not give up on x_canary as expected" >&2; exit 1; }
stop_serving

echo "== a gate asked once the upstream started records nothing: the upstream was another's"
# Gate `late` routes nothing: only the log_format reads its variable, after the access log
# phase, when gate `early`'s upstream (a dead canary) has answered. Its decision is written
# to the log, but the outcome is not its own: a build marking every decision recordable
# counted early's canary failures for late too and rolled late back, with its own store.
port=$(free_port)
stable=$(free_port)
for gate in early late; do gate_document "$gate" 100; done
serve "$(cat <<CONF
    log_format both '\$promotion_gate_early \$promotion_gate_late \$upstream_status';
    promotion_gate early early.json;
    promotion_gate late late.json;
    upstream early_canary { server 127.0.0.1:9; }
    upstream early_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        location / { access_log logs/both.log both; proxy_pass http://early_\$promotion_gate_early; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
for _ in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
for _ in $(seq 40); do # every worker learns of the rollback within milliseconds
  metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
  grep -q '^promotion_environment{gate="early",environment="production"} 1' <<<"$metrics" && break
  sleep 0.05
done
grep 'promotion_environment{gate="\(early\|late\)"' <<<"$metrics"
grep -q '^promotion_environment{gate="early",environment="production"} 1' <<<"$metrics" ||
  { echo "FAIL: early's dead canary was not rolled back" >&2; exit 1; }
late=$(sed -n 's/^promotion_window_requests{gate="late",cohort="canary"} //p' <<<"$metrics")
[ "$late" = 0 ] && grep -q '^promotion_environment{gate="late",environment="canary"} 1' <<<"$metrics" ||
  { echo "FAIL: early's upstream outcomes were recorded for late (rolled back, or $late in its canary window)" >&2; exit 1; }
grep -q '^canary canary 502$' "$tmp/logs/both.log" ||
  { echo "FAIL: the log did not show late's own decision: $(sort -u "$tmp/logs/both.log")" >&2; exit 1; }
stop_serving

echo "== a gate first read by a balancer's key records nothing, however many attempts"
# nginx's hash balancer evaluates its key in the upstream{} block's peer init, once the
# upstream has started (nginx made r->upstream_states just before): a gate first read there
# chose no version (which server the word canary hashes to is the hash's) and records
# nothing. Each server has max_fails=0, so every request tries the server `canary` hashes to
# (the first: crc32 as nginx's hash takes it), then, proxy_next_upstream error, the other.
# Gate `hd`: both servers refuse (two 502s); gate `hl`: the second answers (a 502, then a
# 200); gate `hf`: the `hl` pair behind an error page of another upstream that refused. A
# build that took such a gate's decision as made before its upstream started read the
# attempts from the second on: it recorded each request's last attempt, a failure per request
# for hd (50 against min_samples 5: rolled back) and a success for hl and hf.
port=$(free_port)
live=$(free_port)
for gate in hd hl hf; do gate_document "$gate" 100; done
echo '{"min_samples": 5}' >"$tmp/conf/hash-slo.json"
serve "$(cat <<CONF
    log_format hashed '\$uri \$upstream_status';
    promotion_gate hd hd.json slo=hash-slo.json;
    promotion_gate hl hl.json slo=hash-slo.json;
    promotion_gate hf hf.json slo=hash-slo.json;
    upstream hd { hash \$promotion_gate_hd; server 127.0.0.1:9 max_fails=0; server 127.0.0.2:9 max_fails=0; }
    upstream hl { hash \$promotion_gate_hl; server 127.0.0.1:9 max_fails=0; server 127.0.0.1:$live; }
    upstream hf { hash \$promotion_gate_hf; server 127.0.0.1:9 max_fails=0; server 127.0.0.1:$live; }
    server { listen 127.0.0.1:$live; access_log off; return 200 "live\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log logs/hashed.log hashed;
        location /hd { proxy_pass http://hd; }
        location /hl { proxy_pass http://hl; }
        location /hf { proxy_pass http://127.0.0.3:9; error_page 502 = @hf; }
        location @hf { proxy_pass http://hf; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
requests=50
for path in hd hl hf; do
  for _ in $(seq "$requests"); do curl -s -o /dev/null "http://127.0.0.1:$port/$path"; done
done
for _ in $(seq 50); do [ "$(wc -l <"$tmp/logs/hashed.log")" -ge $((3 * requests)) ] && break; sleep 0.02; done
sleep 0.2 # a rollback the judge decided is logged within a timer tick (50 ms)
answers=$(sort "$tmp/logs/hashed.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
echo "$((3 * requests)) requests, by uri and upstream statuses: $answers"
[ "$answers" = "$requests /hd 502, 502;$requests /hf 502 : 502, 200;$requests /hl 502, 200;" ] ||
  { echo "FAIL: expected two attempts a request, the server canary hashes to first" >&2; exit 1; }
for gate in hd hl hf; do
  recorded=$(sed -n "s/^promotion_window_requests{gate=\"$gate\",cohort=\"\(canary\|stable\)\"} //p" <<<"$metrics" |
    tr '\n' ' ')
  echo "gate $gate: window requests (canary, stable) $recorded"
  [ "$recorded" = "0 0 " ] || { echo "FAIL: gate $gate, first read by a balancer, recorded $recorded" >&2; exit 1; }
  grep -q "^promotion_environment{gate=\"$gate\",environment=\"canary\"} 1" <<<"$metrics" &&
    ! grep -q "promotion gate \"$gate\": state change" "$tmp/logs/error.log" ||
    { echo "FAIL: gate $gate, first read by a balancer, changed state" >&2; exit 1; }
done
stop_serving

echo "== behind auth_request, the main request's outcome is the gate's, not the subrequest's"
# The auth subrequest reads the gate's variable first (nginx runs it before the main request's
# content phase) and proxies by it to /ok, which the canary answers; the main request proxies
# by it to /fail, where the canary answers 500. The decision is the main request's and so is
# the outcome recorded, with log_subrequest on too: the canary is rolled back. A build routing
# for the subrequest recorded its 200s (log_subrequest on) or nothing (off), never a rollback.
port=$(free_port)
canary=$(free_port)
stable=$(free_port)
gate_document auth 100
serve "$(cat <<CONF
    log_subrequest on;
    promotion_gate auth auth.json;
    upstream auth_canary { server 127.0.0.1:$canary; }
    upstream auth_stable { server 127.0.0.1:$stable; }
    server {
        listen 127.0.0.1:$canary; access_log off;
        location = /ok { return 200 "ok\n"; }
        location = /fail { return 500; }
    }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        location / { auth_request /check; proxy_pass http://auth_\$promotion_gate_auth/fail; }
        location = /check { internal; proxy_pass http://auth_\$promotion_gate_auth/ok; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
codes=$(for _ in $(seq 30); do curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/"; done | sort | uniq -c | tr -s ' \n' ' ')
metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
echo "30 requests behind auth_request: $codes"
grep -q '^promotion_environment{gate="auth",environment="production"} 1' <<<"$metrics" ||
  { echo "FAIL: the canary failing every main request was not rolled back: $(grep 'gate="auth"' <<<"$metrics" | grep -E 'environment|window_(requests|errors)')" >&2; exit 1; }
stop_serving

echo "== an empty metrics body in a subrequest: no alert"
# With no gate, the metrics location answers an empty body; included by SSI (a subrequest) it
# must not be a zero size buffer, which nginx logs as an alert.
port=$(free_port)
serve "$(cat <<CONF
    server {
        listen 127.0.0.1:$port;
        location = /metrics { access_log off; promotion_gate_metrics; }
        location = /page { ssi on; default_type text/html; return 200 'A<!--# include virtual="/metrics" -->B'; }
    }
CONF
)"
page=$(curl -fs "http://127.0.0.1:$port/page")
stop_serving
[ "$page" = AB ] || { echo "FAIL: the page with the empty include read '$page', not AB" >&2; exit 1; }
! grep -q 'zero size buf' "$tmp/logs/error.log" ||
  { echo "FAIL: $(grep 'zero size buf' "$tmp/logs/error.log" | head -n 1)" >&2; exit 1; }
echo "the page with an empty metrics include: $page, no alert"

echo "== an override header with an underscore: a warning, and it works where nginx keeps it"
# nginx drops request headers whose names have an underscore unless the server sets
# underscores_in_headers: the worker warns when the document's overrides.header has one.
port=$(free_port)
kept=$(free_port)
gate_document u 0 '"overrides": {"header": "X_Force"},'
# nginx drops as invalid a header name with other punctuation than "-" and "_" (an HTTP token,
# which the library takes, may hold it) unless ignore_invalid_headers is off: warned of too.
gate_document dot 0 '"overrides": {"header": "X.Canary"},'
# The document names the gate apart from its declaration, with a quote and a backslash: the
# status location answers the document's name (JSON-escaped, as the metrics' label has it)
# and the declared one.
sed -i 's/"gate": "u"/"gate": "shop.u\\"v\\\\2"/' "$tmp/conf/u.json"
# The server also has a status location holding an `if` block, whose configuration nginx makes
# apart: it must inherit the gate (a build without a merge read the gate before the first).
serve "$(cat <<CONF
    promotion_gate u u.json;
    promotion_gate dot dot.json;
    server { listen 127.0.0.1:$port; location / { return 200 "\$promotion_gate_u\n"; }
             location = /dot { return 200 "\$promotion_gate_dot\n"; }
             location = /si { promotion_gate_status u; if (\$arg_x) { add_header X-Debug 1; } }
             location = /metrics { promotion_gate_metrics; } }
    server { listen 127.0.0.1:$kept; underscores_in_headers on;
             location / { return 200 "\$promotion_gate_u\n"; } }
CONF
)"
dropped=$(curl -fs -H "X_Force: canary" "http://127.0.0.1:$port/")
forced=$(curl -fs -H "X_Force: canary" "http://127.0.0.1:$kept/")
echo "X_Force: canary reaches: $dropped by default, $forced with underscores_in_headers on"
[ "$dropped" = stable ] && [ "$forced" = canary ] ||
  { echo "FAIL: expected stable, then canary" >&2; exit 1; }
grep -q 'promotion gate "u": overrides.header "X_Force" has an underscore' "$tmp/logs/error.log" ||
  { echo "FAIL: no warning of the underscore in the error log" >&2; exit 1; }
dotted=$(curl -fs -H "X.Canary: canary" "http://127.0.0.1:$port/dot")
[ "$dotted" = stable ] || { echo "FAIL: X.Canary: canary reached $dotted, not stable" >&2; exit 1; }
grep -qF 'promotion gate "dot": overrides.header "X.Canary" has ".": nginx ignores request headers whose names hold other characters than letters, digits, "-"' "$tmp/logs/error.log" ||
  { echo "FAIL: no warning of the dot in the error log" >&2; exit 1; }
echo "X.Canary: canary reaches $dotted, warned of: $(grep -o 'overrides.header "X.Canary" has "."' "$tmp/logs/error.log" | head -n 1)"
for query in "" "?x=1"; do
  answer=$(curl -s -D "$tmp/headers" "http://127.0.0.1:$port/si$query")
  grep -qF '{"gate":"shop.u\"v\\2","declared":"u","environment":"canary"' <<<"$answer" ||
    { echo "FAIL: the status location (/si$query) answered: $(head -n 1 "$tmp/headers") $answer" >&2; exit 1; }
done
grep -qi '^X-Debug: 1' "$tmp/headers" || { echo "FAIL: the if block did not run" >&2; exit 1; }
echo "a status location holding an if block: the gate's status, with and without the if"
stop_serving

echo "== the forcing value of each request of tests/vectors/override_requests.tsv"
# Two gates name the header X-Canary and the cookie pgate_version: f0 routes nobody by bucket,
# f100 everybody, so a request forced to canary reads "canary canary", one forced to stable
# "stable stable", and one with any other value or none "stable canary"; a value that is
# present and forces nothing is counted (promotion_ignored_override_values_total), none is not.
port=$(free_port)
gate_document f0 0 '"overrides": {"header": "X-Canary", "cookie": "pgate_version"},'
gate_document f100 100 '"overrides": {"header": "X-Canary", "cookie": "pgate_version"},'
# Gate k50 routes half its keys to canary, keyed by the header X-User: a key with spaces and
# tabs around it reaches the version the bare key does (Go's net/http trims both, nginx's
# parser spaces only).
gate_document k50 50
serve "$(cat <<CONF
    promotion_gate f0 f0.json;
    promotion_gate f100 f100.json;
    promotion_gate k50 k50.json key=\$http_x_user;
    server { listen 127.0.0.1:$port;
             location / { return 200 "\$promotion_gate_f0 \$promotion_gate_f100"; }
             location = /key { return 200 "\$promotion_gate_k50"; }
             location = /metrics { promotion_gate_metrics; } }
CONF
)"
python3 - "$port" "$here/../../tests/vectors/override_requests.tsv" <<'PY' ||
import re, socket, sys, urllib.request
port, path = int(sys.argv[1]), sys.argv[2]
def unescape(s):
    return re.sub(rb"\\(\\|x([0-9a-fA-F]{2}))",
                  lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(2), 16)]), s)
def ignored():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return sum(int(v) for v in re.findall(
        r'^promotion_ignored_override_values_total\{gate="f(?:0|100)"\} (\d+)', text, re.M))
failed = rows = 0
for line in open(path, "rb").read().split(b"\n"):
    if not line or line.startswith(b"#"):
        continue
    rows += 1
    fields = line.split(b"\t")
    value = None if fields[0] == b"-" else unescape(fields[0][1:])
    forced = value.lower() if value is not None and value.lower() in (b"canary", b"stable") else None
    want = {b"canary": "canary canary", b"stable": "stable stable"}.get(forced, "stable canary")
    before = ignored()
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    request += b"".join(unescape(h) + b"\r\n" for h in fields[1:]) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    got = answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
    # a value that forces nothing is ignored by both gates; a forcing one by neither
    counted = ignored() - before
    want_counted = 2 if value is not None and forced is None else 0
    if got != want or counted != want_counted:
        failed += 1
        print(f"FAIL: {line!r}: answered {got!r} with {counted} ignored values; "
              f"want {want!r} with {want_counted} (forcing value {value!r})", file=sys.stderr)
if failed or rows < 20:
    sys.exit(1)
print(f"{rows} requests: each forced, ignored or unforced as the vectors' values say")
PY
  { stop_serving; echo "FAIL: the forcing values of tests/vectors/override_requests.tsv" >&2; exit 1; }
python3 - "$port" <<'PY' ||
import socket, sys
port = int(sys.argv[1])
def version(key_line):
    request = b"GET /key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + key_line + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
seen, failed = set(), 0
for i in range(24):
    key = b"user-%d" % i
    want = version(b"X-User: " + key)
    seen.add(want)
    for line in (b"X-User: \t" + key + b"\t", b"X-User:\t \t" + key + b" \t "):
        got = version(line)
        if got != want:
            failed += 1
            print(f"FAIL: {line!r} reached {got}, {key!r} {want}", file=sys.stderr)
if failed or seen != {"canary", "stable"}:
    sys.exit(1)
print("24 keys: each with tabs and spaces around it reaches the bare key's version")
PY
  { stop_serving; echo "FAIL: a key read from a header with tabs around it" >&2; exit 1; }
stop_serving

echo "== the document's id lists apply to every route, and win over the forcing header"
# Gate ids routes nobody by bucket (traffic_percent 0), keyed by X-Request-Id; its document
# lists tester-1 on canary_ids and vip-7 on stable_ids and names the forcing header X-Canary.
# tester-1 reaches the canary upstream, vip-7 asking "X-Canary: canary" the stable one (an id
# list wins over a forcing value, docs/overrides.md); each is a forced outcome
# (promotion_forced_outcomes_total rises by one) in neither cohort (promotion_window_requests
# stays), while an id on no list reaches stable by its bucket and is counted in the window.
port=$(free_port)
canary=$(free_port)
stable=$(free_port)
gate_document ids 0 '"overrides": {"header": "X-Canary", "canary_ids": ["tester-1"], "stable_ids": ["vip-7"]},'
serve "$(cat <<CONF
    promotion_gate ids ids.json key=\$http_x_request_id;
    upstream ids_canary { server 127.0.0.1:$canary; }
    upstream ids_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$canary; access_log off; return 200 "canary\n"; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server { listen 127.0.0.1:$port; access_log off;
             location / { proxy_pass http://ids_\$promotion_gate_ids; }
             location = /metrics { promotion_gate_metrics; } }
CONF
)"
# id_counts: "<forced outcomes> <cohort requests>" of gate ids, from the metrics
id_counts() {
  curl -fs "http://127.0.0.1:$port/metrics" | python3 -c '
import sys
sums = {"promotion_forced_outcomes_total": 0, "promotion_window_requests": 0}
for line in sys.stdin:
    name = line.split("{")[0]
    if name in sums and "gate=\"ids\"" in line:
        sums[name] += int(float(line.split()[-1]))
print(*sums.values())'
}
# reach <request id> [header line]: the version that answered, once the request was recorded
reach() {
  local answer
  answer=$(curl -fs -H "X-Request-Id: $1" ${2:+-H "$2"} "http://127.0.0.1:$port/") ||
    { echo "FAIL: the request of id $1 failed" >&2; exit 1; }
  sleep 0.1 # its log phase
  echo "$answer"
}
before=$(id_counts)
reached=$(reach tester-1)
after_canary=$(id_counts)
reached_vip=$(reach vip-7 "X-Canary: canary")
after_stable=$(id_counts)
reached_other=$(reach user-1)
after_other=$(id_counts)
stop_serving
echo "tester-1 reaches $reached, vip-7 with X-Canary: canary $reached_vip, user-1 $reached_other;" \
  "forced outcomes and window requests: $before, $after_canary, $after_stable, $after_other"
[ "$reached" = canary ] || { echo "FAIL: tester-1 (canary_ids) reached $reached, not canary" >&2; exit 1; }
[ "$reached_vip" = stable ] ||
  { echo "FAIL: vip-7 (stable_ids) with X-Canary: canary reached $reached_vip, not stable" >&2; exit 1; }
[ "$reached_other" = stable ] || { echo "FAIL: user-1 reached $reached_other at 0 %" >&2; exit 1; }
read -r forced0 window0 <<<"$before"
[ "$after_canary" = "$((forced0 + 1)) $window0" ] && [ "$after_stable" = "$((forced0 + 2)) $window0" ] ||
  { echo "FAIL: each listed id must be one forced outcome and no window request" >&2; exit 1; }
[ "$after_other" = "$((forced0 + 2)) $((window0 + 1))" ] ||
  { echo "FAIL: an id on no list must be one window request, no forced outcome" >&2; exit 1; }

echo "== a key that reads a gate's decision through a map: an error line, once per worker"
# promotion_gate refuses key=\$promotion_gate_...; a map hides it. Gate ka's key is its own
# decision ("stable" while it is being made), kb's is ka's: every request has one of two keys.
# Logged when it happens, once per worker and gate (seen when the key reads the decision
# first in the request: nginx keeps a variable's value once read).
port=$(free_port)
gate_document ka 50
gate_document kb 50
serve "$(cat <<CONF
    map \$promotion_gate_ka \$key_a { default \$promotion_gate_ka; }
    map \$promotion_gate_ka \$key_b { default \$promotion_gate_ka; }
    promotion_gate ka ka.json key=\$key_a;
    promotion_gate kb kb.json key=\$key_b;
    server { listen 127.0.0.1:$port; location / { return 200 "\$promotion_gate_kb \$promotion_gate_ka\n"; }
             location = /metrics { promotion_gate_metrics; } }
CONF
)"
for _ in 1 2 3; do curl -fs "http://127.0.0.1:$port/" >/dev/null; done
logged=$(grep -c 'its key reads the decision of gate' "$tmp/logs/error.log" || true)
grep -q 'promotion gate "ka": its key reads the decision of gate "ka", its own (through a map' "$tmp/logs/error.log" &&
  grep -q 'promotion gate "kb": its key reads the decision of gate "ka" (through a map' "$tmp/logs/error.log" &&
  [ "$logged" -eq 2 ] ||
  { echo "FAIL: expected one line for each gate whose key reads a decision, got $logged: $(grep 'its key' "$tmp/logs/error.log")" >&2; exit 1; }
echo "3 requests: $logged error lines, one for each gate whose key reads a gate's decision"
stop_serving

echo "== a client that gives up on a hung canary: a slow success after the latency target"
# The canary accepts and never answers; curl gives up (nginx: 499). A wait shorter than the
# SLO's latency target (100 ms here) records nothing; a longer one is a success that missed
# its target (pgate_record_abandoned), so a hung canary is judged even when every client
# gives up before proxy_read_timeout. Never a failure.
port=$(free_port)
hung=$(free_port)
# tcp_server <port> <python lines>: a server on 127.0.0.1:<port> that runs the lines on each
# connection it accepts (`c`; `held` keeps what should stay open), until stop_tcp_server
tcp_server() {
  python3 -c "
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(64)
held = []
while True:
    c = s.accept()[0]
$2" "$1" &
  tcp_server_pid=$!
  started "$tcp_server_pid"
  for _ in $(seq 50); do (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.1; done
}
stop_tcp_server() { kill "$tcp_server_pid" 2>/dev/null || true; wait "$tcp_server_pid" 2>/dev/null || true; }
tcp_server "$hung" '    held.append(c)  # accepted, never answered'
gate_document hung 100
echo '{"latency_target_ms": 100}' >"$tmp/conf/hung-slo.json"
serve "$(cat <<CONF
    log_format hung '\$status \$upstream_status \$upstream_response_time';
    promotion_gate hung hung.json slo=hung-slo.json;
    upstream hung_canary { server 127.0.0.1:$hung; }
    upstream hung_stable { server 127.0.0.1:$hung; }
    server {
        listen 127.0.0.1:$port;
        location / { access_log logs/hung.log hung; proxy_pass http://hung_\$promotion_gate_hung; }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
# canary_window <errors|requests>: the gate's canary window count
canary_window() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n "s/^promotion_window_$1{gate=\"hung\",cohort=\"canary\"} //p"
}
for max_time in 0.02 0.02 0.02 0.4 0.4 0.4; do
  curl -s -o /dev/null --max-time "$max_time" "http://127.0.0.1:$port/" || true
  [ "$max_time" = 0.4 ] || early=$(canary_window requests)
done
for _ in $(seq 50); do [ "$(canary_window requests)" = 3 ] && break; sleep 0.05; done
late=$(canary_window requests)
errors=$(canary_window errors)
echo "clients gone after 20 ms: $early recorded; after 400 ms: $late recorded, $errors errors"
stop_serving
stop_tcp_server
[ "$early" = 0 ] && [ "$late" = 3 ] && [ "$errors" = 0 ] ||
  { echo "FAIL: expected 0, then 3 recorded with 0 errors; nginx logged:" >&2; cat "$tmp/logs/hung.log" >&2; grep -i upstream "$tmp/logs/error.log" | tail -3 >&2; exit 1; }


echo "== a dead canary pool and a canary cutting its bodies short are failures"
# A canary block of two servers that refuse: after one failure each (max_fails=1 by default)
# nginx marks both down for fail_timeout and answers "no live upstreams" (502) without trying
# a peer; those requests are the canary's failures too (gate `pool`; a build that recorded
# only requests that obtained a peer saw one failure per server and worker every 10 s, and
# never rolled back). A canary that answers 200 and closes after 10 of its 100000 bytes
# fails every request, with buffering (gate `cut`) and without (gate `cutraw`): nginx's
# status stays 200 (a build that judged the status alone called every request a success).
# Behind `error_page 502 = @slow` (gate `poolfb`), whose location answers after 1 s, a
# request that obtained no peer is timed to its upstream's end, not to the fallback's answer
# (a build timing it to the log phase added about 1 s for each).
port=$(free_port)
stable=$(free_port)
cutting=$(free_port)
slow=$(free_port)
tcp_server "$slow" '    c.recv(65536)
    __import__("time").sleep(1)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow\n")
    c.close()'
slow_pid=$tcp_server_pid
tcp_server "$cutting" '    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
    c.close()  # 99990 bytes short'
for gate in pool cut cutraw poolfb; do gate_document "$gate" 100; done
serve "$(cat <<CONF
    promotion_gate pool pool.json;
    promotion_gate poolfb poolfb.json;
    promotion_gate cut cut.json;
    promotion_gate cutraw cutraw.json;
    upstream pool_canary { server 127.0.0.1:9; server 127.0.0.2:9; }
    upstream pool_stable { server 127.0.0.1:$stable; }
    upstream poolfb_canary { server 127.0.0.1:9; server 127.0.0.2:9; }
    upstream poolfb_stable { server 127.0.0.1:$stable; }
    upstream cut_canary { server 127.0.0.1:$cutting; }
    upstream cut_stable { server 127.0.0.1:$stable; }
    upstream cutraw_canary { server 127.0.0.1:$cutting; }
    upstream cutraw_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        location /pool { proxy_pass http://pool_\$promotion_gate_pool; }
        location /poolfb { error_page 502 = @slow; proxy_pass http://poolfb_\$promotion_gate_poolfb; }
        location @slow { proxy_pass http://127.0.0.1:$slow; }
        location /cut { proxy_pass http://cut_\$promotion_gate_cut; }
        location /cutraw { proxy_buffering off; proxy_pass http://cutraw_\$promotion_gate_cutraw; }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
# The pool's first request tries both servers; the next ones obtain no peer. Each must add
# to the canary's latency sum the time nginx took to fail it (a build recording 0 for a request
# that obtained no peer made a dead canary look fast to the latency rules).
pool_sum() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n 's/^promotion_window_latency_seconds_sum{gate="pool",cohort="canary"} //p'
}
sums=$(pool_sum)
for _ in 1 2 3 4; do
  curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/pool" || true
  sums="$sums $(pool_sum)"
done
timed=$(python3 -c 'import sys; s = [float(x) for x in sys.argv[1:]]; print(sum(b - a > 0 for a, b in zip(s, s[1:])))' $sums)
echo "dead pool: $timed of 4 requests added to the latency sum (sums: $sums)"
[ "$timed" = 4 ] || { echo "FAIL: a dead pool's request was recorded with latency 0 (window sums: $sums)" >&2; exit 1; }
# the first request tries both servers, the next two obtain no peer; each client waits for @slow
for _ in 1 2 3; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/poolfb" || true; done
sleep 0.2 # the last request's log phase
fallback=$(curl -fs "http://127.0.0.1:$port/metrics" |
  sed -n 's/^promotion_window_\(requests\|errors\|latency_seconds_sum\){gate="poolfb",cohort="canary"} /\1 /p' |
  paste -sd ' ')
echo "dead pool behind a slow error page: $fallback"
python3 -c 'import sys; w = sys.argv[1:]; w = dict(zip(w[::2], map(float, w[1::2])))
sys.exit(not (w.get("requests") == w.get("errors") == 3 and w.get("latency_seconds_sum", 1) < 0.3))' $fallback ||
  { echo "FAIL: expected poolfb's 3 failures timed to their upstream's end, under 0.3 s in all: $fallback" >&2; exit 1; }
for gate in pool cut cutraw; do
  for _ in $(seq 20); do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/$gate" || true; done
done
await_rollbacks "a dead canary pool or a canary cutting its bodies short" pool cut cutraw
grep -c 'no live upstreams' "$tmp/logs/error.log" | sed 's/^/"no live upstreams" answers: /'
stop_serving
stop_tcp_server
tcp_server_pid=$slow_pid
stop_tcp_server

echo "== a gRPC canary's failing grpc-status is a failure, a caller's error is not"
# gRPC answers every call 200 and reports its outcome in grpc-status: a header in a
# trailers-only answer, else a trailer. A canary answering 13 INTERNAL in either (gates
# `grpch13`, `grpct13`) or ending its stream with no grpc-status (`grpcnone`) fails each call
# (a build judging the HTTP status alone called them successes); 0 OK in the trailer
# (`grpct0`) and the caller's 5 NOT_FOUND (`grpch5`) are successes, and so is a stream the
# client leaves before its status came (`grpcheld`: the client's going, not the version's) or
# stops reading past send_timeout (`grpcstall`: the canary streams 32 MiB, more than nginx and
# the sockets hold, and nginx gives up on the client, 408, having only marked it timed out; a
# build asking for the connection's error alone counted each as the canary's failure).
# The status read is the routed upstream's: a canary's 404 that error_page sends to a server
# answering 13 is the canary's success (`grpcpage`; r->upstream is then the fallback's).
port=$(free_port)
grpc_ports=()
for _ in 1 2 3 4 5 6 7 8; do grpc_ports+=("$(free_port)"); done
# A fake gRPC server (HTTP/2 cleartext, prior knowledge, as grpc_pass speaks it), one listening
# port per answer: <port>:headers:<code> (trailers-only), <port>:trailers:<code> (a header, an
# empty message, then the trailer), <port>:none (the message ends the stream), <port>:held
# (a header and a message, then nothing), <port>:http:<status> (no gRPC answer) or
# <port>:stall (a header, then 32 MiB of DATA as fast as nginx's flow-control windows allow,
# frames of 16 KiB, never a status nor an end).
python3 -c '
import socket, sys, threading
def frame(kind, flags, payload, stream):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
def fields(*pairs):  # HPACK literals without indexing, no Huffman
    return b"".join(bytes([0, len(n)]) + n + bytes([len(v)]) + v for n, v in pairs)
class Windows:  # HTTP/2 flow control: what nginx lets the server send, on the connection (0) and each stream
    def __init__(self):
        self.changed = threading.Condition()
        self.initial = 65535
        self.left = {0: 65535}
    def settings(self, payload):  # SETTINGS_INITIAL_WINDOW_SIZE moves every open stream window
        for i in range(0, len(payload) // 6 * 6, 6):
            if int.from_bytes(payload[i:i + 2], "big") == 4:
                value = int.from_bytes(payload[i + 2:i + 6], "big")
                with self.changed:
                    for stream in self.left.keys() - {0}:
                        self.left[stream] += value - self.initial
                    self.initial = value
                    self.changed.notify_all()
    def update(self, stream, payload):  # WINDOW_UPDATE
        with self.changed:
            self.left[stream] = self.left.get(stream, self.initial) + (int.from_bytes(payload, "big") & 0x7FFFFFFF)
            self.changed.notify_all()
    def take(self, stream, most):  # up to most bytes both windows allow; 0 after 30 s without any
        with self.changed:
            self.left.setdefault(stream, self.initial)
            if not self.changed.wait_for(lambda: min(self.left[0], self.left[stream]) > 0, 30):
                return 0
            n = min(most, self.left[0], self.left[stream])
            self.left[0] -= n
            self.left[stream] -= n
            return n
def stall(send, windows, stream, head):  # 32 MiB of DATA, no END_STREAM: more than nginx and the sockets hold
    try:
        send(frame(1, 4, head, stream))
        for _ in range(2048):
            n = windows.take(stream, 16384)
            if not n:
                return
            send(frame(0, 0, b"\0" * n, stream))
    except OSError:
        pass  # nginx closed the connection
def answer(send, windows, stream, how, code):
    head = fields((b":status", b"200"), (b"content-type", b"application/grpc"))
    message = b"\0" * 5
    status = fields((b"grpc-status", code.encode()))
    if how == "headers":  # END_STREAM | END_HEADERS
        send(frame(1, 5, head + status, stream))
    elif how == "trailers":
        send(frame(1, 4, head, stream) + frame(0, 0, message, stream) + frame(1, 5, status, stream))
    elif how == "none":
        send(frame(1, 4, head, stream) + frame(0, 1, message, stream))
    elif how == "http":
        send(frame(1, 5, fields((b":status", code.encode())), stream))
    elif how == "stall":
        threading.Thread(target=stall, args=(send, windows, stream, head), daemon=True).start()
    else:
        send(frame(1, 4, head, stream) + frame(0, 0, message, stream))
def serve(c, how, code):
    buf = b""
    lock = threading.Lock()  # whole frames: stall sends from a thread of its own
    windows = Windows()
    def send(data):
        with lock:
            c.sendall(data)
    try:
        while more := c.recv(65536):
            buf += more
            if buf.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
                buf = buf[24:]
                send(frame(4, 0, b"", 0))
            while len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                end = 9 + int.from_bytes(buf[:3], "big")
                kind, flags, stream, payload = buf[3], buf[4], int.from_bytes(buf[5:9], "big"), buf[9:end]
                buf = buf[end:]
                if kind == 4 and not flags & 1:
                    windows.settings(payload)
                    send(frame(4, 1, b"", 0))  # SETTINGS ACK
                elif kind == 8:
                    windows.update(stream, payload)
                elif kind == 1:
                    answer(send, windows, stream, how, code)
    except OSError:
        pass  # nginx reset the connection
    with lock:  # not while stall writes to it
        c.close()
def listen(port, how, code=""):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port)))
    s.listen(64)
    while True:
        threading.Thread(target=serve, args=(s.accept()[0], how, code), daemon=True).start()
for spec in sys.argv[1:]:
    threading.Thread(target=listen, args=spec.split(":"), daemon=True).start()
threading.Event().wait(120)  # bounded: gone even if this script exits before its kill
' "${grpc_ports[0]}:headers:13" "${grpc_ports[1]}:trailers:13" "${grpc_ports[2]}:none" \
  "${grpc_ports[3]}:trailers:0" "${grpc_ports[4]}:headers:5" "${grpc_ports[5]}:held" \
  "${grpc_ports[6]}:http:404" "${grpc_ports[7]}:stall" &
grpc_server_pid=$!
started "$grpc_server_pid"
for grpc_port in "${grpc_ports[@]}"; do
  for _ in $(seq 50); do (: <"/dev/tcp/127.0.0.1/$grpc_port") 2>/dev/null && break; sleep 0.1; done
done
grpc_gates=(grpch13 grpct13 grpcnone grpct0 grpch5 grpcheld grpcpage grpcstall)
upstreams=''
locations=''
for i in "${!grpc_gates[@]}"; do
  gate=${grpc_gates[$i]}
  gate_document "$gate" 100
  upstreams+="promotion_gate $gate $gate.json;
    upstream ${gate}_canary { server 127.0.0.1:${grpc_ports[$i]}; }
    upstream ${gate}_stable { server 127.0.0.1:${grpc_ports[$i]}; }
    "
  location="grpc_pass grpc://${gate}_\$promotion_gate_$gate;"
  [ "$gate" != grpcpage ] || location="grpc_intercept_errors on; error_page 404 = @grpcpage; $location"
  [ "$gate" != grpcstall ] || location="send_timeout 1s; error_log logs/grpcstall.log info; $location"
  locations+="location /$gate { $location }
        "
done
serve "$(cat <<CONF
    $upstreams
    server {
        listen 127.0.0.1:$port;
        access_log off;
        $locations
        location @grpcpage { grpc_pass grpc://127.0.0.1:${grpc_ports[0]}; }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
for gate in "${grpc_gates[@]}"; do
  max_time=2
  [ "$gate" != grpcheld ] || max_time=0.3
  [ "$gate" = grpcstall ] ||
    for _ in 1 2 3; do curl -s -o /dev/null --max-time "$max_time" "http://127.0.0.1:$port/$gate" || true; done
done
# grpcstall's one call: its client asks, then reads nothing (a receive buffer of 4 KiB) for 3 s,
# past send_timeout (1 s), and closes
timeout 10 python3 -c '
import socket, sys, time
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
c.connect(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"GET /grpcstall HTTP/1.1\r\nHost: grpc\r\n\r\n")
time.sleep(3)
c.close()
' "$port" || true # judged below, with the server stopped
# grpc_window <gate> <errors|requests>: the gate's canary window count
grpc_window() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n "s/^promotion_window_$2{gate=\"$1\",cohort=\"canary\"} //p"
}
failed=''
for gate in "${grpc_gates[@]}"; do
  calls=3
  [ "$gate" != grpcstall ] || calls=1
  for _ in $(seq 50); do [ "$(grpc_window "$gate" requests)" = "$calls" ] && break; sleep 0.05; done
  expected=0
  case $gate in grpch13 | grpct13 | grpcnone) expected=$calls ;; esac
  recorded="$(grpc_window "$gate" requests) requests, $(grpc_window "$gate" errors) errors"
  echo "gate $gate: $recorded"
  [ "$recorded" = "$calls requests, $expected errors" ] || failed+=" $gate (expected $calls requests, $expected errors)"
done
# the stalled call ended at send_timeout, not at the client's close (which nginx logs as a
# failed write)
timeouts=$(grep -c 'client timed out' "$tmp/logs/grpcstall.log" 2>/dev/null || true)
echo "grpcstall: $timeouts \"client timed out\""
[ "$timeouts" = 1 ] || failed+=" grpcstall (expected 1 \"client timed out\" in its error log, found $timeouts)"
stop_serving
kill "$grpc_server_pid" && wait "$grpc_server_pid" 2>/dev/null || true
[ -z "$failed" ] || { echo "FAIL: gRPC outcomes recorded wrong for:$failed" >&2; exit 1; }

echo "== a request body the client cut short or malformed is not the routed version's outcome"
# The client's fault is never the routed version's failure. A body shorter than its
# Content-Length then a half-close or a close, an invalid chunk, over HTTP/1.1, and over
# HTTP/2 a stream ended (END_STREAM) short of its content-length or reset (RST_STREAM)
# mid-body. With proxy_request_buffering on (gate `bodyon`) nginx reads the body before it
# starts the upstream: the request is routed (proxy_pass evaluates the gate first) and
# nothing reaches the canary. With it off (gate `bodyoff`) the canary is contacted and
# receives the body's first 10 bytes, then nginx ends the request on the client's read
# (400): the canary never answered, so nothing is recorded either (a build counting that 400
# as the contacted canary's failure recorded six outcomes for bodyoff). Each gate also gets one
# whole body, which its canary answers 500: one outcome each, so the zeros are not a gate
# that records nothing. A canary that answered before the client cut its body (gate
# `bodyans`: 500 as soon as it reads the request header) is judged by that answer as usual:
# every such request is its failure. Behind `error_page 400 = @stable` (gate `bodyfb`, buffered)
# nginx's 400 for the bad body starts stable's upstream, the request's first after it was
# routed: its 200 is not the canary's (a build taking the first upstream started after the
# route for the routed one counted each as a canary success).
port=$(free_port)
h2port=$(free_port)
waiting=$(free_port)
answering=$(free_port)
stable=$(free_port)
# the canary of bodyon, bodyoff and bodyfb: answers 500 to a whole body; at the end of a body
# cut short it writes a line to body.cut
tcp_server "$waiting" "    cut = open('$tmp/body.cut', 'a')"'
    c.settimeout(5)
    data = b""
    while True:
        try:
            more = c.recv(65536)
        except OSError:
            break
        if not more:
            break
        data += more
        head, _, body = data.partition(b"\r\n\r\n")
        if _ and (b"\ncontent-length: 100" in head.lower() and len(body) >= 100
                  or body.endswith(b"\r\n0\r\n\r\n")):
            c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            break
    if b"0123456789" in data:
        cut.write("the first 10 bytes, then the end\n")
    cut.close()
    c.close()'
waiting_pid=$tcp_server_pid
# bodyans's canary: 500 at once, before the body it does not read
tcp_server "$answering" '    c.recv(65536)
    c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    held.append(c)'
for gate in bodyon bodyoff bodyans bodyfb; do gate_document "$gate" 100; done
serve "$(cat <<CONF
    log_format body '\$uri \$server_protocol \$status \$upstream_status \$upstream_bytes_sent';
    promotion_gate bodyon bodyon.json;
    promotion_gate bodyoff bodyoff.json;
    promotion_gate bodyans bodyans.json;
    promotion_gate bodyfb bodyfb.json;
    upstream bodyon_canary { server 127.0.0.1:$waiting; }
    upstream bodyoff_canary { server 127.0.0.1:$waiting; }
    upstream bodyans_canary { server 127.0.0.1:$answering; }
    upstream bodyfb_canary { server 127.0.0.1:$waiting; }
    upstream bodyfb_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$h2port http2;
        access_log logs/body.log body;
        proxy_http_version 1.1; # a chunked body is streamed only to HTTP/1.1
        location /bodyon { proxy_pass http://bodyon_\$promotion_gate_bodyon; }
        location /bodyoff { proxy_request_buffering off; proxy_pass http://bodyoff_\$promotion_gate_bodyoff; }
        location /bodyans { proxy_request_buffering off; proxy_pass http://bodyans_\$promotion_gate_bodyans; }
        location /bodyfb { error_page 400 = @stable; proxy_pass http://bodyfb_\$promotion_gate_bodyfb; }
        location @stable { proxy_pass http://bodyfb_stable; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
# raw_client: the Python post_body and leave_body start with (their arguments: nginx's HTTP/1.1
# and HTTP/2 ports, the path, how): the connection, to the HTTP/2 port for a how starting with
# h2, and the HTTP/2 frames and HPACK fields their requests are written with
raw_client='import socket, struct, sys, time
port, h2port, path, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def frame(kind, flags, payload, stream=1):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
def literal(name, value):  # HPACK: a literal field without indexing, a new name
    return bytes([0, len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
s = socket.create_connection(("127.0.0.1", h2port if how.startswith("h2") else port))
'
# post_body <path> <how> [<pause>]: one POST whose body the client sends as <how> says, over
# HTTP/1.1 (whole; slow: the header, then all 100 bytes <pause> s later, 0.5 unless given;
# short-shut, short-close: 10 of its 100 bytes, then a half-close or a close; badchunk: a chunk
# of 10 bytes, then an invalid chunk size) or HTTP/2 (h2-short: 10 of 100 bytes and
# END_STREAM; h2-rst: 10 bytes and RST_STREAM), the cut <pause> s after the first bytes, 0.2
# unless given (time for nginx to reach an unbuffered upstream); prints the status line or
# frames answered
post_body() {
  python3 -c "$raw_client$(cat <<'PY'
s.settimeout(3)
pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5 if how == "slow" else 0.2
if how.startswith("h2"):
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
              ("content-length", "100")]
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, b"", 0)
              + frame(1, 4, b"".join(literal(n, v) for n, v in fields)) + frame(0, 0, b"0123456789"))
    time.sleep(pause)
    s.sendall(frame(0, 1, b"") if how == "h2-short" else frame(3, 0, struct.pack(">I", 8)))
elif how == "whole":
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n".encode() + b"x" * 100)
elif how == "slow":
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n".encode())
    time.sleep(pause)
    s.sendall(b"x" * 100)
elif how == "badchunk":
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n".encode())
    time.sleep(pause)
    s.sendall(b"zz\r\n")
else:
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789".encode())
    time.sleep(pause)
    if how == "short-close":
        s.close()
        print("closed")
        sys.exit()
    s.shutdown(socket.SHUT_WR)
def frames(answer):  # the frame types and streams answered: 4 SETTINGS, 1 HEADERS, 3 RST_STREAM...
    at = 0
    while at + 9 <= len(answer):
        yield answer[at + 3], int.from_bytes(answer[at + 5:at + 9], "big")
        at += 9 + int.from_bytes(answer[at:at + 3], "big")
answer = b""
if how.startswith("h2"):
    s.settimeout(0.5)  # nginx answers a reset stream with nothing: the connection stays open
try:
    while len(answer) < 65536:
        more = s.recv(65536)
        if not more:
            break
        answer += more
        if how.startswith("h2") and any(k in (1, 3) and n == 1 for k, n in frames(answer)):
            break
except OSError:
    pass
if how.startswith("h2"):
    print("h2 frames", [k for k, n in frames(answer)])
else:
    print(answer.split(b"\r\n")[0].decode() or "no answer")
PY
)" "$port" "$h2port" "$1" "$2" ${3:+"$3"}
}
# body_window <gate> <requests|errors>: the gate's canary window count
body_window() {
  curl -fs "http://127.0.0.1:$port/metrics" | sed -n "s/^promotion_window_$2{gate=\"$1\",cohort=\"canary\"} //p"
}
cuts="short-shut short-close badchunk h2-short h2-rst"
for gate in bodyon bodyoff bodyans bodyfb; do
  case $gate in
    bodyans) hows="short-shut badchunk h2-short" ;;
    bodyfb) hows="badchunk h2-short whole" ;;
    *) hows="$cuts whole" ;;
  esac
  for how in $hows; do
    echo "/$gate $how: $(post_body "/$gate" "$how")"
  done
done
sleep 0.2 # the last request's log phase
for gate in bodyon bodyoff bodyans bodyfb; do
  printf '%s\n' "$gate: $(body_window "$gate" requests) recorded, $(body_window "$gate" errors) errors"
done >"$tmp/body.windows"
cat "$tmp/body.windows"
stop_serving
stop_tcp_server
tcp_server_pid=$waiting_pid
stop_tcp_server
# the unbuffered canary (bodyoff's 5 cuts) got the first bytes of each body, the others none
reached=$(grep -c . "$tmp/body.cut" || true)
echo "the canaries got the first bytes of $reached cut bodies"
[ "$reached" = 5 ] || { echo "FAIL: the unbuffered canary did not get the cut bodies' first bytes:" >&2; cat "$tmp/logs/body.log" >&2; exit 1; }
[ "$(cat "$tmp/body.windows")" = "bodyon: 1 recorded, 1 errors
bodyoff: 1 recorded, 1 errors
bodyans: 3 recorded, 3 errors
bodyfb: 1 recorded, 1 errors" ] || { echo "FAIL: expected bodyon, bodyoff and bodyfb to record their whole body only, bodyans its 3 answers; nginx logged:" >&2; cat "$tmp/logs/body.log" >&2; exit 1; }

echo "== an invalid chunked body is the canary's failure; a client leaving a chunked body is not"
# A canary answering 200 and then an invalid chunk size fails every request, with buffering
# (gate `badon`) and without (gate `badoff`): nginx ends the upstream with NGX_ERROR after the
# header, the code it also ends one with when it gave up on the client (a build telling them
# apart by the status alone recorded every such request a success, never rolling back). The
# client's doing is never the version's (gate `chunkok`, whose canary answers a healthy body
# of 1 MiB, or 8 MiB and then 64 KiB every 20 ms for a client that leaves it): each request is
# a success, whole bodies as bodies that the client closed its connection on (HTTP/1.1), reset
# its HTTP/2 stream or connection on, with buffering and without, or stopped reading (nginx
# gives up after send_timeout, with buffering and proxy_max_temp_file_size 0: it marks the
# pipe and the connection timed out, not the connection's error). A build that counted every
# NGX_ERROR after the header recorded errors for chunkok; one that looked only at the
# connection's error, for the reader that stopped.
port=$(free_port)
h2port=$(free_port)
stable=$(free_port)
chunking=$(free_port)
tcp_server "$chunking" '    import time
    line = c.recv(65536).split(b"\r\n")[0]
    piece = b"4000\r\n" + b"x" * 16384 + b"\r\n"
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
        if b"/bad" in line:
            time.sleep(0.02)
            c.sendall(b"zz\r\n")  # not a chunk size
            held.append(c)
            continue
        if b"/good" in line:
            c.sendall(piece * 64 + b"0\r\n\r\n")
        else:
            c.sendall(piece * 512)
            for _ in range(384):
                time.sleep(0.02)
                c.sendall(piece * 4)
            c.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # nginx closed it, its client gone
    c.close()'
gates=$(canary_gates "badon badoff chunkok" "$chunking" "$stable")
serve "$(cat <<CONF
    log_format chunk '\$uri \$server_protocol \$status \$upstream_status \$body_bytes_sent';
    $gates
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.1:$h2port http2;
        access_log logs/chunk.log chunk;
        proxy_http_version 1.1;
        # the workers' own: the shared /var/lib/nginx/proxy may hold directories another
        # user's workers made, where a body spilled to disk fails (nginx's failure, counted)
        proxy_temp_path $tmp/proxy_temp;
        location /badon { proxy_pass http://badon_\$promotion_gate_badon; }
        location /badoff { proxy_buffering off; proxy_pass http://badoff_\$promotion_gate_badoff; }
        location /on/ { proxy_pass http://chunkok_\$promotion_gate_chunkok; }
        location /off/ { proxy_buffering off; proxy_pass http://chunkok_\$promotion_gate_chunkok; }
        location /stall/ {
            proxy_max_temp_file_size 0;
            send_timeout 1s;
            proxy_pass http://chunkok_\$promotion_gate_chunkok;
        }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
# leave_body <path> <how>: one GET whose body the client leaves after its first 100000 bytes:
# h1-close closes the connection, h2-cancel resets the stream (RST_STREAM CANCEL), h2-reset
# the connection (a TCP reset); h1-stall reads nothing for 2.5 s; prints the bytes read
leave_body() {
  python3 -c "$raw_client$(cat <<'PY'
s.settimeout(5)
if how.startswith("h2"):  # the largest windows, so that nginx sends without waiting for them
    fields = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x")]
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, struct.pack(">HI", 4, 2**31 - 1), 0)
              + frame(8, 0, struct.pack(">I", 2**31 - 1 - 65535), 0)
              + frame(1, 5, b"".join(literal(n, v) for n, v in fields)))
else:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
got = 0
if how == "h1-stall":
    time.sleep(2.5)
while how != "h1-stall" and got < 100000:
    more = s.recv(65536)
    if not more:
        break
    got += len(more)
if how == "h2-cancel":
    s.sendall(frame(3, 0, struct.pack(">I", 8)))
    time.sleep(0.2)
elif how == "h2-reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print(f"read {got} bytes")
PY
)" "$port" "$h2port" "$1" "$2"
}
for gate in badon badoff; do
  for _ in $(seq 20); do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/$gate" || true; done
done
await_rollbacks "a canary answering an invalid chunk" badon badoff
invalid=$(grep -c 'upstream sent invalid chunked response' "$tmp/logs/error.log" || true)
echo "invalid chunked responses: $invalid"
[ "$invalid" -gt 0 ] || { echo "FAIL: nginx logged no invalid chunked response" >&2; exit 1; }
for mode in on off; do
  echo "/$mode/good: $(curl -s -o /dev/null -w '%{http_code} %{size_download} bytes' "http://127.0.0.1:$port/$mode/good")"
  for how in h1-close h2-cancel h2-reset; do
    echo "/$mode/large $how: $(leave_body "/$mode/large" "$how")"
  done
done
echo "/stall/large h1-stall: $(leave_body /stall/large h1-stall)"
for _ in $(seq 50); do [ "$(body_window chunkok requests)" = 9 ] && break; sleep 0.05; done
chunkok="$(body_window chunkok requests) recorded, $(body_window chunkok errors) errors"
echo "chunkok: $chunkok"
stop_serving
stop_tcp_server
[ "$chunkok" = "9 recorded, 0 errors" ] ||
  { echo "FAIL: expected chunkok's 9 requests recorded as successes; nginx logged:" >&2; cat "$tmp/logs/chunk.log" >&2; exit 1; }

echo "== a gate first read while an upstream no gate chose is under way records nothing of it"
# slow_502_server <port> [<delay>]: a server (tcp_server) answering each request 502 after
# <delay> seconds (0.1 unless given), while which a mirror subrequest runs and reads a gate
slow_502_server() {
  tcp_server "$1" "    c.recv(65536)
    __import__('time').sleep(${2:-0.1})"'
    c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c.close()'
}
# The upstream{} block `mir` (hashed by gate `mira`: a balancer's read, which chose nothing)
# tries three servers, each answering 502 after 100 ms; the request's mirror subrequest reads
# gate `mirb` while the first attempt waits. No gate chose `mir`: neither records anything of
# its attempts (a build taking `mirb`'s read for the request's first route recorded the last
# attempt's 502 for it, 5 failures).
port=$(free_port)
stable=$(free_port)
mirror_servers=''
mirror_pids=()
for _ in 1 2 3; do
  p=$(free_port)
  slow_502_server "$p"
  mirror_pids+=("$tcp_server_pid")
  mirror_servers+="server 127.0.0.1:$p max_fails=0; "
done
for gate in mira mirb; do gate_document "$gate" 100; done
serve "$(cat <<CONF
    promotion_gate mira mira.json;
    promotion_gate mirb mirb.json;
    upstream mir { hash \$promotion_gate_mira; $mirror_servers }
    upstream mirb_canary { server 127.0.0.1:$stable; }
    upstream mirb_stable { server 127.0.0.1:$stable; }
    log_format mirrored '\$uri \$status \$upstream_status';
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        location /mir {
            access_log logs/mirrored.log mirrored;
            mirror /mirror;
            proxy_next_upstream error http_502;
            proxy_pass http://mir;
        }
        location = /mirror { internal; proxy_pass http://mirb_\$promotion_gate_mirb; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/mir"; done
sleep 0.2 # the last request's log phase
mirrored=$(sort "$tmp/logs/mirrored.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "/mir: by uri, status and upstream statuses: $mirrored"
mirror_windows=$(for gate in mira mirb; do
  printf '%s\n' "$gate: $(body_window "$gate" requests) recorded, $(body_window "$gate" errors) errors"
done)
echo "$mirror_windows"
stop_serving
for tcp_server_pid in "${mirror_pids[@]}"; do stop_tcp_server; done
[ "$mirrored" = "5 /mir 502 502, 502, 502;" ] ||
  { echo "FAIL: expected three 502 attempts for each /mir request" >&2; exit 1; }
[ "$mirror_windows" = "mira: 0 recorded, 0 errors
mirb: 0 recorded, 0 errors" ] || { echo "FAIL: expected nothing recorded by mira (a balancer's read) nor mirb (read by a mirror while mir's attempts went on)" >&2; exit 1; }

echo "== a gate first read while an upstream no gate chose is under way records the next upstream the request starts"
# Its decision chose none of the running upstream's attempts (above), but the first upstream
# the request starts after it, an error page's, is the one it chose, as for a gate read in
# `set`. Gate `pre`: /pre's proxied answer, cacheable (proxy_cache) with ETag "a", to a
# request with `If-Match: "b"`, is refused 412 by nginx's not-modified filter while its
# upstream still runs (the filter's error page runs within the upstream's header), and
# error_page 412 sends the request to @pre, which reads `pre` in a `set` and proxies to its
# canary, answering 500: one failure per request (three URIs, each a cache miss). Gates `mirc`
# and `mird`: a mirror subrequest reads the gate while the request's upstream (a server
# answering 502 after 100 ms) waits, and error_page 502 sends the request to a location
# proxying to the gate's canary (`mirc`: an upstream{} block) or to the canary's server as an
# address resolved at run time (`mird`: a peer the module does not wrap, found by its
# separator in the request's upstream states), answering 500: 5 failures each. A build
# recording nothing for a decision first read while an upstream was under way recorded none.
port=$(free_port)
etag=$(free_port)
failing=$(free_port)
stable=$(free_port)
slow=$(free_port)
slow_502_server "$slow"
mkdir -m 777 "$tmp/precache" # the workers (nobody, as root) write the cache
gates=$(canary_gates "pre mirc mird" "$failing" "$stable")
serve "$(cat <<CONF
    $gates
    proxy_cache_path $tmp/precache keys_zone=pre:1m;
    log_format underway '\$uri \$status \$upstream_status';
    server { listen 127.0.0.1:$etag; access_log off; location / { add_header ETag '"a"'; return 200 "a\n"; } }
    server { listen 127.0.0.1:$failing; access_log off; return 500; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log logs/underway.log underway;
        location /pre {
            proxy_cache pre;
            proxy_cache_valid 200 1m;
            error_page 412 = @pre;
            proxy_pass http://127.0.0.1:$etag;
        }
        location @pre { set \$v \$promotion_gate_pre; proxy_pass http://pre_\$v; }
        location /mirc {
            mirror /mirrorc;
            proxy_intercept_errors on;
            error_page 502 = @mirc;
            proxy_pass http://127.0.0.1:$slow;
        }
        location = /mirrorc { internal; access_log off; proxy_pass http://mirc_\$promotion_gate_mirc; }
        location @mirc { proxy_pass http://mirc_\$promotion_gate_mirc; }
        location /mird {
            mirror /mirrord;
            proxy_intercept_errors on;
            error_page 502 = @mird;
            proxy_pass http://127.0.0.1:$slow;
        }
        location = /mirrord { internal; access_log off; proxy_pass http://mird_\$promotion_gate_mird; }
        location @mird { set \$fp $failing; proxy_pass http://127.0.0.1:\$fp; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
for n in 1 2 3; do curl -s -o /dev/null -H 'If-Match: "b"' "http://127.0.0.1:$port/pre?$n"; done
for path in mirc mird; do
  for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/$path"; done
done
sleep 0.2 # the last request's log phase
underway=$(sort "$tmp/logs/underway.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "/pre, /mirc, /mird: by uri, status and upstream statuses: $underway"
underway_windows=$(for gate in pre mirc mird; do
  printf '%s\n' "$gate: $(body_window "$gate" requests) recorded, $(body_window "$gate" errors) errors"
done)
echo "$underway_windows"
stop_serving
stop_tcp_server
[ "$underway_windows" = "pre: 3 recorded, 3 errors
mirc: 5 recorded, 5 errors
mird: 5 recorded, 5 errors" ] || { echo "FAIL: expected the error pages' canary failures for pre (3), mirc (5) and mird (5), each first read while the request's first upstream was under way" >&2; exit 1; }
[ "$underway" = "5 /mirc 500 502 : 500;5 /mird 500 502 : 500;3 /pre 500 200 : 500;" ] ||
  { echo "FAIL: expected the first upstream's answer (/pre's 200, refused 412; /mirc's and /mird's 502), then the error page's canary's 500, for each request" >&2; exit 1; }

echo "== a gate first read by a subrequest records no upstream the request made before"
# A subrequest reads the main request's decision once the main request's content handler has
# made its upstream (nginx runs a mirror's subrequests after it), so no gate read there chose
# that upstream, started or not. With `mirror_request_body off` the mirror's subrequest runs
# while nginx still reads the body the client sends slowly (post_body slow: the header, the
# body 0.5 s later), before the upstream started (no u->cleanup yet), and reads the gate in a
# `set`. Gate `sub`: the main request proxies to a closed port (nginx's 502): nothing recorded
# (a build anchoring that route at the request's states then recorded the 502 as sub's
# failure, one a request). Gate `subpage`: error_page 502 sends the request to a location
# proxying by the gate to its canary (answering 200): the error page's upstream is the one it
# chose, one success a request. Gate `subtwo`: the main request proxies by gate `two` to its
# canary (the closed port): two records its 502s, subtwo, read by the mirror after two chose
# the upstream, nothing. Gate `subhdr`: the main request reads it in a proxy_set_header after
# the mirror read it (nginx's kept value: the module sees no read), to a closed port: the
# mirror's decision, nothing recorded. Gates `subbad` and `subbadrt`: the body is malformed (an invalid chunk
# size), so the main upstream never starts and nginx's 400 goes by error_page to a location
# proxying to the gate's canary, an upstream{} block (`subbad`) or an address resolved at run
# time (`subbadrt`): that upstream, the first the request starts, is the one the gate chose,
# one success each. Gate `sublock`: two requests for one key of a cache with proxy_cache_lock,
# the second waiting on the first's lock (its upstream made, not started) while its mirror
# reads the gate, then proxying to the slow 502 server itself: nothing recorded; so too for
# gate `lockpage`, whose cache and mirror are in the location error_page sends a closed port's
# 502 to (a build taking the first separator past the states at the route found the waiting
# upstream's own, and recorded its 502). Gate `subnores`: a malformed body's 400 goes to a
# location proxying by the gate to a name no upstream{} block has (no resolver: it makes the
# request's states and gives up before a peer, 502), whose error page proxies to stable: that
# is a fallback, not the gate's choice, nothing recorded (a build telling who made the states
# by their first state recorded stable's 200). Gates `subfirst` and `subsecond`: the mirror
# reads subfirst, the main request subsecond first in its proxy_set_header, to a closed port,
# error_page 502 proxying to stable: subfirst records stable's 200 (the next upstream),
# subsecond, which chose the closed port's, nothing (the module times one upstream a request).
# Gates `authfirst` and `authsecond`: error_page 502 sends a closed port's request to a location
# reading authfirst in a `set` and authsecond in an auth_request's subrequest, proxying to
# stable: the first location's upstream, finalized, is not passed over, one success each (a
# build passing over any upstream the main request had recorded nothing for authsecond).
# Gates `subbadfirst` and `subbadsecond`: the mirror reads subbadfirst, the malformed body's 400
# goes to a location reading subbadsecond in a `set` (the request left the location of the
# upstream subbadfirst passed over, which never makes its request), proxying to stable: one
# success each (a build taking that read for the passed upstream's recorded nothing for it).
# Gates `tffirst` and `tfsecond`: the malformed body's 400 goes to a location where an
# auth_request's subrequest reads tffirst first (passing over the left-over upstream, which
# never makes its request), then try_files reads tfsecond in its path and falls back to a
# named location proxying to stable: one success each (the request was in the error page's
# location at the first route, not the passed upstream's; a build telling that by a redirect
# since the route took the try_files read for the passed upstream's: nothing for tfsecond).
# Gates `lockhdr` and `lockhdr2`: as for lockpage, two requests for one key of the cache in
# the location error_page sends a closed port's 502 to (a named location: the main request
# is internal), whose upstream reads lockhdr2 in its proxy_set_header and whose 502
# (intercepted; recursive_error_pages on) goes on to @st, proxying to stable. The request
# holding the lock reads lockhdr2 first, in its content handler as its upstream makes its
# request, before its mirror runs: lockhdr2 records that upstream's 502, and lockhdr, read
# by the mirror once that upstream started, nothing. The waiter's mirror reads lockhdr first
# while its upstream waits on the lock, the main request in the content phase of that
# upstream's location: lockhdr records the next upstream, stable's 200, and lockhdr2, read
# later in the waiting upstream's proxy_set_header, chose that one: nothing. So lockhdr2
# records 1 (a build telling the location by the main request being internal rather than by
# its phase took the waiter's read for the next upstream's: 2). @lockhdr's upstream is a
# server of the test's nginx that logs the X-Version header lockhdr2 gave and proxies to the
# slow 502 server.
# Each mirror logs the gate's value it read (log_subrequest on), a line a request, and the
# upstream of /subfirst (a server answering 502, intercepted) the X-Version header that read
# subsecond, so a gate expected to record nothing was read as meant.
port=$(free_port)
h2port=$port # (post_body's HTTP/2 port: not used here)
closed=$(free_port)
stable=$(free_port)
hdr=$(free_port)
slow=$(free_port)
lockrelay=$(free_port)
# A second behind: a cache lock's second request, sent 30 ms after the first, must come while
# the first's upstream still waits (at 100 ms, a loaded machine starting the second curl late
# let it find the answer made, and no lock waited on)
slow_502_server "$slow" 1
mkdir -m 777 "$tmp/lockcache" # the workers (nobody, as root) write the cache
# mirror_read <gate>: the location /mirror<gate> a mirror subrequest reads the gate in, in a
# `set` (and answers 204 itself), logging the value read to logs/mirrorread.log
mirror_read() {
  echo "location = /mirror$1 { internal; log_subrequest on; access_log logs/mirrorread.log mirrorread;
            set \$v \$promotion_gate_$1; return 204; }"
}
# mirrored <gate> <directives>: location /<gate> with <directives>, mirrored to mirror_read's
mirrored() {
  echo "location /$1 { mirror /mirror$1; $2 }
        $(mirror_read "$1")"
}
gates="$(canary_gates "sub two subtwo subhdr sublock subnores subfirst subsecond lockpage authfirst
  authsecond subbadfirst subbadsecond tffirst tfsecond lockhdr lockhdr2" "$closed" "$stable")
$(canary_gates "subpage subbad subbadrt" "$stable" "$stable")"
serve "$(cat <<CONF
    $gates
    proxy_cache_path $tmp/lockcache keys_zone=sublock:1m;
    log_format subread '\$uri \$status \$upstream_status';
    log_format subtime '\$uri \$request_time';
    log_format mirrorread '\$uri \$v';
    log_format hdr '\$http_x_version';
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server { listen 127.0.0.1:$hdr; access_log logs/hdr.log hdr; return 502; }
    server { listen 127.0.0.1:$lockrelay; access_log logs/lockhdr.log hdr;
        location / { proxy_pass http://127.0.0.1:$slow; } }
    server {
        listen 127.0.0.1:$port;
        access_log logs/subread.log subread;
        access_log logs/subtime.log subtime;
        mirror_request_body off;
        $(mirrored sub "proxy_pass http://127.0.0.1:$closed;")
        $(mirrored subpage "error_page 502 = @subpage; proxy_pass http://127.0.0.1:$closed;")
        location @subpage { proxy_pass http://subpage_\$promotion_gate_subpage; }
        $(mirrored subtwo "proxy_pass http://two_\$promotion_gate_two;")
        $(mirrored subhdr "proxy_set_header X-Version \$promotion_gate_subhdr; proxy_pass http://127.0.0.1:$closed;")
        $(mirrored subbad "error_page 400 = @subbad; proxy_pass http://127.0.0.1:$closed;")
        location @subbad { proxy_pass http://subbad_\$promotion_gate_subbad; }
        $(mirrored subbadrt "error_page 400 = @subbadrt; proxy_pass http://127.0.0.1:$closed;")
        location @subbadrt { set \$sp $stable; proxy_pass http://127.0.0.1:\$sp; }
        $(mirrored sublock "proxy_cache sublock; proxy_cache_key sublock; proxy_cache_lock on;
            proxy_pass http://127.0.0.1:$slow;")
        $(mirrored subnores "recursive_error_pages on; error_page 400 = @nores;
            proxy_pass http://127.0.0.1:$closed;")
        location @nores { error_page 502 = @st; proxy_pass http://nores_\$promotion_gate_subnores; }
        location @st { proxy_pass http://127.0.0.1:$stable; }
        $(mirrored subfirst "proxy_set_header X-Version \$promotion_gate_subsecond; error_page 502 = @st;
            proxy_intercept_errors on; proxy_pass http://127.0.0.1:$hdr;")
        $(mirrored subbadfirst "error_page 400 = @badset; proxy_pass http://127.0.0.1:$closed;")
        location @badset { set \$s \$promotion_gate_subbadsecond; proxy_pass http://127.0.0.1:$stable; }
        location /lockpage { error_page 502 = @lockpage; proxy_pass http://127.0.0.1:$closed; }
        location @lockpage { mirror /mirrorlockpage; proxy_cache sublock; proxy_cache_key lockpage;
            proxy_cache_lock on; proxy_pass http://127.0.0.1:$slow; }
        $(mirror_read lockpage)
        location /lockhdr { recursive_error_pages on; error_page 502 = @lockhdr;
            proxy_pass http://127.0.0.1:$closed; }
        location @lockhdr { mirror /mirrorlockhdr; proxy_cache sublock; proxy_cache_key lockhdr;
            proxy_cache_lock on; proxy_set_header X-Version \$promotion_gate_lockhdr2;
            proxy_intercept_errors on; error_page 502 = @st; proxy_pass http://127.0.0.1:$lockrelay; }
        $(mirror_read lockhdr)
        location /authpage { error_page 502 = /authpage-e; proxy_pass http://127.0.0.1:$closed; }
        location = /authpage-e { set \$a \$promotion_gate_authfirst; auth_request /authcheck;
            proxy_pass http://127.0.0.1:$stable; }
        location = /authcheck { internal; access_log off; set \$b \$promotion_gate_authsecond; return 204; }
        location /tf { error_page 400 = /tf-e; proxy_pass http://127.0.0.1:$closed; }
        location = /tf-e { auth_request /tfauth; try_files /nofile-\$promotion_gate_tfsecond @st; }
        location = /tfauth { internal; access_log off; set \$b \$promotion_gate_tffirst; return 204; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
for path in sub subpage subtwo subhdr subfirst; do
  for _ in 1 2 3; do echo "/$path slow: $(post_body "/$path" slow)"; done
done
for path in subbad subbadrt subnores subbadfirst tf; do
  echo "/$path badchunk: $(post_body "/$path" badchunk 0.4)"
done
for path in sublock lockpage lockhdr; do
  curl -s -o /dev/null "http://127.0.0.1:$port/$path" &
  first=$!
  sleep 0.03 # the first request holds the cache lock while its upstream waits 1 s
  curl -s -o /dev/null "http://127.0.0.1:$port/$path"
  wait "$first"
done
curl -s -o /dev/null "http://127.0.0.1:$port/authpage"
sleep 0.2 # the last request's log phase
# Each case happened as meant, or its check would pass vacuously (or fail spuriously): nginx
# read a slow body's header well before its body, sent 0.5 s later (its mirror ran while it
# read the body; read at once, the request takes a few milliseconds), a malformed body's first
# chunk well before the invalid size, sent 0.4 s later (each a quarter second past its
# threshold, room for a loaded machine), and one request of each cache lock
# pair waited on the lock (nginx looks again each 500 ms; the other takes 1 s, but a waiter
# proxies after the lock too: at least 1.5 s).
subtime=$(awk '$1 ~ /^\/(sub|subpage|subtwo|subhdr|subfirst)$/ && $2 < 0.25 { print "slow:", $0 }
  $1 ~ /^\/(subbad|subbadrt|subnores|subbadfirst|tf-e)$/ && $2 < 0.15 { print "badchunk:", $0 }
  $1 ~ /^\/(sublock|lockpage|lockhdr)$/ && $2 >= 1.5 { waited[$1] = 1 }
  END { if (!waited["/sublock"] || !waited["/lockpage"] || !waited["/lockhdr"])
    print "no lock waiter:", waited["/sublock"] + 0, waited["/lockpage"] + 0, waited["/lockhdr"] + 0 }' "$tmp/logs/subtime.log")
echo "by uri, the request's time: $(tr '\n' ';' <"$tmp/logs/subtime.log")"
[ -z "$subtime" ] || { echo "FAIL: a case's timing did not happen as meant (its check would say nothing): $subtime" >&2; exit 1; }
subread=$(sort "$tmp/logs/subread.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "by uri, status and upstream statuses: $subread"
mirrorread=$(LC_ALL=C sort "$tmp/logs/mirrorread.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "by mirror, the value read: $mirrorread"
hdrread=$(sort "$tmp/logs/hdr.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "X-Version at /subfirst's upstream: $hdrread"
lockhdrread=$(sort "$tmp/logs/lockhdr.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "X-Version at /lockhdr's upstream: $lockhdrread"
sub_windows=$(for gate in sub subpage two subtwo subhdr subbad subbadrt sublock subnores subfirst \
  subsecond lockpage authfirst authsecond subbadfirst subbadsecond tffirst tfsecond lockhdr \
  lockhdr2; do
  printf '%s\n' "$gate: $(body_window "$gate" requests) recorded, $(body_window "$gate" errors) errors"
done)
echo "$sub_windows"
stop_serving
stop_tcp_server
[ "$subread" = "1 /authpage-e 200 502 : 200;2 /lockhdr 200 502 : 502 : 200;2 /lockpage 502 502 : 502;3 /sub 502 502;1 /subbad 200 200;1 /subbadfirst 200 200;1 /subbadrt 200 200;3 /subfirst 200 502 : 200;3 /subhdr 502 502;2 /sublock 502 502;1 /subnores 200 -, 200;3 /subpage 200 502 : 200;3 /subtwo 502 502;1 /tf-e 200 200;" ] ||
  { echo "FAIL: expected /sub's, /subtwo's, /subhdr's and /sublock's 502, /subpage's, /subfirst's and /authpage's 502 then its error page's 200, /lockpage's 502 then its error page's 502, /lockhdr's 502 then its error page's 502 then its fallback's 200, the error pages' 200 after /subbad's, /subbadrt's and /tf's 400, and /subnores's error page's 502 (no peer tried) then its own error page's 200" >&2; exit 1; }
[ "$mirrorread" = "2 /mirrorlockhdr canary;2 /mirrorlockpage canary;3 /mirrorsub canary;1 /mirrorsubbad canary;1 /mirrorsubbadfirst canary;1 /mirrorsubbadrt canary;3 /mirrorsubfirst canary;3 /mirrorsubhdr canary;2 /mirrorsublock canary;1 /mirrorsubnores canary;3 /mirrorsubpage canary;3 /mirrorsubtwo canary;" ] ||
  { echo "FAIL: expected each request's mirror to read its gate (canary), once" >&2; exit 1; }
[ "$hdrread" = "3 canary;" ] ||
  { echo "FAIL: expected /subfirst's upstream to get subsecond's decision (canary) in X-Version, each request" >&2; exit 1; }
[ "$lockhdrread" = "2 canary;" ] ||
  { echo "FAIL: expected /lockhdr's error page's upstream to get lockhdr2's decision (canary) in X-Version, each request" >&2; exit 1; }
[ "$sub_windows" = "sub: 0 recorded, 0 errors
subpage: 3 recorded, 0 errors
two: 3 recorded, 3 errors
subtwo: 0 recorded, 0 errors
subhdr: 0 recorded, 0 errors
subbad: 1 recorded, 0 errors
subbadrt: 1 recorded, 0 errors
sublock: 0 recorded, 0 errors
subnores: 0 recorded, 0 errors
subfirst: 3 recorded, 0 errors
subsecond: 0 recorded, 0 errors
lockpage: 0 recorded, 0 errors
authfirst: 1 recorded, 0 errors
authsecond: 1 recorded, 0 errors
subbadfirst: 1 recorded, 0 errors
subbadsecond: 1 recorded, 0 errors
tffirst: 1 recorded, 0 errors
tfsecond: 1 recorded, 0 errors
lockhdr: 1 recorded, 0 errors
lockhdr2: 1 recorded, 1 errors" ] || { echo "FAIL: expected a gate first read by a mirror subrequest to record none of the upstream its request made before it (sub, subtwo, subhdr, sublock, lockpage) and the upstream its error page started after it (subpage, subbad, subbadrt, subfirst, subbadfirst, with subbadsecond read there), not a fallback of an error page's upstream that tried no peer (subnores), a gate read for the upstream passed over nothing (subsecond), a gate read by auth_request after a finalized upstream the next one (authsecond), gates read by auth_request and try_files in an error page's location after an unmade upstream the error page's (tffirst, tfsecond), and a gate the cache lock's holder reads first in its upstream's proxy_set_header that upstream, the waiter's read there, after its mirror's, nothing (lockhdr2: the holder's 502; lockhdr: the waiter's fallback's 200)" >&2; exit 1; }

echo "== a gate read by if reaches its version through an error page, one read by proxy_pass does not, one read after a balancer's does"
# Routing by `if ($promotion_gate_e418 = canary) { return 418; }` with `error_page 418 =
# @canary` (the idiom nginx's "if is evil" page gives): the gate chose no upstream object, and
# the first upstream started after the route, the error page's, is its version (a build taking
# every upstream started once an error page began for another's recorded nothing for the
# canary, one-sided). Two gates: `up`, read by proxy_pass, whose request body is malformed
# (nginx's 400 before proxy_pass sent anything), and `other`, read by the proxy_pass of the
# location error_page sends the 400 to: `other`'s outcome is recorded, `up`'s is not (a build
# deciding per request recorded both or neither). A gate read by `set` in the location an
# error page sends a malformed body's 400 to, from a location proxying without a gate (`setg`),
# is recorded: the first location's upstream, left over, is not the one it chose (a build
# taking any upstream not yet sending for the reader's recorded nothing). A gate read by
# proxy_pass whose upstream never reached its peers (`rt`: the body malformed) is not credited
# with the outcome of the error page's upstream, one resolved at run time (`proxy_pass
# http://127.0.0.1:$sp`), which the module does not wrap and so cannot tell from the chosen one
# at its start: stable's 200 answers the client, and `rt` records nothing (a build reading the
# request's last upstream state for it recorded each as a canary success). Gate `bal` is first
# read by the hash key of the upstream{} block `bal`, whose two servers refuse (nginx's 502
# after both): it chose nothing and records nothing. error_page 502 sends the request on to a
# named location: @bpass proxies to the upstream named by gate `bpass`, @bset to the one named
# by gate `bset` through `set`; each chose the error page's upstream, the first started after
# it was read (the canary's 500: a failure each), and records it as `bplain` does behind an
# upstream no gate chose. @bhash proxies to an upstream{} block whose hash key first reads
# gate `bhash`: a balancer's read, nothing recorded. A build that took the balancer's read as
# the request's first route read `bpass` and `bset` as asked once the upstream had started,
# and recorded nothing for either.
port=$(free_port)
h2port=$(free_port)
failing=$(free_port)
stable=$(free_port)
gates=$(canary_gates "e418 up other setg rt bal bpass bset bplain bhash" "$failing" "$stable")
serve "$(cat <<CONF
    $gates
    upstream plain { server 127.0.0.1:$stable; }
    upstream bal { hash \$promotion_gate_bal; server 127.0.0.1:9 max_fails=0; server 127.0.0.2:9 max_fails=0; }
    upstream bhash { hash \$promotion_gate_bhash; server 127.0.0.1:$failing; }
    log_format balanced '\$uri \$status \$upstream_status';
    server { listen 127.0.0.1:$failing; access_log off; return 500; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        location /e418 {
            error_page 418 = @e418canary;
            if (\$promotion_gate_e418 = canary) { return 418; }
            proxy_pass http://e418_stable;
        }
        location @e418canary { proxy_pass http://e418_canary; }
        location /up { error_page 400 = @other; proxy_pass http://up_\$promotion_gate_up; }
        location @other { proxy_pass http://other_\$promotion_gate_other; }
        location /plain { error_page 400 = @setg; proxy_pass http://plain; }
        location @setg { set \$v \$promotion_gate_setg; proxy_pass http://setg_\$v; }
        location /rt { error_page 400 = @rtstable; proxy_pass http://rt_\$promotion_gate_rt; }
        location @rtstable { set \$sp $stable; proxy_pass http://127.0.0.1:\$sp; }
        location /bpass { error_page 502 = @bpass; proxy_pass http://bal; }
        location @bpass { access_log logs/balanced.log balanced; proxy_pass http://bpass_\$promotion_gate_bpass; }
        location /bset { error_page 502 = @bset; proxy_pass http://bal; }
        location @bset {
            access_log logs/balanced.log balanced;
            set \$v \$promotion_gate_bset;
            proxy_pass http://bset_\$v;
        }
        location /bplain { error_page 502 = @bplain; proxy_pass http://127.0.0.2:9; }
        location @bplain { access_log logs/balanced.log balanced; proxy_pass http://bplain_\$promotion_gate_bplain; }
        location /bhash { error_page 502 = @bhash; proxy_pass http://bal; }
        location @bhash { access_log logs/balanced.log balanced; proxy_pass http://bhash; }
        location = /metrics { access_log off; promotion_gate_metrics; }
    }
CONF
)"
for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/e418"; done
echo "/up badchunk: $(post_body /up badchunk)"
echo "/plain badchunk: $(post_body /plain badchunk)"
rt_answers=$(for _ in 1 2 3; do post_body /rt badchunk; done | sort | uniq -c | sed 's/^ *//')
echo "/rt badchunk: $rt_answers"
for path in bpass bset bplain bhash; do
  for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/$path"; done
done
sleep 0.2 # the last request's log phase
balanced=$(sort "$tmp/logs/balanced.log" | uniq -c | sed 's/^ *//' | tr '\n' ';')
echo "/bpass, /bset, /bplain, /bhash: by uri, status and upstream statuses: $balanced"
for gate in e418 up other setg rt bal bpass bset bplain bhash; do
  printf '%s\n' "$gate: $(body_window "$gate" requests) recorded, $(body_window "$gate" errors) errors"
done >"$tmp/e418.windows"
cat "$tmp/e418.windows"
stop_serving
[ "$(cat "$tmp/e418.windows")" = "e418: 3 recorded, 3 errors
up: 0 recorded, 0 errors
other: 1 recorded, 1 errors
setg: 1 recorded, 1 errors
rt: 0 recorded, 0 errors
bal: 0 recorded, 0 errors
bpass: 5 recorded, 5 errors
bset: 5 recorded, 5 errors
bplain: 5 recorded, 5 errors
bhash: 0 recorded, 0 errors" ] || { echo "FAIL: expected e418's 3 canary failures through its error page, none for up and rt, other's and setg's one failure, the error pages' 5 for bpass, bset and bplain, none for the balancers' bal and bhash" >&2; exit 1; }
[ "$rt_answers" = "3 HTTP/1.1 200 OK" ] || { echo "FAIL: expected stable's 200 for each /rt badchunk, got: $rt_answers" >&2; exit 1; }
[ "$balanced" = "5 /bhash 500 502, 502 : 500;5 /bpass 500 502, 502 : 500;5 /bplain 500 502 : 500;5 /bset 500 502, 502 : 500;" ] ||
  { echo "FAIL: expected the refusals, then the error page's canary's 500, for each /b... request" >&2; exit 1; }

echo "== a granted upgrade (a WebSocket) is a success timed at its 101, a refused one a failure, an unasked 101 or one to another protocol a failure"
# The canary grants upgrades (101) and then says nothing, and refuses those to /refuse (503):
# 9 granted and 1 refused are 10 requests and 1 error (a build recording only the refusals saw
# a WebSocket canary fail all it was weighed on), recorded as the 101s go out, while the
# connections are still open (a build recording a grant in the log phase, when its connection
# ends, showed the window only the refusal meanwhile). nginx ends each upgraded connection
# after proxy_read_timeout (2 s here) with a 504, no failure (after the header: a build
# counting what broke after the header took the idle timeout for one), and the latency
# recorded is the time to the 101's header, not the connection's life (nor the clients'
# 2.5 s): the window's latency sum stays under 2 s for the 10 (their connections last 18 s at
# least), and all fall in the bucket le=0.5. Through an upstream{} block (gate `ws`, its peer wrapped, timed by
# the module) and through a URL built at run time (gate `wsvar`: peers made on the spot,
# timed by nginx's header time, in milliseconds). A 101 to a request that asked no upgrade
# (gate `wsno`: no Upgrade header) is not switched to: nginx passes it on as an answer and
# reads its body until proxy_read_timeout ends it; it is a failure, recorded as the 101 goes
# out and timed to it, once (a build recording nothing for it, as the module did before, saw
# 0 of the 3). A 101 is a grant only of the protocol asked, by the Go middleware's rule (its
# ReverseProxy's): gate `wsother`'s 3 websocket requests answered `Upgrade: h2c`, which nginx
# switches to all the same, and 1 with an Upgrade header but no `Connection: upgrade` (which
# asks none), are failures, and 2 answered `Upgrade: WebSocket` to `Connection: keep-alive,
# upgrade` successes: 6 requests, 4 errors (the module recorded 6 successes before).
port=$(free_port)
socket=$(free_port)
tcp_server "$socket" '    request = c.recv(65536)
    if b"/refuse" in request:
        c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        c.close()
        continue
    upgrade = b"h2c" if b"/h2c/" in request else b"WebSocket" if b"/case/" in request else b"websocket"
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + upgrade + b"\r\n\r\n")
    held.append(c)  # then idle'
gate_document ws 100
gate_document wsvar 100
gate_document wsno 100
gate_document wsother 100
serve "$(cat <<CONF
    log_format ws '\$status \$request_time';
    promotion_gate ws ws.json;
    promotion_gate wsvar wsvar.json;
    promotion_gate wsno wsno.json;
    promotion_gate wsother wsother.json;
    upstream ws_canary { server 127.0.0.1:$socket; }
    upstream ws_stable { server 127.0.0.1:$socket; }
    upstream wsno_canary { server 127.0.0.1:$socket; }
    upstream wsno_stable { server 127.0.0.1:$socket; }
    upstream wsother_canary { server 127.0.0.1:$socket; }
    upstream wsother_stable { server 127.0.0.1:$socket; }
    server {
        listen 127.0.0.1:$port;
        access_log logs/ws.log ws;
        proxy_http_version 1.1;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection upgrade;
        proxy_read_timeout 2s;
        location / { proxy_pass http://ws_\$promotion_gate_ws; }
        location /var/ { proxy_pass http://127.0.0.1:$socket/\$promotion_gate_wsvar\$request_uri; }
        location /no/ {
            access_log logs/wsno.log ws;
            postpone_output 0; # the 101 to the client at once, not with the body that never comes
            proxy_pass http://wsno_\$promotion_gate_wsno;
        }
        location /other/ {
            access_log logs/wsother.log ws;
            proxy_pass http://wsother_\$promotion_gate_wsother;
        }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
clients=()
for n in 1 2 3; do # no upgrade asked: each keeps the first line of its answer, then holds on 2.5 s
  (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET /no/%s HTTP/1.1\r\nHost: x\r\n\r\n' "$n" >&3 &&
    head -n 1 <&3 >"$tmp/wsno.$n" &&
    sleep 2.5) &
  clients+=($!)
  started "$!"
done
# <path>[ <Connection header>]: each asks a websocket and holds its connection open for 2.5 s, silent
for request in {,var/}{1,2,3,4,5,6,7,8,9,refuse}' Connection: Upgrade' other/h2c/{1,2,3}' Connection: Upgrade' \
  other/case/{1,2}' Connection: keep-alive, upgrade' other/noconn/1; do
  connection=
  [ "${request#* }" = "$request" ] || connection="${request#* }"$'\r\n'
  (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET /%s HTTP/1.1\r\nHost: x\r\n%sUpgrade: websocket\r\n\r\n' "${request%% *}" "$connection" >&3 &&
    sleep 2.5) &
  clients+=($!)
  started "$!"
done
# canary_requests <exposition> <gate>: the gate's canary window's requests
canary_requests() { sed -n "s/^promotion_window_requests{gate=\"$2\",cohort=\"canary\"} //p" <<<"$1"; }
for _ in $(seq 15); do # within 1.5 s, before nginx's 2 s idle timeout ends a connection
  sleep 0.1
  open_metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
  [ "$(canary_requests "$open_metrics" ws) $(canary_requests "$open_metrics" wsvar)" = "10 10" ] &&
    [ "$(canary_requests "$open_metrics" wsother) $(canary_requests "$open_metrics" wsno)" = "6 3" ] &&
    [ "$(cat "$tmp"/wsno.{1,2,3} 2>/dev/null | grep -c '^HTTP/1.1 101 ')" = 3 ] && break
done
# canary_errors <exposition> <gate>: the gate's canary window's errors
canary_errors() { sed -n "s/^promotion_window_errors{gate=\"$2\",cohort=\"canary\"} //p" <<<"$1"; }
echo "while the upgraded connections are open: ws $(canary_requests "$open_metrics" ws), wsvar $(canary_requests "$open_metrics" wsvar), wsother $(canary_requests "$open_metrics" wsother) ($(canary_errors "$open_metrics" wsother) errors), wsno $(canary_requests "$open_metrics" wsno) ($(canary_errors "$open_metrics" wsno) errors) recorded"
[ "$(canary_requests "$open_metrics" ws) $(canary_requests "$open_metrics" wsvar)" = "10 10" ] ||
  { echo "FAIL: expected the 10 upgrades of each gate recorded as their 101s went out" >&2; exit 1; }
[ "$(canary_requests "$open_metrics" wsother) $(canary_errors "$open_metrics" wsother)" = "6 4" ] ||
  { echo "FAIL: wsother: expected 6 101s recorded as they went out, 4 failures (another protocol, none asked)" >&2; exit 1; }
[ "$(cat "$tmp"/wsno.{1,2,3} 2>/dev/null | grep -c '^HTTP/1.1 101 ')" = 3 ] ||
  { echo "FAIL: expected nginx to pass the 3 unasked 101s on:" "$(cat "$tmp"/wsno.{1,2,3} 2>/dev/null)" >&2; exit 1; }
[ "$(canary_requests "$open_metrics" wsno) $(canary_errors "$open_metrics" wsno)" = "3 3" ] ||
  { echo "FAIL: wsno: expected the 3 101s to requests that asked no upgrade recorded as failures as they went out" >&2; exit 1; }
wait "${clients[@]}" || true
sleep 0.2
metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
stop_serving
stop_tcp_server
# nginx logs an upgraded request once its connection ends: 101, after about 2 s (its idle
# timeout, not the clients' 2.5 s)
upgraded=$(awk '$1 == 101 && $2 >= 1.9 && $2 < 2.45' "$tmp/logs/ws.log" | grep -c . || true)
echo "18 upgrades granted, $upgraded ended by nginx's idle timeout"
[ "$upgraded" = 18 ] || { echo "FAIL: expected 18 upgraded connections ended after 2 s:" >&2; cat "$tmp/logs/ws.log" >&2; exit 1; }
# nginx switched to each of wsother's 101s, another protocol's too
switched=$(awk '$1 == 101 && $2 >= 1.9 && $2 < 2.45' "$tmp/logs/wsother.log" | grep -c . || true)
echo "wsother: 6 101s, $switched switched to and ended by nginx's idle timeout"
[ "$switched" = 6 ] || { echo "FAIL: expected 6 switched connections ended after 2 s:" >&2; cat "$tmp/logs/wsother.log" >&2; exit 1; }
# the 101s no request asked for, logged as 101 once nginx's idle timeout ended their bodies
unasked=$(awk '$1 == 101 && $2 >= 1.9 && $2 < 2.45' "$tmp/logs/wsno.log" | grep -c . || true)
echo "3 101s to requests that asked no upgrade, $unasked ended by nginx's idle timeout"
[ "$unasked" = 3 ] || { echo "FAIL: expected 3 unasked 101s ended after 2 s:" >&2; cat "$tmp/logs/wsno.log" >&2; exit 1; }
# <gate>:<what>:<requests>:<errors>: each 101 recorded once (not again in the log phase), timed
# to its header (not to the idle timeout that ended it)
for expected in "ws:9 granted, 1 refused:10:1" "wsvar:9 granted, 1 refused:10:1" \
  "wsother:3 to another protocol, 1 to none asked, 2 granted:6:4" "wsno:3 to none asked:3:3"; do
  IFS=: read -r gate what want_requests want_errors <<<"$expected"
  # window <series>: the gate's canary window's <series> (requests, errors, latency_seconds_sum)
  window() { sed -n "s/^promotion_window_$1{gate=\"$gate\",cohort=\"canary\"} //p" <<<"$metrics"; }
  recorded=$(window requests)
  errors=$(window errors)
  latency_sum=$(window latency_seconds_sum)
  fast=$(grep -F "promotion_window_latency_seconds_bucket{gate=\"$gate\",cohort=\"canary\",le=\"0.5\"}" <<<"$metrics" | sed 's/.* //')
  echo "$gate: $what: $recorded recorded, $errors errors, latency sum $latency_sum s, $fast within 0.5 s"
  [ "$recorded" = "$want_requests" ] && [ "$errors" = "$want_errors" ] ||
    { echo "FAIL: $gate: expected $want_requests recorded, $want_errors errors" >&2; exit 1; }
  python3 -c 'import sys; sys.exit(not float(sys.argv[1]) < 2)' "$latency_sum" && [ "$fast" = "$want_requests" ] ||
    { echo "FAIL: $gate: the 101s were timed past their header (the connection's life?)" >&2; grep "^promotion_window_latency_seconds.*gate=\"$gate\",cohort=\"canary\"" <<<"$metrics" >&2; exit 1; }
done

echo "== upstream latencies in microseconds, through an upstream{} block and an address"
# nginx's own clock counts milliseconds, so a fast upstream would read as 0 or 1 ms: the module
# times the peer it wraps. Each request's latency (the change of the window's latency sum) must
# lie strictly between 0 and 1 ms, in the sub-millisecond buckets, for the upstream{} block
# (gate `block`) and for an address written in proxy_pass (gate `addr`, routed by an `if`).
port=$(free_port)
fast=$(free_port)
gate_document block 100
gate_document addr 100
serve "$(cat <<CONF
    promotion_gate block block.json;
    promotion_gate addr addr.json;
    upstream block_canary { server 127.0.0.1:$fast; }
    upstream block_stable { server 127.0.0.1:$fast; }
    server { listen 127.0.0.1:$fast; access_log off; return 200 "fast\n"; }
    server {
        listen 127.0.0.1:$port;
        access_log off;
        location /block { proxy_pass http://block_\$promotion_gate_block; }
        location /addr {
            if (\$promotion_gate_addr = canary) { proxy_pass http://127.0.0.1:$fast; }
            proxy_pass http://127.0.0.1:$fast;
        }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)"
# latency_sum <gate>: the canary window's latency sum, in seconds
latency_sum() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n "s/^promotion_window_latency_seconds_sum{gate=\"$1\",cohort=\"canary\"} //p"
}
for gate in block addr; do
  sums="$(latency_sum "$gate")"
  for _ in $(seq 10); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/$gate"
    sums="$sums $(latency_sum "$gate")"
  done
  metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
  sub_ms=$(sed -n "s/^promotion_window_latency_seconds_bucket{gate=\"$gate\",cohort=\"canary\",le=\"0.0005\"} //p" <<<"$metrics")
  # requests whose latency was strictly between 0 and 1 ms: none at millisecond resolution
  between=$(python3 -c 'import sys; s = [float(x) for x in sys.argv[1:]]; print(sum(0 < b - a < 0.001 for a, b in zip(s, s[1:])))' $sums)
  echo "$gate: $between of 10 latencies strictly between 0 and 1 ms; $sub_ms in the bucket le=0.0005"
  [ "$between" -ge 8 ] && [ "${sub_ms:-0}" -ge 5 ] ||
    { echo "FAIL: $gate's latencies are not timed in microseconds (window sums: $sums)" >&2; exit 1; }
done
stop_serving

echo "== the library's threads in a worker take none of nginx's signals"
# One worker with a SQLite gate: its store's sync thread, started when the worker opened the
# gate in init_process (nginx had just unblocked the worker's signals), must block every
# signal, so that nginx's (QUIT, HUP, USR1...) reach the worker's event loop, as the reopen
# attempts' threads do (a build opening the gate with the worker's mask showed SigBlk
# 0000000000000000 there). Every thread but the main one is read: each must block every signal
# but those no thread can (SIGKILL, SIGSTOP) and glibc's own two (32, 33: sigfillset's mask
# leaves them out).
port=$(free_port)
gate_document masked 100
serve "$(cat <<CONF
    promotion_gate masked masked.json;
    server { listen 127.0.0.1:$port; location = /metrics { promotion_gate_metrics; } }
CONF
)"
worker=$(pgrep -P "$master")
threads=0
unmasked=''
for status in /proc/"$worker"/task/*/status; do
  tid=$(basename "$(dirname "$status")")
  [ "$tid" != "$worker" ] || continue
  threads=$((threads + 1))
  blocked=$(sed -n 's/^SigBlk:[[:space:]]*//p' "$status")
  taken=''
  for signal in $(seq 64); do
    case $signal in 9 | 19 | 32 | 33) continue ;; esac
    (((16#$blocked >> (signal - 1)) & 1)) || taken+=" $signal"
  done
  [ -z "$taken" ] ||
    unmasked+=" $(cat "/proc/$worker/task/$tid/comm") ($tid): SigBlk $blocked, takes signals$(cut -c1-40 <<<"$taken")...;"
done
stop_serving
echo "worker $worker: $threads thread(s) besides the main one;${unmasked:- each blocks every signal}"
[ "$threads" -ge 1 ] || { echo "FAIL: worker $worker has no library thread to look at" >&2; exit 1; }
[ -z "$unmasked" ] || { echo "FAIL: a library thread takes nginx's signals:$unmasked" >&2; exit 1; }

echo "== the status location writes traffic_percent as the library's JSON does"
# Each gate's traffic_percent in its status is the text of its config's, the fewest digits
# that read back as the same number (a build writing %.3f showed a canary at 0.0004 % as
# 0.000, and 12.34567 % as 12.346).
port=$(free_port)
declare -A percents=([tiny]=0.0004 [fine]=12.34567 [least]=0.0000051 [whole]=5)
declare -A written=([tiny]=0.0004 [fine]=12.34567 [least]=5.1e-6 [whole]=5.0)
for gate in "${!percents[@]}"; do gate_document "$gate" "${percents[$gate]}"; done
serve_proxied "${!percents[*]}" 9
for gate in "${!percents[@]}"; do
  shown=$(curl -fs "http://127.0.0.1:$port/$gate/status" | grep -o '"traffic_percent":[^,]*')
  echo "a canary at ${percents[$gate]} %: $shown"
  [ "$shown" = "\"traffic_percent\":${written[$gate]}" ] ||
    { echo "FAIL: expected \"traffic_percent\":${written[$gate]}" >&2; exit 1; }
done
stop_serving

echo "== master_process off: the one process opens its gates"
# nginx's mode for its developers, one process and no workers: it makes its gates in
# init_process as a worker does, answers their status and records their outcomes (here a
# canary refusing connections: a failure). A build making gates in workers only routed every
# request to stable and answered the status 503.
port=$(free_port)
gate_document single 100
main_lines='master_process off;' serve_proxied single 9
curl -s -o /dev/null "http://127.0.0.1:$port/single/"
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/single/status")
for _ in $(seq 20); do
  failures=$(curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n 's/^promotion_window_errors{gate="single",cohort="canary"} //p')
  [ "$failures" = 1 ] && break
  sleep 0.05
done
# A reload in this mode is nginx's to refuse, which it does not: it reads the new configuration
# but starts nothing for it (nginx 1.22 serves no connection after it). The module warns.
kill -HUP "$master"
for _ in $(seq 40); do
  grep -q '\[warn\] .*promotion gate: a reload with "master_process off" opens none' "$tmp/logs/error.log" && break
  sleep 0.05
done
warned=$(grep -c '\[warn\] .*promotion gate: a reload with "master_process off" opens none' "$tmp/logs/error.log" || true)
stop_serving
echo "master_process off: status $status; canary failures in the window: ${failures:-none};" \
  "warnings of a reload: $warned"
[ "$status" = 200 ] && [ "$failures" = 1 ] ||
  { echo "FAIL: expected the gate open (status 200) and the canary's failure recorded" >&2; exit 1; }
[ "$warned" = 1 ] || { echo "FAIL: expected a reload in this mode warned of once" >&2; exit 1; }

echo "== a worker that could not open its gate tries again"
# One worker. Its store's file is made unreadable (chmod 000: the workers are not root), then
# the worker is killed: its successor cannot open the gate, logs that once, routes to stable
# and answers the status location 503, but a POST there 405 with `Allow: GET, HEAD`, as the
# metrics location (a build checking the method after the gate answered it 503, and 405 with
# no Allow header). Its attempts back off: 1 s after the first failure, then
# 2 s, so with the file readable again 2.5 s after the worker started the third attempt (3 s)
# opens the gate, after 2 failed attempts (a build trying every second failed 3); it logs that
# and answers the gate's state (a build opening the gate only when the worker started answered
# 503 for the worker's life).
port=$(free_port)
gate_document reopen 100
serve_proxied reopen 9
# unopened <gate>: makes the gate's store file unreadable (its mode kept in $store_mode) and
# kills the one worker; $new is its successor, which cannot open the gate
unopened() {
  local old
  store_mode=$(stat -c %a "$tmp/fleet/$1.db")
  chmod 000 "$tmp/fleet/$1.db"
  old=$(pgrep -P "$master")
  kill -KILL "$old"
  new=''
  for _ in $(seq 50); do
    new=$(pgrep -P "$master" | grep -vx "$old" || true)
    [ -n "$new" ] && break
    sleep 0.1
  done
}
unopened reopen
sleep 2.5 # two attempts (0 s, 1 s), each failing; the next one at 3 s
closed=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/reopen/status")
# posted <path>: the status and the Allow header of the answer to a POST to <path>
posted() {
  curl -s -o /dev/null -D - -X POST -d x "http://127.0.0.1:$port$1" | tr -d '\r' |
    sed -n 's/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p; s/^Allow: /Allow: /p' | paste -sd ' '
}
posted_status=$(posted /reopen/status)
posted_metrics=$(posted /metrics)
chmod "$store_mode" "$tmp/fleet/reopen.db"
for _ in $(seq 60); do
  opened=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/reopen/status")
  [ "$opened" = 200 ] && break
  sleep 0.05
done
stop_serving
grep "^[0-9/: ]*\[[a-z]*\] $new#.*promotion gate" "$tmp/logs/error.log" >"$tmp/reopen.log" || true
echo "worker $new, its store unreadable: status $closed, then $opened once readable again; it logged:"
cut -c1-160 "$tmp/reopen.log"
[ "$closed" = 503 ] && [ "$opened" = 200 ] ||
  { echo "FAIL: expected 503 while the store was unreadable, then 200" >&2; exit 1; }
echo "a POST meanwhile: status location $posted_status; metrics location $posted_metrics"
[ "$posted_status" = '405 Allow: GET, HEAD' ] && [ "$posted_metrics" = '405 Allow: GET, HEAD' ] ||
  { echo "FAIL: expected a POST to either location answered 405 with Allow: GET, HEAD" >&2; exit 1; }
grep -q 'promotion gate "reopen": .*this worker routes every request to stable' "$tmp/reopen.log" &&
  grep -q 'promotion gate "reopen": opened after 2 failed attempts' "$tmp/reopen.log" &&
  [ "$(grep -c . "$tmp/reopen.log")" = 2 ] ||
  { echo "FAIL: expected the failure logged once, then the open after 2 failed attempts" \
      "(1 s, then 2 s between them)" >&2; exit 1; }

echo "== a reopen attempt runs off the worker's event loop"
# One worker; its store waits up to 30 s for a lock (busy_timeout_ms). Another process opens
# the store's file; then the file is made unreadable and the worker killed: its successor
# cannot open the gate. That process then takes the file's lock (SQLite's exclusive locking
# mode, a transaction open) and holds it until this script tells it to let go; with the file
# readable again, the worker's next attempt opens it and waits for the lock (the worker holds
# the file open). While that attempt waits, the worker answers its metrics location, and its
# gate's status location 503 (a build making the attempt on the event loop answered nothing
# until the lock was let go); once the lock is let go, the attempt opens the gate. An order,
# not a time: nothing is timed but the bounds that keep a failure from hanging.
port=$(free_port)
cat >"$tmp/conf/blocked.json" <<JSON
{"gate": "blocked", "environment": {"canary": {"traffic_percent": 100}},
 "store": {"sqlite": {"path": "$tmp/fleet/blocked.db", "busy_timeout_ms": 30000, "fleet_judging": false}}}
JSON
serve_proxied blocked 9
# the lock's holder runs as the workers' user (as root: a journal file it made would be root's),
# with the system's python3 (one under root's home is not theirs to run); it opens the file,
# takes its lock once $tmp/take exists and lets go once $tmp/let-go exists, or after 20 s each
# (then saying so: the order was not checked)
holder=(python3)
[ "$(id -u)" -ne 0 ] || holder=(setpriv --reuid "$(stat -c %U "$tmp/fleet/blocked.db")" \
  --regid "$(stat -c %G "$tmp/fleet/blocked.db")" --clear-groups /usr/bin/python3)
"${holder[@]}" -c '
import os, sqlite3, sys, time
def told(path):
    bound = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < bound:
        time.sleep(0.01)
    return os.path.exists(path)
held = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
held.execute("PRAGMA locking_mode=EXCLUSIVE")
print("open", flush=True)
if told(sys.argv[2]):
    held.execute("BEGIN EXCLUSIVE")
    print("held", flush=True)
    print("let go when told" if told(sys.argv[3]) else "let go unasked", flush=True)
    held.execute("ROLLBACK")
held.close()
' "$tmp/fleet/blocked.db" "$tmp/take" "$tmp/let-go" >"$tmp/held.out" &
held_pid=$!
started "$held_pid"
# holder_says <line>: waits until the holder said <line>, or fails
holder_says() {
  for _ in $(seq 500); do grep -qx "$1" "$tmp/held.out" && return 0; sleep 0.02; done
  echo "FAIL: the store's lock holder did not say '$1': $(paste -sd ' ' "$tmp/held.out")" >&2
  exit 1
}
holder_says open
unopened blocked
failed=''
for _ in $(seq 500); do
  grep -q "\] $new#.*promotion gate \"blocked\": .*this worker routes every request to stable" "$tmp/logs/error.log" &&
    failed=yes && break
  sleep 0.02
done
[ -n "$failed" ] || { echo "FAIL: worker $new did not log that it could not open its gate" >&2; exit 1; }
touch "$tmp/take"
holder_says held
# store_files: how many of the new worker's file descriptors are open on the store's file
store=$(realpath "$tmp/fleet/blocked.db")
store_files() {
  local fd n=0
  for fd in /proc/"$new"/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$store" ] && n=$((n + 1))
  done
  echo "$n"
}
before=$(store_files) # the file unreadable: no attempt can have opened it
chmod "$store_mode" "$tmp/fleet/blocked.db"
waiting=''
for _ in $(seq 500); do
  [ "$(store_files)" -gt "$before" ] && waiting=yes && break
  sleep 0.02
done
[ -n "$waiting" ] || { echo "FAIL: worker $new made no attempt to open its store" >&2; exit 1; }
# the attempt under way and the lock held: the worker must answer, its gate not open yet
metrics=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/metrics" || true)
[ "$metrics" = 200 ] || { echo "FAIL: worker $new answered its metrics location $metrics" \
  "(000: nothing within 10 s) while its reopen attempt waited for the store's lock" >&2; exit 1; }
closed=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/blocked/status" || true)
[ "$closed" = 503 ] || { echo "FAIL: worker $new answered its gate's status location $closed" \
  "(expected 503) while its reopen attempt waited for the store's lock" >&2; exit 1; }
touch "$tmp/let-go"
opened=''
for _ in $(seq 200); do
  opened=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/blocked/status" || true)
  [ "$opened" = 200 ] && break
  sleep 0.05
done
wait "$held_pid" || true
stop_serving
echo "worker $new, its reopen attempt waiting for the store's lock: metrics $metrics, status $closed;" \
  "once the lock was let go: status $opened; the holder said: $(paste -sd ' ' "$tmp/held.out")"
grep "\] $new#.*promotion gate \"blocked\"" "$tmp/logs/error.log" | cut -c1-160
grep -qx "let go when told" "$tmp/held.out" ||
  { echo "FAIL: the store's lock was let go before the worker's answers were checked" >&2; exit 1; }
[ "$opened" = 200 ] || { echo "FAIL: the gate did not open once its store's lock was let go" >&2; exit 1; }
grep -q "\] $new#.*promotion gate \"blocked\": opened after [1-9][0-9]* failed attempts" "$tmp/logs/error.log" ||
  { echo "FAIL: expected the open logged after its failed attempts" >&2; exit 1; }

echo "== a failed reload leaves the running workers routing and recording"
# Two workers, two gates, three requests each to the canary (a server answering 200). Then two
# reloads fail (SIGHUP to the master: `nginx -s reload` reads the configuration itself and
# would refuse it without telling the master): one as gate `spoiled`'s document cannot be read
# (moved away: refused while the configuration is read), one as its store cannot be opened
# (made unreadable: refused when the zones are made, gate `held`'s handed over first). Each
# time the master logs why and keeps its workers, which go on routing to the canary and
# recording: after three more requests each, every worker's canary windows (its own outcomes
# and those pooled from the other) hold six of each gate.
port=$(free_port)
backend=$(free_port)
tcp_server "$backend" '    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    c.close()'
gate_document held 100 "" 60000
gate_document spoiled 100 "" 60000
serve_proxied "held spoiled" "$backend" 2
for _ in $(seq 50); do [ "$(pgrep -cP "$master")" = 2 ] && break; sleep 0.1; done
running=$(pgrep -P "$master" | sort | paste -sd ' ')
# three_each: three requests to each gate, each answered 200
three_each() {
  local gate
  for gate in held spoiled; do
    for i in 1 2 3; do curl -fs -o /dev/null "http://127.0.0.1:$port/$gate/$i" ||
      { echo "FAIL: /$gate/$i was not answered 200" >&2; exit 1; }; done
  done
}
# failed_reload <what the master logs>: SIGHUP, then waits up to 5 s for the master's line
failed_reload() {
  local before
  before=$(grep -cF -- "$1" "$tmp/logs/error.log" || true)
  kill -HUP "$master"
  for _ in $(seq 100); do
    [ "$(grep -cF -- "$1" "$tmp/logs/error.log" || true)" -gt "$before" ] && return 0
    sleep 0.05
  done
  echo "FAIL: the master did not log '$1' after the reload" >&2
  exit 1
}
# held_windows: each worker's canary windows, "<pid> held <n> spoiled <n>", a line each
held_windows() {
  local pid
  for pid in $running; do
    echo "$pid $(from_worker "$pid" /metrics |
      sed -n 's/^promotion_window_requests{gate="\(held\|spoiled\)",cohort="canary"} /\1 /p' |
      sort | paste -sd ' ')"
  done
}
three_each
mv "$tmp/conf/spoiled.json" "$tmp/conf/spoiled.away"
failed_reload "promotion_gate \"spoiled\": open() config \"$tmp/conf/spoiled.json\" failed"
mv "$tmp/conf/spoiled.away" "$tmp/conf/spoiled.json"
store_mode=$(stat -c %a "$tmp/fleet/spoiled.db")
chmod 000 "$tmp/fleet/spoiled.db"
failed_reload "promotion_gate \"spoiled\": PGATE_STATUS_"
chmod "$store_mode" "$tmp/fleet/spoiled.db"
grep -F 'promotion_gate "spoiled"' "$tmp/logs/error.log" | tail -n 2 | cut -c1-200
three_each
sleep 0.2 # a timer tick of each worker, which pools the other's outcomes
after=$(pgrep -P "$master" | sort | paste -sd ' ')
windows=$(held_windows)
stop_serving
stop_tcp_server
echo "workers before the failed reloads: $running; after them: $after; canary windows after 12 requests:"
echo "$windows"
[ "$after" = "$running" ] || { echo "FAIL: a failed reload changed the workers" >&2; exit 1; }
[ "$(grep -c ' held 6 spoiled 6$' <<<"$windows")" = 2 ] ||
  { echo "FAIL: a worker did not route and record every request after the failed reloads" >&2; exit 1; }

echo "== a reload keeps the pooled evidence, within the gate's window"
# One worker; canaries on a closed port (nginx's 502: a failure each); the store read every 60 s.
# Six failures of gate `kept` (a rollback needs seven) and six of gate `stale` (a window of
# 1 s), 1.5 s, then `nginx -s reload`: the new worker takes up the ring's outcomes of the
# workers before it, so kept's window holds its six and its seventh failure rolls it back,
# while stale's, older than its window, are left out (a build starting each new worker at the
# ring's head showed kept's window empty after the reload, and routed to its canary after nine
# failures; one taking up every kept outcome showed stale's six as new).
port=$(free_port)
gate_document kept 100 "" 60000
gate_document stale 100 '"rollback_window_seconds": 1,' 60000
# a window of 1 s takes an evaluation interval of at most a tenth of it (the default is 1 s)
echo '{"evaluation_interval_ms": 100}' >"$tmp/conf/stale_slo.json"
gate_params[stale]="slo=stale_slo.json"
serve_proxied "kept stale" 9
for gate in stale kept; do
  for _ in $(seq 6); do curl -s -o /dev/null "http://127.0.0.1:$port/$gate/"; done
done
# windows: each gate's canary requests and errors, as the answering worker counts them
windows() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n 's/^promotion_window_\(requests\|errors\){gate="\(kept\|stale\)",cohort="canary"} /\2 \1 /p' |
    sort | paste -sd ' '
}
before=$(windows)
sleep 1.5
# reload_one_worker: nginx -s reload, until the one worker before it exited and a new one runs,
# and past the new worker's first timer tick (which pools the ring)
reload_one_worker() {
  local old
  old=$(pgrep -P "$master")
  nginx -p "$tmp" -c conf/nginx.conf -s reload
  for _ in $(seq 100); do
    [ -n "$(pgrep -P "$master" | grep -vx "$old" || true)" ] && ! kill -0 "$old" 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.2
}
reload_one_worker
after=$(windows)
curl -s -o /dev/null "http://127.0.0.1:$port/kept/"
for _ in $(seq 40); do
  environment=$(curl -fs "http://127.0.0.1:$port/kept/status" | sed 's/.*"environment":"\([a-z]*\)".*/\1/')
  [ "$environment" = production ] && break
  sleep 0.05
done
stop_serving
echo "canary windows before the reload: $before; after it: $after; kept after its seventh failure: $environment"
[ "$before" = "kept errors 6 kept requests 6 stale errors 6 stale requests 6" ] ||
  { echo "FAIL: expected six failures in each window before the reload" >&2; exit 1; }
[ "$after" = "kept errors 6 kept requests 6 stale errors 0 stale requests 0" ] ||
  { echo "FAIL: the new worker did not take up kept's six failures and only those" >&2; exit 1; }
[ "$environment" = production ] ||
  { echo "FAIL: kept's seventh failure, the first after the reload, did not roll it back" >&2; exit 1; }

echo "== a rollback one worker decided reaches the other within milliseconds"
# Two workers, the store read every 60 s. Six failures (a rollback needs seven) are in both
# workers' windows (pooled); then as many forced requests (an override header: outcomes in
# neither cohort) as the shared ring holds push them out of it, and a worker is killed: its
# successor takes up the ring's outcomes, the forced ones only, so its window is empty. The
# seventh failure rolls the canary back in the surviving worker only (the new one has seen
# one failure): the new worker must apply the rollback from the store well within its sync
# interval, told by the zone's generation, not after 60 s.
port=$(free_port)
failing=$(free_port)
stable=$(free_port)
gate_document gen 100 '"overrides": {"header": "X-Canary"},' 60000
serve "$(cat <<CONF
    promotion_gate gen gen.json;
    upstream gen_canary { server 127.0.0.1:$failing; }
    upstream gen_stable { server 127.0.0.1:$stable; }
    server { listen 127.0.0.1:$failing; access_log off; return 500; }
    server { listen 127.0.0.1:$stable; access_log off; return 200 "stable\n"; }
    server {
        listen 127.0.0.1:$port reuseport;
        access_log off;
        location / { proxy_pass http://gen_\$promotion_gate_gen; }
        location = /status { add_header X-Worker \$pid; promotion_gate_status gen; }
        location = /metrics { promotion_gate_metrics; }
    }
CONF
)" 2
# status_of <pid>: the gate's environment as worker <pid> says
status_of() { from_worker "$1" /status | sed 's/.*"environment":"\([a-z]*\)".*/\1/'; }
workers() { pgrep -P "$master" | sort; }
for _ in $(seq 50); do [ "$(workers | grep -c .)" = 2 ] && break; sleep 0.1; done
for _ in $(seq 6); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
# 4096 forced requests (PGATE_RING_OUTCOMES) on one kept-alive connection
python3 - "$port" <<'PY' || { echo "FAIL: the forced requests failed" >&2; exit 1; }
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(4096):
    c.request("GET", f"/{i}", headers={"X-Canary": "stable"})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
sleep 0.3 # each worker pools the other's outcomes within 50 ms
victim=$(workers | head -n 1)
survivor=$(workers | tail -n 1)
kill -KILL "$victim"
for _ in $(seq 50); do
  successor=$(workers | grep -vx "$survivor" | grep -vx "$victim" || true)
  [ -n "$successor" ] && [ "$(workers | grep -c .)" = 2 ] && break
  sleep 0.1
done
[ "$(status_of "$successor")" = canary ] && [ "$(status_of "$survivor")" = canary ] ||
  { echo "FAIL: six failures rolled the canary back" >&2; exit 1; }
curl -s -o /dev/null "http://127.0.0.1:$port/"
for _ in $(seq 50); do [ "$(status_of "$survivor")" = production ] && break; sleep 0.02; done
[ "$(status_of "$survivor")" = production ] || { echo "FAIL: the seventh failure did not roll back worker $survivor" >&2; exit 1; }
rolled_at=$(date +%s%N)
for _ in $(seq 150); do [ "$(status_of "$successor")" = production ] && break; sleep 0.02; done
learned_ms=$((($(date +%s%N) - rolled_at) / 1000000))
for _ in $(seq 20); do # each worker's timer logs its changes every 50 ms
  [ "$(grep -c 'promotion gate "gen": state change: ' "$tmp/logs/error.log")" -ge 2 ] && break
  sleep 0.05
done
grep -q "\[warn\] $survivor#.*promotion gate \"gen\": state change: .*\"origin\":\"this_gate\"" "$tmp/logs/error.log" ||
  { echo "FAIL: worker $survivor did not log its own rollback" >&2; exit 1; }
[ "$(status_of "$successor")" = production ] ||
  { echo "FAIL: worker $successor still routes to the rolled-back canary after $learned_ms ms" >&2; exit 1; }
grep -q "\[warn\] $successor#.*promotion gate \"gen\": state change: .*\"origin\":\"store\"" "$tmp/logs/error.log" ||
  { echo "FAIL: worker $successor did not apply the rollback from the store" >&2; exit 1; }
echo "worker $survivor rolled back; worker $successor (one failure seen) followed within $learned_ms ms (sync interval 60 s)"
[ "$learned_ms" -lt 1000 ] || { echo "FAIL: $learned_ms ms is not within milliseconds" >&2; exit 1; }
stop_serving

echo "== a rollback made during a scrape reaches the other worker at once"
# The library reads each window for the metrics as pgate_read_health does: an evaluation that
# fell due meanwhile is made right after, on the scraping worker, and may roll the canary back.
# A shim preloaded into nginx stands for it: in the worker whose pid $tmp/scrape-rollback holds,
# the first scrape rolls the gate back (pgate_rollback, stored at once) after reading. That
# worker is stopped (SIGSTOP) as soon as its answer arrives, before its next timer tick: the
# other worker, which reads the store every 60 s, must learn of the rollback from the zone's
# generation, bumped by the scrape itself (a build announcing it only at the scraping worker's
# next timer tick left the other routing to the rolled-back canary).
cat >"$tmp/scrape_rollback.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
#include "promotion_gates.h"

pgate_status
pgate_metrics_prometheus_counted(const struct pgate_gate *const *gates,
    const struct pgate_outcome_counts *counts, size_t count, char *buf, size_t cap,
    size_t *len_out)
{
    FILE          *armed;
    long           pid;
    pgate_status   st;
    static int     done;

    __typeof__(&pgate_metrics_prometheus_counted)  real;

    real = (__typeof__(&pgate_metrics_prometheus_counted))
        dlsym(RTLD_NEXT, "pgate_metrics_prometheus_counted");
    st = real(gates, counts, count, buf, cap, len_out);

    armed = fopen(ARMED, "r");
    if (armed != NULL) {
        if (!done && count > 0 && fscanf(armed, "%ld", &pid) == 1 && pid == (long) getpid()) {
            done = 1;
            (void) pgate_rollback(gates[0], (const uint8_t *) "scraped", 7, NULL);
        }
        fclose(armed);
    }
    return st;
}
C
cc -shared -fPIC -O2 -Wall -Werror -DARMED="\"$tmp/scrape-rollback\"" -I"$here/../../include" \
  -o "$tmp/scrape_rollback.so" "$tmp/scrape_rollback.c" -ldl
port=$(free_port)
gate_document scraped 100 '' 60000
LD_PRELOAD="$tmp/scrape_rollback.so" serve_proxied scraped "$(free_port)" 2
workers() { pgrep -P "$master" | sort; }
for _ in $(seq 50); do [ "$(workers | grep -c .)" = 2 ] && break; sleep 0.1; done
scraper=$(workers | head -n 1)
other=$(workers | tail -n 1)
echo "$scraper" >"$tmp/scrape-rollback"
# scrapes until worker $scraper answers, and stops it as soon as its answer's header arrives
python3 - "$port" "$scraper" <<'PY' || { echo "FAIL: worker $scraper never answered /metrics" >&2; exit 1; }
import http.client, os, signal, sys
port, pid = int(sys.argv[1]), int(sys.argv[2])
for _ in range(200):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    r = c.getresponse()
    if r.getheader("X-Worker") == str(pid):
        os.kill(pid, signal.SIGSTOP)
        sys.exit(0)
    r.read()
    c.close()
sys.exit(1)
PY
# changed <pid> <origin>: whether worker <pid> logged the gate's state change of that origin
changed() { grep -q "\[warn\] $1#.*promotion gate \"scraped\": state change: .*\"origin\":\"$2\"" "$tmp/logs/error.log"; }
for _ in $(seq 20); do changed "$other" store && break; sleep 0.05; done
learned=no
changed "$other" store && learned=yes
kill -CONT "$scraper"
for _ in $(seq 20); do changed "$scraper" this_gate && break; sleep 0.05; done
stop_serving
changed "$scraper" this_gate || { echo "FAIL: worker $scraper did not roll back during its scrape" >&2; exit 1; }
[ "$learned" = yes ] ||
  { echo "FAIL: worker $other did not apply within 1 s the rollback worker $scraper made during a scrape (stopped before its next timer tick)" >&2; exit 1; }
echo "worker $scraper rolled back during a scrape, stopped at its answer; worker $other applied the rollback from the store within 1 s (sync interval 60 s)"

echo "== the outcome counters are the whole nginx's: the same from every worker, never down"
# Two workers. Forced requests (the override header) and ignored forcing values go through
# both; every scrape, whichever worker answers it, must read the same totals, equal to what was
# sent, and they must not go down when a worker is killed (its successor starts with a gate of
# its own) nor across a reload (new workers, the zone kept). A build serving each worker's own
# counts fails here: a worker counts the ignored values it routed itself, and a new worker's
# gate counts forced outcomes from 0.
port=$(free_port)
backend=$(free_port)
gate_document counted 50 '"overrides": {"header": "X-Canary"},'
serve "$(cat <<CONF
    log_format counted '\$pid';
    promotion_gate counted counted.json;
    upstream counted_canary { server 127.0.0.1:$backend; }
    upstream counted_stable { server 127.0.0.1:$backend; }
    server { listen 127.0.0.1:$backend; access_log off; return 200 "ok\n"; }
    server {
        listen 127.0.0.1:$port reuseport;
        location / { access_log logs/counted.log counted; proxy_pass http://counted_\$promotion_gate_counted; }
        location = /metrics { access_log off; add_header X-Worker \$pid; promotion_gate_metrics; }
    }
CONF
)" 2
workers() { pgrep -P "$master" | sort; }
await_workers() { # [<pids, a line each>]: until two workers run, none of those
  for _ in $(seq 100); do
    [ "$(workers | grep -cvxF "${1:-none}" || true)" = 2 ] && [ "$(workers | grep -c .)" = 2 ] && return 0
    sleep 0.1
  done
  echo "FAIL: nginx did not run two new workers; it runs $(workers | tr '\n' ' ')" >&2
  exit 1
}
# send <count> <header value>: requests through new connections (spread over the workers)
send() {
  for i in $(seq "$1"); do
    curl -fs -o /dev/null -H "X-Canary: $2" "http://127.0.0.1:$port/$i" ||
      { echo "FAIL: a request with X-Canary: $2 failed" >&2; exit 1; }
  done
}
# scrapes <forced> <ignored> <what>: scrapes until each running worker answered at least 5
# times; every answer must read <forced> forced outcomes and <ignored> ignored values
scrapes() {
  local answer pid forced ignored seen="" wrong=0 n=0 want
  want=$(workers | tr '\n' ' ')
  while [ "$n" -lt 400 ]; do
    n=$((n + 1))
    answer=$(curl -fsi "http://127.0.0.1:$port/metrics")
    pid=$(sed -n 's/^X-Worker: \([0-9]*\).*/\1/p' <<<"$answer")
    forced=$(sed -n 's/^promotion_forced_outcomes_total{gate="counted"} //p' <<<"$answer")
    ignored=$(sed -n 's/^promotion_ignored_override_values_total{gate="counted"} //p' <<<"$answer")
    seen="$seen $pid"
    if [ "$forced" != "$1" ] || [ "$ignored" != "$2" ]; then
      wrong=$((wrong + 1))
      echo "worker $pid: $forced forced outcomes, $ignored ignored values" >&2
    fi
    local all=yes w
    for w in $want; do [ "$(tr ' ' '\n' <<<"$seen" | grep -cx "$w")" -ge 5 ] || all=no; done
    [ "$all" = yes ] && break
  done
  for w in $want; do
    tr ' ' '\n' <<<"$seen" | grep -qx "$w" || { echo "FAIL: $3: worker $w never answered the metrics" >&2; exit 1; }
  done
  [ "$wrong" = 0 ] ||
    { echo "FAIL: $3: $wrong of $n scrapes did not read $1 forced outcomes and $2 ignored values" >&2; exit 1; }
  echo "$3: $n scrapes of workers $want all read $1 forced outcomes, $2 ignored values"
}
await_workers
send 20 canary
send 20 stable
send 10 maybe
sleep 0.3 # the last requests' log phase
served=$(sort -u "$tmp/logs/counted.log" | grep -c . || true)
[ "$served" = 2 ] || { echo "FAIL: the requests went through $served worker(s), not 2" >&2; exit 1; }
scrapes 40 10 "after 40 forced requests and 10 ignored values"
victim=$(workers | head -n 1)
kill -KILL "$victim"
await_workers "$victim"
scrapes 40 10 "after worker $victim was killed"
old=$(workers)
nginx -p "$tmp" -c conf/nginx.conf -s reload
await_workers "$old"
send 5 canary
send 5 anything
sleep 0.3
scrapes 45 15 "after a reload and 5 more of each"
stop_serving

echo "== an outcome the library refuses is neither shared nor logged a line each"
# A shim preloaded into nginx makes pgate_record refuse (PGATE_STATUS_PANIC) each outcome a
# worker records for its own request (the log phase asks what the gate did with it) and record
# those a worker pools from the ring (it does not ask). Two workers, 20 requests spread over
# them: a refused outcome stays out of the ring, so neither worker's window counts any, and each
# worker writes one error line for its refusals (a build sharing an outcome its gate refused
# showed each worker the other's outcomes; one logging each refusal wrote a line a request).
cat >"$tmp/refuse.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include "promotion_gates.h"

pgate_status
pgate_record(const struct pgate_gate *gate, const struct pgate_decision *decision, bool success,
    uint64_t latency_ns, pgate_recorded *recorded)
{
    __typeof__(&pgate_record)  real;

    if (recorded != NULL) {
        return PGATE_STATUS_PANIC;
    }
    real = (__typeof__(&pgate_record)) dlsym(RTLD_NEXT, "pgate_record");
    return real(gate, decision, success, latency_ns, recorded);
}
C
cc -shared -fPIC -O2 -Wall -Werror -I"$here/../../include" -o "$tmp/refuse.so" "$tmp/refuse.c" -ldl
port=$(free_port)
backend=$(free_port)
tcp_server "$backend" '    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    c.close()'
gate_document refused 100
LD_PRELOAD="$tmp/refuse.so" serve_proxied refused "$backend" 2
for _ in $(seq 50); do [ "$(pgrep -cP "$master")" = 2 ] && break; sleep 0.1; done
for i in $(seq 20); do curl -fs -o /dev/null "http://127.0.0.1:$port/refused/$i"; done
sleep 0.3 # the last requests' log phase, and a timer tick to pool
served=$(sort -u "$tmp/logs/refused.log" | grep -c . || true)
windows=''
for pid in $(pgrep -P "$master"); do
  windows+=" $(from_worker "$pid" /metrics | sed -n 's/^promotion_window_requests{gate="refused",cohort="canary"} //p')"
done
lines=$(grep -c 'promotion gate "refused": record: PGATE_STATUS_PANIC' "$tmp/logs/error.log" || true)
stop_serving
stop_tcp_server
echo "20 requests refused by pgate_record in $served workers: canary windows of the workers:$windows; $lines error lines"
[ "$served" = 2 ] || { echo "FAIL: the requests went through $served worker(s), not 2" >&2; exit 1; }
[ "$windows" = " 0 0" ] || { echo "FAIL: a worker counted outcomes another worker's gate refused (windows:$windows)" >&2; exit 1; }
[ "$lines" = 2 ] || { echo "FAIL: expected one error line a worker for its refusals, not $lines" >&2; exit 1; }

echo "== a read of the override names that keeps failing is logged once, not every tick"
# A shim preloaded into nginx makes pgate_override_names fail (PGATE_STATUS_PANIC): the worker
# asks again at every timer tick (50 ms) and, over 1.5 s, writes one error line (a build logging
# each failed read wrote one a tick, about 30).
cat >"$tmp/names.c" <<'C'
#include "promotion_gates.h"

pgate_status
pgate_override_names(const struct pgate_gate *gate, char *header, size_t header_cap,
    size_t *header_len, char *cookie, size_t cookie_cap, size_t *cookie_len)
{
    return PGATE_STATUS_PANIC;
}
C
cc -shared -fPIC -O2 -Wall -Werror -I"$here/../../include" -o "$tmp/names.so" "$tmp/names.c"
port=$(free_port)
gate_document names 5
LD_PRELOAD="$tmp/names.so" serve_proxied names "$(free_port)" 1
sleep 1.5
lines=$(grep -c 'promotion gate "names": override names: PGATE_STATUS_PANIC' "$tmp/logs/error.log" || true)
stop_serving
echo "override names failing for 1.5 s: $lines error line(s)"
[ "$lines" = 1 ] || { echo "FAIL: expected one error line for the failing reads, not $lines" >&2; exit 1; }

echo "== the ring's rules: how long a claimed slot is waited for, which ring a zone hands over; a quiet failure's counts"
# tests/ring_rules.c, built with the module's flags and linked with ngx_http_pgate_ring.c, sets
# the cached clock and the timer's ticks: an unpublished slot first seen at a stale cached time
# is waited for until two ticks passed (a build skipping it after 100 ms of cached time alone
# skipped it at the next look), and until 100 ms passed (a build skipping it after two ticks
# alone skipped one first seen just before a tick after 50 ms); a zone handed over with a ring
# of another layout stamp gets a new ring and a notice (a build taking any ring read an old
# layout's fields at this layout's offsets). Against the same clock, a failure logged quietly
# (ngx_http_pgate_quiet): each line counts what the line before kept quiet, dated by that line
# (a build counting "since the last line" gave a run's first line the count of a run that had
# ended an hour before, as its own).
module_cc -o "$tmp/ring_rules" "$here/tests/ring_rules.c" "$here/ngx_http_pgate_ring.c"
"$tmp/ring_rules" >"$tmp/ring_rules.out" ||
  { grep -v '^ok' "$tmp/ring_rules.out" >&2; echo "FAIL: the ring's rules" >&2; exit 1; }
echo "the ring's rules: $(grep -c '^ok' "$tmp/ring_rules.out") checks passed"

# The ring tests below preload tests/ring_shim.c, built against the module's header, which
# claims, publishes and stamps ring slots as the module's own definitions lay them out (see
# its comment), through the ring the worker itself uses: no root, no offsets written down.
module_cc -shared -fPIC -o "$tmp/ring_shim.so" "$here/tests/ring_shim.c" -ldl
port=$(free_port)
backend=$(free_port)
tcp_server "$backend" '    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    c.close()'
# canary_windows <gate>: each running worker's canary window of <gate>
canary_windows() {
  local pid windows=''
  for pid in $(pgrep -P "$master"); do
    windows+=" $(from_worker "$pid" /metrics | sed -n "s/^promotion_window_requests{gate=\"$1\",cohort=\"canary\"} //p")"
  done
  echo "$windows"
}

echo "== a ring slot claimed and never published holds up the pooling 100 ms at most"
# Two workers. After two outcomes, the request keyed `claim` claims a ring slot and never
# publishes it (what a worker killed between claiming a slot and publishing it leaves), then
# nine more requests spread over the workers: each worker waits for the claimed slot 100 ms,
# then skips it and pools the other's outcomes after it, so both windows hold all twelve (a
# build waiting until 64 later slots were claimed held each worker's window at its own
# outcomes), and logs the skip at info, once (a build skipping it without a word logged
# nothing).
gate_document stall 100 "" 60000
skips_before=$(grep -c 'promotion gate "stall": ring slot' "$tmp/logs/error.log" || true)
LD_PRELOAD="$tmp/ring_shim.so" error_level=info serve_proxied stall "$backend" 2 'key=$arg_id'
for _ in $(seq 50); do [ "$(pgrep -cP "$master")" = 2 ] && break; sleep 0.1; done
for i in 1 2; do curl -fs -o /dev/null "http://127.0.0.1:$port/stall/$i"; done
curl -fs -o /dev/null "http://127.0.0.1:$port/stall/3?id=claim"
for i in $(seq 4 12); do curl -fs -o /dev/null "http://127.0.0.1:$port/stall/$i"; done
sleep 0.5 # past the wait, and a timer tick
windows=$(canary_windows stall)
stop_serving
skips=$(grep 'promotion gate "stall": ring slot' "$tmp/logs/error.log" | tail -n +$((skips_before + 1)) || true)
echo "12 outcomes around a slot claimed and never published: the workers' windows hold$windows; skips logged:"
cut -c1-200 <<<"$skips"
[ "$windows" = " 12 12" ] ||
  { echo "FAIL: a worker did not pool the outcomes after the unpublished slot (windows:$windows)" >&2; exit 1; }
# (A skip seen by a request's log phase ends as nginx ends a request's lines, "... skipped: 1
# while logging request, client: ..."; one seen by the timer ends with the count.)
[ "$(grep -cE 'ring slot 2 skipped, .*slots this worker skipped: 1($|,| while )' <<<"$skips")" = 2 ] ||
  { echo "FAIL: expected each worker to log its skip of slot 2 once" >&2; exit 1; }

echo "== a slot first seen at a stale cached time is waited for two timer ticks"
# One worker. The request keyed `stale` claims a slot as its outcome is recorded and blocks the
# worker 300 ms there, so the worker first sees the slot unpublished (pooling right after) at
# a cached time 300 ms behind; the slot is published after the worker's next timer tick looked
# at it (tests/ring_shim.c). The worker waits for it until its second tick, and pools it: its
# window holds the five requests and the slot, and no skip is logged (a build skipping the
# slot once 100 ms of cached time passed skipped it at that first tick, the writer a few
# milliseconds from publishing it).
gate_document sighted 100 "" 60000
skips_before=$(grep -c 'promotion gate "sighted": ring slot' "$tmp/logs/error.log" || true)
LD_PRELOAD="$tmp/ring_shim.so" error_level=info serve_proxied sighted "$backend" 1 'key=$arg_id'
for i in 1 2 3 4; do curl -fs -o /dev/null "http://127.0.0.1:$port/sighted/$i"; done
curl -fs -o /dev/null "http://127.0.0.1:$port/sighted/5?id=stale"
sleep 0.5 # the blocked request's log phase, and the ticks after it
windows=$(canary_windows sighted)
stop_serving
skips=$(grep 'promotion gate "sighted": ring slot' "$tmp/logs/error.log" | tail -n +$((skips_before + 1)) || true)
echo "5 outcomes and a slot published at the first tick after a stale first sighting: the window holds$windows; skips logged: ${skips:-none}"
[ "$windows" = " 6" ] && [ -z "$skips" ] ||
  { echo "FAIL: the worker skipped the slot before its second tick after a stale sighting" >&2; exit 1; }

echo "== a reload finding a ring of another layout makes a new ring, and says so"
# One worker, three outcomes, then the request keyed `restamp` gives the ring another layout
# stamp (a ring of another build): after `nginx -s reload`, the master logs at notice that it
# makes a new ring, and the new worker takes up none of the old ring's four outcomes (a build
# taking any ring handed over would read an old layout's fields at its own offsets; here it
# takes up the four).
gate_document layout 100 "" 60000
LD_PRELOAD="$tmp/ring_shim.so" serve_proxied layout "$backend" 1 'key=$arg_id'
for i in 1 2 3; do curl -fs -o /dev/null "http://127.0.0.1:$port/layout/$i"; done
curl -fs -o /dev/null "http://127.0.0.1:$port/layout/4?id=restamp"
sleep 0.1 # the last request's log phase
before=$(canary_windows layout)
reload_one_worker
after=$(canary_windows layout)
stop_serving
notice=$(grep '\[notice\] .*promotion gate "layout": the ring in zone "promotion_gate_layout_[0-9a-f]*" has layout' "$tmp/logs/error.log" || true)
echo "canary window before the reload:$before; after it:$after; logged: $(cut -c1-220 <<<"$notice")"
[ "$before" = " 4" ] || { echo "FAIL: expected four outcomes before the reload" >&2; exit 1; }
[ "$after" = " 0" ] && [ -n "$notice" ] ||
  { echo "FAIL: the new worker took up a ring of another layout, or no notice said why not" >&2; exit 1; }
stop_tcp_server

echo "== state changes: one error log line each"
# Another process (the Python binding) rolls the gate back and starts a new rollout (a
# promotion from production to a 5 % canary), then enables ten flags one after another; the
# worker applies each from the store (sync every 10 ms) and its 50 ms timer logs what it found:
# the rollback and the promotion at warn, the rest at notice, several changes a tick, each on
# its own line (a build writing one line a tick puts several in one). Then one
# change longer than a line holds (nginx cuts lines at 2048 bytes) is logged in parts. The
# changes' sequence numbers, read from the lines, run from 1 to the long change's, each once,
# and no gap is logged (a build logging only the first change of each tick skipped the others
# without a word, one change a line still).
port=$(free_port)
gate_document flags 5 "" 10
serve "$(cat <<CONF
    promotion_gate flags flags.json;
    server { listen 127.0.0.1:$port; location = /metrics { promotion_gate_metrics; } }
CONF
)"
library=$(ldd "$module" | awk '/libpromotion_gates_ffi/ {print $3}')
PYTHONPATH="$here/../python/src" PROMOTION_GATES_LIBRARY="$library" \
  python3 - "$tmp/conf/flags.json" <<'PY' || { echo "FAIL: the flag changes failed" >&2; exit 1; }
import sys, time
from promotion_gates import Environment, Gate
with open(sys.argv[1]) as document, Gate(document.read()) as gate:
    gate.rollback("a new rollout follows")
    time.sleep(0.05)
    gate.promote(Environment.CANARY, 5)
    time.sleep(0.05)
    for i in range(10):
        gate.enable_feature(f"flag_{i}")
        time.sleep(0.012)
    time.sleep(0.1)
    # one change naming twenty flags of 100 bytes: longer than a line holds
    config = gate.config
    config["feature_flags"] = [f"long_{i:02d}_" + "x" * 92 for i in range(20)]
    gate.swap_config(config)
PY
for _ in $(seq 50); do
  grep -q 'promotion gate "flags": state change (part [0-9]* of [0-9]*): .*long_19_x*"' "$tmp/logs/error.log" && break
  sleep 0.05
done
grep 'promotion gate "flags": state change' "$tmp/logs/error.log" >"$tmp/changes.log" || true
lines=$(grep -c 'state change: ' "$tmp/changes.log" || true)
changes=$(grep 'state change: ' "$tmp/changes.log" | grep -o '"sequence":' | grep -c . || true)
# the long change's parts, put together again: one whole change
whole=$(sed -n 's/.*state change (part [0-9]* of [0-9]*): //p' "$tmp/changes.log" | tr -d '\n')
parts=$(grep -c 'state change (part ' "$tmp/changes.log" || true)
longest=$(awk '{ if (length($0) > n) n = length($0) } END { print n + 0 }' "$tmp/changes.log")
echo "a rollback, a promotion and ten flag writes: $changes changes logged on $lines lines; a change naming twenty long flags:" \
  "$parts parts of one change; the longest line $longest bytes"
[ "$changes" = "$lines" ] ||
  { echo "FAIL: expected one change a line:" >&2; cut -c1-200 "$tmp/changes.log" >&2; exit 1; }
grep -q '\[notice\] .*promotion gate "flags": state change: .*"kind":"flags"' "$tmp/changes.log" ||
  { echo "FAIL: flag changes are not logged at notice" >&2; exit 1; }
grep -q '\[warn\] .*promotion gate "flags": state change: .*"from":"production","kind":"promotion",.*"origin":"store",.*"to":{"canary":{"traffic_percent":5.0}}' "$tmp/changes.log" ||
  { echo "FAIL: the promotion from production to a 5 % canary is not logged at warn:" >&2
    grep '"kind":"promotion"' "$tmp/changes.log" | cut -c1-300 >&2; exit 1; }
grep -q '\[warn\] .*promotion gate "flags": state change: .*"kind":"rollback"' "$tmp/changes.log" ||
  { echo "FAIL: the rollback is not logged at warn" >&2; exit 1; }
python3 -c 'import json, sys; c = json.loads(sys.argv[1]); assert len(c["flags_enabled"]) == 20, c' "$whole" &&
  [ "$parts" -ge 2 ] && [ "$longest" -lt 2048 ] ||
  { echo "FAIL: the long change was not logged whole in parts under 2048 bytes" >&2; exit 1; }
# (the long change's sequence read from its parts put together: a part may end within it)
last=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["sequence"])' "$whole")
logged=$({ grep 'state change: ' "$tmp/changes.log"; echo "$whole"; } |
  grep -o '"sequence":[0-9]*' | cut -d: -f2 | sort -n | tr '\n' ' ')
echo "sequences logged: $logged(the long change's: $last)"
[ "$logged" = "$(seq 1 "$last" | tr '\n' ' ')" ] ||
  { echo "FAIL: expected changes 1 to $last logged once each, not: $logged" >&2; exit 1; }
! grep 'promotion gate "flags": changes [0-9]* to [0-9]* were not logged' "$tmp/logs/error.log" ||
  { echo "FAIL: the worker fell behind the kept changes" >&2; exit 1; }
stop_serving

echo "== a rollback made in a graceful exit is logged"
# Requests to a canary that answers 500 after 1 s are in flight when nginx is told to quit: the
# requests finish and roll the canary back, and the worker logs that change, by its timer or,
# when it exits before the timer's next look, as it exits (a build logging only from its timer,
# which then stopped in a draining worker, wrote none).
port=$(free_port)
slow=$(free_port)
# slow_500 <port> <delay>: an HTTP server on 127.0.0.1:<port> answering each GET 500 after
# <delay> seconds (a Python expression, which may read the request's `path`), until killed; its
# pid in $slow_pid
slow_500() {
  python3 -c '
import http.server, sys, time
delay = eval("lambda path: " + sys.argv[2])
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(delay(self.path))
        self.send_error(500)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
' "$1" "$2" &
  slow_pid=$!
  started "$slow_pid"
  for _ in $(seq 50); do (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && break; sleep 0.1; done
}
slow_500 "$slow" 1.0
gate_document exiting 100
serve_proxied exiting "$slow"
clients=()
for i in $(seq 12); do
  curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$port/exiting/$i" &
  clients+=($!)
  started "$!"
done
sleep 0.3
stop_serving # waits for the requests, then the worker's exit
wait "${clients[@]}" || true
kill "$slow_pid" 2>/dev/null || true
wait "$slow_pid" 2>/dev/null || true
grep -q 'promotion gate "exiting": state change: .*"kind":"rollback"' "$tmp/logs/error.log" ||
  { echo "FAIL: the rollback made while exiting was not logged; the error log ends:" >&2; tail -n 5 "$tmp/logs/error.log" >&2; exit 1; }
echo "the rollback made by requests finishing after the quit was logged as the worker exited"

echo "== a draining worker goes on logging its gate's changes"
# A worker still serving a request after a reload (here one to a canary that never answers)
# keeps its timer: a flag change another process stores is logged by it, as by the new worker,
# while it drains (a build that stopped re-arming the timer once the worker was exiting held
# every line until the worker exited, hours later with long-lived connections).
port=$(free_port)
hung=$(free_port)
tcp_server "$hung" '    held.append(c)  # accepted, never answered'
gate_document draining 100 "" 50
serve_proxied draining "$hung"
draining=$(pgrep -P "$master")
curl -s -o /dev/null --max-time 30 "http://127.0.0.1:$port/draining/held" &
held_client=$!
started "$held_client"
sleep 0.3 # the request reached the canary
nginx -p "$tmp" -c conf/nginx.conf -s reload
for _ in $(seq 50); do
  [ "$(pgrep -P "$master" | grep -cvx "$draining" || true)" = 1 ] && break
  sleep 0.1
done
sleep 0.3 # past the draining worker's next timer tick
library=$(ldd "$module" | awk '/libpromotion_gates_ffi/ {print $3}')
PYTHONPATH="$here/../python/src" PROMOTION_GATES_LIBRARY="$library" \
  python3 - "$tmp/conf/draining.json" <<'PY' || { echo "FAIL: the flag change failed" >&2; exit 1; }
import sys
from promotion_gates import Gate
with open(sys.argv[1]) as document, Gate(document.read()) as gate:
    gate.enable_feature("while_draining")
PY
for _ in $(seq 40); do
  grep -q "\] $draining#.*promotion gate \"draining\": state change: .*while_draining" "$tmp/logs/error.log" && break
  sleep 0.05
done
logged=$(grep -c "\] $draining#.*promotion gate \"draining\": state change: .*while_draining" "$tmp/logs/error.log" || true)
alive=$(kill -0 "$draining" 2>/dev/null && echo yes || echo no)
kill "$held_client" 2>/dev/null || true # the worker may exit now
wait "$held_client" 2>/dev/null || true
stop_serving
stop_tcp_server
[ "$alive" = yes ] || { echo "FAIL: worker $draining exited before its held request ended" >&2; exit 1; }
[ "$logged" = 1 ] ||
  { echo "FAIL: worker $draining, draining its held request, did not log the flag change within 2 s" >&2; exit 1; }
echo "worker $draining, draining a held request after a reload, logged the flag change another process stored"

echo "== after a reload, a draining worker does not judge the new workers' traffic by its old SLO"
# One worker, its canary at 100 %, an SLO that rolls back on a few failures (overwhelming_errors:
# seven), holds a request to the canary; a reload gives the gate an SLO under which 20 failures
# roll nothing back (min_samples 1000, overwhelming_significance 1e-300), keeping its zone (the
# same gate and store); then the canary answers 20 requests of the new worker 500. A build whose
# draining worker pooled them judged them by its old SLO and rolled the canary back (the new
# worker followed). The draining worker's own outcome (its held request, abandoned after the
# latency target: a slow success) still reaches the new worker's window.
port=$(free_port)
failing=$(free_port)
slow_500 "$failing" '30 if "held" in path else 0' # held: until the client goes away, at most 30 s
gate_document judged 100
echo '{"min_samples": 5}' >"$tmp/conf/judged-slo.json"
serve_proxied judged "$failing" 1 slo=judged-slo.json
draining=$(pgrep -P "$master")
curl -s -o /dev/null --max-time 30 "http://127.0.0.1:$port/judged/held" &
held_client=$!
started "$held_client"
sleep 0.3 # the request reached the canary
echo '{"min_samples": 1000, "overwhelming_significance": 1e-300}' >"$tmp/conf/judged-slo.json"
nginx -p "$tmp" -c conf/nginx.conf -s reload
for _ in $(seq 50); do
  [ "$(pgrep -P "$master" | grep -cvx "$draining" || true)" = 1 ] && break
  sleep 0.1
done
sleep 0.5 # nginx tells the old worker to quit 100 ms after starting the new one
for i in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$port/judged/$i"; done
sleep 0.5 # several ticks of both workers' timers
# judged_window <requests|errors>: the canary window's count, as the new worker counts it
judged_window() {
  curl -fs "http://127.0.0.1:$port/metrics" |
    sed -n "s/^promotion_window_$1{gate=\"judged\",cohort=\"canary\"} //p"
}
environment=$(curl -fs "http://127.0.0.1:$port/judged/status" | sed 's/.*"environment":"\([a-z]*\)".*/\1/')
errors=$(judged_window errors)
alive=$(kill -0 "$draining" 2>/dev/null && echo yes || echo no)
kill "$held_client" 2>/dev/null || true # the held request ends, and the draining worker with it
wait "$held_client" 2>/dev/null || true
for _ in $(seq 40); do [ "$(judged_window requests)" = 21 ] && break; sleep 0.05; done
requests=$(judged_window requests)
stop_serving
kill "$slow_pid" 2>/dev/null || true
wait "$slow_pid" 2>/dev/null || true
rolled=$(grep -c "\] $draining#.*promotion gate \"judged\": state change: .*\"kind\":\"rollback\"" "$tmp/logs/error.log" || true)
echo "after the reload: $errors failures in the new worker's window, the gate in $environment;" \
  "rollbacks logged by the draining worker $draining: $rolled; its held request ended: $requests requests in the window"
[ "$alive" = yes ] || { echo "FAIL: worker $draining exited before its held request ended" >&2; exit 1; }
[ "$environment" = canary ] && [ "$rolled" = 0 ] ||
  { echo "FAIL: the draining worker judged the new workers' failures by its old SLO and rolled the canary back" >&2; exit 1; }
[ "$errors" = 20 ] || { echo "FAIL: the new worker's window holds $errors failures, not 20" >&2; exit 1; }
[ "$requests" = 21 ] ||
  { echo "FAIL: the draining worker's own outcome did not reach the new worker ($requests requests, not 21)" >&2; exit 1; }

if [ "${PGATE_NGINX_E2E:-1}" = 0 ]; then
  echo "== e2e.sh skipped (PGATE_NGINX_E2E=0)"
else
  echo "== e2e.sh"
  "$here/e2e.sh" "$module"
fi
echo "== nginx module: $((SECONDS - start)) s"
