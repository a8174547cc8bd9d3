#!/usr/bin/env bash
# Builds the nginx dynamic module against Debian's nginx-dev sources (the same configure flags
# as Debian's nginx, so the module's ABI signature matches the installed binary) and the
# library it links (cargo build --release -p promotion-gates-ffi, or the directory in
# PGATE_LIB_DIR, e.g. an installed /usr/local/lib). Installs nginx, nginx-dev
# and wrk with .ci/apt-install when missing (which starts no service). Prints the module's path as its last line.
# Outputs go to bindings/nginx/build/ (gitignored).
set -euo pipefail

cd "$(dirname "$0")/../.." # the repository root
root=$PWD
here="$root/bindings/nginx"
build="$here/build"
lib_dir=${PGATE_LIB_DIR:-$(.ci/build-dir release)} # where cargo puts it (CARGO_BUILD_TARGET too)

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || [ ! -d /usr/share/nginx/src ]; then
  .ci/apt-install nginx nginx-dev wrk
fi

if [ -z "${PGATE_LIB_DIR:-}" ]; then # else: an installed library's directory
  echo "== cargo build --release -p promotion-gates-ffi" >&2
  cargo build -q --release -p promotion-gates-ffi >&2
  # The link the library's SONAME names (libpromotion_gates_ffi.so.ABI), which the module loads.
  packaging/install.sh --build-tree-pc "$(dirname "$lib_dir")/pkgconfig" >/dev/null
fi

src="$build/nginx-src"
module="$src/objs/ngx_http_promotion_gate_module.so"
if [ ! -f "$src/objs/Makefile" ] || [ /usr/share/nginx/src/configure -nt "$src/objs/Makefile" ] ||
  [ "$here/config" -nt "$src/objs/Makefile" ] || [ "$(cat "$build/lib_dir" 2>/dev/null)" != "$lib_dir" ]; then
  echo "== configure ($(nginx -v 2>&1))" >&2
  rm -rf "$src"
  mkdir -p "$build"
  cp -r /usr/share/nginx/src "$src"
  # shellcheck source=/dev/null
  . /usr/share/nginx/src/conf_flags # NGX_CONF_FLAGS, Debian's own
  (cd "$src" && PGATE_INCLUDE="$root/include" PGATE_LIB_DIR="$lib_dir" \
    ./configure "${NGX_CONF_FLAGS[@]}" --with-cc-opt="-g -O2" --add-dynamic-module="$here" >"$build/configure.log" 2>&1) ||
    { tail -n 30 "$build/configure.log" >&2; exit 1; }
  echo "$lib_dir" >"$build/lib_dir"
fi
echo "== make modules" >&2
make -s -C "$src" -f objs/Makefile modules >&2
echo "$module"
