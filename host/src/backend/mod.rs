//! The inference backend: a scheduler over slots. Each slot is a guest instance in its own
//! Store (its own memory cap and deadlines), driven by its own OS thread, running a batch of
//! jobs that advance together one step per guest call.
//!
//! Why threads and not async wasmtime: a generation is a loop of short, CPU-bound guest calls
//! (one step each). Running them on their own OS threads keeps the tokio runtime free, so
//! `/health` and the other routes answer at once while jobs run, and each slot checks cancel
//! flags and deadlines between calls. One thread per slot, because a component has no threads:
//! parallelism is one instance per core.

pub mod cancel;
pub mod component_cache;
pub mod guest;
pub mod guest_state;
pub mod health;
pub mod job;
pub mod memory_limit;
pub mod model_file;
pub mod runtime;
pub mod slot;
pub mod snapshot;

wasmtime::component::bindgen!({ path: "../wit", world: "worker" });

pub use exports::llorch::gpt2::checking;
pub use exports::llorch::gpt2::inference as wit;

use crate::metrics::Metrics;
use cancel::CancelRegistry;
use crossbeam_channel::{Receiver, Sender};
use guest::{Guest, GuestLimits};
use health::Health;
use job::Job;
use model_file::ModelFile;
use runtime::Runtime;
use slot::Slot;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use wit::ModelInfo;

/// Prompt tokens one step of a slot takes beside one token of each decoding job: a step of 64
/// prompt tokens takes about 0.7 s on GPT-2 124M, and each step is where a job can stop.
pub const PROMPT_BUDGET: u32 = 64;

/// How the backend is set up.
pub struct BackendConfig {
    /// The model file, loaded once into the snapshot every guest is made from.
    pub model: ModelFile,
    pub limits: GuestLimits,
    /// Guest instances, each with its own thread.
    pub slots: usize,
    /// Jobs one slot runs together.
    pub batch_size: usize,
    /// Replace a slot's guest by a fresh one from the snapshot after every job.
    pub fresh_per_job: bool,
    /// Prompt tokens one step of a slot takes, beside one token of each decoding job.
    pub prompt_budget: u32,
    /// Jobs that may wait when every slot is full.
    pub max_queue: usize,
    /// Longest one guest call may run before the guest counts as runaway.
    pub call_limit: Duration,
}

/// A request any slot answers between its steps.
enum Quick {
    Tokenize(String, oneshot::Sender<Result<Vec<u32>, BackendError>>),
    Detokenize(Vec<u32>, oneshot::Sender<Result<String, BackendError>>),
}

