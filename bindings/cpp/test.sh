#!/usr/bin/env bash
# Builds the Rust library and runs the C++ binding's GoogleTest suite twice: a plain build in
# bindings/cpp/build, then one with -fsanitize=address,undefined in bindings/cpp/build-asan.
# Installs what it lacks (cmake, ninja, g++, GoogleTest, nlohmann-json) with .ci/apt-install.
set -euo pipefail
start=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v c++ >/dev/null || missing+=(g++)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
[ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
[ ${#missing[@]} -eq 0 ] || "$root/.ci/apt-install" "${missing[@]}"

echo "== cargo build --release -p promotion-gates-ffi"
(cd "$root" && cargo build --release -p promotion-gates-ffi)
# Where cargo put the library, as .ci/build-dir asks cargo (CARGO_BUILD_TARGET too).
release=$("$root/.ci/build-dir" release)
# The link the library's SONAME names (libpromotion_gates_ffi.so.ABI), which the tests load
# from there.
"$root/packaging/install.sh" --build-tree-pc "$(dirname "$release")/pkgconfig" >/dev/null

# Configured on a library directory whose only SONAME link is of another version (another
# build's, here the next minor's): refused, naming the link the workspace's version asks for,
# which the programs would record and not find (the check took any .so.* link).
version=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version *=/ {print $2; exit}' "$root/Cargo.toml")
IFS=. read -r major minor _ <<<"$version"
abi=$major
[ "$major" != 0 ] || abi=0.$minor
stale=$(mktemp -d)
trap 'rm -rf "$stale"' EXIT
ln -s "$release/libpromotion_gates_ffi.so" "$stale/"
ln -s libpromotion_gates_ffi.so "$stale/libpromotion_gates_ffi.so.$major.$((minor + 1))"
if cmake -S "$here" -B "$stale/build" -DPGATE_LIBRARY_DIR="$stale" -DPGATE_BUILD_TESTS=OFF >"$stale/log" 2>&1; then
  echo "FAIL: configured on $stale, which lacks libpromotion_gates_ffi.so.$abi" >&2 && exit 1
elif ! tr -s ' \n' ' ' <"$stale/log" | grep -Fq "$stale/libpromotion_gates_ffi.so.$abi, the name the loader is asked for"; then
  echo "FAIL: the configure without libpromotion_gates_ffi.so.$abi said: $(cat "$stale/log")" >&2 && exit 1
fi
echo "ok: a SONAME link of another version is refused, naming libpromotion_gates_ffi.so.$abi"

jobs=$(nproc 2>/dev/null || echo 4)
run() {  # run BUILD_DIR [cmake args...]
  local dir=$1
  shift
  echo "== $(basename "$dir"): configure, build, test"
  cmake -S "$here" -B "$dir" -G Ninja -DPGATE_LIBRARY_DIR="$release" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs"
}

run "$here/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
# halt_on_error makes every sanitizer report fail the test.
ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
  run "$here/build-asan" -DCMAKE_BUILD_TYPE=Debug -DPGATE_SANITIZE=address,undefined

echo "== bindings/cpp: all tests passed in $((SECONDS - start)) s"
