//! Checkpoint 29: `llorch-cpud pack` writes the component with the model loaded into it: one
//! file about the size of the model that the stock wasmtime CLI runs without a model file,
//! giving the text the component gives with the file; a hostile file fails to pack with the
//! error the worker gives.

use crate::support::worker::pack;
use crate::support::{kjv, run_component, scratch, wasmtime};
use std::process::{Command, Output};

fn text(output: Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_packed_component_runs_in_the_wasmtime_cli_without_the_model_file() {
    let model = kjv().with_file_name("model-q8_0.gguf");
    let packed = scratch("pack").join("kjv.wasm");
    let _ = std::fs::remove_file(&packed);
    let output = pack(&model, &packed);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    // The model's bytes once, plus the guest's code and the tokenizer's tables.
    let (packed_len, model_len) = (std::fs::metadata(&packed).unwrap().len(), std::fs::metadata(&model).unwrap().len());
    assert!(
        packed_len > model_len && packed_len < model_len + (12 << 20),
        "{packed_len} bytes for a {model_len}-byte model"
    );
    let request = ["--prompt", "Love is", "--max-tokens", "30", "--temperature", "0.8", "--seed", "5"];
    let alone = text(Command::new(wasmtime()).args(["run", "-Shttp"]).arg(&packed).args(request).output().unwrap());
    let with_file = text(run_component(&model, &[&["--model", "/models/model-q8_0.gguf"][..], &request[..]].concat()));
    assert!(alone.trim().len() > 10, "{alone:?}");
    assert_eq!(alone, with_file);
}

#[test]
fn an_f16_file_packs_quantized_to_q8_0_without_its_f16_bytes() {
    let f16 = kjv();
    let packed = scratch("pack").join("kjv-quantized.wasm");
    let _ = std::fs::remove_file(&packed);
    let output = Command::new(crate::support::worker::binary())
        .args(["pack", "--quantize", "q8_0", "--model"])
        .arg(&f16)
        .arg("--output")
        .arg(&packed)
        .env("LLORCH_CACHE_DIR", scratch("component-cache"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    // Q8_0 takes 34 bytes per 32 weights, F16 64: the packed file is smaller than the F16 file,
    // so neither the F16 bytes nor widened f32 weights are in it.
    let (packed_len, f16_len) = (std::fs::metadata(&packed).unwrap().len(), std::fs::metadata(&f16).unwrap().len());
    assert!(packed_len < f16_len, "{packed_len} bytes packed from a {f16_len}-byte F16 file");
    let request = ["--prompt", "In the beginning God", "--max-tokens", "20", "--temperature", "0"];
    let quantized = text(Command::new(wasmtime()).args(["run", "-Shttp"]).arg(&packed).args(request).output().unwrap());
    let q8_0 = text(run_component(
        &f16.with_file_name("model-q8_0.gguf"),
        &[&["--model", "/models/model-q8_0.gguf"][..], &request[..]].concat(),
    ));
    assert_eq!(quantized, q8_0, "the greedy text of the Q8_0 file");
}

#[test]
fn a_hostile_file_fails_to_pack_with_the_workers_error() {
    let dir = scratch("pack");
    let hostile = dir.join("truncated.gguf");
    let bytes = std::fs::read(kjv()).unwrap();
    std::fs::write(&hostile, &bytes[..bytes.len() / 2]).unwrap();
    let packed = dir.join("truncated.wasm");
    let _ = std::fs::remove_file(&packed);
    let output = pack(&hostile, &packed);
    assert_eq!(output.status.code(), Some(1));
    let logs = String::from_utf8(output.stdout).unwrap();
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains(r#""level":"error""#)).collect();
    assert_eq!(errors.len(), 1, "{logs}");
    assert!(errors[0].contains("cannot load the model: invalid model"), "{}", errors[0]);
    assert!(!packed.exists());
}
