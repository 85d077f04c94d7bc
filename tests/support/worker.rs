//! The real `llorch-cpud` binary (or a packed component under `wasmtime serve`) on a free port,
//! and a small HTTP + SSE client for it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `llorch-cpud pack --model MODEL --output OUTPUT`.
pub fn pack(model: &Path, output: &Path) -> std::process::Output {
    Command::new(binary())
        .args(["pack", "--model"])
        .arg(model)
        .arg("--output")
        .arg(output)
        .env("LLORCH_CACHE_DIR", super::scratch("component-cache"))
        .output()
        .expect("the binary runs")
}

/// A running worker; killed when dropped.
pub struct Worker {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_llorch-cpud")
}

/// A worker process expected to exit by itself, with its stdout lines.
pub struct Spawned {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Spawned {
    /// Waits up to `limit` for the exit, then for the last of its output.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = wait_exit(&mut self.child, limit);
        if status.is_some()
            && let Some(reader) = self.reader.take()
        {
            reader.join().expect("the log reader ends");
        }
        status
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` (plus `--port 0` and the shared component cache) for a test
/// that expects it to exit.
pub fn spawn(args: &[&str]) -> Spawned {
    spawn_command(command(args))
}

/// Starts a prepared command for a test that expects it to exit.
pub fn spawn_command(command: Command) -> Spawned {
    let (child, logs, reader) = start_process(command);
    Spawned { child, logs, reader: Some(reader) }
}

/// The binary with `args`, `--port 0` and, unless `args` name one, the shared component cache.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(["--port", "0"]);
    if !args.contains(&"--cache-dir") {
        command.arg("--cache-dir").arg(super::scratch("component-cache"));
    }
    command.args(args);
    command
}

/// Starts `command` and a thread collecting its stdout lines.
fn start_process(mut command: Command) -> (Child, Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the worker binary starts");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = logs.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, logs, reader)
}

impl Worker {
    /// Starts a worker and waits until it logs its address.
    pub fn start(args: &[&str]) -> Worker {
        Worker::start_command(command(args))
    }

    /// Starts a prepared command and waits until the worker logs its address and every slot has
    /// loaded its guest (the first is loaded before it listens, the others after), so tests see
    /// the worker at its full size.
    pub fn start_command(command: Command) -> Worker {
        let worker = Self::listening(command);
        let started = Instant::now();
        loop {
            let (_, health) = worker.get("/health");
            if health["slots_up"] == health["slots"] {
                return worker;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "slots did not load: {health} {:?}", worker.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the stock `wasmtime serve` on `component` at a free port and waits until it says
    /// where it serves; requests then go to the component's own HTTP handler.
    pub fn serve(component: &Path) -> Worker {
        let mut child = Command::new(super::wasmtime())
            .args(["serve", "--addr", "127.0.0.1:0", "-Scli"])
            .arg(component)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wasmtime CLI starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let url = loop {
            let line = stderr.next().expect("wasmtime serve says where it serves").unwrap();
            if let Some(url) = line.strip_prefix("Serving HTTP on ") {
                break url.trim_end_matches('/').to_string();
            }
        };
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in stderr.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Worker { child, url, logs }
    }

    /// Starts a prepared command and waits until the worker logs its address.
    fn listening(command: Command) -> Worker {
        let (mut child, logs, _reader) = start_process(command);
        let started = Instant::now();
        loop {
            let url = logs.lock().unwrap().iter().find_map(|line| {
                let entry: Value = serde_json::from_str(line).ok()?;
                entry["message"].as_str()?.strip_prefix("listening on ").map(str::to_string)
            });
            if let Some(url) = url {
                return Worker { child, url, logs };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("worker exited with {status} before listening: {:?}", logs.lock().unwrap());
            }
            assert!(started.elapsed() < Duration::from_secs(120), "worker did not start: {:?}", logs.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines so far, parsed.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().iter().map(|l| serde_json::from_str(l).expect("log lines are JSON")).collect()
    }

    /// The log messages once one starting with `prefix` has appeared (waiting up to 30 s).
    pub fn messages_after(&self, prefix: &str) -> Vec<String> {
        let started = Instant::now();
        loop {
            let messages: Vec<String> =
                self.logs().iter().filter_map(|l| l["message"].as_str().map(str::to_string)).collect();
            if messages.iter().any(|m| m.starts_with(prefix)) {
                return messages;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no log line {prefix:?} in {messages:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, limit)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = client().get(format!("{}{path}", self.url)).send().expect("GET succeeds");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// POSTs JSON; returns status, headers and the JSON body (Null when it is not JSON).
    pub fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post_raw(path, "application/json", serde_json::to_vec(body).unwrap())
    }

    /// POSTs raw bytes with a content type.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = client()
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("POST succeeds");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().unwrap_or(Value::Null))
    }

    /// Starts `/execute` and returns the open event stream.
    pub fn stream(&self, body: &Value) -> EventStream {
        let response =
            client().post(format!("{}/execute", self.url)).json(body).send().expect("POST /execute succeeds");
        assert_eq!(response.status(), 200, "execute answered {}", response.status());
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        EventStream::new(response)
    }

    /// Runs `/execute` to the end and returns every event.
    pub fn execute(&self, body: &Value) -> Vec<SseEvent> {
        self.stream(body).collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

/// One server-sent event, with the moment it arrived.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub data: Value,
    pub at: Instant,
}

/// Events as they arrive on an open `/execute` response.
pub struct EventStream {
    reader: BufReader<reqwest::blocking::Response>,
    /// Keep-alive comments seen so far.
    pub comments: usize,
}

impl EventStream {
    pub fn new(response: reqwest::blocking::Response) -> Self {
        EventStream { reader: BufReader::new(response), comments: 0 }
    }
}

impl Iterator for EventStream {
    type Item = SseEvent;

    /// The next event; checks the framing: `event:` line, `data:` line, blank line. Keep-alive
    /// comments (`: keep-alive` and a blank line) between events are counted and skipped.
    fn next(&mut self) -> Option<SseEvent> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line != ": keep-alive\n" {
                break;
            }
            self.comments += 1;
            let mut blank = String::new();
            self.reader.read_line(&mut blank).expect("a blank line");
            assert_eq!(blank, "\n", "comments end with a blank line");
        }
        let name = line.strip_prefix("event: ").unwrap_or_else(|| panic!("expected an event line, got {line:?}"));
        let name = name.trim_end_matches('\n').to_string();
        let mut data = String::new();
        self.reader.read_line(&mut data).expect("a data line");
        let data = data.strip_prefix("data: ").unwrap_or_else(|| panic!("expected a data line, got {data:?}"));
        let data: Value = serde_json::from_str(data.trim_end_matches('\n')).expect("data is JSON");
        let mut blank = String::new();
        self.reader.read_line(&mut blank).expect("a blank line");
        assert_eq!(blank, "\n", "events end with a blank line");
        assert_eq!(data["type"], name.as_str(), "data.type names the event");
        Some(SseEvent { name, data, at: Instant::now() })
    }
}

/// The concatenated `t` of every token event.
pub fn text_of(events: &[SseEvent]) -> String {
    events.iter().filter(|e| e.name == "token").map(|e| e.data["t"].as_str().unwrap()).collect()
}

/// The terminal event, checking there is exactly one and it is last.
pub fn terminal(events: &[SseEvent]) -> &SseEvent {
    let last = events.last().expect("at least one event");
    assert!(last.name == "end" || last.name == "error", "last event is {}", last.name);
    let terminals = events.iter().filter(|e| e.name == "end" || e.name == "error").count();
    assert_eq!(terminals, 1, "exactly one terminal event");
    last
}
