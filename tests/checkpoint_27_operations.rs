//! Checkpoint 27: what operators use. `/metrics` parses with the official Prometheus parser and
//! counts what happened; `/v1/completions` and `/v1/models` work with the official openai
//! client, streamed and not, with OpenAI-shaped errors, and cancel on disconnect; logs follow
//! `RUST_LOG` and a reader that never reads stdout does not stall the worker.

use crate::support::worker::{Worker, spawn, terminal, text_of};
use crate::support::{kjv, reference, root, tiny};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `tests/python/<script>` with the packages scripts/setup.sh installed; returns its JSON.
fn python(script: &str, args: &[&str], stdin: &str) -> Value {
    let packages = root().join(".tools/python");
    assert!(packages.join(".installed").exists(), "{} is missing: run scripts/setup.sh", packages.display());
    let mut child = Command::new("python3")
        .arg(root().join("tests/python").join(script))
        .args(args)
        .env("PYTHONPATH", &packages)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stderr}"))
}

#[test]
fn metrics_parse_with_the_official_parser_and_count_what_happened() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap()]);
    let events = worker.execute(&json!({"job_id": "m1", "prompt": "Hello there", "max_tokens": 5, "temperature": 0}));
    let mut prompt_tokens = events[0].data["prompt_tokens"].as_u64().unwrap();
    assert_eq!(terminal(&events).data["tokens_out"], 5);
    let (status, _, _) = worker.post("/execute", &json!({"job_id": "m2", "prompt": "Hi", "max_tokens": 5000}));
    assert_eq!(status, 400, "refused before it is a job: not counted as finished");
    let mut cancelled = worker.stream(&json!({"job_id": "m3", "prompt": "Hi", "max_tokens": 200, "temperature": 1}));
    let started = cancelled.next().unwrap();
    prompt_tokens += started.data["prompt_tokens"].as_u64().unwrap();
    assert!(cancelled.any(|e| e.name == "token"), "m3 generates before it is cancelled");
    worker.post("/cancel/m3", &json!({}));
    assert_eq!(terminal(&cancelled.collect::<Vec<_>>()).data["code"], "CANCELLED");

    let response = reqwest::blocking::get(format!("{}/metrics", worker.url)).unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let samples = python("parse_metrics.py", &[], &response.text().unwrap());
    let value = |name: &str| samples[name].as_f64().unwrap_or_else(|| panic!("no sample {name} in {samples}"));
    assert_eq!(value("llorch:prompt_tokens_total{}"), prompt_tokens as f64, "both jobs' prompts");
    let generated = value("llorch:generation_tokens_total{}");
    assert!(generated >= 6.0, "{generated}");
    assert_eq!(value("llorch:request_finished_total{reason=MAX_TOKENS}"), 1.0);
    assert_eq!(value("llorch:request_finished_total{reason=CANCELLED}"), 1.0);
    assert_eq!(value("llorch:e2e_request_latency_seconds_count{}"), 2.0);
    assert_eq!(value("llorch:request_queue_time_seconds_count{}"), 2.0);
    assert_eq!(value("llorch:time_to_first_token_seconds_count{}"), 2.0);
    assert_eq!(value("llorch:inter_token_latency_seconds_count{}"), generated - 2.0);
    for idle in ["num_requests_running", "num_requests_waiting", "slots_busy", "guest_rebuilds_total"] {
        assert_eq!(value(&format!("llorch:{idle}{{}}")), 0.0, "{idle}");
    }
    let memory = worker.get("/health").1["memory_bytes"].as_f64().unwrap();
    assert_eq!(value("llorch:guest_memory_bytes{}"), memory);
}

