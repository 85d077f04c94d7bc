//! Checkpoint 20: a job past its deadline ends with TIMEOUT between steps and the guest stays;
//! a runaway guest call is trapped, the guest is rebuilt from the snapshot taken at start (even
//! with the model file gone or changed in place) while `/health` says 503 (one slot), and the
//! next job succeeds.

use crate::support::worker::{SseEvent, Worker, terminal, text_of};
use crate::support::{RUNAWAY_LIMIT, kjv, scratch};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A prompt of about 600 tokens: several 64-token chunks of a second each on the 124M model.
fn long_prompt() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(60)
}

/// Polls `/health` on a thread until stopped; returns every status seen with its body.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(u16, Value)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl HealthWatch {
    fn start(worker: &Worker) -> Self {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let url = format!("{}/health", worker.url);
        let thread = std::thread::spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::SeqCst) {
                    let Ok(response) = client.get(&url).send() else { break };
                    let status = response.status().as_u16();
                    seen.lock().unwrap().push((status, response.json().unwrap_or(Value::Null)));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        HealthWatch { stop, seen, thread }
    }

    fn stop(self) -> Vec<(u16, Value)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// Waits until `/health` answers 200 again.
fn wait_healthy(worker: &Worker) {
    let started = Instant::now();
    while worker.get("/health").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(120), "the guest was not rebuilt: {:?}", worker.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A hard link to the 124M model in a scratch directory of its own: removing it leaves the
/// shared file in place.
fn linked_124m(name: &str) -> PathBuf {
    let dir = scratch(name);
    let path = dir.join("model.gguf");
    let _ = std::fs::remove_file(&path);
    std::fs::hard_link(crate::support::gpt2_124m(), &path).unwrap();
    path
}

#[test]
fn a_job_past_its_deadline_ends_with_timeout_and_the_guest_stays() {
    let model = crate::support::gpt2_124m();
    let worker = Worker::start(&["--model", model.to_str().unwrap(), "--inference-timeout-sec", "1.5"]);
    let health = HealthWatch::start(&worker);
    let events = worker.execute(&json!({"job_id": "slow", "prompt": long_prompt(), "max_tokens": 10}));
    let error = terminal(&events);
    assert_eq!(error.data["code"], "TIMEOUT", "{:?}", error.data);
    assert_eq!(error.data["retriable"], true);
    let events = worker.execute(&json!({"job_id": "after", "prompt": "Hello", "max_tokens": 2}));
    assert_eq!(terminal(&events).name, "end");
    let seen = health.stop();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(status, _)| *status == 200), "health left 200: {seen:?}");
    let messages = worker.messages_after("job ended: MAX_TOKENS");
    assert!(!messages.iter().any(|m| m.contains("guest failed") || m.contains("rebuilt")), "{messages:?}");
}

#[test]
fn a_runaway_guest_is_trapped_and_rebuilt_from_the_snapshot() {
    let model = linked_124m("runaway");
    let worker =
        Worker::start(&["--model", model.to_str().unwrap(), "--slots", "1", "--guest-call-timeout-sec", RUNAWAY_LIMIT]);
    // The path is gone: a rebuild that reopened it would fail.
    std::fs::remove_file(&model).unwrap();
    let events = worker.execute(&json!({"job_id": "runaway", "prompt": long_prompt(), "max_tokens": 10}));
    let error = terminal(&events);
    assert_eq!(error.data["code"], "INFERENCE_FAILED", "{:?}", error.data);
    assert_eq!(error.data["retriable"], true);
    assert!(error.data["message"].as_str().unwrap().contains("ran away"), "{:?}", error.data);
    // The slot is marked down before the job's client hears of the failure, then made again
    // from the snapshot (in milliseconds, too short for a poller of /health to see reliably).
    let messages = worker.messages_after("guest rebuilt");
    let position = |prefix: &str| messages.iter().position(|m| m.starts_with(prefix)).unwrap();
    assert!(position("guest failed, rebuilding it: the guest ran away") < position("job ended: INFERENCE_FAILED"));
    assert!(position("job ended: INFERENCE_FAILED") < position("guest rebuilt"));
    wait_healthy(&worker);
    let events = worker.execute(&json!({"job_id": "after", "prompt": "Hello", "max_tokens": 2}));
    assert_eq!(terminal(&events).name, "end");
}

/// Starts `/execute` on a thread and returns its events once it ends.
fn execute_on_thread(worker: &Worker, body: Value) -> std::thread::JoinHandle<Vec<SseEvent>> {
    let url = worker.url.clone();
    std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new().post(format!("{url}/execute")).json(&body).send().unwrap();
        assert_eq!(response.status(), 200);
        crate::support::worker::EventStream::new(response).collect()
    })
}

/// Waits until the worker logs that `job_id` was queued.
fn wait_queued(worker: &Worker, job_id: &str) {
    let started = Instant::now();
    while !worker.logs().iter().any(|l| l["job_id"] == job_id && l["message"] == "job queued") {
        assert!(started.elapsed() < Duration::from_secs(60), "{job_id} was not queued");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Overwrites bytes in the middle of `path` in place: same file, same length, other content.
fn corrupt_in_place(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let middle = file.metadata().unwrap().len() / 2;
    file.write_all_at(&[0x5a; 4096], middle).unwrap();
}

#[test]
fn a_guest_is_rebuilt_from_the_snapshot_taken_at_start_whatever_the_file_becomes() {
    let model = scratch("changed-in-place").join("model.gguf");
    std::fs::copy(crate::support::gpt2_124m(), &model).unwrap();
    let mut worker = Worker::start(&[
        "--model",
        model.to_str().unwrap(),
        "--slots",
        "1",
        "--batch-size",
        "1",
        "--guest-call-timeout-sec",
        RUNAWAY_LIMIT,
    ]);
    let greedy = json!({"job_id": "before", "prompt": "Hello", "max_tokens": 8, "temperature": 0});
    let before = worker.execute(&greedy);
    corrupt_in_place(&model);
    // One job decodes while a runaway and a short job queue behind it.
    let mut first = worker.stream(&json!({"job_id": "first", "prompt": "Hello", "max_tokens": 40}));
    assert_eq!(first.next().unwrap().name, "started");
    let runaway = execute_on_thread(&worker, json!({"job_id": "runaway", "prompt": long_prompt(), "max_tokens": 5}));
    wait_queued(&worker, "runaway");
    let queued = execute_on_thread(&worker, {
        let mut after = greedy.clone();
        after["job_id"] = json!("after");
        after
    });
    wait_queued(&worker, "after");
    assert_eq!(terminal(&first.collect::<Vec<_>>()).name, "end");
    let runaway = runaway.join().unwrap();
    assert_eq!(terminal(&runaway).data["code"], "INFERENCE_FAILED");
    // The queued job runs on the rebuilt guest, which never read the changed file.
    let after = queued.join().unwrap();
    assert_eq!(terminal(&after).name, "end", "{:?}", terminal(&after).data);
    assert_eq!(text_of(&after), text_of(&before));
    worker.messages_after("guest rebuilt");
    worker.terminate();
    assert_eq!(worker.wait_exit(Duration::from_secs(60)).and_then(|s| s.code()), Some(0));
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
    let mut worker = crate::support::worker::spawn(&["--model", kjv().to_str().unwrap(), "--max-memory-mb", "20"]);
    let status = worker.wait_exit(Duration::from_secs(30)).expect("the worker exits");
    assert!(!status.success());
    let last = worker.lines().last().cloned().unwrap();
    assert!(last.contains("no memory for a 37283968-byte model file"), "{last}");
}
