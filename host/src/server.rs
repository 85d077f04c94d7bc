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
    let header_timeout = Duration::from_secs_f64(args.header_timeout_sec);
    let server = tokio::spawn(serve(listener, router(state.clone()), header_timeout, drained(state.clone())));

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
    server.await?;
    crate::log::info("stopped", None);
    Ok(())
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then waits for open connections to
/// finish. A client must send its request head within `header_timeout`, so slow clients cannot
/// hold connections open by trickling headers.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    crate::log::warn(&format!("accept failed: {e}"), None);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are a client's broken or timed-out connection; nothing to report.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
