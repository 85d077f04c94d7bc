//! Checkpoint 12: `/execute` streams `started`, `token`s and one terminal event in the
//! contract's framing, as tokens are produced; cancel and a vanished client stop the job.

use crate::support::kjv;
use crate::support::worker::{Worker, terminal, text_of};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn kjv_worker(extra: &[&str]) -> Worker {
    let model = kjv();
    let mut args = vec!["--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    Worker::start(&args)
}

/// A request that runs for a few seconds: 480 tokens on the bundled model.
fn long_job(id: &str) -> Value {
    json!({"job_id": id, "prompt": "In the beginning", "max_tokens": 480, "temperature": 0.8, "seed": 1})
}

/// Waits until `worker` logs a message about `job_id` starting with `prefix`; returns it.
fn wait_for_log(worker: &Worker, job_id: &str, prefix: &str) -> String {
    let (started, limit) = (Instant::now(), Duration::from_secs(60));
    loop {
        let end = worker.logs().into_iter().find_map(|l| {
            let message = l["message"].as_str()?;
            (l["job_id"] == job_id && message.starts_with(prefix)).then(|| message.to_string())
        });
        if let Some(message) = end {
            return message;
        }
        assert!(started.elapsed() < limit, "job {job_id} logged no {prefix:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn events_come_in_order_with_the_contract_fields_and_stream_as_produced() {
    let worker = kjv_worker(&[]);
    let events =
        worker.execute(&json!({"job_id": "order", "prompt": "And the LORD said", "max_tokens": 200, "seed": 5}));
    let started = &events[0];
    assert_eq!(started.name, "started");
    assert_eq!(started.data["job_id"], "order");
    assert_eq!(started.data["model"], "kjv-fortunes-18m");
    assert_eq!(started.data["seed"], 5);
    assert_eq!(started.data["prompt_tokens"], 4);
    assert!(started.data["started_at"].as_str().unwrap().ends_with('Z'));
    let tokens: Vec<_> = events.iter().filter(|e| e.name == "token").collect();
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(token.data["i"], i, "token indexes count from 0");
        assert!(!token.data["t"].as_str().unwrap().is_empty());
    }
    let end = terminal(&events);
    assert_eq!(end.name, "end");
    assert_eq!(end.data["stop_reason"], "MAX_TOKENS");
    assert_eq!(end.data["tokens_out"], 200);
    assert!(end.data["decode_time_ms"].as_u64().unwrap() > 0);
    assert!(end.data.get("stop_sequence_matched").is_none());
    assert!(!text_of(&events).is_empty());
}

#[test]
fn tokens_arrive_while_the_job_still_runs() {
    let worker = kjv_worker(&[]);
    let mut stream = worker.stream(&long_job("streamed"));
    assert_eq!(stream.next().unwrap().name, "started");
    // A token in hand before the job ended: cancelling it now still stops it short.
    assert_eq!(stream.next().unwrap().name, "token");
    assert_eq!(worker.post("/cancel/streamed", &json!({})).0, 202);
    let rest: Vec<_> = stream.collect();
    assert_eq!(terminal(&rest).data["code"], "CANCELLED");
}

#[test]
fn a_quiet_stream_gets_keep_alive_comments() {
    let model = crate::support::gpt2_124m();
    let worker = Worker::start(&["--model", model.to_str().unwrap(), "--sse-keepalive-sec", "0.1"]);
    // A prefill of several seconds sends no event between `started` and the first token.
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let mut stream = worker.stream(&json!({"job_id": "quiet", "prompt": prompt, "max_tokens": 1}));
    assert_eq!(stream.next().unwrap().name, "started");
    assert_eq!(stream.next().unwrap().name, "token");
    assert!(stream.comments > 0, "no keep-alive comment during the prefill");
    let rest: Vec<_> = stream.collect();
    assert_eq!(terminal(&rest).name, "end");
}

#[test]
fn cancel_by_path_ends_the_stream_with_cancelled() {
    let worker = kjv_worker(&[]);
    let mut stream = worker.stream(&long_job("cancel-me"));
    assert_eq!(stream.next().unwrap().name, "started");
    assert_eq!(stream.next().unwrap().name, "token");
    let (status, _, _) = worker.post("/cancel/cancel-me", &json!({}));
    assert_eq!(status, 202);
    let rest: Vec<_> = stream.collect();
    let last = terminal(&rest);
    assert_eq!(last.name, "error");
    assert_eq!(last.data["code"], "CANCELLED");
    assert_eq!(last.data["retriable"], false);
    let tokens = rest.iter().filter(|e| e.name == "token").count();
    assert!(tokens < 479, "the job ran to its end ({tokens} more tokens) despite the cancel");
    // Idempotent, also for jobs that are gone.
    assert_eq!(worker.post("/cancel/cancel-me", &json!({})).0, 202);
    assert_eq!(worker.post("/cancel", &json!({"job_id": "cancel-me"})).0, 202);
}

#[test]
fn cancel_by_body_ends_the_stream_with_cancelled() {
    let worker = kjv_worker(&[]);
    let mut stream = worker.stream(&long_job("cancel-body"));
    assert_eq!(stream.next().unwrap().name, "started");
    let (status, _, body) = worker.post("/cancel", &json!({"job_id": "cancel-body"}));
    assert_eq!((status, body["status"].as_str()), (202, Some("cancelling")));
    let rest: Vec<_> = stream.collect();
    assert_eq!(terminal(&rest).data["code"], "CANCELLED");
}

#[test]
fn a_client_that_disconnects_cancels_its_job_and_frees_the_worker() {
    let worker = kjv_worker(&["--slots", "1", "--batch-size", "1", "--max-queue", "0"]);
    let mut stream = worker.stream(&long_job("vanish"));
    assert_eq!(stream.next().unwrap().name, "started");
    assert_eq!(stream.next().unwrap().name, "token");
    drop(stream);
    let ended = wait_for_log(&worker, "vanish", "job ended");
    assert!(ended.contains("CANCELLED"), "{ended}");
    // The single slot is free again at once.
    let events = worker.execute(&json!({"job_id": "next", "prompt": "Amen", "max_tokens": 3}));
    assert_eq!(terminal(&events).name, "end");
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let worker = kjv_worker(&["--slots", "1", "--batch-size", "1", "--max-queue", "1"]);
    let mut running = worker.stream(&long_job("running"));
    assert_eq!(running.next().unwrap().name, "started");
    let queued = std::thread::spawn({
        let url = worker.url.clone();
        move || {
            reqwest::blocking::Client::new().post(format!("{url}/execute")).json(&long_job("queued")).send().unwrap()
        }
    });
    wait_for_log(&worker, "queued", "job queued");
    let (status, headers, body) = worker.post("/execute", &long_job("refused"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"], "UNAVAILABLE");
    // A job id already queued or running is a conflict.
    assert_eq!(worker.post("/execute", &long_job("running")).0, 409);
    // Health still answers while the slot and the queue are full.
    assert_eq!(worker.get("/health").0, 200);
    worker.post("/cancel/running", &json!({}));
    worker.post("/cancel/queued", &json!({}));
    drop(running);
    assert_eq!(queued.join().unwrap().status(), 200);
}
