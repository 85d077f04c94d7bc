//! The small routes: health, cancel, shutdown, tokenize, detokenize.

use super::AppState;
use super::body::json_body;
use super::execute::unavailable;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use llorch_api::error::ApiError;
use llorch_api::request::{DetokenizeRequest, TokenizeRequest};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

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

/// 404 for a path no route has.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

/// 405 for a route's path with a method it does not take.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
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

pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: TokenizeRequest = json_body(&headers, body, &state.limits).await?;
    let tokens = state.backend.tokenize(request.validate()?).await.map_err(unavailable)?;
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: DetokenizeRequest = json_body(&headers, body, &state.limits).await?;
    let tokens = request.validate(state.backend.info.vocab_size)?;
    let text = state.backend.detokenize(tokens).await.map_err(unavailable)?;
    Ok(Json(json!({ "text": text })).into_response())
}
