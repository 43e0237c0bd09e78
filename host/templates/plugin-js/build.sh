#!/bin/sh
# Builds {{name}}.wasm, the plugin, next to this script. One command:
#   ./build.sh
# Needs node (18 or newer) and npm; installs componentize-js 0.23.0
# (pinned in package.json) into node_modules/ in this folder the first time.
set -eu
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund
fi
# The WASI interfaces the world imports, from the WIT that ships with the
# pinned toolchain (the host provides WASI 0.2; any 0.2.x links).
wasi=node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
for package in {{wasi}}; do
    if [ ! -f "$wasi/wasi-$package/package.wit" ]; then
        echo "no WIT for wasi:$package in $wasi: reinstall with npm ci" >&2
        exit 1
    fi
    mkdir -p "wit/deps/wasi-$package"
    cp "$wasi/wasi-$package/package.wit" "wit/deps/wasi-$package/package.wit"
done
# -d http fetch-event: without them the component would import wasi:http,
# which the host refuses unless the table lists allowed_hosts.
node_modules/.bin/componentize-js app.js --wit wit --world-name plugin -d http fetch-event -o {{name}}.wasm
# What the plugin needs (manifest.json), as a custom section of the component.
node add-manifest.cjs {{name}}.wasm manifest.json
echo "built $(pwd)/{{name}}.wasm"
echo "install: copy it into the service's plugins folder (PLUGINS_DIR, ./project/plugins by default)"
echo "         and add the [plugins.{{name}}] table from README.md to project.toml"
