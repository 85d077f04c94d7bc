//! Checkpoint 7: the residual stream after block 0 matches transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn block_output_matches_the_reference() {
    compare_hello_checkpoint("b0.out", 1e-5);
}

#[test]
fn logits_of_the_checkpoint_prompt_match_the_reference() {
    compare_hello_checkpoint("logits", 1e-4);
}
