//! Command-line flags: the four the pool manager passes, plus limits and paths.

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

/// The model bundled with the source tree, served when `--model` is not given.
pub const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/kjv-fortunes-18m/model-f16.gguf");

/// llorch-cpud: a GPT-2 CPU worker whose model runs inside a WebAssembly component.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// Name of this worker in logs and the ready callback.
    #[arg(long, default_value = "llorch-cpud")]
    pub worker_id: String,
    /// GPT-2 GGUF model file (F32, F16 or Q8_0 weights).
    #[arg(long, default_value = BUNDLED_MODEL)]
    pub model: PathBuf,
    /// Port to serve on; 0 picks a free one (logged).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where to POST the ready callback; none means no callback.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Directory for the compiled component, so restarts skip compiling.
    #[arg(long, env = "LLORCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Jobs that may wait behind the running one before /execute answers 503.
    #[arg(long, default_value_t = 16)]
    pub max_queue: usize,
    /// Wall-clock limit of one job, in seconds; past it the job ends with TIMEOUT.
    #[arg(long, default_value_t = 300.0)]
    pub inference_timeout_sec: f64,
    /// Cap on the guest's memory in MiB [default: five times the model file plus 512 MiB].
    #[arg(long)]
    pub max_memory_mb: Option<u64>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers, in seconds; slower connections are closed.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout_sec: f64,
    /// How long to keep retrying the ready callback, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub callback_timeout_sec: f64,
}

impl Args {
    /// The cache directory: the flag, else `$XDG_CACHE_HOME/llorch-cpud`, else
    /// `$HOME/.cache/llorch-cpud`, else the system temp directory.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("llorch-cpud")
    }
}
