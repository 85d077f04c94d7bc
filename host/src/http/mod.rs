//! The worker HTTP API: `/health`, `/execute` (SSE), `/cancel`, `/shutdown`, `/tokenize`,
//! `/detokenize`.

pub mod body;
pub mod error;
pub mod execute;
pub mod routes;
pub mod validation;

use crate::backend::Backend;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// What every handler shares.
pub struct AppState {
    pub backend: Backend,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Wall-clock limit of one job.
    pub inference_timeout: Duration,
    shutting_down: AtomicBool,
    /// Woken when a shutdown is requested.
    pub shutdown_requested: Notify,
}

impl AppState {
    pub fn new(backend: Backend, max_body_bytes: usize, inference_timeout: Duration) -> Arc<Self> {
        Arc::new(AppState {
            backend,
            max_body_bytes,
            inference_timeout,
            shutting_down: AtomicBool::new(false),
            shutdown_requested: Notify::new(),
        })
    }

    /// Stops taking new jobs and wakes whoever waits for the shutdown.
    pub fn begin_shutdown(&self) {
        if !self.shutting_down.swap(true, Ordering::SeqCst) {
            crate::log::info("shutting down: refusing new jobs, finishing the running ones", None);
        }
        // `notify_one` keeps a permit, so a waiter that arrives later still wakes.
        self.shutdown_requested.notify_one();
    }

    /// True once a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
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
        .with_state(state)
}
