//! `POST /execute`: validate, tokenize, queue, then stream the job's events as SSE.

use super::AppState;
use super::body::json_body;
use super::events::{EventStream, to_sse};
use crate::backend::BackendError;
use crate::backend::cancel::RegisterError;
use crate::backend::job::{Job, JobEvent};
use crate::backend::wit::{GenerateOptions, Sampling};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llorch_api::error::ApiError;
use llorch_api::request::{ExecuteRequest, ValidRequest, check_context};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_SEC: u32 = 1;

pub async fn execute(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if state.is_shutting_down() {
        return Err(shutting_down());
    }
    let request: ExecuteRequest = json_body(&headers, body, &state.limits).await?;
    let request = request.validate(state.backend.info.vocab_size).map_err(ApiError::Invalid)?;
    let mut events = EventStream::new(request.job_id.clone());
    let receiver = start_job(&state, request, arrived).await?;
    let stream =
        UnboundedReceiverStream::new(receiver).map(move |event| Ok::<_, Infallible>(to_sse(&events.next(event))));
    // Comments on a quiet stream (a long prefill, a wait in the queue) keep proxies from
    // cutting it; clients skip them.
    Ok(Sse::new(stream).keep_alive(keep_alive(&state)).into_response())
}

/// SSE keep-alive comments at the configured interval.
pub fn keep_alive(state: &AppState) -> KeepAlive {
    KeepAlive::new().interval(state.limits.sse_keepalive).text("keep-alive")
}

/// 503: the worker takes no new jobs.
pub fn shutting_down() -> ApiError {
    ApiError::Unavailable { message: "the worker is shutting down".into(), retry_after_sec: None }
}

/// Tokenizes a validated request, checks it fits the context, registers and queues it; returns
/// its events. Dropping the receiver cancels the job. Shared by every route that generates.
pub async fn start_job(
    state: &AppState,
    request: ValidRequest,
    arrived: Instant,
) -> Result<UnboundedReceiver<JobEvent>, ApiError> {
    let backend = &state.backend;
    let prompt = backend.tokenize(request.prompt.clone()).await.map_err(unavailable)?;
    check_context(&request, prompt.len(), backend.info.context_length)?;
    // Registering is refused once the shutdown began, however long tokenizing took.
    let cancel = backend.cancels.register(&request.job_id).map_err(|e| match e {
        RegisterError::Closed => shutting_down(),
        RegisterError::Duplicate => ApiError::Conflict(format!("job {} is already queued or running", request.job_id)),
    })?;
    let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
    let span = tracing::info_span!("job", job_id = %request.job_id);
    let seed = request.seed.unwrap_or_else(random_seed);
    let job = Job {
        id: request.job_id,
        prompt,
        options: GenerateOptions {
            max_tokens: request.max_tokens,
            sampling: Sampling {
                temperature: request.temperature,
                top_k: request.top_k,
                top_p: request.top_p,
                min_p: request.min_p,
                repetition_penalty: request.repetition_penalty,
                seed,
            },
            stop: request.stop,
        },
        timeout: state.limits.inference_timeout,
        events,
        cancel,
        ended: AtomicBool::new(false),
        span: span.clone(),
        arrived,
        metrics: backend.metrics.clone(),
    };
    backend.submit(job).map_err(unavailable)?;
    span.in_scope(|| tracing::info!("job queued"));
    Ok(receiver)
}

/// A backend refusal as an HTTP error.
pub fn unavailable(e: BackendError) -> ApiError {
    match e {
        BackendError::Busy => ApiError::Unavailable {
            message: "the worker is busy and its queue is full".into(),
            retry_after_sec: Some(RETRY_AFTER_SEC),
        },
        BackendError::Down(reason) => ApiError::Unavailable { message: reason, retry_after_sec: Some(RETRY_AFTER_SEC) },
        BackendError::Refused(reason) => ApiError::refused(reason),
    }
}

/// A seed from the operating system's random source.
fn random_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    })
}
