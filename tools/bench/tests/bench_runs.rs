//! The benchmark commands run end to end on the tiny model: the default comparison reports both
//! engines, the batched mode a row per batch size (the numbers are for the README, not for
//! asserting).

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
