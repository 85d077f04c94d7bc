//! How a job ends, by the contract's names: the `stop_reason` of an `end` event and the `code`
//! of an `error` event.

/// Why a generation ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    MaxTokens,
    Eos,
    StopSequence,
}

/// Why a job ended without its generation finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Cancelled, or its client went away.
    Cancelled,
    /// It ran past the inference timeout.
    Timeout,
    /// The guest refused the request.
    InvalidRequest,
    /// The worker could not run it (a trapped guest, a stop); worth retrying.
    InferenceFailed,
}

impl EndReason {
    /// The contract's name for it, used by every report (the SSE stream, logs, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::MaxTokens => "MAX_TOKENS",
            EndReason::Eos => "EOS",
            EndReason::StopSequence => "STOP_SEQUENCE",
        }
    }
}

impl Failure {
    /// The contract's name for it, used by every report (the SSE stream, logs, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Cancelled => "CANCELLED",
            Failure::Timeout => "TIMEOUT",
            Failure::InvalidRequest => "INVALID_REQUEST",
            Failure::InferenceFailed => "INFERENCE_FAILED",
        }
    }

    /// Whether the same request may succeed when sent again.
    pub fn retriable(&self) -> bool {
        matches!(self, Failure::Timeout | Failure::InferenceFailed)
    }
}
