//! Guest memory accounting: caps how far a guest's linear memory may grow and reports its size
//! (the worker's `memory_bytes`; a CPU worker uses no VRAM, so `vram_bytes` is always 0).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::ResourceLimiter;

/// Most table elements a guest may have; the component needs a few hundred.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A `ResourceLimiter` that refuses growth past `cap` bytes and records the current size.
pub struct MemoryLimiter {
    cap: usize,
    current: Arc<AtomicU64>,
}

impl MemoryLimiter {
    /// A limiter for a guest allowed `cap` bytes of linear memory, reporting into `current`.
    pub fn new(cap: usize, current: Arc<AtomicU64>) -> Self {
        current.store(0, Ordering::Relaxed);
        MemoryLimiter { cap, current }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            return Ok(false);
        }
        self.current.store(desired as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The default memory cap for a model file of `file_bytes`: room to decode F16/Q8_0 weights
/// to f32 (up to four times the file), the KV caches and the tokenizer, within wasm32's 4 GiB.
pub fn default_memory_cap(file_bytes: u64) -> u64 {
    const SLACK: u64 = 512 << 20;
    file_bytes.saturating_mul(5).saturating_add(SLACK).min(4 << 30)
}
