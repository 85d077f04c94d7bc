#!/usr/bin/env bash
# Runs the checks (rustfmt, clippy) and every test: the guest's unit tests natively and as WebAssembly under wasmtime (where the
# SIMD128 kernels are checked against their scalar twins), then the host's unit tests and the
# black-box checkpoint tests against the real binary and component.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo fmt --check
cargo clippy --locked --workspace --all-targets -- -D warnings
CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+simd128" \
    cargo clippy --locked --release -p llorch-guest --target wasm32-wasip2 --target-dir target/guest --all-targets -- -D warnings

cargo test --locked -p llorch-guest

# The guest's tests as wasm32-wasip2 with SIMD128, run by the wasmtime CLI; the workspace is
# mapped at its own path so tests find the model files.
CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+simd128" \
CARGO_TARGET_WASM32_WASIP2_RUNNER="$LLORCH_WASMTIME run --dir $(pwd)" \
    cargo test --locked --release -p llorch-guest --target wasm32-wasip2 --target-dir target/guest

cargo test --locked -p llorch-api -p llorch-cpud -p llorch-bench
