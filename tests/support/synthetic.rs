//! Seeded synthetic GPT-2 models rebuilt from the weight formula in models/README.md, written
//! as GGUF files the way llama.cpp's converter lays them out (F32, `[out, in]` matrices).

use super::gguf_builder::GgufBuilder;
use super::model_file;
use llorch_guest::gguf::{Gguf, Value as GgufValue};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The values of HF tensor `name`, row-major in its HF shape.
pub fn weights(seed: u64, name: &str, count: usize, center: f64, half_width: f64) -> Vec<f32> {
    let key = splitmix64(seed ^ fnv1a64(name));
    (0..count as u64)
        .map(|i| {
            let m = splitmix64(key.wrapping_add(i)) >> 40;
            let u = m as f64 * 2f64.powi(-23) - 1.0;
            (center + half_width * u) as f32
        })
        .collect()
}

/// The GGUF name of an HF tensor and whether it is a Conv1D weight stored transposed.
fn gguf_name(hf: &str) -> (String, bool) {
    let map = |s: &str| match s {
        "ln_1" => "attn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "ln_2" => "ffn_norm",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        other => panic!("unexpected tensor {other}"),
    };
    match hf {
        "wte.weight" => ("token_embd.weight".into(), false),
        "wpe.weight" => ("position_embd.weight".into(), false),
        "ln_f.weight" => ("output_norm.weight".into(), false),
        "ln_f.bias" => ("output_norm.bias".into(), false),
        _ => {
            let rest = hf.strip_prefix("h.").expect("a block tensor");
            let (block, rest) = rest.split_once('.').unwrap();
            let (layer, kind) = rest.rsplit_once('.').unwrap();
            (format!("blk.{block}.{}.{kind}", map(layer)), kind == "weight" && layer.contains("c_"))
        }
    }
}

/// The GPT-2 tokenizer tables, read from the tiny model's GGUF.
fn tokenizer_tables() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let bytes = std::fs::read(model_file("tiny-synthetic/model-f32.gguf")).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let strings = |key: &str| gguf.strings(key).unwrap().into_iter().map(str::to_string).collect::<Vec<_>>();
    let types = match gguf.get("tokenizer.ggml.token_type") {
        Some(GgufValue::Array(items)) => items
            .iter()
            .map(|v| match v {
                GgufValue::Int(i) => *i as i32,
                other => panic!("token type {other:?}"),
            })
            .collect(),
        other => panic!("token types {other:?}"),
    };
    (strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges"), types)
}

/// Writes the synthetic model described by `models/<folder>/reference.json` to `path`.
pub fn write_gguf(folder: &str, path: &Path) {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(model_file(&format!("{folder}/reference.json"))).unwrap())
            .unwrap();
    let h = &reference["hparams"];
    let get = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("hparams.{k}"));
    let (n_layer, n_embd, n_head, n_ctx, seed) =
        (get("n_layer"), get("n_embd"), get("n_head"), get("n_positions"), get("seed"));
    let (tokens, merges, types) = tokenizer_tables();
    let mut gguf = GgufBuilder::new();
    let shape = [n_ctx, n_embd, 4 * n_embd, n_layer, n_head].map(|d| d as u32);
    gguf.gpt2_metadata(&format!("synthetic-{folder}"), shape, &tokens, &merges, &types, 50256);
    for spec in reference["init"].as_array().unwrap() {
        let name = spec["name"].as_str().unwrap();
        let shape: Vec<u64> = spec["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        let count = shape.iter().product::<u64>() as usize;
        let values = weights(seed, name, count, spec["center"].as_f64().unwrap(), spec["half_width"].as_f64().unwrap());
        let (gguf_name, transposed) = gguf_name(name);
        if transposed {
            // Conv1D [in, out] to GGUF's [out, in].
            let (rows, cols) = (shape[0] as usize, shape[1] as usize);
            let t: Vec<f32> =
                (0..cols).flat_map(|c| (0..rows).map(move |r| (r, c))).map(|(r, c)| values[r * cols + c]).collect();
            gguf.f32_tensor(&gguf_name, &[shape[1], shape[0]], &t);
        } else {
            gguf.f32_tensor(&gguf_name, &shape, &values);
        }
    }
    gguf.write(path);
}

/// The synthetic 124M-shape model, generated once per checkout under target/.
pub fn gpt2_124m() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = super::scratch("gpt2-124m-synthetic").join("model-f32-v1.gguf");
    if !path.exists() {
        write_gguf("gpt2-124m-synthetic", &path);
    }
    path
}
