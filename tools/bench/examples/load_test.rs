//! Load test: concurrent clients send `/execute` jobs to a running worker for a fixed time and
//! the run reports how many completed, were rejected (503) or failed, and latency percentiles.
//! Every job id sent must come back with exactly one final answer (an `end` or `error` event
//! naming the job's stream, or a 503); an id without one is counted as lost.
//!
//! `cargo run -p llorch-bench --example load_test -- --url http://127.0.0.1:8080 --clients 8 --seconds 30 [--pid PID]`

use clap::Parser;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Clients sending one job after another.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long clients start new jobs.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// The serving process, whose peak memory (PSS and RSS, from /proc/PID/smaps_rollup) is
    /// sampled every 100 ms during the run and reported.
    #[arg(long)]
    pid: Option<u32>,
}

/// Peak proportional and resident set sizes of a process, in kB.
#[derive(Default)]
struct PeakMemory {
    pss_kb: u64,
    rss_kb: u64,
}

impl PeakMemory {
    /// Reads `pid`'s current sizes and keeps the larger; false once the process is gone.
    fn sample(&mut self, pid: u32) -> bool {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { return false };
        let field = |name: &str| -> u64 {
            let line = rollup.lines().find(|l| l.starts_with(name));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
        };
        self.pss_kb = self.pss_kb.max(field("Pss:"));
        self.rss_kb = self.rss_kb.max(field("Rss:"));
        true
    }
}

/// How one job went.
enum Outcome {
    Completed { latency: Duration, first_token: Option<Duration>, tokens: u64 },
    Rejected,
    Failed(String),
}

fn run_job(client: &reqwest::blocking::Client, args: &Args, id: &str) -> Outcome {
    let body =
        json!({"job_id": id, "prompt": "And it came to pass", "max_tokens": args.max_tokens, "temperature": 0.8});
    let started = Instant::now();
    let response = match client.post(format!("{}/execute", args.url)).json(&body).send() {
        Ok(response) => response,
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            return Outcome::Failed(format!("request: {e}{cause}"));
        }
    };
    match response.status().as_u16() {
        200 => {}
        503 => return Outcome::Rejected,
        status => return Outcome::Failed(format!("status {status}")),
    }
    let mut first_token = None;
    let mut started_as = None;
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else { return Outcome::Failed("stream broke".into()) };
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return Outcome::Failed(format!("bad event {data}"));
        };
        match event["type"].as_str() {
            Some("started") => started_as = event["job_id"].as_str().map(str::to_string),
            _ if started_as.as_deref() != Some(id) => {
                return Outcome::Failed(format!("the stream of {id} started as {started_as:?}"));
            }
            Some("token") if first_token.is_none() => first_token = Some(started.elapsed()),
            Some("end") => {
                let tokens = event["tokens_out"].as_u64().unwrap_or(0);
                return Outcome::Completed { latency: started.elapsed(), first_token, tokens };
            }
            Some("error") => return Outcome::Failed(format!("error event {event}")),
            _ => {}
        }
    }
    Outcome::Failed("stream ended without a terminal event".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Waits up to a minute for the worker's `/health` to answer 200.
fn wait_until_healthy(url: &str) {
    let client = reqwest::blocking::Client::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    while !client.get(format!("{url}/health")).send().is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < give_up, "{url} did not become healthy within a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let args = Arc::new(Args::parse());
    wait_until_healthy(&args.url);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Mutex::new(BTreeSet::new()));
    let stop_at = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (args, outcomes, sent) = (args.clone(), outcomes.clone(), sent.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
                let mut n = 0;
                while Instant::now() < stop_at {
                    let id = format!("load-{c}-{n}");
                    sent.lock().unwrap().insert(id.clone());
                    let outcome = run_job(&client, &args, &id);
                    if matches!(outcome, Outcome::Rejected) {
                        // The worker said Retry-After: 1.
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    outcomes.lock().unwrap().push((id, outcome));
                    n += 1;
                }
            })
        })
        .collect();
    let sampler = args.pid.map(|pid| {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = PeakMemory::default();
            while !done.load(std::sync::atomic::Ordering::SeqCst) && peak.sample(pid) {
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        (stop, thread)
    });
    let mut crashed = 0;
    for client in clients {
        crashed += usize::from(client.join().is_err());
    }
    let peak = sampler.map(|(stop, thread)| {
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        thread.join().expect("the sampler finishes")
    });
    let elapsed = started.elapsed();
    let outcomes = outcomes.lock().unwrap();
    let mut latencies = Vec::new();
    let mut first_tokens = Vec::new();
    let (mut rejected, mut tokens, mut failures) = (0, 0, Vec::new());
    let mut answered = BTreeSet::new();
    for (id, outcome) in outcomes.iter() {
        answered.insert(id.clone());
        match outcome {
            Outcome::Completed { latency, first_token, tokens: t } => {
                latencies.push(*latency);
                first_tokens.extend(*first_token);
                tokens += t;
            }
            Outcome::Rejected => rejected += 1,
            Outcome::Failed(why) => failures.push(why.clone()),
        }
    }
    latencies.sort();
    first_tokens.sort();
    let sent = sent.lock().unwrap();
    let lost: Vec<&String> = sent.difference(&answered).collect();
    println!(
        "{} clients for {} s against {} ({:.1} s with the drain)",
        args.clients,
        args.seconds,
        args.url,
        elapsed.as_secs_f64()
    );
    println!(
        "sent {}: completed {}, rejected (503) {rejected}, failed {}, lost {} (client threads crashed: {crashed})",
        sent.len(),
        latencies.len(),
        failures.len(),
        lost.len()
    );
    println!(
        "latency p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!("time to first token p50 {:?}, p99 {:?}", percentile(&first_tokens, 0.5), percentile(&first_tokens, 0.99));
    println!("throughput {:.1} tokens/s", tokens as f64 / elapsed.as_secs_f64());
    if let Some(peak) = peak {
        println!(
            "peak memory of the server: PSS {:.1} MB, RSS {:.1} MB",
            peak.pss_kb as f64 / 1e3,
            peak.rss_kb as f64 / 1e3
        );
    }
    for why in failures.iter().take(5) {
        println!("failure: {why}");
    }
    for id in lost.iter().take(5) {
        println!("lost: {id}");
    }
    if !failures.is_empty() || !lost.is_empty() || crashed > 0 || answered.len() != outcomes.len() {
        std::process::exit(1);
    }
}
