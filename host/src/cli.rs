//! Command-line flags: the four the pool manager passes, plus limits and paths, each parsed
//! with its bounds so that a bad value is refused with a message and exit 2.

use clap::Parser;
use llorch_api::request::DEFAULT_MAX_BODY_BYTES;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The model bundled with the source tree, served when `--model` is not given.
pub const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/kjv-fortunes-18m/model-q8_0.gguf");

/// Longest duration any flag takes: a week.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// llorch-cpud: a GPT-2 CPU worker whose model runs inside a WebAssembly component.
#[derive(Debug, Clone, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without a command, the worker serves; `pack` writes a component with a model in it.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Name of this worker in logs and the ready callback.
    #[arg(long, default_value = "llorch-cpud")]
    pub worker_id: String,
    /// GPT-2 GGUF model file (F32, F16 or Q8_0 weights).
    #[arg(long, default_value = BUNDLED_MODEL)]
    pub model: PathBuf,
    /// Quantize F32 and F16 weights to Q8_0 as the model loads (as llama.cpp's converter
    /// does), for the faster integer product; Q8_0 files are used as they are.
    #[arg(long, value_enum)]
    pub quantize: Option<Quantize>,
    /// Port to serve on; 0 picks a free one (logged).
    #[arg(long, env = "LLORCH_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Where to POST the ready callback; none means no callback.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Private directory for the compiled component, so restarts skip compiling; it must belong
    /// to this user and be writable by nobody else [default: $XDG_CACHE_HOME/llorch-cpud or
    /// ~/.cache/llorch-cpud; without either, nothing is cached].
    #[arg(long, env = "LLORCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Guest instances serving jobs, each in its own sandbox with its own thread [default: the
    /// available cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub slots: Option<u32>,
    /// Jobs one slot runs together, advancing them one token each per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch_size: u32,
    /// `slot`: a slot's guest serves job after job. `job`: every job runs alone in a fresh
    /// guest made from the snapshot, so no byte of one job's memory can reach another's (one job
    /// per slot at a time).
    #[arg(long, value_enum, default_value_t = Isolation::Slot)]
    pub isolation: Isolation,
    /// Jobs that may wait while every slot is full before /execute answers 503.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    pub max_queue: u32,
    /// Wall-clock limit of one job, in seconds; past it the job ends with TIMEOUT between steps.
    #[arg(long, default_value = "300", value_parser = seconds)]
    pub inference_timeout_sec: Duration,
    /// Longest one guest call (a prompt chunk or a token) may run, in seconds of its thread's
    /// CPU time; a guest past it has run away and is stopped, discarded and rebuilt.
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub guest_call_timeout_sec: Duration,
    /// Cap on each guest's memory in MiB, at most wasm32's 4096 [default: five times the model
    /// file plus 512 MiB].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_memory_mb: Option<u64>,
    /// Largest request body, in bytes (at most 1 GiB).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_body_bytes: u64,
    /// Time a client has to send a request's headers, and again its body, in seconds; an idle
    /// keep-alive connection is closed after it too.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub request_timeout_sec: Duration,
    /// Most connections open at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Interval of SSE keep-alive comments on a quiet stream, in seconds.
    #[arg(long, default_value = "15", value_parser = seconds)]
    pub sse_keepalive_sec: Duration,
    /// How long to keep retrying the ready callback, in seconds.
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub callback_timeout_sec: Duration,
}

/// A weight type to quantize to at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quantize {
    #[value(name = "q8_0")]
    Q8_0,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Writes the component with the model loaded into it (a wizer snapshot): one file that
    /// `wasmtime run FILE.wasm --prompt ...` runs without a model file.
    Pack {
        /// GPT-2 GGUF model file (F32, F16 or Q8_0 weights).
        #[arg(long)]
        model: PathBuf,
        /// Where to write the component.
        #[arg(long)]
        output: PathBuf,
        /// Quantize F32 and F16 weights to Q8_0 before packing.
        #[arg(long, value_enum)]
        quantize: Option<Quantize>,
    },
}

/// What one guest instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Many jobs, one after another and batched together.
    Slot,
    /// One job, then the instance is replaced by a fresh one.
    Job,
}

impl Isolation {
    /// Jobs one slot may run at once under this isolation.
    pub fn batch_size(self, asked: u32) -> usize {
        match self {
            Isolation::Slot => asked as usize,
            Isolation::Job => 1,
        }
    }
}

/// A duration in seconds: a finite number above 0 and at most a week.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !value.is_finite() || value <= 0.0 || value > MAX_SECONDS {
        return Err(format!("must be more than 0 and at most {MAX_SECONDS} seconds (a week), got {text}"));
    }
    Ok(Duration::from_secs_f64(value))
}

impl Args {
    /// Slots to run: the flag, else one per available core.
    pub fn slots(&self) -> usize {
        self.slots.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize)
    }

    /// The cache directory: the flag, else `$XDG_CACHE_HOME/llorch-cpud`, else
    /// `$HOME/.cache/llorch-cpud`; None when neither variable is set, because a shared
    /// directory such as /tmp is no place for native code the worker will run.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = nonempty("XDG_CACHE_HOME").or_else(|| nonempty("HOME").map(|home| home.join(".cache")))?;
        Some(base.join("llorch-cpud"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_finite_positive_and_bounded() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["nan", "NaN", "inf", "-1", "0", "1e300", "604801", "ten", ""] {
            assert!(seconds(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn defaults_are_the_ones_the_component_serves_with() {
        use llorch_api::request::{DEFAULT_BODY_TIMEOUT, DEFAULT_INFERENCE_TIMEOUT};
        let args = Args::try_parse_from(["llorch-cpud"]).unwrap();
        assert_eq!(args.max_body_bytes, DEFAULT_MAX_BODY_BYTES as u64);
        assert_eq!(
            (args.request_timeout_sec, args.inference_timeout_sec),
            (DEFAULT_BODY_TIMEOUT, DEFAULT_INFERENCE_TIMEOUT)
        );
    }

    #[test]
    fn sizes_that_would_overflow_are_refused() {
        for bad in [
            &["--max-memory-mb", "18446744073709551615"][..],
            &["--max-memory-mb", "4097"],
            &["--max-queue", "18446744073709551615"],
            &["--max-queue", "-1"],
            &["--max-body-bytes", "0"],
            &["--max-connections", "0"],
            &["--slots", "0"],
            &["--batch-size", "257"],
            &["--inference-timeout-sec", "nan"],
            &["--quantize", "q4_0"],
        ] {
            let error = Args::try_parse_from(std::iter::once("llorch-cpud").chain(bad.iter().copied())).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
        let args = Args::try_parse_from(["llorch-cpud", "--max-memory-mb", "4096", "--max-queue", "65536"]).unwrap();
        assert_eq!((args.max_memory_mb, args.max_queue), (Some(4096), 65_536));
    }
}