#[test]
fn the_official_openai_client_completes_streamed_and_not() {
    let model = kjv();
    let worker = Worker::start(&["--model", model.to_str().unwrap()]);
    let prompt = reference::prompts("kjv-fortunes-18m", "reference.json")
        .into_iter()
        .find(|p| p.text.starts_with("And the LORD said unto Moses"))
        .unwrap();
    let got = python("openai_client.py", &[&worker.url, &prompt.text], "");
    assert_eq!(got["models"], json!(["kjv-fortunes-18m"]));
    // The greedy text of 8 tokens is the reference's, through /execute and both OpenAI forms.
    let events = worker.execute(&json!({"job_id": "same", "prompt": prompt.text, "max_tokens": 8, "temperature": 0}));
    let greedy = text_of(&events);
    assert!(prompt.greedy_text.starts_with(&greedy), "{greedy:?}");
    let usage =
        json!({"prompt_tokens": prompt.ids.len(), "completion_tokens": 8, "total_tokens": prompt.ids.len() + 8});
    for form in ["whole", "streamed"] {
        assert_eq!(got[form]["text"], greedy.as_str(), "{form}");
        assert_eq!(got[form]["finish_reason"], "length", "{form}");
        assert_eq!(got[form]["usage"], usage, "{form}");
    }
    assert_eq!(got["whole"]["object"], "text_completion");
    assert!(got["streamed"]["chunks"].as_u64().unwrap() >= 9, "one chunk per token, the finish, the usage");
    let (before, _) = prompt.greedy_text.split_once(", Thus").unwrap();
    assert_eq!(got["stopped"], json!({"text": before, "finish_reason": "stop"}));
    let bad = &got["bad"];
    assert_eq!(bad["status"], 400, "{bad}");
    let error = if bad["error"].get("error").is_some() { &bad["error"]["error"] } else { &bad["error"] };
    assert_eq!(error["param"], "temperature", "{bad}");
    assert_eq!(error["type"], "invalid_request_error", "{bad}");
    assert_eq!(error["code"], "invalid_value", "{bad}");
    assert!(error["message"].as_str().unwrap().contains("temperature must be at most 2.0"), "{bad}");
}

#[test]
fn openai_errors_have_the_openai_shape_and_models_are_listed() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap()]);
    let (status, _, body) = worker.post("/v1/completions", &json!({"prompt": "Hi", "n": 2}));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "n");
    let (status, _, body) = worker.post_raw("/v1/completions", "application/json", b"{not json".to_vec());
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (status, _, body) = worker.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 100_000}));
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("max_tokens")));
    let long = "word ".repeat(300);
    let (status, _, body) = worker.post("/v1/completions", &json!({"prompt": long, "max_tokens": 2000}));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{body}");
    let (status, body) = worker.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], worker.get("/health").1["model"]);
}

#[test]
fn an_openai_stream_whose_client_leaves_cancels_its_job() {
    let worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/completions", worker.url))
        .json(&json!({"prompt": "In the beginning", "max_tokens": 480, "stream": true}))
        .send()
        .unwrap();
    let mut lines = BufReader::new(response).lines();
    let first = lines.next().unwrap().unwrap();
    let chunk: Value = serde_json::from_str(first.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(chunk["object"], "text_completion");
    drop(lines);
    let started = Instant::now();
    loop {
        let ended = worker.logs().into_iter().find_map(|l| {
            let message = l["message"].as_str()?.to_string();
            message.starts_with("job ended").then_some(message)
        });
        if let Some(message) = ended {
            assert!(message.contains("CANCELLED"), "{message}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the job did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn rust_log_filters_lines() {
    let mut command = crate::support::worker::command(&["--model", "/nonexistent/model.gguf"]);
    command.env("RUST_LOG", "error");
    let mut worker = crate::support::worker::spawn_command(command);
    assert_eq!(worker.wait_exit(Duration::from_secs(30)).expect("the worker exits").code(), Some(1));
    let lines = worker.lines();
    assert_eq!(lines.len(), 1, "only the error line passes the filter: {lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["message"].as_str().unwrap().contains("/nonexistent/model.gguf"));
    // Without the filter the info lines come too.
    let mut worker = spawn(&["--model", "/nonexistent/model.gguf"]);
    worker.wait_exit(Duration::from_secs(30)).expect("the worker exits");
    assert!(worker.lines().len() > 1);
}

#[test]
fn a_stdout_nobody_reads_does_not_stall_the_worker() {
    // The pipe's buffer (64 KiB) fills after a few hundred lines; the worker must go on.
    let mut child =
        crate::support::worker::command(&["--model", tiny().to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the worker exited");
        let entry: Value = serde_json::from_str(&line).unwrap();
        if let Some(url) = entry["message"].as_str().and_then(|m| m.strip_prefix("listening on ")) {
            break url.to_string();
        }
    };
    // From here on nobody reads: each job logs three lines of about 200 bytes.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let job_id = "x".repeat(250);
    for i in 0..400 {
        let body = json!({"job_id": format!("{job_id}{i}"), "prompt": "Hi", "max_tokens": 1});
        let text = client.post(format!("{url}/execute")).json(&body).send().unwrap().text().unwrap();
        assert!(text.contains("event: end"), "job {i}: {text}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
