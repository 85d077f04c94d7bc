//! llorch-guest: GPT-2 inference (GGUF loader, byte-level BPE, forward pass, KV cache, sampler)
//! as plain Rust, exported as a WebAssembly component when built for `wasm32-wasip2`.
//!
//! Natively the same code is a library, so it can be unit-tested and benchmarked without wasm.

pub mod batch;
pub mod cache;
pub mod cli;
pub mod error;
pub mod generation;
pub mod gguf;
pub mod layers;
pub mod model;
pub mod sampler;
pub mod stream;
pub mod tensor;
pub mod tokenizer;

// Left out of test builds, whose harness is the `wasi:cli/run` entry point there.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod component;
#[cfg(all(target_arch = "wasm32", not(test)))]
mod serve;
