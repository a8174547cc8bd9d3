#!/usr/bin/env bash
# Installs promotion-gates for C, C++, Go and CMake hosts: builds the C ABI with
# `cargo build --release -p promotion-gates-ffi`, then copies into PREFIX
#   lib/libpromotion_gates_ffi.so.VERSION (the library), with the symbolic links
#     lib/libpromotion_gates_ffi.so.ABI, the name programs ask the loader for (the library's
#     SONAME: ABI is 0.MINOR before 1.0, MAJOR from 1.0), and lib/libpromotion_gates_ffi.so,
#     which -lpromotion_gates_ffi links (a distribution's development package)
#   lib/libpromotion_gates_ffi.a
#   lib/libpromotion_gates_ffi_static.a, a symbolic link to the archive: promotion_gates-static.pc
#     links -lpromotion_gates_ffi_static, a name no shared library has
#   include/promotion_gates.h (the checked-in header cbindgen generates), include/promotion_gates.hpp
#   lib/pkgconfig/promotion_gates.pc, lib/pkgconfig/promotion_gates-static.pc
#   lib/cmake/promotion_gates/promotion_gatesConfig.cmake (and ...ConfigVersion.cmake)
#   share/doc/promotion_gates/LICENSE (Apache-2.0, which asks that every copy carry it)
# and prints each file it wrote, then (on stderr) that Go programs need `go clean -cache` and
# `go build -a` to link the new library. Run from anywhere.
#
# Why a script and not cargo-c: `cargo install cargo-c` compiles the whole of cargo (hundreds
# of crates, libgit2 and curl among them) before the first install, and Debian's cargo-c is too
# old for this workspace's edition; this script reuses the build every binding test already
# made, so CI's install step costs seconds.
#
#   packaging/install.sh [--prefix DIR] [--libdir DIR] [--includedir DIR] [--destdir DIR] [--no-build]
#   packaging/install.sh --build-tree-pc DIR
#
# --prefix      where the files will live (default /usr/local); the .pc and CMake files name it
#               relative to themselves, so the installed tree can be moved whole (with a
#               --libdir outside the prefix they name every directory by its absolute path,
#               and the .pc files name the prefix so when a directory between it and
#               lib/pkgconfig is a link elsewhere, which the system follows before each `..`).
#               The relative form is worked out from the names given (GNU realpath -ms), not
#               from resolved symlinks: a host must find the .pc and CMake files under the
#               names they were installed to, not through a symlink into another tree (the
#               CMake package found through one, as /lib -> usr/lib, resolves it when the
#               prefix so named has no promotion_gates.h in its include directory)
# --libdir      default PREFIX/lib;  --includedir  default PREFIX/include
# --destdir     a staging root prepended to every path written (for distribution packages)
# --no-build    install what the last `cargo build --release -p promotion-gates-ffi` built
#               (in TARGET/release, or TARGET/$CARGO_BUILD_TARGET/release when that is set),
#               saying on stderr which directory and when it was built; refused when a source
#               file under src/ or ffi/src that build read changed after it, when its SONAME
#               (read with readelf) is not the one this checkout's version names, or the
#               version it records (what pgate_version returns, read without loading it) is
#               not this checkout's (a build from before a version bump, a patch release's
#               too), or when its dep-info names no source of this checkout
#               (sudo drops CARGO_TARGET_DIR and CARGO_BUILD_TARGET, and may find an older
#               build in target/release: name them again, `sudo env CARGO_TARGET_DIR=...
#               install.sh ...`)
# --build-tree-pc DIR  installs nothing: writes both .pc files into DIR, describing this
#               checkout's build (cargo's target directory, release) and include/, for
#               PKG_CONFIG_PATH (bindings/go/test.sh uses it), and the static .pc's link to
#               the archive, DIR/libpromotion_gates_ffi_static.a; and beside the build's
#               shared library the link its SONAME names, release/libpromotion_gates_ffi.so.ABI,
#               which a program linked with it from the build tree loads (every binding's
#               test and bindings/nginx/build.sh run this before linking)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

