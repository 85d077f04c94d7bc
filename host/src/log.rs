//! JSON-lines logging on stdout: `{"timestamp","level","message","worker_id","job_id"?}`.

use serde_json::json;
use std::io::Write;
use std::sync::OnceLock;

static WORKER_ID: OnceLock<String> = OnceLock::new();

/// Sets the `worker_id` of every later line.
pub fn set_worker_id(id: &str) {
    let _ = WORKER_ID.set(id.to_string());
}

fn line(level: &str, message: &str, job_id: Option<&str>) {
    let mut entry = json!({
        "timestamp": crate::backend::execute::rfc3339_now(),
        "level": level,
        "message": message,
        "worker_id": WORKER_ID.get().map_or("", String::as_str),
    });
    if let Some(job_id) = job_id {
        entry["job_id"] = json!(job_id);
    }
    // serde_json escapes CR and LF, so a hostile id cannot forge a second line.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{entry}");
    let _ = out.flush();
}

pub fn info(message: &str, job_id: Option<&str>) {
    line("info", message, job_id);
}

pub fn warn(message: &str, job_id: Option<&str>) {
    line("warn", message, job_id);
}

pub fn error(message: &str, job_id: Option<&str>) {
    line("error", message, job_id);
}
