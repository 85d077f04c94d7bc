//! Checkpoint 4: attention scores of block 0, scaled by 1/√64 with the causal mask (−∞ above the
//! diagonal), match transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn masked_scores_match_the_reference() {
    compare_hello_checkpoint("b0.scores_masked", 1e-5);
}
