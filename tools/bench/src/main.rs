//! `llorch-bench`: prefill and decode speed and peak memory of the component under wasmtime and
//! of the same model code built natively, side by side, with llama.cpp's `llama-bench` when one
//! is given; also writes the synthetic GPT-2 124M model in F32, F16 and Q8_0 to measure on.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use llorch_cpud::backend::PROMPT_BUDGET;
use llorch_cpud::backend::component_cache::ComponentCache;
use llorch_cpud::backend::guest::{Guest, GuestLimits};
use llorch_cpud::backend::model_file::ModelFile;
use llorch_cpud::backend::runtime::Runtime;
use llorch_cpud::backend::wit::{self, Step};
use llorch_guest::batch::Batch;
use llorch_guest::generation::{self, GenerateOptions};
use llorch_guest::model::{LoadOptions, Model};
use llorch_guest::sampler::SamplingParams;
use llorch_testkit::gguf_writer::WeightType;
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
    /// Rounds, each a run of the component and one of llama-bench (the native build makes as many
    /// runs in one process); the medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
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
    /// Batched throughput, like llama.cpp's `llama-batched-bench`: B sequences of `--npp` prompt
    /// tokens and `--ntg` generated tokens run together, for every B in `--npl`, split over each
    /// slot count in `--slots` (one guest instance and thread per slot).
    Batched {
        model: PathBuf,
        #[arg(long, default_value_t = 128)]
        npp: usize,
        #[arg(long, default_value_t = 128)]
        ntg: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
        npl: Vec<usize>,
        /// Slot counts [default: 1 and the available cores].
        #[arg(long, value_delimiter = ',')]
        slots: Vec<usize>,
        /// llama.cpp's llama-batched-bench, run on the same file with threads = slots.
        #[arg(long, env = "LLAMA_BATCHED_BENCH")]
        llama_batched_bench: Option<PathBuf>,
        #[arg(long, default_value = "target/bench-cache")]
        cache_dir: PathBuf,
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

impl Measurement {
    /// The median of each figure over `rounds`.
    fn median(rounds: &[Measurement]) -> Measurement {
        let of = |f: fn(&Measurement) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
        Measurement {
            load_s: of(|m| m.load_s),
            prefill_tps: of(|m| m.prefill_tps),
            decode_tps: of(|m| m.decode_tps),
            peak_rss_bytes: of(|m| m.peak_rss_bytes as f64) as u64,
            guest_memory_bytes: of(|m| m.guest_memory_bytes as f64) as u64,
        }
    }
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
        Some(Subcommands::Batched { model, npp, ntg, npl, slots, llama_batched_bench, cache_dir }) => {
            let slots = if slots.is_empty() {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                if cores > 1 { vec![1, cores] } else { vec![1] }
            } else {
                slots
            };
            batched(&model, npp, ntg, &npl, &slots, llama_batched_bench.as_deref(), &cache_dir)
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
        llorch_testkit::synthetic::write_gguf(reference, tokenizer, kind, &path)?;
        println!("{} ({} bytes)", path.display(), std::fs::metadata(&path)?.len());
    }
    Ok(())
}

/// Runs every measurement in a child process and prints the table.
fn compare(args: &Args) -> Result<()> {
    if args.models.is_empty() {
        bail!("name at least one GGUF model file (see --help)");
    }
    println!("machine: {}; one thread; {} rounds, medians", cpu_name(), args.runs);
    println!("prefill = {} prompt tokens, decode = {} generated tokens; tok/s", args.prompt_tokens, args.gen_tokens);
    println!();
    println!("| model | engine | load s | prefill tok/s | decode tok/s | peak RSS MiB | guest memory MiB |");
    println!("|---|---|---|---|---|---|---|");
    for model in &args.models {
        let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        // The component and llama-bench take turns, a run each, so that the machine's load, which
        // moves from minute to minute, meets both alike.
        let (mut rounds, mut llama_rounds) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            rounds.push(measure_in_child(Engine::Wasm, model, args, 1)?);
            if let Some(llama) = &args.llama_bench {
                llama_rounds.push(llama_bench(llama, model, args)?);
            }
        }
        let wasm = Measurement::median(&rounds);
        let native = measure_in_child(Engine::Native, model, args, args.runs as usize)?;
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
        if !llama_rounds.is_empty() {
            let of_rounds = |f: &dyn Fn(&Measurement, &(f64, f64)) -> f64| {
                median(&mut rounds.iter().zip(&llama_rounds).map(|(m, l)| f(m, l)).collect::<Vec<_>>())
            };
            let (pp, tg) = (of_rounds(&|_, l| l.0), of_rounds(&|_, l| l.1));
            println!("| {name} | llama-bench | | {pp:.1} | {tg:.1} | | |");
            // Each round's own ratio, then their median: a round's two runs met the same load.
            println!(
                "| {name} | wasm / llama.cpp | | {:.2} | {:.2} | | |",
                of_rounds(&|m, l| m.prefill_tps / l.0),
                of_rounds(&|m, l| m.decode_tps / l.1)
            );
        }
    }
    if args.llama_bench.is_none() {
        println!();
        println!("(no llama-bench given: pass --llama-bench PATH or set LLAMA_BENCH for the llama.cpp columns)");
    }
    Ok(())
}

