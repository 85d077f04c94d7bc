//! `llorch-bench`: prefill and decode speed and peak memory of the component under wasmtime and
//! of the same model code built natively, side by side, with llama.cpp's `llama-bench` when one
//! is given; also writes the synthetic GPT-2 124M model in F32, F16 and Q8_0 to measure on.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use llorch_cpud::backend::component_cache::ComponentCache;
use llorch_cpud::backend::guest::{Guest, GuestLimits};
use llorch_cpud::backend::model_file::ModelFile;
use llorch_cpud::backend::runtime::Runtime;
use llorch_cpud::backend::wit::{self, Step};
use llorch_cpud::gguf_writer::WeightType;
use llorch_guest::generation::{self, GenerateOptions, Generation};
use llorch_guest::model::Model;
use llorch_guest::sampler::SamplingParams;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Text whose tokens, repeated, make the benchmark prompt.
const PROMPT_TEXT: &str =
    "In the beginning God created the heaven and the earth. The quick brown fox jumps over the lazy dog. ";

#[derive(Parser)]
#[command(about = "Measures the component under wasmtime, the same code natively, and llama-bench")]
struct Args {
    #[command(subcommand)]
    command: Option<Subcommands>,
    /// GGUF model files to measure.
    models: Vec<PathBuf>,
    /// Repetitions; the medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated for the decode measurement.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// llama.cpp's llama-bench binary, run on the same files with one thread.
    #[arg(long, env = "LLAMA_BENCH")]
    llama_bench: Option<PathBuf>,
    /// Directory for the compiled component.
    #[arg(long, default_value = "target/bench-cache")]
    cache_dir: PathBuf,
}

#[derive(Subcommand)]
enum Subcommands {
    /// Writes the synthetic GPT-2 124M model as F32, F16 and Q8_0 GGUF files.
    Synthesize {
        #[arg(long, default_value = "target/bench-models")]
        out_dir: PathBuf,
        /// The model's reference.json (weight formula parameters).
        #[arg(long, default_value = "models/gpt2-124m-synthetic/reference.json")]
        reference: PathBuf,
        /// A GGUF file whose GPT-2 tokenizer tables to copy.
        #[arg(long, default_value = "models/tiny-synthetic/model-f32.gguf")]
        tokenizer: PathBuf,
    },
    /// Measures one engine on one model in this process and prints JSON (used by the default
    /// command, so that each measurement has its own peak memory).
    Measure {
        #[arg(long)]
        engine: Engine,
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        runs: usize,
        #[arg(long)]
        prompt_tokens: usize,
        #[arg(long)]
        gen_tokens: usize,
        #[arg(long)]
        cache_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    Wasm,
    Native,
}

/// One engine's medians on one model.
struct Measurement {
    load_s: f64,
    prefill_tps: f64,
    decode_tps: f64,
    peak_rss_bytes: u64,
    guest_memory_bytes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Subcommands::Synthesize { out_dir, reference, tokenizer }) => synthesize(&out_dir, &reference, &tokenizer),
        Some(Subcommands::Measure { engine, model, runs, prompt_tokens, gen_tokens, cache_dir }) => {
            let m = measure(engine, &model, runs, prompt_tokens, gen_tokens, &cache_dir)?;
            println!(
                "{}",
                json!({"load_s": m.load_s, "prefill_tps": m.prefill_tps, "decode_tps": m.decode_tps,
                       "peak_rss_bytes": m.peak_rss_bytes, "guest_memory_bytes": m.guest_memory_bytes})
            );
            Ok(())
        }
        None => compare(&args),
    }
}

fn synthesize(out_dir: &Path, reference: &Path, tokenizer: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    for (kind, file) in [
        (WeightType::F32, "gpt2-124m-f32.gguf"),
        (WeightType::F16, "gpt2-124m-f16.gguf"),
        (WeightType::Q8_0, "gpt2-124m-q8_0.gguf"),
    ] {
        let path = out_dir.join(file);
        llorch_cpud::synthetic::write_gguf(reference, tokenizer, kind, &path)?;
        println!("{} ({} bytes)", path.display(), std::fs::metadata(&path)?.len());
    }
    Ok(())
}

