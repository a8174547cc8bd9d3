#!/usr/bin/env bash
# Builds the Rust library, then vets, tests (with -race, with and without the pgatedebug GC
# tag) and smoke-runs the benchmarks of the Go binding. Run from anywhere; exits non-zero on
# the first failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

echo "== cargo build --release -p promotion-gates-ffi"
(cd "$root" && cargo build --release -p promotion-gates-ffi)

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

echo "== bindings/go: all passed"
