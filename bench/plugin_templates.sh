#!/usr/bin/env bash
# The notification template of each language, side by side in one run:
# generated with `microservice plugin new notification bench-<lang> --lang
# <lang>` (rust, python, js), built with its own ./build.sh as generated (the
# Python and JavaScript ones install componentize-py and componentize-js into
# their folder), then measured by plugin_bench: cold compile, warm load (from
# the compile cache), and the median of a notification call on the instance
# the service keeps and on a fresh instance per call (how every call was made
# before), each granted a writable /out where the template appends its line.
#
# Usage: bench/plugin_templates.sh [plugin_bench options]
#        e.g. bench/plugin_templates.sh --calls 2000 --startup-rounds 0
# Env:   WORK (where the templates are generated; default
#        $CARGO_TARGET_DIR/plugin-templates, emptied first), SKIP_BUILD=1 to
#        reuse the release build of the host and plugin_bench.
#
# Needs: rustup with the wasm32-wasip2 target, python3 with venv, node and
# npm (as the templates do).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --bin microservice --example plugin_bench
fi
work="${WORK:-$target/plugin-templates}"
rm -rf "$work"
mkdir -p "$work"
wasms=()
for lang in rust python js; do
    name="bench-$lang"
    (cd "$work" && "$target/release/microservice" plugin new notification "$name" --lang "$lang" >/dev/null)
    printf '=== building %s (%s)\n' "$name" "$lang"
    (cd "$work/$name" && CARGO_TARGET_DIR="$target/plugin-templates-wasm" ./build.sh >/dev/null)
    wasms+=("$work/$name/$name.wasm")
done
"$target/release/examples/plugin_bench" "${wasms[@]}" --grant-out "$@"
