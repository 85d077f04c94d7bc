//! Logging through `tracing`: JSON lines on stdout in the contract's shape (`timestamp`, `level`
//! in lowercase, `message`, `worker_id`, then the fields of the enclosing spans such as a job's
//! `job_id`), filtered the `RUST_LOG` way (default `info`). A background thread writes the
//! lines, so a slow or stalled reader of stdout never blocks a request or a slot:
//! past a buffer of 128 Ki lines, lines are dropped instead.

use llorch_api::events::rfc3339;
use serde_json::{Map, Value, json};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// Installs the logger for this process; lines are flushed when the guard drops.
pub fn init(worker_id: &str) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(ContractJson { worker_id: worker_id.to_string() })
        .with_writer(writer);
    // A second init (tests that start several workers in one process) keeps the first.
    let _ = Registry::default().with(filter).with(layer).try_init();
    guard
}

/// Formats one event as the contract's JSON line.
struct ContractJson {
    worker_id: String,
}

impl<S, N> FormatEvent<S, N> for ContractJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut line = Map::new();
        line.insert("timestamp".into(), json!(rfc3339(std::time::SystemTime::now())));
        line.insert("level".into(), json!(event.metadata().level().as_str().to_ascii_lowercase()));
        line.insert("message".into(), fields.remove("message").unwrap_or_else(|| json!("")));
        line.insert("worker_id".into(), json!(self.worker_id));
        // The span fields were stored as JSON objects by `JsonFields`, outermost span first.
        for span in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()) {
            if let Some(stored) = span.extensions().get::<FormattedFields<N>>()
                && let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(stored)
            {
                line.extend(span_fields);
            }
        }
        line.extend(fields);
        // serde_json escapes CR and LF, so a hostile id cannot forge a second line.
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives as format arguments, whose Debug form is the text itself.
        self.0.insert(field.name().into(), json!(format!("{value:?}")));
    }
}
