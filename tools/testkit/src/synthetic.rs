//! Seeded synthetic GPT-2 models rebuilt from the weight formula in models/README.md, written
//! as GGUF files the way llama.cpp's converter lays them out (`[out, in]` matrices), for the
//! numeric tests and the benchmark.

use crate::gguf_writer::{GgufBuilder, WeightType};
use anyhow::{Context, Result, anyhow};
use llorch_guest::gguf::{Gguf, Value as GgufValue};
use serde_json::Value;
use std::path::Path;

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
fn gguf_name(hf: &str) -> Result<(String, bool)> {
    let fixed = match hf {
        "wte.weight" => Some("token_embd.weight"),
        "wpe.weight" => Some("position_embd.weight"),
        "ln_f.weight" => Some("output_norm.weight"),
        "ln_f.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Ok((name.to_string(), false));
    }
    let unexpected = || anyhow!("unexpected tensor {hf}");
    let (block, rest) = hf.strip_prefix("h.").and_then(|r| r.split_once('.')).ok_or_else(unexpected)?;
    let (layer, kind) = rest.rsplit_once('.').ok_or_else(unexpected)?;
    let gguf_layer = match layer {
        "ln_1" => "attn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "ln_2" => "ffn_norm",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        _ => return Err(unexpected()),
    };
    Ok((format!("blk.{block}.{gguf_layer}.{kind}"), kind == "weight" && layer.contains("c_")))
}

/// The GPT-2 tokenizer tables of a GGUF file: tokens, merges, token types.
fn tokenizer_tables(path: &Path) -> Result<(Vec<String>, Vec<String>, Vec<i32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let gguf = Gguf::parse(&bytes)?;
    let strings =
        |key: &str| -> Result<Vec<String>> { Ok(gguf.strings(key)?.into_iter().map(str::to_string).collect()) };
    let types = match gguf.get("tokenizer.ggml.token_type") {
        Some(GgufValue::Array(items)) => items
            .iter()
            .map(|v| match v {
                GgufValue::Int(i) => i32::try_from(*i).map_err(|_| anyhow!("token type {i} out of range")),
                other => Err(anyhow!("token type {other:?} is not an integer")),
            })
            .collect::<Result<Vec<_>>>()?,
        other => return Err(anyhow!("tokenizer.ggml.token_type is {other:?}")),
    };
    Ok((strings("tokenizer.ggml.tokens")?, strings("tokenizer.ggml.merges")?, types))
}

/// Writes the synthetic model that `reference` (a `reference.json`) describes to `out`, with
/// matrices stored as `kind` and the tokenizer tables of the GGUF file `tokenizer`.
pub fn write_gguf(reference: &Path, tokenizer: &Path, kind: WeightType, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(reference).with_context(|| format!("reading {}", reference.display()))?;
    let reference: Value = serde_json::from_str(&text)?;
    let h = &reference["hparams"];
    let get = |k: &str| h[k].as_u64().ok_or_else(|| anyhow!("reference.json has no hparams.{k}"));
    let (n_layer, n_embd, n_head, n_ctx, seed) =
        (get("n_layer")?, get("n_embd")?, get("n_head")?, get("n_positions")?, get("seed")?);
    let (tokens, merges, types) = tokenizer_tables(tokenizer)?;
    let name = reference["config"].as_str().unwrap_or("synthetic").trim_start_matches("gpt2-");
    let mut gguf = GgufBuilder::new();
    let shape = [n_ctx, n_embd, 4 * n_embd, n_layer, n_head].map(|d| d as u32);
    gguf.gpt2_metadata(&format!("synthetic-gpt2-{name}"), shape, &tokens, &merges, &types, 50256);
    for spec in reference["init"].as_array().ok_or_else(|| anyhow!("reference.json has no init list"))? {
        let name = spec["name"].as_str().ok_or_else(|| anyhow!("init entry without a name"))?;
        let shape: Vec<u64> = spec["shape"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        let (center, half_width) = (spec["center"].as_f64().unwrap_or(0.0), spec["half_width"].as_f64().unwrap_or(0.0));
        let values = weights(seed, name, shape.iter().product::<u64>() as usize, center, half_width);
        let (gguf_name, transposed) = gguf_name(name)?;
        if transposed {
            // Conv1D [in, out] to GGUF's [out, in].
            let (rows, cols) = (shape[0] as usize, shape[1] as usize);
            let values = &values;
            let t: Vec<f32> = (0..cols).flat_map(|c| (0..rows).map(move |r| values[r * cols + c])).collect();
            gguf.typed_tensor(&gguf_name, &[shape[1], shape[0]], &t, kind);
        } else {
            gguf.typed_tensor(&gguf_name, &shape, &values, kind);
        }
    }
    gguf.write(out).with_context(|| format!("writing {}", out.display()))
}
