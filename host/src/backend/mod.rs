//! The inference backend: the guest component under wasmtime, driven by one dedicated thread.
//!
//! Why a thread and not async wasmtime: a generation is a loop of short, CPU-bound guest calls
//! (one token or one prompt chunk each). Running them on their own OS thread keeps the tokio
//! runtime free, so `/health` and the other routes answer at once while a job runs, and the
//! thread checks cancel flags and deadlines between calls. One thread, because this worker is
//! one inference slot: two would fight for the same cores.

pub mod cancel;
pub mod component_cache;
pub mod execute;
pub mod guest;
pub mod health;
pub mod memory_limit;
pub mod model_file;
pub mod runtime;

wasmtime::component::bindgen!({ path: "../wit", world: "worker" });

pub use exports::llorch::gpt2::inference as wit;

use crate::metrics::Metrics;
use cancel::CancelRegistry;
use crossbeam_channel::{Receiver, Sender};
use execute::Job;
use guest::{CallError, Guest, GuestLimits};
use health::{Health, ThreadAlive};
use model_file::ModelFile;
use runtime::Runtime;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use wit::ModelInfo;

/// Attempts at rebuilding a failed guest before the worker gives up.
const REBUILD_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled before each further one.
const REBUILD_BACKOFF: Duration = Duration::from_millis(500);

/// How the backend is set up.
pub struct BackendConfig {
    /// The model file, held open since start.
    pub model: ModelFile,
    pub limits: GuestLimits,
    /// Jobs that may wait behind the running one.
    pub max_queue: usize,
    /// Longest one guest call may run before the guest counts as runaway.
    pub call_limit: Duration,
}

/// A request answered between generation steps.
enum Quick {
    Tokenize(String, oneshot::Sender<Result<Vec<u32>, BackendError>>),
    Detokenize(Vec<u32>, oneshot::Sender<Result<String, BackendError>>),
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

/// Handle to the inference thread, shared by the HTTP handlers.
pub struct Backend {
    jobs: Sender<Job>,
    /// Jobs queued or running, at most `max_queue + 1`.
    in_flight: Arc<AtomicUsize>,
    max_queue: usize,
    quick: Sender<Quick>,
    pub health: Arc<Health>,
    pub cancels: Arc<CancelRegistry>,
    pub info: ModelInfo,
    /// Current size of the guest's linear memory.
    pub memory: Arc<AtomicU64>,
    /// Becomes Some(reason) when the guest cannot be rebuilt and the worker must exit.
    pub failed: watch::Receiver<Option<String>>,
    pub metrics: Arc<Metrics>,
}

impl Backend {
    /// Loads the model into a guest made from `runtime` and starts the inference thread. Fails
    /// with a one-line reason when the model cannot be loaded.
    pub fn start(runtime: Arc<Runtime>, config: BackendConfig) -> anyhow::Result<Self> {
        let memory = Arc::new(AtomicU64::new(0));
        let guest = Guest::load(&runtime, &config.model, &config.limits, memory.clone())
            .map_err(|e| anyhow::anyhow!("cannot load the model: {e}"))?;
        let info = guest.info.clone();
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_queue = config.max_queue;
        let (quick, quick_rx) = crossbeam_channel::unbounded();
        let health = Arc::new(Health::default());
        let (fail, failed) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let thread = InferenceThread {
            metrics: metrics.clone(),
            runtime,
            config,
            guest: Some(guest),
            health: health.clone(),
            memory: memory.clone(),
            in_flight: in_flight.clone(),
            fail,
        };
        std::thread::Builder::new().name("inference".into()).spawn(move || thread.run(job_rx, quick_rx))?;
        Ok(Backend {
            jobs,
            in_flight,
            max_queue,
            quick,
            health,
            cancels: Arc::new(CancelRegistry::default()),
            info,
            memory,
            failed,
            metrics,
        })
    }

    /// Queues a job; refused when one job runs and `max_queue` wait already.
    pub fn submit(&self, job: Job) -> Result<(), BackendError> {
        let limit = self.max_queue + 1;
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .map_err(|_| BackendError::Busy)?;
        self.metrics.requests_waiting.inc();
        self.jobs.send(job).map_err(|unsent| {
            self.metrics.requests_waiting.dec();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            // The client is told by the error status; the job's stream is never read.
            unsent.into_inner().ended.store(true, Ordering::SeqCst);
            BackendError::Down("the inference thread has stopped".into())
        })
    }

    /// Text to token ids, answered between generation steps.
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
        self.quick.send(request).map_err(|_| BackendError::Down("the inference thread has stopped".into()))?;
        reply.await.unwrap_or_else(|_| Err(BackendError::Down("the guest failed while answering".into())))
    }
}

/// The state owned by the inference thread.
struct InferenceThread {
    runtime: Arc<Runtime>,
    config: BackendConfig,
    /// None while a failed guest is being replaced.
    guest: Option<Guest>,
    health: Arc<Health>,
    memory: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    fail: watch::Sender<Option<String>>,
    metrics: Arc<Metrics>,
}

