//! Startup in the contract's order (load the model, bind, call back, serve) and the graceful
//! shutdown that lets running jobs finish.

use crate::backend::component_cache::ComponentCache;
use crate::backend::guest::GuestLimits;
use crate::backend::memory_limit::default_memory_cap;
use crate::backend::model_file::ModelFile;
use crate::backend::runtime::Runtime;
use crate::backend::{Backend, BackendConfig};
use crate::callback::{self, Ready};
use crate::cli::{Args, Isolation};
use crate::http::{AppState, RequestLimits, router};
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::time::Duration;

/// Longest a model may take to load into the guest.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the worker until it is shut down, or until its guest fails for good (then `Err`).
pub async fn run(args: Args) -> Result<()> {
    tracing::info!("starting; model {}", args.model.display());
    let cache = args.cache_dir().map(|dir| ComponentCache::open(&dir)).transpose()?;
    let file_bytes = std::fs::metadata(&args.model)
        .with_context(|| format!("cannot read model file {}", args.model.display()))?
        .len();
    let memory_bytes = args.max_memory_mb.map_or_else(|| default_memory_cap(file_bytes), |mb| mb << 20);
    let limits = GuestLimits { memory_bytes, load_timeout: LOAD_TIMEOUT };
    let (slots, max_queue, isolation) = (args.slots(), args.max_queue as usize, args.isolation);
    let batch_size = isolation.batch_size(args.batch_size);
    let fresh_per_job = isolation == Isolation::Job;
    let (call_limit, model_path, quantize) = (args.guest_call_timeout_sec, args.model.clone(), args.quantize.is_some());
    let backend = tokio::task::spawn_blocking(move || -> Result<Backend> {
        let model = ModelFile::open(&model_path, memory_bytes)?.quantized(quantize);
        let runtime = Runtime::new(cache)?;
        let prompt_budget = crate::backend::PROMPT_BUDGET;
        let config =
            BackendConfig { model, limits, slots, batch_size, fresh_per_job, prompt_budget, max_queue, call_limit };
        Backend::start(runtime, config)
    })
    .await??;
    let info = &backend.info;
    tracing::info!(
        "model loaded: {} ({} parameters, {} weights, context {}, guest memory {} bytes); {slots} slots of {batch_size} jobs, isolation per {isolation:?}",
        info.name,
        info.parameter_count,
        info.weight_type,
        info.context_length,
        backend.memory_bytes()
    );
    let listener = tokio::net::TcpListener::bind((args.bind_address, args.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", args.bind_address, args.port))?;
    let address = listener.local_addr()?;
    tracing::info!("listening on http://{address}");

    let limits = RequestLimits {
        max_body_bytes: args.max_body_bytes as usize,
        body_timeout: args.request_timeout_sec,
        inference_timeout: args.inference_timeout_sec,
        sse_keepalive: args.sse_keepalive_sec,
    };
    let state = AppState::new(backend, limits);
    tokio::spawn(stop_on_signal(state.clone()));
    tokio::spawn(stop_on_failure(state.clone()));
    let connections =
        ConnectionLimits { request_timeout: args.request_timeout_sec, max_connections: args.max_connections as usize };
    let server = tokio::spawn(serve(listener, router(state.clone()), connections, drained(state.clone())));

    if let Some(url) = args.callback_url.as_deref().filter(|url| !callback::is_test_mode(url)) {
        let ready = Ready {
            worker_id: &args.worker_id,
            uri: format!("http://{address}"),
            memory_bytes: state.backend.memory_bytes(),
            model_ref: &state.backend.info.name,
        };
        callback::send_ready(url, &ready, args.callback_timeout_sec).await.map_err(anyhow::Error::msg)?;
        tracing::info!("ready callback sent to {url}");
    }
    server.await?;
    if let Some(reason) = state.backend.failed.borrow().clone() {
        bail!("stopped: {reason}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Bounds on the connections the server keeps.
struct ConnectionLimits {
    /// Time to send a request's headers; also how long an idle keep-alive connection stays.
    request_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    max_connections: usize,
}

/// What a connection over the limit is told before it is closed.
fn too_many_connections() -> Vec<u8> {
    let body = serde_json::json!({"error": "UNAVAILABLE", "message": "too many open connections; retry later"});
    let body = body.to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then waits for open connections to
/// finish. A client must send its request head within the request timeout, which also closes
/// idle keep-alive connections (hyper starts it whenever the connection waits for a head);
/// bodies are timed by the handlers that read them.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.request_timeout);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Each SSE event goes out as it is written: with Nagle's algorithm a small
                    // event waits for the client's delayed acknowledgement of the one before
                    // (about 40 ms on Linux).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!("TCP_NODELAY: {e}");
                    }
                    stream
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Best effort: the client may already be gone.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&too_many_connections())).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are a client's broken or timed-out connection; nothing to report.
            let _ = connection.await;
            drop(permit);
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

/// Begins the shutdown when the guest fails for good; the queued jobs were already ended.
async fn stop_on_failure(state: Arc<AppState>) {
    let mut failed = state.backend.failed.clone();
    if failed.wait_for(Option::is_some).await.is_ok() {
        state.begin_shutdown();
    }
}

/// Resolves once a shutdown was requested and every queued and running job has ended.
async fn drained(state: Arc<AppState>) {
    state.shutdown_requested.notified().await;
    state.backend.cancels.wait_until_empty().await;
}