/// One row of the batched table: B sequences on some slots.
struct BatchedRow {
    prefill_s: f64,
    decode_s: f64,
    total_s: f64,
    decoded: usize,
}

fn batched(
    model: &Path,
    npp: usize,
    ntg: usize,
    npl: &[usize],
    slots: &[usize],
    llama: Option<&Path>,
    cache_dir: &Path,
) -> Result<()> {
    let cache = ComponentCache::open(cache_dir)?;
    let runtime = Runtime::new(Some(cache))?;
    let limits = GuestLimits { memory_bytes: 4 << 30, load_timeout: Duration::from_secs(600) };
    let file = ModelFile::open(model, limits.memory_bytes)?;
    let most = slots.iter().copied().max().unwrap_or(1);
    let mut guests = (0..most)
        .map(|_| Guest::load(&runtime, &file, &limits, Arc::new(AtomicU64::new(0))).map_err(|e| anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let prompt = prompt_ids(guests[0].tokenize(PROMPT_TEXT, deadline).map_err(|e| anyhow!("{e}"))?, npp);
    let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    println!("machine: {}; {name}; {npp} prompt + {ntg} generated tokens per sequence", cpu_name());
    println!("S_PP = prompt tokens / time to every first token; S_TG = tokens after it / the rest; S = all / all");
    println!();
    println!("| engine | slots (threads) | B | T_PP s | S_PP tok/s | T_TG s | S_TG tok/s | T s | S tok/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in slots {
        for &b in npl {
            let row = run_batched(&mut guests[..n], &prompt, b, ntg)?;
            println!(
                "| wasm | {n} | {b} | {:.3} | {:.1} | {:.3} | {:.1} | {:.3} | {:.1} |",
                row.prefill_s,
                (b * npp) as f64 / row.prefill_s,
                row.decode_s,
                row.decoded as f64 / row.decode_s,
                row.total_s,
                (b * (npp + ntg)) as f64 / row.total_s
            );
        }
        if let Some(binary) = llama {
            for line in llama_batched_bench(binary, model, npp, ntg, npl, n)? {
                let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
                println!(
                    "| llama.cpp | {n} | {} | {:.3} | {:.1} | {:.3} | {:.1} | {:.3} | {:.1} |",
                    f("pl"),
                    f("t_pp"),
                    f("speed_pp"),
                    f("t_tg"),
                    f("speed_tg"),
                    f("t"),
                    f("speed")
                );
            }
        }
    }
    Ok(())
}

/// Runs `b` sequences of `prompt`, split as evenly as can be over `guests`, each guest on its
/// own thread; the phases end when the slowest slot's do.
fn run_batched(guests: &mut [Guest], prompt: &[u32], b: usize, ntg: usize) -> Result<BatchedRow> {
    let n = guests.len();
    let shares: Vec<usize> = (0..n).map(|i| b / n + usize::from(i < b % n)).filter(|&share| share > 0).collect();
    let start = std::sync::Barrier::new(shares.len());
    let results = std::thread::scope(|scope| {
        let threads: Vec<_> = guests
            .iter_mut()
            .zip(&shares)
            .map(|(guest, &share)| {
                let start = &start;
                scope.spawn(move || {
                    let prompts = vec![prompt; share];
                    start.wait();
                    // The whole prompt of every sequence in the first step, as llama-batched-bench does.
                    time_in_guest(guest, &prompts, ntg, (share * prompt.len()) as u32)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().map_err(|_| anyhow!("a slot thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let prefill_s = results.iter().map(|r| r.0).fold(0.0, f64::max);
    let total_s = results.iter().map(|r| r.0 + r.1).fold(0.0, f64::max);
    Ok(BatchedRow { prefill_s, decode_s: total_s - prefill_s, total_s, decoded: results.iter().map(|r| r.2).sum() })
}

/// llama-batched-bench's rows (JSON lines) on `model` with `threads` threads.
fn llama_batched_bench(
    binary: &Path,
    model: &Path,
    npp: usize,
    ntg: usize,
    npl: &[usize],
    threads: usize,
) -> Result<Vec<Value>> {
    let most = npl.iter().copied().max().unwrap_or(1);
    let list = npl.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let output = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(["-c", &(most * (npp + ntg)).to_string(), "-b", "2048", "-ub", "512"])
        .args(["-npp", &npp.to_string(), "-ntg", &ntg.to_string(), "-npl", &list])
        .args(["-t", &threads.to_string(), "--output-format", "jsonl"])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("llama-batched-bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("speed_tg").is_some())
        .collect())
}

/// `measure` in a child process, `runs` times.
fn measure_in_child(engine: Engine, model: &Path, args: &Args, runs: usize) -> Result<Measurement> {
    let engine_name = match engine {
        Engine::Wasm => "wasm",
        Engine::Native => "native",
    };
    let output = Command::new(std::env::current_exe()?)
        .args(["measure", "--engine", engine_name, "--model"])
        .arg(model)
        .args(["--runs", &runs.to_string(), "--prompt-tokens", &args.prompt_tokens.to_string()])
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

/// Times a batch of `sequences` to its end: (seconds until every sequence drew its first token,
/// seconds after that, tokens drawn after that). `step` advances the batch once.
fn time_batch(sequences: usize, mut step: impl FnMut() -> Result<Vec<(u32, StepKind)>>) -> Result<(f64, f64, usize)> {
    let started = Instant::now();
    let (mut begun, mut finished) = (std::collections::HashSet::new(), 0);
    let (mut prefill, mut decoded) = (None, 0);
    while finished < sequences {
        for (id, kind) in step()? {
            match kind {
                StepKind::Prefill => {}
                StepKind::Token if prefill.is_some() => decoded += 1,
                StepKind::Token => {
                    begun.insert(id);
                }
                StepKind::Finished => {
                    begun.insert(id);
                    finished += 1;
                }
            }
        }
        if prefill.is_none() && begun.len() == sequences {
            prefill = Some(started.elapsed());
        }
    }
    let prefill = prefill.unwrap_or_default();
    Ok((prefill.as_secs_f64(), (started.elapsed() - prefill).as_secs_f64(), decoded))
}

/// Runs `prompts` together in one batch of `guest` taking `budget` prompt tokens per step,
/// `gen_tokens` each, greedy; timed as `time_batch` does.
fn time_in_guest(guest: &mut Guest, prompts: &[&[u32]], gen_tokens: usize, budget: u32) -> Result<(f64, f64, usize)> {
    let deadline = || Instant::now() + Duration::from_secs(600);
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
    let batch = guest.batch(budget, deadline()).map_err(|e| anyhow!("{e}"))?;
    for prompt in prompts {
        guest.add(batch, prompt, &options, deadline()).map_err(|e| anyhow!("{e}"))?;
    }
    let timed = time_batch(prompts.len(), || {
        let steps = guest.step(batch, deadline()).map_err(|e| anyhow!("{e}"))?;
        Ok(steps
            .into_iter()
            .map(|s| {
                let kind = match s.step {
                    Step::Prefill(_) => StepKind::Prefill,
                    Step::Token(_) => StepKind::Token,
                    Step::Finished(_) => StepKind::Finished,
                };
                (s.id, kind)
            })
            .collect())
    });
    guest.drop_batch(batch, deadline()).map_err(|e| anyhow!("{e}"))?;
    timed
}

/// What a native step did, for timing.
fn kind(step: &generation::Step) -> StepKind {
    match step {
        generation::Step::Prefill(_) => StepKind::Prefill,
        generation::Step::Token { .. } => StepKind::Token,
        generation::Step::Finished(_) => StepKind::Finished,
    }
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
    let mut load = Vec::new();
    let memory = Arc::new(AtomicU64::new(0));
    let (mut prefill, mut decode) = match engine {
        Engine::Wasm => {
            let cache = ComponentCache::open(cache_dir)?;
            let runtime = Runtime::new(Some(cache))?;
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
            let deadline = Instant::now() + Duration::from_secs(600);
            let prompt = prompt_ids(guest.tokenize(PROMPT_TEXT, deadline).map_err(|e| anyhow!("{e}"))?, prompt_tokens);
            timed_runs(runs, prompt.len(), || time_in_guest(guest, &[&prompt], gen_tokens, PROMPT_BUDGET))?
        }
        Engine::Native => {
            let path = model.to_str().ok_or_else(|| anyhow!("model path is not UTF-8"))?;
            let mut loaded = None;
            for _ in 0..runs {
                drop(loaded.take());
                let started = Instant::now();
                loaded = Some(Arc::new(Model::open(path, LoadOptions::default())?));
                load.push(started.elapsed().as_secs_f64());
            }
            let model = loaded.ok_or_else(|| anyhow!("--runs must be at least 1"))?;
            let prompt = prompt_ids(model.tokenizer.encode(PROMPT_TEXT), prompt_tokens);
            let options =
                GenerateOptions { max_tokens: gen_tokens as u32, sampling: SamplingParams::greedy(), stop: vec![] };
            timed_runs(runs, prompt.len(), || {
                let mut batch = Batch::new(model.clone(), PROMPT_BUDGET as usize);
                batch.add(&prompt, &options)?;
                time_batch(1, || Ok(batch.step().into_iter().map(|(id, step)| (id, kind(&step))).collect()))
            })?
        }
    };
    Ok(Measurement {
        load_s: median(&mut load),
        prefill_tps: median(&mut prefill),
        decode_tps: median(&mut decode),
        peak_rss_bytes: peak_rss()?,
        guest_memory_bytes: memory.load(Ordering::Relaxed),
    })
}

/// Prefill and decode tok/s of `runs` runs of a `prompt_len`-token prompt, each timed by `run` as
/// `time_batch` times it, after one more that warms up and is not counted, as llama-bench does.
fn timed_runs(
    runs: usize,
    prompt_len: usize,
    mut run: impl FnMut() -> Result<(f64, f64, usize)>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    run()?;
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (p, d, n) = run()?;
        prefill.push(prompt_len as f64 / p);
        decode.push(n as f64 / d);
    }
    Ok((prefill, decode))
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

/// llama-bench's prefill and decode tok/s on `model` with one thread, one run after its warm-up.
fn llama_bench(binary: &Path, model: &Path, args: &Args) -> Result<(f64, f64)> {
    let output = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(["-p", &args.prompt_tokens.to_string(), "-n", &args.gen_tokens.to_string()])
        .args(["-t", "1", "-r", "1", "-o", "json"])
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