/// Runs every measurement in a child process and prints the table.
fn compare(args: &Args) -> Result<()> {
    if args.models.is_empty() {
        bail!("name at least one GGUF model file (see --help)");
    }
    println!("machine: {}; one thread; {} runs, medians", cpu_name(), args.runs);
    println!("prefill = {} prompt tokens, decode = {} generated tokens; tok/s", args.prompt_tokens, args.gen_tokens);
    println!();
    println!("| model | engine | load s | prefill tok/s | decode tok/s | peak RSS MiB | guest memory MiB |");
    println!("|---|---|---|---|---|---|---|");
    for model in &args.models {
        let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        let wasm = measure_in_child(Engine::Wasm, model, args)?;
        let native = measure_in_child(Engine::Native, model, args)?;
        for (engine, m) in [("wasm (wasmtime)", &wasm), ("native", &native)] {
            println!(
                "| {name} | {engine} | {:.2} | {:.1} | {:.1} | {:.0} | {} |",
                m.load_s,
                m.prefill_tps,
                m.decode_tps,
                m.peak_rss_bytes as f64 / 1048576.0,
                if m.guest_memory_bytes > 0 {
                    format!("{:.0}", m.guest_memory_bytes as f64 / 1048576.0)
                } else {
                    "-".into()
                }
            );
        }
        println!(
            "| {name} | wasm / native | | {:.2} | {:.2} | | |",
            wasm.prefill_tps / native.prefill_tps,
            wasm.decode_tps / native.decode_tps
        );
        if let Some(llama) = &args.llama_bench {
            let (pp, tg) = llama_bench(llama, model, args)?;
            println!("| {name} | llama-bench | | {pp:.1} | {tg:.1} | | |");
            println!(
                "| {name} | wasm / llama.cpp | | {:.2} | {:.2} | | |",
                wasm.prefill_tps / pp,
                wasm.decode_tps / tg
            );
        }
    }
    if args.llama_bench.is_none() {
        println!();
        println!("(no llama-bench given: pass --llama-bench PATH or set LLAMA_BENCH for the llama.cpp columns)");
    }
    Ok(())
}

fn measure_in_child(engine: Engine, model: &Path, args: &Args) -> Result<Measurement> {
    let engine_name = match engine {
        Engine::Wasm => "wasm",
        Engine::Native => "native",
    };
    let output = Command::new(std::env::current_exe()?)
        .args(["measure", "--engine", engine_name, "--model"])
        .arg(model)
        .args(["--runs", &args.runs.to_string(), "--prompt-tokens", &args.prompt_tokens.to_string()])
        .args(["--gen-tokens", &args.gen_tokens.to_string(), "--cache-dir"])
        .arg(&args.cache_dir)
        .output()?;
    if !output.status.success() {
        bail!("measuring {} with {engine_name} failed: {}", model.display(), String::from_utf8_lossy(&output.stderr));
    }
    // The measurement's result is its last line; the lines before are the runtime's logs.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).context("the measurement prints JSON")?;
    let f = |k: &str| v[k].as_f64().ok_or_else(|| anyhow!("measurement lacks {k}"));
    Ok(Measurement {
        load_s: f("load_s")?,
        prefill_tps: f("prefill_tps")?,
        decode_tps: f("decode_tps")?,
        peak_rss_bytes: f("peak_rss_bytes")? as u64,
        guest_memory_bytes: f("guest_memory_bytes")? as u64,
    })
}

/// The prompt: the benchmark text's tokens repeated to `n`.
fn prompt_ids(tokens: Vec<u32>, n: usize) -> Vec<u32> {
    tokens.iter().copied().cycle().take(n).collect()
}

/// Times one generation: (prefill seconds, decode seconds, tokens decoded). Prefill ends with
/// the last `prefill` step; decode covers the token steps after it.
fn time_steps<S>(mut next: impl FnMut() -> Result<S>, classify: impl Fn(&S) -> StepKind) -> Result<(f64, f64, usize)> {
    let started = Instant::now();
    let mut prefill_done = None;
    let mut decoded = 0;
    loop {
        let step = next()?;
        match classify(&step) {
            StepKind::Prefill => prefill_done = Some(started.elapsed()),
            StepKind::Token => decoded += 1,
            StepKind::Finished => break,
        }
    }
    let prefill = prefill_done.unwrap_or_default();
    Ok((prefill.as_secs_f64(), (started.elapsed() - prefill).as_secs_f64(), decoded))
}

enum StepKind {
    Prefill,
    Token,
    Finished,
}

