//! One inference slot: a guest instance in its own Store, driven by its own thread, advancing a
//! batch of jobs by one step per guest call. Jobs join between steps while the batch has room
//! and leave when they end, are cancelled or pass their deadline.

use super::guest::{CallError, Guest, describe};
use super::health::ThreadAlive;
use super::job::{EndReason, Failure, Job, JobEvent};
use super::wit::{Step, StopReason};
use super::{BackendError, Quick, Scheduler};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use wasmtime::component::ResourceAny;

/// Attempts at rebuilding a failed guest before the slot gives up.
const REBUILD_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled before each further one.
const REBUILD_BACKOFF: Duration = Duration::from_millis(500);

/// A job in the slot's batch.
struct Running {
    job: Job,
    /// Its sequence id in the guest's batch.
    sequence: u32,
    started: Instant,
    last_token: Option<Instant>,
}

/// A guest and the batch made in it.
struct Instance {
    guest: Guest,
    batch: ResourceAny,
}

/// The state owned by one slot's thread.
pub struct Slot {
    index: usize,
    scheduler: Arc<Scheduler>,
    /// None while a failed guest is being replaced.
    instance: Option<Instance>,
    running: Vec<Running>,
    /// This guest's linear memory size.
    memory: Arc<AtomicU64>,
}

impl Slot {
    /// Slot `index`; `guest` is its loaded guest, or None to load one when the thread starts.
    pub fn new(index: usize, scheduler: Arc<Scheduler>, guest: Option<Guest>, memory: Arc<AtomicU64>) -> Self {
        let mut slot = Slot { index, scheduler, instance: None, running: Vec::new(), memory };
        if let Some(guest) = guest {
            slot.instance = slot.with_batch(guest).ok();
        }
        slot
    }

