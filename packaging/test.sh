#!/usr/bin/env bash
# The packages a host installs, tested as a host uses them: runs the documented install step
# (packaging/install.sh) into a temporary prefix, moves the installed tree elsewhere (the .pc
# and CMake files name it relative to themselves), then routes one request from
#   (a) C programs built with `pkg-config --cflags --libs promotion_gates` (and -static), the
#       shared ones needing the library by its versioned SONAME, which the install names
#       (libpromotion_gates_ffi.so.0.MINOR), and running without the development link .so,
#   (b) a CMake project using find_package(promotion_gates) (C++ wrapper and static C; then
#       with one of the libraries removed, beside a source build of bindings/cpp, found
#       through a link lib -> usr/lib, and on a prefix whose lib/ is a link elsewhere, as
#       pkg-config is too), and one using
#       pkg_check_modules(IMPORTED_TARGET promotion_gates-static),
#   (c) a Python venv with the wheel `pip wheel ./bindings/python` builds (no environment variable),
#       and the package's system-loader fallback on the runtime install,
#   (d) a Go module outside the repository (its own go.mod, `replace` to this checkout),
#       linked statically and, with -tags pgate_shared, to the shared library,
#   (e) LuaJIT with the rock `luarocks make` installs into a temporary tree (after `luarocks lint`),
#       on the installed tree and on the runtime install,
# and checks each printed decision against the routing formula recomputed in Python.
# Every host is made to find this install and nothing else: an earlier install in /usr/local
# (or /usr) must not stand in for a file this one lacks. pkg-config reads the prefix's .pc
# files alone (PKG_CONFIG_LIBDIR, which replaces its default path; PKG_CONFIG_PATH only adds
# to it), each CMake configure must name the prefix's package as the one it found
# (promotion_gates_DIR; CMake goes on to /usr/local past a candidate it skips), and the Python
# and LuaJIT loaders must have mapped the prefix's file (/proc/self/maps, read by the hosts),
# not a library of the same SONAME the system loader's cache knows.
# Installs pkg-config, cmake, g++, luajit2, luarocks, and python3-pip and python3-venv when
# python3 lacks pip or venv, with .ci/apt-install when missing. Everything
# it writes goes to one mktemp directory, removed at the end (and the build directories pip
# leaves in bindings/python, when it made them). Run from anywhere.
set -euo pipefail
start=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
hosts="$here/hosts"

# command:Debian package, for each tool this test calls that may be missing.
missing=()
for need in pkg-config:pkg-config cmake:cmake c++:g++ luajit:luajit2 luarocks:luarocks; do
  command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
done
# (c) runs `python3 -m pip wheel` and `python3 -m venv`: Debian 12's python3 has neither
# without these packages.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] || "$root/.ci/apt-install" "${missing[@]}"

# Everything it writes lies under a symbolic link, as on macOS, where TMPDIR is
# /var/folders/../T and /var a link to private/var: each host is given the names through the
# link, and a check of a path a host or loader printed (CMake and Python may print one
# resolved) compares the file it names, not its spelling; a message a check reads is read
# whole, whatever the length of the paths in it. So CI covers a prefix reached through a link
# without a symlinked TMPDIR.
top=$(mktemp -d)
mkdir -p "$top/private/var/folders/T"
ln -s private/var "$top/var"
tmp="$top/var/folders/T"
pip_made=()
for dir in "$root/bindings/python/build" "$root/bindings/python/src/promotion_gates.egg-info"; do
  [ -e "$dir" ] || pip_made+=("$dir")
done
cleanup() { rm -rf "$top" "${pip_made[@]}"; }
trap cleanup EXIT
prefix="$tmp/prefix"