impl InferenceThread {
    fn run(mut self, jobs: Receiver<Job>, quick: Receiver<Quick>) {
        let health = self.health.clone();
        let _alive = ThreadAlive(&health);
        while self.guest.is_some() {
            crossbeam_channel::select! {
                recv(jobs) -> job => match job {
                    Ok(job) => self.execute(job, &quick),
                    Err(_) => return,
                },
                recv(quick) -> request => match request {
                    Ok(request) => self.answer(request),
                    Err(_) => return,
                },
            }
        }
        // The guest could not be rebuilt: end every queued job, then tell the server to exit.
        let reason = self.health.is_healthy().err().unwrap_or_default();
        for job in jobs.try_iter() {
            self.metrics.requests_waiting.dec();
            job.fail(&reason);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let _ = self.fail.send(Some(reason));
    }

    fn execute(&mut self, job: Job, quick: &Receiver<Quick>) {
        let guest = self.guest.as_mut().expect("jobs run only while a guest exists");
        let running = Running::start(self.metrics.clone());
        let outcome = execute::run(guest, &job, self.config.call_limit, |guest| {
            while let Ok(request) = quick.try_recv() {
                // A trap here poisons the instance, so the job's next guest call fails too and
                // the rebuild happens through the job's outcome.
                let _ = answer_with(guest, request, self.config.call_limit);
            }
        });
        if let Err(execute::Trapped(error)) = outcome {
            self.discard_guest(&error);
            job.fail(&format!("{error}; the guest is being rebuilt"));
            drop(job);
            self.rebuild();
        }
        drop(running);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn answer(&mut self, request: Quick) {
        let guest = self.guest.as_mut().expect("requests are answered only while a guest exists");
        if let Err(error) = answer_with(guest, request, self.config.call_limit) {
            self.discard_guest(&error);
            self.rebuild();
        }
    }

    /// Drops a trapped guest and marks the worker unhealthy until it is rebuilt.
    fn discard_guest(&mut self, error: &CallError) {
        self.metrics.guest_rebuilds.inc();
        self.health.set_unavailable(format!("rebuilding the guest after a failure: {error}"));
        self.guest = None;
        tracing::error!("guest failed, rebuilding it: {error}");
    }

    /// Makes a fresh guest from the bytes verified at start, trying a few times with backoff.
    /// Leaves `guest` None when every attempt failed.
    fn rebuild(&mut self) {
        let mut delay = REBUILD_BACKOFF;
        for attempt in 1..=REBUILD_ATTEMPTS {
            match Guest::load(&self.runtime, &self.config.model, &self.config.limits, self.memory.clone()) {
                Ok(guest) => {
                    self.guest = Some(guest);
                    self.health.set_ready();
                    tracing::info!("guest rebuilt");
                    return;
                }
                Err(e) if attempt < REBUILD_ATTEMPTS => {
                    tracing::error!("rebuilding the guest failed (attempt {attempt} of {REBUILD_ATTEMPTS}): {e}");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    let reason = format!("the guest could not be rebuilt after {REBUILD_ATTEMPTS} attempts: {e}");
                    tracing::error!("{reason}");
                    self.health.set_unavailable(reason);
                }
            }
        }
    }
}

/// A job taken from the queue into the slot, for the gauges, until dropped.
struct Running(Arc<Metrics>);

impl Running {
    fn start(metrics: Arc<Metrics>) -> Self {
        metrics.requests_waiting.dec();
        metrics.requests_running.inc();
        metrics.slots_busy.inc();
        Running(metrics)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.requests_running.dec();
        self.0.slots_busy.dec();
    }
}

/// Answers one quick request; `Err` when the guest trapped.
fn answer_with(guest: &mut Guest, request: Quick, call_limit: Duration) -> Result<(), CallError> {
    let deadline = Instant::now() + call_limit;
    match request {
        Quick::Tokenize(text, reply) => reply_with(reply, guest.tokenize(&text, deadline)),
        Quick::Detokenize(tokens, reply) => reply_with(reply, guest.detokenize(&tokens, deadline)),
    }
}
/// Sends a guest call's result; a trap is returned to the caller after replying.
fn reply_with<T>(
    reply: oneshot::Sender<Result<T, BackendError>>,
    result: Result<T, CallError>,
) -> Result<(), CallError> {
    // A requester that went away does not need the answer.
    match result {
        Ok(value) => {
            let _ = reply.send(Ok(value));
            Ok(())
        }
        Err(CallError::Refused(e)) => {
            let _ = reply.send(Err(BackendError::Refused(guest::describe(&e))));
            Ok(())
        }
        Err(trap) => {
            let _ = reply.send(Err(BackendError::Down(trap.to_string())));
            Err(trap)
        }
    }
}
