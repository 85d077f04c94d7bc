//! The wasmtime engine, the compiled guest component (cached on disk) and the epoch ticker.

use super::component_cache::ComponentCache;
use super::guest_state::GuestState;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// The guest component this binary was built with.
pub const GUEST_WASM: &[u8] = include_bytes!(env!("LLORCH_GUEST_WASM"));

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Everything needed to start guests: shared by every instance this process makes.
pub struct Runtime {
    pub engine: Engine,
    pub pre: super::WorkerPre<GuestState>,
}

impl Runtime {
    /// Builds the engine, loads the compiled component from `cache` (compiling and storing it
    /// on a miss) and starts the epoch ticker.
    pub fn new(cache: Option<&ComponentCache>) -> Result<Arc<Self>> {
        let mut config = Config::new();
        // Every guest call does bounded work (a token or a chunk of the prompt), yet a guest that
        // runs away must still be stopped: epoch checks on loop back-edges make the deadline
        // set before each call trap it.
        config.epoch_interruption(true);
        // Component-model async is not used; without it each call costs a third.
        config.concurrency_support(false);
        // The guest uses plain SIMD128 only; relaxed SIMD would make results machine-dependent.
        config.wasm_relaxed_simd(false);
        let engine = Engine::new(&config)?;
        let component = load_or_compile(&engine, cache)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = super::WorkerPre::new(linker.instantiate_pre(&component)?)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(Arc::new(Runtime { engine, pre }))
    }
}

/// The cache key of this guest build and engine: a hash of the component's bytes and of the
/// engine's compatibility settings, so a new build never picks up a stale artifact.
fn cache_key(engine: &Engine) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let mut hash = Sha256::new();
    hash.update(GUEST_WASM);
    hash.update(engine_hash.finish().to_le_bytes());
    hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Loads the compiled component from the cache, or compiles it and stores it there.
fn load_or_compile(engine: &Engine, cache: Option<&ComponentCache>) -> Result<Component> {
    let key = cache_key(engine);
    if let Some(cache) = cache {
        match cache.read(&key) {
            // SAFETY: the bytes come from a file in a directory only this user can write, owned
            // by this user and writable by nobody else, written by `precompile_component`
            // below; wasmtime still checks that they match this engine.
            Ok(Some(bytes)) => match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => {
                    let path = cache.path(&key);
                    tracing::info!("loaded the compiled component from {}", path.display());
                    return Ok(component);
                }
                Err(e) => tracing::warn!("recompiling: the cached component is unusable: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("recompiling: {e:#}"),
        }
    }
    let started = std::time::Instant::now();
    let compiled = engine
        .precompile_component(GUEST_WASM)
        .map_err(anyhow::Error::from)
        .context("compiling the guest component")?;
    let seconds = started.elapsed().as_secs_f64();
    match cache.map(|cache| cache.write(&key, &compiled)) {
        Some(Ok(path)) => tracing::info!("compiled the component in {seconds:.1} s, cached it at {}", path.display()),
        Some(Err(e)) => tracing::warn!("compiled the component in {seconds:.1} s; not cached: {e:#}"),
        None => {
            tracing::warn!(
                "compiled the component in {seconds:.1} s; not cached: no --cache-dir, XDG_CACHE_HOME or HOME"
            )
        }
    }
    // SAFETY: the bytes were just produced by this engine.
    Ok(unsafe { Component::deserialize(engine, &compiled) }?)
}