    /// Serves jobs until the queue closes or the guest cannot be rebuilt.
    pub fn run(mut self) {
        let scheduler = self.scheduler.clone();
        let health = scheduler.health.slot(self.index);
        let _alive = ThreadAlive(health);
        if self.instance.is_none() {
            self.make_guest("loaded");
        }
        while self.instance.is_some() {
            if self.running.is_empty() && !self.wait_for_work() {
                return;
            }
            // Room in the batch: take queued jobs, unless an idle slot would take them sooner.
            while self.running.len() < scheduler.batch_size && scheduler.idle.load(Ordering::SeqCst) == 0 {
                match scheduler.jobs.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => break,
                }
            }
            while let Ok(request) = scheduler.quick.try_recv() {
                self.answer(request);
            }
            self.step();
        }
        scheduler.slot_gave_up(health.is_up().err().unwrap_or_default());
    }

    /// Blocks until a job or a quick request arrives; false when the queue has closed.
    fn wait_for_work(&mut self) -> bool {
        let scheduler = self.scheduler.clone();
        scheduler.idle.fetch_add(1, Ordering::SeqCst);
        let work = crossbeam_channel::select! {
            recv(scheduler.jobs) -> job => job.map(|job| self.admit(job)),
            recv(scheduler.quick) -> request => request.map(|request| self.answer(request)),
        };
        scheduler.idle.fetch_sub(1, Ordering::SeqCst);
        work.is_ok()
    }

    fn metrics(&self) -> &Metrics {
        &self.scheduler.metrics
    }

    fn call_deadline(&self) -> Instant {
        Instant::now() + self.scheduler.call_limit
    }

    /// Starts `job` in the batch, or ends it at once when it was cancelled or is refused.
    fn admit(&mut self, job: Job) {
        self.metrics().requests_waiting.dec();
        let deadline = self.call_deadline();
        let Some(instance) = self.instance.as_mut() else { return self.scheduler.release(job) };
        if job.should_stop() {
            job.end_with(Failure::Cancelled, "cancelled before it started");
            return self.scheduler.release(job);
        }
        let started = Instant::now();
        Metrics::observe(&job.metrics.queue_time, started - job.arrived);
        job.metrics.prompt_tokens.inc_by(job.prompt.len() as u64);
        job.send(JobEvent::Started {
            model: instance.guest.info.name.clone(),
            at: SystemTime::now(),
            seed: job.options.sampling.seed,
            prompt_tokens: job.prompt.len() as u32,
        });
        match instance.guest.add(instance.batch, &job.prompt, &job.options, deadline) {
            Ok(sequence) => {
                let batch = self.running.len() + 1;
                job.span.in_scope(|| tracing::info!(slot = self.index, batch, "job started"));
                if self.running.is_empty() {
                    self.metrics().slots_busy.inc();
                }
                self.metrics().requests_running.inc();
                self.running.push(Running { job, sequence, started, last_token: None });
            }
            Err(CallError::Refused(e)) => {
                job.end_with(Failure::InvalidRequest, describe(&e));
                self.scheduler.release(job);
            }
            Err(trap) => self.trapped(trap, Some(job)),
        }
    }

    /// Takes running job `i` out of the slot (its terminal event already sent). With a fresh
    /// guest per job, the guest it ran in is replaced.
    fn take(&mut self, i: usize) -> Job {
        let running = self.running.remove(i);
        self.metrics().requests_running.dec();
        if self.running.is_empty() {
            self.metrics().slots_busy.dec();
            if self.scheduler.fresh_per_job && self.instance.take().is_some() {
                self.make_guest("renewed");
            }
        }
        running.job
    }

    /// Ends the jobs that were cancelled or ran past their deadline, then advances the rest by
    /// one guest call.
    fn step(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.running.len() {
            let Running { job, started, .. } = &self.running[i];
            let end = if job.should_stop() {
                Some((Failure::Cancelled, "the job was cancelled".to_string()))
            } else if now >= *started + job.timeout {
                Some((Failure::Timeout, format!("the job ran past its {} s deadline", job.timeout.as_secs_f64())))
            } else {
                None
            };
            let Some((failure, message)) = end else {
                i += 1;
                continue;
            };
            let sequence = self.running[i].sequence;
            let job = self.take(i);
            job.end_with(failure, message);
            self.scheduler.release(job);
            let deadline = self.call_deadline();
            let Some(instance) = self.instance.as_mut() else { return };
            if let Err(trap) = instance.guest.remove(instance.batch, sequence, deadline) {
                return self.trapped(trap, None);
            }
        }
        if self.running.is_empty() {
            return;
        }
        let deadline = self.call_deadline();
        let Some(instance) = self.instance.as_mut() else { return };
        match instance.guest.step(instance.batch, deadline) {
            Ok(steps) => {
                for step in steps {
                    self.report(step.id, step.step);
                }
            }
            Err(trap) => self.trapped(trap, None),
        }
    }

    /// Passes one sequence's step on to its job.
    fn report(&mut self, sequence: u32, step: Step) {
        let Some(i) = self.running.iter().position(|r| r.sequence == sequence) else { return };
        let running = &mut self.running[i];
        let job = &running.job;
        match step {
            Step::Prefill(_) => {}
            Step::Token(token) => {
                let now = Instant::now();
                let metrics = &job.metrics;
                let (histogram, since) = match running.last_token.replace(now) {
                    None => (&metrics.time_to_first_token, job.arrived),
                    Some(previous) => (&metrics.inter_token_latency, previous),
                };
                Metrics::observe(histogram, now - since);
                metrics.generation_tokens.inc();
                if !token.text.is_empty() {
                    job.send(JobEvent::Text(token.text));
                }
            }
            Step::Finished(finish) => {
                if !finish.text.is_empty() {
                    job.send(JobEvent::Text(finish.text));
                }
                job.send(JobEvent::End {
                    tokens_out: finish.tokens_out,
                    elapsed: running.started.elapsed(),
                    reason: match finish.reason {
                        StopReason::MaxTokens => EndReason::MaxTokens,
                        StopReason::Eos => EndReason::Eos,
                        StopReason::StopSequence => EndReason::StopSequence,
                    },
                    stop_sequence: finish.stop_sequence,
                });
                let job = self.take(i);
                self.scheduler.release(job);
            }
        }
    }

    /// Answers one quick request; a trap there is handled like any other.
    fn answer(&mut self, request: Quick) {
        let deadline = self.call_deadline();
        let Some(instance) = self.instance.as_mut() else {
            return request.refuse(BackendError::Down("the guest is being rebuilt".into()));
        };
        let guest = &mut instance.guest;
        let outcome = match request {
            Quick::Tokenize(text, reply) => reply_with(reply, guest.tokenize(&text, deadline)),
            Quick::Detokenize(tokens, reply) => reply_with(reply, guest.detokenize(&tokens, deadline)),
        };
        if let Err(trap) = outcome {
            self.trapped(trap, None);
        }
    }

    /// The guest trapped: every job in it, and `admitting` (the job it was taking in when it
    /// trapped), fails (retriable), and the guest is rebuilt.
    fn trapped(&mut self, error: CallError, admitting: Option<Job>) {
        self.discard_guest(&error);
        let message = format!("{error}; the guest is being rebuilt");
        if let Some(job) = admitting {
            job.fail(&message);
            self.scheduler.release(job);
        }
        while !self.running.is_empty() {
            let job = self.take(0);
            job.fail(&message);
            self.scheduler.release(job);
        }
        self.make_guest("rebuilt");
    }

    /// Drops a trapped guest and marks the slot down until it is rebuilt. Its jobs' clients hear
    /// of the failure only after `/health` shows it.
    fn discard_guest(&mut self, error: &CallError) {
        self.metrics().guest_rebuilds.inc();
        let health = self.scheduler.health.slot(self.index);
        health.set_unavailable(format!("rebuilding the guest after a failure: {error}"));
        self.instance = None;
        tracing::error!(slot = self.index, "guest failed, rebuilding it: {error}");
    }

    /// Makes a guest with an empty batch.
    fn with_batch(&self, mut guest: Guest) -> Result<Instance, CallError> {
        let batch = guest.batch(self.scheduler.prompt_budget, self.call_deadline())?;
        Ok(Instance { guest, batch })
    }

    /// Makes a fresh guest from the snapshot taken at start, trying a few times with backoff,
    /// and logs `guest {done}`. Leaves the slot without an instance when every attempt failed.
    fn make_guest(&mut self, done: &str) {
        let scheduler = self.scheduler.clone();
        let health = scheduler.health.slot(self.index);
        let mut delay = REBUILD_BACKOFF;
        for attempt in 1..=REBUILD_ATTEMPTS {
            let loaded =
                Guest::from_snapshot(&scheduler.runtime, &scheduler.snapshot, &scheduler.limits, self.memory.clone())
                    .and_then(|guest| self.with_batch(guest));
            match loaded {
                Ok(instance) => {
                    self.instance = Some(instance);
                    health.set_ready();
                    tracing::info!(slot = self.index, "guest {done}");
                    return;
                }
                Err(e) if attempt < REBUILD_ATTEMPTS => {
                    tracing::error!(
                        slot = self.index,
                        "making the guest failed (attempt {attempt} of {REBUILD_ATTEMPTS}): {e}"
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    let reason = format!("the guest could not be rebuilt after {REBUILD_ATTEMPTS} attempts: {e}");
                    tracing::error!(slot = self.index, "{reason}");
                    health.set_unavailable(reason);
                }
            }
        }
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
            let _ = reply.send(Err(BackendError::Refused(describe(&e))));
            Ok(())
        }
        Err(trap) => {
            let _ = reply.send(Err(BackendError::Down(trap.to_string())));
            Err(trap)
        }
    }
}
