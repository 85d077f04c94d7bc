//! Checkpoint 8: logits at every position of every reference prompt match transformers within
//! 1e-4, on the tiny synthetic, the trained and the 124M-shape synthetic model.

use crate::support::component::{deadline, load};
use crate::support::{assert_close, kjv, reference, tiny};
use std::path::Path;

fn check_all_prompts(folder: &str, model: &Path) {
    let mut guest = load(model);
    let prompts = reference::prompts(folder, "reference.json");
    assert!(!prompts.is_empty());
    for (i, prompt) in prompts.iter().enumerate() {
        let (shape, want) = reference::logits(folder, i);
        let got = guest.logits(&prompt.ids, deadline()).expect("logits");
        let vocab = guest.info.vocab_size as usize;
        let got_shape = [got.len() / vocab, vocab];
        assert_close(&format!("{folder} prompt {i} logits"), &got_shape, &got, &shape, &want, 1e-4);
    }
}

#[test]
fn tiny_synthetic_logits_match() {
    check_all_prompts("tiny-synthetic", &tiny());
}

#[test]
fn trained_model_logits_match() {
    check_all_prompts("kjv-fortunes-18m", &kjv());
}

#[test]
fn gpt2_124m_shape_logits_match() {
    check_all_prompts("gpt2-124m-synthetic", &crate::support::gpt2_124m());
}

#[test]
fn synthetic_generator_rebuilds_the_shipped_tiny_model_exactly() {
    let path = crate::support::scratch("tiny-regenerated").join("model-f32.gguf");
    let reference = crate::support::model_file("tiny-synthetic/reference.json");
    llorch_testkit::synthetic::write_gguf(&reference, &tiny(), llorch_testkit::gguf_writer::WeightType::F32, &path)
        .unwrap();
    let ours = std::fs::read(&path).unwrap();
    let shipped = std::fs::read(tiny()).unwrap();
    let (ours, shipped) =
        (llorch_guest::gguf::Gguf::parse(&ours).unwrap(), llorch_guest::gguf::Gguf::parse(&shipped).unwrap());
    assert_eq!(ours.tensors().len(), shipped.tensors().len());
    for info in shipped.tensors() {
        let (theirs, want) = shipped.tensor(&info.name).unwrap();
        let (mine, got) = ours.tensor(&info.name).unwrap_or_else(|| panic!("{} missing", info.name));
        assert_eq!(mine.dims, theirs.dims, "{} dims", info.name);
        assert!(got == want, "{} values differ", info.name);
    }
}
