//! Checkpoint 28: many generations at once. In the component, sequences that join and leave a
//! batch draw exactly the tokens they draw alone, greedy and sampled. In the worker, jobs spread
//! over slots and batches give each job the text it gets alone; a trap in one slot fails only
//! that slot's jobs and rebuilds only it, while the other slot serves and `/health` stays 200.

use crate::support::component::{deadline, generate_all, load};
use crate::support::worker::{SseEvent, Worker, terminal, text_of};
use crate::support::{kjv, reference};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling, Step};
use serde_json::{Value, json};

fn options(max_tokens: u32, temperature: f32, seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: Sampling { temperature, top_k: 40, top_p: 0.95, min_p: 0.0, repetition_penalty: 1.1, seed },
        stop: vec![],
    }
}

#[test]
fn sequences_in_a_batch_draw_the_tokens_they_draw_alone() {
    let mut guest = load(&kjv());
    let prompts = reference::prompts("kjv-fortunes-18m", "reference.json");
    let requests: Vec<(Vec<u32>, GenerateOptions)> = prompts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [(p.ids.clone(), options(24, 0.0, 0)), (p.ids.clone(), options(16 + i as u32, 0.9, 100 + i as u64))]
        })
        .collect();
    assert!(requests.len() >= 4, "the reference has too few prompts");
    let alone: Vec<Vec<u32>> =
        requests.iter().map(|(p, o)| generate_all(&mut guest, p, o).0.iter().map(|t| t.id).collect()).collect();
    // A prompt budget of 5 tokens, so prompts take several steps beside decoding sequences,
    // and a new sequence joins every other step.
    let batch = guest.batch(5, deadline()).unwrap();
    let (mut ids, mut got) = (Vec::new(), vec![Vec::new(); requests.len()]);
    let mut finished = 0;
    for round in 0.. {
        if round % 2 == 0
            && let Some((prompt, options)) = requests.get(round / 2)
        {
            ids.push(guest.add(batch, prompt, options, deadline()).unwrap());
        }
        let steps = guest.step(batch, deadline()).unwrap();
        let moved = steps.len();
        for step in steps {
            let k = ids.iter().position(|id| *id == step.id).unwrap();
            match step.step {
                Step::Prefill(_) => {}
                Step::Token(token) => got[k].push(token.id),
                Step::Finished(_) => finished += 1,
            }
        }
        if round / 2 >= requests.len() && finished == requests.len() {
            break;
        }
        assert!(moved > 0 || round / 2 < requests.len(), "the batch stalled");
        assert!(round < 10_000, "the batch never finished");
    }
    assert_eq!(got, alone);
    assert!(got.iter().all(|ids| !ids.is_empty()));
}

fn job(id: &str, prompt: &str, seed: u64) -> Value {
    json!({"job_id": id, "prompt": prompt, "max_tokens": 30, "temperature": 0.8, "top_k": 40, "seed": seed})
}

/// Runs every body on its own thread at once; returns their events in order.
fn concurrently(worker: &Worker, bodies: &[Value]) -> Vec<Vec<SseEvent>> {
    let threads: Vec<_> = bodies
        .iter()
        .map(|body| {
            let (url, body) = (worker.url.clone(), body.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let response = client.post(format!("{url}/execute")).json(&body).send().unwrap();
                crate::support::worker::EventStream::new(response).collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_jobs_over_slots_and_batches_get_the_text_they_get_alone() {
    let kjv = kjv();
    let prompts = ["In the beginning", "Blessed are the meek", "A fortune:", "And the LORD said"];
    let bodies: Vec<Value> = (0..8).map(|i| job(&format!("job-{i}"), prompts[i % 4], 7 + i as u64)).collect();
    let alone = Worker::start(&["--model", kjv.to_str().unwrap(), "--slots", "1", "--batch-size", "1"]);
    let want: Vec<String> = bodies.iter().map(|body| text_of(&alone.execute(body))).collect();
    drop(alone);
    let worker = Worker::start(&["--model", kjv.to_str().unwrap(), "--slots", "2", "--batch-size", "4"]);
    let (status, health) = worker.get("/health");
    assert_eq!((status, health["slots"].as_u64()), (200, Some(2)), "{health}");
    let runs = concurrently(&worker, &bodies);
    for (events, want) in runs.iter().zip(&want) {
        assert_eq!(terminal(events).name, "end", "{:?}", terminal(events).data);
        assert_eq!(&text_of(events), want);
    }
    // Both slots ran jobs, several at once.
    let (_, health) = worker.get("/health");
    assert_eq!(health["slots_up"], 2);
    let logs = worker.logs();
    let started: Vec<&Value> = logs.iter().filter(|l| l["message"] == "job started").collect();
    assert_eq!(started.len(), 8, "{logs:?}");
    let mut used: Vec<u64> = started.iter().filter_map(|l| l["slot"].as_u64()).collect();
    used.sort();
    used.dedup();
    assert_eq!(used, [0, 1], "jobs did not spread over both slots: {logs:?}");
    assert!(started.iter().any(|l| l["batch"].as_u64() > Some(1)), "no slot ran two jobs at once: {logs:?}");
}

#[test]
fn a_trap_in_one_slot_leaves_the_other_serving() {
    let model = crate::support::gpt2_124m();
    // A 64-token prompt chunk of the 124M model runs past the limit; one decode step stays within it.
    let worker = Worker::start(&[
        "--model",
        model.to_str().unwrap(),
        "--slots",
        "2",
        "--guest-call-timeout-sec",
        crate::support::RUNAWAY_LIMIT,
    ]);
    let mut steady = worker.stream(&json!({"job_id": "steady", "prompt": "Hello", "max_tokens": 60}));
    assert_eq!(steady.next().unwrap().name, "started");
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(30);
    let events = worker.execute(&json!({"job_id": "runaway", "prompt": long, "max_tokens": 5}));
    let error = terminal(&events);
    assert_eq!(error.data["code"], "INFERENCE_FAILED", "{:?}", error.data);
    // The other slot keeps serving while the failed one is rebuilt: health stays 200.
    let (status, health) = worker.get("/health");
    assert_eq!(status, 200, "{health}");
    let rest: Vec<SseEvent> = steady.collect();
    assert_eq!(terminal(&rest).name, "end", "{:?}", terminal(&rest).data);
    worker.messages_after("guest rebuilt");
    assert_eq!(worker.get("/health").1["slots_up"], 2);
    let failures: Vec<Value> = worker
        .logs()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("guest failed")))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
}

#[test]
fn with_isolation_per_job_every_job_gets_a_fresh_guest() {
    let kjv = kjv();
    let worker = Worker::start(&["--model", kjv.to_str().unwrap(), "--slots", "1", "--isolation", "job"]);
    let body = job("first", "In the beginning", 3);
    let first = worker.execute(&body);
    let second = worker.execute(&json!({"job_id": "second", "prompt": "Blessed are the meek", "max_tokens": 30}));
    let again = worker.execute(&{
        let mut body = body.clone();
        body["job_id"] = json!("again");
        body
    });
    for events in [&first, &second, &again] {
        assert_eq!(terminal(events).name, "end", "{:?}", terminal(events).data);
    }
    assert_eq!(text_of(&first), text_of(&again));
    // Each job left its guest behind (replaced once its end was sent); the next one ran in a
    // new instance of the snapshot.
    let renewed = || worker.logs().iter().filter(|l| l["message"] == "guest renewed").count();
    let started = std::time::Instant::now();
    while renewed() < 3 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", worker.logs());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(renewed(), 3);
}
