# Sourced by .ci/miri and .ci/fuzz, which run work side by side in background jobs.
#   stop_tree PID   sends TERM to PID's descendants, the deepest first, then to PID: the jobs
#                   of a script started with SIGINT ignored (as a script's jobs are) ignore
#                   Ctrl-C, and cargo's children outlive a TERM to cargo alone. Needs pgrep
#                   (procps).
stop_tree() {
  local child
  for child in $(pgrep -P "$1"); do stop_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
