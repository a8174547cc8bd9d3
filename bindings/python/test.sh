#!/usr/bin/env bash
# Tests of the Python binding: builds the Rust library, then runs pytest and mypy --strict
# against it (with python3, or a venv .ci/test-python makes when pip may not install them). Runs from any directory; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

echo "== cargo build --release -p promotion-gates-ffi"
cargo build --release -p promotion-gates-ffi
release=$(.ci/build-dir release) # where cargo put it (CARGO_BUILD_TARGET too)
case "$(uname -s)" in
  Darwin) lib="$release/libpromotion_gates_ffi.dylib" ;;
  *) lib="$release/libpromotion_gates_ffi.so" ;;
esac
test -f "$lib" || { echo "test.sh: $lib was not built" >&2; exit 1; }
export PROMOTION_GATES_LIBRARY="$lib"

# Part of the test: pytest and mypy, installed from PyPI when missing (into a venv in the target
# directory where pip may not install into python3: .ci/test-python), and a failure to install
# fails the run.
python=$(timeout 600 .ci/test-python pytest mypy)

echo "== pytest bindings/python/tests ($python)"
# -rs lists each skipped test with its reason; a skip fails the run: a test that needs a tool
# (a C compiler, readelf) skips where pytest runs by hand without it, and this run (CI's, whose
# .ci/run installs them) must run every test, never pass by skipping one; but on macOS, where
# the library is no ELF file and has no SONAME to read, the SONAME test's skip. --color=no:
# PY_COLORS or FORCE_COLOR in the environment would colour the word the count looks for.
log=$(mktemp)
status=0
{ "$python" -m pytest -q -rs --color=no bindings/python/tests 2>&1 | tee "$log"; status=${PIPESTATUS[0]}; } || true
unavoidable='^$'
[ "$(uname -s)" = Darwin ] && unavoidable='an ELF SONAME'
skipped=$(grep -E '^SKIPPED ' "$log" | grep -Evc "$unavoidable" || true)
rm -f "$log"
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  exit "$status"
elif [ "$skipped" -ne 0 ]; then
  echo "test.sh: pytest skipped tests ($skipped SKIPPED lines above, each with its reason):" \
    "install what they need" >&2
  exit 1
fi

echo "== mypy --strict"
(cd "$here" && "$python" -m mypy --strict src/promotion_gates bench_route.py \
  && MYPYPATH=src:tests "$python" -m mypy --strict tests)
