//! The benchmark commands run end to end on the tiny model: the default comparison reports both
//! engines and takes turns with llama-bench, the batched mode a row per batch size (the numbers
//! are for the README, not for asserting).

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bench(args: &[&str]) -> String {
    let cache = root().join("target/test-scratch/bench-cache");
    let tiny = root().join("models/tiny-synthetic/model-f32.gguf");
    let output: Output = Command::new(env!("CARGO_BIN_EXE_llorch-bench"))
        .args(args)
        .arg("--cache-dir")
        .arg(&cache)
        .arg(&tiny)
        .env_remove("LLAMA_BENCH")
        .env_remove("LLAMA_BATCHED_BENCH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The number in column `column` of the first row containing `row`.
fn cell(stdout: &str, row: &str, column: usize) -> f64 {
    let line = stdout.lines().find(|l| l.contains(row)).unwrap_or_else(|| panic!("no row {row:?} in\n{stdout}"));
    line.split('|').nth(column).unwrap().trim().parse().unwrap()
}

#[test]
fn bench_reports_wasm_and_native_rows() {
    let stdout = bench(&["--runs", "1", "--prompt-tokens", "8", "--gen-tokens", "4"]);
    for row in
        ["| model-f32.gguf | wasm (wasmtime) |", "| model-f32.gguf | native |", "| model-f32.gguf | wasm / native |"]
    {
        assert!(stdout.contains(row), "no row {row:?} in\n{stdout}");
    }
    assert!(cell(&stdout, "wasm (wasmtime)", 5) > 0.0);
}

#[test]
fn batched_mode_reports_a_row_per_batch_size() {
    let stdout = bench(&["batched", "--npp", "8", "--ntg", "4", "--npl", "1,3", "--slots", "1,2"]);
    for row in ["| wasm | 1 | 1 |", "| wasm | 1 | 3 |", "| wasm | 2 | 1 |", "| wasm | 2 | 3 |"] {
        assert!(cell(&stdout, row, 7) > 0.0, "{row}: S_TG in\n{stdout}");
    }
}

#[test]
fn llama_bench_runs_once_a_round_between_the_components_runs() {
    // A stand-in for llama-bench that logs its arguments and reports fixed speeds.
    let scratch = root().join("target/test-scratch/fake-llama-bench");
    std::fs::create_dir_all(&scratch).unwrap();
    let (script, log) = (scratch.join("llama-bench"), scratch.join("calls.log"));
    let _ = std::fs::remove_file(&log);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho '[{{\"n_prompt\": 8, \"n_gen\": 0, \"avg_ts\": 500.0}}, {{\"n_prompt\": 0, \"n_gen\": 4, \"avg_ts\": 100.0}}]'\n",
            log.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();

    let stdout =
        bench(&["--runs", "3", "--prompt-tokens", "8", "--gen-tokens", "4", "--llama-bench", script.to_str().unwrap()]);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().count(), 3, "one llama-bench run a round:\n{calls}");
    assert!(calls.lines().all(|c| c.contains("-t 1 -r 1")), "{calls}");
    assert_eq!(cell(&stdout, "| llama-bench |", 4), 500.0);
    assert_eq!(cell(&stdout, "| llama-bench |", 5), 100.0);
    // The llama.cpp speeds are the same every round, so the median of the rounds' ratios is the
    // component's median over them. The table prints that median to 0.1 and the ratio to 0.01,
    // so the ratio is checked to what those roundings leave: ±0.05 / speed and ±0.005.
    let line = stdout.lines().find(|l| l.contains("| model-f32.gguf | wasm / llama.cpp | | ")).unwrap();
    for (column, speed) in [(4, 500.0), (5, 100.0)] {
        let (ratio, wasm) = (cell(line, "wasm / llama.cpp", column), cell(&stdout, "wasm (wasmtime)", column));
        assert!((ratio - wasm / speed).abs() <= 0.05 / speed + 0.005 + 1e-9, "{line} against {wasm} / {speed}");
    }
}

#[test]
fn a_comparison_needs_at_least_one_round() {
    let output = Command::new(env!("CARGO_BIN_EXE_llorch-bench"))
        .args(["--runs", "0"])
        .arg(root().join("models/tiny-synthetic/model-f32.gguf"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value '0' for '--runs"), "{stderr}");
}
