#!/usr/bin/env bash
# Builds the library, the C example and the C tests, then runs the tests three ways:
# (a) plain, (b) with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on),
# (c) under valgrind memcheck (installed with .ci/apt-install when missing); and runs the
# example, linked shared and static.
# Run from anywhere. Outputs go to bindings/c/build/ (gitignored).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$here/build"
lib=$("$root/.ci/build-dir" release) # where cargo puts the library (CARGO_BUILD_TARGET too)
mkdir -p "$build"
start=$SECONDS

echo "== cargo build --release -p promotion-gates-ffi"
(cd "$root" && cargo build --release -p promotion-gates-ffi)
# The link the library's SONAME names (libpromotion_gates_ffi.so.ABI), which the programs
# linked with it below load from $lib.
"$root/packaging/install.sh" --build-tree-pc "$(dirname "$lib")/pkgconfig" >/dev/null

echo "== routing vectors -> $build/routing.tsv"
python3 "$here/vectors_tsv.py" "$root/tests/vectors/routing.json" >"$build/routing.tsv"

version=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version *=/ {print $2; exit}' "$root/Cargo.toml")
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -g -I"$root/include")
shared=(-L"$lib" -lpromotion_gates_ffi -Wl,-rpath,"$lib")
# A Rust staticlib needs the system libraries the standard library uses.
static=("$lib/libpromotion_gates_ffi.a" -lpthread -ldl -lm)
sanitize=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)

echo "== compile (cc: $(cc --version | head -n 1))"
for std in c99 c11; do # the header compiles alone, warning-free
  echo '#include "promotion_gates.h"' |
    cc -std=$std -Wall -Wextra -Werror -pedantic -I"$root/include" -fsyntax-only -x c -
done
cc "${cflags[@]}" "$here/example.c" -o "$build/example" "${shared[@]}"
cc "${cflags[@]}" "$here/example.c" -o "$build/example_static" "${static[@]}"
cc "${cflags[@]}" -DPGATE_EXPECTED_VERSION="\"$version\"" "$here/test_promotion_gates.c" \
  -o "$build/test_promotion_gates" "${shared[@]}" -pthread -lm
cc "${cflags[@]}" "${sanitize[@]}" -DPGATE_EXPECTED_VERSION="\"$version\"" \
  "$here/test_promotion_gates.c" -o "$build/test_promotion_gates_asan" "${shared[@]}" -pthread -lm

summaries=()
# Runs one test binary; keeps its last line, which must read "N passed, 0 failed" with N > 0.
run() {
  local label=$1
  shift
  echo "== tests: $label"
  "$@" "$build/routing.tsv" "$root/tests/vectors/overrides.tsv" | tee "$build/last.log"
  local last
  last=$(tail -n 1 "$build/last.log")
  if ! [[ $last =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]; then
    echo "unexpected summary line: $last" >&2
    exit 1
  fi
  summaries+=("$label: $last")
}

run "plain" "$build/test_promotion_gates"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run "asan+ubsan" "$build/test_promotion_gates_asan"

command -v valgrind >/dev/null || "$root/.ci/apt-install" valgrind
run "valgrind" valgrind -q --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite "$build/test_promotion_gates"

# Builds a small test plainly and with the sanitizers, and runs both.
run_twice() {  # run_twice LABEL SOURCE
  local label=$1 name
  name=$(basename "$2" .c)
  cc "${cflags[@]}" "$2" -o "$build/$name" "${shared[@]}"
  cc "${cflags[@]}" "${sanitize[@]}" "$2" -o "$build/${name}_asan" "${shared[@]}"
  run "$label" "$build/$name"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run "$label asan+ubsan" "$build/${name}_asan"
}

echo "== telemetry: the exposition, the histograms and the log callback"
run_twice "telemetry" "$here/test_telemetry.c"

echo "== changes: the change counter and the changes, the health read, the SLO swap"
run_twice "changes" "$here/test_changes.c"

echo "== example (shared library)"
"$build/example"
echo "== example (static library)"
"$build/example_static" >/dev/null
echo "static example: ok"

echo "== C binding: $((SECONDS - start)) s"
printf '%s\n' "${summaries[@]}"
