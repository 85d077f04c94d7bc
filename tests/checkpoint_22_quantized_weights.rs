//! Checkpoint 22: Q8_0 weights, decoded inside the matrix product without a dequantized copy,
//! give transformers' logits on the dequantized weights (top 5 of the last position within
//! 1e-4) and its 20 greedy tokens; Q8_0 weights stay in the file, F16 ones are widened once.

use crate::support::component::{deadline, generate_all, load};
use crate::support::{model_file, reference};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling, StopReason};
use serde_json::Value;

#[test]
fn q8_0_logits_and_greedy_tokens_match_the_dequantized_reference() {
    let mut guest = load(&model_file("kjv-fortunes-18m/model-q8_0.gguf"));
    assert_eq!(guest.info.weight_type, "Q8_0");
    let text = std::fs::read_to_string(model_file("kjv-fortunes-18m/reference-q8_0.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let prompts = reference::prompts("kjv-fortunes-18m", "reference-q8_0.json");
    for (prompt, raw) in prompts.iter().zip(json["prompts"].as_array().unwrap()) {
        let logits = guest.logits(&prompt.ids, deadline()).unwrap();
        let vocab = guest.info.vocab_size as usize;
        assert_eq!(logits.len(), prompt.ids.len() * vocab);
        let last = &logits[logits.len() - vocab..];
        for entry in raw["top5"].as_array().unwrap() {
            let (id, want) = (entry[0].as_u64().unwrap() as usize, entry[1].as_f64().unwrap() as f32);
            assert!((last[id] - want).abs() <= 1e-4, "{:?}: logit {id} is {} not {want}", prompt.text, last[id]);
        }
        let options = GenerateOptions {
            max_tokens: prompt.greedy_ids.len() as u32,
            sampling: Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 },
            stop: vec![],
        };
        let (tokens, finish) = generate_all(&mut guest, &prompt.ids, &options);
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        // The reference decoded on past the end-of-text token; generation stops there.
        let eos = prompt.greedy_ids.iter().position(|&id| id == guest.info.eos_token);
        assert_eq!(ids, prompt.greedy_ids[..eos.unwrap_or(prompt.greedy_ids.len())], "greedy after {:?}", prompt.text);
        assert_eq!(finish.reason == StopReason::Eos, eos.is_some());
    }
}

#[test]
fn q8_0_weights_stay_in_the_file_and_f16_weights_are_widened_once() {
    let path = model_file("kjv-fortunes-18m/model-q8_0.gguf");
    let guest = load(&path);
    assert_eq!(guest.info.weight_type, "Q8_0");
    let size = std::fs::metadata(&path).unwrap().len();
    // The file plus the f32 vectors (biases and norms, well under 1 %).
    assert!(
        guest.info.weight_bytes < size + size / 100,
        "{} bytes of Q8_0 weights for a {size}-byte file",
        guest.info.weight_bytes
    );
    let guest = load(&model_file("kjv-fortunes-18m/model-f16.gguf"));
    assert_eq!(guest.info.weight_type, "F16");
    assert_eq!(guest.info.weight_bytes, 4 * guest.info.parameter_count, "every F16 weight becomes one f32");
}