# The request every host routes, and what the formula says of it.
gate=checkout percent=50 id=user-12345-session
expected=$(PYTHONPATH="$root/bindings/python/src" python3 -c '
import sys
from promotion_gates.formula import bucket, threshold_for_percent
gate, percent, request_id = sys.argv[1], float(sys.argv[2]), sys.argv[3]
b = bucket(gate, request_id)
print("canary" if b < threshold_for_percent(percent) else "stable", b)
' "$gate" "$percent" "$id")
echo "== the formula routes $id of gate $gate at $percent %: $expected"

passed=0 failed=0
# Whether program $1 loads the shared library: ldd's output read whole first (in a pipe into
# `grep -q`, under pipefail, ldd's SIGPIPE after an early match would read as no match).
loads_shared_library() {
  local libs
  libs=$(ldd "$1") || { echo "FAILED: ldd $1" >&2; return 0; }
  grep -q promotion_gates <<<"$libs"
}
# shared LABEL PROGRAM: counts a failure unless the program loads the shared library (a host
# built against it must not run on the archive instead), and names it by its SONAME, the
# version of its ABI: not by the path it was linked by (it would not load once the tree
# moves), nor by the development link libpromotion_gates_ffi.so (which another minor
# release's library answers, and a runtime install lacks).
shared() {
  local libs needed
  if ! libs=$(ldd "$2") || ! grep -q libpromotion_gates_ffi.so <<<"$libs"; then
    echo "FAILED: $1 does not load the shared library" >&2
    failed=$((failed + 1))
  fi
  needed=$(readelf -d "$2" | grep NEEDED | grep promotion_gates || true)
  if [[ "$needed" != *"[$soname]"* ]]; then
    echo "FAILED: $1 needs '$needed', not the library's SONAME $soname" >&2
    failed=$((failed + 1))
  fi
}
# check LABEL COMMAND...: runs a host and compares its first line with the formula's answer.
check() {
  local label=$1 got
  shift
  if got=$("$@" "$gate" "$percent" "$id" | head -n 1) && [ "$got" = "$expected" ]; then
    echo "ok: $label: $got"
    passed=$((passed + 1))
  else
    echo "FAILED: $label: got '${got:-}', expected '$expected'" >&2
    failed=$((failed + 1))
  fi
}
# stderr_to FILE COMMAND...: runs COMMAND with its standard error in FILE.
stderr_to() {
  local file=$1
  shift
  "$@" 2>"$file"
}
# check_loaded LABEL FILE COMMAND...: check, for a host that prints on standard error, last,
# the library file it mapped (route.py, route.lua): counts a failure unless that is FILE (by
# any name). A loader that asked for a name this install lacks would be served by an earlier
# install's library of the same SONAME (/usr/local/lib, in the loader's cache), and route alike.
# (Its standard error is left in $tmp/loaded.err.)
check_loaded() {
  local label=$1 file=$2 mapped
  shift 2
  check "$label" stderr_to "$tmp/loaded.err" "$@"
  mapped=$(tail -n 1 "$tmp/loaded.err")
  if ! [ "$mapped" -ef "$file" ]; then
    echo "FAILED: $label loaded '$mapped', not $file" >&2
    failed=$((failed + 1))
  fi
}

# Installed under one prefix, then moved: the .pc and CMake files find the tree where it lies.
echo "== install: packaging/install.sh --prefix $tmp/installed, then moved to $prefix"
"$root/packaging/install.sh" --prefix "$tmp/installed" | tee "$tmp/installed.list"
mv "$tmp/installed" "$prefix"
real_tmp=$(cd "$tmp" && pwd -P)
for file in lib/pkgconfig/promotion_gates.pc lib/pkgconfig/promotion_gates-static.pc \
  lib/cmake/promotion_gates/promotion_gatesConfig.cmake lib/cmake/promotion_gates/promotion_gatesConfigVersion.cmake \
  include/promotion_gates.h include/promotion_gates.hpp; do
  if ! [ -f "$prefix/$file" ] || ! grep -qx "$tmp/installed/$file" "$tmp/installed.list"; then
    echo "FAILED: install.sh did not write (or list) $file" >&2
    failed=$((failed + 1))
  fi
done
# (grep's status 2, a file it cannot read, is a failure too, not a file without the name)
named=0
grep -rn -e "$tmp/installed" -e "$real_tmp/installed" "$prefix"/lib/pkgconfig "$prefix"/lib/cmake || named=$?
if [ "$named" -ne 1 ]; then
  echo "FAILED: the installed .pc or CMake files name the prefix they were installed to, or cannot be read (grep: $named)" >&2
  failed=$((failed + 1))
fi
# A build tree's .pc files in directories whose names hold `&` and `|` (which sed's s|...|...|
# took for the match and for its end): each names its directory as it is.
for dir in "$tmp/build&tree" "$tmp/build|tree"; do
  if ! "$root/packaging/install.sh" --build-tree-pc "$dir" >/dev/null 2>"$tmp/build_tree.err"; then
    echo "FAILED: install.sh --build-tree-pc '$dir': $(cat "$tmp/build_tree.err")" >&2
    failed=$((failed + 1))
  elif [ "$(env -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$dir" pkg-config --variable=libdir promotion_gates-static)" != "$dir" ]; then
    echo "FAILED: --build-tree-pc '$dir' wrote $(grep '^libdir=' "$dir/promotion_gates-static.pc")" >&2
    failed=$((failed + 1))
  fi
done
# Staged for a distribution's /usr: the .pc files name /usr itself, which pkg-config then
# leaves out of -I and -L (a relative prefix would put /usr/include first on every command).
# (its standard error is kept for the hint below; a failed install shows it, and stops here)
if ! "$root/packaging/install.sh" --no-build --prefix /usr --destdir "$tmp/staged" >/dev/null 2>"$tmp/staged.err"; then
  echo "FAILED: install.sh --no-build --prefix /usr --destdir $tmp/staged:" >&2
  cat "$tmp/staged.err" >&2
  exit 1
fi
# Go's build cache does not see a new library: the install's last word says what Go needs.
[[ "$(tail -n 1 "$tmp/staged.err")" == *"go clean -cache"*"go build -a"* ]] ||
  { echo "FAILED: install.sh ends without the Go hint: $(cat "$tmp/staged.err")" >&2 && failed=$((failed + 1)); }
for pc in "$tmp"/staged/usr/lib/pkgconfig/*.pc; do
  grep -qx 'prefix=/usr' "$pc" ||
    { echo "FAILED: $(basename "$pc") staged for /usr says $(grep '^prefix=' "$pc")" >&2 && failed=$((failed + 1)); }
done
# --no-build before a build (an empty target directory): refused before anything is written,
# naming the build step and how sudo is told of CARGO_TARGET_DIR (the README's Install); so
# too with a cargo on the PATH that cannot read the workspace (sudo's /usr/bin/cargo on
# Debian 12, older than the workspace's edition: here one that fails as it does).
mkdir -p "$tmp/empty_target" "$tmp/old_cargo"
printf '#!/bin/sh\necho "error: feature edition2024 is required" >&2\nexit 101\n' >"$tmp/old_cargo/cargo"
chmod +x "$tmp/old_cargo/cargo"
for path in "$PATH" "$tmp/old_cargo:$PATH"; do
  if PATH=$path CARGO_TARGET_DIR="$tmp/empty_target" "$root/packaging/install.sh" --no-build \
    --prefix "$tmp/not_installed" >/dev/null 2>"$tmp/no_build.err"; then
    echo "FAILED: install.sh --no-build installed without a build" >&2
    failed=$((failed + 1))
  elif [[ "$(cat "$tmp/no_build.err")" != *"cargo build --release -p promotion-gates-ffi"*"sudo env CARGO_TARGET_DIR="* ]] ||
    [ -e "$tmp/not_installed" ]; then
    echo "FAILED: install.sh --no-build without a build (cargo: $(PATH=$path command -v cargo)): $(cat "$tmp/no_build.err"), $(ls "$tmp/not_installed" 2>&1)" >&2
    failed=$((failed + 1))
  fi
done
# --no-build names the build it installs; and refuses a build older than a source file it was
# built from (sudo's target/release left from long ago): here the build copied with its
# dep-info into another target directory, dated 2000, without cargo on the PATH, as under sudo;
# run from the checkout, through a symlink to it (the dep-info naming the resolved paths, as
# cargo run in the checkout writes them, or the symlink's, as `--manifest-path LINK/Cargo.toml`
# does), with the dep-info's paths relative to the checkout (`build.dep-info-basedir`), and
# from a copy whose path has a space (the dep-info, rewritten to name it, escapes it as `\ `).
# The messages name the resolved paths (install.sh's `pwd -P`), TMPDIR perhaps a symlink.
grep -q "install.sh: --no-build: installing the build in .*/release (library built " "$tmp/staged.err" ||
  { echo "FAILED: install.sh --no-build does not say which build it installs: $(cat "$tmp/staged.err")" >&2 && failed=$((failed + 1)); }
built=$("$root/.ci/build-dir" release)
mkdir -p "$tmp/old_target/release" "$tmp/no_cargo"
cp -p "$built"/libpromotion_gates_ffi.{so,a,d} "$tmp/old_target/release/"
touch -d 2000-01-01 "$tmp/old_target/release/libpromotion_gates_ffi.so"
for tool in bash env dirname cat awk sort head date find grep sed realpath mkdir readelf install ln; do ln -sf "$(command -v "$tool")" "$tmp/no_cargo/$tool"; done
real_root=$(cd "$root" && pwd -P)
ln -s "$root" "$tmp/link"
mkdir -p "$tmp/link_target" "$tmp/relative_target"
cp -rp "$tmp/old_target/release" "$tmp/link_target/" && cp -rp "$tmp/old_target/release" "$tmp/relative_target/"
sed "s|$real_root/|$tmp/link/|g" "$tmp/old_target/release/libpromotion_gates_ffi.d" >"$tmp/link_target/release/libpromotion_gates_ffi.d"
sed "s|$real_root/||g" "$tmp/old_target/release/libpromotion_gates_ffi.d" >"$tmp/relative_target/release/libpromotion_gates_ffi.d"
mkdir -p "$tmp/a checkout"
spaced=$(cd "$tmp/a checkout" && pwd -P)
mkdir -p "$spaced/packaging" "$spaced/.ci" "$spaced/ffi" "$spaced/old_target/release" "$spaced/bindings/cpp"
cp -rp "$root/src" "$root/Cargo.toml" "$root/include" "$root/LICENSE" "$spaced/" && cp -rp "$root/ffi/src" "$spaced/ffi/"
cp -p "$root/packaging/install.sh" "$root/packaging/"*.in "$spaced/packaging/" && cp -p "$root/.ci/build-dir" "$spaced/.ci/"
cp -rp "$root/bindings/cpp/include" "$spaced/bindings/cpp/"
cp -p "$tmp/old_target/release/libpromotion_gates_ffi."{so,a} "$spaced/old_target/release/"
sed "s|$real_root/|${spaced// /\\\\ }/|g" "$tmp/old_target/release/libpromotion_gates_ffi.d" >"$spaced/old_target/release/libpromotion_gates_ffi.d"
for checkout in "$root:$real_root:$tmp/old_target" "$tmp/link:$real_root:$tmp/old_target" \
  "$tmp/link:$real_root:$tmp/link_target" "$root:$real_root:$tmp/relative_target" "$spaced:$spaced:$spaced/old_target"; do
  IFS=: read -r run_from named target <<<"$checkout"
  if PATH="$tmp/no_cargo" CARGO_TARGET_DIR="$target" "$run_from/packaging/install.sh" --no-build \
    --prefix "$tmp/not_installed" >/dev/null 2>"$tmp/old_build.err"; then
    echo "FAILED: install.sh --no-build run from $run_from installed a library older than its sources" >&2
    failed=$((failed + 1))
  elif ! grep -Fq "is older than $named/" "$tmp/old_build.err" ||
    ! grep -Eq "libpromotion_gates_ffi.so \(built 2000-01-01 .*\) is older than .*/(ffi/)?src/.*\.rs \(changed .*cargo build --release" "$tmp/old_build.err" ||
    [ -e "$tmp/not_installed" ]; then
    echo "FAILED: install.sh --no-build of an old build in $target, run from $run_from: $(cat "$tmp/old_build.err"), $(ls "$tmp/not_installed" 2>&1)" >&2
    failed=$((failed + 1))
  fi
done
# A dep-info naming no source of this checkout (a build made from another one) is refused.
sed "s|$real_root/|/elsewhere/|g" "$tmp/old_target/release/libpromotion_gates_ffi.d" >"$spaced/old_target/release/libpromotion_gates_ffi.d"
if PATH="$tmp/no_cargo" CARGO_TARGET_DIR="$spaced/old_target" "$spaced/packaging/install.sh" --no-build \
  --prefix "$tmp/not_installed" >/dev/null 2>"$tmp/old_build.err" ||
  ! grep -Fq "names no source file under $spaced/src" "$tmp/old_build.err" || [ -e "$tmp/not_installed" ]; then
  echo "FAILED: install.sh --no-build of a build whose dep-info names no source here: $(cat "$tmp/old_build.err")" >&2
  failed=$((failed + 1))
fi
# The prefix's .pc files alone: PKG_CONFIG_LIBDIR replaces pkg-config's default path
# (/usr/local/lib/pkgconfig, /usr/lib/pkgconfig, ...), where an earlier install's .pc would
# answer for one this install lacks; PKG_CONFIG_PATH only adds to it, and is dropped.
unset PKG_CONFIG_PATH
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig"
libs=$(pkg-config --libs promotion_gates)
[[ " $libs " == *" -lpromotion_gates_ffi "* ]] ||
  { echo "pkg-config --libs promotion_gates gave '$libs', without -lpromotion_gates_ffi" >&2 && exit 1; }
libdir=$(pkg-config --variable=libdir promotion_gates)
cmp -s "$root/LICENSE" "$prefix/share/doc/promotion_gates/LICENSE" ||
  { echo "FAILED: the install carries no LICENSE" >&2 && failed=$((failed + 1)); }
version=$(pkg-config --modversion promotion_gates) # the workspace's, which the wheel and rock must carry
# The library's SONAME: the version of its ABI, which before 1.0 a minor release may change.
IFS=. read -r major minor _ <<<"$version"
if [ "$major" = 0 ]; then soname=libpromotion_gates_ffi.so.0.$minor; else soname=libpromotion_gates_ffi.so.$major; fi
# The library as a distribution installs it: the file named by the full version, the link
# its SONAME names (what the loader asks for) and the development link (what -l finds), both
# relative, each in the list install.sh prints; and the SONAME in the library is that name.
real=libpromotion_gates_ffi.so.$version
for name in "$real" "$soname" libpromotion_gates_ffi.so; do
  grep -qx "$tmp/installed/lib/$name" "$tmp/installed.list" ||
    { echo "FAILED: install.sh does not list lib/$name" >&2 && failed=$((failed + 1)); }
done
if [ ! -f "$libdir/$real" ] || [ -L "$libdir/$real" ] ||
  [ "$(readlink "$libdir/$soname")" != "$real" ] || [ "$(readlink "$libdir/libpromotion_gates_ffi.so")" != "$soname" ]; then
  echo "FAILED: lib/ holds $(find "$libdir" -maxdepth 1 -name 'libpromotion_gates_ffi.so*' -printf '%f -> %l; '), not $real with the links $soname -> $real, libpromotion_gates_ffi.so -> $soname" >&2
  failed=$((failed + 1))
fi
# Built for a target triple (CARGO_BUILD_TARGET), cargo writes into TARGET/<triple>/release:
# --no-build installs the library there, not an older build's left in TARGET/release.
triple_target="$tmp/triple-target" triple=x86_64-unknown-linux-gnu
mkdir -p "$triple_target/$triple/release" "$triple_target/release"
cp "$libdir/$real" "$triple_target/$triple/release/libpromotion_gates_ffi.so"
cp "$libdir/libpromotion_gates_ffi.a" "$triple_target/$triple/release/"
echo "an older build" | tee "$triple_target/release/libpromotion_gates_ffi.so" >"$triple_target/release/libpromotion_gates_ffi.a"
if ! CARGO_TARGET_DIR=$triple_target CARGO_BUILD_TARGET=$triple "$root/packaging/install.sh" --no-build \
  --prefix "$tmp/triple" >/dev/null 2>"$tmp/triple.err"; then
  echo "FAILED: install.sh --no-build with CARGO_BUILD_TARGET: $(cat "$tmp/triple.err")" >&2
  failed=$((failed + 1))
elif ! cmp -s "$libdir/$real" "$tmp/triple/lib/$real" ||
  ! cmp -s "$libdir/libpromotion_gates_ffi.a" "$tmp/triple/lib/libpromotion_gates_ffi.a"; then
  echo "FAILED: install.sh --no-build with CARGO_BUILD_TARGET=$triple did not install TARGET/$triple/release's library" >&2
  failed=$((failed + 1))
fi
installed_soname=$(readelf -d "$libdir/libpromotion_gates_ffi.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$installed_soname" = "$soname" ] ||
  { echo "FAILED: the installed library's SONAME is '$installed_soname', not $soname" >&2 && failed=$((failed + 1)); }
# --no-build of a build newer than every source, made before a version bump (Cargo.toml's
# version, which names the SONAME, is no source file under src/): refused, naming the build's
# SONAME and the one the new version names, nothing installed (after a patch bump, which keeps
# the SONAME, naming the version the build records and the new one); the same build, in the
# same copy before the bump, installs without cargo (as under sudo), its SONAME link named for
# it.
sed "s|$real_root/|${spaced// /\\\\ }/|g" "$tmp/old_target/release/libpromotion_gates_ffi.d" >"$spaced/old_target/release/libpromotion_gates_ffi.d"
touch "$spaced/old_target/release/libpromotion_gates_ffi.so"
bumped=$major.$((minor + 1)).0
if [ "$major" = 0 ]; then bumped_soname=libpromotion_gates_ffi.so.0.$((minor + 1)); else bumped_soname=libpromotion_gates_ffi.so.$((major + 1)) bumped=$((major + 1)).0.0; fi
if ! PATH="$tmp/no_cargo" CARGO_TARGET_DIR="$spaced/old_target" "$spaced/packaging/install.sh" --no-build \
  --prefix "$tmp/spaced_installed" >/dev/null 2>"$tmp/spaced.err" || ! [ -L "$tmp/spaced_installed/lib/$soname" ]; then
  echo "FAILED: install.sh --no-build of a current build from $spaced: $(cat "$tmp/spaced.err"), $(ls "$tmp/spaced_installed/lib" 2>&1)" >&2
  failed=$((failed + 1))
fi
# refused_after_bump VERSION WHY MESSAGE...: with VERSION written as the workspace's in the
# copy's Cargo.toml, --no-build of the build of $version (WHY: what the bump keeps) must be
# refused, its standard error holding each MESSAGE, and nothing installed.
refused_after_bump() {
  local to=$1 why=$2 message
  shift 2
  awk -v bumped="$to" '/^\[workspace.package\]/ {p = 1} p && !done && /^version *=/ {$0 = "version = \"" bumped "\""; done = 1} {print}' \
    "$spaced/Cargo.toml" >"$spaced/Cargo.toml.bumped" && mv "$spaced/Cargo.toml.bumped" "$spaced/Cargo.toml"
  rm -rf "$tmp/not_installed"
  if PATH="$tmp/no_cargo" CARGO_TARGET_DIR="$spaced/old_target" "$spaced/packaging/install.sh" --no-build \
    --prefix "$tmp/not_installed" >/dev/null 2>"$tmp/bumped.err"; then
    echo "FAILED: install.sh --no-build installed a build of $version as $to$why" >&2
    failed=$((failed + 1))
    return
  fi
  for message in "$@"; do
    if ! grep -Fq "$message" "$tmp/bumped.err" || [ -e "$tmp/not_installed" ]; then
      echo "FAILED: install.sh --no-build of a build of $version after a bump to $to: $(cat "$tmp/bumped.err"), $(ls "$tmp/not_installed" 2>&1)" >&2
      failed=$((failed + 1))
      return
    fi
  done
  echo "ok: install.sh --no-build of a build of $version after a bump to $to$why: refused"
}
# A patch bump keeps the SONAME: the build is refused by the version it records (what
# pgate_version returns).
patch=${version#*.*.} && patch=${patch%%[!0-9]*}
patched=$major.$minor.$((patch + 1))
refused_after_bump "$patched" " (the same SONAME)" \
  "libpromotion_gates_ffi.so is of version '$version' (what pgate_version returns" \
  "this checkout's is $patched: it was built from another version"
refused_after_bump "$bumped" "" "has the SONAME '$soname', and this checkout's version $bumped names $bumped_soname"
# A build that records no version (made before the library wrote one, or bitcode from
# -Clinker-plugin-lto) is refused as such, not as a build of version '': the same build, its
# record's words overwritten by as many other bytes (the ELF file stays whole, its SONAME the
# checkout's), with the version of the build back in Cargo.toml.
python3 - "$spaced/old_target/release/libpromotion_gates_ffi.so" <<'PY'
import sys
path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
words = b"promotion_gates_ffi version "
assert words in data, f"{path} records no version to overwrite"
with open(path, "wb") as f:
    f.write(data.replace(words, b"x" * len(words)))
PY
refused_after_bump "$version" " (no bump: its version record overwritten)" \
  "libpromotion_gates_ffi.so records no version (built before this check, or not machine code" \
  "this checkout's is $version; build it again"

echo "== (a) C, pkg-config: $libs"
# shellcheck disable=SC2046 # pkg-config's output is a list of words
cc -std=c11 -Wall -Wextra -Werror "$hosts/route.c" -o "$tmp/route_c" \
  $(pkg-config --cflags --libs promotion_gates) -Wl,-rpath,"$libdir"
shared "C, shared" "$tmp/route_c"
check "C, shared" "$tmp/route_c"
# Linked by the library's path, as Meson links a pkg-config library: the program must name
# the library by its SONAME, not by that path, or it would not load once the tree moves.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$hosts/route.c" -o "$tmp/route_c_path" \
  $(pkg-config --cflags promotion_gates) "$libdir/libpromotion_gates_ffi.so"
shared "C, linked by path" "$tmp/route_c_path"
check "C, linked by path" env LD_LIBRARY_PATH="$libdir" "$tmp/route_c_path"
# A runtime install (a distribution's library package): the library and the link its SONAME
# names, without the development link libpromotion_gates_ffi.so.
runtime="$tmp/runtime"
cp -al "$libdir" "$runtime"
rm "$runtime/libpromotion_gates_ffi.so"
check "C, runtime install (no libpromotion_gates_ffi.so)" env LD_LIBRARY_PATH="$runtime" "$tmp/route_c_path"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$hosts/route.c" -o "$tmp/route_c_static" \
  $(pkg-config --cflags --libs promotion_gates-static)
if loads_shared_library "$tmp/route_c_static"; then
  echo "FAILED: the static C program loads the shared library" >&2
  failed=$((failed + 1))
fi
check "C, static" "$tmp/route_c_static"
# The same, after a -L to the directory of the shared library (another package's flags, or
# CGO_LDFLAGS): the archive's own name, which no shared library has, still links the archive.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$hosts/route.c" -o "$tmp/route_c_static_after_l" \
  -L"$libdir" $(pkg-config --cflags --libs promotion_gates-static)
if loads_shared_library "$tmp/route_c_static_after_l"; then
  echo "FAILED: the static C program linked after -L$libdir loads the shared library" >&2
  failed=$((failed + 1))
fi
check "C, static after another -L" "$tmp/route_c_static_after_l"

echo "== (b) CMake, find_package(promotion_gates)"
# found_in LABEL LOG DIR: counts a failure unless the configure whose output is LOG found the
# package in DIR (its `-- promotion_gates_DIR: ` line, the same directory by any name): a
# candidate CMake skips (another version, a file missing) sends it on to /usr/local and /usr.
found_in() {
  local dir
  dir=$(sed -n 's/^-- promotion_gates_DIR: //p' "$2")
  if [ -z "$dir" ] || ! [ "$dir" -ef "$3" ]; then
    echo "FAILED: $1: find_package found the package in '$dir', not in $3" >&2
    failed=$((failed + 1))
    return 1
  fi
}
cmake -S "$hosts" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log"
found_in "find_package(promotion_gates)" "$tmp/cmake.log" "$prefix/lib/cmake/promotion_gates" || true
cmake --build "$tmp/cmake" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
shared "C++ (promotion_gates::cpp)" "$tmp/cmake/route_cpp"
check "C++ (promotion_gates::cpp)" "$tmp/cmake/route_cpp"
check "C (promotion_gates::c_static)" "$tmp/cmake/route_c_static"
# The version check (0.x takes 0.x only; a range takes what it names): REQUEST=expected.
for case in "$major.$minor=1" "$major=$((minor == 0))" "$major.$((minor + 1))=0" \
  "$major.0...$major.$((minor + 4))=1" "$major.$((minor + 1))...$((major + 1)).0=0"; do
  request=${case%=*} expect=${case##*=}
  if cmake -S "$hosts/versions" -B "$tmp/versions" -DCMAKE_PREFIX_PATH="$prefix" \
    -DREQUEST="$request" -DEXPECTED="$expect" >"$tmp/versions.log" 2>"$tmp/versions.err"; then
    if [ "$expect" = 0 ] || found_in "find_package(promotion_gates $request)" "$tmp/versions.log" \
      "$prefix/lib/cmake/promotion_gates"; then
      echo "ok: find_package(promotion_gates $request): found $expect"
    fi
  else
    echo "FAILED: $(grep -m1 'find_package' "$tmp/versions.err" || tail -n 3 "$tmp/versions.err")" >&2
    failed=$((failed + 1))
  fi
  rm -rf "$tmp/versions"
done

echo "== (b) CMake, find_package(promotion_gates) with one library installed"
# find_package_host PREFIX LINK [COMPONENT [CPP_SOURCE]]: configures and builds
# hosts/find_package against PREFIX, route.c linked to the target LINK, into $tmp/found (its
# output in $tmp/found.log); with CPP_SOURCE, after adding that source build of bindings/cpp
# on PREFIX's library. A package found anywhere but in PREFIX's lib/cmake/promotion_gates (or
# $package_dir, when set) fails it, with an error in the log.
find_package_host() {
  local source=() expected=${package_dir:-$1/lib/cmake/promotion_gates} dir
  [ -z "${4:-}" ] || source=(-DCPP_SOURCE="$4" -DPGATE_LIBRARY_DIR="$1/lib")
  rm -rf "$tmp/found"
  cmake -S "$hosts/find_package" -B "$tmp/found" -DCMAKE_PREFIX_PATH="$1" -DLINK="$2" \
    -DCOMPONENTS="${3:-}" "${source[@]}" >"$tmp/found.log" 2>&1 || return 1
  dir=$(sed -n 's/^-- promotion_gates_DIR: //p' "$tmp/found.log")
  if ! [ "$dir" -ef "$expected" ]; then
    echo "error: find_package found the package in '$dir', not in $expected" >>"$tmp/found.log"
    return 1
  fi
  cmake --build "$tmp/found" >>"$tmp/found.log" 2>&1
}
# The first error in $tmp/found.log and what follows it, on one line (CMake wraps its
# messages): whole, for a check to read (its paths as long as TMPDIR makes them), and its
# first 400 characters, for a FAILED line.
found_message() { tr -s ' \n' ' ' <"$tmp/found.log" | grep -o -i -m1 '\(CMake Error\|error\).*'; }
found_error() { found_message | cut -c1-400; }
# A distribution may ship the shared library and the archive in packages of their own: each
# target is defined when its library is there, the package found with either, and a
# component asked for fails when its library is missing.
for kept in shared static; do
  only="$tmp/only_$kept"
  cp -al "$prefix" "$only" # hard links: no second copy of the archive
  if [ "$kept" = shared ]; then
    rm "$only"/lib/libpromotion_gates_ffi.a "$only"/lib/libpromotion_gates_ffi_static.a
    link=promotion_gates::c missing=static
  else
    rm "$only"/lib/libpromotion_gates_ffi.so*
    link=promotion_gates::c_static missing=shared
  fi
  if find_package_host "$only" "$link"; then
    if [ "$kept" = shared ]; then
      shared "find_package, the shared library alone" "$tmp/found/route_c"
    elif loads_shared_library "$tmp/found/route_c"; then
      echo "FAILED: find_package, the archive alone: the program loads the shared library" >&2
      failed=$((failed + 1))
    fi
    check "find_package, the $kept library alone ($link)" "$tmp/found/route_c"
  else
    echo "FAILED: find_package with the $kept library alone: $(found_error)" >&2
    failed=$((failed + 1))
  fi
  if find_package_host "$only" "$link" "$missing"; then
    echo "FAILED: find_package(promotion_gates COMPONENTS $missing) found it without its library" >&2
    failed=$((failed + 1))
  elif [[ "$(found_message)" == *"component $missing: "*" is missing"* ]]; then
    echo "ok: find_package(promotion_gates COMPONENTS $missing) with the $kept library alone: not found"
  else
    echo "FAILED: find_package(promotion_gates COMPONENTS $missing): $(found_error)" >&2
    failed=$((failed + 1))
  fi
  rm -rf "$only"
done

echo "== (b) CMake, find_package(promotion_gates) beside a source build of bindings/cpp"
# A host that adds bindings/cpp (add_subdirectory) has its own promotion_gates::c and ::cpp
# before find_package: the package keeps them and still defines promotion_gates::c_static,
# with the component static asked for or without components.
for components in static ""; do
  label="find_package${components:+ COMPONENTS $components} beside a source build of bindings/cpp"
  if find_package_host "$prefix" promotion_gates::c_static "$components" "$root/bindings/cpp"; then
    if loads_shared_library "$tmp/found/route_c"; then
      echo "FAILED: $label: the program linked to promotion_gates::c_static loads the shared library" >&2
      failed=$((failed + 1))
    fi
    check "$label (promotion_gates::c_static)" "$tmp/found/route_c"
  else
    echo "FAILED: $label: $(found_error)" >&2
    failed=$((failed + 1))
  fi
done

echo "== (b) CMake, find_package(promotion_gates) through /lib -> usr/lib"
# A merged-/usr system: installed into /usr, the package is also found through the link
# /lib -> usr/lib, where the prefix three directories up is / and its include directory
# /include. Staged with --destdir, moved (as a package manager unpacks it), then found
# through the staged tree's own lib -> usr/lib: the include directory must be its usr/include
# (resolved: the package resolves the directory it was found in when the prefix as named has
# no header, and $tmp lies under a link).
arch=$(cc -print-multiarch 2>/dev/null || true)
"$root/packaging/install.sh" --no-build --prefix /usr --libdir "/usr/lib${arch:+/$arch}" \
  --destdir "$tmp/merged_staged" >/dev/null
mv "$tmp/merged_staged" "$tmp/merged"
ln -s usr/lib "$tmp/merged/lib"
if package_dir="$tmp/merged/usr/lib${arch:+/$arch}/cmake/promotion_gates" find_package_host "$tmp/merged" promotion_gates::c_static; then
  found_dir=$(sed -n 's/^-- promotion_gates_DIR: //p' "$tmp/found.log")
  found_include=$(sed -n 's/^-- promotion_gates_INCLUDE_DIR: //p' "$tmp/found.log")
  if [[ "$found_dir" != "$tmp/merged/lib/"* ]]; then
    echo "FAILED: find_package found $found_dir, not through $tmp/merged/lib" >&2
    failed=$((failed + 1))
  elif ! [ "$found_include" -ef "$tmp/merged/usr/include" ]; then
    echo "FAILED: found through $found_dir, the include directory is $found_include" >&2
    failed=$((failed + 1))
  else
    check "find_package through lib -> usr/lib (promotion_gates::c_static)" "$tmp/found/route_c"
  fi
else
  echo "FAILED: find_package through lib -> usr/lib: $(found_error)" >&2
  failed=$((failed + 1))
fi
rm -rf "$tmp/merged"

echo "== (a, b) pkg-config and CMake on a prefix whose lib/ is a link to a directory elsewhere"
# (a lib/ on another disk): the compiler climbs each `..` of the .pc files' ${pcfiledir}/../..
# from where the link leads, so they name that prefix as it is; the CMake package collapses
# its `..` by name. Each links the archive from the prefix's include/, which is not elsewhere.
linked="$tmp/linked_lib"
mkdir -p "$linked/prefix" "$linked/disk/lib"
ln -s ../disk/lib "$linked/prefix/lib"
"$root/packaging/install.sh" --no-build --prefix "$linked/prefix" >/dev/null 2>"$tmp/linked.err"
# shellcheck disable=SC2046
if cc -std=c11 -Wall -Wextra -Werror "$hosts/route.c" -o "$tmp/route_c_linked" \
  $(PKG_CONFIG_LIBDIR="$linked/prefix/lib/pkgconfig" pkg-config --cflags --libs promotion_gates-static) 2>"$tmp/linked_cc.err"; then
  check "C (pkg-config, static), lib/ a link elsewhere" "$tmp/route_c_linked"
else
  echo "FAILED: pkg-config on a prefix whose lib/ is a link elsewhere: $(grep -m1 -i error "$tmp/linked_cc.err"); $(head -n 1 "$tmp/linked.err")" >&2
  failed=$((failed + 1))
fi
if find_package_host "$linked/prefix" promotion_gates::c_static; then
  check "find_package, lib/ a link elsewhere (promotion_gates::c_static)" "$tmp/found/route_c"
else
  echo "FAILED: find_package on a prefix whose lib/ is a link elsewhere: $(found_error)" >&2
  failed=$((failed + 1))
fi

echo "== (b) CMake, pkg_check_modules(IMPORTED_TARGET promotion_gates-static)"
# CMake puts what pkg-config gives other than -L and -l among the link options, before the
# program's objects: an archive named by its path there leaves every pgate_ symbol undefined.
cmake -S "$hosts/pkg_check_modules" -B "$tmp/cmake_pc" -DCMAKE_BUILD_TYPE=Release >/dev/null
if cmake --build "$tmp/cmake_pc" >"$tmp/cmake_pc.log" 2>&1; then
  if loads_shared_library "$tmp/cmake_pc/route_c_pkg_config"; then
    echo "FAILED: the pkg_check_modules program loads the shared library" >&2
    failed=$((failed + 1))
  fi
  check "C (pkg_check_modules, static)" "$tmp/cmake_pc/route_c_pkg_config"
else
  echo "FAILED: pkg_check_modules(IMPORTED_TARGET promotion_gates-static): $(grep -m1 -i 'undefined\|error' "$tmp/cmake_pc.log")" >&2
  failed=$((failed + 1))
fi

echo "== (c) Python: pip wheel ./bindings/python, then a venv"
python3 -m pip wheel -q --no-deps -w "$tmp/wheel" "$root/bindings/python"
wheel=$(echo "$tmp"/wheel/promotion_gates-"$version"-py3-none-*.whl)
[ -f "$wheel" ] || { echo "FAILED: no wheel of version $version: $(ls "$tmp/wheel")" >&2 && exit 1; }
echo "built $(basename "$wheel")"
# Apache-2.0 asks that every copy carry the license: the wheel's metadata names it, and holds it.
python3 - "$wheel" "$root/LICENSE" <<'PY' || failed=$((failed + 1))
import sys, zipfile
wheel, license = zipfile.ZipFile(sys.argv[1]), open(sys.argv[2], "rb").read()
names = wheel.namelist()
metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
carried = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
if "License-Expression: Apache-2.0" not in metadata or not carried or wheel.read(carried[0]) != license:
    sys.exit(f"FAILED: the wheel does not carry the Apache-2.0 license: {names}")
PY
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "$wheel"
# From another directory, without PROMOTION_GATES_LIBRARY: only the wheel can provide it; the
# package names it by its resolved path ($tmp lies under a link), and the process mapped it.
bundled=$(echo "$tmp"/venv/lib/python3*/site-packages/promotion_gates/libpromotion_gates_ffi.so)
check_loaded "Python (wheel)" "$bundled" \
  env -C "$tmp" -u PROMOTION_GATES_LIBRARY -u PYTHONPATH "$tmp/venv/bin/python" "$hosts/route.py"
if ! [ "$(tail -n 2 "$tmp/loaded.err" | head -n 1)" -ef "$bundled" ]; then
  echo "FAILED: Python names the library it loaded $(tail -n 2 "$tmp/loaded.err" | head -n 1), not the wheel's $bundled" >&2
  failed=$((failed + 1))
fi
# The system loader, from a copy of the package that is neither bundled nor in a checkout: it
# asks for the SONAME first, so a runtime install serves it (the runtime install's file, not
# one of the same SONAME elsewhere on the loader's path).
mkdir -p "$tmp/python_source"
cp -r "$root/bindings/python/src/promotion_gates" "$tmp/python_source/"
rm -f "$tmp/python_source/promotion_gates/libpromotion_gates_ffi.so"
check_loaded "Python (system loader, runtime install)" "$runtime/$real" env -C "$tmp" -u PROMOTION_GATES_LIBRARY \
  PYTHONPATH="$tmp/python_source" LD_LIBRARY_PATH="$runtime" python3 "$hosts/route.py"
if [ "$(tail -n 2 "$tmp/loaded.err" | head -n 1)" != "$soname" ]; then
  echo "FAILED: Python's system loader was asked for $(tail -n 2 "$tmp/loaded.err" | head -n 1), not the SONAME $soname" >&2
  failed=$((failed + 1))
fi

echo "== (d) Go: a module outside the repository"
mkdir -p "$tmp/gohost"
cp "$hosts/route.go" "$tmp/gohost/main.go"
module=github.com/promotion-gates/promotion-gates/bindings/go
# Go's build cache keeps a cgo package's pkg-config answer (golang/go#24544): a cache of its
# own makes this build see this install, as a new host would.
export GOCACHE="$tmp/gocache"
(cd "$tmp/gohost" && go mod init example.com/pgatehost 2>/dev/null &&
  go mod edit -require "$module@v0.0.0" -replace "$module=$root/bindings/go" && go mod tidy)
(cd "$tmp/gohost" && CGO_ENABLED=1 go build -o "$tmp/route_go" .)
if loads_shared_library "$tmp/route_go"; then
  echo "FAILED: the Go program (static, the default) loads the shared library" >&2
  failed=$((failed + 1))
fi
check "Go, static (default)" "$tmp/route_go"
(cd "$tmp/gohost" && CGO_ENABLED=1 CGO_LDFLAGS="-Wl,-rpath,$libdir" \
  go build -tags pgate_shared -o "$tmp/route_go_shared" .)
shared "Go, shared (-tags pgate_shared)" "$tmp/route_go_shared"
check "Go, shared (-tags pgate_shared)" "$tmp/route_go_shared"

echo "== (e) LuaJIT: luarocks lint, luarocks make into a temporary tree"
rockspec="$root/bindings/lua/promotion-gates-$version-1.rockspec"
[ -f "$rockspec" ] || { echo "FAILED: no rockspec $rockspec for the workspace's version" >&2 && exit 1; }
luarocks lint "$rockspec"
(cd "$root" && luarocks make --tree "$tmp/rocks" "$rockspec" >/dev/null)
lua_path=$(luarocks path --tree "$tmp/rocks" --lr-path)
check_loaded "LuaJIT (rock)" "$libdir/$real" env -C "$tmp" LUA_PATH="$lua_path;;" LD_LIBRARY_PATH="$libdir" \
  luajit "$hosts/route.lua"
# Without a path the module asks for the SONAME first, so a runtime install serves it too
# (its file, not one of the same SONAME elsewhere on the loader's path).
check_loaded "LuaJIT (rock, runtime install)" "$runtime/$real" env -C "$tmp" LUA_PATH="$lua_path;;" \
  LD_LIBRARY_PATH="$runtime" luajit "$hosts/route.lua"

echo "== packaging: $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
