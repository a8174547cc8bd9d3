# Sourced by .ci/loom and .ci/miri, which select tests by name: a module renamed would make
# the selection empty, and "0 passed" is a pass to cargo.
#   tests_ran COMMAND...   runs COMMAND (a cargo test), showing its output; fails when it
#                          fails, or when not one of its test binaries ran a test.
tests_ran() {
  local log status=0
  log=$(mktemp)
  # (a list's left side: errexit does not end the script in it, whatever the caller set)
  { "$@" 2>&1 | tee "$log"; status=${PIPESTATUS[0]}; } || true
  if [ "$status" = 0 ] && ! grep -Eq '^test result: ok\. [1-9][0-9]* passed' "$log"; then
    echo "no test ran: $*" >&2
    status=1
  fi
  rm -f "$log"
  return "$status"
}
