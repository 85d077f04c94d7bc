//! llorch-testkit: what the tests and the benchmark build models with, kept out of the worker.

pub mod gguf_writer;
pub mod synthetic;
