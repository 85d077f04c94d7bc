//! Checkpoint 30: a packed component is a worker on its own under the stock `wasmtime serve`:
//! `/health`, `/execute`, `/tokenize` and `/detokenize` answer what the host's worker answers for
//! the same requests (events, rules, error bodies), the events stream as they are generated, and
//! each request has a fresh instance.

use crate::support::worker::{Worker, pack, terminal, text_of};
use crate::support::{kjv, scratch};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The bundled Q8_0 model.
fn model() -> PathBuf {
    kjv().with_file_name("model-q8_0.gguf")
}

/// The bundled Q8_0 model packed into the component, once per test run.
fn packed() -> &'static PathBuf {
    static PACKED: OnceLock<PathBuf> = OnceLock::new();
    PACKED.get_or_init(|| {
        let packed = scratch("serve").join("kjv.wasm");
        let output = pack(&model(), &packed);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        packed
    })
}

/// An event's data without what differs from run to run (the start time and the decode time).
fn comparable(events: &[crate::support::worker::SseEvent]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|e| {
            let mut data = e.data.clone();
            for varying in ["started_at", "decode_time_ms"] {
                data.as_object_mut().unwrap().remove(varying);
            }
            (e.name.clone(), data)
        })
        .collect()
}

#[test]
fn wasmtime_serve_answers_what_the_host_answers() {
    let served = Worker::serve(packed());
    let model = model();
    let host = Worker::start(&["--model", model.to_str().unwrap(), "--slots", "1"]);

    let (status, health) = served.get("/health");
    assert_eq!(status, 200, "{health}");
    let (_, host_health) = host.get("/health");
    for field in ["status", "model_loaded", "model", "memory_type", "vram_bytes"] {
        assert_eq!(health[field], host_health[field], "{field}");
    }

    for request in [
        json!({"job_id": "sampled", "prompt": "Love is", "max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "seed": 5}),
        json!({"job_id": "greedy", "prompt": "And the LORD said", "max_tokens": 60, "temperature": 0, "stop": [" LORD"], "seed": 3}),
        json!({"job_id": "penalised", "prompt": "Fortune", "max_tokens": 30, "top_k": 40, "repetition_penalty": 1.3, "min_p": 0.05, "seed": 9}),
    ] {
        let (ours, theirs) = (served.execute(&request), host.execute(&request));
        assert_eq!(terminal(&ours).name, "end");
        assert!(!text_of(&ours).is_empty());
        assert_eq!(comparable(&ours), comparable(&theirs), "{request}");
    }

    let long_prompt = "In the beginning God created the heaven and the earth. ".repeat(40);
    let too_large = format!(r#"{{"job_id":"big","prompt":"{}","max_tokens":1}}"#, "a".repeat(1 << 20));
    let raw_requests: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/execute", "application/json", br#"{"job_id": "x", "prompt":"#.to_vec()),
        ("/execute", "application/json", br#"{"job_id": "x", "prompt": 5, "max_tokens": 1}"#.to_vec()),
        ("/execute", "application/json", b"\xff\xfe".to_vec()),
        ("/execute", "text/plain", br#"{"job_id": "x", "prompt": "a", "max_tokens": 1}"#.to_vec()),
        ("/execute", "application/json", too_large.into_bytes()),
        (
            "/execute",
            "application/json",
            json!({"job_id": "", "prompt": "", "max_tokens": 0, "temperature": 2.5, "top_p": -0.1,
                "top_k": 60000, "min_p": 1.5, "repetition_penalty": 3, "stop": ["", "a"], "seed": -1})
            .to_string()
            .into_bytes(),
        ),
        (
            "/execute",
            "application/json",
            json!({"job_id": "ctx", "prompt": long_prompt, "max_tokens": 2000}).to_string().into_bytes(),
        ),
        ("/tokenize", "application/json", json!({"text": "In the beginning, héllo 🌍"}).to_string().into_bytes()),
        ("/tokenize", "application/json", json!({"text": "x".repeat(32769)}).to_string().into_bytes()),
        ("/tokenize", "application/json", json!({"txt": "a"}).to_string().into_bytes()),
        ("/detokenize", "application/json", json!({"tokens": [818, 262, 3726, 0, 50256]}).to_string().into_bytes()),
        (
            "/detokenize",
            "application/json",
            json!({"tokens": (50250..50290).collect::<Vec<u32>>()}).to_string().into_bytes(),
        ),
        ("/detokenize", "application/json", json!({"tokens": [-1]}).to_string().into_bytes()),
    ];
    for (path, content_type, body) in raw_requests {
        let (status, _, answer) = served.post_raw(path, content_type, body.clone());
        let (host_status, _, host_answer) = host.post_raw(path, content_type, body.clone());
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        assert_eq!((status, &answer), (host_status, &host_answer), "{path} {content_type} {shown}");
        assert_ne!(answer, Value::Null, "{path} {shown}: the answer is JSON");
    }
    for path in ["/nope", "/execute"] {
        assert_eq!(served.get(path), host.get(path), "GET {path}");
    }
}

#[test]
fn events_stream_while_the_job_runs() {
    let served = Worker::serve(packed());
    let memory = |served: &Worker| served.get("/health").1["memory_bytes"].as_u64().unwrap();
    let fresh = memory(&served);
    let request =
        json!({"job_id": "streamed", "prompt": "In the beginning", "max_tokens": 480, "temperature": 0.8, "seed": 1});
    let mut stream = served.stream(&request);
    assert_eq!(stream.next().unwrap().name, "started");
    let first = stream.next().unwrap();
    assert_eq!(first.name, "token");
    let rest: Vec<_> = stream.collect();
    let end = terminal(&rest);
    assert_eq!(end.data["tokens_out"], 480);
    // Sent as generated, the events after the first token spread over most of the decoding
    // time the component reports; a body sent whole would bring them all at once.
    let decode_ms = end.data["decode_time_ms"].as_u64().unwrap() as f64;
    let spread_ms = (end.at - first.at).as_secs_f64() * 1000.0;
    assert!(spread_ms > decode_ms / 2.0, "{spread_ms:.0} ms between the first token and the end of {decode_ms} ms");
    // Every request has a fresh instance: the memory that job grew is not the next request's,
    // while the same job grows the one instance of a host slot.
    assert_eq!(memory(&served), fresh);
    let model = model();
    let host = Worker::start(&["--model", model.to_str().unwrap(), "--slots", "1"]);
    let before = memory(&host);
    host.execute(&request);
    assert!(memory(&host) > before);
}

#[test]
fn a_body_that_stops_arriving_gets_the_hosts_408_while_others_are_served() {
    let served = Worker::serve(packed());
    let mut slow = TcpStream::connect(served.url.trim_start_matches("http://")).unwrap();
    let head = "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    slow.write_all(format!("{head}{{\"job_id\":").as_bytes()).unwrap();
    assert_eq!(served.get("/health").0, 200, "another client is served meanwhile");
    // The host's default: the body must arrive within 10 s.
    slow.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"REQUEST_TIMEOUT","message":"the request body did not arrive within 10 s"}"#),
        "{answer}"
    );
}
