//! Checkpoint 16: how generation ends and what text it sends: stop strings across token
//! boundaries (never streamed), EOS, MAX_TOKENS, and valid UTF-8 in every event with the
//! concatenation equal to the detokenized output.

use crate::support::component::{deadline, generate_all, load};
use crate::support::worker::{Worker, terminal, text_of};
use crate::support::{kjv, tiny};
use llorch_cpud::backend::wit::{GenerateOptions, Sampling};
use serde_json::json;

#[test]
fn a_stop_string_spanning_tokens_ends_generation_and_is_never_sent() {
    let worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    // Greedy continues " Go, and say unto the children of Israel, Thus saith ..." where ", Thus"
    // is two tokens.
    let events = worker.execute(&json!({"job_id": "stop", "prompt": "And the LORD said unto Moses,",
        "max_tokens": 20, "temperature": 0, "stop": ["never appears", ", Thus"]}));
    let end = terminal(&events);
    assert_eq!(end.data["stop_reason"], "STOP_SEQUENCE");
    assert_eq!(end.data["stop_sequence_matched"], ", Thus");
    assert_eq!(text_of(&events), " Go, and say unto the children of Israel");
    assert!(events.iter().all(|e| !e.data["t"].as_str().unwrap_or("").contains("Thus")));
    assert_eq!(end.data["tokens_out"], 11, "the tokens up to the one completing the stop string");
}

#[test]
fn eos_ends_generation() {
    let worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    let events = worker.execute(&json!({"job_id": "eos", "prompt": "A fool and his money are soon parted.",
        "max_tokens": 100, "temperature": 0}));
    let end = terminal(&events);
    assert_eq!(end.data["stop_reason"], "EOS");
    assert!(end.data["tokens_out"].as_u64().unwrap() < 100);
    assert_eq!(text_of(&events), "\n\t\t-- Ambrose Bierce, \"The Devil's Dictionary\"");
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
