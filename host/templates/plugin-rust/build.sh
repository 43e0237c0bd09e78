#!/bin/sh
# Builds {{name}}.wasm, the plugin, next to this script. One command:
#   ./build.sh
# Needs Rust 1.95 or newer (rustup); adds the wasm32-wasip2 target if missing.
# CARGO_TARGET_DIR is honoured (share one between plugins to build faster).
set -eu
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
target="${CARGO_TARGET_DIR:-target}"
cp "$target/wasm32-wasip2/release/{{crate}}.wasm" "{{name}}.wasm"
echo "built $(pwd)/{{name}}.wasm"
echo "install: copy it into the service's plugins folder (PLUGINS_DIR, ./project/plugins by default)"
echo "         and add the [plugins.{{name}}] table from README.md to project.toml"
