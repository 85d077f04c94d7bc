//! The wasmtime engine, the compiled guest component (cached on disk, mapped from there) and
//! the epoch ticker.

use super::WorkerPre;
use super::component_cache::ComponentCache;
use super::guest_state::GuestState;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};
use wasmtime::{Config, Engine};

/// The guest component this binary was built with.
pub const GUEST_WASM: &[u8] = include_bytes!(env!("LLORCH_GUEST_WASM"));

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The host type of the `wasi:http` resources, which this host never makes.
struct NoHttp;

/// Everything needed to start guests: shared by every instance this process makes.
pub struct Runtime {
    pub engine: Engine,
    /// WASI, for the component and for components made from it.
    wasi: Linker<GuestState>,
    /// Names this guest build and engine in the cache.
    build: String,
    cache: Option<ComponentCache>,
    /// The component, compiled (or mapped from the cache) when first asked for.
    component: Mutex<Option<WorkerPre<GuestState>>>,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker; components are compiled into `cache`, or
    /// mapped from there.
    pub fn new(cache: Option<ComponentCache>) -> Result<Arc<Self>> {
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
        let build = cache_key(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(Arc::new(Runtime { engine, wasi: linker, build, cache, component: Mutex::new(None) }))
    }

    /// The guest component, ready to instantiate.
    pub fn component(&self) -> Result<WorkerPre<GuestState>> {
        let mut component = self.component.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pre) = &*component {
            return Ok(pre.clone());
        }
        let pre = self.instantiable(self.compiled(None, "component", || Ok(GUEST_WASM.to_vec()))?)?;
        Ok(component.insert(pre).clone())
    }

    /// `component` with WASI linked, ready to instantiate.
    pub fn instantiable(&self, component: Component) -> Result<WorkerPre<GuestState>> {
        Ok(WorkerPre::new(self.linker(&component)?.instantiate_pre(&component)?)?)
    }

    /// The linker for `component`: WASI, and traps for the `wasi:http` interfaces that the
    /// component's own HTTP handler (for `wasmtime serve`) names. This host serves HTTP itself
    /// and never calls that handler, so the guest gets no HTTP.
    pub fn linker(&self, component: &Component) -> wasmtime::Result<Linker<GuestState>> {
        let mut linker = self.wasi.clone();
        let ty = component.component_type();
        let is_http = |name: &str| name.starts_with("wasi:http/");
        let exports = |item: ComponentItem| -> Vec<(String, ComponentItem)> {
            match item {
                ComponentItem::ComponentInstance(instance) => {
                    instance.exports(&self.engine).map(|(name, export)| (name.to_string(), export.ty)).collect()
                }
                _ => Vec::new(),
            }
        };
        // The wasi:io resources (streams, pollable, error) the HTTP types use are WASI's.
        let linked: Vec<ResourceType> = ty
            .imports(&self.engine)
            .filter(|(name, _)| !is_http(name))
            .flat_map(|(_, import)| exports(import.ty))
            .filter_map(|(_, export)| match export {
                ComponentItem::Resource(r) => Some(r),
                _ => None,
            })
            .collect();
        for (name, import) in ty.imports(&self.engine).filter(|(name, _)| is_http(name)) {
            let mut stub = linker.instance(name)?;
            for (item, export) in exports(import.ty) {
                match export {
                    ComponentItem::Resource(r) if !linked.contains(&r) => {
                        stub.resource(&item, ResourceType::host::<NoHttp>(), |_, _| Ok(()))?;
                    }
                    ComponentItem::ComponentFunc(_) => {
                        let what = format!("{name}#{item}");
                        stub.func_new(&item, move |_, _, _, _| {
                            wasmtime::bail!("{what}: this host gives the guest no HTTP")
                        })?;
                    }
                    _ => {}
                }
            }
        }
        Ok(linker)
    }

    /// The component cached under this build's key (with `-{entry}` for an entry of its own),
    /// mapped from its file; on a miss, `wasm()` compiled and stored there first (and, without
    /// a cache, kept in memory). `what` names it in the logs.
    pub fn compiled(
        &self,
        entry: Option<&str>,
        what: &str,
        wasm: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Component> {
        let key = entry.map_or_else(|| self.build.clone(), |entry| format!("{}-{entry}", self.build));
        compiled(&self.engine, self.cache.as_ref(), &key, what, wasm)
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

/// The component cached under `key`, mapped from its file; on a miss, `wasm()` compiled and
/// stored there first (and, without a cache, kept in memory). `what` names it in the logs.
fn compiled(
    engine: &Engine,
    cache: Option<&ComponentCache>,
    key: &str,
    what: &str,
    wasm: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Component> {
    if let Some(cache) = cache {
        match cache.checked_path(key) {
            // SAFETY: the file is in a directory only this user can write, owned by this user
            // and writable by nobody else, written by `precompile_component` below; wasmtime
            // still checks that it matches this engine.
            Ok(Some(path)) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::info!("loaded the compiled {what} from {}", path.display());
                    return Ok(component);
                }
                Err(e) => tracing::warn!("recompiling the {what}: the cached one is unusable: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("recompiling the {what}: {e:#}"),
        }
    }
    let wasm = wasm()?;
    let started = std::time::Instant::now();
    let compiled = engine
        .precompile_component(&wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling the {what}"))?;
    drop(wasm);
    let seconds = started.elapsed().as_secs_f64();
    match cache.map(|cache| cache.write(key, &compiled)) {
        Some(Ok(path)) => {
            tracing::info!("compiled the {what} in {seconds:.1} s, cached it at {}", path.display());
            drop(compiled);
            // SAFETY: written just now by `precompile_component`, in the private directory.
            return Ok(unsafe { Component::deserialize_file(engine, &path) }?);
        }
        Some(Err(e)) => tracing::warn!("compiled the {what} in {seconds:.1} s; not cached: {e:#}"),
        None => {
            tracing::warn!("compiled the {what} in {seconds:.1} s; not cached: no --cache-dir, XDG_CACHE_HOME or HOME")
        }
    }
    // SAFETY: the bytes were just produced by this engine.
    Ok(unsafe { Component::deserialize(engine, &compiled) }?)
}
