//! Checkpoint 21: hostile clients: trickled headers are cut off while others are served, and
//! absurd bodies are refused with 400 while the worker keeps serving.

use crate::support::tiny;
use crate::support::worker::Worker;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn a_slowloris_client_is_cut_off_and_others_are_served_meanwhile() {
    let worker = Worker::start(&["--model", tiny().to_str().unwrap(), "--header-timeout-sec", "1"]);
    let address = worker.url.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        // Another client is served at once while the slow one trickles.
        let asked = Instant::now();
        assert_eq!(worker.get("/health").0, 200);
        assert!(asked.elapsed() < Duration::from_millis(500));
        if slow.write_all(format!("X-Trickle-{i}: a\r\n").as_bytes()).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = slow.read(&mut buf) {
            // The server closed the connection (0), possibly after a 408 answer.
            let _ = n;
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling connection was never closed");
    assert!(closed_after < Duration::from_secs(3), "closed after {closed_after:?}");
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
