//! Checkpoint 9: greedy generation through the component (chunked prefill, then one token at a
//! time from the KV cache) reproduces the reference's 20 greedy tokens and text on every model.

use crate::support::component::{deadline, generate_all, load};
use crate::support::{kjv, reference, tiny};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling, StopReason};
use std::path::Path;

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 },
        stop: vec![],
    }
}

fn check_greedy(folder: &str, model: &Path) {
    let mut guest = load(model);
    for prompt in reference::prompts(folder, "reference.json") {
        let (tokens, finish) = generate_all(&mut guest, &prompt.ids, &greedy(prompt.greedy_ids.len() as u32));
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        let text: String = tokens.iter().map(|t| t.text.as_str()).chain([finish.text.as_str()]).collect();
        assert_eq!(finish.reason, StopReason::MaxTokens);
        assert_eq!(ids, prompt.greedy_ids, "{folder}: greedy ids after {:?}", prompt.text);
        assert_eq!(text, prompt.greedy_text, "{folder}: greedy text after {:?}", prompt.text);
        assert_eq!(guest.tokenize(&prompt.text, deadline()).unwrap(), prompt.ids, "{folder}: prompt ids");
    }
}

#[test]
fn tiny_synthetic_greedy_tokens_match() {
    check_greedy("tiny-synthetic", &tiny());
}

#[test]
fn trained_model_greedy_tokens_match() {
    check_greedy("kjv-fortunes-18m", &kjv());
}

#[test]
fn gpt2_124m_shape_greedy_tokens_match() {
    check_greedy("gpt2-124m-synthetic", &crate::support::gpt2_124m());
}
