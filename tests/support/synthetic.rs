//! Seeded synthetic GPT-2 models rebuilt from the weight formula in models/README.md, written
//! as GGUF files the way llama.cpp's converter lays them out (F32, `[out, in]` matrices).

use super::model_file;
use llorch_guest::gguf::{Gguf, Value as GgufValue};
use serde_json::Value;
use std::io::Write;
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

/// A GGUF metadata value to write.
enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
    Strings(Vec<String>),
    I32s(Vec<i32>),
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_meta(out: &mut Vec<u8>, key: &str, value: &Meta) {
    write_string(out, key);
    match value {
        Meta::U32(v) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::F32(v) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::Str(s) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            write_string(out, s);
        }
        Meta::Strings(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&8u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| write_string(out, s));
        }
        Meta::I32s(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
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
    let metadata = [
        ("general.architecture", Meta::Str("gpt2".into())),
        ("general.name", Meta::Str(format!("synthetic-{folder}"))),
        ("gpt2.context_length", Meta::U32(n_ctx as u32)),
        ("gpt2.embedding_length", Meta::U32(n_embd as u32)),
        ("gpt2.feed_forward_length", Meta::U32(4 * n_embd as u32)),
        ("gpt2.block_count", Meta::U32(n_layer as u32)),
        ("gpt2.attention.head_count", Meta::U32(n_head as u32)),
        ("gpt2.attention.layer_norm_epsilon", Meta::F32(1e-5)),
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.tokens", Meta::Strings(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.merges", Meta::Strings(merges)),
        ("tokenizer.ggml.bos_token_id", Meta::U32(50256)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(50256)),
    ];
    let specs: Vec<(String, Vec<usize>, f64, f64)> = reference["init"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (
                t["name"].as_str().unwrap().to_string(),
                shape,
                t["center"].as_f64().unwrap(),
                t["half_width"].as_f64().unwrap(),
            )
        })
        .collect();

    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(specs.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        write_meta(&mut header, key, value);
    }
    let mut offset = 0u64;
    for (name, shape, _, _) in &specs {
        let (gguf, transposed) = gguf_name(name);
        // GGUF lists dims fastest first: the HF shape reversed, unless the matrix is transposed
        // from Conv1D's [in, out] to [out, in], which lists [in, out] as it stands.
        let dims: Vec<u64> = if transposed {
            shape.iter().map(|&d| d as u64).collect()
        } else {
            shape.iter().rev().map(|&d| d as u64).collect()
        };
        write_string(&mut header, &gguf);
        header.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| header.extend_from_slice(&d.to_le_bytes()));
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += (shape.iter().product::<usize>() as u64 * 4).div_ceil(32) * 32;
    }
    header.resize(header.len().div_ceil(32) * 32, 0);

    let partial = path.with_extension("partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
    file.write_all(&header).unwrap();
    for (name, shape, center, half_width) in &specs {
        let count: usize = shape.iter().product();
        let values = weights(seed, name, count, *center, *half_width);
        let (_, transposed) = gguf_name(name);
        let mut bytes = Vec::with_capacity(count.div_ceil(8) * 32);
        if transposed {
            let (rows, cols) = (shape[0], shape[1]);
            for c in 0..cols {
                for r in 0..rows {
                    bytes.extend_from_slice(&values[r * cols + c].to_le_bytes());
                }
            }
        } else {
            values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        bytes.resize(bytes.len().div_ceil(32) * 32, 0);
        file.write_all(&bytes).unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&partial, path).unwrap();
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
