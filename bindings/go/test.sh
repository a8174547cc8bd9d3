#!/usr/bin/env bash
# Builds the Rust library, then vets, tests (with -race, with and without the pgatedebug GC
# tag) and smoke-runs the benchmarks of the Go binding, linked statically (the default), then
# runs the vectors once linked to the shared library (-tags pgate_shared; each of the three
# vector tests must pass, by name), and the end-to-end
# test of the reverse-proxy middleware under load (e2e.sh). pkg-config finds
# this checkout's build through .pc files written into the target directory (by install.sh,
# which also links the library's SONAME to it for the shared test binary). Run from
# anywhere; exits non-zero on the first failure, at once when Go is missing or older than
# go.mod's (.ci/need-go; Go from 1.21 on fetches the toolchain go.mod names itself).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

"$root/.ci/need-go" # before the build: Go as new as go.mod's, or what to install

echo "== cargo build --release -p promotion-gates-ffi"
(cd "$root" && cargo build --release -p promotion-gates-ffi)
release=$("$root/.ci/build-dir" release) # where cargo put it (CARGO_BUILD_TARGET too)
pkgconfig="$(dirname "$release")/pkgconfig"

command -v pkg-config >/dev/null || "$root/.ci/apt-install" pkg-config
echo "== pkg-config files for this checkout's build -> $pkgconfig"
"$root/packaging/install.sh" --build-tree-pc "$pkgconfig"
export PKG_CONFIG_PATH="$pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

cd "$here"
export CGO_ENABLED=1

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...
go vet -tags pgatedebug ./...

echo "== go test -race"
go test -race -count=1 ./...

echo "== go test -race -tags pgatedebug (forced GC between operations)"
go test -race -tags pgatedebug -count=1 ./...

echo "== benchmarks (smoke run)"
go test -run '^$' -bench . -benchtime 200ms ./...

# Each of the three vector tests must pass by name: a test renamed leaves `-run Vector` with
# "no tests to run", which passes.
vector_tests=(TestRoutingVectors TestOverrideVectors TestForcingValueVectors)
echo "== go test -race -tags pgate_shared -run Vector (linked to the shared library): ${vector_tests[*]}"
vector_log=$(mktemp)
shared_test=$(mktemp)
trap 'rm -f "$vector_log" "$shared_test"' EXIT
if ! CGO_LDFLAGS="-Wl,-rpath,$release" go test -race -tags pgate_shared -count=1 -v -run Vector ./... >"$vector_log" 2>&1; then
  cat "$vector_log" >&2
  exit 1
fi
grep -E '^(--- |ok|FAIL)' "$vector_log"
for test in "${vector_tests[@]}"; do
  grep -qE "^--- PASS: $test \(" "$vector_log" ||
    { echo "$test did not pass linked to the shared library (renamed? the run's tests are above)" >&2 && exit 1; }
done
# The test binary must load the shared library: a static link would pass the vectors too.
CGO_LDFLAGS="-Wl,-rpath,$release" go test -c -tags pgate_shared -o "$shared_test" .
libs=$(ldd "$shared_test")
grep -q libpromotion_gates_ffi.so <<<"$libs" ||
  { echo "the -tags pgate_shared test binary does not load the shared library" >&2 && exit 1; }

echo "== e2e.sh: 2 proxy processes on canaryproxy under wrk load (~15 s)"
"$here/e2e.sh"

echo "== bindings/go: all passed"
