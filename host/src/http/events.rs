//! A job's events as the contract's SSE events.

use crate::backend::job::JobEvent;
use axum::response::sse::Event as SseEvent;
pub use llorch_api::events::Event;
use llorch_api::events::rfc3339;

/// The SSE event for `event`.
pub fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default().event(event.name()).data(event.data())
}

/// Turns job `job_id`'s events into the contract's, numbering the tokens from 0.
pub struct EventStream {
    job_id: String,
    tokens: u32,
}

impl EventStream {
    pub fn new(job_id: String) -> Self {
        EventStream { job_id, tokens: 0 }
    }

    /// The contract event for the job's next event.
    pub fn next(&mut self, event: JobEvent) -> Event {
        match event {
            JobEvent::Started { model, at, seed, prompt_tokens } => {
                Event::Started { job_id: self.job_id.clone(), model, started_at: rfc3339(at), seed, prompt_tokens }
            }
            JobEvent::Text(t) => {
                self.tokens += 1;
                Event::Token { t, i: self.tokens - 1 }
            }
            JobEvent::End { tokens_out, elapsed, reason, stop_sequence } => Event::End {
                tokens_out,
                decode_time_ms: elapsed.as_millis() as u64,
                stop_reason: reason.code(),
                stop_sequence_matched: stop_sequence,
            },
            JobEvent::Failed { failure, message } => {
                Event::Error { code: failure.code(), message, retriable: failure.retriable() }
            }
        }
    }
}
