//! Checkpoint 24: the README's first command, run exactly as written, sets up and starts the
//! worker on the bundled model, and the README's curl example gives the transcript the README
//! shows.

use crate::support::root;
use crate::support::worker::EventStream;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The README's text.
fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The command on the line after the comment that starts with `comment` in a README code block.
fn command_after(readme: &str, comment: &str) -> String {
    let mut lines = readme.lines().skip_while(|line| !line.starts_with(comment));
    assert!(lines.next().is_some(), "the README has no line {comment:?}");
    lines.next().expect("a command follows the comment").to_string()
}

/// The JSON body and the token texts of the README's `/execute` example.
fn curl_example(readme: &str) -> (Value, Vec<String>) {
    let curl = readme.find("curl -sN localhost:8080/execute").expect("the README has the curl example");
    let body = &readme[curl..];
    let start = body.find("-d '").expect("a -d body") + 4;
    let end = start + body[start..].find('\'').expect("the body's closing quote");
    let request: Value = serde_json::from_str(&body[start..end]).expect("the example body is JSON");
    let transcript = &body[end..];
    let transcript = &transcript[..transcript.find("event: end").expect("the transcript ends")];
    let tokens = transcript
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).expect("transcript data is JSON"))
        .filter(|event| event["type"] == "token")
        .map(|event| event["t"].as_str().unwrap().to_string())
        .collect();
    (request, tokens)
}

#[test]
fn the_first_readme_command_serves_the_bundled_model_and_the_curl_example_is_real() {
    let readme = readme();
    let command = command_after(&readme, "# Set up, build and start the worker");
    assert!(command.contains("cargo run"), "{command}");
    // Exactly the README's command; only the port and the cache come from the environment, so
    // the test does not collide with a worker on 8080.
    let mut child = Command::new("bash")
        .args(["-c", &command])
        .current_dir(root())
        .env("LLORCH_PORT", "0")
        .env("LLORCH_CACHE_DIR", crate::support::scratch("component-cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("bash starts");
    let group = child.id() as i32;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let url = loop {
        let line = lines.next().expect("the worker printed its address before exiting").unwrap();
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && let Some(url) = entry["message"].as_str().and_then(|m| m.strip_prefix("listening on "))
        {
            break url.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(900), "no address after {:?}", started.elapsed());
    };
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let client = reqwest::blocking::Client::new();
    let health: Value = client.get(format!("{url}/health")).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model"], "kjv-fortunes-18m");
    let (request, want) = curl_example(&readme);
    let response = client.post(format!("{url}/execute")).json(&request).send().unwrap();
    let events: Vec<_> = EventStream::new(response).collect();
    let got: Vec<String> =
        events.iter().filter(|e| e.name == "token").map(|e| e.data["t"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, want, "the README's transcript is not what the worker sends");
    assert_eq!(events.last().unwrap().data["stop_reason"], "MAX_TOKENS");
    // SAFETY: kill has no memory effects; the group is the one this test started.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGTERM) }, 0);
    // The pipe closes once every process of the group has exited.
    let rest = rest.join().unwrap();
    let _ = child.wait();
    let last: Value = serde_json::from_str(rest.last().expect("the worker logged its stop")).unwrap();
    assert_eq!(last["message"], "stopped", "the worker drains and stops on SIGTERM: {rest:?}");
}
