//! The inference backend: the guest component under wasmtime, driven by one dedicated thread.
//!
//! Why a thread and not async wasmtime: a generation is a loop of short, CPU-bound guest calls
//! (one token or one prompt chunk each). Running them on their own OS thread keeps the tokio
//! runtime free, so `/health` and the other routes answer at once while a job runs, and the
//! thread checks cancel flags and deadlines between calls. One thread, because this worker is
//! one inference slot: two would fight for the same cores.

pub mod cancel;
pub mod execute;
pub mod guest;
pub mod is_healthy;
pub mod runtime;
pub mod vram_usage;

wasmtime::component::bindgen!({ path: "../wit", world: "worker" });

pub use exports::llorch::gpt2::inference as wit;

use cancel::CancelRegistry;
use crossbeam_channel::{Receiver, Sender};
use execute::Job;
use guest::{CallError, Guest, GuestLimits};
use is_healthy::Health;
use runtime::Runtime;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wit::ModelInfo;

/// Longest a quick request (tokenize, detokenize) may run inside the guest.
const QUICK_DEADLINE: Duration = Duration::from_secs(10);

/// How the backend is set up.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub model_path: PathBuf,
    pub cache_dir: PathBuf,
    pub limits: GuestLimits,
    /// Jobs that may wait behind the running one.
    pub max_queue: usize,
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
}

impl Backend {
    /// Compiles (or loads from cache) the component, loads the model into a guest and starts
    /// the inference thread. Fails with a one-line reason when the model cannot be loaded.
    pub fn start(config: BackendConfig) -> anyhow::Result<Self> {
        let runtime = Runtime::new(&config.cache_dir)?;
        let memory = Arc::new(AtomicU64::new(0));
        let guest = Guest::load(&runtime, &config.model_path, &config.limits, memory.clone())
            .map_err(|e| anyhow::anyhow!("cannot load model {}: {e}", config.model_path.display()))?;
        let info = guest.info.clone();
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_queue = config.max_queue;
        let (quick, quick_rx) = crossbeam_channel::unbounded();
        let health = Arc::new(Health::default());
        let thread = InferenceThread {
            runtime,
            config,
            guest: Some(guest),
            health: health.clone(),
            memory: memory.clone(),
            in_flight: in_flight.clone(),
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
        })
    }

    /// Queues a job; refused when one job runs and `max_queue` wait already.
    pub fn submit(&self, job: Job) -> Result<(), BackendError> {
        let limit = self.max_queue + 1;
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .map_err(|_| BackendError::Busy)?;
        self.jobs.send(job).map_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
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
}

impl InferenceThread {
    fn run(mut self, jobs: Receiver<Job>, quick: Receiver<Quick>) {
        loop {
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
    }

    fn execute(&mut self, job: Job, quick: &Receiver<Quick>) {
        let guest = self.guest.as_mut().expect("a guest exists between jobs");
        let outcome = execute::run(guest, &job, |guest| {
            while let Ok(request) = quick.try_recv() {
                // A trap here poisons the instance, so the job's next guest call fails too and
                // the rebuild happens through the job's outcome.
                let _ = answer_with(guest, request);
            }
        });
        drop(job);
        if let Err(execute::Trapped(error)) = outcome {
            self.rebuild(&error);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn answer(&mut self, request: Quick) {
        let guest = self.guest.as_mut().expect("a guest exists between jobs");
        if let Err(error) = answer_with(guest, request) {
            self.rebuild(&error);
        }
    }

    /// Replaces a trapped guest with a fresh instance and model, retrying until it loads.
    fn rebuild(&mut self, error: &CallError) {
        crate::log::error(&format!("guest failed, rebuilding it: {error}"), None);
        self.guest = None;
        self.health.set_unavailable(format!("rebuilding the guest after a failure: {error}"));
        let mut delay = Duration::from_millis(100);
        loop {
            match Guest::load(&self.runtime, &self.config.model_path, &self.config.limits, self.memory.clone()) {
                Ok(guest) => {
                    self.guest = Some(guest);
                    self.health.set_ready();
                    crate::log::info("guest rebuilt", None);
                    return;
                }
                Err(e) => {
                    crate::log::error(&format!("rebuilding the guest failed, retrying: {e}"), None);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Answers one quick request; `Err` when the guest trapped.
fn answer_with(guest: &mut Guest, request: Quick) -> Result<(), CallError> {
    let deadline = Instant::now() + QUICK_DEADLINE;
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
