#!/usr/bin/env bash
# Runs the canaryproxy benchmarks A/B alternated: ROUNDS rounds (default 9), each running the
# "gate" and the "fnv" variant of BENCHMARK (default ProxyHTTP) once, in alternating order,
# from one test binary; prints each round's cpu-ns/req and their ratio, then the median of the
# ratios. Needs the library's pkg-config files on PKG_CONFIG_PATH, as test.sh sets them up.
# ProxyHTTP's cpu-ns/req counts the client and upstreams too (one process); ProxyInMemory's
# is the proxy-only figure. This is the in-process variant: ../bench.sh measures the proxy in a
# process of its own under wrk (BENCHMARKS.md, "Go reverse-proxy middleware").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rounds=${ROUNDS:-9}
bench=${BENCHMARK:-ProxyHTTP}
benchtime=${BENCHTIME:-2s}
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
CGO_ENABLED=1 go test -c -o "$bin" .
cpu() { "$bin" -test.run '^$' -test.bench "^Benchmark$bench/$1\$" -test.benchtime "$benchtime" |
  awk '{ for (i = 2; i <= NF; i++) if ($i == "cpu-ns/req") print $(i - 1) }'; }
ratios=()
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then gate=$(cpu gate); fnv=$(cpu fnv); else fnv=$(cpu fnv); gate=$(cpu gate); fi
  ratio=$(awk -v a="$gate" -v b="$fnv" 'BEGIN { printf "%.4f", a / b }')
  echo "round $r: gate $gate cpu-ns/req, fnv $fnv cpu-ns/req, ratio $ratio"
  ratios+=("$ratio")
done
printf '%s\n' "${ratios[@]}" | sort -n |
  awk -v b="$bench" '{ r[NR] = $1 } END { printf "%s: median gate/fnv cpu per request %.4f over %d rounds (min %.4f, max %.4f)\n", b, (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2, NR, r[1], r[NR] }'