impl Quick {
    /// Answers with `error` instead.
    fn refuse(self, error: BackendError) {
        // A requester that went away does not need the answer.
        match self {
            Quick::Tokenize(_, reply) => drop(reply.send(Err(error))),
            Quick::Detokenize(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

/// Why the backend did not do what was asked.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The queue is full.
    Busy,
    /// The guest is being rebuilt, or the worker is stopping.
    Down(String),
    /// The guest refused the input.
    Refused(String),
}

/// What the slots share: the queues they take work from, and what they need to rebuild a guest.
pub struct Scheduler {
    jobs: Receiver<Job>,
    quick: Receiver<Quick>,
    /// Slots waiting for work: while one waits, busy slots leave queued jobs to it.
    idle: AtomicUsize,
    /// Slots that have not given up.
    live: AtomicUsize,
    /// Jobs queued or running.
    in_flight: Arc<AtomicUsize>,
    batch_size: usize,
    fresh_per_job: bool,
    prompt_budget: u32,
    call_limit: Duration,
    runtime: Arc<Runtime>,
    /// The component with the model loaded, which every guest is made from.
    snapshot: WorkerPre<guest_state::GuestState>,
    limits: GuestLimits,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    fail: watch::Sender<Option<String>>,
}

impl Scheduler {
    /// Lets go of a job that has sent its terminal event.
    fn release(&self, job: Job) {
        drop(job);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// A slot could not rebuild its guest and stops. When it was the last, every queued job
    /// fails and the server is told to exit.
    fn slot_gave_up(&self, reason: String) {
        if self.live.fetch_sub(1, Ordering::SeqCst) > 1 {
            return;
        }
        for job in self.jobs.try_iter() {
            self.metrics.requests_waiting.dec();
            job.fail(&reason);
            self.release(job);
        }
        let _ = self.fail.send(Some(reason));
    }
}

/// Handle to the slots, shared by the HTTP handlers.
pub struct Backend {
    jobs: Sender<Job>,
    /// Jobs queued or running, at most `capacity`.
    in_flight: Arc<AtomicUsize>,
    /// Jobs the slots run at once plus those that may wait.
    capacity: usize,
    quick: Sender<Quick>,
    pub health: Arc<Health>,
    pub cancels: Arc<CancelRegistry>,
    pub info: ModelInfo,
    /// Current size of each slot's linear memory.
    memory: Vec<Arc<AtomicU64>>,
    /// Becomes Some(reason) when no slot can run and the worker must exit.
    pub failed: watch::Receiver<Option<String>>,
    pub metrics: Arc<Metrics>,
}

impl Backend {
    /// Loads the model and snapshots the guest with it (or maps that snapshot from the cache),
    /// failing with a one-line reason when the model cannot be loaded; makes the first slot's
    /// guest and starts every slot's thread, where the other slots make theirs.
    pub fn start(runtime: Arc<Runtime>, config: BackendConfig) -> anyhow::Result<Self> {
        let memory: Vec<Arc<AtomicU64>> = (0..config.slots).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let cannot_load = |e| anyhow::anyhow!("cannot load the model: {e}");
        let snapshot = snapshot::snapshot(&runtime, &config.model, &config.limits).map_err(cannot_load)?;
        let guest =
            Guest::from_snapshot(&runtime, &snapshot, &config.limits, memory[0].clone()).map_err(cannot_load)?;
        let info = guest.info.clone();
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let (quick, quick_rx) = crossbeam_channel::unbounded();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Health::new(config.slots));
        let (fail, failed) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let scheduler = Arc::new(Scheduler {
            jobs: job_rx,
            quick: quick_rx,
            idle: AtomicUsize::new(0),
            live: AtomicUsize::new(config.slots),
            in_flight: in_flight.clone(),
            batch_size: config.batch_size,
            fresh_per_job: config.fresh_per_job,
            prompt_budget: config.prompt_budget,
            call_limit: config.call_limit,
            runtime,
            snapshot,
            limits: config.limits,
            health: health.clone(),
            metrics: metrics.clone(),
            fail,
        });
        let mut first = Some(guest);
        for (index, memory) in memory.iter().enumerate() {
            let slot = Slot::new(index, scheduler.clone(), first.take(), memory.clone());
            std::thread::Builder::new().name(format!("slot-{index}")).spawn(move || slot.run())?;
        }
        Ok(Backend {
            jobs,
            in_flight,
            capacity: config.slots * config.batch_size + config.max_queue,
            quick,
            health,
            cancels: Arc::new(CancelRegistry::default()),
            info,
            memory,
            failed,
            metrics,
        })
    }

    /// Bytes of linear memory all guests hold.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.iter().map(|m| m.load(Ordering::Relaxed)).sum()
    }

    /// Queues a job; refused when every slot is full and `max_queue` jobs wait already.
    pub fn submit(&self, job: Job) -> Result<(), BackendError> {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.capacity).then_some(n + 1))
            .map_err(|_| BackendError::Busy)?;
        self.metrics.requests_waiting.inc();
        self.jobs.send(job).map_err(|unsent| {
            self.metrics.requests_waiting.dec();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            // The client is told by the error status; the job's stream is never read.
            unsent.into_inner().ended.store(true, Ordering::SeqCst);
            BackendError::Down("the inference threads have stopped".into())
        })
    }

    /// Text to token ids, answered by any slot between its steps.
    pub async fn tokenize(&self, text: String) -> Result<Vec<u32>, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Quick::Tokenize(text, tx), rx).await
    }

    /// Token ids to text (the guest checks the ids).
    pub async fn detokenize(&self, tokens: Vec<u32>) -> Result<String, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Quick::Detokenize(tokens, tx), rx).await
    }

    async fn ask<T>(
        &self,
        request: Quick,
        reply: oneshot::Receiver<Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        self.health.is_healthy().map_err(BackendError::Down)?;
        self.quick.send(request).map_err(|_| BackendError::Down("the inference threads have stopped".into()))?;
        reply.await.unwrap_or_else(|_| Err(BackendError::Down("the guest failed while answering".into())))
    }
}
