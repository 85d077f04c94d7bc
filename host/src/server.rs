//! Startup in the contract's order (load the model, bind, call back, serve) and the graceful
//! shutdown that lets running jobs finish.

use crate::backend::guest::GuestLimits;
use crate::backend::vram_usage::default_memory_cap;
use crate::backend::{Backend, BackendConfig};
use crate::callback::{self, Ready};
use crate::cli::Args;
use crate::http::{AppState, router};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

/// Longest a model may take to load into the guest.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the worker until it is shut down.
pub async fn run(args: Args) -> Result<()> {
    crate::log::info(&format!("starting; model {}", args.model.display()), None);
    let file_bytes = std::fs::metadata(&args.model)
        .with_context(|| format!("cannot read model file {}", args.model.display()))?
        .len();
    let memory_bytes = args.max_memory_mb.map_or_else(|| default_memory_cap(file_bytes), |mb| mb << 20);
    let config = BackendConfig {
        model_path: args.model.clone(),
        cache_dir: args.cache_dir(),
        limits: GuestLimits { memory_bytes, load_timeout: LOAD_TIMEOUT },
        max_queue: args.max_queue,
    };
    let backend = tokio::task::spawn_blocking(move || Backend::start(config)).await??;
    let info = &backend.info;
    crate::log::info(
        &format!(
            "model loaded: {} ({} parameters, {} weights, context {}, guest memory {} bytes)",
            info.name,
            info.parameter_count,
            info.weight_type,
            info.context_length,
            backend.memory.load(std::sync::atomic::Ordering::Relaxed)
        ),
        None,
    );
    let listener = tokio::net::TcpListener::bind((args.bind_address, args.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", args.bind_address, args.port))?;
    let address = listener.local_addr()?;
    crate::log::info(&format!("listening on http://{address}"), None);

    let state = AppState::new(backend, args.max_body_bytes, Duration::from_secs_f64(args.inference_timeout_sec));
    tokio::spawn(stop_on_signal(state.clone()));
    let server = tokio::spawn(
        axum::serve(listener, router(state.clone())).with_graceful_shutdown(drained(state.clone())).into_future(),
    );

    if let Some(url) = args.callback_url.as_deref().filter(|url| !callback::is_test_mode(url)) {
        let ready = Ready {
            worker_id: &args.worker_id,
            uri: format!("http://{address}"),
            memory_bytes: state.backend.memory.load(std::sync::atomic::Ordering::Relaxed),
            model_ref: &state.backend.info.name,
        };
        callback::send_ready(url, &ready, Duration::from_secs_f64(args.callback_timeout_sec))
            .await
            .map_err(anyhow::Error::msg)?;
        crate::log::info(&format!("ready callback sent to {url}"), None);
    }
    server.await??;
    crate::log::info("stopped", None);
    Ok(())
}

/// Begins the shutdown on SIGTERM or SIGINT.
async fn stop_on_signal(state: Arc<AppState>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    state.begin_shutdown();
}

/// Resolves once a shutdown was requested and every queued and running job has ended.
async fn drained(state: Arc<AppState>) {
    state.shutdown_requested.notified().await;
    while !state.backend.cancels.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
