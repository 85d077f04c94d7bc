//! Checkpoint 15: sampling through the real binary: the same seed and request give the same
//! tokens across jobs and restarts, a missing seed is drawn and reported, and jobs do not leak
//! state into each other.

use crate::support::kjv;
use crate::support::worker::{SseEvent, Worker, terminal, text_of};
use serde_json::{Value, json};

fn worker() -> Worker {
    Worker::start(&["--model", kjv().to_str().unwrap()])
}

fn request(id: &str, seed: Option<u64>) -> Value {
    let mut body = json!({"job_id": id, "prompt": "Blessed are", "max_tokens": 40, "temperature": 1.0,
                          "top_k": 50, "top_p": 0.95, "min_p": 0.02, "repetition_penalty": 1.1});
    if let Some(seed) = seed {
        body["seed"] = json!(seed);
    }
    body
}

fn run(worker: &Worker, body: &Value) -> (u64, String) {
    let events: Vec<SseEvent> = worker.execute(body);
    assert_eq!(terminal(&events).name, "end");
    (events[0].data["seed"].as_u64().unwrap(), text_of(&events))
}

#[test]
fn same_seed_same_text_across_jobs_and_restarts() {
    let first = worker();
    let (_, a) = run(&first, &request("a", Some(42)));
    let (_, b) = run(&first, &request("b", Some(42)));
    drop(first);
    let (_, c) = run(&worker(), &request("c", Some(42)));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let (_, other) = run(&worker(), &request("d", Some(43)));
    assert_ne!(a, other, "another seed should give other text");
}

#[test]
fn a_missing_seed_is_drawn_reported_and_reproducible() {
    let worker = worker();
    let (seed_1, text_1) = run(&worker, &request("x", None));
    let (seed_2, _) = run(&worker, &request("y", None));
    assert_ne!(seed_1, seed_2, "each job draws its own seed");
    let (seed, again) = run(&worker, &request("z", Some(seed_1)));
    assert_eq!(seed, seed_1);
    assert_eq!(again, text_1);
}

#[test]
fn jobs_in_a_row_equal_their_solo_runs() {
    let solo_1 = run(&worker(), &request("s1", Some(1))).1;
    let solo_2 = run(&worker(), &request("s2", Some(2))).1;
    let shared = worker();
    assert_eq!(run(&shared, &request("t1", Some(1))).1, solo_1);
    assert_eq!(run(&shared, &request("t2", Some(2))).1, solo_2);
    assert_eq!(run(&shared, &request("t3", Some(1))).1, solo_1);
}

#[test]
fn greedy_execute_returns_the_reference_text() {
    let worker = worker();
    for prompt in crate::support::reference::prompts("kjv-fortunes-18m", "reference.json") {
        let body = json!({"job_id": "greedy", "prompt": prompt.text, "max_tokens": 20, "temperature": 0});
        let events = worker.execute(&body);
        assert_eq!(events[0].data["prompt_tokens"], prompt.ids.len());
        assert_eq!(text_of(&events), prompt.greedy_text, "after {:?}", prompt.text);
    }
}
