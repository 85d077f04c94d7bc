//! Checkpoint 17: the component on its own in the stock wasmtime CLI: `wasi:cli/run` streams
//! the same text as `/execute` for the same seed and options, `--invoke generate-text` returns
//! it, and bad input gives a message and a non-zero exit, not a trap.

use crate::support::worker::{Worker, text_of};
use crate::support::{component_wasm, kjv, root, run_component as run, tiny, wasmtime};
use serde_json::json;
use std::process::{Command, Output};

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn cli_text_equals_execute_text_for_the_same_seed() {
    for (model, prompt) in [(kjv(), "Blessed are the"), (tiny(), "Hello world")] {
        let file = format!("/models/{}", model.file_name().unwrap().to_str().unwrap());
        let args = ["--model", &file, "--prompt", prompt, "--max-tokens", "30", "--temperature", "0.9", "--seed", "11"];
        let cli = stdout(&run(&model, &args));
        let worker = Worker::start(&["--model", model.to_str().unwrap()]);
        let events = worker
            .execute(&json!({"job_id": "cli", "prompt": prompt, "max_tokens": 30, "temperature": 0.9, "seed": 11}));
        assert_eq!(cli, format!("{}\n", text_of(&events)), "{}", model.display());
    }
}

#[test]
fn help_lists_the_options() {
    let help = stdout(&run(&kjv(), &["--help"]));
    for option in
        ["--model", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--seed", "--stop"]
    {
        assert!(help.contains(option), "--help lacks {option}");
    }
}

#[test]
fn bad_options_and_bad_models_fail_with_a_message() {
    let readme = root().join("models/README.md");
    for (model, args, message) in [
        (kjv(), vec!["--bogus", "1"], "error: unknown option \"--bogus\""),
        (kjv(), vec!["--prompt", "x"], "error: --model is required"),
        (kjv(), vec!["--model", "/models/model-f16.gguf", "--prompt", "x", "--top-p", "2"], "top_p must be in 0..=1"),
        (kjv(), vec!["--model", "/models/none.gguf", "--prompt", "x"], "error: cannot read model: /models/none.gguf"),
        (readme, vec!["--model", "/models/README.md", "--prompt", "x"], "error: invalid model: not a GGUF file"),
    ] {
        let output = run(&model, &args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("wasm backtrace"), "{args:?} trapped: {stderr}");
    }
}

#[test]
fn invoke_generate_text_returns_the_greedy_reference() {
    let model = kjv();
    let dir = format!("{}::/models", model.parent().unwrap().display());
    let call = r#"generate-text("/models/model-f16.gguf", "Hello.", {max-tokens: 20, sampling: {temperature: 0.0, top-k: 0, top-p: 1.0, min-p: 0.0, repetition-penalty: 1.0, seed: 0}, stop: []})"#;
    let output = Command::new(wasmtime())
        .args(["run", "-Shttp", "--dir", &dir, "--invoke", call])
        .arg(component_wasm())
        .output()
        .unwrap();
    let printed = stdout(&output);
    let expected = crate::support::reference::prompts("kjv-fortunes-18m", "reference.json")[0].greedy_text.clone();
    // WAVE prints the result as ok("...") with quotes, newlines and apostrophes escaped.
    let wave = expected.replace('\\', "\\\\").replace('\n', "\\n").replace('\'', "\\'").replace('"', "\\\"");
    assert_eq!(printed.trim_end(), format!("ok(\"{wave}\")"));
}
