//! Checkpoint 19: a fixed-length mutation fuzz run of the model loader. Thousands of corrupted
//! variants of a valid GGUF (bit flips, smashed integers, truncations, spliced ranges) must each
//! fail with an error that names the problem, or load into a model that generates — never panic.

use crate::support::micro::micro_gpt2;
use llorch_guest::generation::{GenerateOptions, Generation};
use llorch_guest::model::Model;
use llorch_guest::sampler::SamplingParams;
use std::sync::Arc;

/// Iterations of the run; each applies one to four mutations.
const ITERATIONS: usize = 20_000;

/// Values that break size arithmetic when they land on a count, length or offset.
const INTERESTING: [u64; 8] = [0, 1, 0x7f, 0xffff_ffff, 1 << 32, 1 << 62, 1 << 63, u64::MAX];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.below(256) as u8,
        2 => {
            let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            let end = (at + 8).min(bytes.len());
            bytes[at..end].copy_from_slice(&value[..end - at]);
        }
        3 => bytes.truncate(at),
        4 => {
            let len = rng.below(64).min(bytes.len() - at);
            let chunk = bytes[at..at + len].to_vec();
            let to = rng.below(bytes.len());
            bytes.splice(to..to, chunk);
        }
        _ => {
            let end = (at + rng.below(64)).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// Loads `bytes`; a model that loads must also generate a token. Err carries the refusal.
fn load_and_generate(bytes: &[u8]) -> Result<(), String> {
    let model = Arc::new(Model::from_bytes("mutant", bytes).map_err(|e| e.to_string())?);
    let options = GenerateOptions { max_tokens: 1, sampling: SamplingParams::greedy(), stop: vec![] };
    let mut generation = Generation::new(model, &[0], &options).map_err(|e| e.to_string())?;
    generation.run_to_end(|_| {});
    Ok(())
}

#[test]
fn corrupted_files_never_panic_the_loader() {
    let valid = micro_gpt2().bytes();
    assert_eq!(load_and_generate(&valid), Ok(()), "the seed file loads and generates");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..ITERATIONS {
        let mut bytes = valid.clone();
        for _ in 0..1 + rng.below(4) {
            if !bytes.is_empty() {
                mutate(&mut bytes, &mut rng);
            }
        }
        match std::panic::catch_unwind(|| load_and_generate(&bytes)) {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(why)) => {
                // "invalid model: " or "cannot read model: " and then what is wrong.
                let (_, detail) = why.split_once(": ").unwrap_or_else(|| panic!("iteration {i}: refusal {why:?}"));
                assert!(detail.len() > 10, "iteration {i}: the refusal names nothing: {why:?}");
                refused += 1;
            }
            Err(_) => panic!("iteration {i}: the loader panicked on {} bytes", bytes.len()),
        }
    }
    // Both outcomes occur: mutants in the weights load and run, mutants in the header fail.
    assert!(loaded > 0, "no mutant loaded; the run never reached the forward pass");
    assert!(refused > ITERATIONS / 2, "only {refused} of {ITERATIONS} mutants were refused");
}
