//! Checkpoint 16: how generation ends and what text it sends: stop strings across token
//! boundaries (never streamed), EOS, MAX_TOKENS, and valid UTF-8 in every event with the
//! concatenation equal to the detokenized output.

use crate::support::component::{deadline, generate_all, load};
use crate::support::reference::{self, Prompt};
use crate::support::worker::{Worker, terminal, text_of};
use crate::support::{kjv, tiny};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling};
use serde_json::json;

/// The reference prompt that starts with `text`, from `file` of the bundled model's folder.
fn reference_prompt(file: &str, text: &str) -> Prompt {
    reference::prompts("kjv-fortunes-18m", file).into_iter().find(|p| p.text.starts_with(text)).unwrap()
}

#[test]
fn a_stop_string_spanning_tokens_ends_generation_and_is_never_sent() {
    let worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    // The reference greedy text goes on " Go, and say unto the children of Israel, Thus saith
    // ...", where ", Thus" is two tokens.
    let prompt = reference_prompt("reference.json", "And the LORD said unto Moses");
    let (before, _) = prompt.greedy_text.split_once(", Thus").expect("the reference text holds the stop string");
    let events = worker.execute(&json!({"job_id": "stop", "prompt": prompt.text,
        "max_tokens": 20, "temperature": 0, "stop": ["never appears", ", Thus"]}));
    let end = terminal(&events);
    assert_eq!(end.data["stop_reason"], "STOP_SEQUENCE");
    assert_eq!(end.data["stop_sequence_matched"], ", Thus");
    assert_eq!(text_of(&events), before);
    assert!(events.iter().all(|e| !e.data["t"].as_str().unwrap_or("").contains("Thus")));
    // The tokens up to the one completing the stop string: `Thus` is id 6660.
    let through_stop = prompt.greedy_ids.iter().position(|&id| id == 6660).unwrap() + 1;
    assert_eq!(end.data["tokens_out"], through_stop);
}

#[test]
fn eos_ends_generation() {
    // The Q8_0 file's reference greedy output reaches the end-of-text token.
    let model = crate::support::model_file("kjv-fortunes-18m/model-q8_0.gguf");
    let worker = Worker::start(&["--model", model.to_str().unwrap()]);
    let prompt = reference_prompt("reference-q8_0.json", "A computer is");
    let eos = prompt.greedy_ids.iter().position(|&id| id == 50256).expect("the reference reaches EOS");
    let (before_eos, _) = prompt.greedy_text.split_once("The only thing").unwrap();
    let events = worker.execute(&json!({"job_id": "eos", "prompt": prompt.text, "max_tokens": 100, "temperature": 0}));
    let end = terminal(&events);
    assert_eq!(end.data["stop_reason"], "EOS");
    assert_eq!(end.data["tokens_out"], eos, "the tokens before the end-of-text token");
    assert_eq!(text_of(&events), before_eos);
}

#[test]
fn every_event_is_valid_utf8_and_the_stream_equals_the_detokenized_output() {
    // The random tiny model emits stray bytes of multi-byte characters often.
    let worker = Worker::start(&["--model", tiny().to_str().unwrap()]);
    let mut guest = load(&tiny());
    let mut split_characters = 0;
    for seed in 0..12u64 {
        let body = json!({"job_id": format!("utf8-{seed}"), "prompt": "日本語 😀", "max_tokens": 60,
            "temperature": 2.0, "seed": seed});
        let events = worker.execute(&body);
        assert_eq!(terminal(&events).data["stop_reason"], "MAX_TOKENS");
        // Every `t` came through serde_json as a string, so it is valid UTF-8; the same request
        // in-process gives the ids, whose lossy decoding must equal the concatenation.
        let prompt = guest.tokenize("日本語 😀", deadline()).unwrap();
        let options = GenerateOptions {
            max_tokens: 60,
            sampling: Sampling { temperature: 2.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed },
            stop: vec![],
        };
        let (tokens, _) = generate_all(&mut guest, &prompt, &options);
        split_characters += tokens.iter().filter(|t| t.text.is_empty()).count();
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        assert_eq!(text_of(&events), guest.detokenize(&ids, deadline()).unwrap(), "seed {seed}");
    }
    assert!(split_characters > 0, "no token held back a partial character; the test did not exercise it");
}
