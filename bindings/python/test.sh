#!/usr/bin/env bash
# Tests of the Python binding: builds the Rust library, then runs pytest (and mypy --strict
# when it can be had) against it. Runs from any directory; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

echo "== cargo build --release -p promotion-gates-ffi"
cargo build --release -p promotion-gates-ffi
case "$(uname -s)" in
  Darwin) lib="$target/release/libpromotion_gates_ffi.dylib" ;;
  *) lib="$target/release/libpromotion_gates_ffi.so" ;;
esac
test -f "$lib" || { echo "test.sh: $lib was not built" >&2; exit 1; }
export PROMOTION_GATES_LIBRARY="$lib"

python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest

echo "== pytest bindings/python/tests"
status=0
python3 -m pytest -q bindings/python/tests || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

echo "== mypy --strict"
# Part of the test: installed from PyPI when missing, and a failure to install fails the run.
python3 -m mypy --version >/dev/null 2>&1 || timeout 300 python3 -m pip install -q mypy
(cd "$here" && python3 -m mypy --strict src/promotion_gates bench_route.py \
  && MYPYPATH=src:tests python3 -m mypy --strict tests)
