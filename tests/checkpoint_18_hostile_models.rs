//! Checkpoint 18: hostile model files. Every malformed GGUF makes `llorch-cpud` exit non-zero
//! within seconds with one error line naming the problem; nothing panics or hangs.

use crate::support::micro::micro_gpt2;
use crate::support::scratch;
use crate::support::worker::{Worker, spawn};
use llorch_testkit::gguf_writer as g;
use std::time::Duration;

/// A case: a name, the file, and text its error line must contain.
type Case = (String, Vec<u8>, &'static str);

fn edit(name: &str, expect: &'static str, change: impl FnOnce(&mut g::GgufBuilder)) -> Case {
    let mut b = micro_gpt2();
    change(&mut b);
    (name.to_string(), b.bytes(), expect)
}

/// The micro model with its bytes at `at` replaced by `with`.
fn patch(name: &str, expect: &'static str, at: usize, with: &[u8]) -> Case {
    let mut bytes = micro_gpt2().bytes();
    bytes[at..at + with.len()].copy_from_slice(with);
    (name.to_string(), bytes, expect)
}

fn cases() -> Vec<Case> {
    let (valid, sections) = micro_gpt2().bytes_with_sections();
    let first_key_len = sections[1];
    let huge = u64::MAX;
    let mut cases = vec![
        patch("bad magic", "not a GGUF file", 0, b"GGML"),
        patch("version 0", "GGUF version 0 is not supported", 4, &0u32.to_le_bytes()),
        patch("version 1", "GGUF version 1 is not supported", 4, &1u32.to_le_bytes()),
        patch("future version", "GGUF version 4 is not supported", 4, &4u32.to_le_bytes()),
        edit("tensor count -1", "tensor count is 18446744073709551615", |b| b.tensor_count = Some(huge)),
        edit("tensor count 2^63", "tensor count is 9223372036854775808", |b| b.tensor_count = Some(1 << 63)),
        edit("metadata count -1", "metadata count is 18446744073709551615", |b| b.kv_count = Some(huge)),
        edit("metadata count 2^63", "metadata count is 9223372036854775808", |b| b.kv_count = Some(1 << 63)),
        patch(
            "key longer than the file",
            "file truncated: metadata key #0",
            first_key_len,
            &(1u64 << 40).to_le_bytes(),
        ),
        edit("empty key", "metadata key #0 is empty", |b| b.kvs[0].key.clear()),
        edit("duplicate key", "metadata key gpt2.block_count appears twice", |b| {
            let dup = b.kvs.iter().find(|k| k.key == "gpt2.block_count").unwrap().clone();
            b.kvs.push(dup);
        }),
        edit("unknown value type", "value type 99 is unknown", |b| b.kvs[0].type_id = 99),
        edit("array of an unknown type", "array element type 77 is unknown", |b| {
            b.set("general.tags", g::array_value(77, 1, &[0]));
        }),
        edit("array longer than the file", "array length is 4611686018427387904", |b| {
            b.set("general.tags", g::array_value(g::U32, 1 << 62, &[]));
        }),
        edit("nested array", "nested arrays are not supported", |b| {
            b.set("general.tags", g::array_value(g::ARRAY, 1, &[0; 12]));
        }),
        edit("string value longer than the file", "file truncated: general.name", |b| {
            b.set("general.name", (g::STRING, (1u64 << 50).to_le_bytes().to_vec()));
        }),
        edit("tokens declared as integers", "tokenizer.ggml.tokens must be an array of strings", |b| {
            b.set("tokenizer.ggml.tokens", g::array_value(1, 258, &[0; 258]));
        }),
        edit("alignment 0", "general.alignment must be a power of two", |b| {
            b.set("general.alignment", g::u32_value(0));
        }),
        edit("alignment not a power of two", "general.alignment must be a power of two", |b| {
            b.set("general.alignment", g::u32_value(48));
        }),
        edit("huge alignment", "general.alignment must be a power of two up to 65536", |b| {
            b.set("general.alignment", g::u32_value(1 << 31));
        }),
        edit("alignment of the wrong type", "general.alignment must be a power of two", |b| {
            b.set("general.alignment", g::string_value("32"));
        }),
        edit("tensor name too long", "name has 65 bytes", |b| b.tensors[0].name = "x".repeat(65)),
        edit("empty tensor name", "name has 0 bytes", |b| b.tensors[0].name.clear()),
        edit("duplicate tensor name", "tensor blk.0.attn_norm.bias appears twice", |b| {
            b.tensors[3].name = "blk.0.attn_norm.bias".into();
            b.tensors[2].name = "blk.0.attn_norm.bias".into();
        }),
        edit("no dimensions", "has 0 dimensions", |b| b.tensors[0].dims.clear()),
        edit("five dimensions", "has 5 dimensions", |b| b.tensors[0].dims = vec![1; 5]),
        edit("zero dimension", "has a zero dimension", |b| b.tensors[0].dims = vec![8, 0]),
        edit("dims that overflow", "element count overflows", |b| b.tensors[0].dims = vec![1 << 32, 1 << 32]),
        edit("unsupported tensor type", "GGML type 2, which is not supported", |b| b.tensors[0].type_id = 2),
        edit("unknown tensor type", "GGML type 9999", |b| b.tensors[0].type_id = 9999),
        edit("offset past the end", "run past the end of the data section", |b| b.tensors[5].offset = Some(1 << 40)),
        edit("misaligned offset", "is not a multiple of the alignment", |b| b.tensors[5].offset = Some(36)),
        edit("overlapping tensors", "overlap", |b| b.tensors[5].offset = Some(0)),
        edit("qkv shape disagrees with n_embd", "tensor blk.0.attn_qkv.weight has dims [8, 25]", |b| {
            let t = b.tensor("blk.0.attn_qkv.weight");
            t.dims = vec![8, 25];
            t.data.extend_from_slice(&[0; 32]);
        }),
        edit("missing tensor", "tensor blk.0.ffn_up.bias is missing", |b| {
            b.tensors.retain(|t| t.name != "blk.0.ffn_up.bias")
        }),
        edit("heads do not divide the width", "not a multiple of the head count 3", |b| {
            b.set("gpt2.attention.head_count", g::u32_value(3));
        }),
        edit("zero context", "gpt2.context_length is 0", |b| {
            b.set("gpt2.context_length", g::u32_value(0));
        }),
        edit("missing hyper-parameter", "metadata gpt2.block_count is missing", |b| {
            b.kvs.retain(|k| k.key != "gpt2.block_count");
        }),
        edit("another architecture", "general.architecture must be \"gpt2\"", |b| {
            b.set("general.architecture", g::string_value("llama"));
        }),
        edit("another tokenizer", "tokenizer.ggml.model must be \"gpt2\"", |b| {
            b.set("tokenizer.ggml.model", g::string_value("llama"));
        }),
        edit("merge of unknown tokens", "merge #0 (\"q z\") names", |b| {
            b.set("tokenizer.ggml.merges", g::strings_value(&["q z".to_string()]));
        }),
        edit("eos outside the vocabulary", "eos_token_id 900 is outside the vocabulary", |b| {
            b.set("tokenizer.ggml.eos_token_id", g::u32_value(900));
        }),
        edit("NaN weight", "holds a non-finite value (NaN)", |b| {
            b.tensor("blk.0.ffn_up.weight").data[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        }),
        edit("infinite weight", "holds a non-finite value (inf)", |b| {
            b.tensor("position_embd.weight").data[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }),
    ];
    // Truncation at every section boundary and just after it.
    for &at in sections.iter().filter(|&&at| at < valid.len()) {
        for cut in [at, at + 1] {
            cases.push((format!("truncated at {cut}"), valid[..cut].to_vec(), "truncated"));
        }
    }
    cases.push(("empty file".into(), Vec::new(), "file truncated"));
    cases
}

#[test]
fn the_micro_model_itself_is_valid() {
    let path = scratch("hostile-models").join("valid.gguf");
    micro_gpt2().write(&path).unwrap();
    let worker = Worker::start(&["--model", path.to_str().unwrap()]);
    assert_eq!(worker.get("/health").0, 200);
}

#[test]
fn every_hostile_file_exits_non_zero_with_one_clear_line() {
    let dir = scratch("hostile-models");
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (i, (name, bytes, expect)) in cases.iter().enumerate() {
        let path = dir.join(format!("case-{i}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        let mut worker = spawn(&["--model", path.to_str().unwrap()]);
        let status =
            worker.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{name}: the worker did not exit"));
        assert!(!status.success(), "{name}: exit {status}");
        assert!(status.code().is_some(), "{name}: killed by a signal ({status}), not a clean exit");
        let logs = worker.lines();
        let entries: Vec<serde_json::Value> = logs.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        let errors: Vec<&str> =
            entries.iter().filter(|e| e["level"] == "error").map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(errors.len(), 1, "{name}: {logs:?}");
        assert!(errors[0].contains(expect), "{name}: expected {expect:?} in {}", errors[0]);
        assert!(!errors[0].contains("panicked"), "{name}: {}", errors[0]);
    }
}
