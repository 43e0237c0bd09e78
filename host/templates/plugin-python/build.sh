#!/bin/sh
# Builds {{name}}.wasm, the plugin, next to this script. One command:
#   ./build.sh
# Needs python3 (3.10 or newer) with venv; installs componentize-py
# 0.25.1 (pinned) from PyPI into .venv/ in this folder the first time.
set -eu
cd "$(dirname "$0")"
COMPONENTIZE_PY_VERSION=0.25.1
if [ ! -x .venv/bin/componentize-py ] || ! .venv/bin/componentize-py --version | grep -q " $COMPONENTIZE_PY_VERSION\$"; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
.venv/bin/componentize-py -d wit -w {{world}} componentize -p . app -o {{name}}.wasm
# What the plugin needs (manifest.json), as a custom section of the component.
python3 add-manifest.py {{name}}.wasm manifest.json
echo "built $(pwd)/{{name}}.wasm"
echo "install: copy it into the service's plugins folder (PLUGINS_DIR, ./project/plugins by default)"
echo "         and add the [plugins.{{name}}] table from README.md to project.toml"
