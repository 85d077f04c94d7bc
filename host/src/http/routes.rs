//! The small routes: health, cancel, shutdown, tokenize, detokenize.

use super::AppState;
use super::body::json_body;
use super::error::{ApiError, FieldError};
use super::execute::unavailable;
use super::validation::MAX_PROMPT_CHARS;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Most token ids `/detokenize` takes.
const MAX_DETOKENIZE_TOKENS: usize = 32768;
/// Most out-of-range ids listed one by one; the rest are counted in one more entry.
const MAX_LISTED_ERRORS: usize = 16;

/// 200 `healthy` when the worker takes jobs; 503 `unhealthy` with a `reason` while a failed
/// guest is rebuilt or after it could not be, and 503 `draining` once a shutdown began.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let backend = &state.backend;
    let memory_bytes = backend.memory_bytes();
    let health = backend.health.is_healthy();
    let status = match (&health, state.is_shutting_down()) {
        (Err(_), _) => "unhealthy",
        (Ok(()), true) => "draining",
        (Ok(()), false) => "healthy",
    };
    let mut body = json!({
        "status": status,
        "model_loaded": health.is_ok(),
        "vram_bytes": 0,
        "memory_type": "cpu",
        "memory_bytes": memory_bytes,
        "model": backend.info.name,
        "slots": backend.health.slots(),
        "slots_up": backend.health.slots_up(),
    });
    if let Err(reason) = health {
        body["reason"] = json!(reason);
    }
    let code = if status == "healthy" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: every metric in the OpenMetrics text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let metrics = &state.backend.metrics;
    metrics.guest_memory_bytes.set(state.backend.memory_bytes());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], metrics.encode()).into_response()
}

#[derive(Deserialize)]
pub struct CancelRequest {
    job_id: String,
}

pub async fn cancel_by_body(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CancelRequest = json_body(&headers, body, &state.limits).await?;
    Ok(cancel(&state, &request.job_id))
}

pub async fn cancel_by_path(State(state): State<Arc<AppState>>, Path(job_id): Path<String>) -> Response {
    cancel(&state, &job_id)
}

/// 202 whether or not the job is active: cancelling is idempotent.
fn cancel(state: &AppState, job_id: &str) -> Response {
    let active = state.backend.cancels.cancel(job_id);
    if active {
        tracing::info!(job_id, "cancel requested");
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "job_id": job_id, "status": if active { "cancelling" } else { "not_active" } })),
    )
        .into_response()
}

/// 202 with the number of jobs that were queued or running when new ones stopped being taken:
/// those finish, no others.
pub async fn shutdown(State(state): State<Arc<AppState>>) -> Response {
    let active = state.begin_shutdown();
    (StatusCode::ACCEPTED, Json(json!({ "status": "shutting_down", "active_jobs": active }))).into_response()
}

#[derive(Deserialize)]
pub struct TokenizeRequest {
    text: String,
}

pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: TokenizeRequest = json_body(&headers, body, &state.limits).await?;
    let chars = request.text.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ApiError::Invalid(vec![FieldError {
            field: "text".into(),
            constraint: format!("length(0..={MAX_PROMPT_CHARS})"),
            message: format!("text must be at most {MAX_PROMPT_CHARS} characters (got {chars})"),
            value: None,
        }]));
    }
    let tokens = state.backend.tokenize(request.text).await.map_err(unavailable)?;
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize)]
pub struct DetokenizeRequest {
    tokens: Vec<u32>,
}

pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: DetokenizeRequest = json_body(&headers, body, &state.limits).await?;
    let vocab = state.backend.info.vocab_size;
    let out_of_range: Vec<(usize, u32)> =
        request.tokens.iter().copied().enumerate().filter(|&(_, id)| id >= vocab).collect();
    let mut errors: Vec<FieldError> = out_of_range
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|&(i, id)| FieldError {
            field: format!("tokens[{i}]"),
            constraint: format!("range(0..{vocab})"),
            message: format!("token id {id} is outside the vocabulary of {vocab}"),
            value: Some(id.to_string()),
        })
        .collect();
    if out_of_range.len() > MAX_LISTED_ERRORS {
        let more = out_of_range.len() - MAX_LISTED_ERRORS;
        errors.push(FieldError {
            field: "tokens".into(),
            constraint: format!("range(0..{vocab})"),
            message: format!("{more} more token ids are outside the vocabulary of {vocab}"),
            value: None,
        });
    }
    if request.tokens.len() > MAX_DETOKENIZE_TOKENS {
        errors.push(FieldError {
            field: "tokens".into(),
            constraint: format!("max_items({MAX_DETOKENIZE_TOKENS})"),
            message: format!("at most {MAX_DETOKENIZE_TOKENS} tokens (got {})", request.tokens.len()),
            value: None,
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let text = state.backend.detokenize(request.tokens).await.map_err(unavailable)?;
    Ok(Json(json!({ "text": text })).into_response())
}
