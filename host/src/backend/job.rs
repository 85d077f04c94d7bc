//! A generation request as the backend runs it, and what it reports back: started, text, then
//! exactly one end or failure.

use super::cancel::CancelGuard;
use super::wit::GenerateOptions;
use crate::metrics::Metrics;
pub use llorch_api::outcome::{EndReason, Failure};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedSender;

/// What a job reports, in order: `Started`, any number of `Text`, then `End` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Started {
        model: String,
        at: SystemTime,
        seed: u64,
        prompt_tokens: u32,
    },
    /// Text released by the next token (never empty).
    Text(String),
    End {
        tokens_out: u32,
        elapsed: Duration,
        reason: EndReason,
        stop_sequence: Option<String>,
    },
    Failed {
        failure: Failure,
        message: String,
    },
}

/// A validated generation request waiting for, or running in, a slot.
pub struct Job {
    pub id: String,
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    pub timeout: Duration,
    pub events: UnboundedSender<JobEvent>,
    pub cancel: CancelGuard,
    /// Set once the terminal event was sent.
    pub ended: AtomicBool,
    /// The job's span: its `job_id` goes on every log line about it.
    pub span: tracing::Span,
    /// When the request arrived: queue time, time to first token and end-to-end latency count
    /// from here.
    pub arrived: Instant,
    pub metrics: Arc<Metrics>,
}

impl Job {
    /// True when the job was cancelled or its client went away.
    pub fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || self.events.is_closed()
    }

    /// Sends `event`, logging and counting the terminal ones.
    pub fn send(&self, event: JobEvent) {
        let code = match &event {
            JobEvent::End { tokens_out, reason, .. } => {
                self.span.in_scope(|| tracing::info!("job ended: {}, {tokens_out} tokens", reason.code()));
                Some(reason.code())
            }
            JobEvent::Failed { failure, message } => {
                self.span.in_scope(|| tracing::info!("job ended: {}: {message}", failure.code()));
                Some(failure.code())
            }
            _ => None,
        };
        if let Some(code) = code {
            self.ended.store(true, Ordering::SeqCst);
            self.metrics.finished(code);
            Metrics::observe(&self.metrics.e2e_request_latency, self.arrived.elapsed());
            // Before the client can see the end: it may send its next job under the same id.
            self.cancel.release();
        }
        // A closed channel means the client left; the next `should_stop` notices.
        let _ = self.events.send(event);
    }

    /// Ends the job with `failure`.
    pub fn end_with(&self, failure: Failure, message: impl Into<String>) {
        self.send(JobEvent::Failed { failure, message: message.into() });
    }

    /// Ends a job that will not run, or not on, because the worker cannot run it; the client
    /// may retry.
    pub fn fail(&self, why: &str) {
        self.end_with(Failure::InferenceFailed, why);
    }
}

impl Drop for Job {
    /// A job never ends without its terminal event, whatever path dropped it.
    fn drop(&mut self) {
        if !self.ended.load(Ordering::SeqCst) {
            self.fail("the worker stopped before the job could run");
        }
    }
}
