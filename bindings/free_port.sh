# Sourced by the scripts that serve on loopback: bindings/nginx/{e2e,test,bench}.sh,
# bindings/lua/openresty.sh, bindings/go/loopback.sh (for Go's e2e.sh and bench.sh) and
# .ci/etcd. free_port uses the caller's $tmp, its temporary directory, which must exist before
# the first call.

# need_curl: curl, which all but .ci/etcd ask their servers with, from the Debian package when
# it is missing (.ci/apt-install, as they install their other tools); when it cannot be
# installed, exits saying so.
need_curl() {
  command -v curl >/dev/null && return 0
  "$(dirname "${BASH_SOURCE[0]}")/../.ci/apt-install" curl || true
  command -v curl >/dev/null || {
    echo "$(basename "$0"): curl is missing and .ci/apt-install did not install it: install curl, then run again" >&2
    exit 1
  }
}

# Every curl of the scripts that source this file, and of what they run, reads
# bindings/curl/.curlrc: it gives up after 10 s (max-time), so that a server that accepts and
# never answers fails the call instead of hanging the script; a call's own --max-time (-m) is
# kept. (Not a shell function wrapping curl: `curl ... &` would then give $! of a subshell,
# and killing it would leave the request running.)
CURL_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/curl"
export CURL_HOME

# free_port: a TCP port of 127.0.0.1 that nothing listens on now and that this script was not
# given before. The kernel may hand out a port just closed again, and two servers told the
# same port fail ("duplicate listen options"), so the ports given are listed in
# $tmp/ports.given, and a port already given is held bound while another is picked.
free_port() {
  python3 - "$tmp/ports.given" <<'PY'
import socket
import sys

path = sys.argv[1]
try:
    with open(path) as f:
        given = set(f.read().split())
except FileNotFoundError:
    given = set()
held = []
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
    if port not in given:
        break
    held.append(s)
    if len(held) > 1000:
        sys.exit("free_port: 1000 ports in a row were given already")
with open(path, "a") as f:
    f.write(port + "\n")
print(port)
PY
}
