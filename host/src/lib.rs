//! llorch-cpud: a GPT-2 CPU inference worker for the llama-orch orchestrator. The model runs
//! inside a WebAssembly component (`guest/`) embedded with wasmtime; this crate is the native
//! host: CLI, wasmtime embedding, HTTP API with SSE streaming, and the ready callback.

pub mod backend;
pub mod callback;
pub mod cli;
pub mod http;
pub mod log;
pub mod metrics;
pub mod pack;
pub mod server;
