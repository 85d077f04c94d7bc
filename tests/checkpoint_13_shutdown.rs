//! Checkpoint 13: `/shutdown` and SIGTERM refuse new jobs with 503, let the running job finish,
//! and exit 0.

use crate::support::kjv;
use crate::support::worker::{Worker, terminal};
use serde_json::json;
use std::time::Duration;

fn drains(stop: impl FnOnce(&Worker)) {
    let mut worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    // 300 tokens on the bundled model take a few seconds: the stop arrives mid-job.
    let mut stream = worker.stream(&json!({"job_id": "drain", "prompt": "Hello", "max_tokens": 300, "seed": 3}));
    assert_eq!(stream.next().unwrap().name, "started");
    stop(&worker);
    std::thread::sleep(Duration::from_millis(100));
    let (status, _, body) = worker.post("/execute", &json!({"job_id": "late", "prompt": "Hi", "max_tokens": 1}));
    assert_eq!((status, body["message"].as_str()), (503, Some("the worker is shutting down")));
    let rest: Vec<_> = stream.collect();
    assert_eq!(terminal(&rest).name, "end", "the running job finishes");
    let exit = worker.wait_exit(Duration::from_secs(30)).expect("the worker exits");
    assert!(exit.success(), "{exit}");
}

#[test]
fn shutdown_route_drains_and_exits_zero() {
    drains(|worker| assert_eq!(worker.post("/shutdown", &json!({})).0, 202));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    drains(Worker::terminate);
}
