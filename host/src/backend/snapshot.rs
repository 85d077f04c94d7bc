//! The component snapshotted after it loaded the model (wasmtime's wizer): every instance made
//! from the snapshot starts with the model in memory, and all of them map its weights from one
//! copy-on-write image. Cached beside the compiled component, keyed by the model's SHA-256.

use super::component_cache::MODEL;
use super::guest::{CallError, GuestLimits, classify, hand_over, new_store};
use super::guest_state::GuestState;
use super::model_file::ModelFile;
use super::runtime::{GUEST_WASM, Runtime};
use super::{Worker, WorkerPre};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, Waker};
use wasmtime_wizer::{WasmtimeWizerComponent, Wizer};

/// The snapshot of `model_file` loaded in the guest, ready to instantiate: mapped from the
/// cache, or made, compiled and cached first. A model the guest refuses fails as it would load.
pub fn snapshot(
    runtime: &Runtime,
    model_file: &ModelFile,
    limits: &GuestLimits,
) -> Result<WorkerPre<GuestState>, CallError> {
    let host = |e: anyhow::Error| CallError::Host(format!("{e:#}"));
    let digest = model_file.digest().map_err(host)?;
    let quantized = if model_file.quantize_q8_0 { "-q8_0" } else { "" };
    let entry = format!("{}{}{quantized}", &MODEL[1..], &digest[..24]);
    // A refusal from `make` comes back through the cache unchanged, as the `CallError` it was.
    let component = runtime
        .compiled(Some(&entry), "snapshot", || Ok(make(runtime, model_file, limits)?))
        .map_err(|e| e.downcast::<CallError>().unwrap_or_else(host))?;
    runtime.instantiable(component).map_err(host)
}

/// Loads the model into an instance of the wizer-instrumented component, keeps it there with
/// `preload`, and snapshots the instance: a component whose memory image holds the model.
pub fn make(runtime: &Runtime, model_file: &ModelFile, limits: &GuestLimits) -> Result<Vec<u8>, CallError> {
    let host = |e: wasmtime::Error| CallError::Host(format!("{e:#}"));
    let wizer = Wizer::new();
    let (context, instrumented) = wizer.instrument_component(GUEST_WASM).map_err(host)?;
    let component = runtime
        .compiled(Some("wizer"), "instrumented component", || Ok(instrumented))
        .map_err(|e| CallError::Host(format!("{e:#}")))?;
    let mut store = new_store(runtime, limits, Arc::new(AtomicU64::new(0)));
    let instance =
        runtime.linker(&component).and_then(|l| l.instantiate(&mut store, &component)).map_err(|e| classify(&e))?;
    let worker = Worker::new(&mut store, &instance).map_err(|e| classify(&e))?;
    let model = hand_over(&mut store, &worker, model_file)?;
    worker.llorch_gpt2_inference().call_preload(&mut store, model).map_err(|e| classify(&e))?;
    // Wizer reads the memory back as one list: let it carry the whole (capped) memory.
    store.set_hostcall_fuel(limits.memory_bytes as usize);
    let started = std::time::Instant::now();
    let snapshot =
        block_on(wizer.snapshot_component(&context, &mut WasmtimeWizerComponent { store: &mut store, instance }))
            .map_err(host)?;
    tracing::info!(
        "snapshotted the loaded model in {:.1} s ({} bytes)",
        started.elapsed().as_secs_f64(),
        snapshot.len()
    );
    Ok(snapshot)
}

/// Runs `future` to completion on this thread. The snapshot's calls into the instance never
/// wait on anything (no async host functions), so the first poll normally finishes it.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}
