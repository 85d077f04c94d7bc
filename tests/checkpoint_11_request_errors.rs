//! Checkpoint 11: every way a request can be wrong gets the contract's status and a JSON body,
//! and the worker keeps serving.

use crate::support::tiny;
use crate::support::worker::Worker;
use serde_json::{Value, json};

/// A worker on the tiny model with a 64 KiB body limit.
fn worker() -> Worker {
    Worker::start(&["--model", tiny().to_str().unwrap(), "--max-body-bytes", "65536"])
}

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .expect("an errors list")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn health_reports_the_loaded_model() {
    let (status, body) = worker().get("/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["model_loaded"], true);
    assert_eq!(body["vram_bytes"], 0);
    assert_eq!(body["memory_type"], "cpu");
    assert!(body["memory_bytes"].as_u64().unwrap() > 15_000_000);
    assert_eq!(body["model"], "synthetic-gpt2-tiny");
}

#[test]
fn every_broken_rule_is_listed_with_400() {
    let (status, _, body) = worker().post(
        "/execute",
        &json!({"job_id": "", "prompt": "", "max_tokens": 0, "temperature": 2.5, "top_p": 1.5, "top_k": 50258,
                "min_p": -1, "repetition_penalty": 2.5, "stop": ["a", "b", "c", "d", "e"], "seed": -5}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        fields(&body),
        [
            "job_id",
            "prompt",
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repetition_penalty",
            "stop",
            "seed"
        ]
    );
    let temperature = &body["errors"][3];
    assert_eq!(temperature["constraint"], "range(0.0..=2.0)");
    assert_eq!(temperature["message"], "temperature must be at most 2.0 (got 2.5)");
    assert_eq!(temperature["value"], "2.5");
}

#[test]
fn numeric_fields_at_and_past_their_bounds() {
    let worker = worker();
    let base = json!({"job_id": "bounds", "prompt": "Hi", "max_tokens": 1});
    let accepted = [
        ("max_tokens", json!(1)),
        ("temperature", json!(0.0)),
        ("temperature", json!(2.0)),
        ("top_p", json!(0.0)),
        ("top_p", json!(1.0)),
        ("top_k", json!(0)),
        ("top_k", json!(50257)),
        ("min_p", json!(1.0)),
        ("repetition_penalty", json!(0.0)),
        ("repetition_penalty", json!(2.0)),
        ("seed", json!(u64::MAX)),
    ];
    for (field, value) in accepted {
        let mut body = base.clone();
        body[field] = value.clone();
        let events = worker.execute(&body);
        assert_eq!(events.last().unwrap().name, "end", "{field} = {value}");
    }
    let refused = [
        ("max_tokens", json!(2049)),
        ("max_tokens", json!(-1)),
        ("max_tokens", json!(1e30)),
        ("temperature", json!(-0.001)),
        ("top_p", json!(1.0001)),
        ("top_k", json!(50258)),
        ("top_k", json!(-1)),
        ("min_p", json!(1.5)),
        ("repetition_penalty", json!(-1.0)),
        ("seed", json!(-1)),
        ("seed", json!(1.5)),
    ];
    for (field, value) in refused {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, _, answer) = worker.post("/execute", &body);
        assert_eq!(status, 400, "{field} = {value}: {answer}");
        assert_eq!(fields(&answer), [field], "{field} = {value}");
    }
}

#[test]
fn prompt_plus_max_tokens_past_the_context_is_refused() {
    let worker = worker();
    // The tiny model's context is 256 positions.
    let (status, _, body) =
        worker.post("/execute", &json!({"job_id": "ctx", "prompt": "Hello world", "max_tokens": 255}));
    assert_eq!(status, 400);
    assert_eq!(fields(&body), ["max_tokens"]);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("context length 256"), "{body}");
    let events = worker.execute(&json!({"job_id": "ctx-ok", "prompt": "Hello world", "max_tokens": 254}));
    assert_eq!(events.last().unwrap().name, "end");
}

#[test]
fn malformed_json_and_invalid_utf8_are_400() {
    let worker = worker();
    for body in [
        &b"{\"job_id\": "[..],
        b"not json",
        b"{\"job_id\": \"\xff\xfe\", \"prompt\": \"x\", \"max_tokens\": 1}",
        b"{\"a\": NaN}",
    ] {
        let (status, _, answer) = worker.post_raw("/execute", "application/json", body.to_vec());
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(answer["errors"][0]["constraint"], "json");
    }
}

#[test]
fn wrong_types_and_missing_fields_are_422() {
    let worker = worker();
    for body in [
        json!({"prompt": "x", "max_tokens": 1}),
        json!({"job_id": "j", "prompt": 5, "max_tokens": 1}),
        json!({"job_id": "j", "prompt": "x", "max_tokens": "many"}),
        json!({"job_id": "j", "prompt": "x", "max_tokens": 1, "stop": "not a list"}),
        json!([1, 2, 3]),
    ] {
        let (status, _, answer) = worker.post("/execute", &body);
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["errors"].is_array());
    }
}

#[test]
fn wrong_or_missing_content_type_is_415() {
    let worker = worker();
    let body = br#"{"job_id": "j", "prompt": "x", "max_tokens": 1}"#.to_vec();
    for content_type in ["text/plain", "", "application/x-www-form-urlencoded"] {
        let (status, _, answer) = worker.post_raw("/execute", content_type, body.clone());
        assert_eq!(status, 415, "{content_type:?}");
        assert_eq!(answer["error"], "UNSUPPORTED_MEDIA_TYPE");
    }
    let (status, _, _) = worker.post_raw("/execute", "application/json; charset=utf-8", body);
    assert_eq!(status, 200);
}

#[test]
fn a_body_over_the_limit_is_413() {
    let worker = worker();
    let prompt = "a".repeat(70_000);
    let (status, _, answer) = worker.post("/execute", &json!({"job_id": "big", "prompt": prompt, "max_tokens": 1}));
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "PAYLOAD_TOO_LARGE");
    assert_eq!(worker.get("/health").0, 200);
}
