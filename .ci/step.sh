# Sourced by .ci/run and .ci/test: each step's heading with the time it starts, so a CI log
# shows where its minutes go (the budget is about 45 minutes on 2 cores).
#   step TEXT...   prints "== TEXT [HH:MM:SS, +Ns since the last step]"
step_last=${step_last:-$(date +%s)}
step() {
  local now
  now=$(date +%s)
  echo "== $* [$(date -u +%H:%M:%S), +$((now - step_last)) s since the last step]"
  step_last=$now
  export step_last
}
