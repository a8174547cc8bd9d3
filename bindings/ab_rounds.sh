# Sourced by bindings/go/bench.sh and bindings/nginx/bench.sh: the alternated A/B rounds both
# benchmarks run, and the reading of a process's CPU time. The caller defines `run <A|B>`,
# which loads one variant and prints "<requests/s> <CPU microseconds per request>" (wrk_figures
# of its wrk run).

# cpu_ns <pid>...: the CPU time the processes have used so far, in nanoseconds, summed: each
# process's CPU-time clock (clock_gettime of the clock clock_getcpuclockid names: every
# thread, those that exited too, to the nanosecond; /proc/<pid>/stat's utime + stime are the
# same time in 10 ms ticks, about +-1 % of a one-second run)
cpu_ns() {
  python3 -c '
import sys, time
# The kernel numbers a process CPU clock ~pid << 3 | 2 (CPUCLOCK_SCHED), as clock_getcpuclockid.
print(sum(time.clock_gettime_ns(~int(pid) << 3 | 2) for pid in sys.argv[1:]))' "$@"
}

# wrk_figures <variant> <wrk output> <CPU ns>: "<requests/s> <CPU microseconds per request>"
# of one wrk run; exits (the caller's `run`, and with it the benchmark) when wrk saw non-2xx
# answers or socket errors, which would otherwise count as throughput (a canary answering a
# fast 500), or when its output has no figures
wrk_figures() {
  if grep -q -e 'Non-2xx' -e 'Socket errors' "$2" || ! grep -q 'Requests/sec' "$2"; then
    echo "variant $1: wrk saw errors:" >&2
    cat "$2" >&2
    exit 1
  fi
  awk -v ns="$3" '/requests in/ {req = $1} /Requests\/sec/ {rps = $2}
    END {printf "%.0f %.2f\n", rps, ns / 1e3 / req}' "$2"
}

# ab_rounds <rounds>: runs A then B, or B then A (alternating by round), prints a row per
# round, and leaves each round's "<throughput B/A> <CPU per request B/A>" in ratios[]
ab_rounds() {
  local i order a b a_rps a_cpu b_rps b_cpu t c
  ratios=()
  printf '%-6s %-5s %9s %9s %12s %12s %9s %9s\n' round order "A req/s" "B req/s" "A cpu us/req" "B cpu us/req" "tput B/A" "cpu B/A"
  for i in $(seq "$1"); do
    if [ $((i % 2)) -eq 1 ]; then
      order="A B"
      a=$(run A)
      b=$(run B)
    else
      order="B A"
      b=$(run B)
      a=$(run A)
    fi
    read -r a_rps a_cpu <<<"$a"
    read -r b_rps b_cpu <<<"$b"
    t=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN {printf "%.3f", b / a}')
    c=$(awk -v a="$a_cpu" -v b="$b_cpu" 'BEGIN {printf "%.3f", b / a}')
    printf '%-6s %-5s %9s %9s %12s %12s %9s %9s\n' "$i" "$order" "$a_rps" "$b_rps" "$a_cpu" "$b_cpu" "$t" "$c"
    ratios+=("$t $c")
  done
}