fn measure(
    engine: Engine,
    model: &Path,
    runs: usize,
    prompt_tokens: usize,
    gen_tokens: usize,
    cache_dir: &Path,
) -> Result<Measurement> {
    let (mut prefill, mut decode, mut load) = (Vec::new(), Vec::new(), Vec::new());
    let memory = Arc::new(AtomicU64::new(0));
    match engine {
        Engine::Wasm => {
            let cache = ComponentCache::open(cache_dir)?;
            let runtime = Runtime::new(Some(&cache))?;
            let limits = GuestLimits { memory_bytes: 4 << 30, load_timeout: Duration::from_secs(600) };
            let mut guest = None;
            for _ in 0..runs {
                // The previous guest goes first, so peak memory counts one model.
                drop(guest.take());
                let started = Instant::now();
                // As the worker starts: read and hash the file, then load it into a guest.
                let file = ModelFile::open(model, limits.memory_bytes)?;
                let loaded = Guest::load(&runtime, &file, &limits, memory.clone());
                guest = Some(loaded.map_err(|e| anyhow!("{e}"))?);
                load.push(started.elapsed().as_secs_f64());
            }
            let guest = guest.as_mut().ok_or_else(|| anyhow!("--runs must be at least 1"))?;
            let deadline = || Instant::now() + Duration::from_secs(600);
            let prompt =
                prompt_ids(guest.tokenize(PROMPT_TEXT, deadline()).map_err(|e| anyhow!("{e}"))?, prompt_tokens);
            let s = SamplingParams::greedy();
            let options = wit::GenerateOptions {
                max_tokens: gen_tokens as u32,
                sampling: wit::Sampling {
                    temperature: s.temperature,
                    top_k: s.top_k,
                    top_p: s.top_p,
                    min_p: s.min_p,
                    repetition_penalty: s.repetition_penalty,
                    seed: s.seed,
                },
                stop: vec![],
            };
            for _ in 0..runs {
                let generation = guest.generate(&prompt, &options, deadline()).map_err(|e| anyhow!("{e}"))?;
                let (p, d, n) = time_steps(
                    || guest.next(generation, deadline()).map_err(|e| anyhow!("{e}")),
                    |step| match step {
                        Step::Prefill(_) => StepKind::Prefill,
                        Step::Token(_) => StepKind::Token,
                        Step::Finished(_) => StepKind::Finished,
                    },
                )?;
                guest.finish(generation, deadline()).map_err(|e| anyhow!("{e}"))?;
                prefill.push(prompt.len() as f64 / p);
                decode.push(n as f64 / d);
            }
        }
        Engine::Native => {
            let path = model.to_str().ok_or_else(|| anyhow!("model path is not UTF-8"))?;
            let mut loaded = None;
            for _ in 0..runs {
                drop(loaded.take());
                let started = Instant::now();
                loaded = Some(Arc::new(Model::open(path)?));
                load.push(started.elapsed().as_secs_f64());
            }
            let model = loaded.ok_or_else(|| anyhow!("--runs must be at least 1"))?;
            let prompt = prompt_ids(model.tokenizer.encode(PROMPT_TEXT), prompt_tokens);
            let options =
                GenerateOptions { max_tokens: gen_tokens as u32, sampling: SamplingParams::greedy(), stop: vec![] };
            for _ in 0..runs {
                let mut generation = Generation::new(model.clone(), &prompt, &options)?;
                let (p, d, n) = time_steps(
                    || Ok(generation.next_step()),
                    |step| match step {
                        generation::Step::Prefill(_) => StepKind::Prefill,
                        generation::Step::Token { .. } => StepKind::Token,
                        generation::Step::Finished(_) => StepKind::Finished,
                    },
                )?;
                prefill.push(prompt.len() as f64 / p);
                decode.push(n as f64 / d);
            }
        }
    }
    Ok(Measurement {
        load_s: median(&mut load),
        prefill_tps: median(&mut prefill),
        decode_tps: median(&mut decode),
        peak_rss_bytes: peak_rss()?,
        guest_memory_bytes: memory.load(Ordering::Relaxed),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// This process's peak resident memory (VmHWM).
fn peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kb * 1024)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// llama-bench's prefill and decode tok/s on `model` with one thread.
fn llama_bench(binary: &Path, model: &Path, args: &Args) -> Result<(f64, f64)> {
    let output = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(["-p", &args.prompt_tokens.to_string(), "-n", &args.gen_tokens.to_string()])
        .args(["-t", "1", "-r", &args.runs.to_string(), "-o", "json"])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).context("llama-bench prints a JSON list")?;
    let speed = |key: &str| {
        results
            .iter()
            .find(|r| r[key].as_u64().unwrap_or(0) > 0)
            .and_then(|r| r["avg_ts"].as_f64())
            .ok_or_else(|| anyhow!("llama-bench reported no {key} result"))
    };
    Ok((speed("n_prompt")?, speed("n_gen")?))
}