prefix=/usr/local libdir="" includedir="" destdir="" build=1 build_tree_pc=""
usage() {
  grep '^#   packaging/install.sh' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix | --libdir | --includedir | --destdir | --build-tree-pc)
      [ $# -ge 2 ] || { echo "install.sh: $1 needs a directory" >&2; usage; }
      case "$1" in
        --prefix) prefix=$2 ;;
        --libdir) libdir=$2 ;;
        --includedir) includedir=$2 ;;
        --destdir) destdir=$2 ;;
        --build-tree-pc) build_tree_pc=$2 ;;
      esac
      shift 2
      ;;
    --no-build) build=0 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2 && usage ;;
  esac
done
for dir in "$prefix" ${libdir:+"$libdir"} ${includedir:+"$includedir"}; do
  case "$dir" in /*) ;; *) echo "install.sh: $dir is not an absolute path" >&2 && exit 2 ;; esac
done

# Where cargo builds, as cargo itself says (CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR or a
# .cargo/config.toml's build.target-dir), not guessed: .ci/build-dir, as every binding's test
# asks. Without cargo on the PATH (`sudo install.sh --no-build` after a build as oneself), or
# with one that cannot read the workspace (sudo's /usr/bin/cargo, older than its edition),
# CARGO_TARGET_DIR or target/. With a target triple set (CARGO_BUILD_TARGET), cargo builds
# into TARGET/<triple>/release. (A build below names the directory it wrote, which also
# follows a .cargo/config.toml's build.target.)
release=$("$root/.ci/build-dir" release)
version=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version *=/ {print $2; exit}' "$root/Cargo.toml")
# The library's SONAME, as ffi/build.rs names it: the version of its ABI, which before 1.0 a
# minor release may change.
IFS=. read -r major minor _ <<<"$version"
abi=$major
[ "$major" != 0 ] || abi=0.$minor
soname=libpromotion_gates_ffi.so.$abi
# What a Rust staticlib needs from the system on Linux with glibc (what rustc's
# --print native-static-libs lists, less libgcc_s and libc, which every C link has already;
# libutil and librt are empty since glibc 2.34, and needed before). Written out
# rather than asked of rustc at install time: rustc prints the list only while it links, and
# asking for it with `cargo rustc -- --print native-static-libs` rebuilds the library with other
# flags than every binding's build. packaging/test.sh links the static library through this
# list from C, CMake and Go, so a system library a new dependency needs fails that test.
native_libs="-lutil -lrt -lpthread -ldl -lm"

# write_from TEMPLATE OUT PREFIX LIBDIR INCLUDEDIR: fills the @...@ fields of a template, each
# with its value as it is, in one pass (a value holding `@LIBDIR@` is not filled again): not
# with sed, where a `&` in a directory's name stands for the field and a `|` ends the
# expression.
write_from() {
  local -A value=([PREFIX]=$3 [LIBDIR]=$4 [INCLUDEDIR]=$5 [VERSION]=$version [SONAME]=$soname
    [NATIVE_LIBS]=$native_libs)
  local line filled field
  while IFS= read -r line || [ -n "$line" ]; do
    filled=""
    while [[ "$line" =~ @(PREFIX|LIBDIR|INCLUDEDIR|VERSION|SONAME|NATIVE_LIBS)@ ]]; do
      field=${BASH_REMATCH[0]}
      filled+=${line%%"$field"*}${value[${BASH_REMATCH[1]}]}
      line=${line#*"$field"}
    done
    printf '%s\n' "$filled$line"
  done <"$here/$1" >"$2"
  echo "$2"
}

# under_prefix BASE DIR: DIR as BASE/relative when DIR is PREFIX or below it, else DIR itself.
# The installed .pc and CMake files name every directory below the prefix through the
# prefix, and the prefix relative to where they lie (pkg-config's ${pcfiledir}, CMake's
# CMAKE_CURRENT_LIST_DIR): a tree moved or copied elsewhere after the install still works.
under_prefix() {
  case "$2" in
    "$prefix") echo "$1" ;;
    "${prefix%/}"/*) echo "$1/$(realpath -ms --relative-to="$prefix" "$2")" ;;
    *) echo "$2" ;;
  esac
}

if [ -n "$build_tree_pc" ]; then
  mkdir -p "$build_tree_pc"
  build_tree_pc=$(cd "$build_tree_pc" && pwd)
  write_from promotion_gates.pc.in "$build_tree_pc/promotion_gates.pc" "$root" "$release" "$root/include"
  ln -sfn "$release/libpromotion_gates_ffi.a" "$build_tree_pc/libpromotion_gates_ffi_static.a"
  write_from promotion_gates-static.pc.in "$build_tree_pc/promotion_gates-static.pc" "$root" "$build_tree_pc" "$root/include"
  ln -sfn libpromotion_gates_ffi.so "$release/$soname"
  echo "$release/$soname"
  exit 0
fi

libdir=${libdir:-$prefix/lib}
includedir=${includedir:-$prefix/include}
if [ "$build" -eq 1 ]; then
  echo "== cargo build --release -p promotion-gates-ffi" >&2
  release=$(cd "$root" && cargo build --release -p promotion-gates-ffi --message-format=json-render-diagnostics |
    python3 -c '
import json, os, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "promotion_gates_ffi":
        print(os.path.dirname(message["filenames"][0]))
')
  [ -n "$release" ] || { echo "install.sh: cargo named no library it built" >&2 && exit 1; }
fi
for lib in libpromotion_gates_ffi.so libpromotion_gates_ffi.a; do
  [ -f "$release/$lib" ] && continue
  if [ "$build" -eq 1 ]; then
    echo "install.sh: cargo's build left no $release/$lib" >&2
  else
    # The README's flow (Install): build as oneself, then install as root with --no-build,
    # where sudo drops CARGO_TARGET_DIR.
    echo "install.sh: --no-build: $release/$lib is missing. Build it first, as yourself:" \
      "cargo build --release -p promotion-gates-ffi; a build into CARGO_TARGET_DIR is named" \
      "to the install again, as sudo drops it: sudo env CARGO_TARGET_DIR=\"\$CARGO_TARGET_DIR\"" \
      "packaging/install.sh --no-build ..." >&2
  fi
  exit 1
done
# --no-build takes a build it cannot check with cargo (under sudo: no cargo, CARGO_TARGET_DIR
# and CARGO_BUILD_TARGET dropped, so perhaps an old build in target/release): it says which
# build it installs, and refuses one older than a source file under src/ or ffi/src that the
# build read (cargo's dep-info beside it lists them; every such file when it is missing).
# Cargo writes the dep-info's paths as the build named the checkout: resolved (no symlink) when
# run in it, as given (normalised, a symlink kept) with `--manifest-path /link/Cargo.toml`,
# relative with `build.dep-info-basedir`; and a space as `\ `. The paths are read unescaped,
# one a line, a relative one taken from the checkout and one under this script's path to the
# checkout ($root, perhaps a symlink) renamed under the resolved one, where the sources are
# found. A dep-info that names no source of this checkout (the build made from another one, or
# a form this script does not read) is refused too, rather than taken as naming none that changed.
if [ "$build" -eq 0 ]; then
  lib=$release/libpromotion_gates_ffi.so
  echo "install.sh: --no-build: installing the build in $release (library built $(date -r "$lib" '+%Y-%m-%d %H:%M:%S %Z'))" >&2
  real_root=$(cd "$root" && pwd -P) read_deps=""
  dep_info=$release/libpromotion_gates_ffi.d
  if [ -f "$dep_info" ]; then
    # Each line `target: dep dep ...`: the deps after the first `: `, split at unescaped spaces.
    while IFS= read -r dep; do
      case $dep in
        "") continue ;;
        "$root"/*) dep=$real_root/${dep#"$root/"} ;;
        /*) ;;
        *) dep=$real_root/$dep ;;
      esac
      read_deps+=$dep$'\n'
    done < <(sed -e 's/^[^:]*: *//' -e 's/\([^\\]\)  */\1\n/g' -e 's/\\ / /g' "$dep_info")
    case $'\n'"$read_deps" in
      *$'\n'"$real_root/src/"* | *$'\n'"$real_root/ffi/src/"*) ;;
      *)
        echo "install.sh: --no-build: $dep_info names no source file under $real_root/src or" \
          "$real_root/ffi/src, so this build cannot be told to be this checkout's, nor whether it is" \
          "older than its sources: build it again, as yourself, cargo build --release -p" \
          "promotion-gates-ffi, then install" >&2
        exit 1
        ;;
    esac
  fi
  while IFS= read -r -d '' source; do
    [ -f "$dep_info" ] && ! grep -qxF -- "$source" <<<"$read_deps" && continue
    echo "install.sh: --no-build: $lib (built $(date -r "$lib" '+%Y-%m-%d %H:%M:%S')) is older than" \
      "$source (changed $(date -r "$source" '+%Y-%m-%d %H:%M:%S')): build it again, as yourself," \
      "cargo build --release -p promotion-gates-ffi, then install; a build into CARGO_TARGET_DIR" \
      "(or for a CARGO_BUILD_TARGET) is named to the install again, as sudo drops it: sudo env" \
      "CARGO_TARGET_DIR=\"\$CARGO_TARGET_DIR\" packaging/install.sh --no-build ..." >&2
    exit 1
  done < <(find "$real_root/src" "$real_root/ffi/src" -type f -newer "$lib" -print0)
  # Nor can a version bump be seen there (Cargo.toml, whose version ffi/build.rs writes into the
  # library as its SONAME): the build's SONAME must be the one this checkout's version names,
  # which the links, .pc and CMake files below give it, or the old library would be installed
  # under the new version's names.
  command -v readelf >/dev/null ||
    { echo "install.sh: --no-build: readelf (binutils) is needed to read the SONAME of $lib" >&2 && exit 1; }
  built_soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
  if [ "$built_soname" != "$soname" ]; then
    echo "install.sh: --no-build: $lib has the SONAME '$built_soname', and this checkout's version" \
      "$version names $soname: it was built from another version; build it again, as yourself," \
      "cargo build --release -p promotion-gates-ffi, then install" >&2
    exit 1
  fi
  # A patch release keeps the SONAME: each library's full version must be the checkout's too,
  # as ffi/src/gate.rs writes it into the library after these words (what pgate_version
  # returns), read without loading the build (it may be for another target).
  for built in "$lib" "$release/libpromotion_gates_ffi.a"; do
    # LC_ALL=C: the file is bytes, not text in the locale's encoding.
    built_version=$(LC_ALL=C grep -a -o -m1 -e 'promotion_gates_ffi version [0-9A-Za-z.+-]*' "$built" || true)
    built_version=${built_version%%$'\n'*}
    built_version=${built_version#promotion_gates_ffi version }
    if [ -z "$built_version" ]; then
      echo "install.sh: --no-build: $built records no version (built before this check, or not" \
        "machine code: bitcode from -Clinker-plugin-lto, which --no-build cannot read), and this" \
        "checkout's is $version; build it again, as yourself, without -Clinker-plugin-lto," \
        "cargo build --release -p promotion-gates-ffi, then install" >&2
      exit 1
    elif [ "$built_version" != "$version" ]; then
      echo "install.sh: --no-build: $built is of version '$built_version' (what pgate_version" \
        "returns), and this checkout's is $version: it was built from another version; build" \
        "it again, as yourself, cargo build --release -p promotion-gates-ffi, then install" >&2
      exit 1
    fi
  done
fi

lib_to="$destdir$libdir" include_to="$destdir$includedir"
cmake_to="$lib_to/cmake/promotion_gates"
mkdir -p "$lib_to/pkgconfig" "$include_to" "$cmake_to"
install -m 755 "$release/libpromotion_gates_ffi.so" "$lib_to/libpromotion_gates_ffi.so.$version"
# Relative links, as ldconfig makes the first: they hold in a tree moved whole or staged
# with --destdir.
ln -sfn "libpromotion_gates_ffi.so.$version" "$lib_to/$soname"
ln -sfn "$soname" "$lib_to/libpromotion_gates_ffi.so"
install -m 644 "$release/libpromotion_gates_ffi.a" "$lib_to/"
ln -sfn libpromotion_gates_ffi.a "$lib_to/libpromotion_gates_ffi_static.a"
install -m 644 "$root/include/promotion_gates.h" "$root/bindings/cpp/include/promotion_gates.hpp" "$include_to/"
doc_to="$destdir$prefix/share/doc/promotion_gates"
mkdir -p "$doc_to"
install -m 644 "$root/LICENSE" "$doc_to/"
printf '%s\n' "$lib_to/libpromotion_gates_ffi.so.$version" "$lib_to/$soname" "$lib_to/libpromotion_gates_ffi.so" \
  "$lib_to/libpromotion_gates_ffi.a" "$lib_to/libpromotion_gates_ffi_static.a" \
  "$include_to/promotion_gates.h" "$include_to/promotion_gates.hpp" "$doc_to/LICENSE"
# Relative only when the files lie below the prefix (a tree moved whole), and the .pc files
# not for /usr: pkg-config leaves out -I/usr/include and -L/usr/lib only when written so, and
# a relative form would put the system directories early on every consumer's command line.
# Nor when a directory the .pc files' `..` climb out of is a link to one elsewhere (a lib/ on
# another disk): pkg-config hands ${pcfiledir}/../../include to the compiler as it is, and the
# system climbs each `..` from where the link leads. (The CMake file collapses its `..` by
# name, so its relative form holds there.)
pc_prefix=$prefix cmake_prefix=$prefix
if [ "$(under_prefix . "$libdir")" != "$libdir" ]; then
  pc_up=$(realpath -ms --relative-to="$libdir/pkgconfig" "$prefix")
  if [ "${prefix%/}" = /usr ]; then
    :
  elif [ "$lib_to/pkgconfig/$pc_up" -ef "$destdir$prefix" ]; then
    pc_prefix="\${pcfiledir}/$pc_up"
  else
    echo "install.sh: $libdir/pkgconfig/$pc_up is not $prefix (a directory below the prefix is a" \
      "link to one elsewhere): the .pc files name the prefix $prefix, and hold only where it is" >&2
  fi
  cmake_prefix="\${_pgate_here}/$(realpath -ms --relative-to="$libdir/cmake/promotion_gates" "$prefix")"
fi
for pc in promotion_gates promotion_gates-static; do
  write_from "$pc.pc.in" "$lib_to/pkgconfig/$pc.pc" "$pc_prefix" \
    "$(under_prefix '${prefix}' "$libdir")" "$(under_prefix '${prefix}' "$includedir")"
done
for file in promotion_gatesConfig promotion_gatesConfigVersion; do
  write_from "$file.cmake.in" "$cmake_to/$file.cmake" "$cmake_prefix" \
    "$(under_prefix '${_pgate_prefix}' "$libdir")" "$(under_prefix '${_pgate_prefix}' "$includedir")"
done
# Go decides what to rebuild without looking at the library (golang/go#24544).
echo "install.sh: for Go, run \`go clean -cache\` and rebuild with \`go build -a\`: Go's cache does not see a new library (golang/go#24544)" >&2
