//! Checkpoint 14: the component's GPT-2 BPE gives tiktoken's r50k_base ids for any text, matches
//! the golden list, and `/tokenize` and `/detokenize` serve it over HTTP.

use crate::support::component::{deadline, load};
use crate::support::worker::Worker;
use crate::support::{kjv, root};
use serde_json::json;

/// Fragments that stress the pre-tokenizer: whitespace runs, contractions, digits, scripts,
/// emoji, control and special tokens.
const PIECES: &[&str] = &[
    "the",
    " The",
    "LORD",
    "hello",
    "world",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\u{a0}",
    "\u{3000}",
    "\u{2003}",
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
    "'S",
    "'",
    "''",
    "0",
    "42",
    "3.14",
    "1,000",
    "٣",
    "²",
    "Ⅻ",
    "!",
    "?!",
    "...",
    ",",
    ";",
    "-",
    "—",
    "(",
    ")",
    "\"",
    "😀",
    "👍🏽",
    "👨‍👩‍👧",
    "🇺🇸",
    "中文",
    "日本語",
    "한국어",
    "Привет",
    "مرحبا",
    "naïve",
    "e\u{301}",
    "ﬁ",
    "\u{0}",
    "\u{1f}",
    "\u{7f}",
    "\u{85}",
    "\u{200d}",
    "\u{fffd}",
    "<|endoftext|>",
    "<|endof",
    "text|>",
    "Ġ",
    "Ċ",
    "\u{100}",
    "x",
    "y",
    " z",
];

/// A deterministic stream of test strings made of 1 to 12 pieces, with random scalar values
/// mixed in.
fn generated_strings(count: usize) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    (0..count)
        .map(|_| {
            let mut s = String::new();
            for _ in 0..1 + next(12) {
                if next(8) == 0 {
                    s.push(char::from_u32(next(0x11_0000) as u32).unwrap_or('\u{fffd}'));
                } else {
                    s.push_str(PIECES[next(PIECES.len())]);
                }
            }
            s
        })
        .collect()
}

#[test]
fn ids_equal_tiktoken_r50k_base_on_generated_text() {
    let mut guest = load(&kjv());
    let reference = tiktoken_rs::r50k_base().unwrap();
    let strings = generated_strings(3000);
    for text in &strings {
        let ours = guest.tokenize(text, deadline()).unwrap();
        let theirs = reference.encode_with_special_tokens(text);
        assert_eq!(ours, theirs, "ids of {text:?}");
        assert_eq!(guest.detokenize(&ours, deadline()).unwrap(), *text, "round trip of {text:?}");
    }
}

#[test]
fn ids_match_the_golden_list() {
    let mut guest = load(&kjv());
    let golden = std::fs::read_to_string(root().join("tests/golden/gpt2-tokenizer.txt")).expect("golden list");
    let mut cases = 0;
    for line in golden.lines().filter(|l| !l.starts_with('#')) {
        let (text, ids) = line.rsplit_once(" => ").expect("`text => ids`");
        let text: String = serde_json::from_str(text).expect("a JSON string");
        let ids: Vec<u32> = ids.split_whitespace().map(|i| i.parse().unwrap()).collect();
        assert_eq!(guest.tokenize(&text, deadline()).unwrap(), ids, "{text:?}");
        cases += 1;
    }
    assert!(cases >= 50, "the golden list has {cases} cases");
}

#[test]
fn long_runs_tokenize_quickly() {
    let mut guest = load(&kjv());
    for text in ["a".repeat(32768), " ".repeat(32768), "😀".repeat(8192)] {
        // Quadratic merging would take minutes here; the heap-based merge takes well under a
        // second. The guest traps if the call outlives its deadline.
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let ids = guest.tokenize(&text, limit).expect("tokenized within the call's deadline");
        let expected = tiktoken_rs::r50k_base().unwrap().encode_with_special_tokens(&text).len();
        assert_eq!(ids.len(), expected);
    }
}

#[test]
fn tokenize_and_detokenize_over_http() {
    let worker = Worker::start(&["--model", kjv().to_str().unwrap()]);
    let (status, _, body) = worker.post("/tokenize", &json!({"text": "Hello.<|endoftext|>"}));
    assert_eq!(status, 200);
    assert_eq!(body, json!({"tokens": [15496, 13, 50256]}));
    let (status, _, body) = worker.post("/detokenize", &json!({"tokens": [15496, 13, 50256]}));
    assert_eq!(status, 200);
    assert_eq!(body, json!({"text": "Hello.<|endoftext|>"}));
    // A token holding half of a character decodes to U+FFFD.
    let (_, _, body) = worker.post("/detokenize", &json!({"tokens": [171]}));
    assert_eq!(body["text"], "\u{fffd}");
    // The same error rules as /execute.
    let (status, _, body) = worker.post("/detokenize", &json!({"tokens": [5, 50257, 99999]}));
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(worker.post("/detokenize", &json!({"tokens": [-1]})).0, 422);
    assert_eq!(worker.post("/tokenize", &json!({"text": 5})).0, 422);
    assert_eq!(worker.post_raw("/tokenize", "text/plain", b"{}".to_vec()).0, 415);
    assert_eq!(worker.post_raw("/tokenize", "application/json", b"{\"text\": ".to_vec()).0, 400);
    assert_eq!(worker.post("/tokenize", &json!({"text": "x".repeat(32769)})).0, 400);
}
