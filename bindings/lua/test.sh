#!/usr/bin/env bash
# Builds the library and runs the LuaJIT module's tests (all routing vectors, the wrappers),
# then serves the README's OpenResty recipe behind a down canary (openresty.sh, ~3 s).
# Installs luajit with .ci/apt-install if it is missing: Debian's `luajit2` (OpenResty's branch, which
# also gives /usr/bin/luajit), not `luajit`, whose libluajit-5.1-2 conflicts with the
# libluajit2-5.1-2 that libnginx-mod-http-lua needs. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.." # the repository root; every path below is relative to it

command -v luajit >/dev/null || .ci/apt-install luajit2

echo "== cargo build --release -p promotion-gates-ffi"
cargo build --release -p promotion-gates-ffi
lib="$(.ci/build-dir release)/libpromotion_gates_ffi.so"
# The link the library's SONAME names (libpromotion_gates_ffi.so.ABI) beside it, which the
# module asks the loader for first: test.lua loads it from there by that name (without it,
# the loader would go on to a library of that name elsewhere, an earlier install's).
packaging/install.sh --build-tree-pc "$(dirname "$(dirname "$lib")")/pkgconfig" >/dev/null

# The same line format the C tests read (see bindings/c/README.md).
mkdir -p bindings/lua/build
python3 bindings/c/vectors_tsv.py tests/vectors/routing.json >bindings/lua/build/routing.tsv

echo "== the module's ffi.cdef against include/promotion_gates.h"
python3 bindings/lua/check_cdef.py include/promotion_gates.h bindings/lua/promotion_gates.lua
# A name declared twice is refused, whatever the second says: LuaJIT keeps the first
# declaration, so a stale pgate_route in a block before the right one would be the one used.
stale=bindings/lua/build/stale_cdef.lua
python3 - bindings/lua/promotion_gates.lua "$stale" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
at = text.index("cdef [[")
stale = ("cdef [[\npgate_status pgate_route(const pgate_gate *gate, const char *id, "
         "pgate_decision *out);\n]]\n\n")
open(sys.argv[2], "w", encoding="utf-8").write(text[:at] + stale + text[at:])
PY
if out=$(python3 bindings/lua/check_cdef.py include/promotion_gates.h "$stale" 2>&1); then
  echo "FAIL: check_cdef.py passed a module declaring pgate_route twice (a stale one first)" >&2
  exit 1
fi
case "$out" in
  *"pgate_route: declared more than once"*) ;;
  *) echo "FAIL: check_cdef.py did not name pgate_route: $out" >&2; exit 1 ;;
esac

echo "== refusals before any library is loaded"
# A fresh process whose default library cannot be loaded: pg.load's refusals must not load it
# (ffi.load would raise), and must name the status as the library does. A path with a NUL byte
# must not load the library named before it.
PGATE_LIB=/nonexistent/libpromotion_gates_ffi.so LIB="$lib" luajit -e '
  package.path = "bindings/lua/?.lua;" .. package.path
  local pg = require("promotion_gates")
  for _, path in ipairs({ 5, "", os.getenv("LIB") .. "\0.old" }) do
    local none, message, status = pg.load(path)
    assert(none == nil and status == 2 and message:find("^PGATE_STATUS_INVALID_ARGUMENT: invalid path = "),
           tostring(message))
  end
  assert(not pcall(pg.version), "the default library is not loaded yet")'
# The module's version is the workspace's and the rockspec's; a library of another minor
# version is refused, naming both, and nothing stays loaded.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -f "bindings/lua/promotion-gates-$version-1.rockspec" ] ||
  { echo "FAIL: no rockspec for version $version" >&2; exit 1; }
PGATE_LIB="$lib" VERSION="$version" luajit -e '
  package.path = "bindings/lua/?.lua;" .. package.path
  local pg = require("promotion_gates")
  local version = os.getenv("VERSION")
  assert(pg._VERSION == version, pg._VERSION .. " is not the workspace version " .. version)
  pg._VERSION = "0.99.0"
  local ok, err = pcall(pg.load)
  assert(not ok and err:find("is promotion%-gates " .. version:gsub("%.", "%%.") .. ", and this module 0%.99%.0"),
         tostring(err))
  pg._VERSION = version
  assert(pg.version() == version)'
PGATE_LIB="$lib" luajit -e '
  package.path = "bindings/lua/?.lua;" .. package.path
  local pg = require("promotion_gates")
  assert(pg.status_str(pg.INVALID_ARGUMENT) == "PGATE_STATUS_INVALID_ARGUMENT")
  assert(pg.status_str(pg.UNKNOWN_FLAG_SET) == "PGATE_STATUS_UNKNOWN_FLAG_SET")'

echo "== luajit test.lua"
PGATE_LIB="$lib" luajit bindings/lua/test.lua bindings/lua/build/routing.tsv tests/vectors/latency.tsv \
  tests/vectors/overrides.tsv tests/vectors/quoted.tsv

echo "== the README's OpenResty recipe, behind an error_page and a down canary"
bindings/lua/openresty.sh "$lib"
