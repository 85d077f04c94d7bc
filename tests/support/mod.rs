//! Helpers shared by the checkpoint tests: paths, reference files, the real component under
//! wasmtime, the real binary, and the synthetic 124M model.

#![allow(dead_code)] // Each helper is used by some of the test modules, not all.

pub mod component;
pub mod micro;
pub mod pool_manager;
pub mod reference;
pub mod worker;

use llorch_testkit::gguf_writer::WeightType;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is inside the workspace").to_path_buf()
}

/// The pinned wasmtime CLI that scripts/setup.sh installs.
pub fn wasmtime() -> PathBuf {
    let path = std::env::var_os("LLORCH_WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/wasmtime-48.0.2/wasmtime_cli/wasmtime"));
    assert!(path.exists(), "no wasmtime CLI at {}; run scripts/setup.sh", path.display());
    path
}

/// The component the host build produced.
pub fn component_wasm() -> PathBuf {
    let path = root().join("target/guest/wasm32-wasip2/release/llorch_guest.wasm");
    assert!(path.exists(), "no component at {}", path.display());
    path
}

/// `wasmtime run -Shttp --dir <model dir>::/models <component> <args>`.
pub fn run_component(model: &Path, args: &[&str]) -> Output {
    let dir = format!("{}::/models", model.parent().unwrap().display());
    Command::new(wasmtime())
        .args(["run", "-Shttp", "--dir", &dir])
        .arg(component_wasm())
        .args(args)
        .output()
        .expect("wasmtime runs")
}

/// A file under `models/`.
pub fn model_file(relative: &str) -> PathBuf {
    let path = root().join("models").join(relative);
    assert!(path.exists(), "missing model or reference file {}", path.display());
    path
}

/// The bundled model.
pub fn kjv() -> PathBuf {
    model_file("kjv-fortunes-18m/model-f16.gguf")
}

/// Limit of one guest call (`--guest-call-timeout-sec`, CPU time) in the tests that want a
/// runaway guest. On the synthetic 124M model, one 64-token prompt chunk takes about 0.4 s on
/// this project's machine and one decode step 20–35 ms, about fifteen times less; the limit sits
/// near the geometric mean of the two, so the chunk runs past it and the step stays within it
/// with two to four times its time in hand, on a machine faster or slower than this one.
pub const RUNAWAY_LIMIT: &str = "0.15";

/// The synthetic 124M-shape model with F32 weights, rebuilt once per checkout under target/.
pub fn gpt2_124m() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = scratch("gpt2-124m-synthetic").join("model-f32-v1.gguf");
    if !path.exists() {
        let reference = model_file("gpt2-124m-synthetic/reference.json");
        llorch_testkit::synthetic::write_gguf(&reference, &tiny(), WeightType::F32, &path)
            .expect("the 124M model is written");
    }
    path
}

/// The tiny synthetic model.
pub fn tiny() -> PathBuf {
    model_file("tiny-synthetic/model-f32.gguf")
}

/// A scratch directory under `target/`, unique to `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("test-scratch").join(name);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Asserts equal shapes, then every value within `tolerance` (−∞ must match −∞).
pub fn assert_close(what: &str, got_shape: &[usize], got: &[f32], want_shape: &[usize], want: &[f32], tolerance: f32) {
    assert_eq!(got_shape, want_shape, "{what}: shape");
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() || g.is_infinite() {
            assert_eq!(g, w, "{what}: element {i}");
            continue;
        }
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        let diff = (g - w).abs();
        if diff > worst.0 {
            worst = (diff, i);
        }
    }
    assert!(
        worst.0 <= tolerance,
        "{what}: element {} differs by {} (got {}, reference {}), over {tolerance}",
        worst.1,
        worst.0,
        got[worst.1],
        want[worst.1]
    );
}
