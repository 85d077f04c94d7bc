//! Running one job on the guest: the contract's SSE events, produced step by step, with cancel
//! and deadline checks between guest calls.

use super::cancel::CancelGuard;
use super::guest::{CallError, Guest, describe};
use super::wit::{GenerateOptions, Step, StopReason};
use crate::metrics::Metrics;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// One event of a job's stream, serialized as the `data:` of an SSE event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Started {
        job_id: String,
        model: String,
        started_at: String,
        seed: u64,
        prompt_tokens: u32,
    },
    Token {
        t: String,
        i: u32,
    },
    End {
        tokens_out: u32,
        decode_time_ms: u64,
        stop_reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        stop_sequence_matched: Option<String>,
    },
    Error {
        code: &'static str,
        message: String,
        retriable: bool,
    },
}

impl Event {
    /// The SSE event name: the same as `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Token { .. } => "token",
            Event::End { .. } => "end",
            Event::Error { .. } => "error",
        }
    }

    fn error(code: &'static str, message: impl Into<String>, retriable: bool) -> Self {
        Event::Error { code, message: message.into(), retriable }
    }
}

/// A validated generation request waiting for the guest.
pub struct Job {
    pub id: String,
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    pub timeout: Duration,
    pub events: UnboundedSender<Event>,
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
    fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || self.events.is_closed()
    }

    /// Sends `event`, logging and counting the terminal ones.
    fn send(&self, event: Event) {
        let reason = match &event {
            Event::End { tokens_out, stop_reason, .. } => {
                self.span.in_scope(|| tracing::info!("job ended: {stop_reason}, {tokens_out} tokens"));
                Some(*stop_reason)
            }
            Event::Error { code, message, .. } => {
                self.span.in_scope(|| tracing::info!("job ended: {code}: {message}"));
                Some(*code)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            self.ended.store(true, Ordering::SeqCst);
            self.metrics.finished(reason);
            Metrics::observe(&self.metrics.e2e_request_latency, self.arrived.elapsed());
        }
        // A closed channel means the client left; the next `should_stop` notices.
        let _ = self.events.send(event);
    }

    /// Ends a job that will not run, or not on, because the worker cannot run it; the client
    /// may retry.
    pub fn fail(&self, why: &str) {
        self.send(Event::error("INFERENCE_FAILED", why, true));
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

/// A guest failure that leaves the instance unusable. The job's terminal event is left to the
/// caller, which first marks the worker unhealthy so no client learns of the failure before
/// `/health` does.
pub struct Trapped(pub CallError);

/// Runs `job` to its terminal event. Its deadline is checked between guest calls, so a job past
/// it ends with TIMEOUT and the instance stays; each call only has `call_limit`, past which the
/// guest has run away and traps. `between_steps` runs between guest calls (the worker uses it
/// to answer quick requests). Returns `Err` when the guest trapped and must be rebuilt; the job
/// then still needs its terminal event.
pub fn run(
    guest: &mut Guest,
    job: &Job,
    call_limit: Duration,
    mut between_steps: impl FnMut(&mut Guest),
) -> Result<(), Trapped> {
    let call_deadline = || Instant::now() + call_limit;
    if job.should_stop() {
        job.send(Event::error("CANCELLED", "cancelled before it started", false));
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + job.timeout;
    Metrics::observe(&job.metrics.queue_time, started - job.arrived);
    job.metrics.prompt_tokens.inc_by(job.prompt.len() as u64);
    job.send(Event::Started {
        job_id: job.id.clone(),
        model: guest.info.name.clone(),
        started_at: crate::log::rfc3339_now(),
        seed: job.options.sampling.seed,
        prompt_tokens: job.prompt.len() as u32,
    });
    let generation = match guest.generate(&job.prompt, &job.options, call_deadline()) {
        Ok(generation) => generation,
        Err(CallError::Refused(e)) => {
            job.send(Event::error("INVALID_REQUEST", describe(&e), false));
            return Ok(());
        }
        Err(trap) => return Err(Trapped(trap)),
    };
    let (metrics, mut last_token) = (&job.metrics, None);
    let mut index = 0;
    let mut send_text = |text: String| {
        if !text.is_empty() {
            job.send(Event::Token { t: text, i: index });
            index += 1;
        }
    };
    loop {
        if job.should_stop() {
            job.send(Event::error("CANCELLED", "the job was cancelled", false));
            break;
        }
        if Instant::now() >= deadline {
            job.send(timeout_event(job.timeout));
            break;
        }
        between_steps(guest);
        match guest.next(generation, call_deadline()) {
            Ok(Step::Prefill(_)) => {}
            Ok(Step::Token(token)) => {
                let now = Instant::now();
                let (histogram, since) = match last_token.replace(now) {
                    None => (&metrics.time_to_first_token, job.arrived),
                    Some(previous) => (&metrics.inter_token_latency, previous),
                };
                Metrics::observe(histogram, now - since);
                metrics.generation_tokens.inc();
                send_text(token.text)
            }
            Ok(Step::Finished(finish)) => {
                send_text(finish.text);
                job.send(Event::End {
                    tokens_out: finish.tokens_out,
                    decode_time_ms: started.elapsed().as_millis() as u64,
                    stop_reason: match finish.reason {
                        StopReason::MaxTokens => "MAX_TOKENS",
                        StopReason::Eos => "EOS",
                        StopReason::StopSequence => "STOP_SEQUENCE",
                    },
                    stop_sequence_matched: finish.stop_sequence,
                });
                break;
            }
            Err(trap) => return Err(Trapped(trap)),
        }
    }
    guest.finish(generation, call_deadline()).map_err(Trapped)
}

fn timeout_event(timeout: Duration) -> Event {
    Event::error("TIMEOUT", format!("the job ran past its {} s deadline", timeout.as_secs_f64()), true)
}
