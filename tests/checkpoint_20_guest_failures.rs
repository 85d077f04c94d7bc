//! Checkpoint 20: a guest that runs past its deadline or its memory fails only its own job; a
//! trapped guest is thrown away and rebuilt while `/health` says 503, and the next job succeeds.

use crate::support::kjv;
use crate::support::worker::{Worker, spawn, terminal};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_job_past_its_deadline_ends_with_timeout_and_the_guest_is_rebuilt() {
    let model = crate::support::gpt2_124m();
    let worker = Worker::start(&["--model", model.to_str().unwrap(), "--inference-timeout-sec", "1.5"]);
    // 600 prompt tokens take seconds on the 124M model; the deadline passes inside a guest call.
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(60);
    let events = worker.execute(&json!({"job_id": "slow", "prompt": prompt, "max_tokens": 10}));
    let error = terminal(&events);
    assert_eq!(error.data["code"], "TIMEOUT", "{:?}", error.data);
    assert_eq!(error.data["retriable"], true);
    let mut saw_unhealthy = false;
    let started = Instant::now();
    loop {
        let (status, body) = worker.get("/health");
        if status == 503 {
            assert_eq!(body["status"], "unhealthy");
            assert!(body["reason"].as_str().unwrap().contains("rebuilding"), "{body}");
            saw_unhealthy = true;
        } else if status == 200 && saw_unhealthy {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the guest was not rebuilt");
        std::thread::sleep(Duration::from_millis(5));
    }
    let messages = worker.messages_after("guest rebuilt");
    assert!(messages.iter().any(|m| m.starts_with("guest failed, rebuilding it: the guest ran past its deadline")));
    assert!(messages.iter().any(|m| m == "guest rebuilt"));
    let events = worker.execute(&json!({"job_id": "after", "prompt": "Hello", "max_tokens": 2}));
    assert_eq!(terminal(&events).name, "end");
}

#[test]
fn a_kv_cache_past_the_memory_cap_fails_that_job_only() {
    let model = crate::support::gpt2_124m();
    // The F32 weights are used in place: the guest needs the file plus the tokenizer and
    // activations. 40 MiB on top leaves room for short jobs only (a position costs 72 KiB).
    let cap_mb = (std::fs::metadata(&model).unwrap().len() >> 20) + 40;
    let cap = cap_mb.to_string();
    let worker = Worker::start(&["--model", model.to_str().unwrap(), "--max-memory-mb", &cap]);
    let events = worker.execute(&json!({"job_id": "big", "prompt": "Hello", "max_tokens": 1000}));
    let error = terminal(&events);
    assert_eq!(error.data["code"], "INVALID_REQUEST");
    assert!(error.data["message"].as_str().unwrap().contains("not enough memory for a KV cache"), "{:?}", error.data);
    let events = worker.execute(&json!({"job_id": "small", "prompt": "Hello", "max_tokens": 3}));
    assert_eq!(terminal(&events).name, "end");
    assert_eq!(worker.get("/health").0, 200);
}

#[test]
fn a_model_larger_than_the_memory_cap_is_refused_at_start() {
    let mut worker = spawn(&["--model", kjv().to_str().unwrap(), "--max-memory-mb", "20"]);
    let status = worker.wait_exit(Duration::from_secs(30)).expect("the worker exits");
    assert!(!status.success());
    let last = worker.lines().last().cloned().unwrap();
    assert!(last.contains("no memory for a 37283968-byte model file"), "{last}");
}
