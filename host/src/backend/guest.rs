//! One guest instance with a model loaded: a Store with limits and typed calls into the
//! component, each under a deadline.

use super::checking::Tensor;
use super::guest_state::{CallBudget, GuestState};
use super::memory_limit::MemoryLimiter;
use super::model_file::ModelFile;
use super::runtime::{EPOCH_TICK, Runtime};
use super::wit::{Error as WitError, GenerateOptions, LoadOptions, ModelInfo, SequenceStep};
use super::{Worker, WorkerPre};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

/// Why a guest call did not return a value.
#[derive(Debug)]
pub enum CallError {
    /// The guest refused the input with an error value; the instance is fine.
    Refused(WitError),
    /// The host could not hand the model over (the file is unreadable or changed).
    Host(String),
    /// The guest trapped (`timed_out` when a call ran past its time limit: a runaway); the
    /// instance is unusable.
    Trapped { timed_out: bool, message: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(e) => write!(f, "{}", describe(e)),
            CallError::Host(message) => write!(f, "{message}"),
            CallError::Trapped { timed_out: true, .. } => {
                write!(f, "the guest ran away: a call ran past its time limit")
            }
            CallError::Trapped { message, .. } => write!(f, "the guest trapped: {message}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A guest error value as one line.
pub fn describe(e: &WitError) -> String {
    match e {
        WitError::InvalidModel(m) => format!("invalid model: {m}"),
        WitError::InvalidRequest(m) => format!("invalid request: {m}"),
        WitError::ContextOverflow(m) => format!("context overflow: {m}"),
        WitError::Io(m) => format!("cannot read model: {m}"),
    }
}

/// Limits applied to every guest.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Longest a model load may take.
    pub load_timeout: Duration,
}

/// A live guest holding a loaded model.
pub struct Guest {
    store: Store<GuestState>,
    worker: Worker,
    model: ResourceAny,
    pub info: ModelInfo,
}

impl Guest {
    /// Instantiates the component and hands it the model file piece by piece (its stem names
    /// the model when the file does not). The guest gets no filesystem. `memory` receives the
    /// guest's memory size as it grows.
    pub fn load(
        runtime: &Runtime,
        model_file: &ModelFile,
        limits: &GuestLimits,
        memory: Arc<AtomicU64>,
    ) -> Result<Self, CallError> {
        let pre = runtime.component().map_err(|e| CallError::Host(format!("{e:#}")))?;
        let mut store = new_store(runtime, limits, memory);
        let worker = pre.instantiate(&mut store).map_err(|e| classify(&e))?;
        let model = hand_over(&mut store, &worker, model_file)?;
        Self::ready(store, worker, model)
    }

    /// Instantiates a snapshot made by `snapshot::make`: the model is already in its memory.
    pub fn from_snapshot(
        runtime: &Runtime,
        snapshot: &WorkerPre<GuestState>,
        limits: &GuestLimits,
        memory: Arc<AtomicU64>,
    ) -> Result<Self, CallError> {
        let mut store = new_store(runtime, limits, memory);
        let worker = snapshot.instantiate(&mut store).map_err(|e| classify(&e))?;
        let model = worker.llorch_gpt2_inference().call_preloaded(&mut store).map_err(|e| classify(&e))?;
        let model = model.ok_or_else(|| CallError::Host("the snapshot has no preloaded model".into()))?;
        Self::ready(store, worker, model)
    }

    fn ready(mut store: Store<GuestState>, worker: Worker, model: ResourceAny) -> Result<Self, CallError> {
        let info = worker.llorch_gpt2_inference().model().call_info(&mut store, model).map_err(|e| classify(&e))?;
        Ok(Guest { store, worker, model, info })
    }

    /// Runs one guest call that must finish by `deadline`.
    fn call<T>(
        &mut self,
        deadline: Instant,
        f: impl FnOnce(&mut Store<GuestState>, &Worker, ResourceAny) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        set_deadline(&mut self.store, deadline);
        f(&mut self.store, &self.worker, self.model).map_err(|e| classify(&e))
    }

    /// Text to token ids.
    pub fn tokenize(&mut self, text: &str, deadline: Instant) -> Result<Vec<u32>, CallError> {
        self.call(deadline, |s, w, m| w.llorch_gpt2_inference().model().call_tokenize(s, m, text))
    }

    /// Token ids to text.
    pub fn detokenize(&mut self, tokens: &[u32], deadline: Instant) -> Result<String, CallError> {
        self.call(deadline, |s, w, m| w.llorch_gpt2_inference().model().call_detokenize(s, m, tokens))?
            .map_err(CallError::Refused)
    }

    /// Logits `[T, V]` at every position.
    pub fn logits(&mut self, tokens: &[u32], deadline: Instant) -> Result<Vec<f32>, CallError> {
        self.call(deadline, |s, w, m| w.llorch_gpt2_checking().call_logits(s, m, tokens))?.map_err(CallError::Refused)
    }

    /// Block-0 activations and logits.
    pub fn checkpoints(&mut self, tokens: &[u32], deadline: Instant) -> Result<Vec<Tensor>, CallError> {
        self.call(deadline, |s, w, m| w.llorch_gpt2_checking().call_checkpoints(s, m, tokens))?
            .map_err(CallError::Refused)
    }

    /// An empty batch whose steps take at most `prompt_budget` prompt tokens.
    pub fn batch(&mut self, prompt_budget: u32, deadline: Instant) -> Result<ResourceAny, CallError> {
        self.call(deadline, |s, w, m| w.llorch_gpt2_inference().model().call_batch(s, m, prompt_budget))
    }

    /// Frees `batch` and every sequence in it.
    pub fn drop_batch(&mut self, batch: ResourceAny, deadline: Instant) -> Result<(), CallError> {
        self.call(deadline, |s, _, _| batch.resource_drop(s))
    }

    /// Admits a generation to `batch`; returns its sequence id.
    pub fn add(
        &mut self,
        batch: ResourceAny,
        prompt: &[u32],
        options: &GenerateOptions,
        deadline: Instant,
    ) -> Result<u32, CallError> {
        self.call(deadline, |s, w, _| w.llorch_gpt2_inference().batch().call_add(s, batch, prompt, options))?
            .map_err(CallError::Refused)
    }

    /// Removes sequence `id` from `batch`.
    pub fn remove(&mut self, batch: ResourceAny, id: u32, deadline: Instant) -> Result<(), CallError> {
        self.call(deadline, |s, w, _| w.llorch_gpt2_inference().batch().call_remove(s, batch, id)).map(drop)
    }

    /// One step of every sequence in `batch`.
    pub fn step(&mut self, batch: ResourceAny, deadline: Instant) -> Result<Vec<SequenceStep>, CallError> {
        self.call(deadline, |s, w, _| w.llorch_gpt2_inference().batch().call_step(s, batch))
    }
}

/// A Store with the memory cap and the load deadline, ready to instantiate in.
pub fn new_store(runtime: &Runtime, limits: &GuestLimits, memory: Arc<AtomicU64>) -> Store<GuestState> {
    let state = GuestState {
        wasi: WasiCtx::builder().inherit_stderr().build(),
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(limits.memory_bytes as usize, memory),
        budget: CallBudget::default(),
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limiter);
    // At the wall-clock deadline the call has used at most its budget of CPU time, often less
    // when other threads share the cores: it goes on until the CPU time is spent too, so a
    // loaded machine does not make a healthy call a runaway.
    store.epoch_deadline_callback(|store| {
        let CallBudget { started, limit } = store.data().budget;
        let left = limit.saturating_sub(thread_cpu_time().saturating_sub(started));
        if left.is_zero() { Err(Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Continue(ticks(left))) }
    });
    set_deadline(&mut store, Instant::now() + limits.load_timeout);
    store
}

/// Hands `model_file` to a fresh instance piece by piece and parses it (its stem names the
/// model when the file does not); returns the model resource.
pub fn hand_over(
    store: &mut Store<GuestState>,
    worker: &Worker,
    model_file: &ModelFile,
) -> Result<ResourceAny, CallError> {
    let files = worker.llorch_gpt2_inference().model_file();
    let file = files.call_create(&mut *store, model_file.len()).map_err(|e| classify(&e))?;
    let file = file.map_err(CallError::Refused)?;
    model_file
        .read_pieces(|offset, piece| {
            let written = files.call_write(&mut *store, file, offset, piece).map_err(|e| classify(&e))?;
            Ok(written.map_err(CallError::Refused)?)
        })
        .map_err(|e| e.downcast::<CallError>().unwrap_or_else(|e| CallError::Host(format!("{e:#}"))))?;
    worker
        .llorch_gpt2_inference()
        .model()
        .call_from_file(&mut *store, &model_file.stem, file, LoadOptions { quantize_q8_0: model_file.quantize_q8_0 })
        .map_err(|e| classify(&e))?
        .map_err(CallError::Refused)
}

/// Gives the next call until `deadline` of this thread's CPU time; the store traps once the
/// call has used it up.
fn set_deadline(store: &mut Store<GuestState>, deadline: Instant) {
    let limit = deadline.saturating_duration_since(Instant::now());
    store.data_mut().budget = CallBudget { started: thread_cpu_time(), limit };
    store.set_epoch_deadline(ticks(limit));
}

/// Epoch ticks that last at least `time`.
fn ticks(time: Duration) -> u64 {
    (time.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1
}

/// CPU time used by the calling thread, which runs the guest's calls.
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `time` is a valid timespec for the call to write.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(status, 0, "this thread's CPU clock is readable");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// A wasmtime error from a call: always a trap or host failure, after which the instance is
/// not used again.
pub fn classify(e: &wasmtime::Error) -> CallError {
    let timed_out = e.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
    CallError::Trapped { timed_out, message: format!("{e:#}") }
}
