//! The worker HTTP API: `/health`, `/execute` (SSE), `/cancel`, `/shutdown`, `/tokenize`,
//! `/detokenize`, `/metrics`, and the OpenAI-shaped `/v1/completions` and `/v1/models`.

pub mod body;
pub mod events;
pub mod execute;
pub mod openai;
pub mod routes;

use crate::backend::Backend;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Limits on requests and streams.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's body once its headers arrived.
    pub body_timeout: Duration,
    /// Wall-clock limit of one job.
    pub inference_timeout: Duration,
    /// Interval of SSE keep-alive comments on a quiet stream.
    pub sse_keepalive: Duration,
}

/// What every handler shares.
pub struct AppState {
    pub backend: Backend,
    pub limits: RequestLimits,
    /// Woken when a shutdown is requested.
    pub shutdown_requested: Notify,
}

impl AppState {
    pub fn new(backend: Backend, limits: RequestLimits) -> Arc<Self> {
        Arc::new(AppState { backend, limits, shutdown_requested: Notify::new() })
    }

    /// Stops taking new jobs and wakes whoever waits for the shutdown. Returns the number of
    /// jobs (queued or running) that will still finish.
    pub fn begin_shutdown(&self) -> usize {
        let (first, active) = self.backend.cancels.close();
        if first {
            tracing::info!("shutting down: refusing new jobs, finishing {active} active");
        }
        // `notify_one` keeps a permit, so a waiter that arrives later still wakes.
        self.shutdown_requested.notify_one();
        active
    }

    /// True once a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.backend.cancels.is_closed()
    }
}

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/execute", post(execute::execute))
        .route("/cancel", post(routes::cancel_by_body))
        .route("/cancel/{job_id}", post(routes::cancel_by_path))
        .route("/shutdown", post(routes::shutdown))
        .route("/tokenize", post(routes::tokenize))
        .route("/detokenize", post(routes::detokenize))
        .route("/metrics", get(routes::metrics))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}
