//! The contract's SSE events: `event: <type>` + `data: {"type":"<type>",...}`, times in RFC 3339.

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

    /// The `data:` line's JSON.
    pub fn data(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// The whole SSE event as sent on the wire, blank line included.
    pub fn to_wire(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name(), self.data())
    }
}

/// `at` in RFC 3339, UTC.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}
