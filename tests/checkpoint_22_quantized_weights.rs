//! Checkpoint 22: Q8_0 weights, multiplied where they lie against inputs quantized to Q8_0 (as
//! llama.cpp does), give transformers' 20 greedy tokens on the dequantized weights and its
//! logits within the inputs' rounding (top 5 of the last position within 0.05); Q8_0 weights
//! stay in the file, F16 ones are widened once, or quantized to Q8_0 with `--quantize q8_0`.

use crate::support::component::{deadline, generate_all, load, load_measured};
use crate::support::worker::{Worker, text_of};
use crate::support::{model_file, reference};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling, StopReason};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

#[test]
fn q8_0_logits_and_greedy_tokens_match_the_dequantized_reference() {
    let mut guest = load(&model_file("kjv-fortunes-18m/model-q8_0.gguf"));
    assert_eq!(guest.info.weight_type, "Q8_0");
    let text = std::fs::read_to_string(model_file("kjv-fortunes-18m/reference-q8_0.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let prompts = reference::prompts("kjv-fortunes-18m", "reference-q8_0.json");
    let mut largest = 0.0f32;
    for (prompt, raw) in prompts.iter().zip(json["prompts"].as_array().unwrap()) {
        let logits = guest.logits(&prompt.ids, deadline()).unwrap();
        let vocab = guest.info.vocab_size as usize;
        assert_eq!(logits.len(), prompt.ids.len() * vocab);
        let last = &logits[logits.len() - vocab..];
        for entry in raw["top5"].as_array().unwrap() {
            let (id, want) = (entry[0].as_u64().unwrap() as usize, entry[1].as_f64().unwrap() as f32);
            assert!(last[id].is_finite(), "{:?}: logit {id} is {}", prompt.text, last[id]);
            largest = largest.max((last[id] - want).abs());
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
    // The inputs of every Q8_0 product are quantized to 8 bits, as llama.cpp does: each input
    // moves by at most half its block's step (the tensor unit tests check that bound for one
    // product). Through six blocks that moved these top-5 logits (about 10 to 20) by at most
    // 0.028; a wrong product moves them by whole units.
    assert!(largest <= 0.05, "a top-5 logit is {largest} from the dequantized reference");
}

#[test]
fn q8_0_weights_stay_in_the_file_and_f16_weights_are_widened_once() {
    // Guest memory as the host measures it (the linear memory's size), not the guest's word.
    let q8_0 = model_file("kjv-fortunes-18m/model-q8_0.gguf");
    let q8_0_size = std::fs::metadata(&q8_0).unwrap().len();
    let (guest, memory) = load_measured(&q8_0);
    assert_eq!(guest.info.weight_type, "Q8_0");
    let q8_0_memory = memory.load(Ordering::Relaxed);
    let f16 = model_file("kjv-fortunes-18m/model-f16.gguf");
    let (guest, memory) = load_measured(&f16);
    assert_eq!(guest.info.weight_type, "F16");
    let f16_memory = memory.load(Ordering::Relaxed);
    // Widening F16 adds four bytes per weight on top of what the Q8_0 guest holds: the file
    // (kept), the tokenizer and the buffers.
    let widened = 4 * guest.info.parameter_count;
    let f16_size = std::fs::metadata(&f16).unwrap().len();
    // A second copy of the Q8_0 file would add another file's worth; within 1/8 of a file the
    // weights are used where they lie. Memory grows in 64 KiB pages.
    let rest = q8_0_memory - q8_0_size;
    assert!(rest < q8_0_size / 8 + (8 << 20), "Q8_0: {q8_0_memory} bytes for a {q8_0_size}-byte file");
    let f16_rest = f16_memory - f16_size - widened;
    assert!(f16_rest.abs_diff(rest) < q8_0_size / 8 + (8 << 20), "F16: {f16_memory} bytes, Q8_0: {q8_0_memory}");
}

#[test]
fn an_f16_file_quantized_at_load_gives_the_q8_0_files_greedy_text_in_less_memory() {
    let f16 = model_file("kjv-fortunes-18m/model-f16.gguf");
    let quantized = Worker::start(&["--model", f16.to_str().unwrap(), "--quantize", "q8_0", "--slots", "1"]);
    let widened = Worker::start(&["--model", f16.to_str().unwrap(), "--slots", "1"]);
    let loaded = quantized.messages_after("model loaded");
    assert!(loaded.iter().any(|m| m.starts_with("model loaded") && m.contains("Q8_0 weights")), "{loaded:?}");
    let memory = |worker: &Worker| worker.get("/health").1["memory_bytes"].as_u64().unwrap();
    // Widened, each of the 17.7 M weights takes 4 bytes; quantized, 34/32 bytes: about 52 MB less.
    assert!(memory(&quantized) + (40 << 20) < memory(&widened), "{} vs {}", memory(&quantized), memory(&widened));
    for prompt in reference::prompts("kjv-fortunes-18m", "reference-q8_0.json") {
        let events = quantized.execute(&json!({
            "job_id": "q", "prompt": prompt.text, "max_tokens": prompt.greedy_ids.len(), "temperature": 0, "seed": 0
        }));
        // The reference decoded on past the end-of-text token; generation stops there.
        let eos = prompt.greedy_ids.iter().position(|&id| id == 50256).unwrap_or(prompt.greedy_ids.len());
        let (_, _, want) = quantized.post("/detokenize", &json!({ "tokens": prompt.greedy_ids[..eos] }));
        assert_eq!(text_of(&events), want["text"], "greedy after {:?}", prompt.text);
    }
}
