# Sourced by .ci/run and .ci/test: each step's heading with the time it starts, so a CI log
# shows where its minutes go (the budget is about 45 minutes on 2 cores), and a time limit
# for a long command (.ci/run's limits are several times what each takes today).
#   step TEXT...   prints "== TEXT [HH:MM:SS, +Ns since the last step]"
#   bounded SECONDS COMMAND...
#                  runs COMMAND under timeout(1): once it ran SECONDS, TERM to it and to what
#                  it started (at a terminal: to it alone), KILL 30 s later; then fails naming
#                  the step (a hang would otherwise run on into the CI job's limit, which names
#                  nothing)
step_last=${step_last:-$(date +%s)}
step() {
  local now
  now=$(date +%s)
  echo "== $* [$(date -u +%H:%M:%S), +$((now - step_last)) s since the last step]"
  step_last=$now
  step_name=$*
  export step_last
}
bounded() {
  local limit=$1 start=$SECONDS status=0 foreground=()
  shift
  # At a terminal, in the terminal's process group, so that Ctrl-C reaches the command (in its
  # own group, as timeout puts it, it ran on); a limit then stops the command alone.
  [ -t 0 ] && foreground=(--foreground)
  # (an empty array's "${foreground[@]}" is an unbound variable to set -u before bash 4.4)
  timeout ${foreground[@]+"${foreground[@]}"} -k 30 "$limit" "$@" || status=$?
  # 124: stopped by TERM; 137: by the KILL that followed. Either only once the limit passed:
  # before it, the command exited so by itself (or was killed otherwise)
  if { [ "$status" = 124 ] || [ "$status" = 137 ]; } && [ $((SECONDS - start)) -ge "$limit" ]; then
    echo "TIMEOUT: step \"${step_name:-}\" stopped after $limit s: $*" >&2
  fi
  return "$status"
}
