//! The contract's SSE events: a job's events as `event: <type>` + `data: {"type":"<type>",...}`.

use crate::backend::job::JobEvent;
use crate::log::rfc3339;
use axum::response::sse::Event as SseEvent;
use serde::Serialize;

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

    /// The SSE event.
    pub fn to_sse(&self) -> SseEvent {
        let data = serde_json::to_string(self).expect("events serialize");
        SseEvent::default().event(self.name()).data(data)
    }
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
