//! Prometheus metrics, served by `GET /metrics` in the OpenMetrics text format. Names follow
//! vLLM's (`vllm:time_to_first_token_seconds`, `vllm:num_requests_running`, ...) in this
//! worker's own `llorch:` namespace, the way llama.cpp's `llamacpp:` ones do, so a dashboard
//! built for either carries over by its prefix.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The worker's metrics; cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub e2e_request_latency: Histogram,
    pub queue_time: Histogram,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    pub requests_running: Gauge,
    pub requests_waiting: Gauge,
    pub slots_busy: Gauge,
    /// Finished jobs by `reason`: the `stop_reason` of an `end` or the `code` of an `error`.
    pub requests_finished: Family<Vec<(&'static str, &'static str)>, Counter>,
    pub guest_rebuilds: Counter,
    pub guest_memory_bytes: Gauge<u64, AtomicU64>,
}

/// Buckets from 1 ms to about 65 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            time_to_first_token: latency_buckets(),
            inter_token_latency: latency_buckets(),
            e2e_request_latency: latency_buckets(),
            queue_time: latency_buckets(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            requests_running: Gauge::default(),
            requests_waiting: Gauge::default(),
            slots_busy: Gauge::default(),
            requests_finished: Family::default(),
            guest_rebuilds: Counter::default(),
            guest_memory_bytes: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "llorch:time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token",
            m.time_to_first_token.clone(),
        );
        r.register(
            "llorch:inter_token_latency_seconds",
            "Time between two generated tokens of a request",
            m.inter_token_latency.clone(),
        );
        r.register(
            "llorch:e2e_request_latency_seconds",
            "Time from a request's arrival to its last event",
            m.e2e_request_latency.clone(),
        );
        r.register(
            "llorch:request_queue_time_seconds",
            "Time a request waited in the queue before it ran",
            m.queue_time.clone(),
        );
        r.register("llorch:prompt_tokens", "Prompt tokens processed", m.prompt_tokens.clone());
        r.register("llorch:generation_tokens", "Tokens generated", m.generation_tokens.clone());
        r.register("llorch:num_requests_running", "Requests running in a slot", m.requests_running.clone());
        r.register("llorch:num_requests_waiting", "Requests queued for a slot", m.requests_waiting.clone());
        r.register("llorch:slots_busy", "Inference slots running a request", m.slots_busy.clone());
        r.register(
            "llorch:request_finished",
            "Requests finished, by end reason or error code",
            m.requests_finished.clone(),
        );
        r.register("llorch:guest_rebuilds", "Guest instances rebuilt after a failure", m.guest_rebuilds.clone());
        r.register("llorch:guest_memory_bytes", "Linear memory of the guest", m.guest_memory_bytes.clone());
        m
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn finished(&self, reason: &'static str) {
        self.requests_finished.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Records `elapsed` in `histogram`.
    pub fn observe(histogram: &Histogram, elapsed: Duration) {
        histogram.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
