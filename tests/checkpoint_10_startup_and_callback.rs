//! Checkpoint 10: startup order and the ready callback: sent once the port serves, with every
//! field, retried on 5xx, skipped in test mode, fatal when it cannot get through.

use crate::support::pool_manager::PoolManager;
use crate::support::worker::{Worker, spawn};
use crate::support::{kjv, tiny};
use std::time::{Duration, Instant};

fn wait_for_callbacks(pool: &PoolManager, n: usize) {
    let started = Instant::now();
    while pool.received().len() < n {
        assert!(started.elapsed() < Duration::from_secs(60), "only {} callbacks arrived", pool.received().len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_callback_comes_after_the_port_serves_with_every_field() {
    let pool = PoolManager::start(&[]);
    let model = kjv();
    let worker =
        Worker::start(&["--worker-id", "w-7", "--model", model.to_str().unwrap(), "--callback-url", &pool.url]);
    wait_for_callbacks(&pool, 1);
    let callback = &pool.received()[0];
    assert_eq!(callback.path, "/v1/workers/ready", "the URL is used verbatim");
    assert!(callback.worker_was_serving, "the worker must serve before calling back");
    let body = &callback.body;
    assert_eq!(body["worker_id"], "w-7");
    assert_eq!(body["vram_bytes"], 0);
    assert_eq!(body["uri"], worker.url.as_str());
    assert!(body["memory_bytes"].as_u64().unwrap() > 37_000_000, "memory holds the weights: {body}");
    assert_eq!(body["memory_architecture"], "cpu");
    assert_eq!(body["worker_type"], "cpu");
    assert_eq!(body["capabilities"], serde_json::json!(["text-gen"]));
    assert_eq!(body["model_ref"], "kjv-fortunes-18m");
    let messages = worker.messages_after("ready callback sent");
    let position =
        |prefix: &str| messages.iter().position(|m| m.starts_with(prefix)).unwrap_or_else(|| panic!("no log {prefix}"));
    assert!(position("model loaded") < position("listening on"));
    assert!(position("listening on") < position("ready callback sent"));
}

#[test]
fn ready_callback_is_retried_after_server_errors() {
    let pool = PoolManager::start(&[503, 500]);
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--callback-url", &pool.url]);
    wait_for_callbacks(&pool, 3);
    // The worker logs the success after the 2xx; nothing is sent after that.
    worker.messages_after("ready callback sent");
    assert_eq!(pool.received().len(), 3, "no callback after the first 2xx");
}

#[test]
fn test_mode_url_skips_the_callback() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--callback-url", "http://localhost:9999/ready"]);
    let (status, _) = worker.get("/health");
    assert_eq!(status, 200);
    assert!(!worker.logs().iter().any(|l| l["message"].as_str().unwrap().contains("callback")));
}

#[test]
fn unreachable_callback_exits_non_zero_with_a_clear_line() {
    // A port that was free a moment ago refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut worker =
        spawn(&["--model", tiny().to_str().unwrap(), "--callback-url", &url, "--callback-timeout-sec", "1"]);
    let status = worker.wait_exit(Duration::from_secs(60)).expect("the worker gives up");
    assert!(!status.success());
    let last = worker.lines().last().cloned().unwrap();
    assert!(last.contains("\"level\":\"error\"") && last.contains("gave up after 1 s"), "{last}");
}

#[test]
fn a_missing_model_exits_non_zero_naming_the_file() {
    let mut worker = spawn(&["--model", "/no/such/model.gguf"]);
    let status = worker.wait_exit(Duration::from_secs(30)).expect("the worker exits");
    assert!(!status.success());
    let last = worker.lines().last().cloned().unwrap();
    assert!(last.contains("/no/such/model.gguf"), "{last}");
}

#[test]
fn the_compiled_snapshot_is_cached_across_restarts() {
    let cache = crate::support::scratch("fresh-component-cache");
    std::fs::remove_dir_all(&cache).unwrap();
    // Both lines come before "listening on", which `Worker::start` waits for.
    let messages = |worker: &Worker| worker.messages_after("listening on");
    let model = tiny();
    let args = ["--model", model.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()];
    let first = Worker::start(&args);
    assert!(messages(&first).iter().any(|m| m.starts_with("compiled the snapshot in")), "{:?}", messages(&first));
    drop(first);
    let second = Worker::start(&args);
    assert!(messages(&second).iter().any(|m| m.starts_with("loaded the compiled snapshot from")));
    assert!(!messages(&second).iter().any(|m| m.starts_with("compiled the")));
    // The instrumented component and the snapshot, no partial files.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
}
