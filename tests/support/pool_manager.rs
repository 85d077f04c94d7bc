//! A stand-in for the pool manager: a real HTTP listener that records ready callbacks, answers
//! with scripted statuses, and checks that the worker already accepts connections.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One callback as received.
#[derive(Debug, Clone)]
pub struct Callback {
    pub path: String,
    pub body: Value,
    /// Whether `GET /health` on the worker's `uri` answered 200 when the callback arrived.
    pub worker_was_serving: bool,
}

/// The listener; it answers the callbacks in turn with `statuses`, then 200.
pub struct PoolManager {
    pub url: String,
    received: Arc<Mutex<Vec<Callback>>>,
}

impl PoolManager {
    pub fn start(statuses: &[u16]) -> PoolManager {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/workers/ready", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let mut statuses = Vec::from(statuses).into_iter();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let status = statuses.next().unwrap_or(200);
                if let Some(callback) = answer(stream, status) {
                    sink.lock().unwrap().push(callback);
                }
            }
        });
        PoolManager { url, received }
    }

    /// The callbacks received so far.
    pub fn received(&self) -> Vec<Callback> {
        self.received.lock().unwrap().clone()
    }
}

fn answer(mut stream: TcpStream, status: u16) -> Option<Callback> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let body: Value = serde_json::from_slice(&body).ok()?;
    let worker_was_serving = body["uri"].as_str().is_some_and(health_answers);
    let reply = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).ok()?;
    Some(Callback { path, body, worker_was_serving })
}

fn health_answers(uri: &str) -> bool {
    reqwest::blocking::get(format!("{uri}/health")).is_ok_and(|r| r.status() == 200)
}
