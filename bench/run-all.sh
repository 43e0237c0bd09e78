#!/usr/bin/env bash
# Builds what the benchmarks need, then runs them in turn:
#   1. bench/latency.py          receipt -> run-finished latency vs bare `core execute`
#   2. bench/inbox_throughput.py async POST /inbox req/s under wrk: bare hyper,
#                                durable = false, durable = true
#   3. plugin_bench (example)    notification call cost (kept vs fresh instance),
#                                start-up with four plugins (cold vs warm cache)
#   4. bench/plugin_limits.py    /inbox req/s and latency beside spinning plugins vs none
#   5. bench/library.py          GET /api/library p50/p99 with 10,000 runs and 200 library files
#   6. bench/compaction_stall.py worst wait of a receipt while the journal is
#                                compacted under sustained load (~5 min; STALL=0 skips it)
#
# Usage: bench/run-all.sh            (from anywhere; ~15 min on 2 cores when
#                                     nothing is built yet, ~3 min after)
# Env:   LATENCY_RUNS (default 20), THROUGHPUT_ARGS (e.g. "--duration 10 --rounds 3"),
#        PLUGIN_BENCH_ARGS (e.g. "--calls 20000"), PLUGIN_LIMITS_ARGS (e.g. "--rounds 5"),
#        SKIP_BUILD=1 to reuse what is built.
#
# Needs: rustup with the wasm32-wasip2 target (added here if missing), node and
# npm (the service installs @openfn/core into target/bench-packages on first
# start), python3, and wrk: installed here with `apt-get install -y wrk`
# (after `apt-get update` if that fails) when missing and running as root;
# otherwise install it yourself first.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing wrk"
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "wrk is not installed: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    step "building: release host, first-party plugins, test plugins, bare-hyper, plugin_bench"
    cargo build --release --bin microservice
    (cd plugins && cargo build --release)
    (cd tests/plugins && cargo build --release)
    cargo build --release --manifest-path bench/bare-hyper/Cargo.toml
    cargo build --release -p microservice --example plugin_bench
fi

step "1/6 latency: python3 bench/latency.py --runs ${LATENCY_RUNS:-20}"
python3 bench/latency.py --runs "${LATENCY_RUNS:-20}"

step "2/6 inbox throughput: python3 bench/inbox_throughput.py ${THROUGHPUT_ARGS:-}"
# shellcheck disable=SC2086
python3 bench/inbox_throughput.py ${THROUGHPUT_ARGS:-}

step "3/6 plugins: target/release/examples/plugin_bench ${PLUGIN_BENCH_ARGS:-}"
# shellcheck disable=SC2086
target/release/examples/plugin_bench ${PLUGIN_BENCH_ARGS:-}

step "4/6 plugin limits: python3 bench/plugin_limits.py ${PLUGIN_LIMITS_ARGS:-}"
# shellcheck disable=SC2086
python3 bench/plugin_limits.py ${PLUGIN_LIMITS_ARGS:-}

step "5/6 library: python3 bench/library.py"
python3 bench/library.py

if [ "${STALL:-1}" != 0 ]; then
    step "6/6 compaction stall: python3 bench/compaction_stall.py"
    python3 bench/compaction_stall.py
fi
