//! The reference files of a model folder: `reference.json` (prompts, ids, greedy tokens) and
//! safetensors of logits and activations computed by Hugging Face transformers.

use super::model_file;
use safetensors::SafeTensors;
use serde_json::Value;

/// One reference prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub greedy_text: String,
}

/// The prompts of `reference.json` (or another reference file) in folder `model`.
pub fn prompts(model: &str, file: &str) -> Vec<Prompt> {
    let text = std::fs::read_to_string(model_file(&format!("{model}/{file}"))).expect("reference json");
    let json: Value = serde_json::from_str(&text).expect("reference json parses");
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array().expect("an id array").iter().map(|i| i.as_u64().expect("an id") as u32).collect()
    };
    json["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| Prompt {
            // The trained model's file says "prompt", the synthetic ones "text".
            text: p.get("prompt").or_else(|| p.get("text")).and_then(Value::as_str).expect("prompt text").to_string(),
            ids: ids(&p["ids"]),
            greedy_ids: ids(&p["greedy_ids"]),
            greedy_text: p["greedy_text"].as_str().expect("greedy text").to_string(),
        })
        .collect()
}

/// Every tensor of a safetensors file in folder `model`, as (shape, f32 values).
pub fn tensors(model: &str, file: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(model_file(&format!("{model}/{file}"))).expect("safetensors file");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors parses");
    let mut out: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} is f32");
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The reference logits `[T, V]` of prompt `index` (`p0`, `p1`, ...).
pub fn logits(model: &str, index: usize) -> (Vec<usize>, Vec<f32>) {
    let key = format!("p{index}");
    let (_, shape, values) = tensors(model, "reference_logits.safetensors")
        .into_iter()
        .find(|(name, _, _)| *name == key)
        .unwrap_or_else(|| panic!("{model}: no logits {key}"));
    (shape, values)
}
