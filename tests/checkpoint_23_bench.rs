//! Checkpoint 23: the benchmark command runs end to end on the tiny model and reports both
//! engines (its numbers are for the README, not for asserting).

use crate::support::tiny;
use std::process::Command;

#[test]
fn bench_reports_wasm_and_native_rows() {
    let cache = crate::support::scratch("component-cache");
    let output = Command::new(env!("CARGO_BIN_EXE_llorch-bench"))
        .args(["--runs", "1", "--prompt-tokens", "8", "--gen-tokens", "4", "--cache-dir"])
        .arg(&cache)
        .arg(tiny())
        .env_remove("LLAMA_BENCH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for row in
        ["| model-f32.gguf | wasm (wasmtime) |", "| model-f32.gguf | native |", "| model-f32.gguf | wasm / native |"]
    {
        assert!(stdout.contains(row), "no row {row:?} in\n{stdout}");
    }
    let wasm_row = stdout.lines().find(|l| l.contains("wasm (wasmtime)")).unwrap();
    let decode: f64 = wasm_row.split('|').nth(5).unwrap().trim().parse().unwrap();
    assert!(decode > 0.0, "{wasm_row}");
}
