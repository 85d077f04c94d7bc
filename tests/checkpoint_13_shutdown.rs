//! Checkpoint 13: `/shutdown` and SIGTERM refuse new jobs with 503 while `/health` says
//! "draining", let the running job finish, and exit 0; a job still tokenizing when the
//! shutdown begins is refused, so exactly the jobs active at that moment run.

use crate::support::kjv;
use crate::support::worker::{EventStream, Worker, terminal};
use serde_json::json;
use std::time::Duration;

fn drains(stop: impl FnOnce(&Worker)) {
    let mut worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    // 300 tokens on the bundled model take a few seconds: the stop arrives mid-job.
    let mut stream = worker.stream(&json!({"job_id": "drain", "prompt": "Hello", "max_tokens": 300, "seed": 3}));
    assert_eq!(stream.next().unwrap().name, "started");
    stop(&worker);
    worker.messages_after("shutting down");
    let (status, _, body) = worker.post("/execute", &json!({"job_id": "late", "prompt": "Hi", "max_tokens": 1}));
    assert_eq!((status, body["message"].as_str()), (503, Some("the worker is shutting down")));
    let (status, health) = worker.get("/health");
    assert_eq!((status, health["status"].as_str()), (503, Some("draining")), "{health}");
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

#[test]
fn jobs_still_tokenizing_when_the_shutdown_begins_are_refused() {
    let mut worker = Worker::start(&["--model", crate::support::gpt2_124m().to_str().unwrap()]);
    // A long prefill: its prompt chunks take about a second each, and other requests are
    // tokenized only between chunks, so the late jobs below are still tokenizing when the
    // shutdown arrives.
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(30);
    let mut running = worker.stream(&json!({"job_id": "running", "prompt": prompt, "max_tokens": 1}));
    assert_eq!(running.next().unwrap().name, "started");
    let late: Vec<_> = (0..3)
        .map(|i| {
            let url = worker.url.clone();
            std::thread::spawn(move || {
                let body = json!({"job_id": format!("late-{i}"), "prompt": "Hi", "max_tokens": 1});
                let response = reqwest::blocking::Client::new().post(format!("{url}/execute")).json(&body).send();
                let response = response.unwrap();
                match response.status().as_u16() {
                    200 => Some(EventStream::new(response).collect::<Vec<_>>()),
                    503 => None,
                    other => panic!("late job answered {other}"),
                }
            })
        })
        .collect();
    let (status, _, body) = worker.post("/shutdown", &json!({}));
    assert_eq!(status, 202);
    let active = body["active_jobs"].as_u64().expect("the shutdown answer counts the active jobs");
    let accepted: Vec<_> = late.into_iter().filter_map(|t| t.join().unwrap()).collect();
    for events in &accepted {
        assert_eq!(terminal(events).name, "end", "an accepted job finishes");
    }
    assert_eq!(accepted.len() as u64 + 1, active, "only the jobs active when the shutdown began may run");
    assert_eq!(terminal(&running.collect::<Vec<_>>()).name, "end");
    assert!(worker.wait_exit(Duration::from_secs(60)).expect("the worker exits").success());
}
