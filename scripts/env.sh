# Sourced by the scripts: where the pinned wasmtime CLI lives.
export LLORCH_WASMTIME="${LLORCH_WASMTIME:-$(pwd)/.tools/wasmtime-48.0.2/wasmtime_cli/wasmtime}"
