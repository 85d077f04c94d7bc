//! The ready callback to the pool manager, retried with backoff.

use serde_json::json;
use std::time::{Duration, Instant};

/// What the callback reports.
pub struct Ready<'a> {
    pub worker_id: &'a str,
    pub uri: String,
    pub memory_bytes: u64,
    pub model_ref: &'a str,
}

/// True when the URL asks for no callback (the pool manager's test mode).
pub fn is_test_mode(url: &str) -> bool {
    url.contains("localhost:9999")
}

/// POSTs the ready message to `url` until a 2xx answer. Connection errors and 5xx are retried
/// with backoff until `give_up_after`; any other status fails at once.
pub async fn send_ready(url: &str, ready: &Ready<'_>, give_up_after: Duration) -> Result<(), String> {
    let body = json!({
        "worker_id": ready.worker_id,
        "vram_bytes": 0,
        "uri": ready.uri,
        "memory_bytes": ready.memory_bytes,
        "memory_architecture": "cpu",
        "worker_type": "cpu",
        "capabilities": ["text-gen"],
        "model_ref": ready.model_ref,
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let give_up = Instant::now() + give_up_after;
    let mut delay = Duration::from_millis(200);
    loop {
        let failure = match client.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if response.status().is_server_error() => format!("answered {}", response.status()),
            Ok(response) => return Err(format!("ready callback to {url} was refused with {}", response.status())),
            Err(e) => format!("failed: {e}"),
        };
        if Instant::now() + delay > give_up {
            return Err(format!("ready callback to {url} {failure}; gave up after {} s", give_up_after.as_secs_f64()));
        }
        tracing::warn!("ready callback to {url} {failure}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
