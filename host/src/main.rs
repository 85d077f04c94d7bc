//! The `llorch-cpud` binary: parse flags, run the worker, exit non-zero with one log line on
//! failure.

use clap::Parser;
use llorch_cpud::cli::{Args, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    let _flush_logs_at_exit = llorch_cpud::log::init(&args.worker_id);
    if let Some(Command::Pack { model, output, quantize }) = &args.command {
        return match llorch_cpud::pack::pack(model, output, quantize.is_some(), args.cache_dir().as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(llorch_cpud::server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
