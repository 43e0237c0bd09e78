#!/usr/bin/env bash
# `make test-stress`: runs `make test` RUNS times in a row (default 3) while
# stress-ng keeps every core busy with STRESS_WORKERS CPU hogs (default twice
# the cores), the way a shared CI machine is loaded. Each run's log goes to
# STRESS_LOGS (default a temp dir); the summary gives each run's result, its
# wall time and the mean load average seen during it, then a closing
# "N passed, N failed" line. Exits non-zero when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
workers=${STRESS_WORKERS:-$(( $(nproc) * 2 ))}
logs=${STRESS_LOGS:-$(mktemp -d -t microservice-stress-XXXXXX)}
mkdir -p "$logs"

if ! command -v stress-ng >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  echo "installing Debian's stress-ng for the load"
  $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends stress-ng >/dev/null || {
    echo "stress-ng could not be installed"; exit 1; }
fi

# Build first, unloaded: the point is the tests' own waits, not compile time.
make setup >/dev/null
cargo test --workspace --no-run >"$logs/build.log" 2>&1 || { echo "build failed: $logs/build.log"; exit 1; }

stress-ng --cpu "$workers" --timeout 0 --quiet &
stress_pid=$!
sampler_pid=
cleanup() {
  kill "$stress_pid" 2>/dev/null
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT INT TERM
echo "stress-ng: $workers CPU workers on $(nproc) cores; logs in $logs"

passed=0
failed=0
summary=()
for i in $(seq 1 "$runs"); do
  loads="$logs/load-$i.txt"
  : >"$loads"
  ( while true; do cut -d' ' -f1 /proc/loadavg >>"$loads"; sleep 10; done ) &
  sampler_pid=$!
  start=$(date +%s)
  if make test >"$logs/run-$i.log" 2>&1; then
    result=passed; passed=$((passed + 1))
  else
    result=FAILED; failed=$((failed + 1))
  fi
  kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null; sampler_pid=
  secs=$(( $(date +%s) - start ))
  load=$(awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "?" }' "$loads")
  line="run $i: $result in ${secs} s, mean load average $load (log: $logs/run-$i.log)"
  echo "$line"
  summary+=("$line")
  if [ "$result" = FAILED ]; then
    grep -E '^(test .* FAILED|---- .* stdout ----|failures:)' "$logs/run-$i.log" | head -20
  fi
done

echo
printf '%s\n' "${summary[@]}"
echo "stress: $passed passed, $failed failed"
[ "$failed" = 0 ]
