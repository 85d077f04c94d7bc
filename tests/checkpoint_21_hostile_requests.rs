//! Checkpoint 21: hostile clients. Trickled headers and trickled bodies are cut off while
//! others are served, idle keep-alive connections are closed, connections past the cap are
//! answered 503 and closed, absurd bodies are refused with 400, and error lists stay small
//! whatever the request holds.

use crate::support::tiny;
use crate::support::worker::Worker;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The worker's address without the scheme.
fn address(worker: &Worker) -> String {
    worker.url.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes) and returns what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(String::from_utf8_lossy(&received).into()),
        Err(_) => None,
    }
}

/// Sends `line` every 100 ms until the server closes the connection; returns how long it took
/// and what the server answered. Another client must be served meanwhile.
fn trickle_until_closed(worker: &Worker, stream: &mut TcpStream, line: impl Fn(usize) -> Vec<u8>) -> Duration {
    let started = Instant::now();
    for i in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(worker.get("/health").0, 200, "another client is served while one trickles");
        if stream.write_all(&line(i)).is_err() {
            return started.elapsed();
        }
        stream.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut buf = [0u8; 1024];
        if let Ok(n) = stream.read(&mut buf) {
            // The server answered or closed: read the rest until it closes.
            let rest = read_until_closed(stream, Duration::from_secs(5)).expect("the connection is closed");
            let answer = format!("{}{rest}", String::from_utf8_lossy(&buf[..n]));
            assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
            return started.elapsed();
        }
    }
    panic!("the trickling connection was never closed");
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_and_others_are_served_meanwhile() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--request-timeout-sec", "1"]);
    let mut slow = TcpStream::connect(address(&worker)).unwrap();
    slow.write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\n").unwrap();
    let closed_after = trickle_until_closed(&worker, &mut slow, |i| format!("X-Trickle-{i}: a\r\n").into_bytes());
    assert!(closed_after < Duration::from_secs(5), "closed after {closed_after:?}");
}

#[test]
fn a_client_trickling_its_body_gets_408_and_is_cut_off() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--request-timeout-sec", "1"]);
    let mut slow = TcpStream::connect(address(&worker)).unwrap();
    let body = br#"{"job_id":"slow","prompt":"Hello there, this body arrives a byte at a time","max_tokens":1}"#;
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    let closed_after = trickle_until_closed(&worker, &mut slow, |i| vec![body[i % body.len()]]);
    assert!(closed_after < Duration::from_secs(5), "closed after {closed_after:?}");
    let events = worker.execute(&json!({"job_id": "fine", "prompt": "x", "max_tokens": 1}));
    assert_eq!(events.last().unwrap().name, "end");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--request-timeout-sec", "1"]);
    let mut idle = TcpStream::connect(address(&worker)).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10)).expect("the idle connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn connections_past_the_cap_are_answered_503_and_closed() {
    let worker =
        Worker::start(&["--model", tiny().to_str().unwrap(), "--max-connections", "2", "--request-timeout-sec", "30"]);
    // Two connections that hold their places: a request head begun, never finished.
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(address(&worker)).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    let mut excess = TcpStream::connect(address(&worker)).unwrap();
    let answer = read_until_closed(&mut excess, Duration::from_secs(10)).expect("the excess connection is closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    // A place frees once a holder leaves; the server notices the close and serves again.
    drop(holders);
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(address(&worker)).unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(10)).unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(60), "the freed places were never reused");
    }
}

#[test]
fn ten_thousand_stop_strings_and_deep_nesting_are_refused() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap()]);
    let stops: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let (status, _, body) =
        worker.post("/execute", &json!({"job_id": "j", "prompt": "x", "max_tokens": 1, "stop": stops}));
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "stop");
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(worker.post_raw("/execute", "application/json", nested.into_bytes()).0, 400);
    let events = worker.execute(&json!({"job_id": "fine", "prompt": "x", "max_tokens": 1}));
    assert_eq!(events.last().unwrap().name, "end");
}

#[test]
fn out_of_range_token_ids_get_a_short_error_list() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap()]);
    let tokens: Vec<u32> = vec![4_000_000_000; 32_768];
    let request = serde_json::to_vec(&json!({ "tokens": tokens })).unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/detokenize", worker.url))
        .header("content-type", "application/json")
        .body(request.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer = response.bytes().unwrap();
    assert!(answer.len() < 8 * 1024, "{} bytes of errors for a {}-byte request", answer.len(), request.len());
    let body: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 17, "16 listed and one that counts the rest");
    assert_eq!(errors[0]["field"], "tokens[0]");
    assert_eq!(errors[16]["message"], "32752 more token ids are outside the vocabulary of 50257");
}
