# Sourced by .ci/test, .ci/loom and .ci/miri. The latter two select tests by name: a module
# renamed would make the selection empty, and "0 passed" is a pass to cargo; a test target
# built without its feature has no test either.
#   tests_ran COMMAND...   runs COMMAND (cargo test, or a command running it), showing its
#                          output; fails when it fails, when no test binary ran, or when one
#                          ran without passing a test (naming it): every binary selected is
#                          meant to test something (so no doc tests, whose crate may have none).
tests_ran() {
  local log status=0
  log=$(mktemp)
  # (a list's left side: errexit does not end the script in it, whatever the caller set)
  { "$@" 2>&1 | tee "$log"; status=${PIPESTATUS[0]}; } || true
  # cargo writes "     Running <binary>" (to stderr), then the harness "test result: ok. N
  # passed; ..." (once per seed under Miri's -Zmiri-many-seeds)
  if [ "$status" = 0 ] && ! awk '
    /^ +Running / { binary = $0; sub(/^ +Running /, "", binary) }
    /^test result: / {
      results++
      if ($4 + 0 == 0) { print "no test passed in " (binary == "" ? "a test binary" : binary); empty = 1 }
    }
    END { if (!results) print "no test binary ran"; exit empty || !results }' "$log" >&2; then
    echo "no test ran: $*" >&2
    status=1
  fi
  rm -f "$log"
  return "$status"
}
